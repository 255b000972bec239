"""cpu_devices_per_core: one JAX CPU device per core, unless the count was already chosen.

Each case runs in a fresh interpreter: the device count is fixed when JAX starts."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

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
