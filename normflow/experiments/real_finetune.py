#!/usr/bin/env python
"""The intervention the paper could not make: fine-tune all-MiniLM-L6-v2's token table on WordNet
pairs under SGD+decay and under AdamW from the same start, and hold each token's measured norm
change against the lab's prediction for that optimizer.

    normflow real_finetune            # 300 steps per optimizer, batches of 16 pairs (a few minutes on 2 cores)
    normflow real_finetune --quick    # the test-suite size

Both runs start from the released model and see the same batches of WordNet (gloss, lemma) pairs
under MultipleNegativesRankingLoss; only the token table trains (the rest of the network is held
fixed, so a row is exactly a lab concept, :mod:`normflow.real._tokens`). Before the runs, the
source statistics of every row are measured on separate batches (:func:`normflow.real.token_statistics`)
and turned into the lab's predictions (docs/theory.md §17.3):

- SGD+decay: the mean-field map of §6 (``nf.theory.predict("sgd", …)``), which assumes a
  scale-invariant row;
- AdamW: §8.2's scale-free map (``nf.theory.predict("adamw", …)``);

each also with ``p`` counted in the run's own batches (fixed before it starts: the count's noise
removed, nothing fitted), and for SGD with the row's measured first-order radial push
``2η(1-ηλ)R·x̂·(-g)`` per sighting added (the §2 identity for a row that is not scale-invariant)
and the **noise ceiling** of a per-row correlation, from each row's measured spread of a
sighting's ``|g|²`` and ``x̂·g`` (§17.3).

Per optimizer: Pearson r, Spearman and the least-squares slope (through the origin) of measured
against predicted ``R_K² - R_0²`` over the rows seen, the validity record (§16's maps are
equilibria: a run under three relaxation times ``2ηλK`` gets "none applies"), the exactness check
on rows never seen (``R_K = (1-ηλ)^K R_0``), and Spearman of the norm change with the word
frequency (what the norm change encodes). ``--optimizers sgd`` runs one of the two. Writes
``<figures>/real_finetune.png`` and ``<out>/results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

FULL = {"steps": 300, "batch_size": 16, "stat_batches": 300, "max_pairs": 2000, "record_every": 50}
QUICK = {"steps": 8, "batch_size": 8, "stat_batches": 8, "max_pairs": 100, "record_every": 4}
SGD = {"lr": 2.0, "weight_decay": 1e-2}  # the largest η of the form 2·10^k that does not raise the loss
ADAMW = {"lr": 1e-3, "weight_decay": 0.1}


def build_parser():
    p = cli.make_parser("real_finetune.py", __doc__.splitlines()[1])
    cli.add_sized_args(p, FULL, QUICK, [("steps", int, "fine-tuning steps per optimizer"),
                                        ("batch_size", int, "pairs per batch"),
                                        ("stat_batches", int, "batches for the source statistics before the runs"),
                                        ("max_pairs", int, "WordNet (gloss, lemma) pairs sampled from"),
                                        ("record_every", int, "record every row's norm every this many steps")])
    p.add_argument("--min-sightings", type=int, default=5,
                   help="compare rows seen in at least this many statistics batches (their p is measured)")
    p.add_argument("--optimizers", default="sgd,adamw", help="comma-separated, from sgd and adamw")
    p.add_argument("--sgd-lr", type=float, default=SGD["lr"], help="SGD learning rate η")
    p.add_argument("--sgd-decay", type=float, default=SGD["weight_decay"], help="SGD weight decay λ")
    p.add_argument("--adamw-lr", type=float, default=ADAMW["lr"], help="AdamW learning rate η")
    p.add_argument("--adamw-decay", type=float, default=ADAMW["weight_decay"], help="AdamW decoupled decay λ")
    return p


def _fit(pred, obs) -> dict:
    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    slope = float(np.sum(pred * obs) / np.sum(pred * pred))  # through the origin: no constant fitted
    from scipy import stats as sps

    return {"slope": slope, "r": float(np.corrcoef(pred, obs)[0, 1]), "n": int(pred.size),
            "spearman": float(sps.spearmanr(pred, obs).statistic),
            "median_rel_error": float(np.median(np.abs(pred - obs)) / np.median(np.abs(obs)))}


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="real_finetune", sizes=(QUICK, FULL))
    cli.check_flags(args, steps=cli.at_least(1), batch_size=cli.at_least(2), stat_batches=cli.at_least(1),
                    max_pairs=cli.at_least(2), min_sightings=cli.at_least(1), record_every=cli.at_least(1), sgd_lr=cli.POSITIVE,
                    adamw_lr=cli.POSITIVE, sgd_decay=cli.FRACTION, adamw_decay=cli.FRACTION)
    if args.steps % args.record_every:
        raise cli.UsageError(f"--record-every: must divide --steps ({args.steps}), got {args.record_every}")
    if args.batch_size > args.max_pairs:
        raise cli.UsageError(f"--batch-size: must be <= --max-pairs ({args.max_pairs}), got {args.batch_size}")
    chosen = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    if not chosen or any(o not in ("sgd", "adamw") for o in chosen) or len(set(chosen)) < len(chosen):
        raise cli.UsageError(f"--optimizers: must name sgd and/or adamw once each, got {args.optimizers!r}")
    # the figure is named after what it shows: real_finetune.png for both optimizers, real_finetune_sgd.png for one
    out = cli.Output(args, "real_finetune" if chosen == ["sgd", "adamw"] else "real_finetune_" + "_".join(chosen))

    import jax
    from scipy import stats as sps

    import normflow as nf
    from normflow import real

    t_start = time.time()
    model = real.load_minilm()
    key = jax.random.key(args.seed)
    pairs = real.gloss_lemma_pairs(max_pairs=args.max_pairs, key=key)
    stat_b = real.pair_batches(pairs, batch_size=args.batch_size, steps=args.stat_batches, key=jax.random.fold_in(key, 1))
    run_b = real.pair_batches(pairs, batch_size=args.batch_size, steps=args.steps, key=jax.random.fold_in(key, 2))
    t0 = time.time()
    st = real.token_statistics(model, stat_b)
    src = real.source_energy_of(st)
    t_stats = time.time() - t0
    r0 = np.asarray(st.norm, float)
    sightings = real.row_sightings(run_b)
    seen_run = sightings > 0
    seen = np.flatnonzero(seen_run & (src["p"] * args.stat_batches >= args.min_sightings))
    special = set(real.load_tokenizer().encode("").ids)
    seen = np.array([t for t in seen if t not in special], int)
    never = np.flatnonzero(~seen_run)
    freq = real.token_frequencies(seen)
    words = freq > 0
    dim = int(model.word.shape[1])

    runs = {}
    for name, lr, wd in ((n, lr, wd) for n, lr, wd in (("sgd", args.sgd_lr, args.sgd_decay),
                                                        ("adamw", args.adamw_lr, args.adamw_decay)) if n in chosen):
        t0 = time.time()
        opt = nf.make_optimizer(name, nf.Hyper(lr=lr, weight_decay=wd))
        ft = real.finetune_table(model, opt, run_b, record_every=args.record_every)
        cli.check_diverged(ft, what=f"{name} fine-tune of the token table", labels=real.token_strings())
        ctx = nf.theory.Context(steps=np.asarray(ft.record_steps), r0=r0[seen], stat_steps=np.array([0]),
                                p=src["p"][seen][None], pw2=src["pw2"][seen][None], mean_sq=src["mean_sq"][seen][None],
                                var=src["var"][seen][None], dim=dim, lr=lr, weight_decay=wd, total_steps=args.steps)
        pred = nf.theory.predict(name, ctx)
        # the same formula told how often each row is actually drawn in this run (the batches are
        # fixed before it starts): removes the sampling noise of p, not the per-sighting noise
        p_run = sightings[seen] / args.steps
        ctx_run = ctx._replace(p=p_run[None], pw2=(src["pw2"][seen] / src["p"][seen] * p_run)[None])
        pred_run = nf.theory.predict(name, ctx_run)
        r_end = ft.norms[-1]
        obs = r_end[seen] ** 2 - r0[seen] ** 2
        pr = np.asarray(pred.norms, float)[-1] ** 2 - r0[seen] ** 2
        # docs/theory.md §16's maps are measured on free, scale-invariant rows; a token row is nearly so (§17.1)
        valid = nf.validity.check_json(nf.validity.check(name, lr=lr, weight_decay=wd, p=p_run))
        valid["note"] = "the maps are measured on free, scale-invariant rows; a token row is only nearly one (§17.1)"
        relax = 2 * lr * wd * args.steps  # e-folds of R² toward the equilibrium the maps measure
        if relax < 3:
            valid.update(inside=None, message=f"validity: the run lasts {relax:.2g} relaxation times (2ηλK); the maps "
                                              f"measure equilibria (docs/theory.md §16), so none applies")
        res = {"lr": lr, "weight_decay": wd, "formula": pred.formula, "section": pred.section, "validity": valid,
               "wall": time.time() - t0, "loss_first": float(ft.loss[0]), "loss_last": float(np.mean(ft.loss[-max(1, args.steps // 10):])),
               "fit": _fit(pr, obs), "obs": obs, "pred": pr,
               "pred_run_p": (pr_run := np.asarray(pred_run.norms, float)[-1] ** 2 - r0[seen] ** 2),
               "fit_run_p": _fit(pr_run, obs),
               # over the rows that are words (word pieces and special tokens have no word frequency);
               # ΔR² carries the start norm through the decay, ΔR²/R_0² does not
               "spearman_change_vs_frequency": float(sps.spearmanr(obs[words], freq[words]).statistic),
               "spearman_pred_vs_frequency": float(sps.spearmanr(pr[words], freq[words]).statistic),
               "spearman_relative_change_vs_frequency": float(sps.spearmanr(obs[words] / r0[seen][words] ** 2,
                                                                            freq[words]).statistic),
               "spearman_relative_pred_vs_frequency": float(sps.spearmanr(pr[words] / r0[seen][words] ** 2,
                                                                          freq[words]).statistic),
               "norms_path_seen_median": np.median(ft.norms[:, seen], axis=1)}
        if name == "sgd":
            # §17.3: the first-order radial push of a row that is not scale-invariant, 2η(1-ηλ)R·x̂·(-g) per
            # sighting, D per sighting held at its start value, on top of the run-counted map
            d_seen = np.asarray(st.radial, float)[seen] / src["p"][seen]
            rad = 2 * lr * (1 - lr * wd) * r0[seen] * sightings[seen] * d_seen
            res["pred_radial"] = pr_run + rad
            res["fit_radial"] = _fit(pr_run + rad, obs)
            # §17.3's noise ceiling: even the exact conditional mean correlates with the outcome at most
            # sqrt(Var(mean) / (Var(mean) + E[noise])), the noise being each sighting's draw of |g|² and x̂·g
            w2s, w4s = np.asarray(st.w2, float)[seen], np.asarray(st.w4, float)[seen]
            rad_var = np.maximum(np.asarray(st.radial_sq, float)[seen] - d_seen**2, 0.0)
            noise = sightings[seen] * (lr**4 * np.maximum(w4s - w2s**2, 0.0) + 4 * lr**2 * (1 - lr * wd) ** 2
                                       * r0[seen] ** 2 * rad_var)
            signal = float(np.var(pr_run + rad))
            res["r_ceiling"] = float(np.sqrt(signal / (signal + np.mean(noise))))
        # a row absent from every batch has no gradient: both optimizers only decay it, (1-ηλ) per step
        expect = (1 - lr * wd) ** args.steps * r0[never]
        res["unseen_max_rel_error"] = float(np.max(np.abs(r_end[never] / expect - 1))) if never.size else None
        runs[name] = res

    if not args.quiet:
        print(f"real model all-MiniLM-L6-v2: token table fine-tuned {args.steps} steps (batches of {args.batch_size} "
              f"WordNet pairs); statistics from {args.stat_batches} batches ({t_stats:.1f}s); {seen.size} rows seen, "
              f"{never.size} never seen")
        for name, res in runs.items():
            f = res["fit"]
            print(f"{name} (η {res['lr']:g}, λ {res['weight_decay']:g}; {res['section']}): ΔR² measured vs predicted "
                  f"r {f['r']:.3f} (Spearman {f['spearman']:+.3f}), slope {f['slope']:.3f}, median error {100 * f['median_rel_error']:.0f}% "
                  f"({res['wall']:.0f}s; loss {res['loss_first']:.3f} → {res['loss_last']:.3f})")
            print("  " + res["validity"]["message"])
            g = res["fit_run_p"]
            print(f"  with p counted in the run's own batches: r {g['r']:.3f}, slope {g['slope']:.3f}, "
                  f"median error {100 * g['median_rel_error']:.0f}%")
            if "fit_radial" in res:
                g = res["fit_radial"]
                print(f"  … and the measured radial push 2ηR·D per sighting: r {g['r']:.3f}, slope {g['slope']:.3f}, "
                      f"median error {100 * g['median_rel_error']:.0f}%; noise ceiling of r {res['r_ceiling']:.3f}")
            print(f"  rows never seen: max |R_K/((1-ηλ)^K R_0) - 1| = {res['unseen_max_rel_error']:.1e}; "
                  f"over the {int(words.sum())} words, Spearman with word frequency of ΔR² "
                  f"{res['spearman_change_vs_frequency']:+.3f} (predicted {res['spearman_pred_vs_frequency']:+.3f}), of "
                  f"ΔR²/R_0² {res['spearman_relative_change_vs_frequency']:+.3f} "
                  f"(predicted {res['spearman_relative_pred_vs_frequency']:+.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs) + 1, figsize=(5.4 * (len(runs) + 1), 5))
    lf = np.log10(np.maximum(freq, 1e-9))
    for ax, name in zip(axes[:-1], runs):
        res = runs[name]
        cmap = plt.get_cmap("viridis").with_extremes(under="0.6")
        sc = ax.scatter(res["pred"], res["obs"], c=lf, s=8, cmap=cmap, label="lab formula",
                        vmin=float(np.min(lf[freq > 0])) if np.any(freq > 0) else None)
        if "pred_radial" in res:
            ax.scatter(res["pred_radial"], res["obs"], s=8, facecolors="none", edgecolors="tab:red", lw=0.5,
                       label="run-counted p + measured radial push 2ηR·D")
        shown = np.concatenate([res["obs"], res["pred"], res.get("pred_radial", res["pred"])])
        lim = np.percentile(shown, [0.2, 99.8])  # a runaway row would squash the rest into a dot
        lim = lim + np.array([-1, 1]) * 0.05 * (lim[1] - lim[0])
        off = int(np.sum((res["obs"] < lim[0]) | (res["obs"] > lim[1]) | (res["pred"] < lim[0]) | (res["pred"] > lim[1])))
        ax.plot(lim, lim, "k--", lw=1, label="y = x (theory)")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel(f"predicted R_K² - R_0² ({res['section']})")
        ax.set_ylabel("measured R_K² - R_0² (token row)")
        extra = (f"\nwith run-counted p and radial push: r {res['fit_radial']['r']:.2f}, slope "
                 f"{res['fit_radial']['slope']:.2f}; noise ceiling of r {res['r_ceiling']:.2f}" if "fit_radial" in res else "")
        ax.set_title(f"{name} (η {res['lr']:g}, λ {res['weight_decay']:g}): formula r {res['fit']['r']:.2f}, slope "
                     f"{res['fit']['slope']:.2f}{extra}" + (f"\n{off} of {res['obs'].size} rows off the axes" if off else ""),
                     fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
        fig.colorbar(sc, ax=ax, label="log10 word frequency (wordfreq; grey: none)", extend="min")
    ax = axes[-1]
    for name, c in (("sgd", "tab:blue"), ("adamw", "tab:orange")):
        if name not in runs:
            continue
        res = runs[name]
        order = np.argsort(lf)
        order = order[freq[order] > 0]  # word pieces and rows without a wordfreq entry have no frequency
        bins = np.array_split(order, min(10, max(1, order.size // 5)))
        ax.plot([np.median(lf[b]) for b in bins], [np.median(res["obs"][b] / r0[seen][b] ** 2) for b in bins], "-o",
                color=c, ms=3, label=f"{name} measured (ρ = {res['spearman_relative_change_vs_frequency']:+.2f}, "
                      f"predicted {res['spearman_relative_pred_vs_frequency']:+.2f})")
        ax.plot([np.median(lf[b]) for b in bins], [np.median(res["pred"][b] / r0[seen][b] ** 2) for b in bins], "--",
                color=c, label=f"{name} predicted")
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xlabel("log10 word frequency (wordfreq)")
    ax.set_ylabel("relative change (R_K² - R_0²)/R_0², median per bin")
    ax.set_title("what the norm change encodes, by optimizer\n(the rows that are words; ρ: Spearman of the relative change)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"all-MiniLM-L6-v2 token table fine-tuned {args.steps} steps on WordNet pairs: measured (solid/points) "
                 f"vs the lab's prediction (dashed)", fontsize=10)
    fig.tight_layout()
    out.savefig(fig)
    plt.close(fig)

    results = {
        "model": {"name": "all-MiniLM-L6-v2", "package": real.MODEL_PACKAGE, "trained": "token table only"},
        "data": {"words": int(words.sum()), "rows": int(seen.size), "pairs": len(pairs), "steps": args.steps, "batch_size": args.batch_size, "stat_batches": args.stat_batches},
        "headline": {name: {k: v for k, v in res.items() if k in ("fit", "fit_radial", "fit_run_p", "spearman_change_vs_frequency",
                                                                   "spearman_pred_vs_frequency", "unseen_max_rel_error", "validity", "r_ceiling",
                                                                   "spearman_relative_change_vs_frequency",
                                                                   "spearman_relative_pred_vs_frequency",
                                                                   "formula", "section", "lr", "weight_decay")}
                     for name, res in runs.items()},
        "timings": {"statistics": t_stats, **{name: res["wall"] for name, res in runs.items()},
                    "total": time.time() - t_start},
        "per_token": {"id": seen, "frequency": freq, "r0": r0[seen], "p": src["p"][seen], "p_run": sightings[seen] / args.steps,
                      **{f"{name}_{k}": runs[name][k] for name in runs for k in ("obs", "pred", "pred_run_p", "pred_radial")
                         if k in runs[name]}},
        "record_steps": np.arange(0, args.steps + 1, args.record_every),
        "median_norm_path": {name: runs[name]["norms_path_seen_median"] for name in runs},
    }
    path = out.write(results)
    print(f"total {time.time() - t_start:.1f}s; results: {path}  figure: {out.figure}")


if __name__ == "__main__":
    cli.script(main)
