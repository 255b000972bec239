"""Sweeps: a grid of configurations of one optimizer as ONE compiled ``jit(vmap(scan))``.

Every hyperparameter (``lr, weight_decay, momentum, b1, b2, eps``) and the seed is a traced,
per-config value, so one compiled program serves any grid of the same size: changing the
values never recompiles. The training step is :func:`normflow.train.simulate` (the same pure
core that :func:`normflow.train` runs), so config ``c`` of a sweep is the run
``train(task, optimizer, lr=lr[c], ..., key=keys[c])``.

The config axis is laid out on a 1-D :class:`jax.sharding.Mesh` named ``"configs"`` over all
devices (``NamedSharding(mesh, P("configs"))``): on one CPU, on a multi-GPU host or on a
multi-host run started with ``jax.distributed.initialize`` the same call spreads the grid over
every device, each device running its slice of the configs. The config count is padded to a
multiple of the device count (by repeating the last config) and the padding is dropped from
the result.

A learning-rate schedule (docs/theory.md §13) is swept the same way: ``lr`` may be a
:class:`normflow.optimizers.WarmupCosine` whose fields are scalars or 1-D per-config arrays
(``lr=WarmupCosine(peak=[0.25, 0.5], warmup_steps=[100, 400], decay_steps=steps)``); its
fields are traced, so a grid over peak lr / warmup length is one compile.

Memory is ``O(configs × saves × concepts)``: only the recorded steps are kept (see
:func:`normflow.train.simulate`).
"""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._sparse import check_sparse_args, renorm_interval
from .losses import get_loss
from .optimizers import Hyper, WarmupCosine, check_optimizer_args, check_schedule, is_schedule
from .train import default_model, full_batch_of, simulate
from .trajectory import Trajectory, normalize_save_steps

__all__ = ["sweep", "grid", "config_mesh", "trace_count", "unroll_cpu_threefry"]

AXIS = "configs"
_HYPER_NAMES = ("lr", "weight_decay", "momentum", "b1", "b2", "eps")
_SCHEDULE_FIELDS = ("peak", "warmup_steps", "decay_steps", "init", "end")


def trace_count() -> int:
    """How many times a sweep program has been traced (compiled) in this process
    (``eqx.debug.get_num_traces`` of the wrapped program: Equinox keeps the count, no global)."""
    return eqx.debug.get_num_traces(_run)


def unroll_cpu_threefry(enable: bool = True) -> bool:
    """Opt in (process-wide) to JAX's unrolled Threefry lowering on CPU; returns True if applied.

    On CPU, JAX lowers the Threefry-2x32 hash behind every ``jax.random`` draw as a rolled
    5-iteration loop; on this lab's 2-core CPU machine the unrolled form (the one JAX uses on
    GPU) draws random bits about 4x faster. The random numbers are bit-identical either way
    (same algorithm, same keys); only the generated CPU code changes. It uses a private JAX
    hook, so it is opt-in and a no-op (returning False) if that hook is missing. Clears JAX's
    compilation caches so that later calls pick up the new lowering.
    """
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        rule = tf._threefry2x32_lowering_rule if enable else tf._threefry2x32_cpu_lowering_rule
        mlir.register_lowering(tf.threefry2x32_p, rule, platform="cpu", inline=not enable)
    except (ImportError, AttributeError):
        return False
    jax.clear_caches()
    return True


def grid(**axes: Sequence[Any]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Cartesian product of named value lists, as flat 1-D arrays plus one dict per config.

    ``grid(lr=[0.1, 0.3], weight_decay=[1e-3, 1e-2], seed=[0, 1, 2])`` gives 12 configs, the
    last axis varying fastest (``itertools.product`` order). The arrays can be passed straight
    to :func:`sweep`: ``arrays, configs = grid(...); run = sweep(task, "sgd", **arrays, ...)``;
    ``configs[c]`` names the config of row ``c`` of the result.
    """
    if not axes:
        raise ValueError("grid needs at least one named axis, e.g. grid(lr=[0.1, 0.3])")
    names = list(axes)
    values = []
    for n in names:
        v = list(np.atleast_1d(np.asarray(axes[n])))
        if not v:
            raise ValueError(f"grid axis {n!r} is empty")
        values.append(v)
    configs = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    arrays = {n: np.asarray([c[n] for c in configs]) for n in names}
    return arrays, configs


def config_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"configs"`` over ``devices`` (default: every device of every process)."""
    devs = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devs), (AXIS,))


def _typed_keys(keys):
    if jax.dtypes.issubdtype(getattr(keys, "dtype", None), jax.dtypes.prng_key):
        return keys
    return jax.random.wrap_key_data(jnp.asarray(keys))  # legacy uint32 keys


def _config_count(values: dict[str, Any], seeds, keys) -> int:
    """C: the common length of every 1-D argument (scalars broadcast)."""
    lengths = {}
    for k, v in values.items():
        if np.ndim(v) > 1:
            raise ValueError(f"{k} must be a scalar or a 1-D array (one entry per config), got shape {np.shape(v)}")
        if np.ndim(v) == 1:
            lengths[k] = np.shape(v)[0]
    if (seeds is None) == (keys is None):
        raise ValueError("give exactly one of seeds= (ints) or keys= (a key or an array of keys)")
    if seeds is not None:
        if np.ndim(seeds) > 1 or not np.issubdtype(np.asarray(seeds).dtype, np.integer):
            raise ValueError(f"seeds must be an int or a 1-D array of ints, got {seeds!r}")
        if np.ndim(seeds) == 1:
            lengths["seeds"] = len(seeds)
    else:
        k = _typed_keys(keys)
        if k.ndim > 1:
            raise ValueError(f"keys must be one key or a 1-D array of keys, got shape {k.shape}")
        if k.ndim == 1:
            lengths["keys"] = k.shape[0]
    sizes = set(lengths.values())
    if len(sizes) > 1:
        raise ValueError(f"per-config arrays have different lengths: {lengths}")
    n = sizes.pop() if sizes else 1
    if n < 1:
        raise ValueError("a sweep needs at least one config")
    return n


def _key_data(n: int, seeds, keys) -> tuple[np.ndarray, Any]:
    """Per-config raw key data ``[n, ...]`` and the PRNG implementation name."""
    if seeds is not None:
        k = jax.vmap(jax.random.key)(jnp.asarray(np.broadcast_to(np.asarray(seeds), (n,))))
    else:
        k = _typed_keys(keys)
        k = jnp.broadcast_to(k, (n,)) if k.ndim == 0 else k
    return np.asarray(jax.random.key_data(k)), jax.random.key_impl(k)


def sweep(
    task,
    optimizer: str,
    *,
    lr,
    steps: int,
    weight_decay=0.0,
    momentum=0.9,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    seeds=None,
    keys=None,
    batch_size: int = 64,
    save_steps=None,
    model=None,
    loss="info_nce",
    n_full: int = 512,
    devices=None,
    sparse: bool = False,
) -> Trajectory:
    """Train a grid of configurations of one optimizer as one compiled, sharded program.

    Args:
        task, optimizer, steps, batch_size, save_steps, model, loss, n_full: as for
            :func:`normflow.train` (shared by every config; ``model`` default: each config's
            own :func:`~normflow.train.default_model` from its key, exactly as ``train``).
        lr, weight_decay, momentum, b1, b2, eps: scalars or 1-D arrays with one entry per
            config (scalars broadcast; all arrays must have the same length C). ``lr`` may
            instead be a :class:`~normflow.optimizers.WarmupCosine` whose fields are scalars
            or 1-D per-config arrays (traced: one compile for any grid of schedules).
        seeds: int or 1-D ints; config c uses ``jax.random.key(seeds[c])``. Or
        keys: one key, or an array of C keys (config c is ``train(..., key=keys[c])``).
        devices: the devices of the ``"configs"`` mesh (default ``jax.devices()``, all of them).
        sparse: each config runs the sparse engine (as ``train(..., sparse=True)``; a step costs
            ``O(B·d)``, not ``O(N·d)``). The global decay scale is folded at fixed step counts
            shared by the grid (:func:`normflow._sparse.renorm_interval`), so a row equals
            ``train(..., sparse=True)`` up to rounding, not bit for bit.

    Returns:
        A :class:`~normflow.trajectory.Trajectory` whose every array has a leading config axis
        of length C, sharded over the mesh (``NamedSharding(mesh, P("configs"))`` when C is a
        multiple of the device count). Row c equals ``train`` with config c's values.
    """
    sched = None
    if is_schedule(lr):
        if not isinstance(lr, WarmupCosine):
            raise ValueError(f"sweep needs lr as numbers or a normflow.optimizers.WarmupCosine (traced fields), "
                             f"got {type(lr).__name__}")
        check_schedule(lr)
        sched = {f"lr.{f}": getattr(lr, f) for f in _SCHEDULE_FIELDS}
        lr = 1.0  # placeholder: the schedule's fields are the per-config values
    hp = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, b1=b1, b2=b2, eps=eps)
    n = _config_count(hp if sched is None else {**hp, **sched}, seeds, keys)
    hp = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in hp.items()}
    if sched is not None:
        sched = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in sched.items()}
    for c in range(n):
        check_optimizer_args(optimizer, float(hp["lr"][c]), float(hp["weight_decay"][c]), steps, batch_size)
    renorm_every = None
    if sparse:
        if sched is not None:
            raise ValueError("sparse=True does not take a learning-rate schedule (use sparse=False)")
        # the model's type only: eval_shape builds no table
        check_sparse_args(optimizer, jax.eval_shape(lambda: default_model(task, jax.random.key(0))) if model is None
                          else model, 1.0, None)
        # traced (a new grid does not recompile), replicated, and not batched by the config vmap
        renorm_every = np.asarray(renorm_interval(optimizer, hp["lr"], hp["weight_decay"]), np.int32)
    key_data, impl = _key_data(n, seeds, keys)
    s = normalize_save_steps(save_steps, steps)
    loss_fn = get_loss(loss)

    mesh = config_mesh(devices)
    n_dev = mesh.devices.size
    padded = -(-n // n_dev) * n_dev
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], padded - n, axis=0)]) if padded > n else a
    sharding = NamedSharding(mesh, P(AXIS))

    def put(a):
        a = pad(np.ascontiguousarray(a))
        # make_array_from_callback builds a global array, also when devices span processes.
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    replicated = NamedSharding(mesh, P())

    def put_replicated(x):
        # task and model arrays: the same global value on every device (also across processes)
        if not eqx.is_array(x):
            return x
        a = np.asarray(x)
        return jax.make_array_from_callback(a.shape, replicated, lambda idx: a[idx])

    task_g = jax.tree_util.tree_map(put_replicated, task)
    model_g = None if model is None else jax.tree_util.tree_map(put_replicated, model)
    dtype = task.dtype
    hyper = Hyper(*(put(np.asarray(hp[name], dtype=dtype)) for name in _HYPER_NAMES))
    if sched is not None:
        hyper = hyper._replace(lr=WarmupCosine(*(put(np.asarray(sched[f"lr.{f}"], dtype=dtype))
                                                 for f in _SCHEDULE_FIELDS)))
    kd = put(key_data)
    if renorm_every is not None:
        renorm_every = put_replicated(renorm_every)
    out = _run(task_g, model_g, hyper, kd, impl=impl, optimizer=optimizer, steps=int(steps), save_steps=tuple(int(x) for x in s),
               batch_size=int(batch_size), loss_fn=loss_fn, n_full=int(n_full), mesh=mesh, sparse=bool(sparse),
               renorm_every=renorm_every)
    if padded > n:
        # A length-C axis cannot be split evenly over the devices: drop the padding and
        # return the (small) record replicated on every device.
        out = _unpad(out, n=n, replicated=replicated)
    return out


@eqx.filter_jit
def _unpad(out, *, n, replicated):
    return jax.tree_util.tree_map(
        lambda a: jax.lax.with_sharding_constraint(a[:n], replicated) if eqx.is_array(a) and a.ndim else a, out
    )


@eqx.filter_jit
@eqx.debug.assert_max_traces(max_traces=None)
def _run(task, model, hyper, key_data, *, impl, optimizer, steps, save_steps, batch_size, loss_fn, n_full, mesh,
         sparse, renorm_every):
    s = np.asarray(save_steps)
    sharding = NamedSharding(mesh, P(AXIS))

    def one(hyper, kd):
        key = jax.random.wrap_key_data(kd, impl=impl)
        k_model, k_data = jax.random.split(key)  # as train(): model key, data key
        m = default_model(task, k_model) if model is None else model
        fixed = full_batch_of(task, k_data, n_full) if optimizer == "gd" else None
        return simulate(m, task, optimizer, hyper, k_data, steps=steps, save_steps=s, batch_size=batch_size,
                        loss_fn=loss_fn, fixed_batch=fixed, sparse=sparse, renorm_every=renorm_every)

    out = eqx.filter_vmap(one)(hyper, key_data)  # non-array leaves (activations) pass through
    return jax.tree_util.tree_map(
        lambda a: jax.lax.with_sharding_constraint(a, sharding) if eqx.is_array(a) and a.ndim else a, out
    )
