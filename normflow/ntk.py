"""The NTK radial drift decomposed into per-concept "votes" (docs/theory.md §9, paper Fig. 1).

Under gradient flow on ``θ`` the embedding of concept ``a`` moves by
``dx(a)/dt = -Σ_c K(a,c) ∇_{x(c)} L`` with ``K(a,c) = J(a)J(c)ᵀ``, so its radial rate is a sum of
votes, one per concept ``c`` that carries gradient:

    D(a) = Σ_c vote(a, c),    vote(a, c) = x̂(a)ᵀ J(a) J(c)ᵀ (-∇_{x(c)} L) = (K(c,a) x̂(a)) · (-∇_{x(c)} L).

``-∇_{x(c)} L`` is tangent at ``x(c)`` (scale-invariant loss), so the sign of a vote is the sign
of the cosine between the tangent part of ``K(c,a) x̂(a)`` at ``c`` and ``-s̄(c)`` (docs/theory.md §9).
For the free table ``K(a,c) = δ_ac I`` and every vote is zero (the diagonal one is
``x̂(a)·(-∇_{x(a)}L) = 0``). The decomposition is exact when the loss depends on ``θ`` only
through the concept embeddings (the table and :class:`normflow.ConceptMLP`; not the dual
encoder, whose context tower also carries ``θ``), so that ``Σ_c vote(a, c)`` equals
:func:`normflow.measure.radial_drift`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .measure import embedding_gradients

__all__ = ["radial_votes"]


@eqx.filter_jit
def radial_votes(model, task, batch, loss="info_nce") -> Float[Array, "N N"]:
    """``votes[a, c]`` = concept ``c``'s contribution to the radial drift of concept ``a`` on
    ``batch`` (docs/theory.md §9); rows sum to :func:`normflow.measure.radial_drift`.

    One ``vjp`` and one ``jvp`` of ``concept_embeddings`` per concept ``c`` (vmapped); the
    kernel is never formed. Cost ``O(N)`` passes, for small ``N`` (figures, notebooks).
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def f(p):
        return eqx.combine(p, static).concept_embeddings()

    gx = embedding_gradients(model, task, batch, loss)  # [N, d], ∇_{x(c)} L
    x, vjp = jax.vjp(f, params)
    xh = x / jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
    n = x.shape[0]

    def column(c):
        cot = jnp.zeros_like(gx).at[c].set(-gx[c])
        (w,) = vjp(cot)  # J(c)ᵀ(-∇_{x(c)}L) in parameter space
        dx = jax.jvp(f, (params,), (w,))[1]
        return jnp.sum(xh * dx, axis=-1)  # over a

    return jax.vmap(column)(jnp.arange(n)).T
