"""Norm dynamics under a learning-rate schedule η_k (docs/theory.md §13).

Every step of every optimizer is ``x' = (1-η_kλ)x - η_k u`` with this step's ``η_k`` (decoupled
decay scales with the schedule, docs/theory.md §2), so the exact identity of §2 holds step by
step with ``η → η_k``::

    R²_{k+1} = (1-η_kλ)² R²_k - 2η_k(1-η_kλ) R_k u_r + η_k² |u|².

The mean-field maps of §6 (SGD family, ``u = g`` tangent, ``E|g|² = pW²/R²``) and §8 (Adam
family, a scale-free update whose displacement energy per step is ``Γ``, AdamW: ``Γ = d``) only
ever use the η of the step they describe, so they carry over unchanged with a per-step η_k::

    SGD:   R²_{k+1} = (1-η_kλ)² R²_k + η_k² pW²_k / R²_k
    Adam:  R²_{k+1} = (1-η_kλ)² R²_k + η_k² Γ_k

Consequences: while η_k changes slowly compared with the relaxation time (1/(4η_kλ) steps for
R⁴ under SGD, 1/(2η_kλ) for R² under AdamW) the norm tracks the instantaneous equilibrium
(R⁴ ∝ η_k, R² ∝ η_k); as η_k → 0 both the decay and the push vanish and the norm *freezes*
at its value from when the schedule's decay outran the relaxation rate.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from ._core import FloatLike, _promote, _steps_first, kernel_jit

__all__ = ["meanfield_norm_path_lr", "r2_path_lr", "adam_meanfield_path_lr"]


def _path_inputs(r0, path, lrs, weight_decay):
    """The per-step maps' common set-up: one inexact dtype, the ``[steps, ...]`` path broadcast
    against ``r0`` and ``λ``, ``lrs`` shaped to broadcast along it, and ``R₀²``. Returns
    ``(path, lrs, weight_decay, y0)``."""
    r0, path, lrs, weight_decay = _promote(r0, path, lrs, weight_decay)
    path, shape = _steps_first(path, r0, weight_decay)
    lrs = lrs.reshape(lrs.shape[:1] + (1,) * (path.ndim - 1))
    return path, lrs, weight_decay, jnp.broadcast_to(r0**2, shape)


@kernel_jit
def meanfield_norm_path_lr(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lrs: Float[ArrayLike, " steps"],
                           weight_decay: FloatLike = 0.0) -> Float[Array, "steps ..."]:
    """The SGD-family mean-field map with a per-step learning rate (docs/theory.md §13)::

        R²_{k+1} = (1-η_kλ)² R²_k + η_k² pW²_k / R²_k.

    Derivation: docs/theory.md §2's exact identity with ``u = g = s/R`` (tangent, ``u_r = 0``)
    and ``|g|²`` replaced by its mean ``pW²_k/R²_k`` at the current radius; the step uses only
    its own ``η_k``, so :func:`normflow.theory.meanfield_norm_path` generalises by ``η → η_k``
    (it is that function when ``lrs`` is constant). ``lrs[k]`` and ``pw2_path[k]`` are the
    values used by step ``k``; returns ``R_{k+1}`` at index ``k`` (a ``lax.scan``).
    """
    pw2_path, lrs, weight_decay, y0 = _path_inputs(r0, pw2_path, lrs, weight_decay)

    def step(y: Array, xs) -> tuple[Array, Array]:
        pw2_k, eta = xs
        y = (1 - eta * weight_decay) ** 2 * y + eta**2 * pw2_k / y
        return y, y

    _, ys = lax.scan(step, y0, (pw2_path, lrs))
    return jnp.sqrt(ys)


@kernel_jit
def r2_path_lr(r0: FloatLike, inc_path: Float[ArrayLike, "steps ..."], lrs: Float[ArrayLike, " steps"],
               weight_decay: FloatLike = 0.0) -> Float[Array, "steps ..."]:
    """The scale-free (Adam-family) squared-norm map with a per-step learning rate
    (docs/theory.md §8, §13)::

        R²_{k+1} = (1-η_kλ)² R²_k + η_k² Γ_k,

    ``Γ_k = inc_path[k]`` the displacement energy per step in units of ``η²`` (AdamW, frequent
    concepts: ``Γ = d``). Derivation: §2's identity with an update whose size does not depend
    on ``R`` (Adam's normalisation) and whose radial part is second order, as in §8; the step
    uses only its own ``η_k``. Returns ``R_{k+1}`` at index ``k`` (a ``lax.scan``).
    """
    inc_path, lrs, weight_decay, y0 = _path_inputs(r0, inc_path, lrs, weight_decay)

    def step(y: Array, xs) -> tuple[Array, Array]:
        inc_k, eta = xs
        y = (1 - eta * weight_decay) ** 2 * y + eta**2 * inc_k
        return y, y

    _, ys = lax.scan(step, y0, (inc_path, lrs))
    return jnp.sqrt(ys)


@kernel_jit
def adam_meanfield_path_lr(r0: FloatLike, pw2_path: Float[ArrayLike, "steps ..."], lrs: Float[ArrayLike, " steps"],
                           weight_decay: FloatLike, dim: int | Float[ArrayLike, ""], b2: Float[ArrayLike, ""] = 0.999,
                           eps: Float[ArrayLike, ""] = 1e-8) -> Float[Array, "steps ..."]:
    """AdamW's norm with the lag of the second moment ``v`` (docs/theory.md §13.3)::

        e_k  = pW²_k / (d R²_k)                         mean g_i² per coordinate (g = s/R)
        v_k  = β₂ v_{k-1} + (1-β₂) e_k,   v̂_k = v_k / (1-β₂^{k+1}),   v_{-1} = 0
        Γ_k  = d e_k / (sqrt(v̂_k) + ε)²
        R²_{k+1} = (1-η_kλ)² R²_k + η_k² Γ_k.

    Derivation: Adam's update is ``m̂/(sqrt(v̂)+ε)``; the first moment only spreads each
    gradient over ~1/(1-β₁) steps, so each gradient ``g_k`` moves ``x`` in total by
    ``-η_k g_k/(sqrt(v̂_k)+ε)`` (β₁ drops out, as in §8), and for gradients uncorrelated from step
    to step the squared displacement per step is ``η_k² Σ_i E g_i²/(sqrt(v̂_i)+ε)²``. With the
    same relative change of ``E g_i²`` in every coordinate this is ``η_k² d e_k/(sqrt(v̂_k)+ε)²``,
    ``v̂_k`` the bias-corrected EMA of the mean-field ``e``. Stationary ``e`` gives ``Γ = d``
    (§8's AdamW). While ``e`` falls (the loss is being learned, or ``R`` grows) ``v̂`` still
    remembers the larger past energy (memory 1/(1-β₂) steps) and ``Γ < d``.
    Returns ``R_{k+1}`` at index ``k`` (a ``lax.scan`` over the two scalars ``R², v`` per concept).
    """
    r0, pw2_path, lrs, weight_decay, dim, b2, eps = _promote(r0, pw2_path, lrs, weight_decay, dim, b2, eps)
    pw2_path, shape = _steps_first(pw2_path, r0, weight_decay)
    lrs = lrs.reshape(lrs.shape[:1] + (1,) * (pw2_path.ndim - 1))
    y0 = jnp.broadcast_to(r0**2, shape)
    v0 = jnp.zeros(shape, y0.dtype)
    ks = jnp.arange(pw2_path.shape[0], dtype=y0.dtype).reshape(lrs.shape)

    def step(carry, xs):
        y, v = carry
        pw2_k, eta, k = xs
        e = pw2_k / (dim * y)
        v = b2 * v + (1 - b2) * e
        vhat = v / (1 - b2 ** (k + 1))
        gamma = dim * e / (jnp.sqrt(vhat) + eps) ** 2
        y = (1 - eta * weight_decay) ** 2 * y + eta**2 * gamma
        return (y, v), y

    _, ys = lax.scan(step, (y0, v0), (pw2_path, lrs, ks))
    return jnp.sqrt(ys)
