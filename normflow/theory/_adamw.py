"""AdamW at finite ηλ and at any frequency p (docs/theory.md §8.1–§8.2), and lazy AdamW (§8.6).

Notation: ``α = 1-ηλ`` the per-step decay, ``β₁, β₂`` Adam's moments, ``d`` the dimension, ``p``
the probability that the concept's row gets a gradient in a step. Everything rests on one exact
identity (docs/theory.md §8.1): with ``x_T = α^T x_0 - η Σ_k α^{T-1-k} u_k`` and sources that are
zero-mean given the past (a sighting's noise flips sign freely), the cross terms between
different sightings vanish and the time-averaged squared norm is

    ⟨R²⟩ = η² p Σ_{L≥1} E|w(L)|²,   w(L) = Σ_{l=0}^{L-1} α^{L-1-l} (1-β₁) β₁^l g₀/√v_l,

the discounted displacement that one sighting's gradient ``g₀`` has produced ``L`` steps later
(``v_l`` the second moment ``l`` steps after it, per coordinate).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._core import FloatLike, kernel_jit

from ._context import Context, Prediction, rms_window, window

__all__ = [
    "predict_adamw",
    "over_p",
    "adamw_finite_decay_factor",
    "adamw_equilibrium_finite",
    "adamw_restoring_factor",
    "adamw_restoring_gain",
    "adamw_frequency_r2",
    "adamw_frequency_equilibrium",
    "adamw_frequency_update_sq",
    "adamw_scale_variance",
    "adamw_tailed_r2",
    "adamw_tailed_update_sq",
    "lazy_adamw_r2",
]


# ----------------------------------------------------------------------------- §8.1 finite ηλ


@jax.jit
def adamw_finite_decay_factor(eta_lambda: FloatLike, b1: FloatLike) -> Float[Array, "..."]:
    """``F = R*²/(ηd/2λ)`` for AdamW on white sources at finite ηλ (docs/theory.md §8.1).

    ``F = (2ηλ/(1-α²)) · (1-β₁)(1+αβ₁)/((1+β₁)(1-αβ₁))``, ``α = 1-ηλ``.

    Derivation: the normalised gradients ``n_k = g_k/√v`` are white with ``E|n|² = d`` per
    step; the momentum's output ``u = (1-β₁)Σβ₁^i n_{k-i}`` has autocovariance
    ``d(1-β₁)/(1+β₁)·β₁^|τ|``; the exact step gives
    ``⟨R²⟩ = η²/(1-α²) Σ_τ α^|τ| C(τ)`` (docs/theory.md §8.1), and the sum is the factor above.
    ``F → 1`` as ``ηλ → 0`` (Kosson et al. 2024); ``F = 0.788`` at ηλ = 0.03, β₁ = 0.9.
    """
    el = jnp.asarray(eta_lambda, jnp.result_type(eta_lambda, b1, float))
    b1 = jnp.asarray(b1, el.dtype)
    a = 1 - el
    return (2 * el / (1 - a * a)) * (1 - b1) * (1 + a * b1) / ((1 + b1) * (1 - a * b1))


@jax.jit
def adamw_equilibrium_finite(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, b1: FloatLike
) -> Float[Array, "..."]:
    """AdamW's rms equilibrium norm on white sources at finite ηλ (docs/theory.md §8.1):
    ``R*² = η²d(1-β₁)(1+αβ₁)/((1-α²)(1+β₁)(1-αβ₁))``, i.e. ``(ηd/2λ)·F``. Returns ``R*``."""
    dtype = jnp.result_type(lr, weight_decay, dim, b1, float)
    lr, weight_decay, dim = (jnp.asarray(z, dtype) for z in (lr, weight_decay, dim))
    return jnp.sqrt(lr * dim / (2 * weight_decay) * adamw_finite_decay_factor(lr * weight_decay, b1))


def _lin_moments(gam, p, alpha, b1):
    """Stationary moments of the linear restoring model of docs/theory.md §8.1 (one coordinate).

    State ``(u_{k-1}, ψ_k, q_k)``, input ``ζ_k`` (unit variance), presence ``b_k ~ Bernoulli(p)``:
    ``n_k = b_k(ζ_k - γψ_k)/√p``, ``u_k = β₁u_{k-1} + (1-β₁)n_k``, ``ψ_{k+1} = ψ_k + u_k``
    (the angle, in units of the step), ``q_{k+1} = αq_k + u_k`` (the discounted displacement).
    Returns ``(S, f_m)``: ``S = (E u² + 2α lag)/E n²`` with
    ``lag = E[u_k q_k] - (1-β₁)/(1-αβ₁)·E[n_k q_k]`` and ``f_m = γ²Eψ²/E n²`` (the mean part's
    share of the source energy)."""
    dtype = jnp.result_type(gam, p, alpha, b1, float)
    gam, p, alpha, b1 = (jnp.asarray(z, dtype) for z in (gam, p, alpha, b1))
    zero, one = jnp.zeros((), dtype), jnp.ones((), dtype)

    def ab(c):
        au = jnp.stack([b1, -(1 - b1) * c * gam, zero])
        a = jnp.stack([au, jnp.stack([zero, one, zero]) + au, jnp.stack([zero, zero, alpha]) + au])
        bu = (1 - b1) * c
        return a, jnp.stack([bu, bu, bu])

    a1, bv1 = ab(1 / jnp.sqrt(p))
    a0, _ = ab(zero)
    m = p * jnp.kron(a1, a1) + (1 - p) * jnp.kron(a0, a0)
    s = jnp.linalg.solve(jnp.eye(9, dtype=dtype) - m, p * jnp.outer(bv1, bv1).ravel()).reshape(3, 3)
    sq = jnp.sqrt(p)
    en2 = 1 + gam**2 * s[1, 1]
    enq = -gam * sq * s[1, 2]
    eun = -gam * sq * s[0, 1]
    eu2 = b1**2 * s[0, 0] + 2 * b1 * (1 - b1) * eun + (1 - b1) ** 2 * en2
    lag = b1 * s[0, 2] + (1 - b1) * enq - (1 - b1) / (1 - alpha * b1) * enq
    return (eu2 + 2 * alpha * lag) / en2, gam**2 * s[1, 1] / en2


@kernel_jit(static_argnames=("iters",))
def adamw_restoring_gain(mean_fraction: FloatLike, p: FloatLike, b1: FloatLike, iters: int = 60) -> Float[Array, "..."]:
    """The restoring gain ``γ`` of the linear model (docs/theory.md §8.1) whose stationary
    mean-part share ``f_m = |s̄|²/(|s̄|²+V²)`` equals the measured one (bisection in log γ)."""
    dtype = jnp.result_type(mean_fraction, p, b1, float)
    fm, p, b1 = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (mean_fraction, p, b1)))

    def one(fm, p, b1):
        def body(_, lohi):
            lo, hi = lohi
            mid = 0.5 * (lo + hi)
            f = _lin_moments(10.0**mid, p, jnp.asarray(0.999, dtype), b1)[1]
            up = f < fm  # f_m does not depend on α (the angle is not decayed)
            return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

        # stable range: γ ≤ √p (a restoring kick per sighting below the step itself); f_m is
        # increasing there and reaches ≥ 0.33 at its end, above which it is clipped
        top = jnp.log10(jnp.sqrt(p))
        lo, hi = jax.lax.fori_loop(0, iters, body, (jnp.asarray(-12.0, dtype), top))
        return 10.0 ** (0.5 * (lo + hi))  # f_m <= 0 gives ~1e-12: the white limit

    return jnp.vectorize(one)(fm, p, b1)


@kernel_jit
def adamw_restoring_factor(eta_lambda: FloatLike, mean_fraction: FloatLike, p: FloatLike, b1: FloatLike
) -> Float[Array, "..."]:
    """Factor on AdamW's ``⟨R²⟩`` from the restoring part of the source (docs/theory.md §8.1).

    The measured mean part ``|s̄|² = f_m W²`` is the loss pulling ``x̂`` back to its optimum;
    it anticorrelates a gradient with the displacement of the ones before it, which shrinks the
    momentum's lag push ``-2ηαR⟨u_r⟩``. Linear model per coordinate (``_lin_moments``):
    ``n = (ζ - γψ)/√p`` at sightings, ``γ`` fixed by the measured ``f_m``. Factor =
    ``S(γ)/S(0)``; it is 1 at ``f_m = 0`` and ≈ ``1 - 0.5 f_m`` at β₁ = 0.9.
    """
    dtype = jnp.result_type(eta_lambda, mean_fraction, p, b1, float)
    el, fm, p, b1 = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (eta_lambda, mean_fraction, p, b1)))
    gam = adamw_restoring_gain(fm, p, b1)

    def one(el, g, p, b1):
        # γ = 0 is singular (the angle is then a free random walk): the white reference at γ = 1e-9·√p
        return _lin_moments(g, p, 1 - el, b1)[0] / _lin_moments(1e-9 * jnp.sqrt(p), p, 1 - el, b1)[0]

    return jnp.vectorize(one)(el, gam, p, b1)


# ----------------------------------------------------------------------------- §8.2 any frequency

_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)  # E over z ~ N(0,1); only z² enters,
_GH_W = 2 * _GH_W[_GH_X > 0] / _GH_W.sum()  # so the 12 positive nodes with doubled weights
_GH_X = _GH_X[_GH_X > 0]
_MOMENTUM_STEPS = 300  # β₁^300 < 1e-13 at β₁ = 0.9: the own-gradient terms end well before


_GAP_EDGES = np.unique(np.round(np.geomspace(1.0, 1e8, 121)))  # cells {lo, ..., hi-1} of the gap G
_PREV_EDGES = np.unique(np.round(np.geomspace(1.0, 1e8, 41)))  # coarser cells for the gap before it


def _gap_nodes(p, b2, edges=_GAP_EDGES):
    """Weights and memories of the gap since the last sighting, ``P(G=g) = p(1-p)^{g-1}``, lumped
    into log-spaced cells (exact for ``G < 30``): weight ``P(lo <= G < hi)`` and the exact mean
    of ``β₂^G`` over the cell."""
    lo = jnp.asarray(edges[:-1], p.dtype)
    hi = jnp.asarray(edges[1:], p.dtype)
    q = 1 - p
    w = q ** (lo - 1) - q ** (hi - 1)
    r = q * b2
    tiny = jnp.finfo(p.dtype).tiny
    mem = jnp.where(w > tiny, p * b2 * (r ** (lo - 1) - r ** (hi - 1)) / (1 - r) / jnp.maximum(w, tiny), 0.0)
    return jnp.where(w > tiny, w, 0.0), mem


def _memory(p, a, b2, z):
    """``[G, G', z']`` memory ``H`` of v at a sighting, in units of that sighting's gradient scale
    (docs/theory.md §8.2): ``H = E_cell[(β₂α²)^G] · ρ(G') · (β₂p + (1-β₂)z'²)``. The gradient is
    ``s/R``: over the gap ``G`` the norm decays by ``α^G`` (so the new gradient is larger by
    ``α^{-G}``), and the previous sighting's norm before its own jump was
    ``R'² = α^{2G'}⟨R²_post⟩`` with ``⟨R²_post⟩ = J²/(1-E α^{2G'})`` (the jump ``J²`` decays and is
    renewed), so relative to the scale then ``ρ = 1 + (1-Eα^{2G'})α^{-2G'}``. ``ρ → 1`` when the
    norm barely changes between sightings (``p ≫ 2ηλ``)."""
    edges = jnp.asarray(_GAP_EDGES, p.dtype)
    _, mem = _gap_nodes(p, b2 * a * a)
    # in log space: a long gap before the previous sighting (ρ ~ α^{-2G'}) can outweigh the decay
    # of a shorter one since (β₂α²)^G; neither factor alone fits in floating point
    g_mid = jnp.sqrt(edges[:-1] * (edges[1:] - 1))
    tiny = jnp.finfo(p.dtype).tiny
    log_mem = jnp.where(mem > 1e3 * tiny, jnp.log(jnp.maximum(mem, tiny)), g_mid * jnp.log(b2 * a * a))
    lo, hi = (jnp.asarray(e, p.dtype) for e in (_PREV_EDGES[:-1], _PREV_EDGES[1:] - 1))
    gmid = jnp.sqrt(lo * hi)
    ea = p * a * a / (1 - (1 - p) * a * a)
    x = jnp.log1p(-ea) - 2 * gmid * jnp.log(a)  # log((1-Eα^{2G'})α^{-2G'})
    log_rho = jnp.where(x > 30, x, jnp.log1p(jnp.exp(jnp.minimum(x, 30))))
    h = jnp.exp(jnp.minimum(log_mem[:, None] + log_rho[None, :], 80.0))
    return h[:, :, None] * (b2 * p + (1 - b2) * z**2)[None, None, :]


def _memory_weights(p):
    w, _ = _gap_nodes(p, jnp.ones((), p.dtype))
    w2, _ = _gap_nodes(p, jnp.ones((), p.dtype), _PREV_EDGES)
    return w[:, None] * w2[None, :]


def _gap_moments(a, p, b1, b2):
    """``(E[z²Φ(y₀)], E[z²Ψ(y₀)])`` per coordinate under (8.2)'s fixed-scale law: ``y₀ = H +
    (1-β₂)z²`` with the gap memory ``H`` of :func:`_memory` at its exact nodes, Gauss–Hermite in
    ``z, z'``; ``Φ, Ψ`` from one table (:func:`_phi_psi_at`)."""
    z = jnp.asarray(_GH_X, p.dtype)
    wz = jnp.asarray(_GH_W, p.dtype)
    y0 = _memory(p, a, b2, z)[..., None] + (1 - b2) * z**2  # [G, G', z', z]
    phi, psi = _phi_psi_at(a, p, b1, b2, jnp.log(y0))
    gw = _memory_weights(p)
    e = jnp.einsum("gh,i,j,kghij->k", gw, wz, wz, jnp.stack([phi, psi]) * z**2) / jnp.sum(gw)
    return e[0], e[1]


@kernel_jit
def adamw_frequency_r2(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike, b1: FloatLike,
                       b2: FloatLike) -> Float[Array, "..."]:
    """AdamW's time-averaged ``⟨R²⟩`` for a concept seen with probability ``p`` per step, white
    sources (docs/theory.md §8.2).

    ``⟨R²⟩ = η² d p E[Σ_{L≥1} w(L)²]``, one coordinate, unit-variance source ``z`` per sighting:
    ``w(L+1) = α w(L) + (1-β₁)β₁^L z/√y_L``, ``y_l = β₂^l y₀ + p(1-β₂^l)`` (own sighting decays,
    later sightings in mean field), ``y₀ = H + (1-β₂)z²`` with the memory
    ``H = β₂^G (β₂p + (1-β₂)z'²)``: the last sighting ``G ~ Geometric(p)`` steps ago exactly
    (its own source ``z'``), the ones before it in mean field (stationary mean ``β₂p``).
    Expectation: Gauss–Hermite in ``z, z'``, lumped sums over ``G`` and ``G'``. Limits: ``p ≫ 1-β₂`` gives
    ``(ηd/2λ)F`` (§8.1); ``p ≪ 1-β₂`` gives ``ηdp c²/(2λ(1-β₂))``, ``c = (1-β₁)/(1-β₁/√β₂)``
    (every coordinate moves ``±η/√(1-β₂)`` at a sighting). Bias correction: ignored (global
    step ≫ 1/(1-β₂)); eps: ignored (``√v ≫ eps``).
    """
    dtype = jnp.result_type(lr, weight_decay, dim, p, b1, b2, float)
    args = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (lr, weight_decay, dim, p, b1, b2)))

    def one(lr, wd, dim, p, b1, b2):
        return lr**2 * dim * p * _gap_moments(1 - lr * wd, p, b1, b2)[0]

    return jnp.vectorize(one)(*args)


@kernel_jit
def adamw_frequency_equilibrium(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike, b1: FloatLike,
                                b2: FloatLike, mean_fraction: FloatLike = 0.0) -> Float[Array, "..."]:
    """AdamW's rms norm at any frequency (docs/theory.md §8.2): ``√(adamw_frequency_r2 ·
    adamw_restoring_factor(ηλ, f_m, p, β₁))``, ``f_m = |s̄|²/W²`` the measured mean part."""
    r2 = adamw_frequency_r2(lr, weight_decay, dim, p, b1, b2)
    return jnp.sqrt(r2 * adamw_restoring_factor(jnp.asarray(lr) * weight_decay, mean_fraction, p, b1))


@kernel_jit
def adamw_frequency_update_sq(dim: FloatLike, p: FloatLike, b1: FloatLike, b2: FloatLike, eta_lambda: FloatLike = 0.0
) -> Float[Array, "..."]:
    """``E|u|²`` per step of AdamW at frequency ``p`` (docs/theory.md §8.2): the own-gradient
    terms ``p d E[Σ_l ((1-β₁)β₁^l z/√y_l)²]`` of the same model as :func:`adamw_frequency_r2`
    (``→ d(1-β₁)/(1+β₁)`` for ``p → 1``); the angular update is ``η√(E|u|²)/R``."""
    dtype = jnp.result_type(dim, p, b1, b2, eta_lambda, float)
    args = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (dim, p, b1, b2, eta_lambda)))

    def one(dim, p, b1, b2, el):
        return dim * p * _gap_moments(1 - el, p, b1, b2)[1]

    return jnp.vectorize(one)(*args)


# ----------------------------------------------------------------------------- §8.2 heavy-tailed sightings

_SIGMA_NODES = 12  # Gauss–Laguerre nodes for the sighting's scale σ²
_H_BINS = 4096  # log-spaced cells for the memory H (mass split linearly in log H)
_Y_GRID = 2048  # log-spaced table of the per-v sums Φ(y), Ψ(y)
_LOG_FLOOR = np.log(1e-13)  # memories below this (in units of the gradient scale) act as 0


@jax.jit
def adamw_scale_variance(m4: FloatLike, dim: FloatLike) -> Float[Array, "..."]:
    """``Var σ²`` of the per-sighting source scale from the measured ``m4 = E|s|⁴/(E|s|²)²``
    (docs/theory.md §8.2): ``Var σ² = max(m4·d'/(d'+2) - 1, 0)``, ``d' = d-1``.

    Derivation: a sighting's source is ``s = σ|ŝ|``-scaled isotropic: ``s = σ·ζ`` with ``ζ`` a
    standard Gaussian in the ``d' = d-1`` tangent directions and ``σ²`` (mean 1) common to the
    coordinates of one sighting, independent of ``ζ``. Then ``E|s|⁴/(E|s|²)² = Eσ⁴·(d'+2)/d'``
    (the chi-square ``E(χ²_{d'})² = d'(d'+2)``), so ``Eσ⁴ = m4·d'/(d'+2)``. ``m4 = (d'+2)/d'``
    (a fixed-scale Gaussian) gives ``Var σ² = 0``, today's (8.2)."""
    dtype = jnp.result_type(m4, dim, float)
    m4, dim = jnp.asarray(m4, dtype), jnp.asarray(dim, dtype)
    dp = dim - 1
    return jnp.maximum(m4 * dp / (dp + 2) - 1, 0.0)


def _gamma_nodes(scale_var, dtype, n=_SIGMA_NODES):
    """Nodes and weights of ``σ² ~ Gamma(k, 1/k)``, ``k = 1/Var σ²`` (mean 1): Golub–Welsch for
    the generalized Laguerre weight ``x^{k-1}e^{-x}``, ``σ² = x/k``; the nodes are rescaled so
    that ``Σ wσ² = 1`` exactly. ``Var σ² = 0``: every node at 1 (a fixed scale)."""
    sv = jnp.asarray(scale_var, dtype)
    k = 1 / jnp.maximum(sv, 1e-10)
    a = k - 1
    i = jnp.arange(n, dtype=dtype)
    off = jnp.sqrt(i[1:] * (i[1:] + a))
    jac = jnp.diag(2 * i + a + 1) + jnp.diag(off, 1) + jnp.diag(off, -1)
    x, vec = jnp.linalg.eigh(jac)
    w = vec[0] ** 2
    w = w / jnp.sum(w)
    s2 = jnp.maximum(x, 0.0) / k
    s2 = s2 / jnp.sum(w * s2)
    fixed = sv <= 0
    return jnp.where(fixed, jnp.ones_like(s2), s2), jnp.where(fixed, jnp.full_like(w, 1.0 / n), w)


_MEMORY_SAMPLES = 4096  # sampled sighting histories for the law of v's memory (common random numbers)
_HISTORY = 160  # past sightings drawn exactly; older ones in mean field


def _phi_psi_table(a, p, b1, b2, ly):
    """``Φ(y) = Σ_{L≥1} w(L)²`` per unit ``z²`` and ``Ψ(y) = Σ_l ((1-β₁)β₁^l)²/y_l`` on the grid
    ``y = exp(ly)``, ``y_l = β₂^l y + p(1-β₂^l)`` (docs/theory.md §8.2)."""
    # in log space: a memory far above the new gradient (a long gap, the norm decayed by
    # α^G in between) gives y beyond floating point; its step is then ~0, which a floor keeps finite
    lp = jnp.log(p)

    def body(carry, l):
        wl, acc, acc_u = carry
        lyl = jnp.logaddexp(l * jnp.log(b2) + ly, lp + jnp.log(-jnp.expm1(l * jnp.log(b2))))
        c = (1 - b1) * b1**l
        wl = a * wl + c * jnp.exp(-0.5 * lyl)
        return (wl, acc + wl**2, acc_u + c * c * jnp.exp(-lyl)), None

    zero = jnp.zeros_like(ly)
    (wl, phi, psi), _ = jax.lax.scan(body, (zero, zero, zero), jnp.arange(_MOMENTUM_STEPS, dtype=ly.dtype))
    tiny = jnp.finfo(ly.dtype).tiny
    return jnp.log(phi + wl**2 * a**2 / (1 - a**2) + tiny), jnp.log(psi + tiny)


def _phi_psi_at(a, p, b1, b2, ly0):
    """``Φ(y₀)`` and ``Ψ(y₀)`` (see :func:`_phi_psi_table`) at the points ``y₀ = exp(ly0)``, by
    linear interpolation of ``log Φ, log Ψ`` on ``_Y_GRID`` log-spaced points spanning them: both
    are smooth, monotone functions of ``log y₀`` (relative interpolation error ~1e-5 at
    2048 points), and the table costs ``_Y_GRID × _MOMENTUM_STEPS`` instead of one scan per point."""
    lo, hi = jnp.min(ly0) - 1e-3, jnp.max(ly0) + 1e-3
    ly = jnp.linspace(lo, hi, _Y_GRID, dtype=ly0.dtype)
    lphi, lpsi = _phi_psi_table(a, p, b1, b2, ly)
    at = _on_uniform_grid(ly0, lo, hi)
    return jnp.exp(at(lphi)), jnp.exp(at(lpsi))


def _on_uniform_grid(x, lo, hi):
    """Linear interpolation at ``x`` of tables on ``linspace(lo, hi, _Y_GRID)``, as
    ``jnp.interp`` (clamped at the ends) but with the cell found by arithmetic instead of a
    binary search: ``x`` is fixed and several tables share it, so the cells and weights are
    computed once (measured: one p of (8.2), 8·10⁵ points, 63 → 50 ms on one CPU core). Returns
    ``table -> values at x``."""
    u = jnp.clip((x - lo) / (hi - lo) * (_Y_GRID - 1), 0, _Y_GRID - 1)
    i = jnp.minimum(jnp.floor(u).astype(jnp.int32), _Y_GRID - 2)
    t = u - i
    return lambda table: table[i] * (1 - t) + table[i + 1] * t


def _tailed_moments(lr, wd, p, b1, b2, sv, history):
    """``(E[z²Φ(y₀)], E[z²Ψ(y₀)])`` per coordinate, ``z = σζ``, ``y₀ = X + (1-β₂)z²``
    (docs/theory.md §8.2). The memory ``X`` (v just before a sighting, in units of that
    sighting's gradient scale) is drawn from ``history`` past sightings exactly,
    ``Q_n = ρ(G_n)[(β₂α²)^{G_n} Q_{n-1} + (1-β₂)z_n²]``, ``X = (β₂α²)^G Q_last``, gaps
    ``G ~ Geometric(p)``, ``z_n = σ_nζ_n``; the sightings older than that in mean field, ``Q_0 =
    E[ρ](1-β₂)/(1-E[ρ(β₂α²)^G])``. Sampled with a fixed key (``_MEMORY_SAMPLES`` histories); the own
    sighting's ``z`` by quadrature (Hermite in ζ × Laguerre in σ²)."""
    dtype = p.dtype
    a = 1 - lr * wd
    zn = jnp.asarray(_GH_X, dtype)
    wzn = jnp.asarray(_GH_W, dtype)
    s2, ws = _gamma_nodes(sv, dtype)
    t = (zn[:, None] ** 2 * s2[None, :]).ravel()
    wt = (wzn[:, None] * ws[None, :]).ravel()
    ld = jnp.log(b2 * a * a)
    ea = p * a * a / (1 - (1 - p) * a * a)

    def log_rho(g):
        xr = jnp.log1p(-ea) - 2 * g * jnp.log(a)
        return jnp.where(xr > 30, xr, jnp.log1p(jnp.exp(jnp.minimum(xr, 30))))

    # mean-field seed: E over G of ρ and ρ(β₂α²)^G on a long exact grid of G (lumped cells)
    edges = jnp.asarray(_GAP_EDGES, dtype)
    w_c, mem_c = _gap_nodes(p, b2 * a * a)
    g_mid = jnp.sqrt(edges[:-1] * (edges[1:] - 1))
    rho_c = jnp.exp(jnp.minimum(log_rho(g_mid), 60.0))
    e_rho = jnp.sum(w_c * rho_c) / jnp.sum(w_c)
    e_rho_dec = jnp.sum(w_c * rho_c * mem_c) / jnp.sum(w_c)
    log_q0 = jnp.log(e_rho * (1 - b2)) - jnp.log1p(-jnp.minimum(e_rho_dec, 1 - 1e-12))

    key = jax.random.key(8_2)
    kg, kz, ks, kl = jax.random.split(key, 4)
    n, h = _MEMORY_SAMPLES, history
    ug = jax.random.uniform(kg, (h + 1, n), dtype, minval=jnp.finfo(dtype).tiny)
    gaps = jnp.floor(jnp.log(ug) / jnp.log1p(-jnp.minimum(p, 1 - 1e-12))) + 1  # Geometric(p) ≥ 1
    zeta2 = jax.random.normal(kz, (h, n), dtype) ** 2
    k = 1 / jnp.maximum(sv, 1e-10)
    sig2 = jnp.where(sv > 0, jax.random.gamma(ks, k, (h, n), dtype) / k, 1.0)
    log_e = jnp.log(jnp.maximum((1 - b2) * zeta2 * sig2, jnp.finfo(dtype).tiny))

    def step(lq, xs):
        g, le = xs
        return log_rho(g) + jnp.logaddexp(g * ld + lq, le), None

    lq, _ = jax.lax.scan(step, jnp.full((n,), log_q0, dtype), (gaps[:h], log_e))
    log_x = gaps[h] * ld + lq  # [n]
    lx = jnp.maximum(log_x, _LOG_FLOOR)
    ly0 = jnp.logaddexp(lx[:, None], jnp.log((1 - b2) * t)[None, :])  # [n, z]
    y_lo = jnp.minimum(jnp.min(ly0), _LOG_FLOOR) - 1
    y_hi = jnp.max(ly0) + 1
    ly = jnp.linspace(y_lo, y_hi, _Y_GRID, dtype=dtype)
    lphi, lpsi = _phi_psi_table(a, p, b1, b2, ly)
    at = _on_uniform_grid(ly0, y_lo, y_hi)
    e_phi = jnp.mean(jnp.exp(at(lphi)) @ (wt * t))
    e_psi = jnp.mean(jnp.exp(at(lpsi)) @ (wt * t))
    return e_phi, e_psi


@kernel_jit(static_argnames=("history",))
def adamw_tailed_r2(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike, b1: FloatLike, b2: FloatLike,
                    scale_var: FloatLike = 0.0, history: int = _HISTORY) -> Float[Array, "..."]:
    """(8.2) with a random sighting scale (docs/theory.md §8.2, "heavy-tailed sightings").

    ``⟨R²⟩ = η² d p E[z² Φ(H + (1-β₂)z²)]``, ``z = σζ``, ``z' = σ'ζ'`` in the memory ``H`` of
    :func:`adamw_frequency_r2`, ``σ², σ'² ~ Gamma`` i.i.d. with mean 1 and variance
    ``scale_var`` (:func:`adamw_scale_variance` from the measured ``E|s|⁴/W⁴``). ``Φ(y)`` is the
    displacement sum ``Σ_L w(L)²`` per unit ``z²`` for ``v₀ = y``: it depends on the sighting only
    through ``v₀``, so it is tabulated once on a log grid of ``y`` and the expectation is taken
    over the law of ``H`` (binned in ``log H``) times the product nodes (Hermite in ``ζ``,
    Laguerre in ``σ²``). Only the marginal law of ``z`` per coordinate enters: ``v`` is per
    coordinate and ``⟨R²⟩`` a sum over coordinates, so ``σ`` being common to the coordinates of
    one sighting does not change the mean. ``scale_var = 0`` is (8.2) (to the binning error,
    < 1e-3; :func:`adamw_frequency_r2` is the exact-node evaluation)."""
    dtype = jnp.result_type(lr, weight_decay, dim, p, b1, b2, scale_var, float)
    args = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (lr, weight_decay, dim, p, b1, b2, scale_var)))

    def one(lr, wd, dim, p, b1, b2, sv):
        return lr**2 * dim * p * _tailed_moments(lr, wd, p, b1, b2, sv, history)[0]

    return jnp.vectorize(one)(*args)


@kernel_jit(static_argnames=("history",))
def adamw_tailed_update_sq(dim: FloatLike, p: FloatLike, b1: FloatLike, b2: FloatLike, eta_lambda: FloatLike = 0.0,
                           scale_var: FloatLike = 0.0, history: int = _HISTORY) -> Float[Array, "..."]:
    """``E|u|²`` per step with a random sighting scale (docs/theory.md §8.2):
    ``p d E[z² Ψ(H + (1-β₂)z²)]``, ``Ψ(y) = Σ_l ((1-β₁)β₁^l)²/(β₂^l y + p(1-β₂^l))``, the same
    law of ``(z, H)`` as :func:`adamw_tailed_r2`; ``scale_var = 0`` is
    :func:`adamw_frequency_update_sq`."""
    dtype = jnp.result_type(dim, p, b1, b2, eta_lambda, scale_var, float)
    args = jnp.broadcast_arrays(*(jnp.asarray(z, dtype) for z in (dim, p, b1, b2, eta_lambda, scale_var)))

    def one(dim, p, b1, b2, el, sv):
        return dim * p * _tailed_moments(el, jnp.ones((), dtype), p, b1, b2, sv, history)[1]

    return jnp.vectorize(one)(*args)


# ----------------------------------------------------------------------------- the main job's entry


_P_GRID = 12  # at most this many distinct p's are evaluated exactly
_P_PER_DECADE = 8  # else a log grid of p with this many points per decade (at least _P_GRID)


def over_p(fn, p, n: int = _P_GRID) -> np.ndarray:
    """``fn(p)`` for an array of frequencies: exactly at each distinct value when there are at most
    ``n``, else on a log grid spanning them (8 points per decade, at least ``n``), interpolated in
    log–log. (8.2) is a smooth rise in log p (local slope between 0 and 1/2) with a ripple of
    ~1e-3 from its lumped gap cells, so the relative interpolation error is < 1e-4 within a decade
    and < 5e-3 over four (measured: tests/test_theory_adamw.py), far below the formula's own."""
    p = np.asarray(p, float)
    pu, inv = np.unique(p, return_inverse=True)
    if pu.size <= n:
        return _padded(fn, pu)[inv].reshape(p.shape)
    grid = np.geomspace(pu[0], pu[-1], max(n, int(np.ceil(_P_PER_DECADE * np.log10(pu[-1] / pu[0]))) + 1))
    val = _padded(fn, grid)
    return np.exp(np.interp(np.log(p), np.log(grid), np.log(val)))


def _padded(fn, q: np.ndarray) -> np.ndarray:
    """``fn(q)`` for an element-wise ``fn``, evaluated on ``q`` padded (with its last value) to a
    multiple of 8: a jitted ``fn`` then compiles once per length bucket, not once per number of
    distinct p's, and evaluates at most 7 points more than asked (a power-of-two bucket would
    nearly double the cost of a 33-point grid; one p of (8.2) costs ~50 ms on one CPU core)."""
    m = 8 * max(1, -(-q.size // 8))
    return np.asarray(fn(np.concatenate([q, np.full(m - q.size, q[-1])])), float)[: q.size]


def predict_adamw(ctx: Context) -> Prediction:
    """AdamW (docs/theory.md §8.1–§8.2): ``R²_{k+1} = α²R²_k + η_k² d·F·κ`` with ``F`` the
    finite-ηλ factor and ``κ`` the restoring factor from the measured mean part, per concept;
    at ``p`` below ``~10(1-β₂)`` the increment is the any-frequency one, ``(1-α²)⟨R²⟩/η²``."""
    from ._context import r2_recursion

    p = np.asarray(ctx.p, float)[-1]
    ms, var = np.asarray(ctx.mean_sq, float)[-1], np.asarray(ctx.var, float)[-1]
    fm = ms / np.maximum(ms + var, 1e-30)
    el = ctx.lr * ctx.weight_decay
    a = 1 - el
    # the gap sums depend on p only: once per value, or on a log grid of p for many values
    r2_eq = over_p(lambda q: adamw_frequency_r2(ctx.lr, ctx.weight_decay, ctx.dim, q, ctx.b1, ctx.b2), p)
    kappa = np.asarray(adamw_restoring_factor(el, fm, p, ctx.b1), float)
    inc = r2_eq * kappa * (1 - a * a) / ctx.lr**2
    norms, full = r2_recursion(ctx, inc)
    eu2 = over_p(lambda q: adamw_frequency_update_sq(ctx.dim, q, ctx.b1, ctx.b2, el), p)
    theta = ctx.lrs()[:, None] * np.sqrt(eu2) / full[:-1]
    return Prediction("adamw", "AdamW: ⟨R²⟩ = η²p Σ_L E|w(L)|² (→ ηd/(2λ)·F at p ≫ 1-β₂)", "docs/theory.md §8.2",
                      "exact discounted-displacement sum; gap memory of v; finite ηλ; restoring mean part",
                      norms, True, rms_window(theta, window(ctx, True)),
                      {"eta_lambda": el, "mean_fraction": float(np.mean(fm))})


# ----------------------------------------------------------------------------- §8.6 lazy AdamW


@jax.jit
def lazy_adamw_r2(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike,
                  b1: FloatLike) -> Float[Array, "..."]:
    """Lazy AdamW's time-averaged ``⟨R²⟩`` (docs/theory.md §8.6, (8.6)): a row's moments move only
    at its sightings, every row decays every step.

    ``⟨R²⟩ = η²dp/(1−α²) · F_lazy``, ``F_lazy = (1−β₁)(1+β₁a)/((1+β₁)(1−β₁a))``,
    ``a = pα/(1−(1−p)α)`` (the discount of the gap to the next sighting), ``α = 1−ηλ``. Assumes
    ``v`` constant over its memory (``ηλ ≪ p(1−β₂)``) and a row past its first ~``1/(1−β₂)``
    sightings; ``R ∝ √p`` at every frequency.

    **Arguments:** ``lr``, ``weight_decay`` (η, λ); ``dim`` (d); ``p`` (presence probability per
    step); ``b1`` (β₁). Broadcast elementwise.

    **Returns:** the time-averaged squared norm, shaped like the broadcast arguments.
    """
    dtype = jnp.result_type(lr, weight_decay, dim, p, b1, float)
    lr, wd, dim, p, b1 = (jnp.asarray(z, dtype) for z in (lr, weight_decay, dim, p, b1))
    al = 1.0 - lr * wd
    a = p * al / (1.0 - (1.0 - p) * al)
    return lr**2 * dim * p / (1 - al**2) * (1 - b1) * (1 + b1 * a) / ((1 + b1) * (1 - b1 * a))
