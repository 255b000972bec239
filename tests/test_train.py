"""Discrete engine: docs/theory.md §2's identity, GD's norm law, projections, determinism, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import normflow as nf

CONSEC = np.arange(0, 41)  # consecutive recorded steps, so R_{k-1} is in the record


def _identity_rel_err(run, lr, wd):
    """max over steps/concepts of |R'² - [(1-ηλ)²R² - 2η(1-ηλ)R u_r + η²|u|²]| / R'²."""
    r = np.asarray(run.norms)
    lhs = r[1:] ** 2
    q = 1 - lr * wd
    rhs = q**2 * r[:-1] ** 2 - 2 * lr * q * r[:-1] * np.asarray(run.radial)[1:] + lr**2 * np.asarray(run.update_sq)[1:]
    return np.max(np.abs(lhs - rhs) / lhs)


def test_gd_norm_grows_by_squared_step(small_task):
    """docs/theory.md §4: R'² = R² + η²|g|² at every recorded step, to 1e-10 relative (float64)."""
    lr = 0.5
    run = nf.train(small_task, "gd", lr=lr, steps=40, key=jax.random.key(3), save_steps=CONSEC, n_full=96)
    r = np.asarray(run.norms)
    err = np.max(np.abs(r[1:] ** 2 - (r[:-1] ** 2 + lr**2 * np.asarray(run.update_sq)[1:])) / r[1:] ** 2)
    assert err < 1e-10, err
    assert np.all(r[-1] > r[0])  # the norm really grew (the identity is not vacuous)
    assert np.max(np.abs(run.radial[1:]) / np.sqrt(run.update_sq[1:])) < 1e-10


def test_gd_first_step_matches_independent_gradient(small_task):
    """|g|² computed here by jax.grad on the same full batch gives the recorded R after step 1."""
    lr, key = 0.5, jax.random.key(3)
    run = nf.train(small_task, "gd", lr=lr, steps=1, key=key, n_full=96)
    k_model, k_data = jax.random.split(key)
    model = nf.default_model(small_task, k_model)
    data = nf.full_batch(small_task, jax.random.fold_in(k_data, 2**31 - 1), 96)
    g = jax.grad(lambda m: nf.info_nce(m.embed_concepts(data.concepts), data.contexts, small_task.temperature))(model)
    r0 = jnp.linalg.norm(model.weight, axis=-1)
    expect = jnp.sqrt(r0**2 + lr**2 * jnp.sum(g.weight**2, -1))
    np.testing.assert_allclose(run.norms[-1], expect, rtol=1e-12)
    assert float(jnp.max(expect - r0)) > 1e-3


@pytest.mark.parametrize("opt", ["sgd", "sgdm", "adamw", "adam_l2"])
def test_exact_identity_every_optimizer(small_task, opt):
    """docs/theory.md §2's identity holds with the recorded u_r and |u|² (the record is consistent)."""
    lr = 0.05 if "adam" in opt else 0.5
    run = nf.train(small_task, opt, lr=lr, weight_decay=0.01, steps=40, key=jax.random.key(4), save_steps=CONSEC, batch_size=16)
    assert _identity_rel_err(run, lr, 0.01) < 1e-10


@pytest.mark.parametrize("opt", ["sgdp", "adamp"])
def test_projected_optimizers_have_no_radial_component(small_task, opt):
    lr = 0.05 if opt == "adamp" else 0.5
    run = nf.train(small_task, opt, lr=lr, weight_decay=0.01, steps=200, key=jax.random.key(5), batch_size=16)
    # u is recovered as ((1-ηλ)x - x')/η, so a concept absent from the batch (u = 0) shows
    # rounding noise of size eps·R/η: only steps that moved the concept are meaningful.
    moving = np.sqrt(np.asarray(run.update_sq)[1:]) > 1e-8 * np.asarray(run.norms)[:-1]
    rel = np.abs(np.asarray(run.radial)[1:][moving]) / np.sqrt(np.asarray(run.update_sq)[1:][moving])
    assert moving.sum() > 100 and rel.max() <= 1e-12, rel.max()
    # the unprojected optimizer does have a radial component: the check can fail
    base = nf.train(small_task, opt[:-1] + ("w" if opt == "adamp" else "mw"), lr=lr, weight_decay=0.01, steps=200,
                    key=jax.random.key(5), batch_size=16)
    mv = np.sqrt(np.asarray(base.update_sq)[1:]) > 1e-8 * np.asarray(base.norms)[:-1]
    assert np.max(np.abs(np.asarray(base.radial)[1:][mv]) / np.sqrt(np.asarray(base.update_sq)[1:][mv])) > 1e-3


def test_determinism_and_chunking(small_task):
    kw = dict(lr=0.3, weight_decay=1e-3, steps=300, batch_size=16)
    a = nf.train(small_task, "sgdm", key=jax.random.key(9), **kw)
    b = nf.train(small_task, "sgdm", key=jax.random.key(9), chunks=4, **kw)
    c = nf.train(small_task, "sgdm", key=jax.random.key(10), **kw)
    for f in ("steps", "norms", "radial", "angular", "update_sq", "loss"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    assert not np.array_equal(a.norms, c.norms)
    # chunk boundaries at chosen recorded steps: same run, and the callback sees exactly them
    seen = []
    s = np.asarray(a.steps)
    d = nf.train(small_task, "sgdm", key=jax.random.key(9), chunks=s[[3, 5, 20]],
                 callback=lambda k, m: seen.append(k), **kw)
    assert seen == [0, int(s[3]), int(s[5]), int(s[20]), 300]
    for f in ("norms", "radial", "update_sq"):
        assert np.array_equal(getattr(a, f), getattr(d, f)), f
    with pytest.raises(ValueError, match="chunks: step 7 is not a recorded step"):
        nf.train(small_task, "sgdm", key=jax.random.key(9), chunks=[7], save_steps=[10, 20], **kw)


def test_recording_is_sparse_and_log_spaced(small_task):
    run = nf.train(small_task, "sgd", lr=0.3, steps=5000, key=jax.random.key(1), save_steps=20, batch_size=8)
    s = np.asarray(run.steps)
    assert s[0] == 0 and s[-1] == 5000 and len(s) <= 21
    assert run.norms.shape == (len(s), small_task.num_concepts)
    np.testing.assert_allclose(run.times, 0.3 * s)
    assert s[2] / s[1] < s[-1] / s[-2] * 10  # geometric spacing, not linear


def test_divergence_is_caught_and_record_kept(small_task):
    task32 = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0))
    run = nf.train(task32, "sgd", lr=1e30, steps=50, key=jax.random.key(1), batch_size=16)
    assert int(run.diverged_step) >= 0 and 0 <= int(run.diverged_concept) < task32.num_concepts
    assert run.diverged
    assert np.all(np.isfinite(run.norms))  # parameters frozen before the bad update
    # chunked: stops after the chunk that diverged; the records before it are kept, the rest NaN
    chunked = nf.train(task32, "sgd", lr=1e30, steps=50, key=jax.random.key(1), batch_size=16, save_steps=np.arange(51),
                       chunks=5)
    assert int(chunked.diverged_step) == int(run.diverged_step)
    s = np.asarray(chunked.steps)
    assert np.all(np.isfinite(np.asarray(chunked.norms)[s <= int(chunked.diverged_step)]))
    assert np.all(np.isnan(np.asarray(chunked.norms)[s > 10]))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(optimizer="lamb"), "unknown optimizer 'lamb'; valid: gd, sgd"),
        (dict(lr=0.0), "lr must be > 0, got 0.0"),
        (dict(lr=-1.0), "lr must be > 0"),
        (dict(steps=0), "steps must be > 0, got 0"),
        (dict(batch_size=0), "batch_size must be > 0, got 0"),
        (dict(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
        (dict(optimizer="adam", weight_decay=0.1), "adam has no weight decay"),
    ],
)
def test_bad_arguments_raise(small_task, kw, msg):
    args = dict(optimizer="sgd", lr=0.1, steps=10, batch_size=8, weight_decay=0.0) | kw
    with pytest.raises(ValueError, match=msg):
        nf.train(small_task, args.pop("optimizer"), key=jax.random.key(0), **args)


def test_any_optax_transformation_is_recorded_exactly(small_task):
    """A user's own optax optimizer runs through the same engine: ``optax.sgd(η)`` with the lab's
    units (lr = η) reproduces the named ``sgd`` exactly; with the default units (lr = 1, u = -Δx)
    docs/theory.md §2's identity holds for an optimizer the lab has no name for (optax.lamb)."""

    kw = dict(steps=40, key=jax.random.key(6), save_steps=CONSEC, batch_size=16)
    named = nf.train(small_task, "sgd", lr=0.5, **kw)
    own = nf.train(small_task, optax.sgd(0.5), lr=0.5, **kw)
    for f in ("norms", "radial", "update_sq"):
        np.testing.assert_allclose(getattr(own, f), getattr(named, f), rtol=1e-12, atol=1e-300)
    lamb = nf.train(small_task, optax.lamb(1e-2), **kw)
    assert _identity_rel_err(lamb, 1.0, 0.0) < 1e-10
    assert float(np.max(np.abs(np.asarray(lamb.radial)[1:]))) > 0  # it does move the rows
    with pytest.raises(ValueError, match="lr is required for the named optimizer 'sgd'"):
        nf.train(small_task, "sgd", **kw)


def test_registry_is_the_one_place_per_optimizer():
    from normflow.defaults import DEFAULTS
    from normflow.optimizers import REGISTRY

    assert tuple(REGISTRY) == nf.OPTIMIZERS
    assert all(DEFAULTS[n] == (o.lr, o.weight_decay) for n, o in REGISTRY.items())
    assert [n for n, o in REGISTRY.items() if not o.decay] == ["adam"]
    assert [n for n, o in REGISTRY.items() if o.full_batch] == ["gd"]


def test_unguarded_run_is_the_guarded_run_and_still_names_divergence(small_task):
    """guard=False (no per-step keep-the-old-state select): the same trajectory bit for bit when
    nothing diverges; at a divergence the same step and concept are named, and the state is then
    not finite (it is not frozen)."""
    kw = dict(lr=1e-2, weight_decay=0.1, steps=120, key=jax.random.key(3), batch_size=16, save_steps=8)
    a = nf.train(small_task, "adamw", **kw)
    b = nf.train(small_task, "adamw", guard=False, **kw)
    for f in ("norms", "radial", "angular", "update_sq", "loss"):
        np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)), err_msg=f)
    task32 = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0))
    bad = dict(lr=1e30, steps=50, key=jax.random.key(1), batch_size=16)
    g, u = nf.train(task32, "sgd", **bad), nf.train(task32, "sgd", guard=False, **bad)
    assert int(u.diverged_step) == int(g.diverged_step) >= 0
    assert int(u.diverged_concept) == int(g.diverged_concept)
    assert np.all(np.isfinite(np.asarray(g.norms))) and not np.all(np.isfinite(np.asarray(u.norms)))


def test_lazy_guard_reruns_the_diverged_chunk_with_the_guarded_program():
    """The default guard runs each chunk unguarded and reruns only a diverged one with the
    per-step select: its run is the always-guarded program's (``nf.simulate``, one scan with the
    select) bit for bit, with one chunk or several (then the records after the diverged chunk
    are NaN, as before)."""
    from normflow.optimizers import Hyper
    from normflow.train import default_model, simulate
    from normflow.trajectory import normalize_save_steps

    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0))
    key = jax.random.key(1)
    lr = optax.piecewise_constant_schedule(1e-2, {20: 1e32})  # finite for 20 steps, then |x|² overflows
    bad = dict(lr=lr, steps=50, key=key, batch_size=16, save_steps=10)
    k_model, k_data = jax.random.split(key)
    hyper = Hyper(*(jnp.asarray(v, task.dtype) for v in (1.0, 0.0, 0.9, 0.9, 0.999, 1e-8)))._replace(lr=lr)
    ref = simulate(default_model(task, k_model), task, "sgd", hyper, k_data, steps=50,
                   save_steps=normalize_save_steps(10, 50), batch_size=16, loss_fn=nf.get_loss("info_nce"))
    one = nf.train(task, "sgd", **bad)
    assert int(ref.diverged_step) == 20  # mid-run: the rerun starts from the diverged chunk's own input
    assert (int(one.diverged_step), int(one.diverged_concept)) == (int(ref.diverged_step), int(ref.diverged_concept))
    for f in ("norms", "radial", "angular", "update_sq", "loss"):
        np.testing.assert_array_equal(np.asarray(getattr(one, f)), np.asarray(getattr(ref, f)), err_msg=f)
    many = nf.train(task, "sgd", chunks=5, **bad)
    s = np.asarray(many.steps)
    stop = int(np.searchsorted(s, int(ref.diverged_step), side="right"))  # records up to the diverged chunk
    assert int(many.diverged_step) == int(ref.diverged_step)
    n_ok = int(np.argmax(np.isnan(np.asarray(many.norms)[:, 0]))) or len(s)
    assert n_ok >= stop
    np.testing.assert_array_equal(np.asarray(many.norms)[:n_ok], np.asarray(ref.norms)[:n_ok])
