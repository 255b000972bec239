#!/usr/bin/env python
"""Main job: Diffrax gradient flow against a discrete optimizer, with docs/theory.md's formula for
that optimizer drawn against the measured norms, level by level of the concept tree.

    python sims/ode_vs_adam.py --optimizer adam        # or gd, sgd, sgdm, adamw, ...

From one initialisation of one hierarchical task it runs (a) gradient flow (docs/theory.md §3, the
reference: norms stay at R₀e^{-λt}) and (b) the chosen optimizer, measures the source energy
pW² along the run (docs/theory.md §1), and compares the end-of-run norms per level with the formula
the theory gives for that optimizer. Writes ``<figures>/ode_vs_<NAME>.png`` and
``<out>/results.json``; prints a table and a plain verdict.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from normflow import cli
from normflow.trajectory import log_steps as nf_log_steps

from normflow.defaults import DEFAULTS  # noqa: E402  per-optimizer (lr, weight_decay), docs/theory.md §11's regime

# Default run length: 6000 steps (≥ 3 relaxation times 1/(4ηλ) for the SGD family); the Adam
# family with decay approaches R*² = ηd/(2λ) slowly (leaves first dip, then climb), and at 6000
# steps its leaves are still 13 % below it — at 20000 steps every level is within 2 %.
STEPS = {"adamw": 20000, "adam_l2": 20000, "adamp": 20000, "lion": 20000}
HOLDS_TOL = 0.05  # |relative error| per level (norm and angular update) below which the formula holds


def build_parser():
    p = cli.make_parser("ode_vs_adam.py", " ".join(__doc__.split("\n\n")[0].split()))
    cli.add_optimizer_args(p, optimizer="adam", steps=None, batch_size=64, defaults=DEFAULTS)
    cli.add_task_args(p, dim=32, depth=3, branching=4)
    p.add_argument("--momentum", type=float, default=0.9, help="heavy-ball β / Adam β1")
    p.add_argument("--b2", type=float, default=None, help="Adam β2 (default 0.999; Lion's β2: 0.99)")
    return p


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="ode_vs_" + (p.parse_known_args(argv)[0].optimizer or "adam"))
    name = args.optimizer
    lr0, wd0 = DEFAULTS[name]
    args.lr = lr0 if args.lr is None else args.lr
    args.weight_decay = wd0 if args.weight_decay is None else args.weight_decay
    if args.steps is None:  # AdamW-type equilibria relax at 2ηλ per step from below: give them longer
        args.steps = STEPS.get(name, 6000)
    if args.quick:
        args.steps = min(args.steps, 1500)
    if args.b2 is None:
        args.b2 = 0.99 if name == "lion" else 0.999
    cli.check_optimizer(args)
    cli.check_flags(args, momentum=cli.FRACTION, b2=cli.FRACTION)
    out = cli.Output(args, f"ode_vs_{name}")
    se_batches = 64 if args.quick else 128
    n_full = 256
    # Fixed in this script but needed to repeat the run (pW² is measured at the chunk boundaries).
    # log-spaced saves for the path, plus every step of the last 20 % (the comparison window, at
    # most 4000 steps): the rms rotation per step is a mean over sampled steps, and with ~50 % of
    # steps without a given concept its sampling error at depth 0 (4 concepts) is then ~1 %
    window_saves = np.arange(int(0.8 * args.steps), args.steps + 1)[-4000:]
    save_steps = np.union1d(nf_log_steps(args.steps, 96), window_saves)
    # The source statistics are measured at log-spaced steps (the run is split there): early on a
    # leaf's pW² collapses within tens of steps, and the Adam family's second moment remembers it
    # (docs/theory.md §8.3), so the path needs it resolved where it changes fastest.
    n_stats = 8 if args.quick else 24
    stat_steps = np.unique(np.concatenate([np.geomspace(2, args.steps, n_stats).round(),
                                           np.linspace(0.8 * args.steps, args.steps, 5).round()]).astype(int))
    save_steps = np.union1d(save_steps, stat_steps)
    out.add_config(loss="info_nce", eps=1e-8, save_steps=len(save_steps), n_full=n_full, source_energy_batches=se_batches,
                   stat_steps=stat_steps, ode_rtol=1e-6, ode_atol=1e-8)

    import jax

    import normflow as nf

    t_start = time.time()
    task, k_run, k_se = cli.task_from_args(args, 3)
    depth = np.asarray(task.depth)
    levels = sorted(set(depth.tolist()))
    labels = [f"depth {int(l)}" for l in depth]

    # (b) the optimizer, with pW² measured at the chunk boundaries (docs/theory.md §1).
    checkpoints = []
    bar, close = cli.progress_callback(args.steps, enabled=not args.quiet, desc=name)

    def on_chunk(step, model):
        bar(step, model)
        se = nf.source_energy(model, task, key=jax.random.fold_in(k_se, step), batch_size=args.batch_size,
                              num_batches=se_batches)
        checkpoints.append((step, np.asarray(se.pw2, float), np.asarray(se.source_norm, float),
                            np.asarray(se.mean_sq, float), np.asarray(se.p, float), np.asarray(se.var, float),
                            np.asarray(se.energy_var, float)))

    t0 = time.time()
    run = nf.train(task, name, lr=args.lr, weight_decay=args.weight_decay, steps=args.steps, batch_size=args.batch_size,
                   key=k_run, momentum=args.momentum, b1=args.momentum, b2=args.b2, save_steps=save_steps, n_full=n_full,
                   callback=on_chunk, chunks=stat_steps[stat_steps < args.steps])
    close()
    t_train = time.time() - t0
    steps = np.asarray(run.steps)
    norms = np.asarray(run.norms, float)
    try:
        cli.check_diverged(run, what=f"{name} (lr={args.lr}, weight_decay={args.weight_decay})", labels=labels)
    except cli.Diverged as e:
        ok = steps <= int(run.diverged_step)
        e.path = out.write({"optimizer": name, "message": str(e), "diverged_step": int(run.diverged_step) + 1,
                            "diverged_concept": int(run.diverged_concept),
                            "recorded": {"steps": steps[ok],
                                         "norms_by_level": [norms[ok][:, depth == l].mean(1) for l in levels]}},
                           status="diverged")
        raise

    # (a) gradient flow from the same initialisation on the same fixed data set. With decay the
    # flow's norm collapses as R₀e^{-λt} and its angular speed grows as 1/R² (docs/theory.md §3), so
    # the solve turns stiff; it stops where R has fallen to R₀/4 (t = ln4/λ) if that comes first.
    t0 = time.time()
    t1 = float(args.lr * args.steps)
    t_ode = t1 if args.weight_decay == 0 else min(t1, float(np.log(4.0) / args.weight_decay))
    ts = np.asarray(run.times, float)
    ts_ode = np.unique(np.append(ts[ts <= t_ode], t_ode))
    flow = nf.gradient_flow(task, t1=t_ode, key=k_run, weight_decay=args.weight_decay, n_samples=n_full, ts=ts_ode,
                            rtol=1e-6, atol=1e-8, max_steps=100_000)
    t_ode_wall = time.time() - t0
    flow_norms = np.asarray(flow.norms, float)
    flow_expect = norms[0][None] * np.exp(-args.weight_decay * ts_ode)[:, None]
    ode_drift = float(np.max(np.abs(flow_norms / flow_expect - 1)))

    # Theory for this optimizer (docs/theory.md §15: one prediction per optimizer).
    def flow_fn():
        return nf.modified_flow(task, args.lr, t1, key=k_run, weight_decay=args.weight_decay, n_samples=n_full,
                                ts=ts, rtol=1e-7, atol=1e-9).norms

    stat = {f: np.stack([c[i] for c in checkpoints]) for i, f in ((1, "pw2"), (3, "mean_sq"), (4, "p"), (5, "var"),
                                                                     (6, "energy_var"))}
    ctx = nf.theory.Context(steps=steps, r0=norms[0], stat_steps=np.array([c[0] for c in checkpoints]), **stat,
                            dim=task.dim,
                            lr=args.lr, weight_decay=args.weight_decay, total_steps=args.steps,
                            momentum=args.momentum, b1=args.momentum, b2=args.b2, flow=flow_fn)
    pred = nf.theory.predict(name, ctx)
    # Is this run inside the measured 5 % region of its formula (docs/theory.md §16)?
    valid = nf.validity.check(name, lr=args.lr, weight_decay=args.weight_decay, p=np.asarray(task.frequency(args.batch_size)),
                              momentum=args.momentum, b2=args.b2)
    formula, section, note, equilibrium = pred.formula, pred.section, pred.note, pred.equilibrium
    theory_norms = np.asarray(pred.norms, float)

    # Compare: equilibrium formulas on the last 20 % of steps (time-averaged), paths at the end;
    # the angular update (rms rotation of x̂ per step, docs/theory.md §14) on the last 20 %.
    window = steps >= (0.8 * args.steps if equilibrium else args.steps)
    obs_c = norms[window].mean(0)
    th_c = theory_norms[window].mean(0)
    last = (steps >= 0.8 * args.steps) & (steps > 0)
    theta = np.asarray(nf.measure.step_rotation(norms, np.asarray(run.angular, float), args.lr))
    theta_obs = np.sqrt(np.mean(theta[last] ** 2, axis=0))
    theta_th = None if pred.angular_update is None else np.asarray(pred.angular_update, float)
    u_sq = np.asarray(run.update_sq, float)[1:]
    # u = ((1-ηλ)x - x')/η: a concept not in the batch shows rounding noise ~ eps·R/η, not a step.
    moving = np.sqrt(u_sq) * args.lr > 100 * np.finfo(np.asarray(run.norms).dtype).eps * norms[:-1]
    # |u_r|/|Pu| per level as a ratio of root-mean-squares over the steps where a concept moved
    # (a mean of per-step ratios would be ruled by the steps where |Pu| happens to be tiny)
    rad_sq = np.where(moving, np.asarray(run.radial, float)[1:] ** 2, np.nan)
    ang_sq = np.where(moving, np.asarray(run.angular, float)[1:] ** 2, np.nan)
    eps_end = float(np.mean(args.lr * checkpoints[-1][2] / norms[-1] ** 2))
    rows = []
    for l in levels:
        m = depth == l
        row = {
            "depth": int(l), "n_concepts": int(m.sum()),
            "norm_observed": float(obs_c[m].mean()), "norm_theory": float(th_c[m].mean()),
            "rel_error": float(obs_c[m].mean() / th_c[m].mean() - 1),
            "angular_update_observed": float(np.sqrt(np.mean(theta_obs[m] ** 2))),
            "angular_update_theory": None if theta_th is None else float(np.sqrt(np.mean(theta_th[m] ** 2))),
            "radial_to_angular": float(np.sqrt(np.nanmean(rad_sq[:, m]) / np.nanmean(ang_sq[:, m]))),
            "pw2_end": float(checkpoints[-1][1][m].mean()),
        }
        row["angular_rel_error"] = (None if theta_th is None else
                                    row["angular_update_observed"] / row["angular_update_theory"] - 1)
        rows.append(row)
    worst = max(max(abs(r["rel_error"]), abs(r["angular_rel_error"] or 0.0)) for r in rows)
    holds = worst <= HOLDS_TOL
    g_obs = rows[0]["norm_observed"] / rows[-1]["norm_observed"]
    g_th = rows[0]["norm_theory"] / rows[-1]["norm_theory"]
    verdict = (f"THEORY HOLDS: {formula} ({section}) matches every level (norm and angular update) within {100 * worst:.1f}% "
               f"(threshold {100 * HOLDS_TOL:.0f}%)" if holds else
               f"THEORY FAILS: {formula} ({section}) misses by up to {100 * worst:.1f}% "
               f"(threshold {100 * HOLDS_TOL:.0f}%)")

    # Print the table.
    print(f"optimizer {name}: lr={args.lr} weight_decay={args.weight_decay} steps={args.steps} "
          f"batch={args.batch_size} dim={args.dim} ({task.num_concepts} concepts)")
    print(f"formula: {formula}  [{section}]  -- {note}")
    print(f"regime (docs/theory.md §11): angular step ε={eps_end:.3g}, ηλ={args.lr * args.weight_decay:.3g}")
    print(f"{'depth':>5} {'concepts':>8} {'observed':>9} {'theory':>9} {'rel.err':>8} {'θ obs':>9} {'θ theory':>9} "
          f"{'rel.err':>8} {'|u_r|/|Pu|':>10}")
    for r in rows:
        th, the = r["angular_update_theory"], r["angular_rel_error"]
        print(f"{r['depth']:>5} {r['n_concepts']:>8} {r['norm_observed']:>9.4f} {r['norm_theory']:>9.4f} "
              f"{100 * r['rel_error']:>+7.2f}% {r['angular_update_observed']:>9.3g} "
              f"{'—' if th is None else f'{th:.3g}':>9} "
              f"{'—' if th is None else f'{100 * the:+.2f}%':>8} {r['radial_to_angular']:>10.3g}")
    print(f"generic/specific norm ratio: observed {g_obs:.3f}, theory {g_th:.3f}")
    print(f"gradient flow (Diffrax, to t={t_ode:.4g} of {t1:.4g}): max relative norm drift from R0·e^(-λt) = {ode_drift:.2e}")
    print(valid.message)
    print(verdict)

    # Figure.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(levels)))
    x = np.maximum(steps, 1)
    for c, l in zip(colors, levels):
        m = depth == l
        ax1.plot(x, norms[:, m].mean(1), "-", color=c, lw=2, label=f"depth {l} measured")
        ax1.plot(x, theory_norms[:, m].mean(1), "--", color=c, lw=1.5, label=f"depth {l} theory")
    ax1.plot(np.maximum(ts_ode / args.lr, 1), flow_norms.mean(1), ":", color="gray", lw=2.5,
             label="gradient flow (ODE), all levels")
    ax1.set_xscale("log")
    ax1.set_xlabel("training step k (t = η·k)")
    ax1.set_ylabel("mean embedding norm |x| per level")
    ax1.set_title(f"{name}: {formula}", fontsize=9)
    ax1.legend(fontsize=7, ncol=2)
    for c, l in zip(colors, levels):
        m = depth == l
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # saves where no concept of a level moved
            rms = np.sqrt(np.nanmean(rad_sq[:, m], axis=1) / np.nanmean(ang_sq[:, m], axis=1))
            ax2.plot(x[1:], rms, "-", color=c, label=f"depth {l}")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("training step k")
    ax2.set_ylabel("rms u_r / rms |P u| over a level\n(radial / angular update)")
    floor = 100 * np.finfo(np.asarray(run.norms).dtype).eps
    ax2.axhline(floor, color="gray", lw=0.8, ls=":")
    ax2.text(x[1], floor * 1.15, f"rounding floor ({np.asarray(run.norms).dtype})", fontsize=7, color="gray")
    ax2.set_title("radial vs angular part of the update (docs/theory.md §2)", fontsize=9)
    ax2.legend(fontsize=7)
    fig.suptitle(verdict, fontsize=8, color="green" if holds else "firebrick")
    fig.tight_layout()
    out.savefig(fig)

    results = {
        "optimizer": name,
        "formula": formula,
        "formula_section": section,
        "formula_note": note,
        "theory_holds": holds,
        "holds_threshold": HOLDS_TOL,
        "worst_rel_error": worst,
        "verdict": verdict,
        "levels": rows,
        "generic_specific_ratio": {"observed": g_obs, "theory": g_th},
        "ode": {"max_rel_norm_drift": ode_drift, "t1": t_ode, "run_t1": t1, "rtol": 1e-6, "atol": 1e-8,
                "note": "with decay the flow stops at R = R0/4 (t = ln4/λ): beyond it R -> 0 makes the solve stiff"},
        "validity": nf.validity.check_json(valid),
        "regime": {"angular_step_end": eps_end, "groups": pred.regime, "eta_lambda": args.lr * args.weight_decay,
                   "relaxation_steps": (1 / (4 * args.lr * args.weight_decay)) if args.weight_decay > 0 else None},
        "trajectory": {"steps": steps, "norm_by_level": [norms[:, depth == l].mean(1) for l in levels],
                       "theory_by_level": [theory_norms[:, depth == l].mean(1) for l in levels],
                       "ode_times": ts_ode, "ode_by_level": [flow_norms[:, depth == l].mean(1) for l in levels]},
        "pw2_checkpoints": {"steps": [c[0] for c in checkpoints],
                            "by_level": [[float(c[1][depth == l].mean()) for c in checkpoints] for l in levels]},
    }
    path = out.write(results)
    print(f"timings: train {t_train:.1f}s, ODE {t_ode_wall:.1f}s, total {time.time() - t_start:.1f}s")
    print(f"results: {path}  figure: {out.figure}")


if __name__ == "__main__":
    cli.script(main)
