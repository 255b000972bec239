#!/usr/bin/env python
"""The validity map (docs/theory.md §16): for each formula, its relative error over the
dimensionless groups its derivation needs small, measured, drawn and shipped.

    python sims/validity.py                 # 11 maps: 8 axis values x 8 p bins, 3 seeds; the SDE
    python sims/validity.py --quick         # sgd only, 3 values x 5 bins, 1 seed; a small SDE check (tests)
    python sims/validity.py --update-package-data   # also write normflow/_data/validity.json

The path maps, their regions shipped under "paths" (the second: the same, from that run's stored
results, docs/results/validity/paths.json):

    normflow validity --families gd,sgd_imprint,adam --sde-seeds 0 --se-batches 256 --update-package-data
    normflow validity --families gd,sgd_imprint,adam --update-package-data --from-results PATHS_JSON

Each map (``normflow.validity.FAMILIES``) is ONE compiled ``nf.sweep`` over a swept group (ηλ,
1-β₂ or 1-β, log-spaced over two decades) × seeds on a flat Zipf task of 512 concepts whose
frequency per minibatch p spans 0.0086 ... 1 (two more decades), so each run fills a row of an
(axis × p) map. At the end of each run the source statistics are measured
(``nf.source_energy``), ``nf.theory.predict`` gives the norms, and the error is the main job's:
the mean norm of a p bin's concepts, time-averaged over the last 20 % of the run, against the
prediction's, averaged over seeds. The measured 5 % region is stated per p bin (the largest axis
value up to which every point holds) and as one inequality in the combined group (ηλ/p = ε²/2
for the decay axes, (1-β)/p for the memory axes).

Figures ``validity_<map>.png``: the signed error as a heatmap over (axis, p), log axes, the 5 %
and 10 % contours, and the main job's default (its axis value, over its concepts' p) marked.
The path formulas (§4 GD's modified flow, §5 the SGD imprint, §8.3 Adam without decay;
``normflow.validity.PATH_FAMILIES``) need the source statistics along the run, which a sweep does
not record: each of their runs is one ``nf.train`` split where the statistics are measured, the
learning rate is the swept group and the error the largest along the path. ``--update-package-data``
writes a run's maps into the package data (``normflow.validity.package_data``): equilibrium maps
under ``"families"``, path maps under ``"paths"``, the others kept as shipped. ``--from-results``
rebuilds the maps from a stored ``results.json`` instead of measuring them (the same table, figures
and package data as the run that wrote it).

The SDE (``normflow.sde``): SGD that draws its minibatch from a fixed pool against the Itô SDE
with that pool's gradient mean and covariance (``nf.sde_flow``'s model), 32 seeds vmapped, η over
two decades on a small hierarchy: the relative error of the SDE's mean and seed-to-seed spread of
the final norm, and the time to equilibrium, against the angular step ε, with and without the
modified drift; and Diffrax's Euler solve against the ``lax.scan`` Euler–Maruyama on the same
problem (figure ``validity_sde.png``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from normflow import cli

QUICK_FAMILIES = ("sgd",)


def build_parser():
    from normflow.validity import FAMILIES, PATH_FAMILIES

    p = cli.make_parser("validity.py", "The validity map: each equilibrium formula's error over its small groups "
                                       "(docs/theory.md §16).")
    p.add_argument("--families", type=str, default=None,
                   help=f"comma-separated maps of {','.join(FAMILIES)} (default: all of these; --quick: "
                        f"{','.join(QUICK_FAMILIES)}), or the path formulas' {','.join(PATH_FAMILIES)}")
    p.add_argument("--values", type=int, default=None, help="axis values per map, log-spaced (default 8; --quick: 3)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per axis value (default 3; --quick: 1)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per run (default: the main job's, 6000, or 20000 for the Adam family and "
                        "Lion; --quick: 1500)")
    p.add_argument("--bins", type=int, default=None, help="log-spaced p bins (default 8; --quick: 5)")
    p.add_argument("--concepts", type=int, default=None, help="concepts of the Zipf task (default 512; --quick: 256)")
    p.add_argument("--se-batches", type=int, default=None,
                   help="minibatches for the source statistics at the end of each run (default 2048; --quick: 256)")
    p.add_argument("--sde-seeds", type=int, default=None,
                   help="seeds of the SDE-against-SGD comparison (default 32; --quick: 4; 0 skips it)")
    p.add_argument("--update-package-data", action="store_true",
                   help="write the measured regions to normflow/_data/validity.json (the data normflow.validity.check reads; "
                        "the maps not in this run are kept)")
    p.add_argument("--from-results", type=str, default=None,
                   help="a stored results.json of this sim (e.g. docs/results/validity/paths.json): rebuild its maps of "
                        "--families from it instead of measuring them (its SDE comparison, if any, is not rerun)")
    return p


QUICK = {"values": 3, "seeds": 1, "steps": 1500, "bins": 5, "concepts": 256, "se_batches": 256, "sde_seeds": 4}
FULL = {"values": 8, "seeds": 3, "steps": None, "bins": 8, "concepts": 512, "se_batches": 2048, "sde_seeds": 32}
# The SDE comparison (normflow.sde.compare_sde_sgd): a small hierarchy, pool SGD against the SDE on the
# same pool, λ = 0.5 (relaxation time 1/(4λ) = 0.5), to t = 8; η over two decades (--quick: two η)
SDE: dict[str, Any] = dict(lrs=(0.004, 0.4), num_lrs=6, weight_decay=0.5, t1=8.0, batch_size=32, pool=16, substeps=2,
                           num_saves=81)
SDE_QUICK: dict[str, Any] = dict(lrs=(0.4,), t1=2.0)  # --quick: one η, a short run, one variant, no Diffrax timing


def resolve(args):
    from normflow.validity import FAMILIES, PATH_FAMILIES

    args.families = cli.name_list(args.families, list(FAMILIES) + list(PATH_FAMILIES), flag="--families", what="map",
                                  default=QUICK_FAMILIES if args.quick else FAMILIES)
    cli.check_flags(args, values=cli.at_least(2), seeds=cli.at_least(1), steps=cli.at_least(50), bins=cli.at_least(2),
                    concepts=cli.at_least(16), se_batches=cli.at_least(2), sde_seeds=cli.at_least(0))
    if args.sde_seeds == 1:
        raise cli.UsageError("--sde-seeds: a spread needs >= 2 seeds (or 0 to skip), got 1")
    if args.update_package_data and args.quick:
        raise cli.UsageError("--update-package-data: the package's regions come from a full run, not --quick")


# the flags that shape a map: recorded with the maps in the package data (normflow.validity.package_data)
RUN_FLAGS = ("seed", "x64", "families", "values", "seeds", "steps", "bins", "concepts", "se_batches", "sde_seeds")


def stored_results(path: str, families) -> dict:
    """The stored ``results.json`` that ``--from-results`` names, checked to hold every map of
    ``families`` (a usage error otherwise)."""
    import json
    from pathlib import Path

    try:
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise cli.UsageError(f"--from-results: cannot read {path!r} ({e})") from None
    missing = [n for n in families if n not in stored.get("maps", {})]
    if missing:
        raise cli.UsageError(f"--from-results: {path!r} holds no map {','.join(missing)} "
                             f"(it holds {','.join(stored.get('maps', {})) or 'none'})")
    return stored


def map_entry(fmap, default) -> dict:
    """A measured map as ``results.json`` and the package data hold it: :func:`normflow.validity.to_json`
    and the verdict of ``normflow.validity.check`` on the main job's default (``default``: its
    entry of :func:`main_job_points`) read from this map alone.

    **Arguments:**

    - ``fmap``: a :class:`normflow.validity.FamilyMap`.
    - ``default``: the main job's point for the map's optimizer.

    **Returns:** the map's JSON dict, with ``"main_job_default"``.
    """
    import normflow as nf
    from normflow import validity as va

    fam = fmap.family
    js = va.to_json(fmap)
    lr, wd = nf.defaults.DEFAULTS[fam.optimizer]
    chk = va.check(fam.optimizer, lr=lr, weight_decay=wd, p=default["p"], b2=0.99 if fam.optimizer == "lion" else 0.999,
                   regions={"families": {fam.name: js}})
    js["main_job_default"] = {"axis_value": float(default[fam.axis]), "inside": chk.inside, "check": chk.detail}
    return js


def main_job_points():
    """The main job's defaults per optimizer: the axis value of each map and its concepts' p."""
    import jax
    import jax.numpy as jnp

    import normflow as nf
    from normflow.defaults import DEFAULTS

    task = nf.HierarchicalTask(depth=3, branching=4, dim=32, key=jax.random.key(0), dtype=jnp.float32)
    p = np.asarray(task.frequency(64), float)
    out = {}
    for name, (lr, wd) in DEFAULTS.items():
        out[name] = {"lr": lr, "eta_lambda": lr * wd, "one_minus_b2": 1 - (0.99 if name == "lion" else 0.999),
                     "one_minus_momentum": 0.1, "p": p}
    return out


def plot(fmap, default, path_fig, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from normflow.validity import AXIS_LABEL, HOLDS

    f = fmap.family
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ve = np.log(fmap.values)
    xe = np.exp(np.concatenate([[ve[0] - (ve[1] - ve[0]) / 2], (ve[1:] + ve[:-1]) / 2, [ve[-1] + (ve[-1] - ve[-2]) / 2]]))
    err = 100 * fmap.error.T  # [bins, values]
    lim = 30.0
    mesh = ax.pcolormesh(xe, fmap.edges, np.clip(err, -lim, lim), cmap="RdBu_r", norm=TwoSlopeNorm(0, -lim, lim),
                         shading="flat")
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label("error of the mean norm, measured / formula - 1 (%)")
    X, Y = np.meshgrid(fmap.values, fmap.p)
    a = np.ma.masked_invalid(np.abs(err))  # blank points (no surviving seed) draw no contour
    if a.count() and a.min() < 100 * HOLDS < a.max():
        cs = ax.contour(X, Y, a, levels=[100 * HOLDS, 10.0], colors=["k", "k"], linestyles=["-", "--"], linewidths=1.4)
        ax.clabel(cs, fmt={100 * HOLDS: "5 %", 10.0: "10 %"}, fontsize=8)
    some = False
    for i, v in enumerate(fmap.values):
        if np.isnan(fmap.error[i]).all():
            ax.text(v, np.sqrt(fmap.p[0] * fmap.p[-1]), "every run diverged", rotation=90, ha="center", va="center",
                    fontsize=7)
        elif fmap.diverged[i]:
            some = True
            ax.text(v, fmap.edges[-1] * 0.97, "†", ha="center", va="top", fontsize=11)
    if default is not None:
        dv = default[f.axis]
        ax.plot([dv], [np.median(default["p"])], "*", color="gold", ms=14, mec="k", label="main job's default")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(AXIS_LABEL[f.axis])
    ax.set_ylabel("p: frequency of the concept per minibatch")
    ax.set_title(f"{f.name}: {f.optimizer}, docs/theory.md {f.section} — solid 5 %, dashed 10 % contour"
                 + ("\n† some seeds diverged at this value: the errors are over the others" if some else ""), fontsize=9)
    fig.tight_layout()
    out.savefig(fig, path_fig.stem)
    plt.close(fig)


def run_sde(args) -> dict:
    """SGD against its SDE (docs/theory.md §16): mean and spread of the final norm over seeds, the
    time to equilibrium, per η; and Diffrax's solve against the lax.scan Euler–Maruyama."""
    import jax
    import jax.numpy as jnp

    import normflow as nf
    from normflow import sde as nsde
    from normflow import validity as va

    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(args.seed),
                               dtype=jnp.float64 if args.x64 else jnp.float32)
    lrs = SDE_QUICK["lrs"] if args.quick else np.geomspace(*SDE["lrs"], SDE["num_lrs"])
    kw = {k: SDE[k] for k in ("weight_decay", "t1", "batch_size", "pool", "substeps", "num_saves")}
    if args.quick:
        kw["t1"] = SDE_QUICK["t1"]
    out: dict[str, Any] = {"config": {**kw, "lrs": list(map(float, lrs)), "seeds": args.sde_seeds,
                                      "task": "HierarchicalTask(depth=2, branching=3, dim=8)"}}
    variants = (("modified_drift", True),) if args.quick else (("modified_drift", True), ("plain_drift", False))
    for variant, mod in variants:
        c = nsde.compare_sde_sgd(task, lrs, seeds=args.sde_seeds, modified_drift=mod, key=jax.random.key(args.seed + 1),
                                 **kw)
        res: dict[str, Any] = {f: np.asarray(getattr(c, f)) for f in c._fields
                               if f not in ("times", "path_sgd", "path_sde")}
        res["paths"] = {"times": c.times, "sgd": c.path_sgd, "sde": c.path_sde}
        res["mean_holds_up_to_eps"] = va.all_hold_up_to(c.eps, np.abs(c.mean_rel_err) <= 0.05)
        res["spread_holds_up_to_eps"] = va.all_hold_up_to(c.eps, np.abs(c.std_rel_err) <= 0.05)
        out[variant] = res
    m = out["modified_drift"]
    print(f"sde vs pool SGD ({args.sde_seeds} seeds): η {', '.join(f'{x:.3g}' for x in m['lr'])}")
    print(f"  ε {', '.join(f'{x:.2f}' for x in m['eps'])}")
    for variant, _ in variants:
        v = out[variant]
        print(f"  {variant:>14}: mean {', '.join(f'{100 * x:+.1f}%' for x in v['mean_rel_err'])}; "
              f"spread {', '.join(f'{100 * x:+.0f}%' for x in v['std_rel_err'])}")
    out["diffrax_vs_scan"] = None
    if not args.quick:
        tm = nsde.time_diffrax_vs_scan(task, 0.05, 5.0, key=jax.random.key(args.seed + 2),
                                       weight_decay=SDE["weight_decay"], batch_size=SDE["batch_size"], pool=SDE["pool"],
                                       seeds=8)
        out["diffrax_vs_scan"] = tm._asdict()
        print(f"  Diffrax solve {tm.diffrax_s * 1e3:.1f} ms, lax.scan EM {tm.scan_s * 1e3:.1f} ms (same dt {tm.dt:g}, "
              f"{tm.steps} steps); final mean norm differs by {100 * tm.rel_diff:+.1f}% ± {100 * tm.diff_se:.1f}%")
    return out


def plot_sde(sde, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, color in (("modified_drift", "C0"), ("plain_drift", "C1")):
        if variant not in sde:
            continue
        v = sde[variant]
        a1.errorbar(v["eps"], 100 * np.asarray(v["mean_rel_err"]), yerr=200 * np.asarray(v["mean_diff_se"]) /
                    np.asarray(v["mean_sgd"]), fmt="o-", color=color, capsize=3, label=variant.replace("_", " "))
        a2.errorbar(v["eps"], 100 * np.asarray(v["std_rel_err"]), yerr=200 * np.asarray(v["std_rel_err_se"]), fmt="o-",
                    color=color, capsize=3, label=variant.replace("_", " "))
    for ax, what in ((a1, "mean of the final norm over seeds"), (a2, "seed-to-seed spread (std) of the final norm")):
        ax.axhspan(-5, 5, color="0.9", zorder=0, label="±5 %")
        ax.axhline(0, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("ε: angular step per sighting at SGD's end state (rad)")
        ax.set_ylabel(f"SDE / pool SGD - 1 (%)\n{what}")
        ax.legend(fontsize=7)
    a1.set_title("SDE against SGD: the mean (error bars: 2 standard errors)", fontsize=9)
    a2.set_title("SDE against SGD: the spread across seeds", fontsize=9)
    fig.tight_layout()
    out.savefig(fig, "validity_sde")
    plt.close(fig)


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="validity", sizes=(QUICK, FULL))
    resolve(args)
    out = cli.Output(args, "validity_" + args.families[0])
    from normflow.validity import TASK

    out.add_config(task={k: v for k, v in TASK.items() if k != "num_concepts"}, window=0.2, holds=0.05)

    import jax

    from normflow import validity as va

    cli.cpu_setup()  # one CPU device per core (each map's sweep spreads over them)
    t_start = time.time()
    k_task, k_se = jax.random.split(jax.random.key(args.seed))
    dtype = jax.numpy.float64 if args.x64 else None
    tasks = {}
    defaults = main_job_points()
    stored = stored_results(args.from_results, args.families) if args.from_results else None
    maps, timings = {}, {}
    print(f"{'map':>10} {'optimizer':>8} {'axis':>18} {'range':>15} {'holding':>9} {'group max':>10} "
          f"{'main job':>9}  seed spread where it holds")
    for name in args.families:
        fam = {**va.FAMILIES, **va.PATH_FAMILIES}[name]
        t0 = time.time()
        if stored is not None:
            fmap = va.from_json(stored["maps"][name])
        else:
            size = (fam.concepts if fam.concepts and not args.quick else args.concepts, fam.zipf_exponent)
            if size not in tasks:
                tasks[size] = va.make_task(k_task, size[0], dtype=dtype, zipf_exponent=size[1])
            task = tasks[size]
            fmap = va.measure_family(fam, task, num_values=args.values,
                                     seeds=list(range(args.seed, args.seed + args.seeds)), steps=args.steps,
                                     bins=args.bins, se_batches=args.se_batches, key=k_se)
        timings[name] = time.time() - t0
        dflt = defaults[fam.optimizer]
        js = map_entry(fmap, dflt)
        maps[name] = js
        reg = js["region"]
        held = np.abs(fmap.error) <= va.HOLDS
        spread = float(np.nanmax(fmap.seed_spread[held])) if held.any() else float("nan")
        gm = reg["group_max"]
        print(f"{name:>10} {fam.optimizer:>8} {fam.axis:>18} {fam.lo:>7.0e}-{fam.hi:<7.0e} "
              f"{reg['points_holding']:>4}/{reg['points']:<4} {'-' if gm is None else f'{gm:.2g}':>10} "
              f"{str(js['main_job_default']['inside']):>9}  {100 * spread:.1f}%")
        if fmap.blowups:
            b = fmap.blowups[0]
            print(f"{'':>10} {len(fmap.blowups)} of {len(fmap.diverged) * fmap.seeds} runs diverged (NaN/Inf); first: "
                  f"{fam.axis}={b['axis_value']:.3g}, seed {b['seed']}, step {b['step']}, concept {b['concept']} "
                  f"(p = {b['p']:.3g})")
        plot(fmap, dflt, out.figure.parent / f"validity_{name}.png", out)
    sde = None if stored is None else stored.get("sde")  # a stored run's SDE comparison is not rerun
    if args.sde_seeds and stored is None:
        t0 = time.time()
        sde = run_sde(args)
        timings["sde"] = time.time() - t0
        plot_sde(sde, out)
    results = {"maps": maps, "sde": sde, "timings_s": timings,
               "note": "error = mean norm of a p bin's concepts over the last 20 % of the run / the formula's - 1, "
                       "seed-averaged; region: |error| <= 5 %"}
    if args.update_package_data:
        from importlib import resources
        from pathlib import Path

        run_cfg = stored["config"] if stored is not None else vars(args)  # the flags of the run that measured them
        data = va.package_data(va.load_regions(), maps, sde, run={k: run_cfg.get(k) for k in RUN_FLAGS})
        cli.atomic_write_json(Path(str(resources.files("normflow").joinpath("_data/validity.json"))), data)
    path = out.write(results)
    cli.print_written(path, out.figure.parent / "validity_*.png", timings, t_start)


if __name__ == "__main__":
    cli.script(main)
