"""Writes docs/experiments.md and docs/experiments/<name>.md from the experiments' own docstrings (normflow.experiments), so the
page cannot drift from the code: ``python docs/make_experiments.py``; tests/test_cli.py checks
that the committed page equals this output."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = {"ode_vs_adam": "ode_vs_adam", "balance_fit": "balance_fit", "validity": "validity_adamw"}


def _doc(name: str) -> str:
    path = ROOT / "normflow" / "experiments" / f"{name}.py"
    return (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()


def render() -> dict[str, str]:
    """The pages, by path relative to ``docs/``: the index ``experiments.md`` and one page per
    experiment, ``experiments/<name>.md`` (its docstring: the question, what it runs and writes,
    the figure, and where its numbers and their reading are in findings.md)."""
    sys.path.insert(0, str(ROOT))
    from normflow.experiments import EXPERIMENTS

    index = ["# Experiments", "",
             "One module per experiment in `normflow/experiments/`; each runs with `normflow <name>` (or",
             "`python sims/<name>.py` in a checkout), takes `--quick` for a small run, and writes",
             "`results.json` and its figure into `runs/<name>` (`--out`). The measured numbers and what",
             "they show are in [findings](findings.md); the formulas in [the theory](theory.md).",
             "These pages are generated from the modules' docstrings by `docs/make_experiments.py`.", ""]
    pages = {}
    for name in EXPERIMENTS:
        doc = _doc(name)
        first = doc.split("\n\n", 1)[0].replace("\n", " ")
        index += [f"- [{name}](experiments/{name}.md): {first}"]
        page = [f"# {name}", "", f"`normflow {name}` — source: `normflow/experiments/{name}.py`", "", doc, ""]
        fig = FIGURES.get(name, name)
        if (ROOT / "docs" / "figures" / f"{fig}.png").exists():
            page += [f"![{name}](../figures/{fig}.png)", ""]
        page += ["The measured numbers, with their commands, and where they depart from the theory:",
                 "[findings](../findings.md).", ""]
        pages[f"experiments/{name}.md"] = "\n".join(page)
    pages["experiments.md"] = "\n".join(index + [""])
    return pages


if __name__ == "__main__":
    (ROOT / "docs" / "experiments").mkdir(exist_ok=True)
    for rel, text in render().items():
        (ROOT / "docs" / rel).write_text(text, encoding="utf-8")
