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
  scale-invariant row; and the same map with the row's measured first-order radial push
  ``2η(1-ηλ)R·D`` per step added (the §2 identity for a row that is not scale-invariant);
- AdamW: §8.2's scale-free map (``nf.theory.predict("adamw", …)``).

Per optimizer: Pearson r and the least-squares slope of measured against predicted ``R_K² - R_0²``
over the rows seen, the exactness check on rows never seen (SGD: ``R_K = (1-ηλ)^K R_0``), and
Spearman of the norm change with the word frequency (what the norm change encodes). Writes
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
    for name, typ, helptext in [("steps", int, "fine-tuning steps per optimizer"),
                                ("batch_size", int, "pairs per batch"),
                                ("stat_batches", int, "batches for the source statistics before the runs"),
                                ("max_pairs", int, "WordNet (gloss, lemma) pairs sampled from"),
                                ("record_every", int, "record every row's norm every this many steps")]:
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=f"{helptext} (default {FULL[name]}, --quick {QUICK[name]})")
    p.add_argument("--min-sightings", type=int, default=5,
                   help="compare rows seen in at least this many statistics batches (their p is measured)")
    p.add_argument("--sgd-lr", type=float, default=SGD["lr"], help="SGD learning rate η")
    p.add_argument("--sgd-decay", type=float, default=SGD["weight_decay"], help="SGD weight decay λ")
    p.add_argument("--adamw-lr", type=float, default=ADAMW["lr"], help="AdamW learning rate η")
    p.add_argument("--adamw-decay", type=float, default=ADAMW["weight_decay"], help="AdamW decoupled decay λ")
    return p


def _fit(pred, obs) -> dict:
    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    slope = float(np.sum(pred * obs) / np.sum(pred * pred))  # through the origin: no constant fitted
    return {"slope": slope, "r": float(np.corrcoef(pred, obs)[0, 1]), "n": int(pred.size),
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
    out = cli.Output(args, "real_finetune")

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
    seen_run = real.rows_seen(run_b)
    seen = np.flatnonzero(seen_run & (src["p"] * args.stat_batches >= args.min_sightings))
    special = set(real.load_tokenizer().encode("").ids)
    seen = np.array([t for t in seen if t not in special], int)
    never = np.flatnonzero(~seen_run)
    freq = real.token_frequencies(seen)
    dim = int(model.word.shape[1])

    runs = {}
    for name, lr, wd in (("sgd", args.sgd_lr, args.sgd_decay), ("adamw", args.adamw_lr, args.adamw_decay)):
        t0 = time.time()
        opt = nf.make_optimizer(name, nf.Hyper(lr=lr, weight_decay=wd))
        ft = real.finetune_table(model, opt, run_b, record_every=args.record_every)
        cli.check_diverged(ft, what=f"{name} fine-tune of the token table", labels=real.token_strings())
        ctx = nf.theory.Context(steps=np.asarray(ft.record_steps), r0=r0[seen], stat_steps=np.array([0]),
                                p=src["p"][seen][None], pw2=src["pw2"][seen][None], mean_sq=src["mean_sq"][seen][None],
                                var=src["var"][seen][None], dim=dim, lr=lr, weight_decay=wd, total_steps=args.steps)
        pred = nf.theory.predict(name, ctx)
        r_end = ft.norms[-1]
        obs = r_end[seen] ** 2 - r0[seen] ** 2
        pr = np.asarray(pred.norms, float)[-1] ** 2 - r0[seen] ** 2
        res = {"lr": lr, "weight_decay": wd, "formula": pred.formula, "section": pred.section,
               "wall": time.time() - t0, "loss_first": float(ft.loss[0]), "loss_last": float(np.mean(ft.loss[-max(1, args.steps // 10):])),
               "fit": _fit(pr, obs), "obs": obs, "pred": pr,
               "spearman_change_vs_frequency": float(sps.spearmanr(obs, freq).statistic),
               "spearman_pred_vs_frequency": float(sps.spearmanr(pr, freq).statistic),
               "norms_path_seen_median": np.median(ft.norms[:, seen], axis=1)}
        if name == "sgd":
            # §17.3: the first-order radial push of a row that is not scale-invariant, D held at its start value
            rad = 2 * lr * (1 - lr * wd) * args.steps * r0[seen] * np.asarray(st.radial, float)[seen]
            res["pred_radial"] = pr + rad
            res["fit_radial"] = _fit(pr + rad, obs)
            expect = (1 - lr * wd) ** args.steps * r0[never]
            res["unseen_max_rel_error"] = float(np.max(np.abs(r_end[never] / expect - 1))) if never.size else None
        else:
            res["unseen_max_rel_error"] = float(np.max(np.abs(r_end[never] / ((1 - lr * wd) ** args.steps * r0[never]) - 1))) \
                if never.size else None
        runs[name] = res

    if not args.quiet:
        print(f"real model all-MiniLM-L6-v2: token table fine-tuned {args.steps} steps (batches of {args.batch_size} "
              f"WordNet pairs); statistics from {args.stat_batches} batches ({t_stats:.1f}s); {seen.size} rows seen, "
              f"{never.size} never seen")
        for name, res in runs.items():
            f = res["fit"]
            print(f"{name} (η {res['lr']:g}, λ {res['weight_decay']:g}; {res['section']}): ΔR² measured vs predicted "
                  f"r {f['r']:.3f}, slope {f['slope']:.3f}, median error {100 * f['median_rel_error']:.0f}% "
                  f"({res['wall']:.0f}s; loss {res['loss_first']:.3f} → {res['loss_last']:.3f})")
            if "fit_radial" in res:
                g = res["fit_radial"]
                print(f"  with the measured radial push 2ηR·D: r {g['r']:.3f}, slope {g['slope']:.3f}, "
                      f"median error {100 * g['median_rel_error']:.0f}%")
            print(f"  rows never seen: max |R_K/((1-ηλ)^K R_0) - 1| = {res['unseen_max_rel_error']:.1e}; "
                  f"Spearman(ΔR², word frequency) = {res['spearman_change_vs_frequency']:+.3f} "
                  f"(predicted {res['spearman_pred_vs_frequency']:+.3f})")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    lf = np.log10(np.maximum(freq, 1e-9))
    for ax, name in zip(axes[:2], runs):
        res = runs[name]
        sc = ax.scatter(res["pred"], res["obs"], c=lf, s=8, cmap="viridis", label="lab formula")
        if "pred_radial" in res:
            ax.scatter(res["pred_radial"], res["obs"], s=8, facecolors="none", edgecolors="tab:red", lw=0.5,
                       label="+ measured radial push 2ηR·D")
        lim = np.array([min(np.min(res["obs"]), np.min(res["pred"])), max(np.max(res["obs"]), np.max(res["pred"]))])
        ax.plot(lim, lim, "k--", lw=1, label="y = x (theory)")
        ax.set_xlabel(f"predicted R_K² - R_0² ({res['section']})")
        ax.set_ylabel("measured R_K² - R_0² (token row)")
        ax.set_title(f"{name}: r {res['fit']['r']:.2f}, slope {res['fit']['slope']:.2f}", fontsize=9)
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="log10 word frequency (wordfreq)")
    ax = axes[2]
    for name, c in (("sgd", "tab:blue"), ("adamw", "tab:orange")):
        res = runs[name]
        order = np.argsort(lf)
        bins = np.array_split(order, min(10, max(1, order.size // 5)))
        ax.plot([np.median(lf[b]) for b in bins], [np.median(res["obs"][b] / r0[seen][b] ** 2) for b in bins], "-o",
                color=c, ms=3, label=f"{name} measured (ρ = {res['spearman_change_vs_frequency']:+.2f})")
        ax.plot([np.median(lf[b]) for b in bins], [np.median(res["pred"][b] / r0[seen][b] ** 2) for b in bins], "--",
                color=c, label=f"{name} predicted")
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xlabel("log10 word frequency (wordfreq)")
    ax.set_ylabel("relative change (R_K² - R_0²)/R_0², median per bin")
    ax.set_title("what the norm change encodes, by optimizer", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"all-MiniLM-L6-v2 token table fine-tuned {args.steps} steps on WordNet pairs: measured (solid/points) "
                 f"vs the lab's prediction (dashed)", fontsize=10)
    fig.tight_layout()
    out.savefig(fig)
    plt.close(fig)

    results = {
        "model": {"name": "all-MiniLM-L6-v2", "package": real.MODEL_PACKAGE, "trained": "token table only"},
        "data": {"pairs": len(pairs), "steps": args.steps, "batch_size": args.batch_size, "stat_batches": args.stat_batches},
        "headline": {name: {k: v for k, v in res.items() if k in ("fit", "fit_radial", "spearman_change_vs_frequency",
                                                                   "spearman_pred_vs_frequency", "unseen_max_rel_error",
                                                                   "formula", "section", "lr", "weight_decay")}
                     for name, res in runs.items()},
        "timings": {"statistics": t_stats, **{name: res["wall"] for name, res in runs.items()},
                    "total": time.time() - t_start},
        "per_token": {"id": seen, "frequency": freq, "r0": r0[seen], "p": src["p"][seen],
                      **{f"{name}_{k}": runs[name][k] for name in runs for k in ("obs", "pred")},
                      "sgd_pred_radial": runs["sgd"]["pred_radial"]},
        "record_steps": np.arange(0, args.steps + 1, args.record_every),
        "median_norm_path": {name: runs[name]["norms_path_seen_median"] for name in runs},
    }
    path = out.write(results)
    print(f"total {time.time() - t_start:.1f}s; results: {path}  figure: {out.figure}")


if __name__ == "__main__":
    cli.script(main)
