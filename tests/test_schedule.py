"""Learning-rate schedules (docs/theory.md §13): the engines against hand-written optax loops,
a sweep over two schedules in one compile, the per-step maps against direct NumPy loops, and
the sim's --quick run. Expected values are computed here independently of the code under test.
"""

import importlib
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import normflow as nf  # noqa: E402
from normflow import theory  # noqa: E402
from normflow.losses import get_loss  # noqa: E402
from normflow.optimizers import WarmupCosine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T = 40


@pytest.fixture(scope="module")
def task():
    return nf.tasks.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(3))


def _hand_run(task, key, opt, steps, lr_of, wd, save):
    """The engine's run written out: same model key, same minibatch keys, a plain optax loop.
    Returns norms and |u|² at ``save`` (u from x' = (1-η_kλ)x - η_k u with η_k = lr_of(k))."""
    k_model, k_data = jax.random.split(key)
    model = nf.default_model(task, k_model)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    loss_fn = get_loss("info_nce")

    def loss_of(p, batch):
        m = eqx.combine(p, static)
        return loss_fn(m.embed_concepts(batch.concepts), m.embed_contexts(batch.contexts), task.temperature)

    state = opt.init(params)
    x = lambda p: np.asarray(eqx.combine(p, static).concept_embeddings(), np.float64)
    norms, usq = [np.linalg.norm(x(params), axis=1)], [np.zeros(task.num_concepts)]
    for k in range(steps):
        batch = task.sample(jax.random.fold_in(k_data, k), 64)
        g = jax.grad(loss_of)(params, batch)
        upd, state = opt.update(g, state, params)
        x0 = x(params)
        params = optax.apply_updates(params, upd)
        if k + 1 in save:
            x1 = x(params)
            eta = float(lr_of(k))
            u = ((1 - eta * wd) * x0 - x1) / eta if eta > 0 else np.zeros_like(x0)
            norms.append(np.linalg.norm(x1, axis=1))
            usq.append(np.sum(u * u, axis=1))
    return np.stack(norms), np.stack(usq)


# ------------------------------------------------------------------ the schedule type


def test_warmup_cosine_equals_optax():
    ks = jnp.arange(0, 130)
    for w, d, init, end in [(10, 100, 0.0, 0.0), (0, 100, 0.0, 0.05), (25, 25, 0.1, 0.0), (10, 120, 0.02, 0.01)]:
        ours = WarmupCosine(peak=0.5, warmup_steps=w, decay_steps=d, init=init, end=end).astype(jnp.float32)(ks)
        ref = optax.warmup_cosine_decay_schedule(init, 0.5, w, d, end)(ks) if d > w else \
            optax.linear_schedule(init, 0.5, w)(ks)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("field,value", [("peak", -0.1), ("peak", float("nan")), ("warmup_steps", -3.0),
                                         ("end", float("nan")), ("decay_steps", 5.0)])
def test_bad_schedule_is_one_line_valueerror(task, field, value):
    kw = dict(peak=0.5, warmup_steps=10, decay_steps=T)
    kw[field] = value
    with pytest.raises(ValueError) as e:
        nf.train(task, "sgd", lr=WarmupCosine(**kw), steps=T, key=jax.random.key(0))
    msg = str(e.value)
    assert "\n" not in msg and field in msg and (str(value) in msg or "nan" in msg)
    with pytest.raises(ValueError):
        nf.sweep(task, "sgd", lr=WarmupCosine(**{**kw, "peak": [0.5, kw["peak"]]}), steps=T, seeds=[0, 1])


# ------------------------------------------------------------------ engines


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_train_schedule_equals_hand_optax_loop(task, name):
    wd = 0.05
    save = [0, 1, 5, 17, 30, T]
    sched = WarmupCosine(peak=0.3 if name == "sgd" else 0.02, warmup_steps=8, decay_steps=T)
    ref_sched = optax.warmup_cosine_decay_schedule(0.0, float(sched.peak), 8, T, 0.0)
    key = jax.random.key(11)
    run = nf.train(task, name, lr=sched, weight_decay=wd, steps=T, key=key, save_steps=save)
    if name == "sgd":  # x' = (1-η_kλ)x - η_k g written by hand (decoupled decay with the schedule)
        opt = optax.chain(optax.sgd(ref_sched),
                          optax.GradientTransformation(
                              lambda p: optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)),
                              lambda u, s, p: (jax.tree_util.tree_map(lambda a, b: a - ref_sched(s.count) * wd * b, u, p),
                                               optax.ScaleByScheduleState(s.count + 1))))
    else:
        opt = optax.adamw(ref_sched, weight_decay=wd)
    norms, usq = _hand_run(task, key, opt, T, ref_sched, wd, save)
    # float32 runs of the same arithmetic in a different order: rounding only (|x| ~ 1)
    np.testing.assert_allclose(np.asarray(run.norms), norms, rtol=2e-5, atol=2e-6)
    # step 0 of a warmup from 0 has η_0 = 0: nothing moves and u is recorded as 0
    assert np.all(np.asarray(run.update_sq)[1] == 0)
    np.testing.assert_allclose(np.asarray(run.update_sq)[2:], usq[2:], rtol=2e-3, atol=1e-6)
    times = np.concatenate([[0.0], np.cumsum(np.asarray(ref_sched(jnp.arange(T)), np.float64))])[save]
    np.testing.assert_allclose(np.asarray(run.times), times, rtol=1e-5, atol=1e-7)


def test_train_accepts_an_optax_schedule(task):
    sched = WarmupCosine(peak=0.3, warmup_steps=5, decay_steps=T)
    ref = optax.warmup_cosine_decay_schedule(0.0, 0.3, 5, T, 0.0)
    a = nf.train(task, "sgd", lr=sched, weight_decay=0.01, steps=T, key=jax.random.key(2), save_steps=5)
    b = nf.train(task, "sgd", lr=ref, weight_decay=0.01, steps=T, key=jax.random.key(2), save_steps=5)
    np.testing.assert_allclose(np.asarray(a.norms), np.asarray(b.norms), rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(np.asarray(a.times), np.asarray(b.times), rtol=1e-6)


def test_constant_lr_times_unchanged(task):
    run = nf.train(task, "sgd", lr=0.25, weight_decay=0.01, steps=T, key=jax.random.key(2), save_steps=5)
    np.testing.assert_array_equal(np.asarray(run.times), 0.25 * np.asarray(run.steps).astype(np.float32))


def test_sweep_two_schedules_one_compile(task):
    sched = WarmupCosine(peak=[0.2, 0.4], warmup_steps=[4, 12], decay_steps=T)
    trace_count = importlib.import_module("normflow.sweep").trace_count
    before = trace_count()
    run = nf.sweep(task, "sgd", lr=sched, weight_decay=0.02, steps=T, seeds=[0, 0], save_steps=6)
    run2 = nf.sweep(task, "sgd", lr=WarmupCosine(peak=[0.3, 0.1], warmup_steps=[0, 20], decay_steps=[T, 30]),
                    weight_decay=0.02, steps=T, seeds=[0, 0], save_steps=6)
    after = trace_count()
    assert after - before <= 1  # the second grid of schedules reuses the program
    for c, (p, w) in enumerate([(0.2, 4), (0.4, 12)]):
        one = nf.train(task, "sgd", lr=WarmupCosine(peak=p, warmup_steps=w, decay_steps=T), weight_decay=0.02,
                       steps=T, key=jax.random.key(0), save_steps=6)
        np.testing.assert_allclose(np.asarray(run.norms)[c], np.asarray(one.norms), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(np.asarray(run.times)[c], np.asarray(one.times), rtol=1e-5)
    assert not np.allclose(np.asarray(run2.norms)[0], np.asarray(run.norms)[0])


# ------------------------------------------------------------------ theory: the per-step maps


def _np_sgd_map(r0, pw2, lrs, wd):
    y = np.asarray(r0, np.float64) ** 2
    out = []
    for k in range(len(lrs)):
        y = (1 - lrs[k] * wd) ** 2 * y + lrs[k] ** 2 * pw2[k] / y
        out.append(np.sqrt(y))
    return np.stack(out)


# The path length is a shape: each new one compiles the scans again, so the lengths come from a
# few (1 and 2: the edges; 13, 60: longer paths) and the values from everywhere.
@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-3, 1.0), wd=st.floats(0.0, 0.1), r0=st.floats(0.2, 3.0), pw2=st.floats(1e-4, 0.5),
       steps=st.sampled_from([1, 2, 13, 60]))
def test_per_step_map_equals_constant_map(lr, wd, r0, pw2, steps):
    pw2_path = np.full((steps, 2), pw2) * np.array([1.0, 0.3])
    lrs = np.full(steps, lr)
    a = np.asarray(theory.meanfield_norm_path_lr(np.array([r0, r0]), pw2_path, lrs, wd))
    b = np.asarray(theory.meanfield_norm_path(np.array([r0, r0]), pw2_path, lr, wd))
    np.testing.assert_allclose(a, b, rtol=1e-12)
    inc = np.array([8.0, 3.0])
    c = np.asarray(theory.r2_path_lr(np.array([r0, r0]), np.broadcast_to(inc, (steps, 2)), lrs, wd))
    y = np.full(2, r0**2)
    for _ in range(steps):
        y = (1 - lr * wd) ** 2 * y + lr**2 * inc
    np.testing.assert_allclose(c[-1], np.sqrt(y), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(peak=st.floats(0.01, 1.0), wd=st.floats(0.0, 0.05), warm=st.integers(0, 30), steps=st.sampled_from([31, 77, 120]))
def test_per_step_map_equals_numpy_loop_under_a_schedule(peak, wd, warm, steps):
    lrs = np.asarray(WarmupCosine(peak=peak, warmup_steps=warm, decay_steps=steps).astype(jnp.float64)(
        jnp.arange(steps)))
    pw2 = np.linspace(0.05, 0.01, steps)[:, None] * np.array([1.0, 2.0])
    got = np.asarray(theory.meanfield_norm_path_lr(np.array([1.0, 0.5]), pw2, lrs, wd))
    np.testing.assert_allclose(got, _np_sgd_map([1.0, 0.5], pw2, lrs, wd), rtol=1e-12)


def test_norm_freezes_when_lr_reaches_zero():
    # cosine to 0: the last steps have η_k → 0, so R_{k+1} - R_k → 0 (docs/theory.md §13.2)
    steps = 400
    lrs = np.asarray(WarmupCosine(peak=0.5, warmup_steps=20, decay_steps=steps).astype(jnp.float64)(jnp.arange(steps)))
    r = np.asarray(theory.meanfield_norm_path_lr(np.array([1.0]), np.full((steps, 1), 0.02), lrs, 0.01))[:, 0]
    assert abs(r[-1] - r[-2]) < 1e-6 * r[-1]
    # over the last 40 steps R² can move at most Σ_k (2η_kλR² + η_k²pW²/R²): O(η_k) → 0
    tail = lrs[-40:]
    bound = np.sum(2 * tail * 0.01 * r[-41] ** 2 + tail**2 * 0.02 / r[-1] ** 2)
    assert abs(r[-1] ** 2 - r[-41] ** 2) <= bound
    assert bound < 0.01 * r[-1] ** 2


def _ctx(lr_path, steps=80):
    rng = np.random.default_rng(0)
    pw2 = rng.uniform(0.005, 0.05, (5, 4))
    return theory.Context(steps=np.array([0, 10, 40, steps]), r0=np.array([1.0, 0.8, 1.2, 0.5]),
                          stat_steps=np.array([0, 20, 40, 60, steps]), p=np.full((5, 4), 0.5), pw2=pw2,
                          mean_sq=0.3 * pw2, var=0.7 * pw2, dim=8, lr=0.3, weight_decay=0.02, total_steps=steps,
                          lr_path=lr_path)


def test_shared_helpers_with_constant_lr_path_equal_constant():
    steps = 80
    c0, c1 = _ctx(None, steps), _ctx(np.full(steps, 0.3), steps)
    for kw in ({}, {"lr_scale": 10.0}, {"lr_scale": 10.0, "decay_scale": 10.0}, {"energy_scale": 0.5}):
        a = theory._context.meanfield_prediction(c0, **kw)
        b = theory._context.meanfield_prediction(c1, **kw)
        np.testing.assert_allclose(b[1], a[1], rtol=1e-12)
    for inc in (8.0, np.array([8.0, 4.0, 2.0, 1.0])):
        np.testing.assert_allclose(theory._context.r2_recursion(c1, inc)[1], theory._context.r2_recursion(c0, inc)[1],
                                   rtol=1e-12)


def test_adam_vlag_map_matches_numpy():
    # the §13.3 recursion written out in NumPy (float64), and its first step (v̂_0 = e_0: Γ_0 = d)
    steps, d = 300, 8
    lrs = np.full(steps, 0.01)
    pw2 = np.linspace(0.03, 0.002, steps)[:, None] * np.ones(2)
    got = np.asarray(theory.adam_meanfield_path_lr(np.array([1.0, 2.0]), pw2, lrs, 0.05, d, 0.999, 0.0))
    y, v, out = np.array([1.0, 4.0]), np.zeros(2), []
    for k in range(steps):
        e = pw2[k] / (d * y)
        v = 0.999 * v + 0.001 * e
        y = (1 - 0.01 * 0.05) ** 2 * y + 0.01**2 * d * e / (v / (1 - 0.999 ** (k + 1)))
        out.append(np.sqrt(y))
    np.testing.assert_allclose(got, np.stack(out), rtol=1e-10)
    # first step: v̂_0 = e_0, so Γ_0 = d exactly
    np.testing.assert_allclose(got[0] ** 2, (1 - 5e-4) ** 2 * np.array([1.0, 4.0]) + 1e-4 * d, rtol=1e-12)


# ------------------------------------------------------------------ the sim


def test_sim_quick(tmp_path):
    out, figs = tmp_path / "out", tmp_path / "figs"
    from conftest import run_experiment

    rc, stdout, stderr = run_experiment("schedule", ["--quick", "--quiet", "--out", str(out), "--figures", str(figs)])
    assert rc == 0, stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "ok"
    assert (figs / "schedule.png").stat().st_size > 10_000
    sgd = res["optimizers"]["sgd"]
    # recompute the headline from the stored per-depth paths
    err = np.asarray(sgd["trajectory"]["norm_by_level"]) / np.asarray(sgd["trajectory"]["theory_by_level"]) - 1
    assert np.isclose(np.max(np.abs(err)), sgd["worst_rel_error"])
    # SGD+decay's per-step map holds along the whole path (docs/theory.md §13.2: the mean-field
    # error is O(ε²) ~ 1e-3 plus the pW² interpolation between measurements; target 3 %)
    assert sgd["worst_rel_error"] < 0.03
    lr = np.asarray(sgd["trajectory"]["lr_at_step"])
    assert lr[0] == 0 and lr.max() <= 0.5 + 1e-6 and lr[-1] < 1e-3
    assert "WITHIN" in stdout or "MISSES" in stdout
    # docs/theory.md §16: each optimizer's run is checked against its formula's measured region
    # at the schedule's peak lr; recomputed here from the run's own config and task
    cfg = res["config"]
    task_ = nf.HierarchicalTask(depth=cfg["depth"], branching=cfg["branching"], dim=cfg["dim"],
                                key=jax.random.split(jax.random.key(cfg["seed"]), 3)[0])
    p = np.asarray(task_.frequency(cfg["batch_size"]), float)
    for name, r in res["optimizers"].items():
        v = r["validity"]
        assert set(v) == {"inside", "map", "message", "detail", "note"} and "peak" in v["note"]
        want = nf.validity.check(name, lr=r["peak_lr"], weight_decay=r["weight_decay"], p=p, momentum=0.9, b2=0.999)
        assert v["inside"] == want.inside and v["map"] == want.family and v["message"] == want.message
        assert (want.message in stdout) == (want.inside is False)
