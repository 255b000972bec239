"""Writes docs/experiments.md from the experiments' own docstrings (normflow.experiments), so the
page cannot drift from the code: ``python docs/make_experiments.py``; tests/test_cli.py checks
that the committed page equals this output."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {"ode_vs_adam": "ode_vs_adam", "balance_fit": "balance_fit"}


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from normflow.experiments import EXPERIMENTS

    out = ["# Experiments", "",
           "One module per experiment in `normflow/experiments/`; each runs with `normflow <name>` (or",
           "`python sims/<name>.py` in a checkout), takes `--quick` for a small run, and writes",
           "`results.json` and its figure into `runs/<name>` (`--out`). The measured numbers and what",
           "they show are in [findings.md](findings.md); the formulas in [theory.md](theory.md).",
           "This page is generated from the modules' docstrings by `docs/make_experiments.py`.", ""]
    for name in EXPERIMENTS:
        path = ROOT / "normflow" / "experiments" / f"{name}.py"
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        fig = FIGURES.get(name, name)
        out += [f"## {name}", "", f"`normflow {name}` — source: `normflow/experiments/{name}.py`", "", doc.strip(), ""]
        if (ROOT / "figures" / f"{fig}.png").exists():
            out += [f"![{name}](../figures/{fig}.png)", ""]
    return "\n".join(out)


if __name__ == "__main__":
    (ROOT / "docs" / "experiments.md").write_text(render(), encoding="utf-8")
