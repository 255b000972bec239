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


def _table(begin: str, end: str, header: list[str], rows: list[str]) -> str:
    """A markdown table between its two marker comments."""
    return "\n".join([begin, "| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |", *rows,
                      end])


def _g(x) -> str:
    return "—" if x is None else f"{x:.2g}"


def _map_row(name: str, f: dict, *, label: dict, swept: str, holds: str, axis: str, unmeasured: str) -> str:
    """One row of a §16 map table: the map, its optimizer and section, the swept range, the fixed
    hyperparameters, the points that hold, where it holds, and the main job's default on it."""
    reg, d = f["region"], f["main_job_default"]
    fixed = ", ".join(f"{label[k]} = {v:g}" for k, v in f["fixed"].items()) or "—"
    inside = {True: "inside", False: "**outside**", None: unmeasured}[d["inside"]]
    return (f"| `{name}` | `{f['optimizer']}` ({f['section'].replace('docs/theory.md ', '')}) | {swept} | {fixed} | "
            f"{reg['points_holding']}/{reg['points_measured']} | {holds} | {axis} = {d['axis_value']:.2g}: {inside} |")


def validity_table() -> str:
    """docs/theory.md §16's table, from the measured regions shipped in the package."""
    data = json.loads(VALIDITY.read_text(encoding="utf-8"))
    header = ["map", "optimizer (section)", "swept group, range", "fixed", "points within 5 % (of measured)",
              "holds where (combined group below)", "main job's default"]
    comb = {"eta_lambda": "ηλ/p", "one_minus_b2": "(1−β₂)/p", "one_minus_momentum": "(1−β)/p"}
    name_of = {"eta_lambda": "ηλ", "one_minus_b2": "1−β₂", "one_minus_momentum": "1−β"}
    rows = []
    for name, f in data["families"].items():
        gmax = f["region"]["group_max"]
        label = {"momentum": "β" if f["optimizer"].startswith("sgd") else "β₁", "b2": "β₂", "eta_lambda": "ηλ"}
        rows.append(_map_row(name, f, label=label, axis=name_of[f["axis"]], unmeasured="unmeasured",
                             swept=f"{name_of[f['axis']]} {f['values'][0]:.2g} … {f['values'][-1]:.2g}",
                             holds="every point" if gmax is None else f"{comb[f['axis']]} < {_g(gmax)}"))
    return _table(V_BEGIN, V_END, header, rows)


S_BEGIN, S_END = "<!-- sde table: docs/make_tables.py -->", "<!-- end of sde table -->"


def sde_table() -> str:
    """docs/theory.md §16's SDE table, from the shipped comparison."""
    sde = json.loads(VALIDITY.read_text(encoding="utf-8"))["sde"]
    m, q = sde["modified_drift"], sde["plain_drift"]
    header = ["η", "ηλ", "ε", "SGD mean norm", "SDE mean, error (± s.e.)", "without modified drift", "SGD spread",
              "SDE spread error", "time to equilibrium SGD / SDE"]
    cells = lambda i: [f"{m['lr'][i]:.3g}", f"{m['eta_lambda'][i]:.3g}", f"{m['eps'][i]:.2f}", f"{m['mean_sgd'][i]:.4f}",
                       f"{_pct(m['mean_rel_err'][i])} % (± {100 * m['mean_diff_se'][i] / m['mean_sgd'][i]:.2f})",
                       f"{_pct(q['mean_rel_err'][i])} %", f"{m['std_sgd'][i]:.4f}", f"{_pct(m['std_rel_err'][i])} %",
                       f"{m['t_eq_sgd'][i]:.2f} / {m['t_eq_sde'][i]:.2f}"]
    return _table(S_BEGIN, S_END, header, ["| " + " | ".join(cells(i)) + " |" for i in range(len(m["lr"]))])


P_BEGIN, P_END = "<!-- path-map table: docs/make_tables.py -->", "<!-- end of path-map table -->"


def path_table() -> str:
    """docs/theory.md §16's path-map table, from the path maps shipped in the package."""
    data = json.loads(VALIDITY.read_text(encoding="utf-8"))
    header = ["map", "optimizer (section)", "η swept", "fixed", "points within 5 % (of measured)",
              "every bin holds up to η", "main job's default"]
    rows = []
    for name, f in data.get("paths", {}).items():
        ups = [b["all_hold_up_to"] for b in f["region"]["by_p"]]
        rows.append(_map_row(name, f, label={"momentum": "β₁", "b2": "β₂", "eta_lambda": "ηλ"}, axis="η",
                             unmeasured="unmeasured (the main job's run has decay)",
                             swept=f"{f['values'][0]:.2g} … {f['values'][-1]:.2g}",
                             holds="—" if any(u is None for u in ups) else f"{min(ups):.2g}"))
    return _table(P_BEGIN, P_END, header, rows)


def render_theory(text: str) -> str:
    for begin, end, render in ((V_BEGIN, V_END, validity_table), (S_BEGIN, S_END, sde_table), (P_BEGIN, P_END, path_table)):
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


# ---------------------------------------------------------------------------------------------
# The real model (docs/real.md, the README's "Real model" section, docs/theory.md §17)
REAL = ROOT / "docs" / "results" / "real"
REAL_EXPERIMENTS = ("real_probe", "real_balance", "real_retrieval", "real_finetune")
REAL_DROP = ("timings", "timings_s", "per_token", "words", "medians_by_zipf_bin_and_depth")


def _light(x, limit: int = 64):
    """``x`` without its long arrays (lists over ``limit`` items): what a summary keeps."""
    if isinstance(x, dict):
        return {k: _light(v, limit) for k, v in x.items() if not (isinstance(v, list) and len(v) > limit)}
    if isinstance(x, list):
        return [_light(v, limit) for v in x]
    return x


def real_summary(results: dict) -> dict:
    """The committed part of a real-model run: its numbers, without per-token arrays, timings or versions."""
    out = {k: v for k, v in results.items() if k not in REAL_DROP + VOLATILE}
    out["config"] = {k: v for k, v in results["config"].items() if k not in ("out", "figures")}
    return _light(out)


def store_real(results_json: Path, name: str | None = None) -> Path:
    """Write the summary of a real-model run's ``results.json`` as ``docs/results/real/<name>.json``
    (``name``: the experiment's, from the folder name when not given)."""
    results_json = Path(results_json)
    name = name or results_json.parent.name
    REAL.mkdir(parents=True, exist_ok=True)
    path = REAL / f"{name}.json"
    summary = real_summary(json.loads(results_json.read_text(encoding="utf-8")))
    path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if name == "real_probe":  # the vocabulary sim compares against it: shipped with the package too
        (ROOT / "normflow" / "_data" / "real_probe.json").write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def _real(name: str) -> dict:
    return json.loads((REAL / f"{name}.json").read_text(encoding="utf-8"))


def _rho(c: dict) -> str:
    lo, hi = c["ci95"]
    return f"{c['rho']:+.3f} [{lo:+.3f}, {hi:+.3f}]".replace("-", "−")


def _f(x: float, fmt: str = "+.3f") -> str:
    return "—" if x is None else format(x, fmt).replace("-", "−")


def probe_table() -> str:
    r = _real("real_probe")
    c, fits = r["correlations"], r["fits"]
    rows = [f"| Spearman ρ (95 % interval), {r['counts']['used']} single-token WordNet nouns | token-row norm "
            f"\\|word[id]\\| | encoding norm (before L2) |", "| --- | --- | --- |"]
    for key, label in (("vs_log_frequency", "vs log word frequency"), ("vs_depth_generic", "vs depth, most generic sense"),
                       ("vs_depth_generic_given_frequency", "… partial, given frequency"),
                       ("vs_depth_first", "vs depth, first sense"),
                       ("vs_depth_first_given_frequency", "… partial, given frequency")):
        rows.append(f"| {label} | {_rho(c['token_norm'][key])} | {_rho(c['encoding_norm'][key])} |")
    for key, label in (("token_norm", "token-row norm"), ("encoding_norm", "encoding norm")):
        bins = [b["rho"] for b in c[key]["vs_depth_by_zipf_bin"] if b["rho"] is not None]
        c[key]["_bins"] = f"{_f(min(bins))} … {_f(max(bins))} ({len(bins)} bins)"
    rows.append(f"| vs depth (first sense) within zipf bins one wide | {c['token_norm']['_bins']} | "
                f"{c['encoding_norm']['_bins']} |")
    t, e = fits["token_norm"], fits["encoding_norm"]
    rows.append(f"| two-branch fit of log norm on log frequency: slopes left / right | {_f(t['slope_left'])} / "
                f"{_f(t['slope_right'])} | {_f(e['slope_left'])} / {_f(e['slope_right'])} |")
    rows.append(f"| … break at word frequency (residual SS saved by the break) | {t['x_break']:.1e} "
                f"({100 * t['rss_gain']:.0f} %) | {e['x_break']:.1e} ({100 * e['rss_gain']:.1f} %) |")
    return "\n".join(rows)


def balance_table() -> str:
    h = _real("real_balance")["headline"]
    c, u, pp = h["balance_current_state"], h["balance_unit_radius"], h["paper"]
    rows = ["| balance fit, log observed norm on log predicted | slope | r | rows |", "| --- | --- | --- | --- |",
            f"| current state, R ∝ (p E\\|g\\|²)^1/2 (§17.2) | {_f(c['slope'])} | {_f(c['r'])} | {c['n']} |",
            f"| unit radius, the paper's form R ∝ (R² p E\\|g\\|²)^1/4 | {_f(u['slope'])} | {_f(u['r'])} | {u['n']} |",
            f"| the paper, MiniLM-L12 (its Fig. 3) | {pp['slope']:.2f} | {pp['r']:.2f} | — |",
            "", "| not scale-invariant (§17.1) | median | largest |", "| --- | --- | --- |",
            f"| radial share of a sighting's gradient energy E(x̂·g)²/W² | {h['radial_share_median']:.1e} | "
            f"{h['radial_share_max']:.1e} |",
            f"| first-order radial push over second-order push \\|2RD\\|/(η pW²/R²) at η = 2e-5 | "
            f"{h['radial_over_push_at_model_card_lr_median']:.2g} | — |"]
    return "\n".join(rows)


def _gain(g: float) -> str:
    return _f(100 * g, "+.1f") + " %"


def retrieval_table() -> str:
    r = _real("real_retrieval")
    v = r["verdict"]["by_direction"]
    dirs = {d["direction"]: d for d in r["directions"]}
    names = list(dirs)
    rows = ["| NDCG@10, WordNet " + f"({r['benchmark']['n_synsets']} synsets, test queries) | " + " | ".join(names) + " |",
            "| --- |" + " --- |" * len(names)]
    rows.append("| queries (test) / documents | " + " | ".join(f"{dirs[n]['n_test']} / {dirs[n]['n_docs']}" for n in names) + " |")
    rows.append("| cosine | " + " | ".join(f"{dirs[n]['overall']['cosine_ndcg']:.3f}" for n in names) + " |")
    rows.append("| best α < 0 of cos·\\|d\\|^α: gain (95 % interval; shuffled-norm null's 95th percentile) | " + " | ".join(
        f"α {_f(v[n]['best_neg']['alpha'], 'g')}: {_gain(v[n]['best_neg']['gain'])} ({_gain(v[n]['best_neg']['gain_ci95'][0])} … "
        f"{_gain(v[n]['best_neg']['gain_ci95'][1])}; null {_gain(v[n]['best_neg']['null_gain_q95'])})" for n in names) + " |")
    rows.append("| verdict (gain: ≥ 2 % and above the null; flat: under 1 %) | " + " | ".join(v[n]["regime"] for n in names) + " |")
    bins = [k for k in v[names[0]]["per_depth"]]
    for b in bins:
        rows.append(f"| … target depth {b}: best α < 0, gain | " + " | ".join(
            f"α {_f(v[n]['per_depth'][b]['neg']['alpha'], 'g')}: {_gain(v[n]['per_depth'][b]['neg']['gain'])}" for n in names) + " |")
    defs = r["baseline_defs"]
    for key in (k for k in defs if k != "cosine"):
        rows.append(f"| {key.replace('_', ' ')}: relative to cosine | " + " | ".join(
            f"{dirs[n]['baselines'][key]['relative']:.3f}" if key in dirs[n]["baselines"] else "—" for n in names) + " |")
    rows.append("| the paper, MiniLM-L12 (its Fig. 4 and 6; BEIR and TREC CAR) | no gain at any α, no depth gradient | — |")
    return "\n".join(rows)


FINETUNE_RUNS = {"real_finetune": "default", "real_finetune_small": "SGD, small step"}


def finetune_table() -> str:
    def fit(f):
        return "—" if f is None else f"{_f(f['r'])} ({_f(f['spearman'])}), {_f(f['slope'], '+.2f')}"

    rows = ["| run | optimizer (η, λ) | validity (§16) | ΔR² measured vs predicted, r (Spearman), slope: the formula | "
            "… with p counted in the run | … and the radial push 2ηR·D | noise ceiling of r | rows never seen: max "
            "\\|R_K/((1−ηλ)^K R_0) − 1\\| | over the words, Spearman with word frequency of ΔR²: measured / predicted | "
            "… of ΔR²/R_0²: measured / predicted |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run, label in FINETUNE_RUNS.items():
        if not (REAL / f"{run}.json").exists():
            continue
        for opt, h in _real(run)["headline"].items():
            inside = {True: "inside", False: "**outside**", None: "none applies"}[h["validity"]["inside"]]
            rows.append(f"| {label} | {opt} ({h['lr']:g}, {h['weight_decay']:g}; {h['section'].replace('docs/theory.md ', '')}) "
                        f"| {inside} | {fit(h['fit'])} | {fit(h['fit_run_p'])} | {fit(h.get('fit_radial'))} | "
                        f"{_f(h.get('r_ceiling'), '.2f')} | {h['unseen_max_rel_error']:.1e} | "
                        f"{_f(h['spearman_change_vs_frequency'])} / {_f(h['spearman_pred_vs_frequency'])} | "
                        f"{_f(h['spearman_relative_change_vs_frequency'])} / {_f(h['spearman_relative_pred_vs_frequency'])} |")
    return "\n".join(rows)


def headline_table() -> str:
    """The README's summary: one row per real-model experiment, the lab's number beside the paper's."""
    pr, ba, re_ = _real("real_probe"), _real("real_balance")["headline"], _real("real_retrieval")["verdict"]["by_direction"]
    c = pr["correlations"]["token_norm"]
    rows = ["| all-MiniLM-L6-v2, measured by the lab | value | the paper (MiniLM-L12 where it measures one) |", "| --- | --- | --- |",
            f"| token-row norm vs word frequency, Spearman ({pr['counts']['used']} WordNet nouns) | "
            f"{_f(c['vs_log_frequency']['rho'])} | frequency is encoded |",
            f"| … vs WordNet depth, partial given frequency (generic / first sense) | "
            f"{_f(c['vs_depth_generic_given_frequency']['rho'])} / {_f(c['vs_depth_first_given_frequency']['rho'])} | "
            "specificity is encoded |",
            f"| balance fit on the token table: slope, r | {_f(ba['balance_unit_radius']['slope'])}, "
            f"{_f(ba['balance_unit_radius']['r'])} | 0.88, 0.97 |"]
    for d, v in re_.items():
        rows.append(f"| retrieval {d}: best gain of cos·\\|d\\|^α, α < 0 | {_gain(v['best_neg']['gain'])} "
                    f"({v['regime']}) | none |")
    for run, label in FINETUNE_RUNS.items():
        if (REAL / f"{run}.json").exists():
            for opt, h in _real(run)["headline"].items():
                best = h.get("fit_radial") or h["fit_run_p"]
                ceil = f" (noise ceiling {h['r_ceiling']:.2f})" if h.get("r_ceiling") is not None else ""
                rows.append(f"| fine-tune, {label}, {opt} η {h['lr']:g} λ {h['weight_decay']:g}: per-row ΔR² against the "
                            f"lab's prediction, r | {_f(best['r'])}{ceil} | not tested |")
    return "\n".join(rows)


REAL_TABLES = {"headline": headline_table, "probe": probe_table, "balance": balance_table, "retrieval": retrieval_table, "finetune": finetune_table}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- real table {name}: docs/make_tables.py -->", f"<!-- end of real table {name} -->"


def _render_marked(text: str, tables: dict, markers) -> str:
    """``text`` with every table it marks (``markers(name)`` = its begin and end comments, any
    number of times) rendered anew."""
    for name, render in tables.items():
        begin, end = markers(name)
        out, pos = [], 0
        while (i := text.find(begin, pos)) >= 0:
            j = text.index(end, i)
            out.append(text[pos:i] + begin + "\n" + render() + "\n")
            pos = j
        out.append(text[pos:])
        text = "".join(out)
    return text


def render_real(text: str) -> str:
    """``text`` with every real-model table it marks (``<!-- real table NAME: … -->`` … ``<!-- end
    of real table NAME -->``) rendered anew."""
    return _render_marked(text, REAL_TABLES, _markers)


# ----------------------------------------------------------------------------- benchmarks
SCALE = ROOT / "docs" / "results" / "benchmarks" / "scale.json"


def _bench_markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmark table {name}: docs/make_tables.py -->", f"<!-- end of benchmark table {name} -->"


def scale_table() -> str:
    """docs/benchmarks.md's scaling table, from ``python benchmarks/run.py --only scale``'s JSON."""
    sc = json.loads(SCALE.read_text(encoding="utf-8"))["details"]["scale"]
    at = {(r["concepts"], r["dim"], r["optimizer"]): r for r in sc["rows"]}
    sizes = sorted({(r["concepts"], r["dim"]) for r in sc["rows"]}, key=lambda nd: (nd[1], nd[0]))
    rows = ["| concepts × dim | sgd dense / sparse | sgdm dense / sparse | adamw dense (of bandwidth) | "
            "adamw dense, `guard=False` | lazy adamw dense / sparse |", "| --- | --- | --- | --- | --- | --- |"]
    for n, d in sizes:
        cell = lambda o: f"{at[(n, d, o)]['dense_us']:,.0f} / **{at[(n, d, o)]['sparse_us']:,.0f}**"  # noqa: E731
        aw = at[(n, d, "adamw")]
        rows.append(f"| {n:,} × {d} | {cell('sgd')} | {cell('sgdm')} | {aw['dense_us']:,.0f} "
                    f"({100 * aw['fraction_of_bandwidth']:.0f} %) | {aw['dense_unguarded_us']:,.0f} "
                    f"({100 * aw['fraction_of_bandwidth_unguarded']:.0f} %) | {cell('lazy_adamw')} |")
    base, top = (1024, 64), tuple(sc["largest"])
    ratio = lambda o, f: at[(*top, o)][f] / at[(*base, o)][f]  # noqa: E731
    # the sparse ratios: both sizes timed in alternation (benchmarks/run.py interleaved_ratio)
    # (the median of the rounds' ratios, and their range)
    def alt(o):
        iv = sc["interleaved"][o]
        return f"**{iv['ratio']:.2f}×** ({iv['ratio_range'][0]:.2f}–{iv['ratio_range'][1]:.2f})"

    rows.append(f"| **{top[0]:,} ÷ {base[0]:,}** | {ratio('sgd', 'dense_us'):.1f}× / {alt('sgd')} | "
                f"{ratio('sgdm', 'dense_us'):.1f}× / {alt('sgdm')} | "
                f"{ratio('adamw', 'dense_us'):.1f}× | {ratio('adamw', 'dense_unguarded_us'):.1f}× | "
                f"{ratio('lazy_adamw', 'dense_us'):.1f}× / {alt('lazy_adamw')} |")
    sw = sc["sweep"]
    runs = ", ".join(f"{r['configs']} configs {r['peak_rss_gib']:.2f} GiB ({r['config_steps_per_s']:,.0f} config-steps/s)"
                     for r in sw["runs"])
    return "\n".join(rows + ["", f"Memory bandwidth measured in the same run: {sc['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s. "
                              f"Sparse lazy-AdamW sweep at 131,072 × 64, peak resident memory: {runs}; fit "
                              f"{sw['gib_fixed']:.2f} GiB + {1024 * sw['gib_per_config']:.0f} MiB per config, so "
                              f"**{sw['configs_in_24_gib']} configs fit in 24 GiB**."])


BENCH_TABLES = {"scale": scale_table}
BENCH_PAGES = ("docs/benchmarks.md",)


def render_bench(text: str) -> str:
    return _render_marked(text, BENCH_TABLES, _bench_markers)


REAL_PAGES = ("README.md", "docs/real.md", "docs/theory.md")


if __name__ == "__main__":
    for arg in sys.argv[1:]:  # results.json files to store first (make figures passes them)
        if Path(arg).parent.name.startswith("real_"):
            store_real(Path(arg))
        else:
            store(Path(arg))
    readme = ROOT / "README.md"
    readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    theory = ROOT / "docs" / "theory.md"
    theory.write_text(render_theory(theory.read_text(encoding="utf-8")), encoding="utf-8")
    for page in REAL_PAGES:
        path = ROOT / page
        path.write_text(render_real(path.read_text(encoding="utf-8")), encoding="utf-8")
    for page in BENCH_PAGES:
        path = ROOT / page
        path.write_text(render_bench(path.read_text(encoding="utf-8")), encoding="utf-8")
