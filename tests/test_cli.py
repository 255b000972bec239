"""Reliability and first contact (issue 4), driving the real scripts as subprocesses.

- bad input → exit 2, one line on stderr naming the bad value, nothing written;
- a forced divergence → exit 1 and results.json with ``"status": "diverged"``;
- same command + same seed → byte-identical results.json; another seed → different numbers;
- a run killed midway (SIGKILL, SIGINT) → no results.json, no temporary or partial file, and an
  earlier results folder survives; SIGINT → exit 130 and one line, no traceback;
- an existing results folder is kept unless --force;
- a progress bar on a terminal only, off with --quiet; a final line says where results went;
- results.json records the package/JAX versions, the device and the full config.

Cost: one uncached ``ode_vs_adam --quick`` run on a tiny task (compiling dominates), started in
the background when the module starts so the fast bad-input cases run meanwhile; the later runs
share a persistent JAX compilation cache (tmp folder) so they skip XLA compiles.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import signal
import subprocess
import textwrap
import sys
import threading
import time
from pathlib import Path

import pytest

from normflow import cli
from normflow import __main__ as entry
from normflow.experiments import EXPERIMENTS
from normflow.optimizers import OPTIMIZERS


REPO = Path(__file__).resolve().parent.parent
SIMS = REPO / "sims"
SIM = SIMS / "ode_vs_adam.py"
PY = sys.executable
# A tiny task: the run's cost is compiling, which this does not shrink, but the steps are cheap.
SMALL = ["--quick", "--steps", "300", "--dim", "8", "--depth", "2", "--branching", "2", "--batch-size", "16"]
CMD = [str(SIM), *SMALL, "--out", "run", "--figures", "fig"]
DIVERGE = [str(SIM), *SMALL, "--lr", "1e30", "--out", "run", "--figures", "fig"]  # adam: same program as CMD
TIMEOUT = 300


class Proc:
    """A subprocess in ``cwd``; stdout/stderr go to files outside ``cwd`` (so ``cwd`` shows
    exactly what the sim wrote), or stderr to a pseudo-terminal with ``tty=True``."""

    def __init__(self, args, cwd: Path, logs: Path, env: dict, *, tty: bool = False):
        cwd.mkdir(parents=True, exist_ok=True)
        self.cwd, self.args = cwd, args
        tag = f"{cwd.name}-{time.monotonic_ns()}"
        self.out_path, self.err_path = logs / f"{tag}.out", logs / f"{tag}.err"
        self._chunks: list[bytes] = []
        self._master = None
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            if tty:
                self._master, slave = pty.openpty()
                err_target = slave
            else:
                err_target = err
            self.p = subprocess.Popen([PY, *map(str, args)], cwd=cwd, env=env, stdout=out, stderr=err_target,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
            if tty:
                os.close(slave)
                self._reader = threading.Thread(target=self._drain, daemon=True)
                self._reader.start()

    def _drain(self):
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                break
            if not data:
                break
            self._chunks.append(data)

    @property
    def tty_text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            m = re.search(pattern, self.tty_text)
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never appeared (rc={self.p.poll()}): {self.tty_text[-2000:]!r}")

    def finish(self, timeout: float = TIMEOUT) -> "Proc":
        self.rc = self.p.wait(timeout=timeout)
        if self._master is not None:
            self._reader.join(timeout=10)
            os.close(self._master)
            self._master = None
        self.stdout = self.out_path.read_text()
        self.stderr = self.err_path.read_text() if not self._chunks else self.tty_text
        return self

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def files_under(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def inode(p: Path) -> int:
    return p.stat().st_ino


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = dict(os.environ)
    e.update({
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "MPLBACKEND": "Agg",
    })
    return e


@pytest.fixture(scope="module")
def procs():
    started: list[Proc] = []
    yield started
    for p in started:  # only what this module started
        p.kill()


@pytest.fixture(scope="module", autouse=True)
def first_run(request, tmp_path_factory, logs, env, procs):
    """The reference run (seed 0), started in the background as soon as the module starts (if
    a selected test needs it), so that the fast tests run while it compiles."""
    if not any("r1" in getattr(item, "fixturenames", ()) for item in request.session.items):
        return None
    p = Proc(CMD, tmp_path_factory.mktemp("A"), logs, env)
    procs.append(p)
    return p


@pytest.fixture(scope="module")
def r1(first_run):
    p = first_run.finish()
    assert p.rc == 0, p.stderr
    p.results = p.cwd / "run" / "results.json"
    p.bytes, p.ino = p.results.read_bytes(), inode(p.results)
    p.snapshot = files_under(p.cwd)
    return p


@pytest.fixture(scope="module")
def wave(r1, tmp_path_factory, logs, env, procs):
    """After the cache is warm, in parallel: the same command elsewhere, another seed (on a
    terminal, --quiet), and a forced divergence."""
    same = Proc(CMD, tmp_path_factory.mktemp("B"), logs, env)
    seed1 = Proc([*CMD, "--seed", "1", "--quiet"], tmp_path_factory.mktemp("C"), logs, env, tty=True)
    div = Proc(DIVERGE, tmp_path_factory.mktemp("D"), logs, env)
    procs.extend([same, seed1, div])
    return {"same": same.finish(), "seed1": seed1.finish(), "diverged": div.finish()}


@pytest.fixture(scope="module")
def killed(r1, tmp_path_factory, logs, env, procs):
    """Two runs stopped midway through training (progress past step 0): SIGINT to a --force
    rerun in the reference folder, SIGKILL to a run in an empty folder."""
    intr = Proc([*CMD, "--force"], r1.cwd, logs, env, tty=True)
    kill = Proc(CMD, tmp_path_factory.mktemp("E"), logs, env, tty=True)
    procs.extend([intr, kill])
    out = {}
    for name, p, sig in (("sigint", intr, signal.SIGINT), ("sigkill", kill, signal.SIGKILL)):
        p.seen = p.wait_for(r"\b([1-9]\d*)/300\b").group(0)
        p.p.send_signal(sig)
        out[name] = p
    for p in out.values():
        p.finish(timeout=60)
    return out


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line naming the bad value, nothing written. A few cases run the script
# as a subprocess (exit status, stderr, the script's own entry); the full list goes through
# cli.run_main(main, argv) in-process, which is what the script's __main__ block and the
# `normflow` entry point do, because each subprocess pays ~2.4 s CPU for `import normflow`.

N_BIG = cli.num_concepts(6, 8)
BAD = [
    (["--optimizer", "adamm"], r"--optimizer: unknown optimizer 'adamm'; valid: " + re.escape(", ".join(OPTIMIZERS))),
    (["--lr", "abc"], r"argument --lr: invalid float value: 'abc'"),
    (["--lr", "0"], r"--lr: must be a finite number > 0, got 0\.0"),
    (["--lr", "-0.001"], r"--lr: must be a finite number > 0, got -0\.001"),
    (["--lr", "inf"], r"--lr: must be a finite number > 0, got inf"),
    (["--steps", "0"], r"--steps: must be a finite number > 0, got 0"),
    (["--steps", "1.5"], r"argument --steps: invalid int value: '1\.5'"),
    (["--batch-size", "-4"], r"--batch-size: must be a finite number > 0, got -4"),
    (["--dim", "0"], r"--dim: must be a finite number > 0, got 0"),
    (["--dim", "1"], r"--dim: must be >= 2, got 1"),
    (["--weight-decay", "-0.1", "--optimizer", "adamw"], r"--weight-decay: must be a finite number >= 0, got -0\.1"),
    (["--depth", "6", "--branching", "8"], rf"--depth 6 --branching 8: {N_BIG} concepts exceeds the cap of {cli.MAX_CONCEPTS}"),
    (["--depth", "0"], r"--depth: must be a finite number > 0, got 0"),
    (["--out", "{file}"], r"--out: '.*afile' is a file, not a folder"),
    (["--out", "{file}/sub"], r"--out: '.*afile/sub' cannot be created: '.*afile' is a file"),
    (["--out", "{readonly}/run"], r"--out: '.*/run' is not writable"),
    (["--figures", "{file}"], r"--figures: '.*afile' is a file, not a folder"),
    (["--optimizer", "adam", "--weight-decay", "0.1"], r"--weight-decay: adam has no weight decay"),
    (["--momentum", "1"], r"--momentum: must be in \[0, 1\), got 1\.0"),
    (["--seed", "-1"], rf"--seed: must be in \[0, {cli.MAX_SEED}\], got -1"),
    (["--no-such-flag"], r"unrecognized arguments: --no-such-flag"),
]
BAD_SUBPROCESS = {"--optimizer adamm"}  # the contract as a real process sees it; the rest in process below


def _readonly_dir(tmp: Path) -> Path:
    d = tmp / "ro"
    d.mkdir()
    d.chmod(0o555)
    if not os.access(d, os.W_OK):
        return d
    if Path("/proc/sys").is_dir() and not os.access("/proc/sys", os.W_OK):  # root: a read-only mount
        return Path("/proc/sys")
    pytest.skip("no unwritable folder available (running as root without a read-only mount)")


def _prepare(args, cwd: Path) -> list[str]:
    (cwd / "afile").write_text("not a folder\n")
    args = [a.replace("{file}", str(cwd / "afile")) for a in args]
    if any("{readonly}" in a for a in args):
        ro = _readonly_dir(cwd)
        args = [a.replace("{readonly}", str(ro)) for a in args]
    return args


def _assert_nothing_written(cwd: Path, before: dict) -> None:
    # default --out (runs/...) and --figures (figures/) are relative to cwd: nothing may appear
    assert files_under(cwd) == before
    assert sorted(p.name for p in cwd.iterdir()) == sorted(["afile", *(["ro"] if (cwd / "ro").exists() else [])])


def _assert_one_line(stderr: str, prog: str, message: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert re.search(message, lines[0]), lines[0]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sim():
    from normflow.experiments import ode_vs_adam

    return ode_vs_adam


@pytest.mark.parametrize("args, message", [b for b in BAD if " ".join(b[0]) in BAD_SUBPROCESS],
                         ids=[" ".join(a) for a, _ in BAD if " ".join(a) in BAD_SUBPROCESS])
def test_bad_input_script_exits_2(args, message, tmp_path, env):
    args = _prepare(args, tmp_path)
    before = files_under(tmp_path)
    r = subprocess.run([PY, str(SIM), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    _assert_one_line(r.stderr, "ode_vs_adam.py", message)
    _assert_nothing_written(tmp_path, before)


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_nothing_written(args, message, sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _prepare(args, tmp_path)
    before = files_under(tmp_path)
    rc = cli.run_main(sim.main, args, prog="ode_vs_adam.py")
    out, err = capsys.readouterr()
    assert rc == 2, err
    assert out == ""
    _assert_one_line(err, "ode_vs_adam.py", message)
    _assert_nothing_written(tmp_path, before)


OTHER_SIMS = sorted(p for p in SIMS.glob("*.py") if p.name != SIM.name and not p.name.startswith("_"))


@pytest.mark.parametrize("script", OTHER_SIMS, ids=[p.stem for p in OTHER_SIMS])
def test_every_sim_rejects_bad_input(script, tmp_path, monkeypatch, capsys):
    """Every other sim goes through cli.parse_args: a bad seed (a flag all sims share) and a
    file as --out, in one call, give exit 2 and one line naming the first bad value (in
    process: the check ends before anything is computed)."""
    from conftest import run_experiment

    monkeypatch.chdir(tmp_path)
    args = _prepare(["--seed", "-1", "--out", "{file}"], tmp_path)
    before = files_under(tmp_path)
    rc, out, err = run_experiment(script.stem, args)
    assert rc == 2, err
    assert out == ""
    _assert_one_line(err, script.name, rf"--seed: must be in \[0, {cli.MAX_SEED}\], got -1")
    _assert_nothing_written(tmp_path, before)


def test_sim_help_shows_defaults(sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.run_main(sim.main, ["--help"], prog="ode_vs_adam.py")
    assert e.value.code == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert sim.build_parser().get_default("steps") is None  # per optimizer (sim.STEPS, else 6000)
    assert "training steps (default: per optimizer)" in flat
    lr, wd = sim.DEFAULTS["adamw"]
    assert f"adamw {lr:g}" in flat and f"adamw {wd:g}" in flat  # the per-optimizer defaults
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# One entry point.

def test_entry_point_lists_every_sim(env, tmp_path):
    r = subprocess.run([PY, "-m", "normflow", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    names = sorted(EXPERIMENTS)
    lines = r.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("sims (normflow.experiments")) + 1
    block = lines[start:lines.index("", start)]
    assert sorted(ln.split()[0] for ln in block) == names  # one line each ...
    for ln in block:  # ... with a summary from the script's docstring
        assert ln.startswith("  ") and len(ln.split(None, 1)[1]) > 10, ln


def test_entry_point_runs_a_sim(env, tmp_path):
    script = Path(PY).parent / "normflow"
    launcher = [str(script)] if script.exists() else [PY, "-m", "normflow"]
    r = subprocess.run([*launcher, "ode_vs_adam", "--lr", "-1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "normflow ode_vs_adam: error: --lr: must be a finite number > 0, got -1.0"
    assert list(tmp_path.iterdir()) == []


def test_entry_point_unknown_sim_or_none(capsys):
    assert entry.main(["ode_vs_adm"]) == 2
    names = ", ".join(sorted(EXPERIMENTS))
    assert capsys.readouterr().err.strip() == (
        f"normflow: unknown sim 'ode_vs_adm' (did you mean ode_vs_adam?); available: {names}")
    assert entry.main([]) == 2  # no sim named: the list, on stderr
    assert "ode_vs_adam" in capsys.readouterr().err


def test_sims_are_thin_front_ends_of_the_package_experiments():
    """Every experiment lives in the package; ``sims/<name>.py`` is a front end of at most 40
    lines that runs the package's ``main`` (so a non-editable install runs the same code)."""
    fronts = sorted(p.stem for p in SIMS.glob("*.py") if not p.name.startswith("_"))
    assert fronts == sorted(EXPERIMENTS)
    for name in fronts:
        text = (SIMS / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 40, name
        assert f"from normflow.experiments.{name} import main" in text, name
        assert entry.list_sims()[name].is_file()


# ---------------------------------------------------------------------------------------------
# Runs.

def test_final_line_and_no_progress_bar_off_terminal(r1):
    last = r1.stdout.strip().splitlines()[-1]
    assert last.startswith("results: run/results.json") and "fig/ode_vs_adam.png" in last
    assert r1.stderr == ""  # stderr is a file here: no progress bar
    assert (r1.cwd / "fig" / "ode_vs_adam.png").stat().st_size > 0
    assert sorted(r1.snapshot) == ["fig/ode_vs_adam.png", "run/ode_vs_adam.png", "run/results.json"]


def test_results_record_versions_device_and_full_config(r1):
    import jax

    import normflow

    res = json.loads(r1.bytes)
    assert res["status"] == "ok"
    assert res["normflow_version"] == normflow.__version__
    assert res["jax_version"] == jax.__version__
    assert res["device"].startswith(jax.devices()[0].device_kind)
    cfg = res["config"]
    from normflow.experiments import ode_vs_adam as mod

    flags = {a.dest for a in mod.build_parser()._actions if a.dest != "help"} - {"quiet", "force"}
    assert flags <= set(cfg), flags - set(cfg)
    # per-optimizer defaults are recorded resolved, not as None
    assert (cfg["lr"], cfg["weight_decay"]) == mod.DEFAULTS["adam"]
    assert cfg["steps"] == 300 and cfg["seed"] == 0 and cfg["quick"] is True
    for key in ("save_steps", "n_full", "source_energy_batches", "stat_steps", "loss"):
        assert key in cfg
    # the run's place on the validity map (docs/theory.md §16): Adam without decay is read on the
    # shipped path map 'adam', which misses at η = 0.01 (the tiny task's p = 0.95: +9 … +22 %)
    v = res["validity"]
    assert v["inside"] is False and v["map"] == "adam", v
    assert v["message"].startswith("WARNING validity: adam at lr=0.01 lies outside") and v["message"] in r1.stdout


def _keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v)


def test_same_seed_identical_results_other_seed_differs(r1, wave):
    same, seed1 = wave["same"], wave["seed1"]
    assert same.rc == 0 and seed1.rc == 0, (same.stderr, seed1.stderr)
    assert (same.cwd / "run" / "results.json").read_bytes() == r1.bytes
    # no clock in the results (a key made of such a word: "date", "wall_s", "elapsed"; not "angular_update")
    assert not any(re.search(r"(^|_)(timestamp|wall|elapsed|date|time_s)(_|$)", k) for k in _keys(json.loads(r1.bytes)))
    a = json.loads(r1.bytes)
    b = json.loads((seed1.cwd / "run" / "results.json").read_text())
    assert b["config"]["seed"] == 1
    na, nb = a["trajectory"]["norm_by_level"], b["trajectory"]["norm_by_level"]
    # every run starts at norm 1 (init_norm); another initialisation and data order end elsewhere
    assert na[0][-1] != nb[0][-1] and na[-1][-1] != nb[-1][-1]


def test_quiet_on_a_terminal_shows_no_progress_bar(wave, killed):
    assert not re.search(r"\d+/300", wave["seed1"].stderr)  # --quiet, on a terminal
    assert re.search(r"adam: +\d+%\|.*\| *[1-9]\d*/300", killed["sigint"].stderr)  # without --quiet: a bar


def test_divergence_exits_1_and_writes_diverged_status(wave):
    d = wave["diverged"]
    assert d.rc == 1, d.stderr
    lines = d.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in d.stderr
    m = re.search(r"diverged \(NaN/Inf\) at step (\d+), concept (\d+) \(depth \d\); "
                  r"what was recorded up to then is in run/results.json$", lines[0])
    assert m, lines[0]
    assert d.stdout == ""  # stopped before the ODE solve and the report
    res = json.loads((d.cwd / "run" / "results.json").read_text())
    assert res["status"] == "diverged"
    assert (res["diverged_step"], res["diverged_concept"]) == (int(m.group(1)), int(m.group(2)))
    assert res["config"]["lr"] == 1e30 and "jax_version" in res
    rec = res["recorded"]
    assert rec["steps"] and max(rec["steps"]) < res["diverged_step"]
    assert all(all(x is not None for x in level) for level in rec["norms_by_level"])  # finite up to then


def test_existing_results_kept_without_force(r1, env, logs):
    p = Proc(CMD, r1.cwd, logs, env).finish(timeout=120)
    assert p.rc == 2
    assert p.stderr.strip() == ("ode_vs_adam.py: error: --out: 'run' already holds results.json "
                                "(use --force to overwrite)")
    assert files_under(r1.cwd) == r1.snapshot and inode(r1.results) == r1.ino


def test_force_overwrites(wave, env, logs):
    d = wave["diverged"]
    path = d.cwd / "run" / "results.json"
    before, ino = path.read_bytes(), inode(path)
    p = Proc([*DIVERGE, "--force"], d.cwd, logs, env).finish()
    assert p.rc == 1, p.stderr
    assert inode(path) != ino  # a new file was renamed into place ...
    assert path.read_bytes() == before  # ... with the same content (same command, same seed)


def test_sigint_midway_one_line_exit_130_earlier_results_kept(r1, killed):
    p = killed["sigint"]
    assert p.rc == 130, p.stderr
    assert "Traceback" not in p.stderr
    last = re.split(r"[\r\n]+", p.stderr.strip())[-1]
    assert last.startswith("ode_vs_adam.py: interrupted (SIGINT)")
    # the --force rerun was interrupted: the earlier results and figure are untouched, no tmp file
    assert files_under(r1.cwd) == r1.snapshot
    assert inode(r1.results) == r1.ino


def test_sigkill_midway_leaves_nothing(killed):
    p = killed["sigkill"]
    assert p.rc == -signal.SIGKILL
    assert files_under(p.cwd) == {}  # no results.json, no figure, no temporary file


# ---------------------------------------------------------------------------------------------
_GC_SIGINT = textwrap.dedent(
    """
    import gc, os, signal, sys, time
    from normflow import cli

    def cb(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # the handler runs here, inside the callback

    def main(argv):
        gc.callbacks.insert(0, cb)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(cb)
        time.sleep(5)  # the re-delivered signal ends this
        return 0

    t0 = time.time()
    rc = cli.run_main(main, [], prog="gc.py")
    print(rc, round(time.time() - t0, 2))
    """
)


def test_sigint_inside_a_gc_callback_is_not_swallowed(env):
    """A signal that lands inside a garbage-collection callback (JAX registers one in every
    process) cannot raise there: Python would print "Exception ignored ... Traceback" and drop
    it. run_main delivers it again once out of the callback, so the run still ends with exit 130
    and its one line (the suite once caught this in test_sigint_midway). In a subprocess: the
    signal goes to the whole process, and an xdist worker need not run tests on its main thread."""
    r = subprocess.run([PY, "-c", _GC_SIGINT], env=env, capture_output=True, text=True, timeout=60)
    rc, wall = r.stdout.split()
    assert int(rc) == 130 and float(wall) < 4, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr
    assert r.stderr.strip().splitlines() == ["gc.py: interrupted (SIGINT): stopped before the results were complete; "
                                             "no partial file was written"]


# The atomic writers themselves, interrupted at the worst moment (in-process, cheap).

def test_atomic_json_interrupted_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    cli.atomic_write_json(path, {"a": 1})
    old = path.read_bytes()

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", boom)  # the new content is written, not yet renamed
    with pytest.raises(KeyboardInterrupt):
        cli.atomic_write_json(path, {"a": 2, "b": list(range(10_000))})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_atomic_savefig_failure_keeps_old_file_and_modes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = tmp_path / "fig.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    cli.atomic_savefig(fig, path)
    old = path.read_bytes()
    assert old[:8] == b"\x89PNG\r\n\x1a\n"
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600

    class Broken:
        def savefig(self, name, **kw):
            Path(name).write_bytes(b"\x89PNG half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        cli.atomic_savefig(Broken(), path)
    plt.close(fig)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["fig.png"]


def test_experiments_page_is_generated_from_the_docstrings():
    spec = importlib.util.spec_from_file_location("make_experiments", REPO / "docs" / "make_experiments.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for rel, text in mod.render().items():
        assert (REPO / "docs" / rel).read_text(encoding="utf-8") == text, \
            f"docs/{rel} is stale: run python docs/make_experiments.py"


def test_unknown_flag_suggests_the_nearest(sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.run_main(sim.main, ["--stpes", "10"], prog="ode_vs_adam.py") == 2
    err = capsys.readouterr().err.strip()
    assert err == "ode_vs_adam.py: error: unrecognized argument --stpes (did you mean --steps?)"


def test_batch_that_cannot_fit_is_refused_before_compiling(sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.batch_memory(1_000_000, 32, 4) > 1e13  # 3·10¹² floats of logits
    assert cli.run_main(sim.main, ["--batch-size", "1000000"], prog="ode_vs_adam.py") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ode_vs_adam.py: error: --batch-size 1000000: one step needs ~") and "GiB" in err
    assert list(tmp_path.iterdir()) == []
