"""Lazy ("sparse") Adam as optax transformations: the moments of a row move only on the steps
where the row is in the gradient (PyTorch's ``torch.optim.SparseAdam``, TensorFlow Addons'
``LazyAdam``).

Per table (a leaf of two or more dimensions, rows along axis 0) and step ``t = 1, 2, …`` (the
*global* step count, the one Keras' ``iterations + 1`` and PyTorch's ``state["step"]`` keep),
a row ``i`` is *present* when its gradient ``g_i`` is not all zero (for the free table: the
concept is in the minibatch). A present row::

    m_i ← β₁ m_i + (1-β₁) g_i
    v_i ← β₂ v_i + (1-β₂) g_i²
    d_i = √(1-β₂ᵗ)/(1-β₁ᵗ) · m_i / (√v_i + ε)

and an absent row keeps ``m_i``, ``v_i`` and has ``d_i = 0``: its moments do not decay between
sightings and it does not move. The bias correction uses the global ``t`` even for a row seen
for the first time at step ``t`` (as both libraries do), and ``ε`` is added to ``√v``, not to
``√v̂`` (their "epsilon hat"; optax's ``adam`` adds ``ε`` to ``√v̂``: the two differ by
``ε → ε√(1-β₂ᵗ)``). A leaf of fewer than two dimensions is a dense parameter: it is updated
every step (TensorFlow's ``LazyAdam`` with a dense gradient is Adam).

Decoupled decay (:func:`lazy_adamw`): ``decay="all"`` (the default) decays *every* row every
step, ``x ← (1-ηλ)x - η d`` — what a user of AdamW on an embedding table gets (PyTorch's
``AdamW`` decays the whole parameter every step) and what the sparse engine does exactly with a
global scale (:mod:`normflow._sparse`); ``decay="touched"`` decays only the present rows (TF
Addons' ``extend_with_decoupled_weight_decay(LazyAdam)``, whose sparse decay touches only the
gradient's indices).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Int

__all__ = ["LazyAdamState", "scale_by_lazy_adam", "lazy_adam", "lazy_adamw", "present_rows"]


class LazyAdamState(NamedTuple):
    """``count``: the global step count ``t`` (steps done); ``mu``, ``nu``: the first and
    second moments, one per parameter leaf."""

    count: Int[Array, ""]
    mu: optax.Updates
    nu: optax.Updates


def present_rows(g: Array) -> Bool[Array, "..."]:
    """The rows of ``g`` that are in the gradient, broadcastable against ``g``: for a leaf of
    two or more dimensions, ``True`` where a row (axis 0) has a non-zero entry; for a 0-/1-D
    leaf, ``True`` (a dense parameter).

    **Arguments:**

    - ``g``: one leaf of the gradient.

    **Returns:**

    A boolean array of shape ``[N, 1, …, 1]`` (or ``[]``).
    """
    if g.ndim < 2:
        return jnp.ones((), bool)
    return jnp.any(g != 0, axis=tuple(range(1, g.ndim)), keepdims=True)


def _lazy_adam_core(b1, b2, eps, weight_decay, decay_all) -> optax.GradientTransformation:
    def init_fn(params):
        zeros = lambda p: jnp.zeros_like(p)
        return LazyAdamState(jnp.zeros([], jnp.int32), jax.tree_util.tree_map(zeros, params),
                             jax.tree_util.tree_map(zeros, params))

    def update_fn(updates, state, params=None):
        if weight_decay is not None and params is None:
            raise ValueError("lazy_adamw's decoupled weight decay needs params")
        count = optax.safe_increment(state.count)

        def one(g, mu, nu, p):
            dt = g.dtype
            t = count.astype(dt)
            c1, c2 = jnp.asarray(b1, dt), jnp.asarray(b2, dt)
            corr = jnp.sqrt(1 - c2**t) / (1 - c1**t)
            here = present_rows(g)
            mu2 = jnp.where(here, c1 * mu + (1 - c1) * g, mu)
            nu2 = jnp.where(here, c2 * nu + (1 - c2) * g * g, nu)
            d = jnp.where(here, corr * mu2 / (jnp.sqrt(nu2) + jnp.asarray(eps, dt)), 0)
            if weight_decay is not None:
                lam = jnp.asarray(weight_decay, dt) * p
                d = d + (lam if decay_all else jnp.where(here, lam, 0))
            return d, mu2, nu2

        ps = params if params is not None else updates  # (read only with a decay)
        out = jax.tree_util.tree_map(one, updates, state.mu, state.nu, ps)
        treedef = jax.tree_util.tree_structure(updates)
        leaves = treedef.flatten_up_to(out)
        d, mu, nu = (treedef.unflatten([leaf[i] for leaf in leaves]) for i in range(3))
        return d, LazyAdamState(count, mu, nu)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_lazy_adam(b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8) -> optax.GradientTransformation:
    """Lazy Adam's direction ``d`` (see the module docstring): moments of the present rows only,
    bias correction by the global step, ``ε`` added to ``√v``. Like ``optax.scale_by_adam``, it
    is chained with a learning-rate scaling (:func:`lazy_adam` does that).

    **Arguments:**

    - ``b1``, ``b2``: the moments' decay rates (numbers or traced arrays).
    - ``eps``: added to ``√v``.

    **Returns:**

    An ``optax.GradientTransformation`` whose state is a :class:`LazyAdamState`.
    """
    return _lazy_adam_core(b1, b2, eps, None, True)


def lazy_adam(learning_rate, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8) -> optax.GradientTransformation:
    """Lazy Adam (PyTorch's ``SparseAdam``, TF Addons' ``LazyAdam``): ``x ← x - η d`` on the
    rows present in the gradient; absent rows keep their moments and do not move.

    **Arguments:**

    - ``learning_rate``: ``η``, a number, a traced array or an optax schedule.
    - ``b1``, ``b2``, ``eps``: as :func:`scale_by_lazy_adam`.

    **Returns:**

    An ``optax.GradientTransformation`` (composes with ``optax.chain``).
    """
    return optax.chain(scale_by_lazy_adam(b1, b2, eps), optax.scale_by_learning_rate(learning_rate))


def lazy_adamw(learning_rate, b1: ArrayLike = 0.9, b2: ArrayLike = 0.999, eps: ArrayLike = 1e-8,
               weight_decay: ArrayLike = 1e-4, *, decay: str = "all") -> optax.GradientTransformation:
    """Lazy AdamW: lazy Adam's step plus decoupled decay, ``x ← (1-ηλ)x - η d`` (as
    ``optax.adamw``: the decay is multiplied by the learning rate).

    **Arguments:**

    - ``learning_rate``: ``η``, a number, a traced array or an optax schedule.
    - ``b1``, ``b2``, ``eps``: as :func:`scale_by_lazy_adam`.
    - ``weight_decay``: ``λ``.
    - ``decay``: ``"all"`` (default): every row decays every step, present or not (PyTorch's
      ``AdamW`` on the whole table; the sparse engine does it exactly with a global scale);
      ``"touched"``: only the present rows decay (TF Addons' decoupled-decay ``LazyAdam``).

    **Returns:**

    An ``optax.GradientTransformation`` (composes with ``optax.chain``).
    """
    if decay not in ("all", "touched"):
        raise ValueError(f"decay must be 'all' or 'touched', got {decay!r}")
    return optax.chain(_lazy_adam_core(b1, b2, eps, weight_decay, decay == "all"),
                       optax.scale_by_learning_rate(learning_rate))
