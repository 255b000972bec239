"""Tests of the Adam-family recursion (docs/theory.md §8.3–§8.5): expected values come from
independent NumPy loops and from direct float64 simulations of a reduced model (a free vector
with isotropic tangent noise, no well), never from the code under test."""

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from normflow import theory  # noqa: E402


def _free_numpy(r0, pw2, fac, lr, b2, d):
    """R²' = R² + η² d ρ f, ρ = E/ν̂, ν = EMA_β₂(E), E = pW²/R² (docs/theory.md §8.3)."""
    X = np.asarray(r0, float) ** 2
    nu = np.zeros_like(X)
    out = []
    for k, (e, f) in enumerate(zip(pw2, fac)):
        E = e / X
        nu = b2 * nu + (1 - b2) * E
        rho = E / (nu / (1 - b2 ** (k + 1)))
        X = X + lr**2 * d * rho * f
        out.append(X)
    return np.array(out)


# dim is a static argument of adam_moments (each new one compiles again): a few, from 2 to 64
@settings(max_examples=15, deadline=None)
@given(lr=st.floats(1e-3, 3e-2), b2=st.floats(0.9, 0.999), d=st.sampled_from([2, 5, 64]), decay=st.floats(0.0, 5e-3))
def test_free_recursion_matches_numpy(lr, b2, d, decay):
    T = 300
    pw2 = (0.02 * np.exp(-decay * np.arange(T)) + 1e-3)[:, None] * np.array([1.0, 0.3])
    fac = np.full_like(pw2, 0.97)
    xs, _ = theory.adam_moments(np.array([1.0, 0.7]), pw2, fac, np.full(T, lr), 0.0, 0.9, b2, dim=d, kind="free")
    np.testing.assert_allclose(np.asarray(xs), _free_numpy([1.0, 0.7], pw2, fac, lr, b2, d), rtol=1e-10)


def test_constant_energy_free_walk_is_scale_free():
    """Constant pW² and R hardly moving: ρ → 1 and R² grows by η²d per step (§8.3, f = 1)."""
    T = 50
    xs, _ = theory.adam_moments(np.array([100.0]), np.full((T, 1), 0.01), np.ones((T, 1)), np.full(T, 1e-2), 0.0,
                                0.9, 0.999, dim=32, kind="free")
    # R² = 1e4 changes by 32e-4 per step: ρ - 1 = O(ΔR²/R² · T) < 1e-5
    np.testing.assert_allclose(np.asarray(xs)[:, 0] - 1e4, 1e-4 * 32 * np.arange(1, T + 1), rtol=1e-5)


@pytest.mark.parametrize("lr,wd", [(1e-2, 0.05), (2e-2, 0.1)])
def test_projected_fixed_point(lr, wd):
    """The recursion's fixed point equals the closed form adamp_equilibrium (§8.5)."""
    T = 40000
    xs, s2 = theory.adam_moments(np.array([0.5]), np.full((T, 1), 0.01), np.full((T, 1), 0.95), np.full(T, lr), wd,
                                 0.9, 0.999, dim=32, kind="projected")
    r_star = theory.adamp_equilibrium(lr, wd, 0.9, 32, 0.95)
    assert np.sqrt(np.asarray(xs)[-1, 0]) == pytest.approx(r_star, rel=1e-6)
    # rotation at the fixed point: sin²θ = η²U/R² = 1-(1-ηλ)²
    assert np.asarray(s2)[-1, 0] == pytest.approx(1 - (1 - lr * wd) ** 2, rel=1e-6)


def test_l2_fixed_point_leading_order():
    """Adam+L2's recursion at constant pW² settles at R*³ = η√(d pW²)/(2λ) up to O(Q), Q = λ²R⁴/pW² (§8.4)."""
    lr, wd, d = 1e-2, 0.05, 32
    for pw2 in (1e-2, 2e-4):
        T = 40000
        xs, _ = theory.adam_moments(np.array([0.3]), np.full((T, 1), pw2), np.ones((T, 1)), np.full(T, lr), wd,
                                    0.9, 0.999, dim=d, kind="l2")
        r = np.sqrt(np.asarray(xs)[-1, 0])
        r_lo = theory.adam_l2_equilibrium(pw2, lr, wd, d)
        Q = wd**2 * r_lo**4 / pw2
        # corrections: E[y/√(1+Qy)] = 1 - 3Q/2 + …, E[1/(1+Qy)] = 1 - Q + …, the decay's own η²Qd term
        # and the O(η) term of the map: R³ moves by (3Q/2 - Q + Q·… ) relative, bounded by 3Q + η d/R·Q
        assert abs(r / r_lo - 1) < 3 * Q + lr * d * Q / r_lo + 1e-3


def _simulate_reduced(kind, d, lr, wd, b1, b2, T, n_rep, seed=0, r0=1.0, scale=None):
    """A free vector x ∈ R^d per replica; gradient g = P_x ξ / R with ξ ~ N(0, I/d) (isotropic,
    uncorrelated tangent noise, energy W² = (d-1)/d at unit radius, p = 1); Adam (bias-corrected)
    with optional projection (AdamP) and decoupled decay, from |x| = r0. Returns R² per step [T, n_rep]."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rep, d))
    x *= r0 / np.linalg.norm(x, axis=1, keepdims=True)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    out = np.empty((T, n_rep))
    for k in range(T):
        r2 = np.sum(x * x, 1, keepdims=True)
        xh = x / np.sqrt(r2)
        xi = rng.normal(size=x.shape) / np.sqrt(d) * (1.0 if scale is None else scale[k])
        g = (xi - np.sum(xi * xh, 1, keepdims=True) * xh) / np.sqrt(r2)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** (k + 1))) / (np.sqrt(v / (1 - b2 ** (k + 1))) + 1e-30)
        if kind == "projected":
            u = u - np.sum(u * xh, 1, keepdims=True) * xh
        x = (1 - lr * wd) * x - lr * u
        out[k] = np.sum(x * x, 1)
    return out


def test_free_walk_direct_simulation():
    """Pure tangent noise, Adam without decay, from R₀ = 1 so that R² doubles within β₂'s memory:
    the recursion R²' = R² + η²dρ (§8.3, f = 1; ρ the second-moment lag) against the direct
    simulation, and against the scale-free walk R₀² + η²dk, which it must beat. Tolerance: the
    replica-average error (~1 %) plus the O(1/d) anisotropy of vᵢ."""
    d, lr, b2, T, n = 16, 1e-2, 0.99, 600, 400
    r2 = _simulate_reduced("free", d, lr, 0.0, 0.9, b2, T, n)
    xs, _ = theory.adam_moments(np.ones(1), np.full((T, 1), (d - 1) / d), np.ones((T, 1)), np.full(T, lr), 0.0, 0.9,
                                b2, dim=d, kind="free")
    obs, pred = r2[-1].mean(), float(np.asarray(xs)[-1, 0])
    naive = 1 + lr**2 * d * T
    assert obs == pytest.approx(pred, rel=0.01 + 1 / d)
    assert abs(obs / pred - 1) < abs(obs / naive - 1)


def test_free_walk_after_energy_collapse():
    """The leaves' mechanism (§8.3): the source energy falls 100-fold after 30 steps; v remembers
    the early gradients for ~1/(1-β₂) steps and throttles the walk (ρ ≪ 1). Recursion against the
    direct simulation (tolerance as above), and far from the scale-free walk."""
    d, lr, b2, T, n = 16, 1e-2, 0.999, 1500, 200
    scale = np.where(np.arange(T) < 30, 1.0, 0.1)
    r2 = _simulate_reduced("free", d, lr, 0.0, 0.9, b2, T, n, scale=scale)
    pw2 = ((d - 1) / d * scale**2)[:, None]
    xs, _ = theory.adam_moments(np.ones(1), pw2, np.ones((T, 1)), np.full(T, lr), 0.0, 0.9, b2, dim=d, kind="free")
    obs, pred = r2[-1].mean(), float(np.asarray(xs)[-1, 0])
    naive = 1 + lr**2 * d * T
    assert obs == pytest.approx(pred, rel=0.01 + 1 / d)
    assert obs < 1 + 0.6 * (naive - 1)


@pytest.mark.parametrize("d,lr,wd", [(16, 1e-2, 0.05), (16, 2e-2, 0.1)])
def test_adamp_direct_simulation(d, lr, wd):
    """AdamP with pure tangent noise settles at adamp_equilibrium (f = 1):
    U = dc/(1+(1-q²)(β₁/(1-β₁))²) (§8.5), not at the lab's earlier ηdc/(2λ). Started at that
    earlier value (so no relaxation from R₀ = 1 biases the average). Tolerance: the statistical
    error of the average over 200 replicas and T/2 steps (~0.5 %) plus the O(1/d) anisotropy of
    vᵢ that the isotropic derivation drops (1/d)."""
    T, n = 4000, 200
    naive = np.sqrt(lr * d * (0.1 / 1.9) / (2 * wd))
    r2 = _simulate_reduced("projected", d, lr, wd, 0.9, 0.999, T, n, r0=naive)
    obs = np.sqrt(r2[T // 2:].mean())
    pred = theory.adamp_equilibrium(lr, wd, 0.9, d)
    assert obs == pytest.approx(pred, rel=0.005 + 1 / d)
    assert abs(obs / pred - 1) < abs(obs / naive - 1)  # the projection lag is visible


@settings(max_examples=10, deadline=None)
@given(G=st.floats(0.0, 0.06), b1=st.floats(0.5, 0.9))
def test_decay_lag_gain_matches_linear_simulation(G, b1):
    """decay_lag_gain's closed form against a direct simulation of the scalar linear system
    N ← β₁N + (1-β₁)ξ, Pu = N + G·S, S ← β₁(S + Pu) (§8.4). Tolerance: the Monte-Carlo error of
    E|Pu|²/E|N|² over 4000 chains × 300 steps after burn-in (< 1 %)."""
    rng = np.random.default_rng(0)
    n, T, burn = 4000, 600, 300
    N = np.zeros(n)
    S = np.zeros(n)
    pu2, n2 = 0.0, 0.0
    for k in range(T):
        N = b1 * N + (1 - b1) * rng.normal(size=n)
        pu = N + G * S
        S = b1 * (S + pu)
        if k >= burn:
            pu2 += np.mean(pu**2)
            n2 += np.mean(N**2)
    assert pu2 / n2 == pytest.approx(float(theory.decay_lag_gain(G, b1)), rel=0.02)


def _simulate_l2(d, lr, wd, w2, T, n, r0, b1=0.9, b2=0.999, seed=0):
    """Adam with λx added to the gradient (adam_l2), isotropic tangent noise of energy w2 per
    step at unit radius; returns (R² [T, n], θ [T, n]) with sin θ = η|Pu|/|x'|."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x *= r0 / np.linalg.norm(x, axis=1, keepdims=True)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    R2, th = np.empty((T, n)), np.empty((T, n))
    for k in range(T):
        r2 = np.sum(x * x, 1, keepdims=True)
        xh = x / np.sqrt(r2)
        xi = rng.normal(size=x.shape) * np.sqrt(w2 / d)
        g = (xi - np.sum(xi * xh, 1, keepdims=True) * xh) / np.sqrt(r2) + wd * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        u = (m / (1 - b1 ** (k + 1))) / np.sqrt(v / (1 - b2 ** (k + 1)))
        x2 = x - lr * u
        pu = u - np.sum(u * xh, 1, keepdims=True) * xh
        R2[k] = np.sum(x2 * x2, 1)
        th[k] = np.arcsin(np.minimum(lr * np.linalg.norm(pu, axis=1) / np.sqrt(R2[k]), 1.0))
        x = x2
    return R2, th


@pytest.mark.parametrize("w2", [1e-2, 2e-4])
def test_adam_l2_direct_simulation(w2):
    """Adam+L2 with pure tangent noise (f = 1): the recursion's norm and rotation against a direct
    simulation (§8.4), at a generic-like (W² = 1e-2) and a specific-like (2e-4) energy. Started at
    the leading-order R*³ = η√(d pW²)/(2λ). Tolerance: the O(Q) terms dropped in the χ² moments'
    cross terms and the isotropic vᵢ (Q ≤ 0.02, with d = 32 the anisotropy 1/d of vᵢ enters
    u_r at O(Q/d)), plus the Monte-Carlo error (~0.5 %): 2 % in R and 3 % in θ."""
    d, lr, wd, T, n = 32, 1e-2, 0.05, 3000, 60
    pw2 = w2 * (d - 1) / d  # the tangent part of ξ
    r_lo = theory.adam_l2_equilibrium(pw2, lr, wd, d)
    R2, th = _simulate_l2(d, lr, wd, w2, T, n, r_lo)
    xs, s2 = theory.adam_moments(np.array([r_lo]), np.full((T, 1), pw2), np.ones((T, 1)), np.full(T, lr), wd, 0.9,
                                 0.999, dim=d, kind="l2")
    assert np.sqrt(R2[T // 2:].mean()) == pytest.approx(np.sqrt(np.asarray(xs)[-1, 0]), rel=0.02)
    assert np.sqrt((th[T // 2:] ** 2).mean()) == pytest.approx(np.arcsin(np.sqrt(np.asarray(s2)[-1, 0])), rel=0.03)


def test_free_recursion_with_no_energy_yet_takes_no_step():
    """A concept whose measured pW² is 0 for the first steps (not drawn in the statistics'
    minibatches) stays at R₀ until energy arrives, as Adam's 0/(0+eps) step does, and then
    follows the NumPy loop started there (no 0/0)."""
    T = 40
    pw2 = np.where(np.arange(T)[:, None] < 10, 0.0, 0.02) * np.ones((1, 2))
    fac = np.ones_like(pw2)
    xs, _ = theory.adam_moments(np.array([1.0, 0.5]), pw2, fac, np.full(T, 1e-2), 0.0, 0.9, 0.99, dim=8, kind="free")
    xs = np.asarray(xs)
    np.testing.assert_array_equal(xs[:10], np.broadcast_to([1.0, 0.25], (10, 2)))
    # from step 10 on: the loop with ν = 0 carried over, bias correction at the absolute step
    X, nu, ref = np.array([1.0, 0.25]), np.zeros(2), []
    for k in range(10, T):
        E = pw2[k] / X
        nu = 0.99 * nu + 0.01 * E
        X = X + 1e-4 * 8 * E / (nu / (1 - 0.99 ** (k + 1)))
        ref.append(X)
    np.testing.assert_allclose(xs[10:], np.array(ref), rtol=1e-12)
