#!/usr/bin/env python
"""Paper Fig. 2 on a task whose truth is known: sweep the weight decay λ, read the equilibrium
norm, and test docs/theory.md §6's fourth-root law R⁴ = ηpV²/(λ(2-ηλ)) under SGD+decay and AdamW.

    python sims/lambda_sweep.py            # 6 λ per optimizer; 12k SGD steps, 24k AdamW steps
    python sims/lambda_sweep.py --quick    # 3 λ; 1.5k SGD steps, 3k AdamW steps (tests)

One hierarchical task, one initialisation and one minibatch stream (common random numbers);
for each optimizer the whole λ grid is ONE compiled ``nf.sweep`` (a ``vmap`` over λ). At the
end of each run the source statistics are measured at the final model (``nf.source_energy``,
vmapped over λ): p (exact, from the task), V² and W² = |s̄|² + V² per concept. The
equilibrium norm is the time average over the last ``--window`` of the run.

Left panel: mean equilibrium norm against λ (measured solid, theory dashed). Middle/right:
per concept and λ, R⁴ against ηpV²/λ in log-log, with the fitted slope and Pearson r.
docs/theory.md §6 predicts slope 1 under SGD+decay (R⁴ ≈ ηpV²/(2λ)); under AdamW docs/theory.md §8 predicts
R² = ηd/(2λ) whatever V², so the relation collapses: within one λ the slope is 0.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

SGD_LR, ADAMW_LR = 0.5, 1e-2
# λ ranges: ηλ from 1.5e-4 to 1.5e-2 (SGD) and 3e-4 to 3e-2 (AdamW), so that the slowest run
# spans >= 4 nominal relaxation times (1/(4ηλ) steps for SGD's R⁴, 1/(2ηλ) for AdamW's R², run
# twice as long because AdamW relaxes more slowly than that) before the averaging window, and
# the fastest keeps the angular step (SGD: sqrt(2ηλ/p); AdamW: sqrt(2ηλ)) below ~0.25 (docs/theory.md §11).
SGD_LAMBDAS, ADAMW_LAMBDAS = (3e-4, 3e-2), (3e-2, 3.0)
QUICK = dict(steps=1500, adamw_steps=3000, num_lambdas=3, sgd_lambdas=(4e-3, 4e-2), adamw_lambdas=(0.2, 2.0), se_batches=128)


def build_parser():
    p = cli.make_parser("lambda_sweep.py", "Paper Fig. 2: equilibrium norm against weight decay λ, "
                                           "SGD+decay (docs/theory.md §6) vs AdamW (docs/theory.md §8).")
    cli.add_task_args(p, dim=32, depth=3, branching=4)
    p.add_argument("--steps", type=int, default=12000, help="SGD training steps per run (--quick: 1500)")
    p.add_argument("--adamw-steps", type=int, default=24000,
                   help="AdamW training steps per run (--quick: 3000); AdamW's norm relaxes ~2-3x slower than "
                        "1/(2ηλ) steps, so it needs the longer run")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--num-lambdas", type=int, default=6, help="λ values per optimizer, log-spaced (--quick: 3)")
    p.add_argument("--sgd-lr", type=float, default=SGD_LR, help="SGD learning rate η")
    p.add_argument("--adamw-lr", type=float, default=ADAMW_LR, help="AdamW learning rate η")
    p.add_argument("--sgd-lambdas", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help=f"SGD λ range (default {SGD_LAMBDAS[0]:g} {SGD_LAMBDAS[1]:g}; --quick: "
                        f"{QUICK['sgd_lambdas'][0]:g} {QUICK['sgd_lambdas'][1]:g})")
    p.add_argument("--adamw-lambdas", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help=f"AdamW λ range (default {ADAMW_LAMBDAS[0]:g} {ADAMW_LAMBDAS[1]:g}; --quick: "
                        f"{QUICK['adamw_lambdas'][0]:g} {QUICK['adamw_lambdas'][1]:g})")
    p.add_argument("--b1", type=float, default=0.9, help="AdamW β1")
    p.add_argument("--b2", type=float, default=0.999, help="AdamW β2")
    cli.add_measure_args(p, window=0.4, se_batches=(512, QUICK["se_batches"]))
    return p


def resolve(args):
    """Fill the size defaults (--quick or full) and check every sim-specific flag."""
    if args.quick:
        args.steps = min(args.steps, QUICK["steps"])
        args.adamw_steps = min(args.adamw_steps, QUICK["adamw_steps"])
        args.num_lambdas = min(args.num_lambdas, QUICK["num_lambdas"])
    args.sgd_lambdas = list(args.sgd_lambdas or (QUICK["sgd_lambdas"] if args.quick else SGD_LAMBDAS))
    args.adamw_lambdas = list(args.adamw_lambdas or (QUICK["adamw_lambdas"] if args.quick else ADAMW_LAMBDAS))
    cli.resolve_quick(args, se_batches=(512, QUICK["se_batches"]))
    for flag, (lo, hi) in (("--sgd-lambdas", args.sgd_lambdas), ("--adamw-lambdas", args.adamw_lambdas)):
        if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
            raise cli.UsageError(f"{flag}: need 0 < LO < HI, got {lo:g} {hi:g}")
    cli.check_flags(args, sgd_lr=cli.POSITIVE, adamw_lr=cli.POSITIVE, num_lambdas=cli.at_least(2), b1=cli.FRACTION,
                    b2=cli.FRACTION, window=cli.OPEN_FRACTION, se_batches=cli.at_least(2), steps=cli.at_least(1),
                    adamw_steps=cli.at_least(1))
    for flag, n in (("--steps", args.steps), ("--adamw-steps", args.adamw_steps)):
        if int(n * (1 - args.window)) < 1 or int(n * args.window) < 4:
            raise cli.UsageError(f"{flag} {n} is too short for --window {args.window}")


def save_steps(steps: int, window: float):
    """Log-spaced steps for the trajectory plus 48 evenly spaced ones inside the window."""
    from normflow import log_steps

    w0 = int(round(steps * (1 - window)))
    return np.unique(np.concatenate([log_steps(steps, 40), np.linspace(w0, steps, 48).round().astype(int)])), w0


def analyse(name, run, se, task, lr, lams, steps_arr, w0, batch_size, b1=0.9, b2=0.999):
    """Per-config equilibrium numbers and the Fig. 2 fits (host side)."""
    from normflow import stats, theory as th

    norms = np.asarray(run.norms, np.float64)  # [C, S, N]
    win = steps_arr >= w0
    r4 = np.mean(norms[:, win] ** 4, axis=1)  # time-averaged R⁴, [C, N]
    r_mean = np.mean(norms[:, win], axis=1)
    r2 = np.mean(norms[:, win] ** 2, axis=1)
    half = win & (steps_arr >= (w0 + steps_arr[-1]) / 2)
    drift = np.mean(norms[:, half] ** 4, axis=(1, 2)) / np.mean(norms[:, win & ~half] ** 4, axis=(1, 2)) - 1
    p = np.broadcast_to(np.asarray(task.frequency(batch_size), np.float64), r4.shape)
    var = np.asarray(se.var, np.float64)
    w2 = np.asarray(se.source_norm, np.float64) ** 2  # E|s|² per sighting (unbiased)
    mean_frac = np.asarray(se.mean_sq, np.float64) / np.maximum(np.asarray(se.mean_sq) + var, 1e-30)
    lam = np.asarray(lams, np.float64)[:, None]
    x = lr * p * var / lam  # ηpV²/λ: Fig. 2's abscissa
    d = task.dim
    if name == "sgd":
        theory_r = np.asarray(th.sgd_wd_equilibrium(p * w2, lr, lam), np.float64)  # (ηpW²/(λ(2-ηλ)))^{1/4}
        formula = "R*⁴ = ηpW²/(λ(2-ηλ))  (docs/theory.md §6)"
        theory_r4 = theory_r**4
        relax = 4 * lr * lam[:, 0] * w0  # R⁴ relaxes at rate 4ηλ per step
    else:
        # docs/theory.md §8.1–§8.2: ⟨R²⟩ = η²pΣ_L E|w(L)|² (finite ηλ, the gap memory of v; at
        # p ≫ 1-β₂ it is (ηd/2λ)·F) times the restoring factor of the measured mean part f_m
        r2_white = np.stack([th.over_p(lambda q: th.adamw_frequency_r2(lr, l, d, q, b1, b2), p[0])
                             for l in lam[:, 0]])
        kappa = np.asarray(th.adamw_restoring_factor(lr * lam, mean_frac, p, b1), np.float64)
        theory_r = np.sqrt(r2_white * kappa)
        old_r = np.broadcast_to(np.asarray(th.adamw_equilibrium(lr, lam, d), np.float64), r4.shape)  # sqrt(ηd/(2λ))
        formula = "⟨R²⟩ = (ηd/2λ)·F(ηλ,β₁)·κ(f_m)  (docs/theory.md §8.1)"
        theory_r4 = theory_r**4
        relax = 2 * lr * lam[:, 0] * w0  # nominal: R² relaxes at rate 2ηλ per step (measured: slower)
    pooled = stats.loglog_fit(x, r4)
    pooled_theory = stats.loglog_fit(x, theory_r4)
    within = [stats.loglog_fit(x[c], r4[c]) for c in range(len(lams))]
    within_theory = [stats.loglog_fit(x[c], theory_r4[c]) for c in range(len(lams))]
    rows = []
    for c, l in enumerate(np.asarray(lams, float)):
        rows.append({
            "lambda": l, "eta_lambda": lr * l, "relaxations_before_window": float(relax[c]),
            "window_drift_r4": float(drift[c]),
            "mean_norm": float(r_mean[c].mean()), "mean_norm_theory": float(theory_r[c].mean()),
            "rel_error_mean_norm": float(r_mean[c].mean() / theory_r[c].mean() - 1),
            "rms_norm": float(np.sqrt(r2[c].mean())), "rms_norm_theory": float(np.sqrt(np.mean(theory_r[c] ** 2))),
            "rel_error_rms_norm": float(np.sqrt(r2[c].mean() / np.mean(theory_r[c] ** 2)) - 1),
            **({"rel_error_rms_vs_eta_d_over_2lambda": float(np.sqrt(r2[c].mean()) / old_r[c].mean() - 1),
                "restoring_factor_mean": float(kappa[c].mean()),
                "finite_decay_factor": float(th.adamw_finite_decay_factor(lr * l, b1))} if name == "adamw" else {}),
            "median_r4_over_theory": float(np.median(r4[c] / theory_r4[c])),
            "within_slope": within[c].slope, "within_r": within[c].r, "within_slope_theory": within_theory[c].slope,
            "mean_fraction_of_w2": float(np.mean(mean_frac[c])),
        })
    return {
        "optimizer": name, "lr": lr, "formula": formula,
        "fit_pooled": pooled._asdict(), "fit_pooled_theory": pooled_theory._asdict(),
        "within_lambda_slope_mean": float(np.mean([f.slope for f in within])),
        "within_lambda_r_mean": float(np.mean([f.r for f in within])),
        "within_lambda_slope_theory_mean": float(np.mean([f.slope for f in within_theory])),
        "lambdas": rows,
        "per_concept": {"x_eta_p_v2_over_lambda": x, "r4": r4, "r4_theory": theory_r4, "r2": r2, "p": p[0],
                        "var": var, "w2": w2},
    }


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="lambda_sweep")
    resolve(args)
    out = cli.Output(args, "lambda_sweep")
    out.add_config(loss="info_nce", eps=1e-8, model="EmbeddingTable(init_norm=1)", task="HierarchicalTask")


    import jax

    import normflow as nf

    cli.cpu_setup()  # one CPU device per core (sweeps spread over them); unrolled Threefry

    t_start = time.time()
    task, k_run, k_se = cli.task_from_args(args, 3)
    depth = np.asarray(task.depth)
    configs = {
        "sgd": (args.sgd_lr, np.geomspace(*args.sgd_lambdas, args.num_lambdas), args.steps),
        "adamw": (args.adamw_lr, np.geomspace(*args.adamw_lambdas, args.num_lambdas), args.adamw_steps),
    }
    results, timings = {}, {}
    for name, (lr, lams, steps) in configs.items():
        t0 = time.time()
        s, w0 = save_steps(steps, args.window)
        # ONE compiled program for the whole λ grid: a vmap over λ (same init, same minibatches).
        run = nf.sweep(task, name, lr=lr, weight_decay=lams, b1=args.b1, b2=args.b2, keys=k_run, steps=steps,
                       batch_size=args.batch_size, save_steps=s)
        cli.stop_if_sweep_diverged(run, out, name=name, labels=[f"lr={lr:g}, weight_decay={l:g}" for l in lams],
                                   diverged_lambda=[float(l) for l in lams])
        se = jax.vmap(lambda m: nf.source_energy(m, task, key=k_se, batch_size=args.batch_size,
                                                 num_batches=args.se_batches))(run.model)
        results[name] = analyse(name, run, se, task, lr, lams, np.asarray(run.steps[0]), w0, args.batch_size,
                                b1=args.b1, b2=args.b2)
        results[name]["steps"], results[name]["window_start_step"] = steps, w0
        # each λ against its formula's measured 5 % region (docs/theory.md §16); the sweep spans
        # regimes on purpose, so the λ outside are named in one line
        pf = np.asarray(task.frequency(args.batch_size))
        checks = [nf.validity.check(name, lr=lr, weight_decay=float(l), p=pf, momentum=args.b1, b2=args.b2) for l in lams]
        results[name]["validity"] = [nf.validity.check_json(c) for c in checks]
        outside = [f"{float(l):.3g}" for l, c in zip(lams, checks) if c.inside is False]
        if outside:
            print(f"WARNING validity: {name} at λ = {', '.join(outside)} lies outside the measured 5 % region of its "
                  f"formula (docs/theory.md §16)")
        nr = np.asarray(run.norms, np.float64)
        results[name]["trajectory"] = {
            "steps": np.asarray(run.steps[0]), "mean_norm": nr.mean(-1),
            # depth 0 over the deepest level, per λ and recorded step (is the imprint transient?)
            "generic_specific_ratio": nr[..., depth == depth.min()].mean(-1) / nr[..., depth == depth.max()].mean(-1),
        }
        timings[name] = time.time() - t0

    # Print.
    print(f"task: {task.num_concepts} concepts (depth {args.depth}, branching {args.branching}), dim {args.dim}, "
          f"batch {args.batch_size}, p = {float(np.mean(np.asarray(task.frequency(args.batch_size)))):.3f}; "
          f"{args.steps} SGD / {args.adamw_steps} AdamW steps, equilibrium = mean over the last "
          f"{100 * args.window:.0f}%")
    for name, r in results.items():
        fp, ft = r["fit_pooled"], r["fit_pooled_theory"]
        print(f"{name} (η={r['lr']:g}): {r['formula']}")
        print(f"  Fig. 2 fit log R⁴ vs log ηpV²/λ (all λ, all concepts): slope {fp['slope']:.3f}, r {fp['r']:.3f} "
              f"(theory's values fitted the same way: slope {ft['slope']:.3f})")
        print(f"  within one λ: mean slope {r['within_lambda_slope_mean']:.3f} "
              f"(theory {r['within_lambda_slope_theory_mean']:.3f}), mean r {r['within_lambda_r_mean']:.3f}")
        print(f"  {'λ':>9} {'ηλ':>8} {'relax':>6} {'mean R':>8} {'theory':>8} {'rel.err':>8} {'rms R':>8} "
              f"{'theory':>8} {'rel.err':>8} {'R⁴/th':>7} {'slope':>6}")
        for row in r["lambdas"]:
            print(f"  {row['lambda']:>9.3g} {row['eta_lambda']:>8.2g} {row['relaxations_before_window']:>6.1f} "
                  f"{row['mean_norm']:>8.4f} {row['mean_norm_theory']:>8.4f} {100 * row['rel_error_mean_norm']:>+7.1f}% "
                  f"{row['rms_norm']:>8.4f} {row['rms_norm_theory']:>8.4f} {100 * row['rel_error_rms_norm']:>+7.1f}% "
                  f"{row['median_r4_over_theory']:>7.3f} {row['within_slope']:>6.2f}")
        if name == "adamw":
            print("  AdamW's formula is for ⟨R²⟩: compare the rms norm; vs the old √(ηd/2λ): "
                  + ", ".join(f"{100 * row['rel_error_rms_vs_eta_d_over_2lambda']:+.1f}%" for row in r["lambdas"]))

    # Figure.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax = axes[0]
    colors = {"sgd": "tab:blue", "adamw": "tab:red"}
    for name, r in results.items():
        lam = [row["lambda"] for row in r["lambdas"]]
        key = "rms_norm" if name == "adamw" else "mean_norm"  # AdamW's formula is for ⟨R²⟩
        ax.plot(lam, [row[key] for row in r["lambdas"]], "o-", color=colors[name], lw=2,
                label=f"{name} (η={r['lr']:g}) measured ({'rms' if name == 'adamw' else 'mean'} |x|)")
        ax.plot(lam, [row[key + "_theory"] for row in r["lambdas"]], "x--", color=colors[name], lw=1.5, ms=9,
                label=f"{name} theory: {r['formula'].split('  ')[0]}")
        if name == "adamw":
            ax.plot(lam, [np.sqrt(r["lr"] * task.dim / (2 * lv)) for lv in lam], ":", color=colors[name], lw=1.2,
                    label="adamw, small-ηλ limit √(ηd/2λ)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight decay λ")
    ax.set_ylabel("equilibrium |x|  (SGD: mean, AdamW: rms)")
    ax.set_title("equilibrium norm vs λ (time average over the window and concepts)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    for ax, name in zip(axes[1:], ("sgd", "adamw")):
        r = results[name]
        pc = r["per_concept"]
        lams = [row["lambda"] for row in r["lambdas"]]
        cmap = plt.cm.viridis(np.linspace(0, 0.9, len(lams)))
        markers = {0: "o", 1: "s", 2: "^"}
        for c, l in enumerate(lams):
            for lvl in sorted(set(depth.tolist())):
                m = depth == lvl
                ax.scatter(pc["x_eta_p_v2_over_lambda"][c][m], pc["r4"][c][m], s=10, color=cmap[c],
                           marker=markers.get(lvl, "o"), alpha=0.7,
                           label=(f"λ={l:.2g}" if lvl == 0 else None))
        xs = np.asarray(pc["x_eta_p_v2_over_lambda"]).ravel()
        xx = np.geomspace(xs.min(), xs.max(), 50)
        fp = r["fit_pooled"]
        ax.plot(xx, 10 ** fp["intercept"] * xx ** fp["slope"], "-", color="k", lw=1.5,
                label=f"fit: slope {fp['slope']:.2f}, r {fp['r']:.3f}")
        if name == "sgd":
            ax.plot(xx, xx / 2, "--", color="gray", lw=1.5, label="theory R⁴ = ηpV²/(2λ) (slope 1)")
        else:
            for c, l in enumerate(lams):
                xc = np.asarray(pc["x_eta_p_v2_over_lambda"][c])
                ax.plot([xc.min(), xc.max()], [np.mean(pc["r4_theory"][c])] * 2, "--", color=cmap[c], lw=1.5,
                        label="theory R⁴ = ((ηd/2λ)Fκ)² (slope ≈ 0 per λ)" if c == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ηpV²/λ  (per concept; V² = source variance at unit radius)")
        ax.set_ylabel("R⁴ (time-averaged |x|⁴ at equilibrium)")
        ax.set_title(f"{name}: within one λ slope {r['within_lambda_slope_mean']:.2f} "
                     f"(theory {r['within_lambda_slope_theory_mean']:.2f}); ○ depth 0, □ 1, △ 2", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.savefig(fig)

    body = {
        "task": {"num_concepts": task.num_concepts, "depth": args.depth, "branching": args.branching, "dim": args.dim,
                 "p_mean": float(np.mean(np.asarray(task.frequency(args.batch_size)))), "concept_depth": depth},
        "headline": {name: {"slope": r["fit_pooled"]["slope"], "r": r["fit_pooled"]["r"],
                            "within_lambda_slope": r["within_lambda_slope_mean"],
                            "theory_slope": r["fit_pooled_theory"]["slope"],
                            "theory_within_lambda_slope": r["within_lambda_slope_theory_mean"]}
                     for name, r in results.items()},
        "optimizers": results,
    }
    path = out.write(body)
    cli.print_written(path, out.figure, timings, t_start)


if __name__ == "__main__":
    cli.script(main)
