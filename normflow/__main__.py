"""``normflow`` (console script) and ``python -m normflow``: list the sims, or run one.

    normflow --help                  # the sims, one line each
    normflow <sim> [flags]           # runs normflow.experiments.<sim>.main(argv), e.g. normflow ode_vs_adam --quick
    normflow <sim> --help            # that sim's flags, with defaults

The experiments are modules of the installed package (:mod:`normflow.experiments`), so this
works from any folder after any install; listing reads each module's docstring without
importing it.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import re
import sys
from pathlib import Path

__all__ = ["main", "sims_dir", "list_sims"]

_SUMMARY_WIDTH = 96


def sims_dir() -> Path:
    """The folder of the experiment modules (inside the installed package)."""
    return Path(__file__).resolve().parent / "experiments"


def _summary(path: Path) -> str:
    """The first sentence of the script's docstring (read, not executed), shortened to one line."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        return f"(cannot read: {type(e).__name__})"
    para = " ".join(doc.strip().split("\n\n")[0].split())
    # the first sentence: a period before a capital letter, not after an abbreviation ("Fig. 3")
    end = next((m.start() for m in re.finditer(r"\.\s+(?=[A-Z(])", para)
                if not re.search(r"(\b\w|\b(?:Fig|Figs|Eq|Sec|e\.g|i\.e|cf|vs|etc))$", para[: m.start()])), None)
    text = para if end is None else para[: end + 1]
    if len(text) <= _SUMMARY_WIDTH:
        return text
    return text[: _SUMMARY_WIDTH].rsplit(" ", 1)[0].rstrip(",;:") + " …"


def list_sims(d: Path | None = None) -> dict[str, Path]:
    """``{name: path}`` for every experiment (:data:`normflow.experiments.EXPERIMENTS`), sorted."""
    from .experiments import EXPERIMENTS

    d = sims_dir() if d is None else d
    return {n: d / f"{n}.py" for n in sorted(EXPERIMENTS)}


def _help(d: Path, sims: dict[str, Path]) -> str:
    from . import __version__

    width = max((len(n) for n in sims), default=0)
    lines = [
        "usage: normflow <sim> [flags]      (also: python -m normflow <sim> [flags])",
        "       normflow <sim> --help       (that sim's flags and their defaults)",
        "",
        f"normflow {__version__}: a JAX lab for how optimizer dynamics write the training signal into the",
        "norms of scale-invariant (cosine) embeddings.",
        "",
        "sims (normflow.experiments; also python sims/<sim>.py in a checkout):",
        *([f"  {n:<{width}}  {_summary(p)}" for n, p in sims.items()] or ["  (none)"]),
        "",
        "flags every sim takes: --seed N (same seed -> identical results.json), --out DIR, --force",
        "(overwrite a folder holding results.json), --quick (small run), --quiet (no progress bar),",
        "--x64, --figures DIR.",
        "exit status: 0 ok, 1 the run diverged (results.json has \"status\": \"diverged\"), 2 bad input",
        "(one line on stderr, nothing written), 130 interrupted.",
    ]
    return "\n".join(lines)


def _load_main(name: str):
    return getattr(importlib.import_module(f"normflow.experiments.{name}"), "main", None)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 diverged, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    d = sims_dir()
    sims = list_sims(d)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_help(d, sims), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"normflow {__version__}")
        return 0
    name = argv[0].removesuffix(".py").replace("-", "_")
    if name not in sims:
        close = difflib.get_close_matches(name, sims, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        print(f"normflow: unknown sim {argv[0]!r}{hint}; available: {', '.join(sims) or 'none'}", file=sys.stderr)
        return 2
    from . import cli

    sim_main = _load_main(name)
    if not callable(sim_main):
        print(f"normflow: normflow.experiments.{name} defines no main(argv)", file=sys.stderr)
        return 2
    try:
        rc = cli.run_main(sim_main, argv[1:], prog=f"normflow {name}")
    except SystemExit as e:  # --help, or a sim that exits by itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    cli.end_if_interrupted(rc)  # an interrupt ends here, without the interpreter's teardown
    return rc


if __name__ == "__main__":
    sys.exit(main())
