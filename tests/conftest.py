"""Test-wide setup: float64 for the theory checks (docs/theory.md §11 tolerances need it), and a
small shared task factory. Tasks pass dtype explicitly, so float32 code paths stay testable."""

import os
import tempfile

# One persistent JAX compilation cache per test run, shared by the xdist workers (same
# PYTEST_XDIST_TESTRUNUID) and inherited by the sims the tests start as subprocesses, so a
# program that several tests or subprocesses compile (the same sim run twice, say) is compiled
# once. The cache key covers the program, the flags and the versions; it starts empty each run.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ["JAX_COMPILATION_CACHE_DIR"] = (
    os.path.join(tempfile.gettempdir(), f"normflow-jax-cache-{_RUN}") if _RUN else tempfile.mkdtemp(prefix="normflow-jax-cache-")
)

# Cache every compiled program, however quick to compile: on a 2-core CPU an eager op costs
# ~50 ms to compile and the workers and sims compile the same ones again and again (JAX's
# default caches only programs that took over a second).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# One CPU device per process in the suite (the sims would otherwise ask for one per core,
# normflow.cli.cpu_setup): the xdist workers already keep both cores busy, and a one-config sweep
# on two devices is padded to two configs, twice the work. The multi-device tests set their own.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1").strip()

# The suite's programs are small and most are compiled once, so compiling dominates its time:
# with LLVM's backend optimisation off (XLA's HLO passes still run) the suite needs less CPU time
# (docs/benchmarks.md). The theory's compute-bound kernels keep full optimisation
# (normflow.theory._core.kernel_jit); the sims outside the suite compile with XLA's defaults.
# Subprocesses that set their own XLA_FLAGS add SUITE_XLA_FLAGS.
SUITE_XLA_FLAGS = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " " + SUITE_XLA_FLAGS

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import normflow as nf  # noqa: E402


@pytest.fixture(scope="session")
def small_task():
    """Depth-2, branching-3 hierarchy in dim 8, float64: 12 concepts."""
    return nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0), dtype=jnp.float64)


def run_experiment(name: str, argv: list[str], prog: str | None = None):
    """Run ``normflow.experiments.<name>.main(argv)`` in this process as its command line would,
    float32 (the suite turns x64 on; the sims run without it unless ``--x64``), under the CLI's
    exit-status contract; returns ``(status, stdout, stderr)``. In process, the sims share this
    worker's import and its compiled programs (the CLI's own behaviours, exit codes, signals,
    keep their subprocess tests in test_cli.py)."""
    import contextlib
    import importlib
    import io

    from normflow import cli

    mod = importlib.import_module(f"normflow.experiments.{name}")
    out, err = io.StringIO(), io.StringIO()
    with jax.enable_x64(False), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.run_main(mod.main, list(argv), prog=prog or f"{name}.py")
    return rc, out.getvalue(), err.getvalue()


def run_real_quick(tmp_path_factory, name: str, *extra: str):
    """A real-model experiment's ``--quick`` run, in process (skipped when the offline model is
    not installed); returns ``(results, stdout, tmp)`` with results from ``tmp/out``."""
    import json

    from normflow.real import ModelNotInstalled, model_dir

    try:
        model_dir()
    except ModelNotInstalled as e:
        pytest.skip(str(e))
    t = tmp_path_factory.mktemp(name)
    rc, out, err = run_experiment(name, ["--quick", "--quiet", "--out", str(t / "out"), "--figures", str(t / "figs"), *extra])
    assert rc == 0, err[-3000:]
    return json.loads((t / "out" / "results.json").read_text()), out, t


# The files that take longest on 2 cores (the quick sims they run, the notebooks), first: xdist
# hands whole files to the workers in collection order (--dist loadfile), so the long ones start
# at once and the short ones fill in at the end, instead of one worker finishing a long file alone.
_LONG_FIRST = ("test_sims_sweeps", "test_real_tokens", "test_real_probe", "test_sims_network", "test_schedule", "test_cli", "test_retrieval_sim",
               "test_notebooks", "test_sweep", "test_devices", "test_theory_vs_sim", "test_train", "test_tasks")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: order within a file kept
