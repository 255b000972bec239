"""normflow.real._tokens and the real-model experiments built on it (real_balance, real_finetune):
each quick run once in process, its numbers checked against its own per-token arrays."""

import json

import numpy as np
import pytest
from scipy.stats import spearmanr
from conftest import run_experiment


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    done = {}
    for name, extra in (("real_balance", ["--min-sightings", "2"]), ("real_finetune", ["--min-sightings", "2"])):
        t = tmp_path_factory.mktemp(name)
        rc, out, err = run_experiment(name, ["--quick", "--quiet", "--out", str(t), "--figures", str(t), *extra])
        assert rc == 0, err[-3000:]
        done[name] = (json.loads((t / "results.json").read_text()), t)
    return done


def test_balance_fit_is_recomputed_from_its_own_rows(runs):
    res, t = runs["real_balance"]
    assert (t / "real_balance.png").stat().st_size > 10_000
    rows = res["per_token"]
    norm, p, w2 = (np.asarray(rows[k], float) for k in ("norm", "p", "w2"))
    lx, ly = np.log(np.sqrt(p * w2)), np.log(norm)
    slope = np.polyfit(lx, ly, 1)[0]
    assert res["headline"]["balance_current_state"]["slope"] == pytest.approx(slope, rel=1e-9)
    assert res["headline"]["balance_current_state"]["r"] == pytest.approx(np.corrcoef(lx, ly)[0, 1], rel=1e-9)
    # a token row is not scale-invariant, but nearly: the radial share of its gradient energy is small
    share = np.asarray(rows["radial_share"], float)
    assert np.all((share >= 0) & (share <= 1)) and np.median(share) < 0.05


def test_finetune_rows_never_seen_only_decay(runs):
    res, t = runs["real_finetune"]
    assert (t / "real_finetune.png").stat().st_size > 10_000
    for name in ("sgd", "adamw"):
        h = res["headline"][name]
        # a row absent from every batch has zero gradient: SGD and AdamW both just scale it by (1-ηλ) per step
        assert h["unseen_max_rel_error"] < 1e-5, name
        obs = np.asarray(res["per_token"][f"{name}_obs"], float)
        pred = np.asarray(res["per_token"][f"{name}_pred"], float)
        assert h["fit"]["r"] == pytest.approx(np.corrcoef(pred, obs)[0, 1], rel=1e-9)
        assert h["fit"]["spearman"] == pytest.approx(spearmanr(pred, obs).statistic, rel=1e-9)
        run_p = np.asarray(res["per_token"]["p_run"], float)
        assert np.all(run_p > 0) and np.all(run_p <= 1)  # every compared row is seen in the run


def test_statistics_match_a_direct_gradient():
    import jax
    import jax.numpy as jnp

    from normflow import real

    model = real.load_minilm()
    pairs = [("a domesticated carnivorous mammal", "dog"), ("a small domesticated feline", "cat"),
             ("a motor vehicle with four wheels", "car")]
    b = real.pair_batches(pairs, batch_size=3, steps=2, key=jax.random.key(0))
    st = real.token_statistics(model, b)
    # the gradient of each batch on its own (jitted: op by op, BERT's backward pass costs ~15 s on 2 cores)
    import equinox as eqx

    grad = eqx.filter_jit(jax.grad(real.pair_loss))
    g0 = grad(model.word, model, *(a[0] for a in b))
    g1 = grad(model.word, model, *(a[1] for a in b))
    dog = real.load_tokenizer().token_to_id("dog")
    e2 = (jnp.sum(g0[dog] ** 2) + jnp.sum(g1[dog] ** 2)) / 2
    assert float(st.p[dog]) == 1.0
    assert float(st.w2[dog]) == pytest.approx(float(e2), rel=1e-5)
    e4 = (jnp.sum(g0[dog] ** 2) ** 2 + jnp.sum(g1[dog] ** 2) ** 2) / 2
    assert float(st.w4[dog]) == pytest.approx(float(e4), rel=1e-5)
    assert float(st.p[real.load_tokenizer().token_to_id("zebra")]) == 0.0
    # the run-side sighting count is the statistics' p, counted directly from the token ids
    np.testing.assert_array_equal(real.row_sightings(b), np.rint(np.asarray(st.p) * 2).astype(int))
