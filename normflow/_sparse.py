"""The sparse engine (``train(..., sparse=True)``): a step on the free table that reads and
writes only the rows in the minibatch, the same trajectory as the dense step up to rounding.

A step of the dense engine costs ``O(N·d)`` for ``N`` concepts (a dense gradient, the decay of
every row, an update of every row) although only the ``≤ B`` rows of the minibatch carry a
gradient. Here a step costs ``O(B·d)``: the minibatch's distinct rows are gathered, the loss is
differentiated with respect to them only, and they are written back. What happens to the rows
*not* in the batch is kept exactly, in one of two lazy forms:

- **a global scale** (``gd``, ``sgd``, ``sgd_l2``, ``lazy_adam``, ``lazy_adamw``): an absent row
  only decays, ``x ← (1-ηλ)x``, the same factor for every row. The table is stored as
  ``x_i = s·U_i`` with one scalar ``s_k = Π_{j<k}(1-ηλ)``: a step multiplies ``s`` by
  ``(1-ηλ)`` (the decay of every row, for free) and writes ``U_i ← U_i - η d_i / s'`` on the
  batch's rows (``d_i`` the row's gradient, or lazy Adam's direction; for ``sgd_l2`` the L2 term
  ``λx`` of the gradient gives the same ``(1-ηλ)``). ``s`` is folded into the rows (``U ← sU``,
  ``s ← 1``) at every recorded step and whenever it falls below ``2⁻⁵⁰`` (so ``U`` never
  overflows; one ``O(N·d)`` pass every ``≈ 35/(ηλ)`` steps).
- **a matrix power** (``sgdm``, ``sgdmw``): an absent row's position and velocity evolve by a
  linear recursion with constant coefficients, ``(x, m)' = A (x, m)`` with
  ``A = [[1-ηλ, -ηβ], [λ, β]]`` (``sgdm``: coupled decay in the momentum,
  ``m' = λx + βm``, ``x' = x - ηm'``) or ``A = [[1-ηλ, -ηβ], [0, β]]`` (``sgdmw``:
  ``m' = βm``, ``x' = (1-ηλ)x - ηm'``). Each row keeps the step count at which its ``(x, m)``
  is current; when it is next touched (or recorded) the ``n`` skipped steps are applied as
  ``Aⁿ`` (by squaring, per row), then the step.

Optimizers with no exact lazy form stay dense: ``adam``, ``adamw``, ``adam_l2`` (the moments of
every row move every step, and the step ``m̂/(√v̂+ε)`` of an absent row is not a linear
recursion), ``sgdp``/``adamp`` (the radial projection of the momentum depends on the row's
current direction) and ``lion`` (``sign(m)`` of an absent row is constant while ``m`` decays, so
a closed form exists, but only until ``m`` underflows to 0 in the dense run; not implemented).
A learning-rate schedule is not supported here, nor a network, nor ``devices``. A sweep
(``nf.sweep(..., sparse=True)``) runs this step under ``vmap`` over its configs, with the scale
folded at fixed step counts (:func:`renorm_interval`) instead of on each config's own scale.

The record is the dense engine's: at a recorded step every row is brought up to date, so
``norms``, ``radial``, ``angular`` and ``update_sq`` are measured on the full table exactly
as there. Divergence is checked on the rows the step touched (an absent row only decays, or
evolves linearly, so a finite row stays finite); the dense engine also counts an overflowing
sum of squares of the whole table, which a sum over rows of finite squares rarely is.

The returned ``Trajectory.opt_state`` is a :class:`SparseOptState`, not an optax state.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .measure import split_update
from .models import EmbeddingTable
from .optimizers import Hyper, is_schedule, is_transformation
from .tasks import Batch

__all__ = ["SPARSE_OPTIMIZERS", "SparseOptState", "check_sparse_args", "init_sparse_state", "run_sparse_chunk",
           "matrix_power_rows", "renorm_interval"]

SPARSE_OPTIMIZERS: tuple[str, ...] = ("gd", "sgd", "sgd_l2", "sgdm", "sgdmw", "lazy_adam", "lazy_adamw")
"""The named optimizers with an exact sparse step (see the module docstring)."""

_SCALED = ("gd", "sgd", "sgd_l2", "lazy_adam", "lazy_adamw")
_MOMENTUM = ("sgdm", "sgdmw")
_ADAM = ("lazy_adam", "lazy_adamw")
_RENORM = 2.0**-50  # fold the global scale into the rows below this

_DENSE_ONLY = {
    "adam": "its moments move every row every step (use lazy_adam for the lazy form)",
    "adamw": "its moments move every row every step (use lazy_adamw for the lazy form)",
    "adam_l2": "its moments move every row every step",
    "sgdp": "the projection of an absent row's momentum depends on its current direction",
    "adamp": "its moments move every row every step",
    "lion": "an absent row's sign(m) walk is exact only until m underflows in the dense run",
}


class SparseOptState(NamedTuple):
    """The sparse engine's optimizer state (the ``opt_state`` of its ``TrainState``).

    - ``scale``: the global scale ``s`` (rows are ``x = s·U``; 1 for the momentum variants).
    - ``count``: steps done (lazy Adam's bias correction uses it).
    - ``last``: per row, the step count at which its ``(x, m)`` is current (momentum), else None.
    - ``mu``: the velocity (momentum) or lazy Adam's first moment, per row; else None.
    - ``nu``: lazy Adam's second moment, per row; else None.
    """

    scale: Float[Array, ""]
    count: Int[Array, ""]
    last: Int[Array, " N"] | None
    mu: Float[Array, "N d"] | None
    nu: Float[Array, "N d"] | None


def check_sparse_args(optimizer, model, lr, devices) -> None:
    """A one-line ``ValueError`` for what the sparse engine cannot run exactly."""
    if is_transformation(optimizer):
        raise ValueError("sparse=True takes a named optimizer (one of "
                         f"{', '.join(SPARSE_OPTIMIZERS)}), not an optax transformation")
    if optimizer in _DENSE_ONLY:
        raise ValueError(f"sparse=True: {optimizer} has no exact sparse step ({_DENSE_ONLY[optimizer]}); "
                         f"use sparse=False, or one of {', '.join(SPARSE_OPTIMIZERS)}")
    if optimizer not in SPARSE_OPTIMIZERS:
        raise ValueError(f"sparse=True: unknown optimizer {optimizer!r}; valid: {', '.join(SPARSE_OPTIMIZERS)}")
    if not isinstance(model, EmbeddingTable):
        raise ValueError(f"sparse=True needs the free table (EmbeddingTable), got {type(model).__name__}: "
                         "a network's shared weights get a dense gradient")
    if is_schedule(lr):
        raise ValueError("sparse=True does not take a learning-rate schedule (use sparse=False)")
    if devices is not None:
        raise ValueError("sparse=True runs on one device (devices must be None)")


def init_sparse_state(params, optimizer: str):
    """The sparse engine's :class:`~normflow.train.TrainState` for the table ``params``."""
    from .train import TrainState

    w = params.weight
    n = w.shape[0]
    mom = optimizer in _MOMENTUM or optimizer in _ADAM
    opt = SparseOptState(
        scale=jnp.ones((), w.dtype),
        count=jnp.zeros((), jnp.int32),
        last=jnp.zeros((n,), jnp.int32) if optimizer in _MOMENTUM else None,
        mu=jnp.zeros_like(w) if mom else None,
        nu=jnp.zeros_like(w) if optimizer in _ADAM else None,
    )
    return TrainState(params, opt, jnp.array(-1, jnp.int32), jnp.array(-1, jnp.int32))


def _transition(optimizer: str, hyper: Hyper, dtype) -> Float[Array, "2 2"]:
    """The heavy ball's one-step map of an absent row, ``(x, m)' = A (x, m)``."""
    lr, wd, beta = (jnp.asarray(v, dtype) for v in (hyper.lr, hyper.weight_decay, hyper.momentum))
    coupled = wd if optimizer == "sgdm" else jnp.zeros((), dtype)
    return jnp.stack([jnp.stack([1 - lr * wd, -lr * beta]), jnp.stack([coupled, beta])])


def matrix_power_rows(a: Float[Array, "2 2"], n: Int[Array, " R"]) -> Float[Array, "R 2 2"]:
    """``aⁿ`` for every entry of ``n`` (``n ≥ 0``, int32), by squaring: 31 rounds of 2×2 products.

    **Arguments:**

    - ``a``: a 2×2 matrix.
    - ``n``: the exponents, one per row.

    **Returns:**

    ``[R, 2, 2]``: ``a^{n_r}`` per row (the identity where ``n_r = 0``).
    """
    eye = jnp.broadcast_to(jnp.eye(2, dtype=a.dtype), n.shape + (2, 2))

    def body(i, carry):
        out, base = carry
        bit = ((n >> i) & 1).astype(bool)
        out = jnp.where(bit[:, None, None], out @ base, out)
        return out, base @ base

    out, _ = jax.lax.fori_loop(0, 31, body, (eye, a))
    return out


def _advance(a, n, x, m):
    """Apply ``aⁿ`` (per row) to the rows' ``(x, m)``."""
    p = matrix_power_rows(a, n)
    return (p[:, 0, 0, None] * x + p[:, 0, 1, None] * m, p[:, 1, 0, None] * x + p[:, 1, 1, None] * m)


def _set_weight(params, w):
    return eqx.tree_at(lambda p: p.weight, params, w)


def _done(state, k):
    """Steps applied by step count ``k``: ``k``, or the first diverged step (frozen from then on)."""
    return jnp.where(state.bad_step >= 0, state.bad_step, k)


def current_table(state, optimizer: str, hyper: Hyper, k) -> Float[Array, "N d"]:
    """Every row as of step count ``k`` (the true table; ``O(N·d)``)."""
    w, opt = state.params.weight, state.opt_state
    if optimizer in _MOMENTUM:
        x, _ = _advance(_transition(optimizer, hyper, w.dtype), _done(state, k) - opt.last, w, opt.mu)
        return x
    return opt.scale * w


def _sync(state, optimizer: str, hyper: Hyper, k):
    """Bring every row up to date at step count ``k``: fold the scale into the rows, or apply
    the momentum rows' pending ``Aⁿ`` (``O(N·d)``; at recorded steps and on renormalisation)."""
    w, opt = state.params.weight, state.opt_state
    if optimizer in _MOMENTUM:
        k = _done(state, k)
        x, m = _advance(_transition(optimizer, hyper, w.dtype), k - opt.last, w, opt.mu)
        opt = opt._replace(mu=m, last=jnp.full_like(opt.last, k))
    else:
        x = opt.scale * w
        opt = opt._replace(scale=jnp.ones_like(opt.scale))
    return eqx.tree_at(lambda s: (s.params, s.opt_state), state, (_set_weight(state.params, x), opt))


def renorm_interval(optimizer: str, lr, weight_decay) -> int:
    """A fixed fold interval for a grid of configs (``nf.sweep(..., sparse=True)``): the most
    steps after which the global scale of every config is still ``≥ 2⁻⁵⁰``, or ``2³¹−1`` (never)
    where the scale never moves (no decay, or a momentum optimizer, whose lazy form has no scale).
    The sweep passes it traced, so a new grid does not recompile.

    Under ``vmap`` the data-dependent fold (``lax.cond`` on each config's own scale) would
    become a select that computes the ``O(N·d)`` fold every step; a fold at fixed step counts
    is a real branch for every config at once. Folding earlier only changes rounding.
    """
    never = 2**31 - 1
    if optimizer not in _SCALED or optimizer == "lazy_adam":
        return never
    rate = float(np.max(-np.log1p(-np.asarray(lr, np.float64) * np.asarray(weight_decay, np.float64))))
    return never if rate <= 0 else max(1, min(never, int(50 * np.log(2) / rate)))


def sparse_step(state, k, batch: Batch, *, optimizer: str, hyper: Hyper, task, static, loss_fn: Callable,
                renorm_every=None):
    """One step with index ``k`` (0-based) on ``batch``, touching only the batch's rows.

    **Arguments:**

    - ``state``: the sparse engine's ``TrainState`` (rows current as its lazy form says).
    - ``k``: the step index (``k`` steps done before it).
    - ``batch``: the minibatch.
    - ``optimizer``, ``hyper``: one of :data:`SPARSE_OPTIMIZERS` and its hyperparameters.
    - ``task``, ``static``, ``loss_fn``: the loss, as the dense engine's.
    - ``renorm_every``: None (fold the scale when it falls below ``2⁻⁵⁰``) or an int (or a 0-d
      int array, traced) : fold after every ``renorm_every``-th step (see :func:`renorm_interval`;
      for a ``vmap`` over configs, where it must not be batched).

    **Returns:**

    ``(state, loss)``. A step whose loss or touched rows are not finite is not applied (the
    dense engine's divergence rule, see the module docstring).
    """
    w, opt = state.params.weight, state.opt_state
    n_rows, dt = w.shape[0], w.dtype
    lr, wd = jnp.asarray(hyper.lr, dt), jnp.asarray(hyper.weight_decay, dt)
    b = batch.concepts.shape[0]
    ids, inv = jnp.unique(batch.concepts, size=b, fill_value=n_rows, return_inverse=True)
    inv = inv.reshape(-1)
    valid = ids < n_rows
    stored = w.at[ids].get(mode="clip")
    if optimizer in _MOMENTUM:
        a = _transition(optimizer, hyper, dt)
        x, m = _advance(a, k - opt.last.at[ids].get(mode="clip"), stored, opt.mu.at[ids].get(mode="clip"))
    else:
        x = opt.scale * stored

    def loss_of(rows):
        model = eqx.combine(_set_weight(state.params, rows), static)
        return task.loss(model, Batch(concepts=inv, contexts=batch.contexts), loss_fn)

    loss, g = jax.value_and_grad(loss_of)(x)
    # per-row state after the step: (old rows, new rows) per per-row array, written once below
    per_row = {}
    if optimizer in _MOMENTUM:
        beta = jnp.asarray(hyper.momentum, dt)
        if optimizer == "sgdm":  # optax: add_decayed_weights(λ), trace(β), scale(-η)
            m2 = g + wd * x + beta * m
            x2 = x - lr * m2
        else:  # sgdmw: trace(β), scale(-η), then -ηλx
            m2 = g + beta * m
            x2 = x - lr * m2 - lr * wd * x
        rows, scale = x2, opt.scale
        per_row["mu"] = (opt.mu.at[ids].get(mode="clip"), m2)
        per_row["last"] = (opt.last.at[ids].get(mode="clip"), jnp.full(ids.shape, k + 1, jnp.int32))
    else:
        if optimizer in _ADAM:
            b1, b2, eps = (jnp.asarray(v, dt) for v in (hyper.b1, hyper.b2, hyper.eps))
            t = (opt.count + 1).astype(dt)
            mu0, nu0 = opt.mu.at[ids].get(mode="clip"), opt.nu.at[ids].get(mode="clip")
            mu = b1 * mu0 + (1 - b1) * g
            nu = b2 * nu0 + (1 - b2) * g * g
            d = jnp.sqrt(1 - b2**t) / (1 - b1**t) * mu / (jnp.sqrt(nu) + eps)
            per_row["mu"], per_row["nu"] = (mu0, mu), (nu0, nu)
        else:
            d = g
        decay = wd if optimizer != "lazy_adam" else jnp.zeros((), dt)
        scale = opt.scale * (1 - lr * decay)
        rows = stored - lr * d / scale
        x2 = scale * rows
    r2 = jnp.sum(x2 * x2, axis=-1)
    bad_row = valid & ~jnp.isfinite(r2)
    ok = jnp.isfinite(loss) & ~jnp.any(bad_row) & jnp.isfinite(scale)
    first_bad = (state.bad_step < 0) & ~ok
    keep = ok & (state.bad_step < 0)
    concept = jnp.min(jnp.where(bad_row, ids, n_rows))
    concept = jnp.where(concept < n_rows, concept, -1).astype(jnp.int32)
    # a step not kept writes the old rows back and keeps the old state: O(B·d) either way
    put = lambda table, old, new: table.at[ids].set(jnp.where(keep, new, old), mode="drop")
    new_opt = opt._replace(scale=jnp.where(keep, scale, opt.scale), count=opt.count + keep.astype(jnp.int32),
                           **{f: put(getattr(opt, f), *v) for f, v in per_row.items()})
    new = type(state)(
        _set_weight(state.params, put(w, stored, rows)), new_opt,
        jnp.where(first_bad, jnp.asarray(k, jnp.int32), state.bad_step),
        jnp.where(first_bad, concept, state.bad_concept),
    )
    if optimizer in _SCALED:
        fold = new.opt_state.scale < _RENORM if renorm_every is None else (k + 1) % renorm_every == 0
        new = jax.lax.cond(fold, lambda s: _sync(s, optimizer, hyper, k + 1), lambda s: s, new)
    return new, loss


def run_sparse_chunk(
    state,
    record_at: Int[Array, " C"],
    n_plain: Int[Array, " C"],
    active: Array,
    *,
    static,
    task,
    optimizer: str,
    hyper: Hyper,
    data_key: PRNGKeyArray,
    batch_size: int,
    loss_fn: Callable,
    fixed_batch: Batch | None,
    renorm_every=None,
):
    """The sparse counterpart of :func:`normflow.train.run_chunk` (same arguments and records;
    ``renorm_every`` as for :func:`sparse_step`).

    For each entry c: ``n_plain[c]`` sparse steps, then (if active) the step ``record_at[c]``
    on the full, up-to-date table, measured as the dense engine measures it; after it every
    row is current (the scale folded in, the momentum rows advanced), so the state between
    chunks holds the true table. Returns the new state and ``(norms, radial, angular,
    update_sq, loss)`` per entry.
    """
    task = task.prepared()  # the sampler's table once per chunk, not once per step
    lr, wd = hyper.lr, hyper.weight_decay

    def batch_of(k):
        return fixed_batch if fixed_batch is not None else task.sample(jax.random.fold_in(data_key, k), batch_size)

    def step(st, k):
        return sparse_step(st, k, batch_of(k), optimizer=optimizer, hyper=hyper, task=task, static=static,
                           loss_fn=loss_fn, renorm_every=renorm_every)

    def body(st, xs):
        k_rec, n, act = xs
        start = k_rec - n
        st = jax.lax.fori_loop(0, n, lambda i, s: step(s, start + i)[0], st)
        w = st.params.weight

        def record(s):
            x0 = current_table(s, optimizer, hyper, k_rec)
            s, loss = step(s, k_rec)
            s = _sync(s, optimizer, hyper, k_rec + 1)
            x1 = s.params.weight
            u = ((1.0 - lr * wd) * x0 - x1) / lr
            u_r, ang, u_sq = split_update(x0, u)
            norms = jnp.sqrt(jnp.sum(x1 * x1, axis=-1))
            return s, (norms, u_r, ang, u_sq, loss.astype(w.dtype))

        def skip(s):
            z = jnp.zeros(w.shape[:1], w.dtype)
            return s, (z, z, z, z, jnp.zeros((), w.dtype))

        return jax.lax.cond(act, record, skip, st)

    return jax.lax.scan(body, state, (record_at, n_plain, active))
