"""Tests of ``nf.theory.predict`` (docs/theory.md §15): one prediction per optimizer, and the
SGD-family predictions against direct NumPy iterations of their maps (computed here)."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import normflow as nf  # noqa: E402
from normflow import theory  # noqa: E402

RNG = np.random.default_rng(3)
N, T = 5, 400


def _ctx(**kw):
    stat_steps = np.array([0, 200, T])
    p = RNG.uniform(0.2, 1.0, (3, N))
    var = RNG.uniform(0.05, 0.5, (3, N))
    mean_sq = RNG.uniform(0.0, 0.05, (3, N))
    base = dict(steps=np.array([0, 1, 10, 100, 399, T]), r0=RNG.uniform(0.5, 1.5, N), stat_steps=stat_steps, p=p,
                pw2=p * (var + mean_sq), mean_sq=mean_sq, var=var, dim=16, lr=0.3, weight_decay=2e-3,
                total_steps=T, momentum=0.9, b1=0.9, b2=0.999)
    base.update(kw)
    return theory.Context(**base)


def _map(r0, pw2_path, eta, decay):
    """R²_{k+1} = (1 - decay)² R²_k + η² pW²_k / R²_k, row k = R after k steps."""
    y = np.asarray(r0, float) ** 2
    out = [np.sqrt(y)]
    for pw2 in pw2_path:
        y = (1 - decay) ** 2 * y + eta**2 * pw2 / y
        out.append(np.sqrt(y))
    return np.array(out)


def test_every_optimizer_has_a_prediction_that_cites_the_theory_page():
    ctx = _ctx(flow=lambda: np.ones((6, N)))
    for name in nf.OPTIMIZERS:
        pred = theory.predict(name, ctx)
        assert pred.optimizer == name
        assert pred.section.startswith("docs/theory.md §"), (name, pred.section)
        assert pred.norms.shape == (len(ctx.steps), N) and np.all(np.isfinite(pred.norms)) and np.all(pred.norms > 0)
        if pred.angular_update is not None:
            assert pred.angular_update.shape == (N,) and np.all(pred.angular_update > 0)
    assert set(theory.PREDICTIONS) == set(nf.OPTIMIZERS)


def test_unknown_optimizer_is_a_one_line_error():
    with pytest.raises(ValueError, match="no prediction for optimizer 'nope'"):
        theory.predict("nope", _ctx())


def test_context_path_interpolates_between_measurements():
    ctx = _ctx()
    path = ctx.path("pw2")
    assert path.shape == (T, N)
    np.testing.assert_allclose(path[0], ctx.pw2[0])
    np.testing.assert_allclose(path[200], ctx.pw2[1])
    np.testing.assert_allclose(path[100], 0.5 * (ctx.pw2[0] + ctx.pw2[1]))


@pytest.mark.parametrize("wd", [0.0, 2e-3])
def test_sgd_prediction_is_the_mean_field_map(wd):
    ctx = _ctx(weight_decay=wd)
    pred = theory.predict("sgd", ctx)
    full = _map(ctx.r0, ctx.path("pw2"), ctx.lr, ctx.lr * wd)
    np.testing.assert_allclose(pred.norms, full[ctx.steps], rtol=1e-12)
    assert pred.section == ("docs/theory.md §5" if wd == 0 else "docs/theory.md §6")
    assert pred.equilibrium == (wd > 0)
    # rms rotation per step over the last 20 %: θ_k = η sqrt(pW²_k)/R_k²
    k = np.arange(T)
    theta = ctx.lr * np.sqrt(ctx.path("pw2")) / full[:-1] ** 2
    np.testing.assert_allclose(pred.angular_update, np.sqrt(np.mean(theta[k >= 0.8 * T] ** 2, axis=0)), rtol=1e-12)


def test_sgd_angular_update_at_equilibrium_is_sqrt_2_eta_lambda():
    """At the mean-field fixed point η²pW²/R⁴ = 1-(1-ηλ)², whatever pW² (docs/theory.md §6, §14)."""
    pw2 = RNG.uniform(0.01, 1.0, N)
    lr, wd = 0.2, 5e-3
    r_star = np.asarray(theory.sgd_wd_equilibrium(pw2, lr, wd))
    c = np.array([0, T])
    ctx = _ctx(r0=r_star, stat_steps=c, p=np.ones((2, N)), pw2=np.stack([pw2, pw2]), mean_sq=np.zeros((2, N)),
               var=np.stack([pw2, pw2]), lr=lr, weight_decay=wd)
    pred = theory.predict("sgd", ctx)
    np.testing.assert_allclose(pred.norms, np.broadcast_to(r_star, pred.norms.shape), rtol=1e-10)
    np.testing.assert_allclose(pred.angular_update, np.sqrt(1 - (1 - lr * wd) ** 2), rtol=1e-10)


@pytest.mark.parametrize("name", ["sgd", "sgd_l2", "sgdm", "sgdmw", "sgdp", "adamw", "adam_l2", "adamp", "lion"])
def test_equilibrium_predictions_forget_the_initial_norm(name):
    """After many relaxation times an equilibrium formula does not depend on R₀."""
    c = _ctx()
    long = dict(total_steps=40_000, steps=np.array([0, 40_000]), stat_steps=np.array([0, 40_000]), lr=0.05,
                weight_decay=0.05, p=c.p[:2], pw2=c.pw2[:2], mean_sq=c.mean_sq[:2], var=c.var[:2])
    a = theory.predict(name, _ctx(r0=np.full(N, 0.5), **long))
    b = theory.predict(name, _ctx(r0=np.full(N, 2.0), **long))
    assert a.equilibrium and b.equilibrium
    np.testing.assert_allclose(a.norms[-1], b.norms[-1], rtol=1e-6)
