"""Sweep engine: one compiled vmap over configs == separate train() runs; no recompile when only
the values change; the config axis really is sharded over devices (4 forced CPU devices), and
over processes (two processes joined by ``jax.distributed.initialize`` on the loopback address)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SUITE_XLA_FLAGS

import normflow as nf
from normflow.sweep import trace_count

FIELDS = ("steps", "times", "norms", "radial", "angular", "update_sq", "loss", "diverged_step", "diverged_concept")
KW = dict(steps=60, batch_size=16, save_steps=12)
SAVES = len(nf.log_steps(60, 12))
# float64 tolerance for "sweep row c == train(config c)": vmap may change the order of
# reductions (observed differences are ~1e-15, often exactly 0).
ATOL = 1e-12


def _grid():
    return nf.grid(lr=[0.1, 0.3], weight_decay=[0.0, 1e-2], momentum=[0.5, 0.9], seed=[0, 1])


def _sweep(task, arrays, **kw):
    kw = dict(seeds=arrays["seed"]) | KW | kw
    return nf.sweep(task, "sgdmw", lr=arrays["lr"], weight_decay=arrays["weight_decay"], momentum=arrays["momentum"], **kw)


def test_grid_is_the_cartesian_product():
    arrays, configs = nf.grid(lr=[0.1, 0.3], seed=[0, 1, 2])
    assert len(configs) == 6 and configs[1] == {"lr": 0.1, "seed": 1}
    np.testing.assert_array_equal(arrays["lr"], [0.1, 0.1, 0.1, 0.3, 0.3, 0.3])
    np.testing.assert_array_equal(arrays["seed"], [0, 1, 2, 0, 1, 2])


def test_sweep_equals_separate_train_runs(small_task):
    arrays, configs = _grid()
    run = _sweep(small_task, arrays)
    assert run.norms.shape == (16, SAVES, small_task.num_concepts)
    for c, cfg in enumerate(configs):
        ref = nf.train(small_task, "sgdmw", lr=cfg["lr"], weight_decay=cfg["weight_decay"], momentum=cfg["momentum"],
                       key=jax.random.key(int(cfg["seed"])), **KW)
        for f in FIELDS:
            np.testing.assert_allclose(np.asarray(getattr(run, f))[c], np.asarray(getattr(ref, f)), rtol=0, atol=ATOL,
                                       err_msg=f"config {cfg}, field {f}")
    # the configs really differ (the comparison is not vacuous)
    assert np.ptp(np.asarray(run.norms)[:, -1].mean(-1)) > 1e-3


def test_keys_and_broadcast_scalars(small_task):
    """keys= (an array of keys) is the same as seeds=; a scalar hyperparameter broadcasts."""
    arrays, _ = _grid()
    a = _sweep(small_task, arrays | {"momentum": 0.9}, seeds=None, keys=jax.vmap(jax.random.key)(jnp.asarray(arrays["seed"])))
    b = _sweep(small_task, arrays | {"momentum": np.full(16, 0.9)})
    np.testing.assert_array_equal(a.norms, b.norms)


def test_no_recompile_for_new_values(small_task):
    arrays, _ = _grid()
    _sweep(small_task, arrays)  # compiled here or by an earlier test
    n = trace_count()
    other = {k: v[::-1].copy() for k, v in arrays.items()}
    other["lr"] = other["lr"] * 0.7
    other["seed"] = other["seed"] + 10
    run = _sweep(small_task, other)
    assert trace_count() == n, "changing hyperparameter values or seeds must not retrace/recompile"
    assert not np.array_equal(run.norms, _sweep(small_task, arrays).norms)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(lr=np.array([0.1, 0.2]), weight_decay=np.array([0.0, 0.1, 0.2])), "different lengths"),
        (dict(lr=np.array([0.1, -0.2])), "lr must be > 0"),
        (dict(lr=0.1, seeds=None), "exactly one of seeds"),
        (dict(lr=np.ones((2, 2))), "1-D array"),
    ],
)
def test_bad_arguments_raise(small_task, kw, msg):
    args = dict(seeds=0, steps=5, batch_size=4) | kw
    with pytest.raises(ValueError, match=msg):
        nf.sweep(small_task, "sgd", **args)


_FOUR_DEVICES = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp, numpy as np, normflow as nf
    sys.path.insert(0, {tests!r})
    from test_sweep import KW, _grid, _sweep
    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0), dtype=jnp.float64)
    arrays, _ = _grid()
    run = _sweep(task, arrays)
    six = _sweep(task, {{k: v[:6] for k, v in arrays.items()}})  # padded to 8 inside, padding dropped
    np.savez({out!r}, norms=run.norms, radial=run.radial, loss=run.loss, update_sq=run.update_sq,
             six=six.norms)
    print(json.dumps(dict(
        devices=jax.device_count(),
        spec=list(run.norms.sharding.spec),
        mesh_shape=dict(run.norms.sharding.mesh.shape),
        shards=sorted([s.device.id, list(s.data.shape)] for s in run.norms.addressable_shards),
        six_shape=list(six.norms.shape),
    )))
    """
)


@pytest.fixture(scope="module", autouse=True)
def four_device_run(tmp_path_factory):
    """Start the 4-device run at the start of this module, in a subprocess (XLA_FLAGS must be set
    before jax is imported), so that its compile overlaps the other tests."""
    out = str(tmp_path_factory.mktemp("sweep4") / "four.npz")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4 " + SUITE_XLA_FLAGS, JAX_PLATFORMS="cpu")
    code = _FOUR_DEVICES.format(tests=os.path.dirname(__file__), out=out)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_four_device_run_equals_one_device_and_is_sharded(small_task, four_device_run):
    proc, out = four_device_run
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    info = json.loads(stdout.strip().splitlines()[-1])
    assert info["devices"] == 4 and info["mesh_shape"] == {"configs": 4}
    assert info["spec"] == ["configs"]
    # each of the 4 devices holds 4 of the 16 configs
    assert info["shards"] == [[d, [4, SAVES, small_task.num_concepts]] for d in range(4)]
    assert info["six_shape"] == [6, SAVES, small_task.num_concepts]

    four = np.load(out)
    arrays, _ = _grid()
    one = _sweep(small_task, arrays)  # this process: one CPU device
    assert jax.device_count() == 1
    for f in ("norms", "radial", "loss", "update_sq"):
        # Observed bit-identical; asserted to the float64 tolerance ATOL.
        np.testing.assert_allclose(four[f], np.asarray(getattr(one, f)), rtol=0, atol=ATOL, err_msg=f)
    np.testing.assert_allclose(four["six"], np.asarray(one.norms)[:6], rtol=0, atol=ATOL)


_TWO_PROCESSES = textwrap.dedent(
    """
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address="127.0.0.1:{port}", num_processes=2, process_id={pid},
                               initialization_timeout=120)
    import jax.numpy as jnp, numpy as np, normflow as nf
    sys.path.insert(0, {tests!r})
    from test_sweep import _grid, _sweep
    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0), dtype=jnp.float64)
    arrays, _ = _grid()
    run = _sweep(task, arrays)  # 16 configs on a 4-device mesh that spans both processes
    six = _sweep(task, {{k: v[:6] for k, v in arrays.items()}})  # padded to 8, returned replicated
    out = dict(six=np.asarray(six.norms.addressable_shards[0].data))
    for f in ("norms", "radial", "loss", "update_sq"):
        for s in getattr(run, f).addressable_shards:  # this process's slices of the global array
            out[f"{{f}}:{{s.index[0].start}}"] = np.asarray(s.data)
    np.savez({out!r}, **out)
    jax.distributed.shutdown()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def two_process_run(tmp_path_factory):
    """Start two processes (2 CPU devices each) that form one JAX cluster through a coordinator on
    the loopback address, at the start of this module so that they overlap the other tests."""
    d = tmp_path_factory.mktemp("sweep2p")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2 " + SUITE_XLA_FLAGS, JAX_PLATFORMS="cpu")
    port = _free_port()
    procs = []
    for pid in range(2):
        code = _TWO_PROCESSES.format(port=port, pid=pid, tests=os.path.dirname(__file__), out=str(d / f"p{pid}.npz"))
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    yield procs, d
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_two_process_sweep_equals_one_process_run(small_task, two_process_run):
    procs, d = two_process_run
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    parts = [np.load(d / f"p{pid}.npz") for pid in range(2)]
    arrays, _ = _grid()
    one = _sweep(small_task, arrays)  # this process alone, one device
    for f in ("norms", "radial", "loss", "update_sq"):
        shards = {int(k.split(":")[1]): p[k] for p in parts for k in p.files if k.startswith(f + ":")}
        assert sorted(shards) == [0, 4, 8, 12]  # each of the 4 devices, in 2 processes, holds 4 configs
        joined = np.concatenate([shards[i] for i in sorted(shards)])
        np.testing.assert_allclose(joined, np.asarray(getattr(one, f)), rtol=0, atol=ATOL, err_msg=f)
    for p in parts:  # the padded grid comes back whole and the same in both processes
        np.testing.assert_allclose(p["six"], np.asarray(one.norms)[:6], rtol=0, atol=ATOL)


def test_sweep_network_model_with_static_parts():
    """A model with non-array parts (the MLP's activation functions) sweeps like the table."""
    import jax
    import numpy as np

    import normflow as nf

    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0))
    m = nf.DualEncoder(task.num_concepts, 8, key=jax.random.key(1), hidden=16)
    out = nf.sweep(task, "sgd", lr=np.array([0.1, 0.2]), weight_decay=np.array([0.0, 1e-3]), seeds=np.array([0, 1]),
                   steps=20, batch_size=8, model=m)
    one = nf.train(task, "sgd", lr=0.2, weight_decay=1e-3, steps=20, batch_size=8, key=jax.random.key(1), model=m,
                   save_steps=np.asarray(out.steps[1]))
    assert out.norms.shape == (2, one.norms.shape[0], task.num_concepts)
    np.testing.assert_allclose(out.norms[1], one.norms, rtol=1e-5)
