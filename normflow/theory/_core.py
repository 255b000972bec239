"""Closed-form norm dynamics of scale-invariant embeddings (docs/theory.md §2-§9, §11).

Every formula of ``docs/theory.md`` §2-§9 is one pure function here. They work
elementwise and broadcast, so per-concept arrays (one entry per concept) go in and come out.

Notation (docs/theory.md §1): ``R = |x|`` the norm, ``η`` = ``lr``, ``λ`` = ``weight_decay`` (decoupled:
a step is ``x' = (1-ηλ) x - η u``), ``s`` the source (loss gradient on the unit sphere, so
``∇ₓℓ = s/R``), ``pw2 = p·W²`` the expected squared source per step at unit radius (frequency
``p`` times the per-sighting energy ``W² = |s̄|² + V²``).

Time convention (stated once, used everywhere): continuous time is ``t = η·k`` with ``k`` the
step count. A rate per unit time times ``η`` is a rate per step; ``1/(4ηλ)`` *steps* is the
time ``1/(4λ)``. Functions of a continuous solution take ``t`` explicitly
(``gradient_flow_norm``, ``modified_flow_norm``); functions of a discrete run take integer
``steps``, or a recorded per-step path whose leading axis is the step index ``k = 0..T-1``
(``pw2_path[k]`` is the value used by step ``k``, i.e. the step from ``R_k`` to ``R_{k+1}``).
``*_path`` functions return ``R_{k+1}`` at index ``k`` (the norm *after* step ``k``), so
``path[-1]`` is the final norm ``R_T``.

Dtypes: inputs are promoted together (``jnp.result_type(..., float)``); float32 in gives
float32 out, float64 in (with ``jax_enable_x64``) gives float64 out. Nothing is cast to a fixed
dtype. Every public function is wrapped in ``jax.jit`` (the boolean switches ``discrete`` and
``decoupled`` are static), so eager calls compile once per shape/dtype instead of dispatching
op by op; they also compose with ``vmap``/``grad`` and hold no state.
"""

from __future__ import annotations

from functools import partial, wraps

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float, Int

# a hyperparameter or statistic: a Python float or an array of any shape (the formulas broadcast)
FloatLike = Float[ArrayLike, "..."]

# XLA's own default backend (LLVM) optimisation level; pinned on the compute-bound kernels below.
_FULL_BACKEND_OPT = {"xla_backend_optimization_level": 3}


def kernel_jit(fn=None, **jit_kwargs):
    """``jax.jit`` for the theory's compute-bound kernels (long ``lax.scan`` recursions over a run's
    steps, the gap-sum quadratures of docs/theory.md §8.2, the sign-correlation sums of §12): they
    are compiled with XLA's default full backend optimisation whatever ``XLA_FLAGS`` asks for.
    The test suite turns that optimisation off for its hundreds of small programs (compiling
    dominates them); at level 0 one (8.2) quadrature runs ~6x slower (2.9 s against 0.45 s),
    so the kernels keep it. Level 3 is XLA's default: results are bitwise those of a plain
    ``jax.jit`` under default flags."""
    if fn is None:
        return partial(kernel_jit, **jit_kwargs)
    top = jax.jit(fn, compiler_options=_FULL_BACKEND_OPT, **jit_kwargs)
    nested = jax.jit(fn, **jit_kwargs)  # inside another trace XLA compiles the outer program only

    @wraps(fn)
    def call(*args, **kwargs):
        traced = any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves((args, kwargs)))
        return (nested if traced else top)(*args, **kwargs)

    return call

__all__ = [
    "gradient_flow_norm",
    "step_norm_sq",
    "gd_norm_step",
    "modified_flow_norm",
    "angular_step",
    "sgd_imprint",
    "sgd_imprint_path",
    "sgd_imprint_const",
    "meanfield_norm_path",
    "sgd_wd_relaxation",
    "sgd_wd_relaxation_discrete",
    "sgd_wd_equilibrium",
    "sgd_wd_imprint",
    "sgd_wd_imprint_path",
    "relaxation_steps",
    "equilibrium_angular_step",
    "momentum_equilibrium",
    "adamw_equilibrium",
    "adamw_rare_equilibrium",
    "adamw_equilibrium_by_frequency",
    "balance_norm",
]


# ----------------------------------------------------------------------------- helpers


def _promote(*xs: ArrayLike) -> tuple[Array, ...]:
    """Convert all arguments to arrays of their common inexact dtype (no fixed-dtype casts)."""
    dtype = jnp.result_type(*xs, float)
    return tuple(jnp.asarray(x, dtype=dtype) for x in xs)


def _steps_first(pw2_path: Array, *others: Array) -> tuple[Array, tuple[int, ...]]:
    """Reshape a ``[steps, *b]`` path so its trailing axes broadcast against ``others``.

    Returns the path as ``[steps, 1, ..., 1, *b]`` (rank ``1 + len(batch)``) and the batch shape
    ``broadcast(b, *others)``: a 1-D path with per-concept ``lr`` gives one path per concept.
    """
    batch = jnp.broadcast_shapes(pw2_path.shape[1:], *(o.shape for o in others))
    pad = (1,) * (len(batch) - (pw2_path.ndim - 1))
    return pw2_path.reshape(pw2_path.shape[:1] + pad + pw2_path.shape[1:]), batch


def _phi(x: Array) -> Array:
    """``φ(x) = (1 - e^{-x}) / x`` with ``φ(0) = 1``; stable for small ``x`` (uses ``expm1``)."""
    zero = x == 0
    safe = jnp.where(zero, jnp.ones_like(x), x)
    return jnp.where(zero, jnp.ones_like(x), -jnp.expm1(-safe) / safe)


def _geom_sum(log_a: Array, k: Array) -> Array:
    """``Σ_{j=0}^{k-1} a^j = (1 - a^k)/(1 - a)`` from ``log a`` (``= k`` when ``a = 1``), stable."""
    zero = log_a == 0
    safe = jnp.where(zero, -jnp.ones_like(log_a), log_a)
    return jnp.where(zero, k * jnp.ones_like(log_a), jnp.expm1(k * safe) / jnp.expm1(safe))


# ----------------------------------------------------------------------------- §2 identity


@jax.jit
def step_norm_sq(r: FloatLike, u_radial: FloatLike, u_sq: FloatLike, lr: FloatLike, weight_decay: FloatLike
) -> Float[Array, "..."]:
    """Squared norm after one optimizer step, exactly (docs/theory.md §2).

    For ``x' = (1-ηλ) x - η u``::

        R'² = (1-ηλ)² R² - 2η(1-ηλ) R u_r + η² |u|²,     u_r = x̂·u.

    ``-u_r`` is the first-order radial drift, ``η²|u|²`` the second-order outward push.
    Returns ``R'²`` (the quantity the identity is about), not ``R'``.
    """
    r, u_radial, u_sq, lr, weight_decay = _promote(r, u_radial, u_sq, lr, weight_decay)
    shrink = 1 - lr * weight_decay
    return shrink**2 * r**2 - 2 * lr * shrink * r * u_radial + lr**2 * u_sq


@jax.jit
def gd_norm_step(r: FloatLike, grad_sq: FloatLike, lr: FloatLike, weight_decay: FloatLike = 0.0) -> Float[Array, "..."]:
    """Norm after one GD step on a scale-invariant loss, exactly (docs/theory.md §2, §4).

    The update is the tangent gradient, ``u = ∇ₓL``, so ``u_r = 0`` and §2 gives::

        R' = sqrt((1-ηλ)² R² + η² |∇ₓL|²),     |∇ₓL|² = |s̄|²/R².

    ``grad_sq`` is ``|∇ₓL|²`` at the current radius (not the unit-radius source energy).
    """
    return jnp.sqrt(step_norm_sq(r, 0.0, grad_sq, lr, weight_decay))


# ----------------------------------------------------------------------------- §3 gradient flow


@jax.jit
def gradient_flow_norm(r0: FloatLike, t: FloatLike, weight_decay: FloatLike) -> Float[Array, "..."]:
    """Norm under gradient flow ``dx/dt = -∇L - λx`` at continuous time ``t`` (docs/theory.md §3).

    ``∇L ⊥ x`` gives ``dR/dt = -λR``, so ``R(t) = R₀ e^{-λt}`` (constant when ``λ = 0``).
    """
    r0, t, weight_decay = _promote(r0, t, weight_decay)
    return r0 * jnp.exp(-weight_decay * t)


# ----------------------------------------------------------------------------- §4 GD


@jax.jit
def modified_flow_norm(r0: FloatLike, source_sq: FloatLike, lr: FloatLike, t: FloatLike) -> Float[Array, "..."]:
    """Norm of the GD modified flow at continuous time ``t = ηk`` (docs/theory.md §4).

    The modified flow ``dx/dt = -∇L + (η/2)(|∇L|²/R²) x`` has ``dR²/dt = η|∇L|² = η|s̄|²/R²``,
    with ``|s̄|²`` (``source_sq``) the unit-radius source energy, held constant. Then
    ``dR⁴/dt = 2η|s̄|²`` and::

        R⁴(t) = R₀⁴ + 2η |s̄|² t.

    GD's exact step (``gd_norm_step``) adds ``η⁴|s̄|⁴/R⁴`` per step to ``R⁴`` on top of this,
    i.e. a relative ``O(ε²)`` with ``ε = η|s̄|/R²`` (docs/theory.md §4, §11).
    """
    r0, source_sq, lr, t = _promote(r0, source_sq, lr, t)
    return (r0**4 + 2 * lr * source_sq * t) ** 0.25


@jax.jit
def angular_step(lr: FloatLike, source_norm: FloatLike, r: FloatLike) -> Float[Array, "..."]:
    """Angular step ``ε = η|s|/R²`` (docs/theory.md §4, §11).

    ``|s|`` (``source_norm``) is the source at unit radius, so ``η|∇ₓL|/R = η|s|/R²``; a GD step
    without decay turns ``x`` by exactly ``arctan(ε)``. The theory holds while ``ε ≪ 1``.
    """
    lr, source_norm, r = _promote(lr, source_norm, r)
    return lr * source_norm / r**2


# ----------------------------------------------------------------------------- §5 SGD imprint


@kernel_jit
def sgd_imprint_path(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lr: FloatLike
) -> Float[Array, "steps ..."]:
    """Norm after every step of the SGD imprint, discrete-sum form (docs/theory.md §5).

    The continuous imprint ``R⁴(t) = R₀⁴ + 2η ∫₀ᵗ pW²(τ) dτ`` with ``t = ηk`` and the integral
    taken as a sum over steps (``dτ = η``, ``τ_k = ηk``) becomes::

        R⁴_{k+1} = R₀⁴ + 2η Σ_{j=0}^{k} η pW²_j = R₀⁴ + 2η² Σ_{j≤k} pW²_j.

    ``pw2_path[k]`` is ``pW²`` of step ``k`` (unit radius, leading axis = steps). Returns
    ``R_{k+1}`` at index ``k`` (cumulative sum), shape ``[steps, *batch]``.
    """
    r0, pw2_path, lr = _promote(r0, pw2_path, lr)
    pw2_path, _ = _steps_first(pw2_path, r0, lr)
    return (r0**4 + 2 * lr**2 * jnp.cumsum(pw2_path, axis=0)) ** 0.25


@kernel_jit
def sgd_imprint(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lr: FloatLike) -> Float[Array, "..."]:
    """Final norm ``R_T`` of the SGD imprint for a recorded per-step path (docs/theory.md §5).

    ``R⁴_T = R₀⁴ + 2η Σ_{k=0}^{T-1} η pW²_k`` — the integral ``2η ∫₀ᵗ pW² dτ`` in time
    ``t = ηk`` becomes ``2η · Σ_k η pW²_k``. ``pw2_path`` has shape ``[steps, *batch]``.
    It is the leading-order solution of the mean-field step ``E R'² = R² + η² pW²/R²``
    (squared, it drops ``η⁴ (pW²)²/R⁴`` per step: a relative ``O(ε²)``; see
    ``meanfield_norm_path``).
    """
    r0, pw2_path, lr = _promote(r0, pw2_path, lr)
    return (r0**4 + 2 * lr**2 * jnp.sum(pw2_path, axis=0)) ** 0.25


@jax.jit
def sgd_imprint_const(r0: FloatLike, pw2: FloatLike, lr: FloatLike, steps: Int[ArrayLike, "..."]
) -> Float[Array, "..."]:
    """SGD imprint for a constant ``pW²`` after ``steps`` steps (docs/theory.md §5).

    ``R⁴_k = R₀⁴ + 2η² pW² k`` (``= R₀⁴ + 2η pW² t`` with ``t = ηk``).
    """
    r0, pw2, lr, steps = _promote(r0, pw2, lr, steps)
    return (r0**4 + 2 * lr**2 * pw2 * steps) ** 0.25


@kernel_jit
def meanfield_norm_path(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lr: FloatLike,
                        weight_decay: FloatLike = 0.0) -> Float[Array, "steps ..."]:
    """Iterate the mean-field squared-norm map of SGD with decay (docs/theory.md §2, §5, §6).

    §2 with ``u = g`` (tangent, ``u_r = 0``, ``E|g|² = pW²/R²``) and ``E`` applied to ``R'²``
    given ``R``::

        R²_{k+1} = (1-ηλ)² R²_k + η² pW²_k / R²_k.

    No time discretisation is involved; the only approximation is replacing the random
    ``|g|²`` by its mean at the current ``R`` (fluctuations of ``R`` ignored). Its fixed point
    for constant ``pW²`` is docs/theory.md §6's "exact discrete" ``R*⁴ = ηpW²/(λ(2-ηλ))``.
    ``pw2_path`` is per step (leading axis = steps); returns ``R_{k+1}`` at index ``k``.
    """
    r0, pw2_path, lr, weight_decay = _promote(r0, pw2_path, lr, weight_decay)
    q = (1 - lr * weight_decay) ** 2
    pw2_path, shape = _steps_first(pw2_path, r0, lr, weight_decay)
    y0 = jnp.broadcast_to(r0**2, shape)

    def step(y: Array, pw2_k: Array) -> tuple[Array, Array]:
        y = q * y + lr**2 * pw2_k / y
        return y, y

    _, ys = lax.scan(step, y0, pw2_path)
    return jnp.sqrt(ys)


# ----------------------------------------------------------------------------- §6 SGD + decay


@partial(jax.jit, static_argnames=("discrete",))
def sgd_wd_equilibrium(pw2: FloatLike, lr: FloatLike, weight_decay: FloatLike, discrete: bool = True
) -> Float[Array, "..."]:
    """Equilibrium norm ``R*`` of SGD with decoupled weight decay (docs/theory.md §6).

    ``discrete=True`` (default): the fixed point of the mean-field squared-norm map
    ``R'² = qR² + η²pW²/R²``, ``q = (1-ηλ)²`` (``meanfield_norm_path``)::

        R*² = qR*² + η²pW²/R*²   ⇒   R*⁴ = η²pW²/(1-q) = η pW² / (λ(2-ηλ)).

    ``discrete=False``: the fixed point of the continuous ``d(R⁴)/dt = 2ηpW² - 4λR⁴``::

        R*⁴ = η pW² / (2λ).

    The two differ by the factor ``2/(2-ηλ) = 1 + ηλ/2 + O(η²λ²)`` in ``R*⁴``.
    """
    pw2, lr, weight_decay = _promote(pw2, lr, weight_decay)
    if discrete:
        r4 = lr * pw2 / (weight_decay * (2 - lr * weight_decay))
    else:
        r4 = lr * pw2 / (2 * weight_decay)
    return r4**0.25


@jax.jit
def sgd_wd_relaxation(r0: FloatLike, pw2: FloatLike, lr: FloatLike, weight_decay: FloatLike,
                      steps: Int[ArrayLike, "..."]) -> Float[Array, "..."]:
    """Norm of SGD with decay after ``steps`` steps, constant ``pW²``, continuous form (docs/theory.md §6).

    Solution of ``d(R⁴)/dt = 2ηpW² - 4λR⁴`` at ``t = η·steps``::

        R⁴(t) = e^{-4λt} R₀⁴ + R*⁴ (1 - e^{-4λt}),     R*⁴ = ηpW²/(2λ).

    Evaluated as ``e^{-4λt}R₀⁴ + 2ηpW² t · φ(4λt)``, ``φ(x) = (1-e^{-x})/x``, so ``λ = 0``
    gives the imprint ``sgd_imprint_const`` and small ``λt`` loses no precision.
    """
    r0, pw2, lr, weight_decay, steps = _promote(r0, pw2, lr, weight_decay, steps)
    t = lr * steps
    x = 4 * weight_decay * t
    return (jnp.exp(-x) * r0**4 + 2 * lr * pw2 * t * _phi(x)) ** 0.25


@jax.jit
def sgd_wd_relaxation_discrete(r0: FloatLike, pw2: FloatLike, lr: FloatLike, weight_decay: FloatLike,
                               steps: Int[ArrayLike, "..."]) -> Float[Array, "..."]:
    """Closed-form leading-order *discrete* relaxation of ``S = R⁴``, constant ``pW²`` (docs/theory.md §6).

    Derivation. Square the mean-field map ``R'² = qR² + η²pW²/R²`` (``q = (1-ηλ)²``)::

        R'⁴ = q² R⁴ + 2q η² pW² + η⁴ (pW²)² / R⁴.

    Dropped here: the last term, ``η⁴(pW²)²/R⁴ = R⁴·ε⁴`` with ``ε² = η²pW²/R⁴`` — relative
    ``O(ε²)`` to the kept increment ``2qη²pW²``. (The true ``E R'⁴`` would also need
    ``E|s|⁴`` and ``E[1/R⁴]``; the ``R⁴`` recursion is not closed.) What is kept is linear::

        S_{k+1} = q² S_k + 2qη²pW²   ⇒   S_k = q^{2k} S₀ + (1-q^{2k}) S*,
        S* = 2qη²pW² / (1-q²) = 2q ηpW² / (λ(2-ηλ)(1+q)).

    Relation to the equilibria of ``sgd_wd_equilibrium``: at equilibrium ``ε² = 1-q ≈ 2ηλ``, so
    the dropped term is the same order as the discretisation effects, and ``S*`` is *not*
    the theory's "exact discrete" value: ``S* / [ηpW²/(λ(2-ηλ))] = 2q/(1+q) = 1 - ηλ + O(η²λ²)``
    and ``S* / [ηpW²/(2λ)] = 4q/((2-ηλ)(1+q)) = 1 - ηλ/2 + O(η²λ²)``. The relaxation factor
    per step is ``q² = (1-ηλ)⁴ = e^{-4ηλ - 2η²λ² - ...}`` (continuous: ``e^{-4ηλ}``; mean-field
    map linearised at its fixed point: ``2q-1 = e^{-4ηλ - 6η²λ² - ...}``). Use
    ``meanfield_norm_path`` when the ``O(ηλ)`` matters. At ``λ = 0`` this equals ``sgd_imprint_const`` exactly.
    """
    r0, pw2, lr, weight_decay, steps = _promote(r0, pw2, lr, weight_decay, steps)
    log_q = 2 * jnp.log1p(-lr * weight_decay)
    q = jnp.exp(log_q)
    q2k = jnp.exp(2 * log_q * steps)
    # (1 - q^{2k}) S* = 2qη²pW² Σ_{j<k} q^{2j}
    return (q2k * r0**4 + 2 * q * lr**2 * pw2 * _geom_sum(2 * log_q, steps)) ** 0.25


@kernel_jit
def sgd_wd_imprint(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lr: FloatLike, weight_decay: FloatLike
) -> Float[Array, "..."]:
    """Final norm of SGD with decay for a recorded per-step path, discrete-sum form (docs/theory.md §6).

    ``R⁴(t) = e^{-4λt}R₀⁴ + 2η ∫₀ᵗ e^{-4λ(t-τ)} pW²(τ) dτ`` with ``t = ηT``, the integral as a
    left-point sum over steps (``τ_k = t_k = ηk``, ``dτ = η``)::

        R⁴_T = e^{-4λt} R₀⁴ + 2η Σ_{k=0}^{T-1} η e^{-4λ(t - t_k)} pW²_k.

    ``pw2_path`` has shape ``[steps, *batch]``. For constant ``pW²`` the sum is
    ``x/(e^x - 1)`` (``x = 4ηλ``) times the integral of ``sgd_wd_relaxation``: a relative
    ``O(ηλ)`` (≈ ``-2ηλ``) discretisation difference in the imprint term. At ``λ = 0`` this is
    ``sgd_imprint``. All weights ``e^{-4λ(t-t_k)} ≤ 1``: no overflow.
    """
    r0, pw2_path, lr, weight_decay = _promote(r0, pw2_path, lr, weight_decay)
    pw2_path, _ = _steps_first(pw2_path, r0, lr, weight_decay)
    n = pw2_path.shape[0]
    k = jnp.arange(n, dtype=pw2_path.dtype).reshape((n,) + (1,) * (pw2_path.ndim - 1))
    rate = 4 * lr * weight_decay  # decay of R⁴ per step, in the exponent
    weights = jnp.exp(-rate * (n - k))  # e^{-4λ(t - t_k)}
    s = jnp.exp(-rate * n) * r0**4 + 2 * lr**2 * jnp.sum(weights * pw2_path, axis=0)
    return s**0.25


@kernel_jit
def sgd_wd_imprint_path(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lr: FloatLike, weight_decay: FloatLike
) -> Float[Array, "steps ..."]:
    """``sgd_wd_imprint`` after every step (docs/theory.md §6): ``R_{k+1}`` at index ``k``.

    Same sum, computed by the stable recursion (``lax.scan``)::

        S_{k+1} = e^{-4ηλ} (S_k + 2η² pW²_k),     S_0 = R₀⁴,  R_{k+1} = S_{k+1}^{1/4},

    which unrolls to ``S_T = e^{-4ληT} S_0 + 2η² Σ_k e^{-4λη(T-k)} pW²_k``.
    """
    r0, pw2_path, lr, weight_decay = _promote(r0, pw2_path, lr, weight_decay)
    a = jnp.exp(-4 * lr * weight_decay)
    pw2_path, shape = _steps_first(pw2_path, r0, lr, weight_decay)
    s0 = jnp.broadcast_to(r0**4, shape)

    def step(s: Array, pw2_k: Array) -> tuple[Array, Array]:
        s = a * (s + 2 * lr**2 * pw2_k)
        return s, s

    _, ss = lax.scan(step, s0, pw2_path)
    return ss**0.25


@jax.jit
def relaxation_steps(lr: FloatLike, weight_decay: FloatLike) -> Float[Array, "..."]:
    """Relaxation time of ``R⁴`` in steps, ``1/(4ηλ)`` (docs/theory.md §6): time ``1/(4λ)`` over ``η``."""
    lr, weight_decay = _promote(lr, weight_decay)
    return 1 / (4 * lr * weight_decay)


@jax.jit
def equilibrium_angular_step(lr: FloatLike, weight_decay: FloatLike, p: FloatLike) -> Float[Array, "..."]:
    """Angular step per sighting at the SGD+decay equilibrium, ``ε* = sqrt(2ηλ/p)`` (docs/theory.md §6).

    From ``ε = η|s|/R²`` with ``|s|² = W²`` and ``R*⁴ = ηpW²/(2λ)``: ``ε*² = 2ηλ/p``.
    """
    lr, weight_decay, p = _promote(lr, weight_decay, p)
    return jnp.sqrt(2 * lr * weight_decay / p)


# ----------------------------------------------------------------------------- §7 momentum


@partial(jax.jit, static_argnames=("decoupled",))
def momentum_equilibrium(pw2: FloatLike, lr: FloatLike, weight_decay: FloatLike, momentum: FloatLike,
                         decoupled: bool = False) -> Float[Array, "..."]:
    """Leading-order equilibrium norm of heavy-ball SGD (momentum ``β``) with weight decay
    (docs/theory.md §7.1, §7.2), for uncorrelated sources and small ``ηλ``.

    ``decoupled=False`` (decay added to the gradient before the momentum: optax
    ``add_decayed_weights`` then ``sgd(momentum=β)``, PyTorch ``weight_decay``)::

        R*⁴ = η pW² / (2λ(1-β)).

    ``decoupled=True`` (decay applied outside the momentum; derived in docs/theory.md §7.2)::

        R*⁴ = η pW² / (2λ(1-β)²).

    :func:`normflow.theory.heavy_ball_equilibrium` is the finite-``ηλ`` form with the source's
    restoring (mean) part; this one is its ``ηλ → 0``, white-source limit. ``β = 0`` gives the continuous SGD equilibrium ``sgd_wd_equilibrium(discrete=False)``.
    """
    pw2, lr, weight_decay, momentum = _promote(pw2, lr, weight_decay, momentum)
    power = 2 if decoupled else 1
    return (lr * pw2 / (2 * weight_decay * (1 - momentum) ** power)) ** 0.25


# ----------------------------------------------------------------------------- §8 Adam/AdamW


@jax.jit
def adamw_equilibrium(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike) -> Float[Array, "..."]:
    """AdamW equilibrium norm for frequently seen concepts (``p ≫ 1-β₂``) (docs/theory.md §8).

    ``R*² = η d / (2λ)`` (rotational equilibrium, Kosson et al. 2024); independent of ``W``,
    ``V`` and ``p``. Returns ``R*``.
    """
    lr, weight_decay, dim = _promote(lr, weight_decay, dim)
    return jnp.sqrt(lr * dim / (2 * weight_decay))


@jax.jit
def adamw_rare_equilibrium(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike, b2: FloatLike
) -> Float[Array, "..."]:
    """AdamW equilibrium norm for rare concepts (``p ≪ 1-β₂``): the first, two-branch conjecture
    (docs/theory.md §8.2 says where it fails; the formula that holds is there).

    ``R*² = η d p / (2λ(1-β₂))``: ``v`` forgets between sightings, so under AdamW the norm
    would encode frequency ``p`` (not ``W`` or ``V``) below the threshold ``p = 1-β₂``, where
    it equals ``adamw_equilibrium``. Returns ``R*``.
    """
    lr, weight_decay, dim, p, b2 = _promote(lr, weight_decay, dim, p, b2)
    return jnp.sqrt(lr * dim * p / (2 * weight_decay * (1 - b2)))


@jax.jit
def adamw_equilibrium_by_frequency(lr: FloatLike, weight_decay: FloatLike, dim: FloatLike, p: FloatLike, b2: FloatLike
) -> Float[Array, "..."]:
    """The lab's interpolation of the AdamW equilibrium across frequencies (docs/theory.md §8).

    ``R*² = η d min(p, 1-β₂) / (2λ(1-β₂))``: the rare-concept conjecture below the crossover
    ``p = 1-β₂``, the frequent-concept result above it. Continuous and non-decreasing in
    ``p``; the sharp corner at the crossover is this module's choice, not the theory's claim.
    """
    lr, weight_decay, dim, p, b2 = _promote(lr, weight_decay, dim, p, b2)
    return jnp.minimum(
        adamw_equilibrium(lr, weight_decay, dim),
        adamw_rare_equilibrium(lr, weight_decay, dim, p, b2),
    )


# ----------------------------------------------------------------------------- §9 drift balance

_NEWTON_STEPS = 48


@jax.jit
def balance_norm(drift: FloatLike, pw2: FloatLike, lr: FloatLike, weight_decay: FloatLike) -> Float[Array, "..."]:
    """Equilibrium norm of SGD with a first-order radial drift ``D`` (docs/theory.md §9).

    Solves ``2λR² = 2RD + ηpW²/R²`` for ``R > 0``, i.e. the quartic
    ``2λR⁴ - 2DR³ - ηpW² = 0``. ``D = -u_r`` is the radial velocity per unit time (the radius
    moves by ``ηD`` per step); it may have either sign. Requires ``λ > 0`` and ``pW² > 0``.

    The positive root is unique (Descartes: one sign change for either sign of ``D``). With
    ``R_s = (ηpW²/(2λ))^{1/4}`` (the ``D = 0`` answer, ``sgd_wd_equilibrium(discrete=False)``)
    and ``R = R_s z`` the quartic is ``f(z) = z⁴ - κz³ - 1 = 0`` with ``κ = D/(λR_s)``.
    ``f`` is convex and increasing on ``[z*, ∞)`` (``z* > max(κ, 0)``), so Newton started
    above the root decreases monotonically onto it. The start is an upper bound:
    ``κ ≥ 0``: ``z₀ = κ + min(1, κ⁻³)``; ``κ < 0``: ``z₀ = min(1, |κ|^{-1/3})`` (both give
    ``f(z₀) ≥ 0``); then a fixed number of Newton steps (jit/vmap friendly).
    """
    drift, pw2, lr, weight_decay = _promote(drift, pw2, lr, weight_decay)
    r_s = (lr * pw2 / (2 * weight_decay)) ** 0.25
    kappa = drift / (weight_decay * r_s)
    one = jnp.ones_like(kappa)
    pos = kappa > 0
    k_pos = jnp.where(pos, kappa, one)
    k_neg = jnp.where(kappa < 0, -kappa, one)
    z0 = jnp.where(
        pos,
        kappa + jnp.minimum(one, k_pos**-3),
        jnp.where(kappa < 0, jnp.minimum(one, k_neg ** (-1 / 3)), one),
    )

    def newton(_: int, z: Array) -> Array:
        f = z**3 * (z - kappa) - 1
        fp = z**2 * (4 * z - 3 * kappa)
        z_new = z - f / fp
        # Safeguard: stay positive and never jump more than halfway to 0 (never triggered in
        # exact arithmetic, where the iterates decrease monotonically onto the root).
        return jnp.where(jnp.isfinite(z_new), jnp.maximum(z_new, 0.5 * z), z)

    z = lax.fori_loop(0, _NEWTON_STEPS, newton, z0)
    return r_s * z
