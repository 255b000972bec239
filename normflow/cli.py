"""The shared command-line layer every sim uses: flags, input checks, safe output, progress,
divergence handling and run metadata.

A sim is ``main(argv)`` that builds a parser with :func:`make_parser` (+ the ``add_*_args``
helpers), calls :func:`parse_args`, does its work, and writes through :class:`Output`. Wrap
it with :func:`run_main` so that

- bad input → one line on stderr naming the bad value, exit status 2, nothing written;
- a diverged run (:class:`Diverged`) → a message naming the step and concept, a results file
  marked ``"status": "diverged"``, exit status 1;
- every results file is written to a temporary file and renamed into place (never half a file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "UsageError", "Diverged", "make_parser", "add_task_args", "add_optimizer_args", "parse_args", "Output",
    "run_main", "atomic_write_text", "atomic_write_json", "atomic_savefig", "run_metadata", "progress_callback",
    "MAX_CONCEPTS", "check_diverged",
]

MAX_CONCEPTS = 20_000  # cap on depth/branching so a typo does not allocate a huge tree


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class Diverged(Exception):
    """A run produced NaN/Inf: ``step`` and ``concept`` name where; ``results`` are written."""

    def __init__(self, message: str, results: dict | None = None):
        super().__init__(message)
        self.results = results or {}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage block
        raise UsageError(f"{self.prog}: {message}")


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with defaults shown in ``--help`` and the flags common to every sim."""
    p = _Parser(prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="PRNG seed (same seed → identical results)")
    p.add_argument("--out", type=str, default=None, help="results folder (default: runs/<sim>[-quick])")
    p.add_argument("--force", action="store_true", help="overwrite an existing results folder")
    p.add_argument("--quick", action="store_true", help="a small run for tests and first contact")
    p.add_argument("--x64", action="store_true", help="run in float64 (jax_enable_x64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--figures", type=str, default="figures", help="folder for the figure")
    return p


def add_task_args(p: argparse.ArgumentParser, *, dim: int, depth: int, branching: int) -> None:
    p.add_argument("--dim", type=int, default=dim, help="embedding dimension")
    p.add_argument("--depth", type=int, default=depth, help="levels of the concept tree")
    p.add_argument("--branching", type=int, default=branching, help="children per node")


def add_optimizer_args(p: argparse.ArgumentParser, *, optimizer: str | None, steps: int, batch_size: int) -> None:
    from .optimizers import OPTIMIZERS

    p.add_argument("--optimizer", type=str, default=optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per optimizer)")
    p.add_argument("--weight-decay", type=float, default=None, help="weight decay λ (default: per optimizer)")
    p.add_argument("--steps", type=int, default=steps, help="training steps")
    p.add_argument("--batch-size", type=int, default=batch_size, help="minibatch size")


def _check(args) -> None:
    from .optimizers import OPTIMIZERS

    a = vars(args)
    if "optimizer" in a and a["optimizer"] is not None and a["optimizer"] not in OPTIMIZERS:
        raise UsageError(f"--optimizer: unknown optimizer {a['optimizer']!r}; valid: {', '.join(OPTIMIZERS)}")
    for name in ("lr", "steps", "batch_size", "dim", "depth", "branching"):
        v = a.get(name)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise UsageError(f"--{name.replace('_', '-')}: must be > 0, got {v}")
    wd = a.get("weight_decay")
    if wd is not None and not (wd >= 0 and math.isfinite(wd)):
        raise UsageError(f"--weight-decay: must be >= 0, got {wd}")
    if a.get("depth") and a.get("branching"):
        b, d = a["branching"], a["depth"]
        n = sum(b ** (level + 1) for level in range(d)) if d < 64 and b < 10**6 else math.inf
        if n > MAX_CONCEPTS:
            raise UsageError(f"--depth {d} --branching {b}: {n} concepts exceeds the cap of {MAX_CONCEPTS}")
    if a.get("dim") is not None and a["dim"] < 2:
        raise UsageError(f"--dim: must be >= 2, got {a['dim']}")


def parse_args(parser: argparse.ArgumentParser, argv=None, *, sim: str) -> argparse.Namespace:
    """Parse and check; sets float64 if ``--x64``; resolves ``--out`` (checked, not created)."""
    args = parser.parse_args(argv)
    _check(args)
    if args.out is None:
        args.out = str(Path("runs") / (sim + ("-quick" if args.quick else "")))
    _check_out(Path(args.out), args.force)
    _check_out(Path(args.figures), True)
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    return args


def _check_out(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out: {str(path)!r} is a file, not a folder")
    if path.is_dir() and (path / "results.json").exists() and not force:
        raise UsageError(f"--out: {str(path)!r} already holds results.json (use --force to overwrite)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out: {str(path)!r} is not writable")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename: never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(x):
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "tolist"):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_savefig(fig, path: Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically (PNG metadata without a timestamp, so deterministic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, metadata={"Software": None} if path.suffix == ".png" else None)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def run_metadata(config: dict) -> dict:
    """Package and JAX versions, device, and the full config (for repeating the run)."""
    import jax

    from . import __version__

    return {
        "normflow_version": __version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0].device_kind) + f" ({jax.default_backend()})",
        "x64": bool(jax.config.jax_enable_x64),
        "config": config,
    }


class Output:
    """Where a sim's results go: ``<out>/results.json`` and ``<figures>/<name>.png``."""

    def __init__(self, args: argparse.Namespace, figure_name: str):
        self.dir = Path(args.out)
        self.figure = Path(args.figures) / f"{figure_name}.png"
        self.config = {k: v for k, v in vars(args).items() if k not in ("quiet", "force")}

    def write(self, results: dict, status: str = "ok") -> Path:
        body = {"status": status, **results, **run_metadata(self.config)}
        path = self.dir / "results.json"
        atomic_write_json(path, body)
        return path

    def savefig(self, fig) -> Path:
        atomic_savefig(fig, self.figure)
        # a copy beside the results, so the folder is self-contained
        atomic_savefig(fig, self.dir / self.figure.name)
        return self.figure


def progress_callback(total_steps: int, *, enabled: bool, desc: str = "") -> tuple[Callable[[int, Any], None], Callable[[], None]]:
    """A ``train(callback=...)`` progress bar (tqdm on stderr), off when not a TTY or disabled.
    Returns ``(callback, close)``."""
    if not enabled or not sys.stderr.isatty():
        return (lambda step, model: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total_steps, desc=desc, unit="step", file=sys.stderr, leave=False)

    def cb(step, model):
        bar.update(step - bar.n)

    return cb, bar.close


def check_diverged(run, *, what: str, labels=None) -> None:
    """Raise :class:`Diverged` naming the step and concept if ``run`` produced NaN/Inf."""
    import numpy as np

    step = int(np.max(np.asarray(run.diverged_step)))
    if step < 0:
        return
    concept = int(np.max(np.asarray(run.diverged_concept)))
    label = f" ({labels[concept]})" if labels is not None and concept >= 0 else ""
    raise Diverged(f"{what} diverged (NaN/Inf) at step {step + 1}, concept {concept}{label}")


def run_main(main: Callable[[list[str] | None], int | None], argv=None) -> int:
    """Run a sim's ``main`` with the lab's exit-status contract (0 ok, 1 diverged, 2 bad input)."""
    t0 = time.time()
    try:
        main(argv)
    except UsageError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # the library's own argument checks
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    del t0
    return 0
