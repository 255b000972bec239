#!/usr/bin/env python
"""Which optimizers imprint specificity in the norm, and in which direction: every optimizer of
``nf.OPTIMIZERS`` on a concept hierarchy (specificity = depth) and on a flat task with a
continuous spread (specificity = -spread), one table.

    python sims/specificity.py                      # every optimizer, both tasks
    python sims/specificity.py --quick              # sgd and adamw only, short runs (tests)
    python sims/specificity.py --optimizers sgd,sgdm,adamw

Each optimizer runs at its default (lr, λ) from ``normflow.defaults`` (docs/theory.md §11's regime), on
each task, for several seeds at once (one ``nf.sweep``: a vmap over seeds). The norm of a
concept is its time average over the last ``--window`` of the run. Reported per optimizer and
task: the generic/specific norm ratio (hierarchy: depth 0 over the deepest level; flat: the
most spread quarter over the least spread quarter) and Spearman's ρ between norm and
specificity (negative = generic concepts have the larger norms, the direction docs/theory.md §5-§7
predict for SGD: the norm reads out the source energy pW², larger for spread-out contexts).
Beside the measurement, the same ratio from the theory's norms: ``nf.theory.predict`` (docs/theory.md
§15) for each optimizer, fed the source statistics measured at the end of the run (none for gd, whose
imprint is path-dependent, docs/theory.md §4).
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

DIRECTION_THRESHOLD = 0.3  # |ρ| below this: "no clear imprint"
QUICK_OPTIMIZERS = ("sgd", "adamw")


def _b2(name, args):
    return 0.99 if name == "lion" else args.b2  # Lion's published β₂


def _prediction(name, args, task, steps, steps_arr, r0, se, c):
    """docs/theory.md §15's prediction for seed ``c``, from the source statistics measured at the end."""
    import normflow as nf
    from normflow.defaults import DEFAULTS

    lr, wd = DEFAULTS[name]
    f = lambda a: np.asarray(a, np.float64)[c][None]
    return nf.theory.predict(name, nf.theory.Context(steps=steps_arr, r0=np.asarray(r0, np.float64), stat_steps=np.array([steps]),
                             p=f(se.p), pw2=f(se.pw2), mean_sq=f(se.mean_sq), var=f(se.var), dim=task.dim,
                             lr=lr, weight_decay=wd, total_steps=steps, momentum=args.momentum, b1=args.momentum,
                             b2=_b2(name, args)))


def build_parser():
    from normflow import OPTIMIZERS

    p = cli.make_parser("specificity.py", "Generic/specific norm ratio and Spearman ρ(norm, specificity) for every "
                                          "optimizer, on a hierarchy and on a flat task with continuous spread.")
    cli.add_task_args(p, dim=32, depth=3, branching=4)
    p.add_argument("--optimizers", type=str, default=None,
                   help=f"comma-separated subset of {','.join(OPTIMIZERS)} (default: all; --quick: "
                        f"{','.join(QUICK_OPTIMIZERS)})")
    p.add_argument("--flat-concepts", type=int, default=64, help="concepts of the flat task")
    p.add_argument("--spread-range", type=float, nargs=2, default=(0.1, 2.0), metavar=("LO", "HI"),
                   help="flat task: per-concept spread scale drawn uniformly from [LO, HI]")
    p.add_argument("--steps", type=int, default=4000,
                   help="training steps per run for gd and the SGD family (--quick: 1000)")
    p.add_argument("--adam-steps", type=int, default=16000,
                   help="training steps per run for the Adam family (--quick: 2000): AdamW's norms equilibrate "
                        "over ~10⁴ steps at the default η, λ, and its generic/specific ratio decays meanwhile")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--seeds", type=int, default=2, help="seeds per optimizer and task, vmapped (--quick: 1)")
    p.add_argument("--momentum", type=float, default=0.9, help="heavy-ball β / Adam β1")
    p.add_argument("--b2", type=float, default=0.999, help="Adam β2")
    cli.add_measure_args(p, window=0.25, se_batches=(256, 64))
    return p


def resolve(args):
    from normflow import OPTIMIZERS

    if args.quick:
        args.steps = min(args.steps, 1000)
        args.adam_steps = min(args.adam_steps, 2000)
        args.seeds = min(args.seeds, 1)
    args.optimizers = cli.name_list(args.optimizers, list(OPTIMIZERS), flag="--optimizers", what="optimizer",
                                    default=QUICK_OPTIMIZERS if args.quick else OPTIMIZERS)
    cli.resolve_quick(args, se_batches=(256, 64))
    lo, hi = args.spread_range
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise cli.UsageError(f"--spread-range: need 0 <= LO < HI, got {lo:g} {hi:g}")
    args.spread_range = [lo, hi]
    cli.check_flags(args, flat_concepts=cli.Rule(lambda v: v >= 8, "must be >= 8 (quartiles)"),
                    depth=cli.Rule(lambda v: v >= 2, "must be >= 2 (a generic and a specific level)"),
                    seeds=cli.at_least(1), momentum=cli.FRACTION, b2=cli.FRACTION,
                    window=cli.Rule(lambda v: 0 < v <= 1, "must be in (0, 1]"), se_batches=cli.at_least(2),
                    steps=cli.at_least(1), adam_steps=cli.at_least(1))
    for flag, n in (("--steps", args.steps), ("--adam-steps", args.adam_steps)):
        if int(n * args.window) < 2:
            raise cli.UsageError(f"{flag} {n} is too short for --window {args.window}")


def groups(task_name, task):
    """(specificity per concept, generic mask, specific mask, labels) for a task."""
    if task_name == "hierarchy":
        d = np.asarray(task.depth)
        return d.astype(float), d == d.min(), d == d.max(), [f"depth {int(l)}" for l in sorted(set(d.tolist()))]
    spread = np.asarray(task.spread, np.float64)
    q1, q3 = np.quantile(spread, [0.25, 0.75])
    return -spread, spread >= q3, spread <= q1, None


def measure(norm, spec, gen, sp):
    """generic/specific ratio and Spearman ρ(norm, specificity) for one [N] norm vector."""
    from normflow import stats

    return float(norm[gen].mean() / norm[sp].mean()), stats.spearman(norm, spec)


def direction(rho):
    if not np.isfinite(rho) or abs(rho) < DIRECTION_THRESHOLD:
        return "none"
    return "generic larger" if rho < 0 else "specific larger"


def _relative_panel(ax, x, group, curves, task_name, names, colors, *, xlabel, ylabel, title):
    """Per group of concepts (level or spread bin, ``group`` per concept, one group per ``x``),
    the mean norm over the mean norm of all concepts: measured solid, the SGD family's theory
    dashed."""
    for c, name in zip(colors, names):
        n, th = curves[(name, task_name)]
        ax.plot(x, [n[group == i].mean() / n.mean() for i in range(len(x))], "o-", color=c, lw=2, label=name)
        if th is not None and name in ("sgd", "sgdm", "sgdmw", "sgdp", "sgd_l2"):
            ax.plot(x, [th[group == i].mean() / th.mean() for i in range(len(x))], "--", color=c, lw=1.2)
    ax.axhline(1.0, color="gray", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} / mean norm of all concepts")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, ncol=2)


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="specificity")
    resolve(args)
    out = cli.Output(args, "specificity")

    
    import jax
    import jax.numpy as jnp

    import normflow as nf
    from normflow import stats
    from normflow.defaults import DEFAULTS

    cli.cpu_setup()  # one CPU device per core (sweeps spread over them); unrolled Threefry
    out.add_config(loss="info_nce", eps=1e-8, n_full=256, defaults={n: DEFAULTS[n] for n in args.optimizers},
                   flat_context_noise=0.3, direction_threshold=DIRECTION_THRESHOLD)

    t_start = time.time()
    dtype = jnp.float64 if args.x64 else jnp.float32
    key = jax.random.key(args.seed)
    k_hier, k_flat, k_se = jax.random.split(key, 3)
    tasks = {
        "hierarchy": nf.HierarchicalTask(depth=args.depth, branching=args.branching, dim=args.dim, key=k_hier,
                                         dtype=dtype),
        "flat": nf.FlatTask(args.flat_concepts, args.dim, key=k_flat, spread_range=tuple(args.spread_range),
                            context_noise=0.3, dtype=dtype),
    }
    seeds = np.arange(args.seeds) + args.seed * 1000
    rows, curves, timings = [], {}, {}
    for name in args.optimizers:
        lr, wd = DEFAULTS[name]
        steps = args.adam_steps if name.startswith("adam") else args.steps
        w0 = int(round(steps * (1 - args.window)))
        s = np.unique(np.concatenate([nf.log_steps(steps, 32), np.linspace(w0, steps, 24).round().astype(int)]))
        row = {"optimizer": name, "lr": lr, "weight_decay": wd, "steps": steps, "window_start_step": w0}
        for tname, task in tasks.items():
            t0 = time.time()
            run = nf.sweep(task, name, lr=lr, weight_decay=wd, momentum=args.momentum, b1=args.momentum, b2=_b2(name, args),
                           seeds=seeds, steps=steps, batch_size=args.batch_size, save_steps=s, n_full=256)
            cli.stop_if_sweep_diverged(run, out, name=name, task=tname, table=rows,
                                       labels=[f"lr={lr:g}, weight_decay={wd:g}, {tname} task, seed {int(q)}" for q in seeds])
            steps_arr = np.asarray(run.steps[0])
            rec = np.asarray(run.norms, np.float64)
            norms = rec[:, steps_arr >= w0].mean(axis=1)  # [seeds, N]
            mid = (w0 + steps) / 2
            halves = [rec[:, (steps_arr >= w0) & (steps_arr < mid)].mean(axis=1), rec[:, steps_arr >= mid].mean(axis=1)]
            se = jax.vmap(lambda m: nf.source_energy(m, task, key=k_se, batch_size=args.batch_size,
                                                     num_batches=args.se_batches))(run.model)
            spec, gen, sp, _ = groups(tname, task)
            meas = [measure(n, spec, gen, sp) for n in norms]
            ratio, rho = np.array([m[0] for m in meas]), np.array([m[1] for m in meas])
            # the theory's norms (docs/theory.md §15), from the source statistics measured at the end
            preds = [] if name == "gd" else [_prediction(name, args, task, steps, steps_arr, rec[c, 0], se, c)
                                             for c in range(len(seeds))]
            th = np.stack([np.asarray(q.norms, np.float64)[steps_arr >= w0].mean(axis=0) for q in preds]) if preds else None
            if th is not None:
                row["theory"] = f"{preds[0].formula} ({preds[0].section})"
                th_ratio = float(np.mean([t[gen].mean() / t[sp].mean() for t in th]))
                th_rho = float(np.mean([stats.spearman(t, spec) for t in th]))
            else:
                row["theory"] = "GD's imprint is path-dependent (docs/theory.md §4); see sims/ode_vs_adam.py"
                th_ratio, th_rho = None, None
            std = (lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else None)
            # inside the measured 5 % region of its formula (docs/theory.md §16)?
            valid = nf.validity.check(name, lr=lr, weight_decay=wd, p=np.asarray(task.frequency(args.batch_size)),
                                      momentum=args.momentum, b2=_b2(name, args))
            if valid.inside is False:
                print(f"{tname} task: {valid.message}")
            row[tname] = {
                "validity": nf.validity.check_json(valid),
                "ratio": float(ratio.mean()), "ratio_std": std(ratio), "spearman": float(rho.mean()),
                "spearman_std": std(rho), "ratio_theory": th_ratio, "spearman_theory": th_rho,
                "direction": direction(float(rho.mean())), "mean_norm": float(norms.mean()),
                "per_seed": {"ratio": ratio, "spearman": rho},
                # still drifting inside the window? (ratio over its first and second half)
                "ratio_window_halves": [float(np.mean([measure(n, spec, gen, sp)[0] for n in h])) for h in halves],
            }
            curves[(name, tname)] = (norms.mean(0), None if th is None else th.mean(0))
            timings[f"{name}/{tname}"] = time.time() - t0
        rows.append(row)

    # With three tied depth levels, |ρ(norm, depth)| cannot reach 1: its largest value is ρ between
    # depth and any ordering of the concepts by depth.
    d_h = np.asarray(tasks["hierarchy"].depth)
    rho_bound = stats.spearman(d_h, np.argsort(np.argsort(d_h, kind="stable")))

    # Print the table.
    print(f"tasks: hierarchy {tasks['hierarchy'].num_concepts} concepts (depth {args.depth}, branching "
          f"{args.branching}); flat {args.flat_concepts} concepts, spread scale {args.spread_range}; dim {args.dim}, "
          f"batch {args.batch_size}, {args.steps} steps ({args.adam_steps} for the Adam family), {args.seeds} seed(s), "
          f"norm = mean over last "
          f"{100 * args.window:.0f}%")
    print("ratio = generic/specific mean norm; ρ = Spearman(norm, specificity), < 0: generic concepts larger; "
          f"|hier ρ| <= {rho_bound:.3f} (tied depth levels)")
    hdr = f"{'optimizer':>9} {'lr':>6} {'λ':>6} | {'hier ratio':>10} {'(theory)':>8} {'hier ρ':>7} | " \
          f"{'flat ratio':>10} {'(theory)':>8} {'flat ρ':>7} | {'steps':>6} {'hier ratio by window half':>25} | direction"
    print(hdr)
    fmt = lambda v: "    —" if v is None else f"{v:8.3f}"
    for r in rows:
        h, f = r["hierarchy"], r["flat"]
        dirs = {h["direction"], f["direction"]}
        print(f"{r['optimizer']:>9} {r['lr']:>6g} {r['weight_decay']:>6g} | {h['ratio']:>10.3f} {fmt(h['ratio_theory'])} "
              f"{h['spearman']:>+7.2f} | {f['ratio']:>10.3f} {fmt(f['ratio_theory'])} {f['spearman']:>+7.2f} | "
              f"{r['steps']:>6} {h['ratio_window_halves'][0]:>12.3f} → {h['ratio_window_halves'][1]:.3f} | "
              f"{' / '.join(sorted(dirs))}")

    _figure(out, args, tasks, curves, rows)
    hier = tasks["hierarchy"]
    depth = np.asarray(hier.depth)

    body = {
        "definitions": {
            "ratio": "hierarchy: mean norm of depth 0 / mean norm of the deepest level; flat: mean norm of the most "
                     "spread quarter / the least spread quarter (norm = time average over the window)",
            "spearman": "Spearman ρ(norm, specificity), specificity = depth (hierarchy) or -spread (flat); "
                        "negative = generic concepts have larger norms",
            "direction": f"'generic larger' if mean ρ < -{DIRECTION_THRESHOLD}, 'specific larger' if > "
                         f"{DIRECTION_THRESHOLD}, else 'none'",
            "theory": "SGD family: ratio of (pW²)^(1/4) with pW² measured at the end of the run; Adam family: 1",
        },
        "tasks": {"hierarchy": {"num_concepts": hier.num_concepts, "concept_depth": depth,
                                "spearman_bound": rho_bound},
                  "flat": {"num_concepts": tasks["flat"].num_concepts,
                           "spread": np.asarray(tasks["flat"].spread, np.float64)}},
        "table": rows,
        "per_concept_mean_norm": {f"{n}/{t}": v[0] for (n, t), v in curves.items()},
    }
    path = out.write(body)
    cli.print_written(path, out.figure, timings, t_start)



def _figure(out, args, tasks, curves, rows):
    """Norm per level (hierarchy), per spread bin (flat task), and Spearman ρ per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    cmap = plt.cm.tab10(np.arange(len(args.optimizers)) % 10)
    hier = tasks["hierarchy"]
    depth = np.asarray(hier.depth)
    levels = sorted(set(depth.tolist()))
    _relative_panel(axes[0], levels, depth, curves, "hierarchy", args.optimizers, cmap,
                    xlabel="depth in the hierarchy (0 = most generic)", ylabel="mean norm per level",
                    title="hierarchy (dashed: theory (pW²)^¼ for the SGD family; gray dashed line at 1: "
                          "Adam-family theory)")
    axes[0].set_xticks(levels)
    flat = tasks["flat"]
    spread = np.asarray(flat.spread, np.float64)
    edges = np.quantile(spread, np.linspace(0, 1, 7))
    b = np.clip(np.searchsorted(edges, spread, side="right") - 1, 0, 5)
    _relative_panel(axes[1], [spread[b == i].mean() for i in range(6)], b, curves, "flat", args.optimizers, cmap,
                    xlabel="context spread 1-|mean leaf dir.|² (sextile bins; larger = more generic)",
                    ylabel="mean norm per bin", title="flat task, continuous spread (dashed: theory for the SGD family)")
    ax = axes[2]
    xs = np.arange(len(rows))
    for off, tname, col in ((-0.2, "hierarchy", "tab:blue"), (0.2, "flat", "tab:orange")):
        vals = [r[tname]["spearman"] for r in rows]
        errs = [r[tname]["spearman_std"] or 0.0 for r in rows]
        ax.bar(xs + off, vals, 0.4, yerr=errs, color=col, label=f"{tname}: measured ρ")
        th = [r[tname]["spearman_theory"] for r in rows]
        ax.scatter(xs + off, [np.nan if t is None else t for t in th], marker="_", s=250, color="k", zorder=3,
                   label="theory ρ (pW²)^¼ or 0" if tname == "hierarchy" else None)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["optimizer"] for r in rows], rotation=45)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman ρ(norm, specificity)")
    ax.set_title("ρ < 0: generic concepts have the larger norms (bars: mean ± sd over seeds)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.savefig(fig)


if __name__ == "__main__":
    cli.script(main)
