"""Measured radial balance of one SGD step for any model, table or network (docs/theory.md §2, §9).

docs/theory.md §9 writes the SGD equilibrium with drift as ``2λR² = 2RD + ηpW²/R²``. For the free
table every term is what it says: the decoupled decay moves ``x`` by ``-ηλx`` and a sighting
pushes it outward by ``η²|s|²/R²``. For a network ``x(a) = f_θ(a)`` the optimizer acts on
``θ``, not on ``x``: one SGD step ``θ' = θ + ηv`` with ``v = -(g + λθ)`` (``g = ∇_θ L`` on the
minibatch; decoupled decay, as the lab's ``sgd``) moves ``x(a)`` by, to second order in ``η``,

    x' - x = η J(a) v + (η²/2) f''(a)[v, v] + O(η³),

so, exactly to second order,

    R'² - R² = 2ηR x̂·J(a)v + η² (|J(a)v|² + R x̂·f''(a)[v, v]).

Split ``x̂·J(a)v = D + D_λ``: ``D = x̂·J(a)(-g)`` is docs/theory.md §9's NTK radial drift
(:func:`normflow.measure.radial_drift`), ``D_λ = x̂·J(a)(-λθ)`` the decay's radial rate on
``x`` (``-λR`` for the table, anything for a network: a homogeneous net of degree k gives
``-kλR``; biases and tanh make it concept dependent). Setting ``E[R'² - R²] = 0`` gives the
balance with *measured* terms

    2λ_eff R² = 2RD + η pW²_eff / R²,   λ_eff = -D_λ / R,   pW²_eff = R² E(|Jv|² + R x̂·f''[v,v]),

which is docs/theory.md §9's equation with ``λ → λ_eff`` and ``pW² → pW²_eff`` (for the table
``λ_eff = λ`` and ``pW²_eff = pW² + λ²R⁴``, the discrete ``(1-ηλ)²`` term). Solve either form with
:func:`normflow.theory.balance_norm`. :class:`BalanceTerms` also holds the *actual* mean
one-step change ``E[R'² - R²]`` from the same minibatches, so the second-order expansion
itself is checked, not assumed.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .losses import get_loss
from .measure import radial_drift

__all__ = ["BalanceTerms", "balance_terms"]


class BalanceTerms(eqx.Module):
    """Per-concept terms of one SGD step's radial balance, averaged over minibatches.

    ``norm``: ``R``. ``drift``: ``D = E x̂·J(-g)`` (per unit time ``t = ηk``). ``decay_drift``:
    ``D_λ = x̂·J(-λθ)``. ``push``: ``E|Jv|²``. ``curvature``: ``E x̂·f''[v,v]``.
    ``delta_r2``: the measured ``E[R'² - R²]`` of one actual step; ``delta_r2_taylor`` its
    second-order expansion ``2ηR(D + D_λ) + η²(push + R·curvature)``.
    """

    norm: Float[Array, " N"]
    drift: Float[Array, " N"]
    decay_drift: Float[Array, " N"]
    push: Float[Array, " N"]
    curvature: Float[Array, " N"]
    delta_r2: Float[Array, " N"]
    delta_r2_taylor: Float[Array, " N"]

    @property
    def lambda_eff(self) -> Float[Array, " N"]:
        """``λ_eff = -D_λ / R``: the decay's radial rate on ``x`` (``λ`` for the free table)."""
        return -self.decay_drift / self.norm

    @property
    def pw2_eff(self) -> Float[Array, " N"]:
        """``pW²_eff = R² (push + R·curvature)``: the outward second-order term at unit radius."""
        return self.norm**2 * (self.push + self.norm * self.curvature)


@eqx.filter_jit
def _terms(model, task, keys, batch_size, lr, weight_decay, loss_fn):
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def f(p):
        return eqx.combine(p, static).concept_embeddings()

    def loss_of(p, batch):
        return task.loss(eqx.combine(p, static), batch, loss_fn)

    x = f(params)
    r = jnp.sqrt(jnp.sum(x * x, axis=-1))
    xh = x / r[:, None]
    decay_dir = jax.tree_util.tree_map(lambda q: -weight_decay * q, params)
    d_lam = jnp.sum(xh * jax.jvp(f, (params,), (decay_dir,))[1], axis=-1)

    def one(k):
        batch = task.sample(k, batch_size)
        d = radial_drift(model, task, batch, loss_fn)
        g = jax.grad(loss_of)(params, batch)
        v = jax.tree_util.tree_map(lambda gi, pi: -gi - weight_decay * pi, g, params)
        # nested jvp: (Jv, f''[v, v]) in one pass
        jv, hvv = jax.jvp(lambda p: jax.jvp(f, (p,), (v,))[1], (params,), (v,))
        push = jnp.sum(jv * jv, axis=-1)
        curv = jnp.sum(xh * hvv, axis=-1)
        x1 = f(jax.tree_util.tree_map(lambda pi, vi: pi + lr * vi, params, v))
        dr2 = jnp.sum(x1 * x1, axis=-1) - r**2
        return d, push, curv, dr2

    d, push, curv, dr2 = jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), jax.lax.map(one, keys))
    taylor = 2 * lr * r * (d + d_lam) + lr**2 * (push + r * curv)
    return BalanceTerms(norm=r, drift=d, decay_drift=d_lam, push=push, curvature=curv, delta_r2=dr2,
                        delta_r2_taylor=taylor)


def balance_terms(
    model,
    task,
    *,
    key: PRNGKeyArray,
    lr: float,
    weight_decay: float,
    batch_size: int,
    num_batches: int = 64,
    loss="info_nce",
) -> BalanceTerms:
    """Measure :class:`BalanceTerms` at the model's current parameters from ``num_batches``
    independent minibatches (one ``grad``, one ``jvp`` for ``D`` via
    :func:`normflow.measure.radial_drift`, one more ``grad`` and a nested ``jvp`` for the step
    ``v = -(g + λθ)``). ``lr``/``weight_decay`` are those of the lab's ``sgd`` (decoupled decay).
    See the module docstring for the formulas (docs/theory.md §2, §9)."""
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    keys = jax.random.split(key, num_batches)
    dtype = model.concept_embeddings().dtype
    return _terms(model, task, keys, batch_size, jnp.asarray(lr, dtype), jnp.asarray(weight_decay, dtype),
                  get_loss(loss))
