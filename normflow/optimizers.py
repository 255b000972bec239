"""The lab's named optimizers, all built from optax (THEORY §2, §4–§8).

Every optimizer is written so that one step is ``x' = x + updates``; THEORY §2 reads it as
``x' = (1 - ηλ) x - η u`` with the run's ``λ = weight_decay``. Names:

=========  ===================================================================================
``gd``     full-batch gradient descent; decay ``-ηλx`` (same as L2 for plain GD)
``sgd``    minibatch SGD, decoupled decay ``-ηλx`` (identical to ``sgd_l2`` up to rounding)
``sgd_l2`` minibatch SGD with ``λx`` added to the gradient
``sgdm``   heavy ball, decay added to the gradient *before* the momentum (PyTorch's
           ``weight_decay``, optax ``add_decayed_weights`` then ``sgd(momentum=β)``; THEORY §7)
``sgdmw``  heavy ball with decoupled decay ``-ηλx`` outside the momentum (THEORY §7 conjecture)
``adam``   Adam, no decay (``weight_decay`` must be 0)
``adamw``  AdamW: decoupled decay ``-ηλx`` (optax ``adamw``; THEORY §8)
``adam_l2`` Adam with ``λx`` added to the gradient, i.e. passed through the preconditioner
``sgdp``   heavy ball whose update has its radial part removed (:func:`project_radial`),
           then decoupled decay
``adamp``  Adam whose update has its radial part removed, then decoupled decay
``lion``   Lion (optax ``lion``: sign of ``β₁m + (1-β₁)g``, momentum ``m`` with ``β₂``), decoupled
           decay ``-ηλx``; ``b1``/``b2`` are Lion's two betas (the sims pass Lion's published
           0.9 / 0.99, not Adam's 0.9 / 0.999)
=========  ===================================================================================

Hyperparameters may be traced arrays, so one compiled program serves a vmapped grid.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike

__all__ = ["OPTIMIZERS", "Hyper", "make_optimizer", "project_radial", "check_optimizer_args"]

OPTIMIZERS: tuple[str, ...] = (
    "gd", "sgd", "sgdm", "sgdmw", "adam", "adamw", "sgd_l2", "adam_l2", "sgdp", "adamp", "lion",
)


class Hyper(NamedTuple):
    """Optimizer hyperparameters; each may be a Python float or a (traced) array."""

    lr: ArrayLike
    weight_decay: ArrayLike = 0.0
    momentum: ArrayLike = 0.9
    b1: ArrayLike = 0.9
    b2: ArrayLike = 0.999
    eps: ArrayLike = 1e-8


def check_optimizer_args(name: str, lr, weight_decay, steps=None, batch_size=None) -> None:
    """Raise a one-line ``ValueError`` naming the bad value."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if name == "adam" and weight_decay != 0:
        raise ValueError(
            f"adam has no weight decay (got weight_decay={weight_decay}); use adamw (decoupled) or adam_l2 (coupled)"
        )
    if steps is not None and not steps > 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    if batch_size is not None and not batch_size > 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")


def project_radial() -> optax.GradientTransformation:
    """Remove the radial component of the update, row by row (SGDP/AdamP's projection).

    For every 2-D parameter ``W`` (the embedding table, or a weight matrix whose rows are the
    scale-invariant units) each row's update ``u`` becomes ``u - (u·ŵ) ŵ`` with ``ŵ = w/|w|``.
    Other leaves pass through. This switches off the first-order radial drift ``-u_r`` of
    THEORY §2, leaving only the second-order push ``η²|u|²``.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("project_radial needs params")

        def proj(u, w):
            if u.ndim != 2:
                return u
            w_hat = w * jax.lax.rsqrt(jnp.sum(w * w, axis=-1, keepdims=True))
            return u - jnp.sum(u * w_hat, axis=-1, keepdims=True) * w_hat

        return jax.tree_util.tree_map(proj, updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def _decay(lr, weight_decay) -> optax.GradientTransformation:
    # Applied after the learning-rate scaling: adds -ηλx to the update.
    return optax.add_decayed_weights(-lr * weight_decay)


def make_optimizer(name: str, hyper: Hyper) -> optax.GradientTransformation:
    """The optax transformation for a named optimizer (see the module table)."""
    lr, wd, mom, b1, b2, eps = hyper
    if name in ("gd", "sgd"):
        return optax.chain(optax.sgd(lr), _decay(lr, wd))
    if name == "sgd_l2":
        return optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr))
    if name == "sgdm":
        return optax.chain(optax.add_decayed_weights(wd), optax.trace(decay=mom), optax.scale_by_learning_rate(lr))
    if name == "sgdmw":
        return optax.chain(optax.trace(decay=mom), optax.scale_by_learning_rate(lr), _decay(lr, wd))
    if name == "adam":
        return optax.adam(lr, b1=b1, b2=b2, eps=eps)
    if name == "adamw":
        return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    if name == "adam_l2":
        return optax.chain(optax.add_decayed_weights(wd), optax.adam(lr, b1=b1, b2=b2, eps=eps))
    if name == "sgdp":
        return optax.chain(optax.trace(decay=mom), project_radial(), optax.scale_by_learning_rate(lr), _decay(lr, wd))
    if name == "adamp":
        return optax.chain(
            optax.scale_by_adam(b1=b1, b2=b2, eps=eps), project_radial(), optax.scale_by_learning_rate(lr), _decay(lr, wd)
        )
    if name == "lion":
        # optax.lion: u = sign(b1·m + (1-b1)·g), m ← b2·m + (1-b2)·g; its weight_decay is
        # multiplied by the learning rate (decoupled), so the step is x' = (1-ηλ)x - η u.
        return optax.lion(lr, b1=b1, b2=b2, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
