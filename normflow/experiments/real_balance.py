#!/usr/bin/env python
"""Paper Fig. 3 and Fig. 5 on the real model: per-token gradient statistics of all-MiniLM-L6-v2's
token table under its own contrastive loss, and the balance's predicted norm against the observed.

    normflow real_balance            # 256 batches of 16 WordNet (gloss, lemma) pairs (a few minutes on 2 cores)
    normflow real_balance --quick    # the test-suite size

The pairs are WordNet noun glosses and their lemmas (:func:`normflow.real.gloss_lemma_pairs`);
the loss is sentence-transformers' MultipleNegativesRankingLoss (InfoNCE query → in-batch
documents, scale 20) on MiniLM's mean pooling. For every token row ``t`` it measures
(:func:`normflow.real.token_statistics`, docs/theory.md §17.1) the batch frequency ``p``, the
gradient energy ``W² = E|g|²``, its variance part ``V²``, the radial drift ``D = E x̂·(-g)`` and
the radial share of the energy — the part a free row has not: the first LayerNorm sees
``word + position + type``, so a token row's norm is not scale-invariant.

The balance (docs/theory.md §17.2) is solved for each row seen in at least ``--min-sightings``
batches, in two scale-free forms (their scale ``η/λ`` of the model's own training is not known
to this data, so the test is the log-log slope and r, as the paper's Fig. 3):

- current state, ``R² ∝ p·E|g|²`` (§6 with the energy at the row's own radius; no ``R`` on the
  right-hand side);
- the paper's unit-radius form, ``R⁴ ∝ pW²₁ = R²·p·E|g|²`` — which carries ``R^½`` on its
  right-hand side, so part of its slope and ``r`` is the observed norm itself.

Writes ``<figures>/real_balance.png`` and ``<out>/results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

FULL = {"batches": 256, "batch_size": 16, "max_pairs": 20000}
QUICK = {"batches": 6, "batch_size": 8, "max_pairs": 400}


def build_parser():
    p = cli.make_parser("real_balance.py", __doc__.splitlines()[1])
    p.add_argument("--batches", type=int, default=None, help="minibatches the statistics average over "
                   f"(default {FULL['batches']}, --quick {QUICK['batches']})")
    p.add_argument("--batch-size", type=int, default=None, help=f"pairs per batch (default {FULL['batch_size']}, "
                   f"--quick {QUICK['batch_size']})")
    p.add_argument("--max-pairs", type=int, default=None, help="WordNet (gloss, lemma) pairs sampled from "
                   f"(default {FULL['max_pairs']}, --quick {QUICK['max_pairs']})")
    p.add_argument("--min-sightings", type=int, default=3, help="rows seen in fewer batches are left out of the fit")
    return p


def balance_fit(pred, obs) -> dict:
    """Log-log least-squares slope and Pearson r of ``obs`` on ``pred`` (both > 0), and n."""
    lx, ly = np.log(np.asarray(pred, float)), np.log(np.asarray(obs, float))
    slope, icpt = np.polyfit(lx, ly, 1)
    return {"slope": float(slope), "intercept": float(icpt), "r": float(np.corrcoef(lx, ly)[0, 1]), "n": int(lx.size)}


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="real_balance", sizes=(QUICK, FULL))
    cli.check_flags(args, batches=cli.at_least(1), batch_size=cli.at_least(2), max_pairs=cli.at_least(2),
                    min_sightings=cli.at_least(1))
    if args.batch_size > args.max_pairs:
        raise cli.UsageError(f"--batch-size: must be <= --max-pairs ({args.max_pairs}), got {args.batch_size}")
    out = cli.Output(args, "real_balance")

    import jax

    from normflow import real

    t_start = time.time()
    model = real.load_minilm()
    pairs = real.gloss_lemma_pairs(max_pairs=args.max_pairs, key=jax.random.key(args.seed))
    batches = real.pair_batches(pairs, batch_size=args.batch_size, steps=args.batches,
                                key=jax.random.fold_in(jax.random.key(args.seed), 1))
    t0 = time.time()
    st = real.token_statistics(model, batches)
    t_stats = time.time() - t0
    norm, pr = np.asarray(st.norm, float), np.asarray(st.p, float)
    w2, v2 = np.asarray(st.w2, float), np.asarray(st.v2, float)
    drift, rfrac = np.asarray(st.radial, float), np.asarray(st.radial_fraction, float)
    keep = np.flatnonzero(pr * args.batches >= args.min_sightings)
    special = set(real.load_tokenizer().encode("").ids)  # [CLS], [SEP]: in every sequence
    keep = np.array([t for t in keep if t not in special], int)
    if keep.size < 3:
        raise cli.UsageError(f"--min-sightings: only {keep.size} token rows were seen {args.min_sightings}+ times; "
                             "use more --batches")
    energy = pr * w2  # p·E|g|² per step at the row's own radius
    pred_state = np.sqrt(energy[keep])
    pred_unit = (norm[keep] ** 2 * energy[keep]) ** 0.25
    fit_state = balance_fit(pred_state, norm[keep])
    fit_unit = balance_fit(pred_unit, norm[keep])
    # the radial term's share of the balance's right-hand side, 2RD against ηpE|g|², needs η itself:
    # at the model's own fine-tuning step (AdamW, η = 2e-5 — its model card) and an SGD-like step
    # of the same size, |2RD| / (η pE|g|²) per row
    eta_card = 2e-5
    radial_ratio = np.abs(2 * norm[keep] * drift[keep]) / (eta_card * energy[keep])
    vocab = real.load_tokenizer().get_vocab()
    inv = {i: w for w, i in vocab.items()}

    if not args.quiet:
        print(f"real model all-MiniLM-L6-v2; {len(pairs)} WordNet (gloss, lemma) pairs, {args.batches} batches of "
              f"{args.batch_size}; statistics in {t_stats:.1f}s")
        print(f"token rows seen: {int(np.sum(pr > 0))}; in the fit (seen in >= {args.min_sightings} batches, "
              f"[CLS]/[SEP] left out): {keep.size}")
        print(f"radial share of a sighting's gradient energy E(x̂·g)²/E|g|²: median {np.median(rfrac[keep]):.2e}, "
              f"max {np.max(rfrac[keep]):.2e} (a free row: 0)")
        print(f"balance, current state R² ∝ p·E|g|²:  slope {fit_state['slope']:.3f}, r {fit_state['r']:.3f} "
              f"(paper, MiniLM-L12/CLIP: 0.88, 0.97)")
        print(f"balance, unit-radius form R⁴ ∝ R²·p·E|g|² (carries R^1/2): slope {fit_unit['slope']:.3f}, "
              f"r {fit_unit['r']:.3f}")
        print(f"|2RD| / (η·pE|g|²) at η = {eta_card:g}: median {np.median(radial_ratio):.3g} — the radial term "
              f"{'dominates' if np.median(radial_ratio) > 1 else 'is small'}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    order = keep[np.argsort(norm[keep])]
    logf = np.log10(np.maximum(pr[keep], 1e-12))
    ax = axes[0, 0]
    ax.semilogy(np.arange(order.size), pr[order] * v2[order], "-", color="tab:blue", lw=1, label="p·V² (tangent-ish variance)")
    ax.semilogy(np.arange(order.size), np.abs(drift[order]), "-", color="tab:red", lw=1, label="|D| = |E x̂·(-g)| per step")
    ax.set_xlabel("token rows, sorted by observed norm |word[t]| (rank)")
    ax.set_ylabel("per-step statistic (loss-gradient units², units)")
    ax.set_title("Fig. 5 (top) rebuilt: p·V² and |D| sorted by norm", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    sc = ax.scatter(pr[keep] * v2[keep], norm[keep], c=logf, s=8, cmap="viridis")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("p·V² per step (measured)")
    ax.set_ylabel("observed row norm |word[t]|")
    ax.set_title("Fig. 5 (bottom): V² against norm", fontsize=9)
    fig.colorbar(sc, ax=ax, label="log10 batch frequency p")
    for ax, pred, fit, name in ((axes[1, 0], pred_state, fit_state, "current state: R ∝ (p·E|g|²)^1/2"),
                                (axes[1, 1], pred_unit, fit_unit, "unit radius (paper): R ∝ (R²p·E|g|²)^1/4")):
        scale = np.exp(np.mean(np.log(norm[keep]) - np.log(pred)))  # drawn on the observed scale (η/λ unknown)
        ax.scatter(scale * pred, norm[keep], c=logf, s=8, cmap="viridis")
        lim = np.array([min(np.min(scale * pred), np.min(norm[keep])), max(np.max(scale * pred), np.max(norm[keep]))])
        ax.plot(lim, lim, "k--", lw=1, label="y = x (theory)")
        ax.plot(lim, np.exp(fit["intercept"]) * (lim / scale) ** fit["slope"], "-", color="tab:orange", lw=1.5,
                label=f"measured fit: slope {fit['slope']:.2f}, r {fit['r']:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"predicted norm, {name} (×{scale:.3g}: η/λ not known)")
        ax.set_ylabel("observed row norm |word[t]|")
        ax.set_title(f"Fig. 3 rebuilt, {name.split(':')[0]} (paper: slope 0.88, r 0.97)", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"all-MiniLM-L6-v2 token table under MNRL on WordNet pairs: {keep.size} rows, {args.batches} batches",
                 fontsize=10)
    fig.tight_layout()
    out.savefig(fig)
    plt.close(fig)

    top = keep[np.argsort(-pr[keep])][:20]
    results = {
        "model": {"name": "all-MiniLM-L6-v2", "package": real.MODEL_PACKAGE, "loss": "MNRL (InfoNCE, scale 20)"},
        "data": {"pairs": len(pairs), "batches": args.batches, "batch_size": args.batch_size},
        "headline": {
            "rows_seen": int(np.sum(pr > 0)), "rows_fit": int(keep.size),
            "balance_current_state": fit_state, "balance_unit_radius": fit_unit,
            "paper": {"slope": 0.88, "r": 0.97},
            "radial_share_median": float(np.median(rfrac[keep])), "radial_share_max": float(np.max(rfrac[keep])),
            "radial_over_push_at_model_card_lr_median": float(np.median(radial_ratio)),
        },
        "timings": {"statistics": t_stats, "total": time.time() - t_start},
        "most_frequent": [inv.get(int(t), "?") for t in top],
        "per_token": {"token": [inv.get(int(t), "?") for t in keep], "id": keep, "norm": norm[keep], "p": pr[keep],
                      "w2": w2[keep], "v2": v2[keep], "drift": drift[keep], "radial_share": rfrac[keep]},
    }
    path = out.write(results)
    print(f"total {time.time() - t_start:.1f}s; results: {path}  figure: {out.figure}")


if __name__ == "__main__":
    cli.script(main)
