"""One JAX device per CPU core, so that a sweep's config axis spreads over the cores.

On CPU, JAX gives a process one device, and a vmapped sweep then runs its configs through
kernels that mostly use one core (the lab's small batched matmuls are below the size at which
XLA's CPU backend splits a dot over threads). With one CPU device per core the sweep engine
(:func:`normflow.sweep`) lays the config axis over the cores through the same
``NamedSharding(mesh, P("configs"))`` that spreads it over GPUs or TPUs: each device runs its
slice of the configs on its own thread. Single runs (:func:`normflow.train`) use the first
device unless asked to split their minibatches over the devices (``devices="all"``).
"""

from __future__ import annotations

import os
import re

import jax

__all__ = ["cpu_devices_per_core"]


def cpu_devices_per_core(n: int | None = None) -> int:
    """Ask JAX for ``n`` CPU devices (default: one per core this process may run on).

    Must run before JAX executes anything (it sets ``jax_num_cpu_devices``, which JAX reads
    when it starts its backends). A no-op where the count was already chosen: by
    ``XLA_FLAGS=--xla_force_host_platform_device_count=K``, by an earlier
    ``jax_num_cpu_devices`` setting, or because JAX has already started. Process-wide and
    opt-in, like :func:`normflow.sweep.unroll_cpu_threefry`; the sims call it first thing.

    Per config, a sweep sharded over several devices equals the one-device sweep up to
    float rounding (not bit for bit: a device's slice of the configs compiles to kernels of a
    different batch size), as ``tests/test_sweep.py`` checks.

    Returns:
        The number of CPU devices JAX will use (or uses), ``len(jax.devices("cpu"))`` once
        started.
    """
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    if n < 1:
        raise ValueError(f"need at least one CPU device, got n={n}")
    forced = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    if forced:
        return int(forced.group(1))
    current = getattr(jax.config, "jax_num_cpu_devices")
    if current is not None and current > 0:
        return int(current)
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError:  # JAX already started: keep what it has
        return len(jax.devices("cpu"))
    return int(n)
