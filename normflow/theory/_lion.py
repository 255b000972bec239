"""Lion with decoupled decay: persistent sign steps (docs/theory.md §12).

Lion's step is ``u = sign(c)``, ``c = β₁m + (1-β₁)g``, ``m ← β₂m + (1-β₂)g``, and
``x' = (1-ηλ)x - ηu``. Every coordinate moves by exactly ``η`` every step (``|u|² = d``), but
successive steps are far from independent: between two sightings ``g = 0`` and ``sign(c) =
sign(m)`` keeps its value while ``m`` only decays. The norm is set by how far the row travels
coherently, ``Γ = Σ_τ E[u_t·u_{t+τ}]`` (all lags τ ∈ ℤ), not by ``|u|² = d`` alone.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._core import kernel_jit
from ._context import Context, Prediction, rms_window, window

__all__ = ["lion_equilibrium", "lion_gamma", "lion_sign_correlation", "predict_lion"]


def _max_lag(b2: float) -> int:
    """Lags summed: ``β₂^τ`` below ``e^{-40}`` beyond ``40/(1-β₂)``."""
    return int(math.ceil(40.0 / (1.0 - float(b2))))


@kernel_jit(static_argnames=("max_lag",))
def _sign_correlation(p, b1, b2, max_lag: int, w=None):
    """Core of :func:`lion_sign_correlation`; ``w`` ``[K]``: equally likely kick variances (mean 1)."""
    tau = jnp.arange(1, max_lag + 1, dtype=jnp.result_type(float))
    p = jnp.asarray(p, tau.dtype)[..., None]
    w = jnp.ones((1,), tau.dtype) if w is None else jnp.asarray(w, tau.dtype)
    vm = p * (1 - b2) / (1 + b2)  # Var m in units of the mean kick variance σ² (dense-m approximation)

    def pair(a, pa, b, pb):  # kick variance a at step t (probability pa), b at step t+τ
        cov = b1**2 * b2**tau * vm + b1 * (1 - b1) * (1 - b2) * b2 ** (tau - 1) * a
        v1 = (1 - b1) ** 2 * a + b1**2 * vm
        v2 = (1 - b1) ** 2 * b + b1**2 * (vm + (a - p) * (1 - b2) ** 2 * b2 ** (2 * (tau - 1)))
        rho = jnp.clip(cov / jnp.sqrt(v1 * v2), -1.0, 1.0)
        return pa * pb * (2 / jnp.pi) * jnp.arcsin(rho)

    k = w.shape[0]
    # the four presence cases; a present kick has variance w_j, each j with probability 1/K
    total = pair(0.0, 1 - p, 0.0, 1 - p)
    total = total + jnp.sum(jax.vmap(lambda a: pair(a, p / k, 0.0, 1 - p))(w), axis=0)
    total = total + jnp.sum(jax.vmap(lambda b: pair(0.0, 1 - p, b, p / k))(w), axis=0)
    total = total + jnp.sum(jax.vmap(lambda a: jax.vmap(lambda b: pair(a, p / k, b, p / k))(w))(w), axis=(0, 1))
    return total


def _gamma_kicks(kick_m2: float, nodes: int = 32) -> np.ndarray:
    """``[nodes]`` equally likely kick variances ``w`` with ``E w = 1``, ``E w² = kick_m2``: the
    quantile midpoints of a Gamma distribution of shape ``1/(kick_m2-1)`` (renormalised to mean 1)."""
    from scipy import stats

    if kick_m2 <= 1.0:
        return np.ones(1)
    shape = 1.0 / (kick_m2 - 1.0)
    q = stats.gamma(shape, scale=1.0 / shape).ppf((np.arange(nodes) + 0.5) / nodes)
    return q / q.mean()


def lion_sign_correlation(p: ArrayLike, b1: float, b2: float, max_lag: int | None = None,
                          kick_m2: float | None = None) -> Float[Array, "*N L"]:
    """Per-coordinate sign autocorrelation ``C(τ) = E[sign c_t · sign c_{t+τ}]``, τ = 1…L, of Lion's
    sign process driven by zero-mean Gaussian kicks present with probability ``p`` per step
    (docs/theory.md §12.2).

    ``c_t = (1-β₁)g_t + β₁m_{t-1}`` and ``m_{t+τ-1} = β₂^τ m_{t-1} + (1-β₂)Σ_{j<τ} β₂^{τ-1-j} g_{t+j}``, so
    with ``χ_t ∈ {0, 1}`` the presence of a kick (variance σ² = 1; the sign is scale-free)::

        Cov(c_t, c_{t+τ}) = β₁²β₂^τ v_m + β₁(1-β₁)(1-β₂)β₂^{τ-1} χ_t
        Var c_t = (1-β₁)²χ_t + β₁² v_m,   Var c_{t+τ} = (1-β₁)²χ_{t+τ} + β₁²(v_m + (χ_t-p)(1-β₂)²β₂^{2(τ-1)})

    with ``v_m = p(1-β₂)/(1+β₂)`` the variance of ``m`` averaged over the earlier presence pattern
    (its relative fluctuation is ``~1/sqrt(N_m)``, ``N_m = p(1+β₂)/(1-β₂)`` kicks in ``m``'s
    memory: the approximation's only error, second order in it). Given ``χ_t, χ_{t+τ}`` the pair is
    Gaussian, ``E[sign X sign Y] = (2/π) arcsin ρ``, averaged over the four presence cases.

    ``p``: any shape ``[*N]``; returns ``[*N, L]`` with ``L = max_lag`` (default ``40/(1-β₂)``).
    ``kick_m2``: None for Gaussian kicks; else heavy-tailed kicks as a Gaussian scale mixture, the
    variance of a present kick ``w·σ²`` with ``w`` Gamma-distributed, ``E w = 1``, ``E w² = kick_m2``
    (the kick energy's second moment ``E|s|⁴/(E|s|²)²``); each ``χ`` above becomes ``w`` (docs/theory.md §12.4).
    """
    max_lag = _max_lag(b2) if max_lag is None else int(max_lag)
    w = None if kick_m2 is None else jnp.asarray(_gamma_kicks(float(kick_m2)))
    return _sign_correlation(jnp.asarray(p, jnp.result_type(float)), float(b1), float(b2), max_lag, w)


def lion_gamma(p: ArrayLike, b1: float, b2: float, kick_m2: float | None = None) -> Float[Array, "*N"]:
    """Persistence factor ``γ = Γ/d = 1 + 2Σ_{τ≥1} C(τ)`` of Lion's sign steps (docs/theory.md §12.2):
    the long-time squared displacement per step per coordinate, in units of ``η²``.

    ``γ = 1`` for independent signs (the random walk); Lion's ``β₂`` memory makes ``γ ~ 1/(1-β₂)``
    (β₁ = 0.9, β₂ = 0.99: γ = 46 at p = 1, 72 at p = 0.54, 122 at p = 0.1). ``kick_m2``: see
    :func:`lion_sign_correlation` (heavier tails, longer persistence)."""
    c = lion_sign_correlation(p, b1, b2, kick_m2=kick_m2)
    return 1.0 + 2.0 * jnp.sum(c, axis=-1)


def lion_equilibrium(p: ArrayLike, dim: int, lr: float, weight_decay: float, b1: float, b2: float) -> Float[Array, "*N"]:
    """``R*² = η² d γ / (1 - (1-ηλ)²) = η d γ / (λ(2-ηλ))`` (docs/theory.md §12.3); returns ``R*``."""
    g = lion_gamma(p, b1, b2)
    q2 = (1 - lr * weight_decay) ** 2
    return jnp.sqrt(lr**2 * dim * g / (1 - q2))


def _r2_path(ctx: Context, inc: np.ndarray) -> np.ndarray:
    """``R²_{k+1} = (1-η_kλ)²R²_k + η_k² inc``; returns ``[T+1, N]`` norms."""
    lrs = ctx.lrs()
    q = (1 - lrs * ctx.weight_decay) ** 2
    r2 = np.empty((ctx.total_steps + 1, len(ctx.r0)))
    r2[0] = np.asarray(ctx.r0, float) ** 2
    for k in range(ctx.total_steps):
        r2[k + 1] = q[k] * r2[k] + lrs[k] ** 2 * inc
    return np.sqrt(r2)


def predict_lion(ctx: Context) -> Prediction:
    """Lion with decoupled decay: the norm of a persistent sign walk (docs/theory.md §12).

    ``x_t = -η Σ_{k≥1} (1-ηλ)^{k-1} u_{t-k}`` exactly, so in a stationary state
    ``E R² = η² Σ_τ (1-ηλ)^{|τ|} C_u(τ) / (1-(1-ηλ)²)``; when the signs decorrelate in a time
    ``~1/(1-β₂) ≪ 1/(ηλ)`` this is the recursion ``R²_{k+1} = (1-ηλ)²R²_k + η²Γ`` with
    ``Γ = d·γ(p, β₁, β₂)`` (:func:`lion_gamma`), ``R*² = ηdγ/(λ(2-ηλ))``. Each step turns ``x̂`` by
    ``η|Pu|/|x'|`` with ``|Pu|² = d - u_r²`` and ``u_r² ≈ 1``: ``θ = η sqrt(d-1)/R``.

    Inputs: ``p`` (time-averaged over the measurements), ``d``, ``η``, ``λ``, ``β₁``, ``β₂``. The
    kicks are taken Gaussian and zero-mean: the mean source ``s̄`` and a heavy-tailed kick
    distribution (measured kurtosis) are not in the formula (docs/theory.md §12.4).
    """
    p = np.mean(np.asarray(ctx.p, float), axis=0)
    gamma = np.asarray(lion_gamma(p, ctx.b1, ctx.b2), float)
    full = _r2_path(ctx, ctx.dim * gamma)
    theta = ctx.lrs()[:, None] * np.sqrt(ctx.dim - 1.0) / full[1:]
    eta_lambda = ctx.lr * ctx.weight_decay
    memory = 1.0 / (1.0 - ctx.b2)
    return Prediction(
        "lion", "Lion, persistent sign walk: R*² = ηdγ(p,β₁,β₂)/(λ(2-ηλ))", "docs/theory.md §12",
        "Γ = d·γ: summed sign autocorrelation of Lion's β₂-memory at sighting rate p (Gaussian kicks)",
        ctx.at_steps(full), True, rms_window(theta, window(ctx, True)),
        {"eta_lambda": eta_lambda, "memory_times_eta_lambda": memory * eta_lambda,
         "inv_kicks_in_memory": float(np.max(1.0 / (p * (1 + ctx.b2) * memory)))})
