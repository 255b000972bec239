"""Measurements that the theory's formulas take as inputs (docs/theory.md §1, §2, §9, §11).

- :func:`source_energy`: per concept, the frequency ``p``, the per-step source energy
  ``pW²`` at unit radius and its split into the mean part ``|s̄|²`` and the variance ``V²``.
- :func:`radial_drift`: the NTK radial drift ``D(a) = x̂(a)·(J(a) v)``, ``v = -∇_θ L``
  (one ``grad`` and one ``jvp``, no kernel is formed).
- :func:`split_update`: the radial/angular split of an update (docs/theory.md §2), and
  :func:`angular_step` ``ε = η|s|/R²`` (docs/theory.md §4, §11).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .losses import get_loss
from .theory import angular_step  # noqa: F401  (re-exported: ε = η|s|/R², docs/theory.md §4, §11)

__all__ = ["SourceEnergy", "source_energy", "radial_drift", "split_update", "angular_step", "embedding_gradients",
           "step_rotation"]


class SourceEnergy(eqx.Module):
    """Per-concept source statistics at unit radius (docs/theory.md §1), from K minibatches.

    ``p``: fraction of minibatches that contain the concept. Conditional on presence, the
    source ``s = R ∇ₓL`` has mean ``s̄`` and covariance trace ``V²``; ``W² = |s̄|² + V²``.
    ``pw2 = p W²`` is the per-step energy (a step without the concept contributes zero), the
    quantity in docs/theory.md §5–§7; ``pv2 = p V²`` is its variance part (docs/theory.md §6, Fig. 2).
    ``energy_var`` is the variance over steps of the per-step energy ``|s_k|²`` (zeros
    included): a sum of T steps' energies fluctuates by ``sqrt(T·energy_var)`` around
    ``T·pW²``, which sets how closely one run can follow the expected imprint (docs/theory.md §5).
    """

    p: Float[Array, " N"]
    pw2: Float[Array, " N"]
    mean_sq: Float[Array, " N"]
    var: Float[Array, " N"]
    source_norm: Float[Array, " N"]
    energy_var: Float[Array, " N"]

    @property
    def pv2(self) -> Float[Array, " N"]:
        return self.p * self.var

    @property
    def w2(self) -> Float[Array, " N"]:
        return self.mean_sq + self.var


def embedding_gradients(model, task, batch, loss="info_nce") -> Float[Array, "N d"]:
    """``∇_{x_i} L`` for every concept embedding ``x_i`` on one batch (zero if absent).

    The loss is differentiated with respect to the concept embeddings themselves (a gather
    from ``model.concept_embeddings()``), so this is the same for the free table and for a
    network: the network's parameters only enter through ``x`` and the context side.
    """
    loss_fn = get_loss(loss)
    x_all = model.concept_embeddings()
    y = model.embed_contexts(batch.contexts)
    return jax.grad(lambda x: loss_fn(x[batch.concepts], y, task.temperature))(x_all)


@eqx.filter_jit
def _source_stats(model, task, keys, batch_size, loss):
    x = model.concept_embeddings()
    r = jnp.sqrt(jnp.sum(x * x, axis=-1))

    def one(k):
        batch = task.sample(k, batch_size)
        g = embedding_gradients(model, task, batch, loss)
        present = jnp.zeros(task.num_concepts, bool).at[batch.concepts].set(True)
        return r[:, None] * g, present  # source at unit radius: s = R ∇ₓL (∇ₓL ∝ 1/R)

    s, present = jax.lax.map(one, keys)  # [K, N, d], [K, N]
    energy = jnp.sum(s * s, axis=-1)  # [K, N], zero where absent
    energy_var = jnp.var(energy, axis=0, ddof=1)
    k_present = jnp.sum(present, axis=0)
    p = k_present / keys.shape[0]
    n = jnp.maximum(k_present, 1)[:, None]
    mean = jnp.sum(s, axis=0) / n  # conditional mean over batches containing the concept
    sq = jnp.sum(jnp.sum(s * s, axis=-1), axis=0) / jnp.maximum(k_present, 1)
    mean_sq = jnp.sum(mean * mean, axis=-1)
    # unbiased conditional variance: (E|s|² - |s̄|²) · n/(n-1)
    corr = k_present / jnp.maximum(k_present - 1, 1)
    var = jnp.maximum(sq - mean_sq, 0.0) * corr
    return SourceEnergy(p=p, pw2=p * (mean_sq + var), mean_sq=mean_sq, var=var, source_norm=jnp.sqrt(sq),
                        energy_var=energy_var)


def source_energy(model, task, *, key: PRNGKeyArray, batch_size: int, num_batches: int = 256, loss="info_nce") -> SourceEnergy:
    """Estimate :class:`SourceEnergy` at the model's current parameters from ``num_batches``
    independent minibatches of ``batch_size`` (docs/theory.md §1: gradient at unit radius; a minibatch
    without the concept contributes zero to ``pW²``)."""
    if num_batches < 2:
        raise ValueError(f"num_batches must be >= 2, got {num_batches}")
    keys = jax.random.split(key, num_batches)
    return _source_stats(model, task, keys, batch_size, get_loss(loss))


def radial_drift(model, task, batch, loss="info_nce") -> Float[Array, " N"]:
    """NTK radial drift per concept (docs/theory.md §9): ``D(a) = x̂(a) · (J(a) v)`` with
    ``v = -∇_θ L`` on ``batch`` — the rate ``dR(a)/dt`` under gradient flow on that batch.

    One ``grad`` over the parameters and one ``jvp`` of ``concept_embeddings``; the kernel
    ``K(a,b) = J(a)J(b)ᵀ`` is never formed. Zero (to rounding) for the free table.
    """
    loss_fn = get_loss(loss)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss_of(p):
        return task.loss(eqx.combine(p, static), batch, loss_fn)

    v = jax.tree_util.tree_map(jnp.negative, jax.grad(loss_of)(params))
    x, dx = jax.jvp(lambda p: eqx.combine(p, static).concept_embeddings(), (params,), (v,))
    return jnp.sum(x * dx, axis=-1) / jnp.sqrt(jnp.sum(x * x, axis=-1))


def split_update(x: Float[Array, "N d"], u: Float[Array, "N d"]):
    """docs/theory.md §2's split of an update ``u`` at ``x``: returns ``(u_r, |P u|, |u|²)`` per row with
    ``u_r = x̂·u`` and ``P = I - x̂x̂ᵀ``."""
    r = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    x_hat = x / r
    u_r = jnp.sum(u * x_hat, axis=-1)
    # |P u| from P u itself, not sqrt(|u|² - u_r²), which cancels to 0 when u is nearly radial
    pu = u - u_r[:, None] * x_hat
    return u_r, jnp.sqrt(jnp.sum(pu * pu, axis=-1)), jnp.sum(u * u, axis=-1)



def step_rotation(norms: Float[Array, "*S N"], angular: Float[Array, "*S N"], lr) -> Float[Array, "*S N"]:
    """The angle by which one step turns ``x̂`` (docs/theory.md §14), from a recorded step.

    With ``x' = (1-ηλ)x - ηu`` the part of ``x'`` perpendicular to ``x`` is ``-η P u``, so the
    rotation ``θ`` satisfies ``sin θ = η|Pu| / |x'|`` exactly. ``norms`` and ``angular`` are a
    :class:`~normflow.Trajectory`'s fields at the same recorded steps (``|x'|`` and ``|Pu|``);
    ``lr`` the run's ``η`` (scalar, or broadcasting against the steps). Row 0 of a trajectory
    (no step) gives 0.
    """
    s = jnp.asarray(lr) * jnp.asarray(angular) / jnp.asarray(norms)
    return jnp.arcsin(jnp.clip(s, 0.0, 1.0))
