"""Heavy ball: coupled decay (sgdm), decoupled decay (sgdmw), radial projection (sgdp)
(docs/theory.md §7, angular update §14).

One mean-field recursion serves all three. Per concept it carries three scalars of the state
``(x_k, m_{k-1})`` — ``X = |x_k|²``, ``C = x_k·m_{k-1}``, ``M = |m_{k-1}|²`` — and is exact in
expectation given the buffer's energy input (docs/theory.md §7.0): the only approximations are
(i) ``E|g_k|² = E_eff/X`` at the current radius (mean field in ``R``), (ii) the buffer's
correlations with the new gradient are folded into the effective energy ``E_eff`` of
:func:`buffer_energy` (exact for a concept in a quadratic angular well), and (iii) for the
projection only, ``E(x̂·m)² ≈ (E x·m)²/X`` (the variance of the radial part of ``m`` dropped).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._core import FloatLike, kernel_jit

from ._context import Context, Prediction, rms_window, window

__all__ = [
    "buffer_energy",
    "heavy_ball_moments",
    "heavy_ball_equilibrium",
    "heavy_ball_angular_equilibrium",
    "projection_lag",
    "predict_sgdm",
    "predict_sgdmw",
    "predict_sgdp",
]

_KINDS = ("coupled", "decoupled", "projected")


@jax.jit
def buffer_energy(pw2: FloatLike, p: FloatLike, mean_sq: FloatLike, momentum: FloatLike) -> Float[Array, "..."]:
    """Effective per-step source energy of a heavy-ball buffer in an angular well
    (docs/theory.md §7.0)::

        E_eff = pW² - (2β/(1+β)) p² |s̄|²,      (1-β²) E R²|m|² = E_eff.

    Derivation: near its well a concept's direction ``z`` (tangent coordinates) sees per step
    ``g = p h z + ζ`` (``ζ`` white: the noise ``pV²`` plus the presence noise ``p(1-p)|s̄|²``),
    and heavy ball ``z' = z - a n``, ``n = βn + g``. Solving the stationary covariance of this
    linear system (an ARMA(2,1) in ``n``) gives, exactly and for any curvature ``h`` and step
    ``a``, ``(1-β²) E n² = Eζ² + ((1-β)/(1+β)) c²Ez²`` with ``c²Ez² = p²|s̄|²`` the measured mean
    part: the restoring mean gradient is anti-correlated with the buffer's past (its spectrum
    vanishes at zero frequency, where the buffer's gain 1/(1-β)² is largest), so it counts
    with weight ``(1-β)/(1+β)`` instead of 1. ``β = 0`` gives ``pW²`` (SGD). ``pw2``, ``p``,
    ``mean_sq`` at unit radius, as measured (:class:`normflow.SourceEnergy`).
    """
    pw2, p, mean_sq, momentum = (jnp.asarray(a, jnp.result_type(pw2, p, mean_sq, momentum, float))
                                 for a in (pw2, p, mean_sq, momentum))
    return pw2 - 2 * momentum / (1 + momentum) * p**2 * mean_sq


@kernel_jit(static_argnames=("kind",))
def heavy_ball_moments(r0: Float[ArrayLike, " N"], energy_path: Float[ArrayLike, "T N"], lrs: Float[ArrayLike, " T"],
                       weight_decay: Float[ArrayLike, ""], momentum: Float[ArrayLike, ""], kind: str
) -> tuple[Float[Array, "T N"], Float[Array, "T N"]]:
    """Mean-field second moments of heavy ball, step by step (docs/theory.md §7.0, §14).

    State before step ``k``: ``X = |x_k|²``, ``C = x_k·m_{k-1}``, ``M = |m_{k-1}|²`` (buffer
    starts at 0), input ``G = E_eff,k / X`` (``energy_path[k]``, :func:`buffer_energy`).
    With ``q = 1-η_kλ``:

    - ``kind="decoupled"`` (sgdmw: ``m ← βm + g``, ``x' = qx - ηm``)::

          M' = β²M + G,  D = βC,  X' = q²X - 2qηD + η²M',  C' = qD - ηM'

    - ``kind="coupled"`` (sgdm: ``m ← βm + g + λx``, ``x' = x - ηm``)::

          D = βC + λX,  M' = β²M + G + λ²X + 2βλC,  X' = X - 2ηD + η²M',  C' = D - ηM'

    - ``kind="projected"`` (sgdp: ``m ← βm + g``, ``x' = qx - ηPm``)::

          M' = β²M + G,  D = βC,  |Pm|² = M' - D²/X,  X' = q²X + η²|Pm|²,  C' = qD - η|Pm|²

    ``D = x_k·m_k``; each line is the expectation of an exact vector identity (``g ⊥ x``;
    ``m·g`` is in ``E_eff``). The tangent part of the step is ``|Pm|² = M' - D²/X`` (mean-field),
    and ``sin²θ_k = η²|Pm|²/X'``. Returns ``(X' [T, N], sin²θ [T, N])``; row ``k`` is after step ``k``.
    """
    r0 = jnp.asarray(r0)
    dtype = jnp.result_type(r0, energy_path, lrs, weight_decay, momentum, float)
    e = jnp.asarray(energy_path, dtype)
    lrs = jnp.asarray(lrs, dtype)
    lam = jnp.asarray(weight_decay, dtype)
    beta = jnp.asarray(momentum, dtype)
    x0 = jnp.broadcast_to(jnp.asarray(r0, dtype) ** 2, e.shape[1:])
    zero = jnp.zeros_like(x0)

    def step(carry, inp):
        X, C, M = carry
        e_k, eta = inp
        G = e_k / X
        q = 1 - eta * lam
        if kind == "coupled":
            D = beta * C + lam * X
            M1 = beta**2 * M + G + lam**2 * X + 2 * beta * lam * C
            X1 = X - 2 * eta * D + eta**2 * M1
            C1 = D - eta * M1
            pm2 = M1 - D**2 / X
        elif kind == "decoupled":
            M1 = beta**2 * M + G
            D = beta * C
            X1 = q**2 * X - 2 * q * eta * D + eta**2 * M1
            C1 = q * D - eta * M1
            pm2 = M1 - D**2 / X
        elif kind == "projected":
            M1 = beta**2 * M + G
            D = beta * C
            pm2 = M1 - D**2 / X
            X1 = q**2 * X + eta**2 * pm2
            C1 = q * D - eta * pm2
        else:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        return (X1, C1, M1), (X1, eta**2 * pm2 / X1)

    _, (xs, th2) = lax.scan(step, (x0, zero, zero), (e, lrs))
    return xs, th2


@jax.jit
def projection_lag(lr: FloatLike, weight_decay: FloatLike, momentum: FloatLike) -> Float[Array, "..."]:
    """``κ = β²(1-q²)/(1-βq)²`` (``q = 1-ηλ``; ``≈ 2ηλβ²/(1-β)²``): the squared angle by which
    sgdp's buffer lags behind ``x`` at equilibrium, ``E(x̂·m)²/E|Pm|²`` (docs/theory.md §7.3).

    From the exact recursion ``x_k·m_k = β(q x_{k-1}·m_{k-1} - η|P m_{k-1}|²)`` (stationary:
    ``E x·m = -βη E|Pm|²/(1-βq)``) and the balance ``η²E|Pm|² = (1-q²)R²``.
    """
    lr, weight_decay, momentum = (jnp.asarray(a, jnp.result_type(lr, weight_decay, momentum, float))
                                  for a in (lr, weight_decay, momentum))
    q = 1 - lr * weight_decay
    return momentum**2 * (1 - q**2) / (1 - momentum * q) ** 2


@partial(jax.jit, static_argnames=("kind",))
def heavy_ball_equilibrium(energy: FloatLike, lr: FloatLike, weight_decay: FloatLike, momentum: FloatLike, kind: str
) -> Float[Array, "..."]:
    """Fixed point ``R*`` of :func:`heavy_ball_moments` for a constant ``E_eff`` (docs/theory.md §7)::

        coupled:    R*⁴ = ηE(1+β) / (λ(1-β)(2(1+β) - ηλ))           ≈ ηE/(2λ(1-β))
        decoupled:  R*⁴ = η²E(1+βq) / ((1-β²)(1-βq)(1-q²))            ≈ ηE/(2λ(1-β)²)
        projected:  R*⁴ = η²E / ((1-β²)(1-q²)(1+κ)),  κ = projection_lag ≈ ηE/(2λ(1-β²)(1+κ))

    with ``q = 1-ηλ`` and ``E = energy`` (:func:`buffer_energy`; ``pW²`` for uncorrelated
    sources). Derivation: set ``X' = X``, ``C' = C``, ``M' = M`` in the recursion and use
    ``M = G/(1-β²)`` (coupled: plus the decay terms).
    """
    energy, lr, weight_decay, momentum = (
        jnp.asarray(a, jnp.result_type(energy, lr, weight_decay, momentum, float))
        for a in (energy, lr, weight_decay, momentum))
    beta, q = momentum, 1 - lr * weight_decay
    if kind == "coupled":
        r4 = lr * energy * (1 + beta) / (weight_decay * (1 - beta) * (2 * (1 + beta) - lr * weight_decay))
    elif kind == "decoupled":
        r4 = lr**2 * energy * (1 + beta * q) / ((1 - beta**2) * (1 - beta * q) * (1 - q**2))
    elif kind == "projected":
        kappa = projection_lag(lr, weight_decay, momentum)
        r4 = lr**2 * energy / ((1 - beta**2) * (1 - q**2) * (1 + kappa))
    else:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return r4**0.25


@partial(jax.jit, static_argnames=("kind",))
def heavy_ball_angular_equilibrium(lr: FloatLike, weight_decay: FloatLike, momentum: FloatLike, kind: str
) -> Float[Array, "..."]:
    """Equilibrium rms rotation per step ``θ*`` of heavy ball (docs/theory.md §14), from the
    fixed point of :func:`heavy_ball_moments` (``sin²θ = η²|Pm|²/R²``, every step counts)::

        coupled:    y = 2ηλ/(1+β),                 sin²θ* = y - y²/4              (Wan et al.)
        decoupled:  y = (1-q²)(1-βq)/(1+βq),       sin²θ* = y - β²y²/(1-βq)²  ≈ 2ηλ(1-β)/(1+β)
        projected:  sin²θ* = 1-q² ≈ 2ηλ

    ``y = η²E|m|²/R²`` is fixed by the radial balance alone, so θ* does not depend on the source
    statistics. Returns ``θ*`` (radians).
    """
    lr, weight_decay, momentum = (jnp.asarray(a, jnp.result_type(lr, weight_decay, momentum, float))
                                  for a in (lr, weight_decay, momentum))
    beta, q = momentum, 1 - lr * weight_decay
    if kind == "coupled":
        y = 2 * lr * weight_decay / (1 + beta)
        s2 = y - y**2 / 4
    elif kind == "decoupled":
        y = (1 - q**2) * (1 - beta * q) / (1 + beta * q)
        s2 = y - beta**2 * y**2 / (1 - beta * q) ** 2
    elif kind == "projected":
        s2 = 1 - q**2
    else:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    return jnp.arcsin(jnp.sqrt(s2))


# ------------------------------------------------------------------ predictions (docs/theory.md §15)

_FORMULAS = {
    "coupled": ("sgdm", "momentum, coupled decay: R*⁴ = ηE/(2λ(1-β)), E = pW² - 2β/(1+β)·p²|s̄|²",
                "docs/theory.md §7.1"),
    "decoupled": ("sgdmw", "momentum, decoupled decay: R*⁴ = ηE/(2λ(1-β)²), E = pW² - 2β/(1+β)·p²|s̄|²",
                  "docs/theory.md §7.2"),
    "projected": ("sgdp", "radial projection: R*⁴ = ηE/(2λ(1-β²)(1+κ)), κ ≈ 2ηλβ²/(1-β)²",
                  "docs/theory.md §7.3"),
}


def _predict(ctx: Context, kind: str) -> Prediction:
    beta = ctx.momentum
    energy = np.asarray(buffer_energy(ctx.path("pw2"), ctx.path("p"), ctx.path("mean_sq"), beta))
    xs, th2 = heavy_ball_moments(np.asarray(ctx.r0, float), energy, ctx.lrs(), ctx.weight_decay, beta, kind=kind)
    full = np.sqrt(np.concatenate([np.asarray(ctx.r0, float)[None] ** 2, np.asarray(xs)], axis=0))
    if ctx.lr_path is None:
        # §14: at equilibrium the radial balance alone fixes θ*, whatever the source statistics
        # (the recursion's θ_k would add the checkpoint noise of the measured pW² path)
        angular = np.full(len(ctx.r0), float(heavy_ball_angular_equilibrium(ctx.lr, ctx.weight_decay, beta, kind=kind)))
    else:
        theta = np.arcsin(np.sqrt(np.clip(np.asarray(th2), 0.0, 1.0)))
        angular = rms_window(theta, window(ctx, True))
    name, formula, section = _FORMULAS[kind]
    eta_lambda = ctx.lr * ctx.weight_decay
    regime = {"eta_lambda": eta_lambda, "beta": beta,
              # βθ*/(1-β): the angle by which the buffer lags behind x (√κ of §7.3 for sgdp)
              "lag": float(beta * heavy_ball_angular_equilibrium(ctx.lr, ctx.weight_decay, beta, kind=kind) / (1 - beta))}
    note = ("3-scalar mean-field recursion (|x|², x·m, |m|²) driven by the buffer energy "
            "E = pW² - 2β/(1+β)·p²|s̄|² (restoring mean part anti-correlated with the buffer)")
    return Prediction(name, formula, section, note, ctx.at_steps(full), True, angular, regime)


def predict_sgdm(ctx: Context) -> Prediction:
    """sgdm (heavy ball, decay added to the gradient before the momentum; docs/theory.md §7.1):
    :func:`heavy_ball_moments` with ``kind="coupled"``; equilibrium ``R*⁴ ≈ ηE/(2λ(1-β))``,
    ``θ* ≈ √(2ηλ/(1+β))``."""
    return _predict(ctx, "coupled")


def predict_sgdmw(ctx: Context) -> Prediction:
    """sgdmw (heavy ball, decoupled decay; docs/theory.md §7.2): :func:`heavy_ball_moments` with
    ``kind="decoupled"``; equilibrium ``R*⁴ ≈ ηE/(2λ(1-β)²)``, ``θ* ≈ √(2ηλ(1-β)/(1+β))``."""
    return _predict(ctx, "decoupled")


def predict_sgdp(ctx: Context) -> Prediction:
    """sgdp (heavy ball, radial part of the update removed, decoupled decay; docs/theory.md §7.3):
    :func:`heavy_ball_moments` with ``kind="projected"``; equilibrium
    ``R*⁴ ≈ ηE/(2λ(1-β²)(1+κ))``, ``κ ≈ 2ηλβ²/(1-β)²``, ``θ* = √(1-(1-ηλ)²) ≈ √(2ηλ)``."""
    return _predict(ctx, "projected")
