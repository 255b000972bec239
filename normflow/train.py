"""Discrete training (docs/theory.md §2, §4–§8): one compiled ``lax.scan`` over the recorded steps.

Between two recorded steps the plain step runs in a ``lax.fori_loop``; at a recorded step one
extra step also measures docs/theory.md §2's terms (see :mod:`normflow.trajectory`). Nothing leaves
the device between recorded steps, and memory is ``O(saves × concepts)``, not ``O(steps)``.

Minibatch ``k`` (0-based step index) is drawn with ``jax.random.fold_in(data_key, k)``, so a
run is deterministic given its key and does not depend on how the scan is chunked.

Data parallel (``train(..., devices=...)``): the minibatch of every step is split over a 1-D
mesh ``"batch"`` of devices (``NamedSharding(mesh, P("batch"))``) and the parameters are
replicated; XLA's SPMD partitioner inserts the collectives (the contexts' all-gather for the
in-batch negatives, the gradient's all-reduce). The minibatches are the same as on one device
(with ``jax_threefry_partitionable``, JAX's default, the same key draws the same numbers
whatever the sharding), so the run equals the one-device run up to float rounding of the
gradient's sum.

Learning-rate schedules (docs/theory.md §13): ``lr`` may be a schedule ``η(k)`` of the 0-based
step index (:class:`normflow.optimizers.WarmupCosine`, or any optax schedule). The recorded
update of step ``k`` is then defined with that step's ``η_k``, ``x' = (1-η_kλ)x - η_k u``
(``u = 0`` on a step with ``η_k = 0``), and ``Trajectory.times`` is ``t_k = Σ_{j<k} η_j``.
With a constant ``lr`` the program is the one it always was (``t = η·k``).

Divergence: a step whose loss or new parameters are not finite is not applied; the first such
step is kept in ``diverged_step`` (else -1) with the first non-finite concept in
``diverged_concept``, and the parameters stay frozen from then on (so the record up to the
divergence is intact).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from jaxtyping import Array, Int, PRNGKeyArray

from ._sparse import check_sparse_args, init_sparse_state, run_sparse_chunk
from .losses import get_loss
from .measure import split_update
from .models import EmbeddingTable
from .optimizers import Hyper, WarmupCosine, check_optimizer_args, is_schedule, is_transformation, make_optimizer
from .tasks import Batch
from .trajectory import Trajectory, normalize_save_steps

__all__ = ["train", "simulate", "default_model", "full_batch", "TrainState", "init_state", "run_chunk"]


def default_model(task, key: PRNGKeyArray, init_norm: float = 1.0) -> EmbeddingTable:
    """The free table (docs/theory.md §2–8) with rows of norm ``init_norm``, in the task's dtype."""
    return EmbeddingTable(task.num_concepts, task.dim, key=key, init_norm=init_norm, dtype=task.dtype)


def full_batch(task, key: PRNGKeyArray, n_samples: int) -> Batch:
    """The fixed sample set used by ``gd`` and by the flows (the "full batch")."""
    return task.sample(key, n_samples)


def full_batch_of(task, data_key: PRNGKeyArray, n_samples: int) -> Batch:
    """The full batch of a run whose data key is ``data_key``: ``task.full_batch`` (the lab's one
    convention, :meth:`normflow.tasks.AbstractTask.full_batch`)."""
    return task.full_batch(data_key, n_samples)


def _split_keys(key):
    k_model, k_data = jax.random.split(key)
    return k_model, k_data


def _tree_all_finite(tree) -> Array:
    """Every leaf finite *and* its sum of squares finite (a norm that overflows counts as
    divergence: with a scale-invariant loss the parameters can stay finite while |x|² does not)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.isfinite(jnp.sum(x * x)) for x in leaves]))


def _tree_select(pred, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(pred, x, y), a, b)


class TrainState(eqx.Module):
    """The scan carry: parameters, optimizer state, first bad step / concept."""

    params: object
    opt_state: object
    bad_step: Int[Array, ""]
    bad_concept: Int[Array, ""]


def init_state(model, optimizer: str | optax.GradientTransformation, hyper: Hyper) -> TrainState:
    params, _ = eqx.partition(model, eqx.is_inexact_array)
    opt = make_optimizer(optimizer, hyper)
    return TrainState(params, opt.init(params), jnp.array(-1, jnp.int32), jnp.array(-1, jnp.int32))


def run_chunk(
    state: TrainState,
    record_at: Int[Array, " C"],
    n_plain: Int[Array, " C"],
    active: Array,
    *,
    static,
    task,
    optimizer: str | optax.GradientTransformation,
    hyper: Hyper,
    data_key: PRNGKeyArray,
    batch_size: int,
    loss_fn: Callable,
    fixed_batch: Batch | None,
    batch_sharding=None,
    guard: bool = True,
):
    """Advance ``state`` through a chunk of recorded steps (pure; jit/vmap-able).

    For each entry c: run ``n_plain[c]`` plain steps, then the step with index
    ``record_at[c]`` while measuring docs/theory.md §2's terms. Inactive entries (padding) do nothing.
    ``batch_sharding``: None, or a ``NamedSharding`` that splits each minibatch over devices
    (data parallel; see the module docstring). ``guard``: a step whose loss or parameters are not
    finite is not applied (the state stays the last finite one); without it the step is applied
    all the same (it is still found and named), which saves the passes over the whole state that
    keeping the old one costs (see :func:`train`).
    Returns the new state and per-entry records ``(norms, radial, angular, update_sq, loss)``.
    """
    opt = make_optimizer(optimizer, hyper)
    task = task.prepared()  # the sampler's table once per chunk, not once per step
    lr, wd = hyper.lr, hyper.weight_decay

    def loss_of(params, batch):
        return task.loss(eqx.combine(params, static), batch, loss_fn)

    def concepts_of(params):
        return eqx.combine(params, static).concept_embeddings()

    def step(st: TrainState, k):
        batch = fixed_batch if fixed_batch is not None else task.sample(jax.random.fold_in(data_key, k), batch_size)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        loss, g = jax.value_and_grad(loss_of)(st.params, batch)
        updates, new_opt = opt.update(g, st.opt_state, st.params)
        new_params = optax.apply_updates(st.params, updates)
        ok = jnp.isfinite(loss) & _tree_all_finite(new_params)
        first_bad = (st.bad_step < 0) & ~ok
        keep = ok & (st.bad_step < 0)

        def which_concept():
            r = jnp.sum(concepts_of(new_params) ** 2, axis=-1)
            bad = ~jnp.isfinite(r)
            return jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32)

        concept = jax.lax.cond(first_bad, which_concept, lambda: jnp.array(-1, jnp.int32))
        new = TrainState(
            _tree_select(keep, new_params, st.params) if guard else new_params,
            _tree_select(keep, new_opt, st.opt_state) if guard else new_opt,
            jnp.where(first_bad, k.astype(jnp.int32), st.bad_step),
            jnp.where(first_bad, concept, st.bad_concept),
        )
        return new, loss

    def measure(x0, x1, k):
        if is_schedule(lr):
            # u of this step's η_k: x' = (1-η_kλ)x - η_k u; a step with η_k = 0 records u = 0
            eta = jnp.asarray(lr(k), x0.dtype)
            pos = eta > 0
            u = jnp.where(pos, ((1.0 - eta * wd) * x0 - x1) / jnp.where(pos, eta, 1), 0)
        else:
            u = ((1.0 - lr * wd) * x0 - x1) / lr
        u_r, ang, u_sq = split_update(x0, u)
        norms = jnp.sqrt(jnp.sum(x1 * x1, axis=-1))
        return norms, u_r, ang, u_sq

    def body(st, xs):
        # One loop of n plain steps and, when the entry is active, the recorded step k_rec: the
        # step is traced once (compile time), and the embeddings before the last step ride in
        # the carry, so the recorded step is measured without a second copy of it.
        k_rec, n, act = xs
        start = k_rec - n
        x_init = concepts_of(st.params)
        loss_init = jnp.zeros((), x_init.dtype)

        total = n + act.astype(n.dtype)

        def one(i, carry):
            s, x_prev, _ = carry
            # the embeddings before the step, kept only for the last one (a network's forward
            # pass over every concept is not paid on the plain steps)
            x_before = jax.lax.cond(i == total - 1, lambda: concepts_of(s.params), lambda: x_prev)
            s, loss = step(s, start + i)
            return s, x_before, loss.astype(x_init.dtype)

        st, x0, loss = jax.lax.fori_loop(0, total, one, (st, x_init, loss_init))
        rec = measure(x0, concepts_of(st.params), k_rec)
        zero = jnp.zeros_like(rec[0])
        rec = tuple(jnp.where(act, r, zero) for r in rec)
        return st, (*rec, jnp.where(act, loss, 0))

    return jax.lax.scan(body, state, (record_at, n_plain, active))


def simulate(
    model,
    task,
    optimizer: str | optax.GradientTransformation,
    hyper: Hyper,
    key: PRNGKeyArray,
    *,
    steps: int,
    save_steps: np.ndarray,
    batch_size: int,
    loss_fn: Callable,
    fixed_batch: Batch | None = None,
    sparse: bool = False,
    renorm_every=None,
) -> Trajectory:
    """Pure core of :func:`train` (jit- and vmap-able over ``model``, ``hyper`` and ``key``).

    ``save_steps`` must already be normalised (sorted, starting at 0, ending at ``steps``).
    ``sparse``: the sparse engine's step (:mod:`normflow._sparse`, ``renorm_every`` as for
    :func:`normflow._sparse.sparse_step`) instead of the dense one.
    """
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = init_sparse_state(params, optimizer) if sparse else init_state(model, optimizer, hyper)
    s = np.asarray(save_steps)
    record_at = jnp.asarray(s[1:] - 1, jnp.int32)
    n_plain = jnp.asarray(np.diff(s) - 1, jnp.int32)
    active = jnp.ones(len(s) - 1, bool)
    x0 = model.concept_embeddings()
    kw = dict(static=static, task=task, optimizer=optimizer, hyper=hyper, data_key=key, batch_size=batch_size,
              loss_fn=loss_fn, fixed_batch=fixed_batch)
    if sparse:
        state, (norms, rad, ang, usq, loss) = run_sparse_chunk(state, record_at, n_plain, active,
                                                               renorm_every=renorm_every, **kw)
    else:
        state, (norms, rad, ang, usq, loss) = run_chunk(state, record_at, n_plain, active, **kw)
    return _assemble(s, hyper.lr, x0, norms, rad, ang, usq, loss, state, static)


def lr_times(lr, save_steps, dtype) -> Array:
    """Training time ``t_k`` at the recorded steps ``k``: ``η·k`` for a constant ``lr``, else
    ``Σ_{j<k} η_j`` (docs/theory.md §13), summed segment by segment between recorded steps
    (a ``lax.scan`` of ``fori_loop``'s: memory ``O(saves)``, not ``O(steps)``)."""
    steps = jnp.asarray(save_steps, jnp.int32)
    if not is_schedule(lr):
        return lr * steps.astype(dtype)

    def segment(total, ab):
        a, b = ab
        part = jax.lax.fori_loop(a, b, lambda k, acc: acc + jnp.asarray(lr(k), dtype), jnp.zeros((), dtype))
        return total + part, total + part

    _, t = jax.lax.scan(segment, jnp.zeros((), dtype), (steps[:-1], steps[1:]))
    return jnp.concatenate([jnp.zeros((1,), dtype), t])


def _assemble(s, lr, x0, norms, rad, ang, usq, loss, state, static) -> Trajectory:
    n0 = jnp.sqrt(jnp.sum(x0 * x0, axis=-1))[None]
    z = jnp.zeros_like(n0)
    cat = lambda a, b: jnp.concatenate([a, b], axis=0)
    steps = jnp.asarray(s, jnp.int32)
    return Trajectory(
        steps=steps,
        times=lr_times(lr, s, x0.dtype),
        norms=cat(n0, norms),
        radial=cat(z, rad),
        angular=cat(z, ang),
        update_sq=cat(z, usq),
        loss=cat(jnp.full((1,), jnp.nan, x0.dtype), loss),
        diverged_step=state.bad_step,
        diverged_concept=state.bad_concept,
        model=eqx.combine(state.params, static),
        opt_state=state.opt_state,
    )


def train(
    task,
    optimizer: str | optax.GradientTransformation,
    *,
    lr=None,
    steps: int,
    key: PRNGKeyArray,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    model=None,
    loss="info_nce",
    save_steps=None,
    n_full: int = 512,
    callback: Callable[[int, object], None] | None = None,
    chunks: int | Sequence[int] | np.ndarray = 1,
    devices=None,
    sparse: bool = False,
    guard: bool = True,
) -> Trajectory:
    """Train ``model`` (default: the free table) on ``task`` with a named optimizer.

    Args:
        task: a task from :mod:`normflow.tasks`.
        optimizer: one of :data:`normflow.OPTIMIZERS` (``gd`` uses a fixed set of ``n_full``
            samples every step; the others draw ``batch_size`` samples per step), or any optax
            ``GradientTransformation`` (e.g. ``optax.lion(1e-3)``). Its step ``Δx`` is recorded
            exactly as for the named ones, read as ``Δx = -ηλx - ηu`` with the ``lr`` and
            ``weight_decay`` given here (default ``lr = 1``, ``λ = 0``: then ``u = -Δx``), so
            docs/theory.md §2's identity holds for it too; ``lr`` then only sets the units.
        lr, weight_decay, momentum, b1, b2, eps: optimizer hyperparameters (``momentum`` for
            sgdm/sgdmw/sgdp; ``b1, b2, eps`` for the Adam family). ``lr`` is a number or a
            schedule ``η(k)`` of the 0-based step (:class:`~normflow.optimizers.WarmupCosine`,
            or an optax schedule such as ``optax.warmup_cosine_decay_schedule(...)``);
            decoupled decay then uses ``η_kλ`` (docs/theory.md §13).
        steps: number of updates.
        key: PRNG key; split into the model key (used only when ``model`` is None) and the data key.
        model: an embedding model; default :func:`default_model`.
        loss: a loss name from :data:`normflow.LOSSES` or a callable ``(x, y, temperature)``.
        save_steps: None (about 64 log-spaced steps), an int (that many), or explicit steps.
        callback: optional ``callback(step, model)`` called at step 0 and after each chunk
            (progress bars, or measurements such as the source energy along the run).
        chunks: split the compiled scan into this many calls at recorded steps (an int: about
            equal numbers of recorded steps each), or a sequence of recorded steps to split at
            (the callback then runs at exactly those steps, e.g. log-spaced measurements of the
            source statistics); results are identical to one call (the same compiled program
            runs each chunk). With several
            chunks a diverged run stops at the end of the chunk where it diverged; the records
            after that are NaN.
        devices: None (one device, the default), ``"all"`` (``jax.devices()``) or a list of
            devices: split every minibatch over them (data parallel: ``batch_size``, and
            ``n_full`` for ``gd``, must be multiples of their number). Equal to the one-device
            run up to float rounding; on a CPU with one JAX device per core
            (:func:`normflow.cpu_devices_per_core`) it spreads one run over the cores.
        sparse: run the sparse engine (:mod:`normflow._sparse`): each step reads and writes
            only the minibatch's rows of the free table, the decay of the others kept exactly
            and lazily (a global scale, or a matrix power for the heavy ball), so a step costs
            the same for 1k or 100k concepts. The same trajectory and record as ``sparse=False``
            up to float rounding. For the optimizers of
            :data:`normflow.SPARSE_OPTIMIZERS` (``gd``, ``sgd``, ``sgd_l2``, ``sgdm``, ``sgdmw``,
            ``lazy_adam``, ``lazy_adamw``), a constant ``lr``, the free table and one device;
            the others (dense Adam's moments move every row every step) raise a ``ValueError``.
            ``opt_state`` is then a :class:`normflow._sparse.SparseOptState`.
        guard: a step whose loss or parameters are not finite is not applied, so
            the run's state and record stay those of its last finite step (default). With
            ``guard=False`` the step is applied anyway: the diverged step and concept are still
            found and named, but the state and the later records are not finite. Keeping the old
            state until the new one is checked costs extra passes over the table and moments
            every step (a dense AdamW step at 131,072 × 64 takes about half again as long), so
            the guard is lazy: each chunk runs without it, and only a chunk in which a step
            diverged is run again from its start with it. A run that never diverges thus costs
            what ``guard=False`` costs, and one that does gets the guarded records bit for bit
            (docs/benchmarks.md, Scale). The sparse engine always guards (it keeps only the
            touched rows, at no cost), whatever this flag says.

    Returns:
        A :class:`~normflow.trajectory.Trajectory` with ``steps``, ``times = lr·steps``
        (``Σ_{j<k} η_j`` with a schedule),
        per-concept ``norms, radial, angular, update_sq`` and the minibatch ``loss``.
    """
    if lr is None:
        if not is_transformation(optimizer):
            raise ValueError(f"lr is required for the named optimizer {optimizer!r}")
        lr = 1.0
    check_optimizer_args(optimizer, lr, weight_decay, steps, batch_size)
    batch_sharding = None if sparse else _batch_sharding(devices, n_full if optimizer == "gd" else batch_size)
    loss_fn = get_loss(loss)
    k_model, k_data = _split_keys(key)
    if model is None:
        model = default_model(task, k_model)
    if sparse:
        check_sparse_args(optimizer, model, lr, devices)
    s = normalize_save_steps(save_steps, steps)
    fixed = full_batch_of(task, k_data, n_full) if optimizer == "gd" else None
    hyper = Hyper(*(jnp.asarray(v, task.dtype) for v in (1.0 if is_schedule(lr) else lr, weight_decay, momentum, b1,
                                                          b2, eps)))
    if is_schedule(lr):
        # the lab's schedule is traced (its fields become arrays); any other callable is static
        hyper = hyper._replace(lr=lr.astype(task.dtype) if isinstance(lr, WarmupCosine) else lr)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    if sparse:
        state = _init_sparse_compiled(params, optimizer)
        fn = _compiled_sparse_chunk(optimizer, batch_size, loss_fn)
    else:
        state = _init_state_compiled(model, optimizer, hyper)
        # The guard runs lazily: every chunk first runs the program without the per-step select
        # (guard=False: the same results bit for bit while every step is finite), and only a chunk
        # that diverged is run again, from the same input state, with the select (guarded_fn).
        fn = _compiled_chunk(optimizer, batch_size, loss_fn, batch_sharding, False)
        guarded_fn = _compiled_chunk(optimizer, batch_size, loss_fn, batch_sharding, True) if guard else None
    # Split the recorded steps into chunks, each padded to the longest (padding keeps one compile).
    m = len(s) - 1
    bounds = _chunk_bounds(chunks, s)
    per = int(np.max(np.diff(bounds)))
    outs = []
    if callback is not None:
        callback(0, model)
    for c in range(len(bounds) - 1):
        lo, hi = bounds[c], bounds[c + 1]
        n = hi - lo
        rec = np.zeros(per, np.int64)
        npl = np.zeros(per, np.int64)
        act = np.zeros(per, bool)
        rec[:n], npl[:n], act[:n] = s[lo + 1:hi + 1] - 1, np.diff(s[lo:hi + 1]) - 1, True
        args = (jnp.asarray(rec, jnp.int32), jnp.asarray(npl, jnp.int32), jnp.asarray(act), static, task, hyper,
                k_data, fixed)
        new_state, out = fn(state, *args)
        diverged = int(new_state.bad_step) >= 0
        if diverged and guarded_fn is not None:
            new_state, out = guarded_fn(state, *args)  # the input state is not donated: rerun it
        state = new_state
        outs.append(tuple(o[:n] for o in out))
        if len(bounds) > 2 and diverged:
            # diverged: the rest would only repeat the frozen state; mark it NaN and stop
            rest = m - hi
            outs.append(tuple(jnp.full((rest,) + o.shape[1:], jnp.nan, o.dtype) for o in out))
            break
        if callback is not None:
            callback(int(s[hi]), eqx.combine(state.params, static))
    out = [jnp.concatenate(parts, axis=0)[:m] for parts in zip(*outs)]
    return _assemble_compiled(jnp.asarray(s, jnp.int32), hyper.lr, model.concept_embeddings(), *out, state, static)


# train's set-up and assembly as one compiled program each: on a CPU every eager op is a
# compile of its own (~50 ms), and a train call would otherwise spend seconds on a dozen of them.
_init_state_compiled = eqx.filter_jit(init_state)
_assemble_compiled = eqx.filter_jit(_assemble)
_init_sparse_compiled = eqx.filter_jit(init_sparse_state)


def _chunk_bounds(chunks, s: np.ndarray) -> np.ndarray:
    """Indices into the recorded steps ``s`` (``s[0] = 0``) where the chunks end, starting with 0.

    An int ``chunks`` gives pieces of ``ceil(m / chunks)`` recorded steps (the last one shorter);
    a sequence gives a boundary at each listed step, which must be one of the recorded steps.
    """
    m = len(s) - 1
    if np.ndim(chunks) == 0:
        k = max(1, min(int(chunks), m))
        per = -(-m // k)
        return np.unique(np.minimum(np.arange(k + 1) * per, m))
    at = np.asarray(chunks, np.int64)
    missing = np.setdiff1d(at, s)
    if missing.size:
        raise ValueError(f"chunks: step {int(missing[0])} is not a recorded step (add it to save_steps)")
    return np.unique(np.concatenate([[0], np.searchsorted(s, at), [m]]))


def _batch_sharding(devices, batch: int):
    """None for one device, else ``NamedSharding`` over a 1-D ``"batch"`` mesh of ``devices``."""
    if devices is None:
        return None
    if isinstance(devices, str) and devices != "all":
        raise ValueError(f"devices must be None, 'all' or a list of devices, got {devices!r}")
    devs = jax.devices() if isinstance(devices, str) else list(devices)
    if not devs:
        raise ValueError("devices is empty")
    if len(devs) == 1:
        return None
    if batch % len(devs):
        raise ValueError(f"batch of {batch} samples cannot be split evenly over {len(devs)} devices")
    return NamedSharding(Mesh(np.asarray(devs), ("batch",)), P("batch"))


@functools.lru_cache(maxsize=64)
def _compiled_chunk(optimizer, batch_size, loss_fn, batch_sharding=None, guard=True):
    @eqx.filter_jit
    def fn(state, rec, npl, act, static, task, hyper, data_key, fixed):
        return run_chunk(state, rec, npl, act, static=static, task=task, optimizer=optimizer, hyper=hyper,
                         data_key=data_key, batch_size=batch_size, loss_fn=loss_fn, fixed_batch=fixed,
                         batch_sharding=batch_sharding, guard=guard)

    return fn


@functools.lru_cache(maxsize=64)
def _compiled_sparse_chunk(optimizer, batch_size, loss_fn):
    @eqx.filter_jit
    def fn(state, rec, npl, act, static, task, hyper, data_key, fixed):
        return run_sparse_chunk(state, rec, npl, act, static=static, task=task, optimizer=optimizer, hyper=hyper,
                                data_key=data_key, batch_size=batch_size, loss_fn=loss_fn, fixed_batch=fixed)

    return fn
