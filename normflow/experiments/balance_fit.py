#!/usr/bin/env python
"""Paper Fig. 3 and Fig. 5 on a synthetic Zipf task: predicted vs observed equilibrium norm from
docs/theory.md §9's drift balance, for the free table and for a network (concept table + shared MLP).

    python sims/balance_fit.py            # default size (a few minutes on 2 cores)
    python sims/balance_fit.py --quick    # the test-suite size

Both models train with the lab's ``sgd`` (decoupled weight decay on the parameters) on the same
Zipf-frequency :class:`normflow.FlatTask`. In the last ``--window`` of the run the sim measures,
at ``--checkpoints`` evenly spaced steps, per concept:

- ``pW²`` and ``V²`` at unit radius (:func:`normflow.source_energy`);
- the NTK radial drift ``D`` (:func:`normflow.radial_drift`, averaged over minibatches);
- the decay's radial rate on ``x`` and the second-order push of the actual parameter step
  (:func:`normflow.balance_terms`).

and averages them in time. Two predictions of the equilibrium norm, both solved by
:func:`normflow.theory.balance_norm` (``2λR² = 2RD + ηpW²/R²``):

- **docs/theory.md §9 as written** (``plain``): ``λ`` = the optimizer's weight decay, ``pW²`` from the
  loss gradient in embedding space (the table's second-order push).
- **measured terms** (``measured``): for a network the decay acts on ``θ``, not on ``x``, and the
  push on ``x(a)`` is ``η²|J(a)v|²`` (every concept moves every step through the shared
  weights), so ``λ → λ_eff = -x̂·J(-λθ)/R`` and ``pW² → pW²_eff = R²E(|Jv|² + R x̂·f''[v,v])``
  (see :mod:`normflow.balance`). For the free table the two coincide up to ``O(ηλ)``.

Writes ``<figures>/balance_fit.png`` (Fig. 3: log-log predicted vs observed, colour = frequency
p, slope and Pearson r of the log-log fit), ``<figures>/balance_fit_terms.png`` (Fig. 5: ``V²`` and
``D`` by concept sorted by observed norm, and ``D`` against ``V²``) and ``<out>/results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

# Default sizes; --quick is the test-suite size (faster relaxation: 4x the decay, same ηλ ratio
# between the two models). Any flag given explicitly wins.
FULL = {"steps": 12_000, "table_wd": 2e-3, "net_wd": 2e-2, "checkpoints": 40, "num_batches": 128, "num_concepts": 64}
QUICK = {"steps": 1500, "table_wd": 8e-3, "net_wd": 8e-2, "checkpoints": 6, "num_batches": 16, "num_concepts": 32}
FIT_NOTE = "least-squares line of log(observed R) on log(predicted R); r = Pearson r of the logs"
NETWORK_VALIDITY = {
    "inside": None, "map": None,
    "message": ("validity: the maps are measured on the free table (docs/theory.md §16); the network's norms "
                "(concept table + shared MLP, decay on θ) lie outside every map by construction"),
    "detail": {"model": "network"},
}


def build_parser():
    p = cli.make_parser("balance_fit.py", __doc__.splitlines()[1])
    p.add_argument("--num-concepts", type=int, default=None,
                   help=f"concepts of the flat task (default {FULL['num_concepts']}, --quick {QUICK['num_concepts']})")
    p.add_argument("--dim", type=int, default=32, help="embedding dimension")
    p.add_argument("--zipf", type=float, default=1.5, help="Zipf exponent of the concept frequencies")
    p.add_argument("--hidden", type=int, default=64, help="network: table width and MLP hidden width")
    p.add_argument("--steps", type=int, default=None, help=f"SGD steps per model (default {FULL['steps']}, --quick {QUICK['steps']})")
    p.add_argument("--batch-size", type=int, default=64, help="minibatch size")
    p.add_argument("--table-lr", type=float, default=0.5, help="free table: learning rate η")
    p.add_argument("--table-wd", type=float, default=None,
                   help=f"free table: weight decay λ (default {FULL['table_wd']}, --quick {QUICK['table_wd']})")
    p.add_argument("--net-lr", type=float, default=0.05, help="network: learning rate η")
    p.add_argument("--net-wd", type=float, default=None,
                   help=f"network: weight decay λ on θ (default {FULL['net_wd']}, --quick {QUICK['net_wd']})")
    p.add_argument("--window", type=float, default=0.5, help="fraction of the run (at the end) treated as equilibrium")
    p.add_argument("--checkpoints", type=int, default=None,
                   help=f"measurement times inside the window (default {FULL['checkpoints']}, --quick {QUICK['checkpoints']})")
    p.add_argument("--num-batches", type=int, default=None,
                   help=f"minibatches per measurement (default {FULL['num_batches']}, --quick {QUICK['num_batches']})")
    return p


def _check(args):
    cli.check_flags(args, num_concepts=cli.Rule(lambda v: v >= 3, "need >= 3 concepts for a fit"),
                    hidden=cli.at_least(1), steps=cli.at_least(1), batch_size=cli.at_least(1),
                    checkpoints=cli.at_least(1), num_batches=cli.at_least(2), table_lr=cli.POSITIVE,
                    table_wd=cli.POSITIVE, net_lr=cli.POSITIVE, net_wd=cli.POSITIVE,
                    zipf=cli.Rule(lambda v: np.isfinite(v) and v >= 0, "must be >= 0"), window=cli.OPEN_FRACTION)
    if args.steps * args.window < args.checkpoints:
        raise cli.UsageError(f"--checkpoints {args.checkpoints}: more than the {int(args.steps * args.window)} steps in the window")


def loglog_fit(pred, obs):
    """:func:`normflow.stats.loglog_fit` of observed on predicted norms, plus the geometric-mean
    ratio obs/pred, over the entries where both are finite and > 0."""
    from normflow.stats import loglog_fit as fit

    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    f = fit(pred, obs)
    ok = np.isfinite(pred) & np.isfinite(obs) & (pred > 0) & (obs > 0)
    if f.n < 3 or not np.isfinite(f.slope):
        return {"slope": None, "r": None, "mean_ratio": None, "n": int(f.n)}
    ratio = float(np.exp(np.mean(np.log(obs[ok]) - np.log(pred[ok]))))
    return {"slope": f.slope, "r": f.r, "mean_ratio": ratio, "n": int(f.n)}


def run_model(nf, jax, task, model, name, lr, wd, args, key, k_meas):
    """Train with sgd, measure the balance terms at checkpoints in the window; return dicts."""
    steps = args.steps
    start = int(round((1 - args.window) * steps))
    c = args.checkpoints
    # Chunk ends every `steps/chunks` steps, so that the last `c` fall inside the window.
    chunks = int(np.ceil(c / args.window))
    save = np.unique(np.round(np.linspace(0, steps, 4 * chunks + 1)).astype(np.int64))
    meas = []
    bar, close = cli.progress_callback(steps, enabled=not args.quiet, desc=name)

    def on_chunk(step, m):
        bar(step, m)
        if step < start or len(meas) >= c:
            return
        k = jax.random.fold_in(k_meas, step)
        se = nf.source_energy(m, task, key=k, batch_size=args.batch_size, num_batches=args.num_batches)
        bt = nf.balance_terms(m, task, key=jax.random.fold_in(k, 1), lr=lr, weight_decay=wd,
                           batch_size=args.batch_size, num_batches=args.num_batches)
        meas.append({
            "step": step, "pw2": se.pw2, "var": se.var, "p": se.p, "norm": bt.norm, "drift": bt.drift,
            "lambda_eff": bt.lambda_eff, "pw2_eff": bt.pw2_eff, "delta_r2": bt.delta_r2,
            "delta_r2_taylor": bt.delta_r2_taylor, "push_rel": lr**2 * bt.push / bt.norm**2,
        })

    run = nf.train(task, "sgd", lr=lr, weight_decay=wd, steps=steps, key=key, model=model,
                   batch_size=args.batch_size, save_steps=save, callback=on_chunk, chunks=chunks)
    close()
    cli.check_diverged(run, what=f"{name} sgd (lr={lr}, weight_decay={wd})")
    steps_rec = np.asarray(run.steps)
    norms = np.asarray(run.norms, float)
    win = steps_rec >= start
    avg = {k: np.mean(np.stack([np.asarray(m[k], float) for m in meas]), axis=0) for k in meas[0] if k != "step"}
    avg["norm_observed"] = norms[win].mean(0)
    avg["norm_observed_std"] = norms[win].std(0)
    # a drift over the window would mean the run is not at equilibrium
    half = steps_rec >= (start + steps) / 2
    avg["window_trend"] = float(np.mean(norms[half].mean(0) / norms[win & ~half].mean(0) - 1))
    avg["checkpoint_steps"] = [m["step"] for m in meas]
    avg["trajectory"] = {"steps": steps_rec, "mean_norm": norms.mean(1), "min_norm": norms.min(1),
                         "max_norm": norms.max(1), "loss": np.asarray(run.loss, float)}
    return avg


def predictions(nf, jnp, m, lr, wd):
    bn = nf.theory.balance_norm
    d, pw2 = jnp.asarray(m["drift"]), jnp.asarray(m["pw2"])
    lam_eff, pw2_eff = jnp.asarray(m["lambda_eff"]), jnp.asarray(m["pw2_eff"])
    ok = (np.asarray(lam_eff) > 0) & (np.asarray(pw2_eff) > 0)
    pos = (np.asarray(pw2) > 0)

    def mask(x, good):
        return np.where(good, np.asarray(x, float), np.nan)

    lam_safe = jnp.where(lam_eff > 0, lam_eff, 1.0)
    pw2e_safe = jnp.where(pw2_eff > 0, pw2_eff, 1.0)
    pw2_safe = jnp.where(pw2 > 0, pw2, 1.0)
    return {
        # docs/theory.md §9 as written: plain λ, the loss-gradient pW², measured D
        "plain": mask(bn(d, pw2_safe, lr, wd), pos),
        # every term measured on x: λ_eff, pW²_eff, D
        "measured": mask(bn(d, pw2e_safe, lr, lam_safe), ok),
        # ablations of the measured form
        "measured_no_drift": mask(bn(jnp.zeros_like(d), pw2e_safe, lr, lam_safe), ok),
        "measured_plain_lambda": mask(bn(d, pw2e_safe, lr, wd), pw2_eff > 0),
        "plain_no_drift": mask(bn(jnp.zeros_like(d), pw2_safe, lr, wd), pos),
    }


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="balance_fit", sizes=(QUICK, FULL))
    _check(args)
    out = cli.Output(args, "balance_fit")
    terms_fig = out.figure.with_name("balance_fit_terms.png")

    import jax
    import jax.numpy as jnp

    import normflow as nf
    from normflow.stats import spearman

    t_start = time.time()
    dtype = jnp.float64 if args.x64 else jnp.float32
    k_task, k_net, k_run, k_meas = jax.random.split(jax.random.key(args.seed), 4)
    task = nf.FlatTask(args.num_concepts, args.dim, key=k_task, frequency="zipf", zipf_exponent=args.zipf, dtype=dtype)
    p_task = np.asarray(task.frequency(args.batch_size), float)

    models = {
        "table": (None, args.table_lr, args.table_wd),
        "network": (nf.ConceptMLP(args.num_concepts, args.dim, key=k_net, hidden=args.hidden, dtype=dtype),
                    args.net_lr, args.net_wd),
    }
    res, preds, fits = {}, {}, {}
    # the table run against its formula's measured 5 % region (docs/theory.md §16): sgd (decoupled
    # decay, no momentum) on the free table, each concept at the task's p; the network has no map
    valid = {"table": nf.validity.check_json(nf.validity.check("sgd", lr=args.table_lr, weight_decay=args.table_wd,
                                                               p=p_task)),
             "network": NETWORK_VALIDITY}
    for name, (model, lr, wd) in models.items():
        try:
            res[name] = run_model(nf, jax, task, model, name, lr, wd, args, k_run, jax.random.fold_in(k_meas, len(res)))
        except cli.Diverged as e:
            out.write({"message": str(e), "model": name}, status="diverged")
            raise
        preds[name] = predictions(nf, jnp, res[name], lr, wd)
        fits[name] = {k: loglog_fit(v, res[name]["norm_observed"]) for k, v in preds[name].items()}

    # Print.
    print(f"task: FlatTask {args.num_concepts} concepts, dim {args.dim}, Zipf {args.zipf}: p in "
          f"[{p_task.min():.3g}, {p_task.max():.3g}] (batch {args.batch_size})")
    for name, (_, lr, wd) in models.items():
        m = res[name]
        print(f"{name}: sgd lr={lr} wd={wd}, {args.steps} steps, equilibrium window from step "
              f"{int((1 - args.window) * args.steps)} (norm trend over the window {100 * m['window_trend']:+.1f}%)")
        print(f"  median |D|/(λR) = {np.median(np.abs(m['drift']) / (wd * m['norm_observed'])):.3g}, median "
              f"λ_eff/λ = {np.median(m['lambda_eff']) / wd:.3g}, median pW²_eff/pW² = "
              f"{np.median(m['pw2_eff'] / np.maximum(m['pw2'], 1e-30)):.3g}, median per-step push η²|Jv|²/R² = "
              f"{np.median(m['push_rel']):.3g}")
        print(f"  Spearman of the observed norm with V²: {spearman(m['norm_observed'], m['var']):.2f}, with D: "
              f"{spearman(m['norm_observed'], m['drift']):.2f}, with p: {spearman(m['norm_observed'], p_task):.2f}")
        err = np.max(np.abs(m["delta_r2"] - m["delta_r2_taylor"])) / np.max(np.abs(m["delta_r2"]))
        if valid[name]["inside"] is False:
            print(f"  {valid[name]['message']}")
        print(f"  second-order expansion of E[R'²-R²] vs one actual step: max error {100 * err:.2g}% of max |E ΔR²|")
        for k, f in fits[name].items():
            if f["slope"] is not None:
                print(f"  {k:<22} slope {f['slope']:.3f}  r {f['r']:.3f}  obs/pred {f['mean_ratio']:.3f}  (n={f['n']})")
            else:
                print(f"  {k:<22} no fit (n={f['n']})")

    # Figures.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    cnorm = LogNorm(vmin=max(p_task.min(), 1e-3), vmax=1.0)
    panels = [("table", "plain", "free table: docs/theory.md §9 (D = 0)"),
              ("network", "plain", "network: docs/theory.md §9 as written (plain λ, pW²)"),
              ("network", "measured", "network: measured terms (λ_eff, pW²_eff, D)")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, (name, kind, title) in zip(axes, panels):
        pred, obs = preds[name][kind], res[name]["norm_observed"]
        f = fits[name][kind]
        sc = ax.scatter(pred, obs, c=p_task, cmap="viridis", norm=cnorm, s=22, edgecolor="k", lw=0.3,
                        label="concepts (measured)")
        ok = np.isfinite(pred) & (pred > 0)
        lo = min(np.nanmin(pred[ok]), obs.min()) * 0.8
        hi = max(np.nanmax(pred[ok]), obs.max()) * 1.25
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x (theory)")
        if f["slope"] is not None:
            lx = np.log(pred[ok])
            b = np.mean(np.log(obs[ok])) - f["slope"] * np.mean(lx)
            xx = np.geomspace(np.nanmin(pred[ok]), np.nanmax(pred[ok]), 10)
            ax.plot(xx, np.exp(b) * xx ** f["slope"], "-", color="firebrick", lw=1.5,
                    label=f"fit: slope {f['slope']:.2f}, r {f['r']:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("predicted equilibrium norm R* (balance, docs/theory.md §9)")
        ax.set_ylabel("observed norm |x| (time average)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.colorbar(sc, ax=axes, label="frequency p (probability of a gradient per step)", fraction=0.02)
    fig.suptitle("Fig. 3 rebuilt: predicted vs observed equilibrium norm under SGD + weight decay "
                 f"(Zipf {args.zipf}, {args.num_concepts} concepts; paper on real models: slope 0.88, r 0.97)", fontsize=9)
    out.savefig(fig)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for col, name in enumerate(models):
        m = res[name]
        order = np.argsort(m["norm_observed"])
        ax = axes[0, col]
        rank = np.arange(len(order))
        ax.plot(rank, m["var"][order], "o-", ms=3, color="tab:blue", label="V² (unit-radius gradient variance)")
        ax.set_yscale("log")
        ax.set_xlabel("concept, sorted by observed norm (rank)")
        ax.set_ylabel("V²  (per sighting, unit radius)", color="tab:blue")
        ax2 = ax.twinx()
        ax2.plot(rank, m["drift"][order], "s-", ms=3, color="tab:red", label="D (NTK radial drift)")
        ax2.axhline(0, color="gray", lw=0.8, ls=":")
        ax2.set_ylabel("D = x̂·J(-∇θL)  (norm per unit time t = ηk)", color="tab:red")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
        ax.set_title(f"{name}: V² and D by concept (sorted by norm)", fontsize=9)
        ax = axes[1, col]
        sc = ax.scatter(m["var"], m["drift"], c=p_task, cmap="viridis", norm=cnorm, s=22, edgecolor="k", lw=0.3,
                        label="concepts (measured)")
        ax.axhline(0, color="k", ls="--", lw=1, label="D = 0 (free table, docs/theory.md §9)")
        ax.set_xscale("log")
        ax.set_xlabel("V²  (per sighting, unit radius)")
        ax.set_ylabel("D  (norm per unit time)")
        ax.set_title(f"{name}: D against V²", fontsize=9)
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="frequency p")
    fig.suptitle("Fig. 5 rebuilt: gradient variance V² and NTK radial drift D per concept", fontsize=10)
    fig.tight_layout()
    out.savefig(fig, terms_fig.stem)
    plt.close(fig)

    per_concept = {
        "frequency_p_task": p_task, "spread": np.asarray(task.spread, float),
    }
    models_json = {}
    for name, (_, lr, wd) in models.items():
        m = res[name]
        models_json[name] = {
            "lr": lr, "weight_decay": wd, "validity": valid[name],
            "fits": fits[name],
            "window_norm_trend": m["window_trend"],
            "checkpoint_steps": m["checkpoint_steps"],
            "median_abs_drift_over_lambda_R": float(np.median(np.abs(m["drift"]) / (wd * m["norm_observed"]))),
            "median_lambda_eff_over_lambda": float(np.median(m["lambda_eff"]) / wd),
            "median_push_per_step_rel": float(np.median(m["push_rel"])),
            "taylor_max_rel_error": float(np.max(np.abs(m["delta_r2"] - m["delta_r2_taylor"])) / np.max(np.abs(m["delta_r2"]))),
            "spearman": {  # what orders the observed norms (Fig. 5)
                "norm_vs_var": spearman(m["norm_observed"], m["var"]),
                "norm_vs_drift": spearman(m["norm_observed"], m["drift"]),
                "norm_vs_p": spearman(m["norm_observed"], p_task),
                "drift_vs_p": spearman(m["drift"], p_task),
            },
            "per_concept": {
                "norm_observed": m["norm_observed"], "norm_observed_std": m["norm_observed_std"],
                "predicted": preds[name], "p": m["p"], "pw2": m["pw2"], "var": m["var"], "drift": m["drift"],
                "lambda_eff": m["lambda_eff"], "pw2_eff": m["pw2_eff"],
            },
            "trajectory": m["trajectory"],
        }
    results = {
        "task": {"kind": "FlatTask", "num_concepts": args.num_concepts, "dim": args.dim, "zipf": args.zipf,
                 "p_min": float(p_task.min()), "p_max": float(p_task.max())},
        "fit_note": FIT_NOTE,
        "headline": {name: {"plain": fits[name]["plain"], "measured": fits[name]["measured"]} for name in models},
        "paper": {"slope": 0.88, "r": 0.97},
        "models": models_json,
        "per_concept": per_concept,
        "figures": [str(out.figure), str(terms_fig)],
    }
    path = out.write(results)
    print(f"total {time.time() - t_start:.1f}s; results: {path}  figures: {out.figure}, {terms_fig}")


if __name__ == "__main__":
    cli.script(main)
