"""The sparse engine (train(..., sparse=True)) against the dense one, and lazy Adam against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normflow as nf
from normflow.optimizers import EXTRA, OPTIMIZERS

# zipf over 48 concepts with batch 16: the rarest are absent from most steps (p ≈ 0.07), so
# their rows go through long lazy stretches (scale, or Aⁿ) between sightings
CASES = {
    "sgd": (0.5, 1e-2), "sgd_l2": (0.5, 1e-2), "gd": (0.1, 1e-2), "sgdm": (0.05, 1e-2), "sgdmw": (0.05, 1e-2),
    "lazy_adam": (1e-2, 0.0), "lazy_adamw": (1e-2, 0.05),
}


@pytest.fixture(scope="module")
def zipf_task():
    return nf.FlatTask(48, 8, key=jax.random.key(0), dtype=jnp.float64, frequency="zipf", zipf_exponent=1.2)


def _max_diff(a, b, field):
    x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
    return float(np.nanmax(np.abs(x - y)))


@pytest.mark.parametrize("opt", list(CASES))
def test_sparse_step_is_the_dense_trajectory(zipf_task, opt):
    """float64: norms and the whole record of sparse=True equal the dense run's to 1e-11."""
    lr, wd = CASES[opt]
    kw = dict(lr=lr, weight_decay=wd, steps=400, key=jax.random.key(1), batch_size=16, save_steps=[1, 7, 60, 333],
              n_full=48)
    dense = nf.train(zipf_task, opt, **kw)
    sparse = nf.train(zipf_task, opt, sparse=True, **kw)
    for f in ("norms", "radial", "angular", "update_sq", "loss"):
        assert _max_diff(dense, sparse, f) < 1e-11, (f, _max_diff(dense, sparse, f))
    np.testing.assert_allclose(sparse.model.weight, dense.model.weight, rtol=0, atol=1e-11)
    moved = np.max(np.abs(np.asarray(dense.norms[-1]) - np.asarray(dense.norms[0])))
    assert moved > 0.05, moved  # the runs did something
    assert int(sparse.diverged_step) == int(dense.diverged_step) == -1
    p = np.asarray(zipf_task.frequency(16))
    assert p.min() < 0.1  # rare rows really skip most steps


def test_scale_renormalises_before_it_underflows():
    """ηλ = 0.025 for 30,000 steps with no record in between: Π(1-ηλ) = e⁻⁷⁶⁰ underflows float64
    to 0, so without folding the scale into the rows (below 2⁻⁵⁰, every ~1,400 steps) the run
    would divide by 0; with it the run is the dense one. (At ηλ = 0.05, 15,000 steps, the sparse
    run ends 5.3e-6 from the dense one: there the dynamics amplify rounding, since the dense run
    itself moves by 2.3e-8 when its initial table moves by one ulp, and by 2.5e-6 at step 5,000.
    The sparse step rounds differently at every step, so it is not a lazy-form error. The test
    keeps the long run, which contracts again, to 7e-16.)"""
    task = nf.FlatTask(16, 8, key=jax.random.key(2), dtype=jnp.float64)
    kw = dict(lr=0.5, weight_decay=0.05, steps=30000, key=jax.random.key(3), batch_size=16, save_steps=[1, 30000])
    dense = nf.train(task, "sgd", **kw)
    sparse = nf.train(task, "sgd", sparse=True, **kw)
    assert int(dense.diverged_step) == int(sparse.diverged_step) == -1
    assert (1 - 0.5 * 0.05) ** 30000 == 0.0
    np.testing.assert_allclose(sparse.norms, dense.norms, rtol=1e-10)
    assert float(sparse.opt_state.scale) == 1.0  # folded at the recorded step


def _numpy_lazy_adam(grads, x0, lr, b1, b2, eps, wd, decay):
    """The libraries' loop, in NumPy float64: decay None (lazy Adam), "all" or "touched"."""
    x, m, v = x0.copy(), np.zeros_like(x0), np.zeros_like(x0)
    out = []
    for t, g in enumerate(grads, start=1):
        here = np.any(g != 0, axis=1) if g.ndim == 2 else np.ones(g.shape[:1], bool)
        m[here] = b1 * m[here] + (1 - b1) * g[here]
        v[here] = b2 * v[here] + (1 - b2) * g[here] ** 2
        step = np.zeros_like(x)
        step[here] = np.sqrt(1 - b2**t) / (1 - b1**t) * m[here] / (np.sqrt(v[here]) + eps)
        if decay == "all":
            step += wd * x
        elif decay == "touched":
            step[here] += wd * x[here]
        x = x - lr * step
        out.append(x.copy())
    return np.array(out)


@pytest.mark.parametrize("decay", [None, "all", "touched"])
def test_lazy_adam_is_the_libraries_update(decay):
    """Random gradients with whole rows zero (about 70 % of rows per step, some rows absent for
    tens of steps): the optax transformation equals the NumPy loop to 1e-12, absent rows keep
    their moments and (without decay) their values, and it differs from dense Adam."""
    rng = np.random.default_rng(0)
    n, d, steps, lr, wd = 40, 5, 60, 3e-2, 0.1
    x0 = rng.normal(size=(n, d))
    grads = rng.normal(size=(steps, n, d)) * (rng.random((steps, n, 1)) < 0.3)
    grads[:, :3] = 0  # three rows never present
    bias = rng.normal(size=(steps, 3))  # a 1-D leaf: dense (updated every step)
    if decay is None:
        opt = nf.lazy_adam(lr, b1=0.9, b2=0.99, eps=1e-8)
    else:
        opt = nf.lazy_adamw(lr, b1=0.9, b2=0.99, eps=1e-8, weight_decay=wd, decay=decay)
    params = {"table": jnp.asarray(x0), "bias": jnp.zeros(3, jnp.float64)}
    state = opt.init(params)
    update = jax.jit(opt.update)
    got, got_b = [], []
    for k in range(steps):
        u, state = update({"table": jnp.asarray(grads[k]), "bias": jnp.asarray(bias[k])}, state, params)
        params = optax.apply_updates(params, u)
        got.append(np.asarray(params["table"]))
        got_b.append(np.asarray(params["bias"]))
    want = _numpy_lazy_adam(grads, x0, lr, 0.9, 0.99, 1e-8, wd, decay)
    want_b = _numpy_lazy_adam(bias, np.zeros(3), lr, 0.9, 0.99, 1e-8, wd, decay)  # a 1-D leaf is always present
    assert np.max(np.abs(np.array(got) - want)) < 1e-12
    assert np.max(np.abs(np.array(got_b) - want_b)) < 1e-12
    never = np.array(got)[:, :3]
    if decay in (None, "touched"):
        assert np.array_equal(never, np.broadcast_to(x0[:3], never.shape))  # never present: never moves
    else:
        np.testing.assert_allclose(never[-1], x0[:3] * (1 - lr * wd) ** steps, rtol=1e-12)
    mu = np.asarray(state[0].mu["table"])
    assert np.all(mu[:3] == 0) and np.all(np.abs(mu[3:]).sum(-1) > 0)
    dense = optax.adam(lr, b1=0.9, b2=0.99, eps=1e-8)
    p2, s2 = {"table": jnp.asarray(x0)}, dense.init({"table": jnp.asarray(x0)})
    for k in range(steps):
        u, s2 = dense.update({"table": jnp.asarray(grads[k])}, s2)
        p2 = optax.apply_updates(p2, u)
    assert np.max(np.abs(np.asarray(p2["table"]) - np.array(got)[-1])) > 1e-2  # a different optimizer


def test_lazy_adam_names_run_dense_and_stay_out_of_the_main_job(zipf_task):
    assert set(EXTRA) == {"lazy_adam", "lazy_adamw"} and not set(EXTRA) & set(OPTIMIZERS)
    assert set(nf.SPARSE_OPTIMIZERS) >= set(EXTRA)
    run = nf.train(zipf_task, "lazy_adamw", lr=1e-2, weight_decay=0.05, steps=5, key=jax.random.key(0), batch_size=8)
    assert np.all(np.isfinite(run.norms))
    with pytest.raises(ValueError, match="lazy_adam has no weight decay"):
        nf.train(zipf_task, "lazy_adam", lr=1e-2, weight_decay=0.05, steps=5, key=jax.random.key(0))


@pytest.mark.parametrize("kw, msg", [
    (dict(optimizer="adamw"), "adamw has no exact sparse step"),
    (dict(optimizer="lion"), "lion has no exact sparse step"),
    (dict(optimizer=optax.sgd(0.1)), "sparse=True takes a named optimizer"),
    (dict(lr=optax.linear_schedule(0.1, 0.0, 10)), "does not take a learning-rate schedule"),
    (dict(devices="all"), "runs on one device"),
    (dict(model="mlp"), "needs the free table"),
])
def test_sparse_rejects_what_it_cannot_run_exactly(zipf_task, kw, msg):
    args = dict(optimizer="sgd", lr=0.5, weight_decay=1e-3, steps=3, key=jax.random.key(0), sparse=True)
    args.update(kw)
    if args.get("model") == "mlp":
        args["model"] = nf.ConceptMLP(48, 8, key=jax.random.key(0), dtype=jnp.float64)
    opt = args.pop("optimizer")
    with pytest.raises(ValueError, match=msg):
        nf.train(zipf_task, opt, **args)


def _rounding_sensitivity(task, opt, kw, key):
    """How far the dense run's record moves when its initial table moves by one ulp: the size of
    rounding error after the dynamics have amplified it (at ηλ = 0.1, ~1e-9 after 400 steps)."""
    import equinox as eqx

    from normflow.train import _split_keys, default_model

    m0 = default_model(task, _split_keys(key)[0])
    base = nf.train(task, opt, key=key, model=m0, **kw)
    bumped = nf.train(task, opt, key=key, model=eqx.tree_at(lambda t: t.weight, m0, m0.weight * (1 + 2.0**-52)), **kw)
    return base, {f: float(np.nanmax(np.abs(np.asarray(getattr(bumped, f)) - np.asarray(getattr(base, f)))))
                  for f in ("norms", "radial", "angular", "update_sq", "loss")}


@pytest.mark.parametrize("opt, wd", [("sgd", [1e-3, 0.2, 0.0]), ("sgdmw", [1e-3, 0.2, 0.0]),
                                     ("lazy_adamw", [0.01, 0.5, 0.0])])
def test_sparse_sweep_rows_are_the_dense_runs(zipf_task, opt, wd):
    """nf.sweep(..., sparse=True) under vmap: each config's record equals the dense train() run's,
    float64, to 1e-12 plus 10x the dense run's own rounding sensitivity (its record's change
    when the initial table moves by one ulp; at ηλ = 0.1 the dynamics amplify rounding ~1e7-fold
    in 400 steps). For sgd, ηλ = 0.1 gives a fixed fold interval of 328 steps (50·ln 2 / −ln 0.9),
    so the grid's shared fold happens inside the run; ηλ = 0 is the config with no decay."""
    from normflow._sparse import renorm_interval

    lr = {"sgd": [0.5, 0.5, 0.3], "sgdmw": [0.05, 0.5, 0.02], "lazy_adamw": [1e-2, 3e-2, 1e-2]}[opt]
    kw = dict(steps=400, batch_size=16, save_steps=[1, 7, 60, 333], n_full=48) | (
        dict(momentum=0.9) if opt == "sgdmw" else {})
    run = nf.sweep(zipf_task, opt, lr=np.array(lr), weight_decay=np.array(wd), seeds=[1, 2, 3], sparse=True, **kw)
    if opt == "sgd":
        assert renorm_interval(opt, np.array(lr), np.array(wd)) == 328
    for c in range(3):
        dense, sens = _rounding_sensitivity(zipf_task, opt, kw | dict(lr=lr[c], weight_decay=wd[c]),
                                            jax.random.key(c + 1))
        for f in ("norms", "radial", "angular", "update_sq", "loss"):
            diff = float(np.nanmax(np.abs(np.asarray(getattr(run, f))[c] - np.asarray(getattr(dense, f)))))
            assert diff < 1e-12 + 10 * sens[f], (c, f, diff, sens[f])


def test_sparse_sweep_refuses_what_the_sparse_engine_cannot_run(zipf_task):
    with pytest.raises(ValueError, match="adamw has no exact sparse step"):
        nf.sweep(zipf_task, "adamw", lr=[1e-2, 2e-2], seeds=0, steps=5, batch_size=4, sparse=True)


def test_sparse_sweep_does_not_recompile_for_a_new_grid(zipf_task):
    """The fold interval is a traced value: a grid with other decays (another interval) reuses the
    compiled program, and its rows differ."""
    from normflow.sweep import trace_count

    kw = dict(lr=np.array([0.5, 0.5]), seeds=[1, 2], steps=50, batch_size=16, save_steps=[50], sparse=True)
    a = nf.sweep(zipf_task, "sgd", weight_decay=np.array([1e-3, 0.2]), **kw)
    n = trace_count()
    b = nf.sweep(zipf_task, "sgd", weight_decay=np.array([1e-2, 0.05]), **kw)
    assert trace_count() == n, "a new grid of the same size must not retrace the sparse sweep"
    assert not np.array_equal(np.asarray(a.norms), np.asarray(b.norms))
