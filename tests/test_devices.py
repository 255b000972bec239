"""cpu_devices_per_core: one JAX CPU device per core, unless the count was already chosen.

Each case runs in a fresh interpreter: the device count is fixed when JAX starts."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import SUITE_XLA_FLAGS

_SCRIPT = textwrap.dedent(
    """
    import json, os
    import jax
    from normflow.devices import cpu_devices_per_core
    if {start_first}:
        jax.numpy.ones(3)  # JAX already started: nothing to change
    got = cpu_devices_per_core({n})
    x = jax.numpy.ones(3)  # JAX starts here
    again = cpu_devices_per_core(7)  # too late: keeps what JAX has
    print(json.dumps(dict(got=got, devices=len(jax.devices("cpu")), again=again,
                          cores=len(os.sched_getaffinity(0)))))
    """
)


def _run(n, xla_flags=None, start_first=False):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.format(n=n, start_first=start_first)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("n", [None, 3])
def test_sets_the_cpu_device_count(n):
    info = _run(n)
    want = info["cores"] if n is None else n
    assert info["got"] == want and info["devices"] == want and info["again"] == want


def test_an_explicit_xla_flag_wins():
    info = _run(3, xla_flags="--xla_force_host_platform_device_count=4")
    assert info["got"] == 4 and info["devices"] == 4 and info["again"] == 4


def test_too_late_keeps_what_jax_has():
    info = _run(3, start_first=True)
    assert info["got"] == 1 and info["devices"] == 1 and info["again"] == 1


def test_bad_count_is_refused():
    from normflow.devices import cpu_devices_per_core

    with pytest.raises(ValueError, match="n=0"):
        cpu_devices_per_core(0)


_DATA_PARALLEL = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, normflow as nf
    task = nf.FlatTask(64, 16, key=jax.random.key(0), dtype=jnp.float64)
    out = {{}}
    # sgd: the minibatch path, the state carried across 2 chunks; gd: the fixed full batch
    for opt, chunks in (("sgd", 2), ("gd", 1)):
        kw = dict(lr=0.3, weight_decay=1e-2, steps=120, batch_size=32, n_full=64, key=jax.random.key(1),
                  save_steps=10, chunks=chunks)
        a = nf.train(task, opt, **kw)
        b = nf.train(task, opt, devices="all", **kw)
        out[opt] = dict(
            diff=max(float(np.max(np.abs(np.asarray(getattr(a, f)) - np.asarray(getattr(b, f)))))
                     for f in ("norms", "radial", "angular", "update_sq")),
            loss_diff=float(np.nanmax(np.abs(np.asarray(a.loss) - np.asarray(b.loss)))),
            moved=float(np.max(np.abs(np.asarray(a.norms)[-1] - np.asarray(a.norms)[0]))),
            devices=len(b.norms.sharding.device_set), diverged=int(b.diverged_step))
    try:
        nf.train(task, "sgd", lr=0.1, steps=3, batch_size=33, key=jax.random.key(0), devices="all")
        out["error"] = None
    except ValueError as e:
        out["error"] = str(e)
    print(json.dumps(out))
    """
)


def test_data_parallel_train_equals_one_device():
    """train(devices="all") on 2 forced CPU devices == the one-device run (float64: the gradient's
    sum is only re-associated, ~1e-15) and its results live on both devices."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {
        "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2 " + SUITE_XLA_FLAGS}
    proc = subprocess.run([sys.executable, "-c", _DATA_PARALLEL.format()], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for opt in ("sgd", "gd"):
        r = out[opt]
        assert r["devices"] == 2 and r["diverged"] == -1, (opt, r)
        assert r["moved"] > 1e-2, (opt, r)  # the runs really train
        assert r["diff"] < 1e-12 and r["loss_diff"] < 1e-12, (opt, r)
    assert out["error"] == "batch of 33 samples cannot be split evenly over 2 devices"


def test_devices_argument_in_one_process():
    import jax
    import numpy as np

    import normflow as nf

    task = nf.FlatTask(16, 8, key=jax.random.key(0))
    kw = dict(lr=0.3, steps=20, batch_size=8, key=jax.random.key(1), save_steps=4)
    a = nf.train(task, "sgd", **kw)
    b = nf.train(task, "sgd", devices=jax.devices()[:1], **kw)  # one device: the plain run
    np.testing.assert_array_equal(np.asarray(a.norms), np.asarray(b.norms))
    with pytest.raises(ValueError, match="'gpus'"):
        nf.train(task, "sgd", devices="gpus", **kw)
