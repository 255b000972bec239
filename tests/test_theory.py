"""Tests of normflow.theory: every expected value is computed here independently (numpy loops,
ODE integration, direct vector algebra, np.roots), never copied from the code under test."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from normflow import theory  # noqa: E402

RNG = np.random.default_rng(0)


def _rk4(f, y0, t_end, n):
    """Classical RK4 in numpy, ``n`` steps of size ``t_end/n``."""
    h = t_end / n
    y = np.array(y0, dtype=np.float64)
    for _ in range(n):
        k1 = f(y)
        k2 = f(y + 0.5 * h * k1)
        k3 = f(y + 0.5 * h * k2)
        k4 = f(y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _meanfield_numpy(r0, pw2_path, lr, wd):
    """R²_{k+1} = (1-ηλ)² R²_k + η² pW²_k / R²_k, returning R_{k+1} for every k."""
    q = (1 - lr * wd) ** 2
    y = np.asarray(r0, dtype=np.float64) ** 2
    out = []
    for pw2 in pw2_path:
        y = q * y + lr**2 * pw2 / y
        out.append(np.sqrt(y))
    return np.array(out)


# ----------------------------------------------------------------------------- §2


def test_step_norm_sq_matches_vector_step():
    d, n = 7, 50
    x = RNG.normal(size=(n, d)) * RNG.uniform(0.1, 5, size=(n, 1))
    u = RNG.normal(size=(n, d))
    lr = RNG.uniform(1e-3, 0.5, size=n)
    wd = RNG.uniform(0, 1, size=n)
    r = np.linalg.norm(x, axis=1)
    x_new = (1 - lr * wd)[:, None] * x - lr[:, None] * u
    got = theory.step_norm_sq(r, np.sum(x * u, axis=1) / r, np.sum(u * u, axis=1), lr, wd)
    np.testing.assert_allclose(np.asarray(got), np.sum(x_new**2, axis=1), rtol=1e-12)


def test_gd_norm_step_matches_tangent_gradient_step():
    d, n = 5, 40
    x = RNG.normal(size=(n, d))
    g = RNG.normal(size=(n, d))
    g -= np.sum(g * x, axis=1, keepdims=True) / np.sum(x * x, axis=1, keepdims=True) * x  # g ⊥ x
    lr, wd = 0.3, 0.2
    x_new = (1 - lr * wd) * x - lr * g
    got = theory.gd_norm_step(np.linalg.norm(x, axis=1), np.sum(g * g, axis=1), lr, wd)
    np.testing.assert_allclose(np.asarray(got), np.linalg.norm(x_new, axis=1), rtol=1e-12)
    # default weight_decay = 0
    got0 = theory.gd_norm_step(np.linalg.norm(x, axis=1), np.sum(g * g, axis=1), lr)
    np.testing.assert_allclose(np.asarray(got0), np.linalg.norm(x - lr * g, axis=1), rtol=1e-12)


# ----------------------------------------------------------------------------- §3


def test_gradient_flow_norm_vs_rk4():
    a = np.array([0.3, -1.2, 0.7])  # L(x) = -a·x̂, ∇L = -P a / R (tangent)
    lam, t_end = 0.35, 3.0

    def field(x):
        r = np.linalg.norm(x)
        xh = x / r
        grad = -(a - xh * (xh @ a)) / r
        return -grad - lam * x

    x0 = np.array([1.0, 0.5, -2.0])
    x_t = _rk4(field, x0, t_end, 3000)
    got = theory.gradient_flow_norm(np.linalg.norm(x0), t_end, lam)
    np.testing.assert_allclose(float(got), np.linalg.norm(x_t), rtol=1e-9)
    # the direction really moved (the test is not trivial)
    assert np.linalg.norm(x_t / np.linalg.norm(x_t) - x0 / np.linalg.norm(x0)) > 0.1


# ----------------------------------------------------------------------------- §4


def test_modified_flow_vs_rk4():
    r0, s2, lr, t_end = np.array([0.5, 1.0, 3.0]), np.array([2.0, 0.3, 5.0]), 0.05, 4.0
    r_t = np.sqrt(_rk4(lambda y: lr * s2 / y, r0**2, t_end, 4000))  # dR²/dt = η|s̄|²/R²
    np.testing.assert_allclose(np.asarray(theory.modified_flow_norm(r0, s2, lr, t_end)), r_t, rtol=1e-10)


def test_modified_flow_vs_gd_differs_by_dropped_term():
    """GD adds η⁴|s̄|⁴/R_k⁴ per step to R⁴ beyond the flow: check that exact bookkeeping."""
    r0, s2, lr, steps = 1.0, 0.5, 0.1, 400
    r = r0
    dropped = 0.0
    for _ in range(steps):
        dropped += lr**4 * s2**2 / r**4
        r = np.sqrt(r**2 + lr**2 * s2 / r**2)  # exact GD norm, independent of the module
    flow = float(theory.modified_flow_norm(r0, s2, lr, lr * steps))
    np.testing.assert_allclose(r**4 - flow**4, dropped, rtol=1e-9)
    assert dropped > 0 and dropped / r**4 < 1e-2  # small in the ε ≪ 1 regime
    # the module's one-step GD norm agrees with the loop
    gd_step = jax.jit(theory.gd_norm_step)
    rr = r0
    for _ in range(steps):
        rr = float(gd_step(rr, s2 / rr**2, lr))
    np.testing.assert_allclose(rr, r, rtol=1e-12)


def test_angular_step_is_tangent_of_the_turn():
    x = np.array([2.0, -1.0, 0.5])
    s = np.array([0.4, 1.1, 0.6])
    s -= (s @ x) / (x @ x) * x  # unit-radius source, tangent
    r, lr = np.linalg.norm(x), 0.7
    x_new = x - lr * s / r  # GD step with ∇L = s/R
    angle = np.arccos(x @ x_new / (r * np.linalg.norm(x_new)))
    eps = float(theory.angular_step(lr, np.linalg.norm(s), r))
    np.testing.assert_allclose(np.arctan(eps), angle, rtol=1e-10)


# ----------------------------------------------------------------------------- §5


def test_sgd_imprint_constant_path_equals_const():
    r0 = np.array([0.5, 1.0, 2.0])
    pw2 = np.array([0.1, 1.0, 3.0])
    lr, steps = 0.05, 300
    path = np.broadcast_to(pw2, (steps, 3))
    got = theory.sgd_imprint(r0, path, lr)
    want = theory.sgd_imprint_const(r0, pw2, lr, steps)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12)
    full = theory.sgd_imprint_path(r0, path, lr)
    assert full.shape == (steps, 3)
    np.testing.assert_allclose(np.asarray(full[-1]), np.asarray(got), rtol=1e-12)
    ks = np.arange(1, steps + 1)[:, None]
    np.testing.assert_allclose(
        np.asarray(full), np.asarray(theory.sgd_imprint_const(r0, pw2, lr, ks)), rtol=1e-12
    )


def test_sgd_imprint_vs_meanfield_map():
    """Mean-field R⁴ exceeds the imprint by exactly Σ_k η⁴ (pW²_k)² / R_k⁴ (the dropped term)."""
    steps, lr, r0 = 500, 0.05, 1.5
    pw2 = RNG.uniform(0.2, 2.0, size=steps)
    mf = _meanfield_numpy(r0, pw2, lr, 0.0)
    r_prev = np.concatenate([[r0], mf[:-1]])
    dropped = np.cumsum(lr**4 * pw2**2 / r_prev**4)
    imp = np.asarray(theory.sgd_imprint_path(r0, pw2, lr))
    np.testing.assert_allclose(mf**4 - imp**4, dropped, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(float(theory.sgd_imprint(r0, pw2, lr)), imp[-1], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(theory.meanfield_norm_path(r0, pw2, lr)), mf, rtol=1e-12)


# ----------------------------------------------------------------------------- §6


def test_discrete_equilibrium_is_fixed_point_of_meanfield_map():
    pw2 = np.array([0.2, 1.0, 4.0])
    lr, wd = 0.1, 0.01  # ηλ = 1e-3; contraction 2q-1 ≈ 1-4e-3 per step
    mf = _meanfield_numpy(np.ones(3), np.broadcast_to(pw2, (20000, 3)), lr, wd)[-1]
    disc = np.asarray(theory.sgd_wd_equilibrium(pw2, lr, wd, discrete=True))
    cont = np.asarray(theory.sgd_wd_equilibrium(pw2, lr, wd, discrete=False))
    np.testing.assert_allclose(disc, mf, rtol=1e-6)
    # continuous form is off by O(ηλ): (disc/cont)^4 = 2/(2-ηλ) = 1 + ηλ/2 + ...
    excess = (mf / cont) ** 4 - 1
    eta_lam = lr * wd
    np.testing.assert_allclose(excess, eta_lam / (2 - eta_lam), rtol=1e-5)
    assert np.all((0.4 * eta_lam < excess) & (excess < 0.6 * eta_lam))
    # the module's scan iteration agrees with the numpy loop
    mf_mod = theory.meanfield_norm_path(1.0, np.broadcast_to(pw2, (20000, 3)), lr, wd)[-1]
    np.testing.assert_allclose(np.asarray(mf_mod), mf, rtol=1e-10)


def test_sgd_wd_relaxation_vs_ode():
    r0 = np.array([0.2, 1.0, 5.0])
    pw2 = np.array([1.0, 0.5, 2.0])
    lr, wd, steps = 0.1, 0.01, 500  # t = 50, 4λt = 2
    t = lr * steps
    s_t = _rk4(lambda s: 2 * lr * pw2 - 4 * wd * s, r0**4, t, 5000)
    got = np.asarray(theory.sgd_wd_relaxation(r0, pw2, lr, wd, steps))
    np.testing.assert_allclose(got, s_t**0.25, rtol=1e-4)
    # limits: steps = 0 → R0; long time → continuous equilibrium; λ = 0 → imprint
    np.testing.assert_allclose(np.asarray(theory.sgd_wd_relaxation(r0, pw2, lr, wd, 0)), r0, rtol=1e-14)
    np.testing.assert_allclose(
        np.asarray(theory.sgd_wd_relaxation(r0, pw2, lr, wd, 10**6)),
        (lr * pw2 / (2 * wd)) ** 0.25,
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        np.asarray(theory.sgd_wd_relaxation(r0, pw2, lr, 0.0, steps)),
        (r0**4 + 2 * lr**2 * pw2 * steps) ** 0.25,
        rtol=1e-13,
    )


def test_sgd_wd_relaxation_discrete_vs_recursion():
    r0 = np.array([0.3, 1.0, 4.0])
    pw2 = np.array([1.0, 0.5, 2.0])
    lr, wd, steps = 0.2, 0.05, 300
    q = (1 - lr * wd) ** 2
    s = r0**4
    for _ in range(steps):
        s = q**2 * s + 2 * q * lr**2 * pw2  # leading-order R⁴ recursion
    got = np.asarray(theory.sgd_wd_relaxation_discrete(r0, pw2, lr, wd, steps))
    np.testing.assert_allclose(got, s**0.25, rtol=1e-12)
    # its fixed point differs from the mean-field map's ("exact discrete") by exactly 2q/(1+q)
    s_star = float(theory.sgd_wd_relaxation_discrete(1.0, 1.0, lr, wd, 10**6)) ** 4
    mf_star = _meanfield_numpy(1.0, np.ones(20000), lr, wd)[-1] ** 4
    np.testing.assert_allclose(s_star / mf_star, 2 * q / (1 + q), rtol=1e-8)
    # λ = 0 is the imprint
    np.testing.assert_allclose(
        np.asarray(theory.sgd_wd_relaxation_discrete(r0, pw2, lr, 0.0, steps)),
        (r0**4 + 2 * lr**2 * pw2 * steps) ** 0.25,
        rtol=1e-13,
    )


def test_sgd_wd_imprint_constant_path_vs_relaxation():
    """Left-point sum vs integral: imprint term ratio x/(e^x-1), x = 4ηλ, so O(ηλ) apart."""
    r0, pw2, lr, wd, steps = np.array([0.5, 2.0]), np.array([1.0, 3.0]), 0.1, 0.02, 800
    path = np.broadcast_to(pw2, (steps, 2))
    got = np.asarray(theory.sgd_wd_imprint(r0, path, lr, wd))
    cont = np.asarray(theory.sgd_wd_relaxation(r0, pw2, lr, wd, steps))
    decayed = np.exp(-4 * wd * lr * steps) * r0**4
    x = 4 * lr * wd
    np.testing.assert_allclose((got**4 - decayed) / (cont**4 - decayed), x / np.expm1(x), rtol=1e-10)
    assert np.all(np.abs(got / cont - 1) <= lr * wd)  # R: ≤ (1/4)·2ηλ relative


def test_sgd_wd_imprint_random_path_vs_double_sum():
    steps, lr, wd = 300, 0.1, 0.03
    r0 = np.array([0.7, 1.3])
    path = RNG.uniform(0.0, 2.0, size=(steps, 2))
    t = lr * steps
    tk = lr * np.arange(steps)
    want = np.exp(-4 * wd * t) * r0**4 + 2 * lr * np.sum(lr * np.exp(-4 * wd * (t - tk))[:, None] * path, axis=0)
    got = np.asarray(theory.sgd_wd_imprint(r0, path, lr, wd))
    np.testing.assert_allclose(got, want**0.25, rtol=1e-12)
    full = np.asarray(theory.sgd_wd_imprint_path(r0, path, lr, wd))  # scan, separate code path
    assert full.shape == (steps, 2)
    np.testing.assert_allclose(full[-1], got, rtol=1e-12)
    np.testing.assert_allclose(full[99], np.asarray(theory.sgd_wd_imprint(r0, path[:100], lr, wd)), rtol=1e-12)
    # λ = 0 reduces to the plain imprint
    np.testing.assert_allclose(
        np.asarray(theory.sgd_wd_imprint(r0, path, lr, 0.0)), np.asarray(theory.sgd_imprint(r0, path, lr)), rtol=1e-12
    )


def test_path_functions_broadcast_one_path_over_concepts():
    """A 1-D path [steps] with per-concept lr/λ gives one trajectory per concept."""
    steps = 50
    path = RNG.uniform(0.1, 2.0, size=steps)
    lr, wd, r0 = np.array([0.05, 0.1, 0.2]), np.array([0.0, 0.01, 0.1]), np.array([1.0, 0.5, 2.0])
    for fn, args in [
        (theory.sgd_imprint_path, (r0, path, lr)),
        (theory.meanfield_norm_path, (r0, path, lr, wd)),
        (theory.sgd_wd_imprint_path, (r0, path, lr, wd)),
    ]:
        full = np.asarray(fn(*args))
        assert full.shape == (steps, 3)
        for i in range(3):
            one = np.asarray(fn(*(a[i] if np.ndim(a) == 1 and a is not path else a for a in args)))
            np.testing.assert_allclose(full[:, i], one, rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(theory.sgd_wd_imprint(r0, path, lr, wd)),
        np.asarray(theory.sgd_wd_imprint_path(r0, path, lr, wd))[-1],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        np.asarray(theory.sgd_imprint(r0, path, lr)), np.asarray(theory.sgd_imprint_path(r0, path, lr))[-1], rtol=1e-12
    )


def test_relaxation_steps_is_e_folding_of_meanfield_map():
    lr, wd, pw2 = 0.1, 0.005, 1.0
    eta_lam = lr * wd
    n = float(theory.relaxation_steps(lr, wd))
    np.testing.assert_allclose(n * 4 * lr * wd, 1.0, rtol=1e-14)
    s_star = _meanfield_numpy(1.0, np.full(40000, pw2), lr, wd)[-1] ** 4
    r0 = (1.01 * s_star) ** 0.25  # small perturbation: linear regime
    n_int = int(round(n))
    s_n = _meanfield_numpy(r0, np.full(n_int, pw2), lr, wd)[-1] ** 4
    ratio = (s_n - s_star) / (r0**4 - s_star)
    # exp(-1) up to O(ηλ) (linearised map: factor 2q-1 ≈ e^{-4ηλ(1+1.5ηλ)} per step)
    assert abs(ratio * np.e - 1) < 3 * eta_lam + 0.02
    # continuous relaxation: exactly e^{-1}
    assert n_int == n  # 1/(4·0.1·0.005) = 500 exactly
    cont = float(theory.sgd_wd_relaxation(r0, pw2, lr, wd, n_int)) ** 4
    c_star = lr * pw2 / (2 * wd)
    np.testing.assert_allclose((cont - c_star) / (r0**4 - c_star), np.exp(-1), rtol=1e-9)


def test_equilibrium_angular_step_consistent_with_angular_step():
    lr, wd = 0.05, np.array([1e-3, 1e-2, 0.1])
    p, w2 = np.array([0.01, 0.3, 1.0]), np.array([2.0, 0.5, 1.0])
    r_star = theory.sgd_wd_equilibrium(p * w2, lr, wd, discrete=False)
    eps = theory.angular_step(lr, np.sqrt(w2), r_star)
    np.testing.assert_allclose(np.asarray(theory.equilibrium_angular_step(lr, wd, p)), np.asarray(eps), rtol=1e-12)


# ----------------------------------------------------------------------------- §7


def test_momentum_scalings():
    pw2, lr, wd = 0.7, 0.05, 0.01
    betas = np.array([0.0, 0.5, 0.9, 0.99])
    base4 = lr * pw2 / (2 * wd)
    coupled = np.asarray(theory.momentum_equilibrium(pw2, lr, wd, betas)) ** 4
    decoupled = np.asarray(theory.momentum_equilibrium(pw2, lr, wd, betas, decoupled=True)) ** 4
    np.testing.assert_allclose(coupled * (1 - betas), base4, rtol=1e-12)
    np.testing.assert_allclose(decoupled * (1 - betas) ** 2, base4, rtol=1e-12)
    np.testing.assert_allclose(decoupled / coupled, 1 / (1 - betas), rtol=1e-12)
    np.testing.assert_allclose(coupled[0], float(theory.sgd_wd_equilibrium(pw2, lr, wd, discrete=False)) ** 4, rtol=1e-12)


# ----------------------------------------------------------------------------- §8


def test_adamw_crossover_and_monotone():
    lr, wd, dim, b2 = 1e-3, 0.1, 64, 0.999
    freq = float(theory.adamw_equilibrium(lr, wd, dim))
    np.testing.assert_allclose(freq**2, lr * dim / (2 * wd), rtol=1e-12)
    np.testing.assert_allclose(float(theory.adamw_rare_equilibrium(lr, wd, dim, 1 - b2, b2)), freq, rtol=1e-12)
    p = np.logspace(-6, 0, 2001)
    r = np.asarray(theory.adamw_equilibrium_by_frequency(lr, wd, dim, p, b2))
    assert np.all(np.diff(r) >= 0)
    # continuity: jumps between neighbours are bounded by the rare branch's own slope
    rare = np.asarray(theory.adamw_rare_equilibrium(lr, wd, dim, p, b2))
    assert np.max(np.abs(np.diff(r))) <= np.max(np.abs(np.diff(rare))) + 1e-15
    c = 1 - b2
    around = np.asarray(theory.adamw_equilibrium_by_frequency(lr, wd, dim, np.array([c * (1 - 1e-9), c * (1 + 1e-9)]), b2))
    np.testing.assert_allclose(around, freq, rtol=1e-8)
    np.testing.assert_allclose(r[p > 10 * c], freq, rtol=1e-12)
    np.testing.assert_allclose(r[p < c / 10], rare[p < c / 10], rtol=1e-12)


# ----------------------------------------------------------------------------- §9


def _quartic_rel_residual(r, d, pw2, lr, wd):
    r, d = np.asarray(r, dtype=np.float64), np.asarray(d, dtype=np.float64)
    res = 2 * wd * r**4 - 2 * d * r**3 - lr * pw2
    scale = 2 * wd * r**4 + 2 * np.abs(d) * r**3 + lr * pw2
    return np.abs(res) / scale


@settings(max_examples=60, deadline=None)
@given(
    d=st.floats(-1e2, 1e2, allow_nan=False),
    pw2=st.floats(1e-6, 1e3),
    lr=st.floats(1e-4, 1.0),
    wd=st.floats(1e-5, 1.0),
)
def test_balance_norm_residual_hypothesis(d, pw2, lr, wd):
    r = float(theory.balance_norm(d, pw2, lr, wd))
    assert r > 0
    assert _quartic_rel_residual(r, d, pw2, lr, wd) < 1e-10


def test_balance_norm_vectorised_vs_np_roots():
    n = 400
    d = RNG.normal(size=n) * 10.0 ** RNG.uniform(-4, 2, size=n)
    pw2 = 10.0 ** RNG.uniform(-4, 2, size=n)
    lr = 10.0 ** RNG.uniform(-4, 0, size=n)
    wd = 10.0 ** RNG.uniform(-4, 0, size=n)
    r = np.asarray(jax.jit(theory.balance_norm)(d, pw2, lr, wd))
    assert r.shape == (n,) and np.all(r > 0)
    assert np.max(_quartic_rel_residual(r, d, pw2, lr, wd)) < 1e-10
    for i in range(0, n, 20):
        roots = np.roots([2 * wd[i], -2 * d[i], 0.0, 0.0, -lr[i] * pw2[i]])
        pos = roots[(np.abs(roots.imag) < 1e-9 * np.abs(roots)) & (roots.real > 0)].real
        assert pos.size == 1  # unique positive root
        np.testing.assert_allclose(r[i], pos[0], rtol=1e-7)


def test_balance_norm_zero_drift_is_sgd_equilibrium():
    pw2 = np.array([1e-3, 0.5, 20.0])
    lr, wd = np.array([0.01, 0.1, 0.5]), np.array([1e-3, 0.05, 0.3])
    got = np.asarray(theory.balance_norm(0.0, pw2, lr, wd))
    np.testing.assert_allclose(got, (lr * pw2 / (2 * wd)) ** 0.25, rtol=1e-13)
    np.testing.assert_allclose(got, np.asarray(theory.sgd_wd_equilibrium(pw2, lr, wd, discrete=False)), rtol=1e-13)
    # outward drift raises the norm, inward drift lowers it
    assert np.all(np.asarray(theory.balance_norm(0.1, pw2, lr, wd)) > got)
    assert np.all(np.asarray(theory.balance_norm(-0.1, pw2, lr, wd)) < got)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_respected(dtype):
    one = np.ones(3, dtype=dtype)
    path = np.ones((4, 3), dtype=dtype)

    def everything(one, path):  # traced once more as a whole: dtypes must survive nesting too
        return [
            theory.gradient_flow_norm(one, 1.0, 0.1),
            theory.gd_norm_step(one, one, 0.1, 0.01),
            theory.step_norm_sq(one, one, one, 0.1, 0.01),
            theory.modified_flow_norm(one, one, 0.1, 2.0),
            theory.angular_step(0.1, one, one),
            theory.sgd_imprint(one, path, 0.1),
            theory.sgd_imprint_path(one, path, 0.1),
            theory.sgd_imprint_const(one, one, 0.1, 10),
            theory.meanfield_norm_path(one, path, 0.1, 0.01),
            theory.sgd_wd_relaxation(one, one, 0.1, 0.01, 10),
            theory.sgd_wd_relaxation_discrete(one, one, 0.1, 0.01, 10),
            theory.sgd_wd_equilibrium(one, 0.1, 0.01),
            theory.sgd_wd_imprint(one, path, 0.1, 0.01),
            theory.sgd_wd_imprint_path(one, path, 0.1, 0.01),
            theory.relaxation_steps(0.1, one),
            theory.equilibrium_angular_step(0.1, 0.01, one),
            theory.momentum_equilibrium(one, 0.1, 0.01, 0.9),
            theory.adamw_equilibrium(0.1, 0.01, one),
            theory.adamw_rare_equilibrium(0.1, 0.01, 8, one * 1e-4, 0.999),
            theory.adamw_equilibrium_by_frequency(0.1, 0.01, 8, one * 1e-4, 0.999),
            theory.balance_norm(one, one, 0.1, 0.01),
        ]

    outs = jax.jit(everything)(one, path)
    for out in outs:
        assert out.dtype == dtype
        assert np.all(np.isfinite(np.asarray(out)))
    # float32 balance_norm still solves its quartic to float32 precision
    r = np.asarray(theory.balance_norm(one * dtype(-0.3), one, dtype(0.1), dtype(0.01)))
    assert np.max(_quartic_rel_residual(r, -0.3, 1.0, 0.1, 0.01)) < 10 * np.finfo(dtype).eps
