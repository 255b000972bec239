"""The numbers the README quotes for the main job, and docs/theory.md §16's validity table,
rendered from committed reference results.

``docs/results/ode_vs_adam/<optimizer>.json`` are the summaries of ``normflow ode_vs_adam
--optimizer <optimizer>`` at its defaults, seed 0 (``make figures`` rewrites them: the run's
``results.json`` without its per-step arrays). This script renders the README's main-job table
from them; ``python docs/make_tables.py`` rewrites it in place, and tests/test_docs.py checks that
the committed README equals this output (so no number in that table is typed by hand). The
validity table is rendered from ``normflow/_data/validity.json`` (``normflow validity
--update-package-data``) into docs/theory.md the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "ode_vs_adam"
BEGIN, END = "<!-- main-job table: docs/make_tables.py -->", "<!-- end of main-job table -->"
# what each formula is, in words (the numbers and the section come from the results)
FORMULA = {
    "gd": "modified flow", "sgd": "R*⁴ = ηpW²/(λ(2−ηλ))", "sgd_l2": "R*⁴ = ηpW²/(λ(2−ηλ))",
    "sgdm": "coupled-decay heavy ball", "sgdmw": "decoupled-decay heavy ball",
    "sgdp": "radial projection with lag κ", "adam": "v-lag map R²′ = R² + η²dρf",
    "adamw": "discounted-displacement sum", "adam_l2": "R*³ ≈ η√(d pW²) f/(2λ)",
    "adamp": "AdamP equilibrium", "lion": "persistent sign walk",
}
# stripped from a run's results.json for the committed summary: per-step arrays and run metadata
HEAVY = ("trajectory", "pw2_checkpoints")
VOLATILE = ("normflow_version", "jax_version", "jaxlib_version", "numpy_version", "python_version", "device")


def summary(results: dict) -> dict:
    """The committed part of a run's results: everything but the per-step arrays and versions."""
    out = {k: v for k, v in results.items() if k not in HEAVY + VOLATILE}
    out["config"] = {k: v for k, v in results["config"].items() if k not in ("out", "figures", "stat_steps")}
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}".replace("-", "−")


def table() -> str:
    sys.path.insert(0, str(ROOT))
    from normflow.optimizers import OPTIMIZERS

    rows = ["| optimizer | formula (docs/theory.md) | norm error, depth 0 / 1 / 2 | angular error, depth 0 / 1 / 2 "
            "| verdict |", "| --- | --- | --- | --- | --- |"]
    for name in OPTIMIZERS:
        r = json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))
        lv = r["levels"]
        norm = " / ".join(_pct(level["rel_error"]) for level in lv) + " %"
        ang = " / ".join(_pct(level["angular_rel_error"]) for level in lv)
        ang = "n/a (no angular formula)" if ang.count("n/a") == len(lv) else ang + " %"
        sec = r["formula_section"].replace("docs/theory.md ", "")
        bad = [str(level["depth"]) for level in lv
               if max(abs(e) for e in (level["rel_error"], level["angular_rel_error"]) if e is not None)
               > r["holds_threshold"]]
        verdict = "holds" if r["theory_holds"] else f"**fails** (depth {', '.join(bad)})"
        rows.append(f"| `{name}` | {FORMULA[name]} ({sec}) | {norm} | {ang} | {verdict} |")
    return "\n".join([BEGIN, *rows, END])


def render_readme(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + table() + tail


VALIDITY = ROOT / "normflow" / "_data" / "validity.json"
V_BEGIN, V_END = "<!-- validity table: docs/make_tables.py -->", "<!-- end of validity table -->"


def _g(x) -> str:
    return "—" if x is None else f"{x:.2g}"


def validity_table() -> str:
    """docs/theory.md §16's table, from the measured regions shipped in the package."""
    data = json.loads(VALIDITY.read_text(encoding="utf-8"))
    rows = ["| map | optimizer (section) | swept group, range | fixed | points within 5 % (of measured) | holds where "
            "(combined group below) | main job's default |", "| --- | --- | --- | --- | --- | --- | --- |"]
    comb = {"eta_lambda": "ηλ/p", "one_minus_b2": "(1−β₂)/p", "one_minus_momentum": "(1−β)/p"}
    name_of = {"eta_lambda": "ηλ", "one_minus_b2": "1−β₂", "one_minus_momentum": "1−β"}
    for name, f in data["families"].items():
        reg = f["region"]
        beta = "β" if f["optimizer"].startswith("sgd") else "β₁"
        label = {"momentum": beta, "b2": "β₂", "eta_lambda": "ηλ"}
        fixed = ", ".join(f"{label[k]} = {v:g}" for k, v in f["fixed"].items()) or "—"
        where = ("every point" if reg["group_max"] is None else f"{comb[f['axis']]} < {_g(reg['group_max'])}")
        d = f["main_job_default"]
        inside = {True: "inside", False: "**outside**", None: "unmeasured"}[d["inside"]]
        rows.append(f"| `{name}` | `{f['optimizer']}` ({f['section'].replace('docs/theory.md ', '')}) | "
                    f"{name_of[f['axis']]} {f['values'][0]:.2g} … {f['values'][-1]:.2g} | {fixed} | "
                    f"{reg['points_holding']}/{reg['points_measured']} | {where} | {name_of[f['axis']]} = {d['axis_value']:.2g}: "
                    f"{inside} |")
    return "\n".join([V_BEGIN, *rows, V_END])


S_BEGIN, S_END = "<!-- sde table: docs/make_tables.py -->", "<!-- end of sde table -->"


def sde_table() -> str:
    """docs/theory.md §16's SDE table, from the shipped comparison."""
    sde = json.loads(VALIDITY.read_text(encoding="utf-8"))["sde"]
    m, q = sde["modified_drift"], sde["plain_drift"]
    rows = ["| η | ηλ | ε | SGD mean norm | SDE mean, error (± s.e.) | without modified drift | SGD spread | "
            "SDE spread error | time to equilibrium SGD / SDE |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, lr in enumerate(m["lr"]):
        se = 100 * m["mean_diff_se"][i] / m["mean_sgd"][i]
        rows.append(f"| {lr:.3g} | {m['eta_lambda'][i]:.3g} | {m['eps'][i]:.2f} | {m['mean_sgd'][i]:.4f} | "
                    f"{_pct(m['mean_rel_err'][i])} % (± {se:.2f}) | {_pct(q['mean_rel_err'][i])} % | "
                    f"{m['std_sgd'][i]:.4f} | {_pct(m['std_rel_err'][i])} % | "
                    f"{m['t_eq_sgd'][i]:.2f} / {m['t_eq_sde'][i]:.2f} |")
    return "\n".join([S_BEGIN, *rows, S_END])


def render_theory(text: str) -> str:
    for begin, end, render in ((V_BEGIN, V_END, validity_table), (S_BEGIN, S_END, sde_table)):
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + render() + tail
    return text


def store(results_json: Path) -> Path:
    """Write the summary of one run's ``results.json`` as its reference result."""
    r = json.loads(Path(results_json).read_text(encoding="utf-8"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{r['optimizer']}.json"
    path.write_text(json.dumps(summary(r), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    for arg in sys.argv[1:]:  # results.json files to store first (make figures passes them)
        store(Path(arg))
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    theory = ROOT / "docs" / "theory.md"
    theory.write_text(render_theory(theory.read_text(encoding="utf-8")), encoding="utf-8")
