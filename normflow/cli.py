"""The shared command-line layer every sim uses: flags, input checks, safe output, progress,
divergence handling and run metadata.

A sim is ``main(argv)`` that builds a parser with :func:`make_parser` (+ the ``add_*_args``
helpers), calls :func:`parse_args`, does its work, and writes through :class:`Output`. Wrap
it with :func:`run_main` so that

- bad input → one line on stderr naming the bad value, exit status 2, nothing written;
- a diverged run (:class:`Diverged`) → a message naming the step and concept, a results file
  marked ``"status": "diverged"``, exit status 1;
- Ctrl-C (SIGINT) → one line, exit status 130; SIGTERM → one line, exit status 143;
- every results file and figure is written to a temporary file and renamed into place (never
  half a file), and an existing results folder is kept unless ``--force``.

Nothing here imports JAX before it is needed (only ``--x64``, :func:`run_metadata` and
:func:`check_diverged` do), so bad input is reported before the slow imports of a run. Note
that ``import normflow.cli`` still runs ``normflow/__init__.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple

__all__ = [
    "UsageError", "Diverged", "make_parser", "add_task_args", "add_optimizer_args", "parse_args", "Output",
    "run_main", "atomic_write_text", "atomic_write_json", "atomic_savefig", "run_metadata", "progress_callback",
    "MAX_CONCEPTS", "MAX_SEED", "check_diverged", "EXIT_OK", "EXIT_DIVERGED", "EXIT_USAGE", "EXIT_INTERRUPTED",
    "EXIT_TERMINATED", "check_optimizer", "num_concepts", "Rule", "at_least", "POSITIVE", "FRACTION", "OPEN_FRACTION",
    "check_flags", "add_measure_args", "resolve_quick", "check_alpha_grid",
]

MAX_CONCEPTS = 20_000  # cap on depth/branching so a typo does not allocate a huge tree
MAX_SEED = 2**32 - 1  # jax.random.key folds larger seeds onto smaller ones (2**32 ≡ 0 in float32 mode)

EXIT_OK, EXIT_DIVERGED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # 130, 143


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class Diverged(Exception):
    """A run produced NaN/Inf: the message names the step and concept; ``results`` (optional)
    is what was recorded up to then, ``path`` where the sim wrote it (set by the sim)."""

    def __init__(self, message: str, results: dict | None = None, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.results = results or {}
        self.path = path


class _Terminated(KeyboardInterrupt):
    """Raised by run_main's SIGTERM handler so that cleanup (temporary files) still runs."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage block (argparse's type errors too)
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m and m.group(1).startswith("--"):
            flag = m.group(1).split("=", 1)[0]
            known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            if close:
                message = f"unrecognized argument {flag} (did you mean {close[0]}?)"
        raise UsageError(message)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` except where the default is None (the help says what it is) or a
    switch that is off."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with defaults shown in ``--help`` and the flags common to every sim."""
    p = _Parser(prog=prog, description=description, formatter_class=_HelpFormatter,
                epilog="exit status: 0 ok, 1 the run diverged (results.json has \"status\": \"diverged\"), "
                       "2 bad input (nothing written), 130 interrupted")
    p.add_argument("--seed", type=int, default=0, help=f"PRNG seed in [0, {MAX_SEED}] (same seed → identical results.json)")
    p.add_argument("--out", type=str, default=None,
                   help="results folder (default: runs/<sim>, or runs/<sim>-quick with --quick)")
    p.add_argument("--force", action="store_true", help="overwrite an existing results folder (one holding results.json)")
    p.add_argument("--quick", action="store_true", help="a small run for tests and first contact")
    p.add_argument("--x64", action="store_true", help="run in float64 (jax_enable_x64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it is also off when stderr is not a terminal)")
    p.add_argument("--figures", type=str, default=None,
                   help="folder for the figure (default: the results folder; `make figures` writes the docs' figures)")
    return p


def add_task_args(p: argparse.ArgumentParser, *, dim: int, depth: int, branching: int) -> None:
    p.add_argument("--dim", type=int, default=dim, help="embedding dimension (>= 2)")
    p.add_argument("--depth", type=int, default=depth,
                   help=f"levels of the concept tree (branching + ... + branching^depth <= {MAX_CONCEPTS} concepts)")
    p.add_argument("--branching", type=int, default=branching, help="children per node")


def add_optimizer_args(p: argparse.ArgumentParser, *, optimizer: str | None, steps: int, batch_size: int,
                       defaults: dict[str, tuple[float, float]] | None = None) -> None:
    """``--optimizer --lr --weight-decay --steps --batch-size``. ``defaults`` (optional), the
    sim's per-optimizer ``{name: (lr, weight_decay)}``, is shown in ``--help``."""
    from .optimizers import OPTIMIZERS

    def per(i):
        if not defaults:
            return "per optimizer"
        return "per optimizer: " + ", ".join(f"{k} {v[i]:g}" for k, v in defaults.items())

    p.add_argument("--optimizer", type=str, default=optimizer, help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate η > 0 (default {per(0)})")
    p.add_argument("--weight-decay", type=float, default=None, help=f"weight decay λ >= 0 (default {per(1)})")
    p.add_argument("--steps", type=int, default=steps, help="training steps" + ("" if steps else " (default: per optimizer)"))
    p.add_argument("--batch-size", type=int, default=batch_size, help="minibatch size")


def add_measure_args(p: argparse.ArgumentParser, *, window: float | None, se_batches: tuple[int, int],
                     what: str = "the source statistics at the end") -> None:
    """``--window`` (the averaged fraction at the end of a run; skipped when ``window`` is None)
    and ``--se-batches`` (minibatches per source-statistics measurement, ``se_batches = (full,
    quick)``; the flag's default is None until :func:`resolve_quick` fills it)."""
    if window is not None:
        p.add_argument("--window", type=float, default=window, help="fraction of the run (at the end) averaged")
    p.add_argument("--se-batches", type=int, default=None,
                   help=f"minibatches for {what} (default {se_batches[0]}; --quick: {se_batches[1]})")


def add_sgd_adamw_args(p: argparse.ArgumentParser, *, adamw_weight_decay: float, adamw: str = "AdamW",
                       adamw_decay_help: str = "", b2: bool = False) -> None:
    """The flags of a sim that runs SGD+decay beside AdamW: ``--sgd-lr``, ``--sgd-weight-decay``
    (the library defaults), ``--adamw-lr``, ``--adamw-weight-decay`` (default
    ``adamw_weight_decay``), ``--b1`` (and ``--b2`` with ``b2``) and ``--init-norm``; ``adamw``
    names the Adam-family runs the AdamW flags set, in the help."""
    from .defaults import DEFAULTS

    p.add_argument("--sgd-lr", type=float, default=DEFAULTS["sgd"][0], help="SGD η")
    p.add_argument("--sgd-weight-decay", type=float, default=DEFAULTS["sgd"][1], help="SGD λ")
    p.add_argument("--adamw-lr", type=float, default=DEFAULTS["adamw"][0], help=f"{adamw} η")
    p.add_argument("--adamw-weight-decay", type=float, default=adamw_weight_decay,
                   help=f"{adamw} λ{adamw_decay_help}")
    p.add_argument("--b1", type=float, default=0.9, help=f"β1 ({adamw})")
    if b2:
        p.add_argument("--b2", type=float, default=0.999, help=f"β2 ({adamw})")
    p.add_argument("--init-norm", type=float, default=1.0, help="initial norm of every row")


def add_sized_args(p: argparse.ArgumentParser, full: dict, quick: dict, flags: list[tuple[str, type, str]]) -> None:
    """Flags whose default depends on ``--quick``: ``(name, type, help)`` each, default None (filled
    from ``full`` or ``quick`` by :func:`parse_args`'s ``sizes``), both values in the help."""
    for name, typ, helptext in flags:
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=f"{helptext} (default {full[name]}, --quick {quick[name]})")


def resolve_quick(args: argparse.Namespace, **sizes: tuple[Any, Any]) -> None:
    """Fills each flag left at None with its full or ``--quick`` value: ``name=(full, quick)``."""
    for name, (full, quick) in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


def task_from_args(args: argparse.Namespace, n_keys: int):
    """The sims' common start: split ``jax.random.key(args.seed)`` into ``n_keys`` keys, build
    ``HierarchicalTask(depth, branching, dim)`` in float64 under ``--x64`` (else float32) from
    the first, and return ``(task, *the other keys)``."""
    import jax
    import jax.numpy as jnp

    from .tasks import HierarchicalTask

    dtype = jnp.float64 if args.x64 else jnp.float32
    k_task, *rest = jax.random.split(jax.random.key(args.seed), n_keys)
    task = HierarchicalTask(depth=args.depth, branching=args.branching, dim=args.dim, key=k_task, dtype=dtype)
    return (task, *rest)


def cpu_setup() -> None:
    """How the sweep sims run: one JAX CPU device per core, so that a sweep's configs spread
    over the cores (:func:`normflow.devices.cpu_devices_per_core`; results equal the one-device
    run up to float rounding), and JAX's unrolled Threefry lowering on CPU (bit-identical random
    numbers, faster code: :func:`normflow.sweep.unroll_cpu_threefry`). Call it before anything
    runs on JAX; on GPU/TPU it changes nothing that runs there."""
    from .devices import cpu_devices_per_core
    from .sweep import unroll_cpu_threefry

    cpu_devices_per_core()
    unroll_cpu_threefry()


def num_concepts(depth: int, branching: int) -> float:
    """Concepts in a ``depth``-level tree with ``branching`` children per node (math.inf if huge)."""
    if depth >= 64 or branching >= 10**6:
        return math.inf
    return sum(branching ** (level + 1) for level in range(depth))


_OPTIMIZER_FLAGS = (("weight_decay", "--weight-decay"), ("batch_size", "--batch-size"), ("steps", "--steps"),
                    ("lr", "--lr"), ("optimizer", "--optimizer"))


def name_list(text: str | None, valid, *, flag: str, what: str, default) -> list[str]:
    """A comma-separated ``--flag`` value as a list of names from ``valid`` (``default`` when the
    flag was not given); a :class:`UsageError` naming the first unknown or repeated name."""
    if text is None:
        return list(default)
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise UsageError(f"{flag}: unknown {what} {bad[0] if bad else text!r}; valid: {', '.join(valid)}")
    if len(set(names)) != len(names):
        raise UsageError(f"{flag}: repeated name in {text!r}")
    return names


class Rule(NamedTuple):
    """A flag's check: ``ok(value)`` must hold, else the one-line error says ``why``."""

    ok: Callable[[Any], bool]
    why: str


def at_least(n) -> Rule:
    """``value >= n`` (counts: steps, seeds, batches)."""
    return Rule(lambda v: v >= n, f"must be >= {n}")


POSITIVE = Rule(lambda v: math.isfinite(v) and v > 0, "must be > 0")
FRACTION = Rule(lambda v: 0 <= v < 1, "must be in [0, 1)")  # momenta, β's, warm-up fractions
OPEN_FRACTION = Rule(lambda v: 0 < v < 1, "must be in (0, 1)")  # averaging windows


def check_flags(args: argparse.Namespace, **rules: Rule) -> None:
    """Checks each flag (by its ``dest`` name) against its :class:`Rule`, in order; the first
    that fails raises :class:`UsageError` ``"--flag: why, got value"``. A flag left at None
    (a default filled in later) is skipped.

    **Arguments:** ``args``, the parsed flags; ``rules``, ``dest=Rule``.
    """
    for name, rule in rules.items():
        v = getattr(args, name)
        if v is not None and not rule.ok(v):
            raise UsageError(f"--{name.replace('_', '-')}: {rule.why}, got {v}")


def check_alpha_grid(args: argparse.Namespace, *, max_points: int) -> None:
    """The retrieval experiments' α grid: ``--alpha-min < 0 < --alpha-max``, a step that fits on
    both sides, at most ``max_points`` points. Raises :class:`UsageError` naming the bad value."""
    import math

    lo, hi, step = args.alpha_min, args.alpha_max, args.alpha_step
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < 0 < hi):
        raise UsageError(f"--alpha-min/--alpha-max: need alpha-min < 0 < alpha-max, got {lo}, {hi}")
    if not (math.isfinite(step) and 0 < step <= min(-lo, hi)):
        raise UsageError(f"--alpha-step: must be in (0, min(-alpha-min, alpha-max)], got {step}")
    if (hi - lo) / step > max_points:
        raise UsageError(f"--alpha-step: {step} gives more than {max_points} grid points")


def check_optimizer(args: argparse.Namespace) -> None:
    """:func:`normflow.optimizers.check_optimizer_args` on the parsed (and resolved) flags, its
    ValueError turned into a :class:`UsageError` naming the flag (e.g. adam with a decay)."""
    from .optimizers import check_optimizer_args

    try:
        check_optimizer_args(args.optimizer, args.lr, args.weight_decay, getattr(args, "steps", None),
                             getattr(args, "batch_size", None))
    except ValueError as e:
        msg = _first_line(e)
        flag = next((f for key, f in _OPTIMIZER_FLAGS if key in msg), "--optimizer")
        raise UsageError(f"{flag}: {msg}") from None


def _check(args) -> None:
    from .optimizers import OPTIMIZERS

    a = vars(args)
    if "optimizer" in a and a["optimizer"] is not None and a["optimizer"] not in OPTIMIZERS:
        raise UsageError(f"--optimizer: unknown optimizer {a['optimizer']!r}; valid: {', '.join(OPTIMIZERS)}")
    seed = a.get("seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed: must be in [0, {MAX_SEED}], got {seed}")
    for name in ("lr", "steps", "batch_size", "dim", "depth", "branching"):
        v = a.get(name)
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise UsageError(f"--{name.replace('_', '-')}: must be a finite number > 0, got {v}")
    wd = a.get("weight_decay")
    if wd is not None and not (wd >= 0 and math.isfinite(wd)):
        raise UsageError(f"--weight-decay: must be a finite number >= 0, got {wd}")
    if a.get("depth") and a.get("branching"):
        b, d = a["branching"], a["depth"]
        n = num_concepts(d, b)
        if n > MAX_CONCEPTS:
            shown = "more than 10^18" if n == math.inf or n > 10**18 else str(n)
            raise UsageError(f"--depth {d} --branching {b}: {shown} concepts exceeds the cap of {MAX_CONCEPTS}")
    if a.get("dim") is not None and a["dim"] < 2:
        raise UsageError(f"--dim: must be >= 2, got {a['dim']}")
    if a.get("batch_size"):
        need, have = batch_memory(a["batch_size"], a.get("dim") or 32, 8 if a.get("x64") else 4), machine_memory()
        if have and need > have / 2:
            raise UsageError(f"--batch-size {a['batch_size']}: one step needs ~{need / 2**30:.3g} GiB (its "
                             f"{a['batch_size']}×{a['batch_size']} logits), more than half of this machine's "
                             f"{have / 2**30:.3g} GiB")


def batch_memory(batch_size: int, dim: int, itemsize: int) -> float:
    """Bytes one contrastive step holds at once, estimated before anything is compiled: the
    ``B×B`` logits, their softmax and its gradient (three ``B×B`` arrays), plus the ``B×d``
    embeddings and their gradients."""
    return itemsize * (3.0 * batch_size**2 + 4.0 * batch_size * dim)


def machine_memory() -> int | None:
    """Physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def parse_args(parser: argparse.ArgumentParser, argv=None, *, sim: str,
               sizes: tuple[dict[str, Any], dict[str, Any]] | None = None) -> argparse.Namespace:
    """Parse and check; sets float64 if ``--x64``; resolves ``--out`` (checked, not created).
    ``sizes = (QUICK, FULL)``: each flag left at ``None`` takes its value from ``QUICK`` under
    ``--quick``, else from ``FULL`` (an experiment's two configurations).

    Raises :class:`UsageError` (one line naming the bad value) on bad input; creates nothing.
    """
    args = parser.parse_args(argv)
    if sizes is not None:
        for k, v in sizes[0 if args.quick else 1].items():
            if getattr(args, k) is None:
                setattr(args, k, v)
    _check(args)
    if args.out is None:
        args.out = str(Path("runs") / (sim + ("-quick" if args.quick else "")))
    _check_out(Path(args.out), args.force, flag="--out")
    if args.figures is None:
        args.figures = args.out
    else:
        _check_out(Path(args.figures), True, flag="--figures")
    if args.x64:
        import jax

        jax.config.update("jax_enable_x64", True)
    return args


def _check_out(path: Path, force: bool, flag: str = "--out") -> None:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {str(path)!r} is a file, not a folder")
    if path.is_dir() and (path / "results.json").exists() and not force:
        raise UsageError(f"{flag}: {str(path)!r} already holds results.json (use --force to overwrite)")
    parent = path.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{flag}: {str(path)!r} cannot be created: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: {str(path)!r} is not writable")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tempfile_beside(path: Path, suffix: str) -> str:
    """A temporary file next to ``path`` with the permissions a plain ``open`` would give it
    (mkstemp makes 0600 files). Its name starts with '.' and ends with ``suffix``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return tmp


# The one piece of process state here, as signals are process-wide: set by run_main's handlers, so
# that an interrupt whose KeyboardInterrupt was swallowed where it landed (JAX's gc callback ignores
# exceptions) is raised again at the latest before a results file is renamed into place.
_SIGNALLED: list[int] = []


def _raise_if_signalled() -> None:
    if _SIGNALLED:
        raise _Terminated() if _SIGNALLED[-1] == signal.SIGTERM else KeyboardInterrupt()


def _replace_or_remove(tmp: str, path: Path, write: Callable[[str], None]) -> None:
    try:
        write(tmp)
        _raise_if_signalled()
        os.replace(tmp, path)
    except BaseException:  # includes KeyboardInterrupt: never leave the temporary file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename: never half a file."""
    path = Path(path)
    tmp = _tempfile_beside(path, ".tmp")

    def write(name):
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    _replace_or_remove(tmp, path, write)


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
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def atomic_write_json(path: Path, obj: dict) -> None:
    """JSON (NaN → null, ±inf → "inf"/"-inf", arrays → lists) written atomically."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def label_axes(ax, *, xlabel: str, ylabel: str, title: str, log: str = "", legend: bool = True) -> None:
    """A panel's log scales (``log`` holds ``"x"`` and/or ``"y"``), axis labels, small title and
    legend, in the sims' one style."""
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if legend:
        ax.legend(fontsize=7)


def atomic_savefig(fig, path: Path, dpi: int = 120) -> None:
    """Save a matplotlib figure atomically (PNG metadata without a timestamp, so deterministic).
    The temporary file keeps the figure's suffix (matplotlib picks the format from it) and ends
    in ``.tmp<suffix>``."""
    path = Path(path)
    tmp = _tempfile_beside(path, ".tmp" + path.suffix)
    meta = {"Software": None} if path.suffix == ".png" else None
    _replace_or_remove(tmp, path, lambda name: fig.savefig(name, dpi=dpi, metadata=meta))


def atomic_copy(src: Path, path: Path) -> None:
    """Copy a file's bytes to ``path`` atomically (temporary file beside it, then rename)."""
    path = Path(path)
    data = Path(src).read_bytes()
    tmp = _tempfile_beside(path, ".tmp" + path.suffix)
    _replace_or_remove(tmp, path, lambda name: Path(name).write_bytes(data))


def run_metadata(config: dict) -> dict:
    """Package, JAX, jaxlib, NumPy and Python versions, the device, and the full config (for
    repeating the run). Nothing here depends on the time of the run."""
    import platform

    import jax
    import jaxlib
    import numpy as np

    from . import __version__

    return {
        "normflow_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "device": str(jax.devices()[0].device_kind) + f" ({jax.default_backend()}) x{jax.device_count()}",
        "x64": bool(getattr(jax.config, "jax_enable_x64")),
        "config": config,
    }


class _ConfigView(dict):
    """A dict whose assignments are also recorded in ``extra``."""

    def __init__(self, data: dict, extra: dict):
        super().__init__(data)
        self._extra = extra

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._extra[key] = value

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v


class Output:
    """Where a sim's results go: ``<out>/results.json`` and ``<figures>/<name>.png`` (``<figures>``
    defaults to ``<out>``; otherwise a copy of the figure goes into ``<out>`` as well). Nothing is created until :meth:`write` / :meth:`savefig`.

    ``config`` is every flag's value at write time (so defaults a sim resolves after building
    the Output, e.g. per-optimizer learning rates, are recorded), minus ``--quiet`` and
    ``--force``, plus whatever the sim adds with :meth:`add_config` (internal constants a rerun
    needs)."""

    _UNRECORDED = ("quiet", "force")

    def __init__(self, args: argparse.Namespace, figure_name: str):
        self.args = args
        self.dir = Path(args.out)
        self.figure = Path(args.figures) / f"{figure_name}.png"
        self._extra: dict[str, Any] = {}
        self.results_path = self.dir / "results.json"

    @property
    def config(self) -> dict:
        """The config as of now; setting a key on it records that key (like :meth:`add_config`)."""
        cfg = {k: v for k, v in vars(self.args).items() if k not in self._UNRECORDED}
        cfg.update(self._extra)
        return _ConfigView(cfg, self._extra)

    def add_config(self, **params) -> None:
        """Record parameters that are not flags (fixed in the sim) in ``config``."""
        self._extra.update(params)

    def write(self, results: dict, status: str = "ok") -> Path:
        body = {"status": status, **results, **run_metadata(self.config)}
        atomic_write_json(self.results_path, body)
        return self.results_path

    def savefig(self, fig, name: str | None = None) -> Path:
        """Save ``fig`` as the run's figure, or as ``<figures>/<name>.png`` for a further one."""
        path = self.figure if name is None else self.figure.parent / f"{name}.png"
        atomic_savefig(fig, path)
        if path.parent.resolve() != self.dir.resolve():
            # a copy beside the results, so the folder is self-contained (the bytes, not a second
            # rendering: drawing a figure costs about a second)
            atomic_copy(path, self.dir / path.name)
        return path


def progress_callback(total_steps: int, *, enabled: bool, desc: str = "") -> tuple[Callable[[int, Any], None], Callable[[], None]]:
    """A ``train(callback=...)`` progress bar (tqdm on stderr), off when not a TTY or disabled.
    Returns ``(callback, close)``."""
    if not enabled or not sys.stderr.isatty():
        return (lambda step, model: None), (lambda: None)
    from tqdm import tqdm

    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        width = 0
    # a terminal that reports no size (a bare pseudo-terminal) would get no bar: use 80 x 24
    size = {"dynamic_ncols": True} if width > 0 else {"ncols": 80, "nrows": 24}
    bar = tqdm(total=total_steps, desc=desc, unit="step", file=sys.stderr, leave=False, **size)

    def cb(step, model):
        bar.update(step - bar.n)

    return cb, bar.close


def print_written(path, figure, timings: dict[str, float], t_start: float) -> None:
    """The last two lines of an experiment: its phase timings with the total since ``t_start``
    (``time.time()``), and where its results and figure went."""
    import time

    print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()) + f"; total {time.time() - t_start:.1f}s")
    print(f"results: {path}  figure: {figure}")


def check_diverged(run, *, what: str, labels=None) -> None:
    """Raise :class:`Diverged` naming the step (1-based) and concept if ``run`` produced NaN/Inf
    (``run.diverged_step >= 0``; for a vmapped run, the first diverged member is named)."""
    import numpy as np

    steps = np.asarray(run.diverged_step).ravel()
    if not np.any(steps >= 0):
        return
    i = int(np.argmax(steps >= 0))
    step = int(steps[i])
    concept = int(np.asarray(run.diverged_concept).ravel()[i])
    label = f" ({labels[concept]})" if labels is not None and concept >= 0 else ""
    member = f" [run {i} of {steps.size}]" if steps.size > 1 else ""
    raise Diverged(f"{what} diverged (NaN/Inf) at step {step + 1}, concept {concept}{label}{member}")


def stop_if_sweep_diverged(run, out: "Output", *, name: str, labels, **record) -> None:
    """A sweep's divergence, the sims' way: if any config of ``run`` produced NaN/Inf, write
    ``results.json`` with status ``"diverged"`` (the message, the optimizer, the first diverged
    config's label, step and concept, and ``record``) and raise :class:`Diverged` naming them."""
    import numpy as np

    bad = np.asarray(run.diverged_step)
    if not np.any(bad >= 0):
        return
    c = int(np.argmax(bad >= 0))
    step, concept = int(bad[c]) + 1, int(np.asarray(run.diverged_concept)[c])
    msg = f"{name} ({labels[c]}) diverged (NaN/Inf) at step {step}, concept {concept}"
    e = Diverged(msg)
    e.path = out.write({"message": msg, "optimizer": name, "config": labels[c], "diverged_step": step,
                        "diverged_concept": concept, **{k: (v[c] if isinstance(v, (list, tuple)) else v)
                                                        for k, v in record.items()}}, status="diverged")
    raise e


def _close_progress_bars() -> None:
    """Close (and so erase) any open tqdm bar before a final message is printed under it."""
    std = sys.modules.get("tqdm.std")
    if std is None:
        return
    for bar in list(getattr(std.tqdm, "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def _in_finalizer(frame) -> bool:
    """Whether ``frame`` (where a signal handler interrupted the program) runs inside a
    garbage-collection callback or a ``__del__`` method, where an exception is swallowed."""
    import gc

    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def run_main(main: Callable[[list[str] | None], int | None], argv=None, *, prog: str | None = None) -> int:
    """Run a sim's ``main`` with the lab's exit-status contract: 0 ok, 1 diverged, 2 bad input,
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Each failure is one line on stderr,
    ``<prog>: error: <what>`` (``prog`` defaults to the script's file name)."""
    prog = prog or Path(sys.argv[0]).name or "normflow"

    def on_signal(signum, frame):
        _SIGNALLED.append(signum)
        if _in_finalizer(frame):
            # An exception raised inside a garbage-collection callback or a __del__ cannot
            # propagate: Python prints "Exception ignored ... Traceback" and drops it. Deliver
            # the signal again in 10 ms, once out of it (JAX runs a gc callback in every process).
            threading.Timer(0.01, signal.pthread_kill, args=(threading.main_thread().ident, signum)).start()
            return
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    _SIGNALLED.clear()
    previous = previous_int = None
    with contextlib.suppress(ValueError):  # not in the main thread: leave the signals alone
        previous = signal.signal(signal.SIGTERM, on_signal)
        # Ctrl-C raises KeyboardInterrupt from here on (a front end's early handler ends here)
        previous_int = signal.signal(signal.SIGINT, on_signal)
    try:
        rc = main(argv)
        _raise_if_signalled()  # an interrupt swallowed after the last write still counts
    except UsageError as e:
        print(f"{prog}: error: {_first_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except Diverged as e:
        where = f"; what was recorded up to then is in {os.fspath(e.path)}" if e.path else ""
        print(f"{prog}: error: {_first_line(e)}{where}", file=sys.stderr)
        return EXIT_DIVERGED
    except ValueError as e:  # the library's own argument checks
        print(f"{prog}: error: {_first_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        terminated = isinstance(e, _Terminated)
        _close_progress_bars()
        print(f"{prog}: interrupted ({'SIGTERM' if terminated else 'SIGINT'}): stopped before the results were complete; "
              "no partial file was written", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else EXIT_OK


def script(main: Callable[[list[str] | None], int | None], argv=None, *, prog: str | None = None):
    """Run ``main`` as a command (:func:`run_main`) and exit with its status. After an interrupt
    (130/143) the process ends with ``os._exit`` once stdout/stderr are flushed: the results are
    already settled (nothing or whole files), and the interpreter's teardown, with XLA's worker
    threads possibly still inside a computation, is where a segmentation fault could happen."""
    rc = run_main(main, argv, prog=prog)
    end_if_interrupted(rc)
    sys.exit(rc)


def end_if_interrupted(rc: int) -> None:
    """For a status of 130/143: flush stdout/stderr and end the process with ``os._exit`` (see
    :func:`script`); any other status returns."""
    if rc not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(rc)
