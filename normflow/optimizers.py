"""The lab's named optimizers, all built from optax (docs/theory.md §2, §4–§8).

Every optimizer is written so that one step is ``x' = x + updates``; docs/theory.md §2 reads it as
``x' = (1 - ηλ) x - η u`` with the run's ``λ = weight_decay``. Names:

=========  ===================================================================================
``gd``     full-batch gradient descent; decay ``-ηλx`` (same as L2 for plain GD)
``sgd``    minibatch SGD, decoupled decay ``-ηλx`` (identical to ``sgd_l2`` up to rounding)
``sgd_l2`` minibatch SGD with ``λx`` added to the gradient
``sgdm``   heavy ball, decay added to the gradient *before* the momentum (PyTorch's
           ``weight_decay``, optax ``add_decayed_weights`` then ``sgd(momentum=β)``; docs/theory.md §7)
``sgdmw``  heavy ball with decoupled decay ``-ηλx`` outside the momentum (docs/theory.md §7.2)
``adam``   Adam, no decay (``weight_decay`` must be 0)
``adamw``  AdamW: decoupled decay ``-ηλx`` (optax ``adamw``; docs/theory.md §8)
``adam_l2`` Adam with ``λx`` added to the gradient, i.e. passed through the preconditioner
``sgdp``   heavy ball whose update has its radial part removed (:func:`project_radial`),
           then decoupled decay
``adamp``  Adam whose update has its radial part removed, then decoupled decay
``lion``   Lion (optax ``lion``: sign of ``β₁m + (1-β₁)g``, momentum ``m`` with ``β₂``), decoupled
           decay ``-ηλx``; ``b1``/``b2`` are Lion's two betas (the sims pass Lion's published
           0.9 / 0.99, not Adam's 0.9 / 0.999)
=========  ===================================================================================

Outside the main job (:data:`EXTRA`: accepted by name by ``train``/``sweep``/:func:`make_optimizer`,
not in :data:`OPTIMIZERS`, which lists the optimizers with a committed main-job result and a
theory prediction):

==============  ==============================================================================
``lazy_adam``   lazy ("sparse") Adam, PyTorch's ``SparseAdam`` / TF Addons' ``LazyAdam``: the
                moments of a row move only on steps where the row is in the gradient
                (:func:`normflow.lazy_adam`)
``lazy_adamw``  lazy Adam with decoupled decay ``-ηλx`` of every row every step
                (:func:`normflow.lazy_adamw`)
==============  ==============================================================================

Both run on the sparse engine too (``train(..., sparse=True)``, :mod:`normflow._sparse`), with
``sgd``, ``sgd_l2``, ``gd``, ``sgdm`` and ``sgdmw``.

Hyperparameters may be traced arrays, so one compiled program serves a vmapped grid.

Learning-rate schedules (docs/theory.md §13): ``Hyper.lr`` may be a callable ``η(k)`` of the
0-based step index ``k`` instead of a number — a :class:`WarmupCosine` (the lab's type: its
parameters are arrays, so a vmapped grid over peak / warmup does not recompile) or any optax
schedule (its constants are compiled in). Step ``k`` then reads ``x' = (1 - η_kλ) x - η_k u``:
every decoupled decay is scaled by the same ``η_k`` (optax's ``adamw``/``lion`` do this with a
schedule; the lab's ``_decay`` does it with its own step counter).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike

from ._lazy_adam import lazy_adam, lazy_adamw

__all__ = ["OPTIMIZERS", "REGISTRY", "EXTRA", "NamedOptimizer", "is_transformation", "Hyper", "WarmupCosine", "is_schedule", "make_optimizer", "project_radial",
           "check_optimizer_args", "check_schedule", "named_optimizer"]



class WarmupCosine(eqx.Module):
    """Linear warmup then cosine decay, as ``optax.warmup_cosine_decay_schedule`` (docs/theory.md §13)::

        η_k = init + (peak - init)·k/W                                   k < W
        η_k = peak·[(1-α)·½(1 + cos(π·min(k-W, D-W)/(D-W))) + α]       k ≥ W,  α = end/peak

    with ``W = warmup_steps`` and ``D = decay_steps`` (optax's convention: the *total* length,
    warmup included; ``η_k = end`` for ``k ≥ D``). ``k`` is the 0-based step index, so with
    ``init = 0`` the first step does nothing. Every field may be a (traced) array: a vmapped
    sweep over peak / warmup / length runs one compiled program (fields with a leading config
    axis in :func:`normflow.sweep`). ``W = 0`` is a pure cosine; ``D = W`` a warmup to a constant.
    """

    peak: ArrayLike
    warmup_steps: ArrayLike
    decay_steps: ArrayLike
    init: ArrayLike = 0.0
    end: ArrayLike = 0.0

    def __call__(self, count):
        peak = jnp.asarray(self.peak)
        w = jnp.asarray(self.warmup_steps, peak.dtype)
        d = jnp.asarray(self.decay_steps, peak.dtype)
        init, end = jnp.asarray(self.init, peak.dtype), jnp.asarray(self.end, peak.dtype)
        count = jnp.asarray(count)
        # warmup: optax.linear_schedule(init, peak, W) (polynomial, power 1)
        c = jnp.clip(count, 0, w)
        frac = 1 - c / jnp.where(w > 0, w, 1)
        warm = (init - peak) * frac + peak
        # decay: optax.cosine_decay_schedule(peak, D - W, alpha=end/peak) at count - W
        alpha = jnp.where(peak == 0, 0.0, end / jnp.where(peak == 0, 1, peak))
        span = d - w
        t = jnp.minimum((count - w).astype(peak.dtype), span)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * t / jnp.where(span > 0, span, 1)))
        cool = peak * ((1 - alpha) * cosine + alpha)
        cool = jnp.where(span > 0, cool, peak)
        return jnp.where(count < w, warm, cool)

    def astype(self, dtype) -> "WarmupCosine":
        """The same schedule with every field a ``dtype`` array (so jit traces, not bakes, them)."""
        return WarmupCosine(*(jnp.asarray(v, dtype) for v in (self.peak, self.warmup_steps, self.decay_steps,
                                                             self.init, self.end)))


def is_schedule(lr) -> bool:
    """True if ``lr`` is a learning-rate schedule (a callable of the step), not a number."""
    return callable(lr)


def check_schedule(lr) -> None:
    """A one-line ``ValueError`` naming a bad :class:`WarmupCosine` field (negative, NaN, or
    ``decay_steps < warmup_steps``); other callables are taken as given. Works on scalar or
    per-config (1-D) fields: the first bad entry is named."""
    if not isinstance(lr, WarmupCosine):
        return
    import numpy as np

    vals = {}
    for f in ("peak", "warmup_steps", "decay_steps", "init", "end"):
        v = np.atleast_1d(np.asarray(getattr(lr, f), dtype=np.float64))
        vals[f] = v
        bad = ~(np.isfinite(v) & (v >= 0))
        if f == "peak":
            bad |= ~(v > 0)
        if np.any(bad):
            x = v[np.argmax(bad)]
            need = "> 0" if f == "peak" else ">= 0"
            raise ValueError(f"schedule {f} must be finite and {need}, got {x}")
    w, d = np.broadcast_arrays(vals["warmup_steps"], vals["decay_steps"])
    if np.any(d < w):
        i = int(np.argmax(d < w))
        raise ValueError(f"schedule decay_steps (the total length, warmup included) must be >= warmup_steps, "
                         f"got decay_steps={d[i]} < warmup_steps={w[i]}")


class Hyper(NamedTuple):
    """Optimizer hyperparameters; each may be a Python float or a (traced) array; ``lr`` may
    also be a schedule (a callable of the 0-based step, e.g. :class:`WarmupCosine`)."""

    lr: ArrayLike | Callable
    weight_decay: ArrayLike = 0.0
    momentum: ArrayLike = 0.9
    b1: ArrayLike = 0.9
    b2: ArrayLike = 0.999
    eps: ArrayLike = 1e-8


def check_optimizer_args(name: str | optax.GradientTransformation, lr, weight_decay, steps=None,
                         batch_size=None) -> None:
    """Raise a one-line ``ValueError`` naming the bad value."""
    if not is_transformation(name) and name not in REGISTRY and name not in EXTRA:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join((*OPTIMIZERS, *EXTRA))}")
    if is_schedule(lr):
        check_schedule(lr)
    elif not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if not is_transformation(name) and not named_optimizer(name).decay and weight_decay != 0:
        raise ValueError(
            f"{name} has no weight decay (got weight_decay={weight_decay}); use adamw (decoupled) or adam_l2 (coupled)"
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
    docs/theory.md §2, leaving only the second-order push ``η²|u|²``.
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
    if is_schedule(lr):
        return _scheduled_decay(lr, weight_decay)
    return optax.add_decayed_weights(-lr * weight_decay)


def _scheduled_decay(schedule, weight_decay) -> optax.GradientTransformation:
    """Decoupled decay with a schedule: adds ``-η_kλx`` at the ``k``-th update (its own step
    counter, in step with optax's ``scale_by_schedule`` counter in the same chain)."""

    def init_fn(params):
        del params
        return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("decoupled weight decay needs params")
        c = -schedule(state.count) * weight_decay
        updates = jax.tree_util.tree_map(lambda u, p: u + jnp.asarray(c, u.dtype) * p, updates, params)
        return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


class NamedOptimizer(NamedTuple):
    """One named optimizer of the lab: its optax factory over (traced) :class:`Hyper`, its default
    ``(lr, weight_decay)`` on the standard task (docs/theory.md §11's regime) and its checks.

    **Arguments:**

    - ``name``: the name ``train``/``sweep``/the sims take.
    - ``factory``: ``Hyper -> optax.GradientTransformation``; one step is ``x' = x + updates``,
      read by docs/theory.md §2 as ``x' = (1-ηλ)x - ηu`` with ``λ = weight_decay``.
    - ``lr``, ``weight_decay``: the defaults the sims use when no value is given.
    - ``decay``: ``False`` if the optimizer takes no weight decay (``weight_decay`` must be 0).
    - ``full_batch``: ``True`` for ``gd`` (a fixed set of ``n_full`` samples every step).
    """

    name: str
    factory: Callable[[Hyper], optax.GradientTransformation]
    lr: float
    weight_decay: float
    decay: bool = True
    full_batch: bool = False


def _lion(h: Hyper) -> optax.GradientTransformation:
    # optax.lion: u = sign(b1·m + (1-b1)·g), m ← b2·m + (1-b2)·g; its weight_decay is
    # multiplied by the learning rate (decoupled), so the step is x' = (1-ηλ)x - η u.
    return optax.lion(h.lr, b1=h.b1, b2=h.b2, weight_decay=h.weight_decay)


REGISTRY: dict[str, NamedOptimizer] = {o.name: o for o in (
    NamedOptimizer("gd", lambda h: optax.chain(optax.sgd(h.lr), _decay(h.lr, h.weight_decay)), 0.5, 0.0,
                   full_batch=True),
    NamedOptimizer("sgd", lambda h: optax.chain(optax.sgd(h.lr), _decay(h.lr, h.weight_decay)), 0.5, 1e-3),
    NamedOptimizer("sgdm", lambda h: optax.chain(optax.add_decayed_weights(h.weight_decay), optax.trace(decay=h.momentum),
                                                 optax.scale_by_learning_rate(h.lr)), 0.05, 1e-3),
    NamedOptimizer("sgdmw", lambda h: optax.chain(optax.trace(decay=h.momentum), optax.scale_by_learning_rate(h.lr),
                                                  _decay(h.lr, h.weight_decay)), 0.05, 1e-2),
    NamedOptimizer("adam", lambda h: optax.adam(h.lr, b1=h.b1, b2=h.b2, eps=h.eps), 1e-2, 0.0, decay=False),
    NamedOptimizer("adamw", lambda h: optax.adamw(h.lr, b1=h.b1, b2=h.b2, eps=h.eps, weight_decay=h.weight_decay),
                   1e-2, 0.05),
    NamedOptimizer("sgd_l2", lambda h: optax.chain(optax.add_decayed_weights(h.weight_decay), optax.sgd(h.lr)), 0.5, 1e-3),
    NamedOptimizer("adam_l2", lambda h: optax.chain(optax.add_decayed_weights(h.weight_decay),
                                                    optax.adam(h.lr, b1=h.b1, b2=h.b2, eps=h.eps)), 1e-2, 0.05),
    NamedOptimizer("sgdp", lambda h: optax.chain(optax.trace(decay=h.momentum), project_radial(),
                                                 optax.scale_by_learning_rate(h.lr), _decay(h.lr, h.weight_decay)),
                   0.05, 1e-2),
    NamedOptimizer("adamp", lambda h: optax.chain(optax.scale_by_adam(b1=h.b1, b2=h.b2, eps=h.eps), project_radial(),
                                                  optax.scale_by_learning_rate(h.lr), _decay(h.lr, h.weight_decay)),
                   1e-2, 0.05),
    NamedOptimizer("lion", _lion, 1e-3, 0.5),
)}
"""Every named optimizer of the main job (see the module table); adding one is one entry here."""

EXTRA: dict[str, NamedOptimizer] = {o.name: o for o in (
    NamedOptimizer("lazy_adam", lambda h: lazy_adam(h.lr, b1=h.b1, b2=h.b2, eps=h.eps), 1e-2, 0.0, decay=False),
    NamedOptimizer("lazy_adamw", lambda h: lazy_adamw(h.lr, b1=h.b1, b2=h.b2, eps=h.eps, weight_decay=h.weight_decay),
                   1e-2, 0.05),
)}
"""Named optimizers outside the main job (no committed main-job result, docs/theory.md formula
or prediction yet): accepted by name wherever a name of :data:`REGISTRY` is, not listed in
:data:`OPTIMIZERS`. An entry moves to :data:`REGISTRY` once it has those."""


def is_transformation(optimizer) -> bool:
    """True for a user's own optax ``GradientTransformation`` (not a name of :data:`REGISTRY`)."""
    return isinstance(optimizer, optax.GradientTransformation)


def make_optimizer(name, hyper: Hyper) -> optax.GradientTransformation:
    """The optax transformation for a named optimizer (see the module table), or ``name``
    itself when it is already an optax ``GradientTransformation``."""
    if is_transformation(name):
        return name
    return named_optimizer(name).factory(hyper)


def named_optimizer(name: str) -> NamedOptimizer:
    """The :class:`NamedOptimizer` called ``name``, from :data:`REGISTRY` or :data:`EXTRA`
    (a one-line ``ValueError`` for an unknown name)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in EXTRA:
        return EXTRA[name]
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join((*OPTIMIZERS, *EXTRA))}")


OPTIMIZERS: tuple[str, ...] = tuple(REGISTRY)
