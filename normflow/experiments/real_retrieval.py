#!/usr/bin/env python
"""Paper Fig. 4 and Fig. 6 on the real model: does cos(q,d)·|d|^α beat cosine for all-MiniLM-L6-v2
on a WordNet gloss ↔ word benchmark?

    python sims/real_retrieval.py            # 4000 synsets (a few minutes on 2 cores)
    python sims/real_retrieval.py --quick    # 300 synsets (the test-suite size)

The benchmark (:func:`normflow.real._retrieval.build_benchmark`): ``--synsets`` WordNet noun
synsets, sampled evenly over the depths 2 to the deepest; documents are their distinct lemma
strings, queries their glosses (definitions; the quoted examples dropped); relevance 2 for the
synset's own lemmas, 1 for its direct hypernyms' and hyponyms' lemmas among the documents. The
reverse direction asks with a word for its glosses. Each direction's queries are split into
validation (25 %, to tune the baselines) and test (the rest: everything reported is on it).

Measured (all on the unnormalised mean-pooled embeddings):

- NDCG@k of ``cos·|d|^α`` over the α grid relative to cosine (α = 0), overall and per depth bin
  of the target synset (≤5, 6–7, 8–9, ≥10); the best gain on each side (α < 0, α > 0) against a
  null in which the document norms are permuted among the documents (``--permutations`` times:
  its 95th percentile of the same best-gain statistic) and with a paired bootstrap interval;
- ``cos·|q|^α_q·|d|^α_d`` on a 2-D grid (gloss → word): |q|^α_q is one positive factor per query,
  so it cannot change a query's ranking; the experiment shows the grid is exactly flat in α_q;
- the norm-side baselines, relative to cosine: centering (documents, both sides), all-but-the-top,
  querybank normalisation with the inverted softmax (β chosen on the validation queries), CSLS,
  and the α chosen on the validation queries.

Writes ``<figures>/real_retrieval.png`` and ``<out>/results.json``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from normflow import cli

FULL = {"synsets": 4000, "permutations": 20}
QUICK = {"synsets": 300, "permutations": 4}
GAIN_MIN = 0.02  # as the synthetic experiment: "gain" = best gain >= 2 % and above the null's q95
FLAT_MAX = 0.01  # "flat": best gain < 1 %, or not above the null's q95
QUERY_ALPHA_STEP = 2.0  # α_q grid of the 2-D check (α_d: the full grid)
VAL_FRACTION = 0.25
BOOTSTRAP = 1000
DIRECTIONS = ("gloss→word", "word→gloss")


def build_parser():
    p = cli.make_parser("real_retrieval.py", __doc__.splitlines()[1])
    p.add_argument("--synsets", type=int, default=None,
                   help=f"WordNet noun synsets in the benchmark (default {FULL['synsets']}, --quick {QUICK['synsets']})")
    p.add_argument("--permutations", type=int, default=None,
                   help=f"shuffled-norm null draws per direction (default {FULL['permutations']}, "
                        f"--quick {QUICK['permutations']})")
    p.add_argument("--k", type=int, default=10, help="NDCG cutoff")
    p.add_argument("--alpha-min", type=float, default=-4.0, help="smallest α (score cos·|d|^α)")
    p.add_argument("--alpha-max", type=float, default=2.0, help="largest α")
    p.add_argument("--alpha-step", type=float, default=0.25, help="α grid spacing (α = 0 is on the grid)")
    p.add_argument("--ungraded", action="store_true", help="no grade-1 relevance for hypernym/hyponym lemmas")
    return p


def _check(args):
    cli.check_flags(args, synsets=cli.at_least(20), permutations=cli.at_least(1), k=cli.at_least(1))
    if args.synsets > 40000:
        raise cli.UsageError(f"--synsets: at most 40000 (the score matrices grow as its square), got {args.synsets}")
    cli.check_alpha_grid(args, max_points=400)


def side_best(alphas, normalised) -> dict:
    """Best relative NDCG on each side of α = 0: ``{"neg": (α, gain), "pos": (α, gain)}``,
    gain = max normalised − 1 over α < 0 (resp. α > 0); ties go to the α closest to 0."""
    a = np.asarray(alphas)
    v = np.asarray(normalised, np.float64)
    out = {}
    for side, m in (("neg", a < 0), ("pos", a > 0)):
        vs, as_ = v[m], a[m]
        if not np.all(np.isfinite(vs)):
            out[side] = (float("nan"), float("nan"))
            continue
        top = np.flatnonzero(vs == vs.max())
        i = top[np.argmin(np.abs(as_[top]))]
        out[side] = (float(as_[i]), float(vs[i] - 1.0))
    return out


def regime(gain, null_q95) -> str:
    """gain / flat / marginal, the synthetic experiment's rule (GAIN_MIN, FLAT_MAX)."""
    if not np.isfinite(gain):
        return "undefined"
    if gain < FLAT_MAX or gain <= null_q95:
        return "flat"
    return "gain" if gain >= GAIN_MIN else "marginal"


def _curve_summary(alphas, per_query, null_pq, mask, i0, rng):
    """The relative curve of the queries in ``mask``, its best gains per side and overall, the
    null's best gains (same statistic, same queries) and bootstrap intervals."""
    from normflow.retrieval import best_alpha

    ndcg = per_query[:, mask].mean(1)
    norm, a_best, g_best = best_alpha(alphas, ndcg)
    sides = side_best(alphas, norm)
    null_curves = null_pq[:, :, mask].mean(2)  # [P, A]
    null_norm = null_curves / null_curves[:, i0:i0 + 1]
    null_sides = [side_best(alphas, c) for c in null_norm]
    null_best = np.array([best_alpha(alphas, c)[2] for c in null_curves])
    rec = {"n_queries": int(mask.sum()), "cosine_ndcg": float(ndcg[i0]), "ndcg": ndcg, "normalised": norm,
           "best_alpha": a_best, "best_gain": g_best,
           "null_best_gain_q95": float(np.quantile(null_best, 0.95)),
           "null_normalised_q05": np.quantile(null_norm, 0.05, axis=0),
           "null_normalised_q95": np.quantile(null_norm, 0.95, axis=0)}
    for side in ("neg", "pos"):
        a, g = sides[side]
        ng = np.array([s[side][1] for s in null_sides])
        q95 = float(np.quantile(ng, 0.95))
        j = int(np.flatnonzero(alphas == a)[0]) if np.isfinite(a) else i0
        lo, hi = _bootstrap(per_query[j, mask], per_query[i0, mask], rng)
        rec[f"best_{side}"] = {"alpha": a, "gain": g, "gain_ci95": [lo, hi], "null_gain_q95": q95,
                               "null_gain_max": float(ng.max()), "above_null_q95": bool(g > q95),
                               "regime": regime(g, q95)}
    rec["regime"] = regime(g_best, rec["null_best_gain_q95"])
    return rec


def _bootstrap(a, b, rng):
    from normflow.real import _retrieval as rr

    return rr.paired_bootstrap(a, b, rng=rng, num=BOOTSTRAP)


def _direction(name, q_emb, d_emb, bank_emb, rel, depth, val, alphas, args, rng, query_alphas=None):
    """Everything measured for one direction (queries ``q_emb`` against documents ``d_emb``)."""
    from normflow.real import _retrieval as rr
    from normflow.retrieval import best_alpha

    t = {}
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    answer = rel.max(1) > 0
    test, valm = answer & ~val, answer & val
    t0 = time.time()
    q_norm, d_norm, cos = rr.cosines(q_emb, d_emb)
    pq = rr.alpha_ndcg(cos, q_norm, d_norm, rel, alphas, k=args.k)  # [A, Q] all queries
    t["curves"] = time.time() - t0

    t0 = time.time()
    ti = np.flatnonzero(test)
    cos_t, qn_t, rel_t = cos[ti], q_norm[ti], rel[ti]
    null = rr.shuffled_norm_ndcg(cos_t, qn_t, d_norm, rel_t, alphas, rng=rng, num=args.permutations, k=args.k)
    t["null"] = time.time() - t0
    pq_t, dep_t = pq[:, ti], depth[ti]
    whole = np.ones(ti.size, bool)
    overall = _curve_summary(alphas, pq_t, null, whole, i0, rng)
    per_depth = []
    for (lo, hi), m in zip(rr.DEPTH_BINS, rr.depth_bin_masks(dep_t)):
        label = f"≤{hi}" if lo == 0 else (f"≥{lo}" if hi >= 10**6 else f"{lo}–{hi}")
        if m.sum() < 2:
            per_depth.append({"bin": label, "lo": lo, "hi": hi, "n_queries": int(m.sum())})
            continue
        per_depth.append({"bin": label, "lo": lo, "hi": hi, **_curve_summary(alphas, pq_t, null, m, i0, rng)})

    heat = None
    if query_alphas is not None:
        t0 = time.time()
        grid = rr.query_alpha_grid(cos_t, qn_t, d_norm, rel_t, query_alphas, alphas, k=args.k)  # [Aq, A, Qt]
        mean = grid.mean(2)
        heat = {"query_alphas": query_alphas, "alphas": alphas, "ndcg": mean, "normalised": mean / mean[:, i0:i0 + 1].mean(),
                "max_abs_per_query_deviation_over_query_alpha": float(np.abs(grid - grid[:1]).max()),
                "max_abs_mean_deviation_over_query_alpha": float(np.abs(mean - mean[:1]).max()),
                "row_at_query_alpha_0_equals_curve": bool(np.array_equal(grid[list(query_alphas).index(0.0)], pq_t))}
        heat["exactly_flat"] = heat["max_abs_per_query_deviation_over_query_alpha"] == 0.0
        t["query_alpha_grid"] = time.time() - t0

    # Baselines on the test queries, their one parameter tuned on the validation queries.
    t0 = time.time()
    vi = np.flatnonzero(valm)
    val_curve = pq[:, vi].mean(1)
    _, alpha_val, _ = best_alpha(alphas, val_curve)
    bank_cos = np.asarray(rr.cosines(bank_emb, d_emb)[2])
    beta, beta_curve = rr.choose_beta(np.asarray(cos[vi]), bank_cos, rel[vi], k=args.k)
    scores = rr.baseline_scores(q_emb[ti], d_emb, bank_emb, beta=beta, cos=np.asarray(cos_t), bank_cos=bank_cos)
    base = {bname: rr.query_ndcg(s, rel_t, args.k) for bname, s in scores.items()}
    # cosine is α = 0 (the same scores; the NDCG arithmetic may differ in the last float32 bit)
    cos_check = float(np.abs(base["cosine"] - pq_t[i0]).max())
    base["cosine"] = cos0 = pq_t[i0]
    ja = int(np.flatnonzero(alphas == alpha_val)[0])
    base["alpha_val"] = pq_t[ja]
    base["alpha_oracle"] = pq_t[int(np.flatnonzero(alphas == overall["best_alpha"])[0])]
    baselines: dict[str, Any] = {}
    for bname, nd in base.items():
        lo, hi = _bootstrap(nd, cos0, rng)
        baselines[bname] = {"ndcg": float(nd.mean()), "relative": float(nd.mean() / cos0.mean()), "ci95": [lo, hi]}
    baselines["alpha_val"]["alpha"] = alpha_val
    baselines["alpha_oracle"]["alpha"] = overall["best_alpha"]
    baselines["qb_norm"]["beta"] = beta
    baselines["qb_norm"]["val_ndcg_by_beta"] = dict(zip(map(str, rr.BETAS), beta_curve.tolist()))
    baselines["cosine_recomputed_max_abs_diff"] = cos_check
    t["baselines"] = time.time() - t0

    qn, dn = np.asarray(q_norm, np.float64), np.asarray(d_norm, np.float64)
    return {
        "direction": name, "n_queries": int(rel.shape[0]), "n_docs": int(rel.shape[1]), "n_test": int(test.sum()),
        "n_val": int(valm.sum()), "n_bank": int(bank_emb.shape[0]),
        "relevant_per_query": float((rel > 0).sum(1).mean()), "grade1_per_query": float((rel == 1).sum(1).mean()),
        "query_norm": {"mean": float(qn.mean()), "cv": float(qn.std() / qn.mean())},
        "doc_norm": {"mean": float(dn.mean()), "cv": float(dn.std() / dn.mean())},
        "overall": overall, "per_depth": per_depth, "query_alpha_grid": heat, "baselines": baselines,
        "test_queries": {"what": "per test query: its target depth, NDCG@k at α = 0 and at the overall best α",
                         "depth": dep_t, "ndcg_cosine": pq_t[i0],
                         "ndcg_best": pq_t[int(np.flatnonzero(alphas == overall["best_alpha"])[0])]},
        "timings": t,
    }


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="real_retrieval", sizes=(QUICK, FULL))
    _check(args)
    out = cli.Output(args, "real_retrieval")

    import jax.numpy as jnp

    from normflow.real import _retrieval as rr
    from normflow.real import load_minilm
    from normflow.real._wordnet import load_wordnet
    from normflow.retrieval import alpha_grid

    out.add_config(model="all-MiniLM-L6-v2", gain_min=GAIN_MIN, flat_max=FLAT_MAX, val_fraction=VAL_FRACTION,
                   depth_bins=rr.DEPTH_BINS, betas=rr.BETAS, abtt_components=rr.ABTT_COMPONENTS,
                   csls_neighbours=rr.CSLS_NEIGHBOURS, query_alpha_step=QUERY_ALPHA_STEP, bootstrap=BOOTSTRAP)
    t_start = time.time()
    timings = {}
    alphas = alpha_grid(args.alpha_min, args.alpha_max, args.alpha_step)
    query_alphas = alpha_grid(args.alpha_min, args.alpha_max, QUERY_ALPHA_STEP)
    query_alphas = query_alphas[(query_alphas >= args.alpha_min) & (query_alphas <= args.alpha_max)]

    t0 = time.time()
    wn = load_wordnet()
    bm = rr.build_benchmark(wn, args.synsets, seed=args.seed, val_fraction=VAL_FRACTION, graded=not args.ungraded)
    timings["benchmark"] = time.time() - t0
    t0 = time.time()
    model = load_minilm(jnp.float64 if args.x64 else jnp.float32)
    timings["model"] = time.time() - t0
    t0 = time.time()
    texts = [bm.glosses, bm.docs, bm.bank_glosses, bm.bank_words]
    emb = rr.encode_bucketed(model, [t for part in texts for t in part])  # one call: fewer padded batches
    g, w, bg, bw = np.split(emb, np.cumsum([len(part) for part in texts])[:-1])
    timings["encode"] = time.time() - t0

    rng = np.random.default_rng(args.seed + 1)
    dirs = [
        _direction(DIRECTIONS[0], g, w, bg, bm.relevance, bm.depth, bm.gloss_val, alphas, args, rng, query_alphas),
        _direction(DIRECTIONS[1], w, g, bw, np.ascontiguousarray(bm.relevance.T), bm.doc_depth, bm.word_val, alphas,
                   args, rng),
    ]
    for d in dirs:
        timings.update({f"{d['direction']} {k}": v for k, v in d.pop("timings").items()})

    levels, counts = np.unique(bm.depth, return_counts=True)
    info = {
        "n_synsets": len(bm.glosses), "n_docs": len(bm.docs), "n_bank_glosses": len(bm.bank_glosses),
        "n_bank_words": len(bm.bank_words), "synsets_by_depth": dict(zip(levels.tolist(), counts.tolist())),
        "multiword_docs": int(sum(" " in t for t in bm.docs)),
        "grade2_pairs": int((bm.relevance == 2).sum()), "grade1_pairs": int((bm.relevance == 1).sum()),
        "relevance": "2: a lemma of the gloss's synset; 1: a lemma of its direct hypernym or hyponym among the documents"
                     + (" (off: --ungraded)" if args.ungraded else ""),
        "split": f"each direction's queries: {VAL_FRACTION:.0%} validation (tuning), the rest test (reported)",
        "bank": "glosses (gloss→word) / lemmas not among the documents (word→gloss) of further synsets, disjoint",
        "word_depth": "a word's first sampled sense in WordNet's sense order",
    }
    verdict = _verdict(dirs)
    _print(args, info, dirs, verdict)
    settings = {"alphas": alphas, "k": args.k, "score": "cos(q, d) · |d|^α  (paper: α = -γ)",
                "ndcg": "trec_eval ndcg_cut (normflow.retrieval.ndcg_at_k): linear gain, mean over test queries",
                "null": "document norms permuted among the documents (cosines kept), same best-gain statistic",
                "baseline_defs": _BASELINE_DEFS}

    t0 = time.time()
    _figure(out, args, dirs, alphas, verdict)
    timings["figure"] = time.time() - t0
    path = out.write({"verdict": verdict, "benchmark": info, **settings, "directions": dirs, "timings": timings})
    cli.print_written(path, out.figure, timings, t_start)


_BASELINE_DEFS = {
    "cosine": "cos(q, d) of the unnormalised embeddings (= α = 0)",
    "center_docs": "cosine after subtracting the mean document embedding from every document",
    "center_both": "cosine after subtracting each side's mean embedding (queries' mean, documents' mean)",
    "abtt": "all-but-the-top: each side centred, its top ABTT_COMPONENTS principal directions removed, then cosine",
    "qb_norm": "querybank normalisation, inverted softmax exp(β cos(q,d)) / Σ_bank exp(β cos(b,d)); β tuned on validation",
    "csls": "CSLS 2cos − r(q) − r_bank(d), r = mean cosine of the CSLS_NEIGHBOURS nearest",
    "alpha_val": "cos·|d|^α with α chosen on the validation queries",
    "alpha_oracle": "cos·|d|^α with the best α on the test queries (the curves' maximum; optimistic)",
}


def _verdict(dirs) -> dict:
    parts, gains = [], []
    for d in dirs:
        o = d["overall"]
        if o["regime"] == "gain":
            gains.append(d["direction"])
        sides = "; ".join(f"α{'<' if s == 'neg' else '>'}0: {100 * o[f'best_{s}']['gain']:+.2f}% at α={o[f'best_{s}']['alpha']:+.2f} "
                          f"(null q95 {100 * o[f'best_{s}']['null_gain_q95']:.2f}%, "
                          f"{'above' if o[f'best_{s}']['above_null_q95'] else 'not above'})" for s in ("neg", "pos"))
        parts.append(f"{d['direction']}: {o['regime']} [{sides}]")
    others = [d["direction"] for d in dirs if d["direction"] not in gains]
    head = (f"MiniLM-L6 SHOWS a norm-weighting gain in {', '.join(gains)}" + (f", none in {', '.join(others)}" if others else "")
            + " (the paper: none for MiniLM-L12)") if gains else "MiniLM-L6 shows NO norm-weighting gain (as the paper's MiniLM-L12)"
    text = head + ": " + " | ".join(parts)
    return {"text": text, "gain": bool(gains), "gain_directions": gains, "paper": "the paper reports no gain for MiniLM-L12",
            "by_direction": {d["direction"]: {"regime": d["overall"]["regime"],
                                              "best_alpha": d["overall"]["best_alpha"], "best_gain": d["overall"]["best_gain"],
                                              "best_neg": d["overall"]["best_neg"], "best_pos": d["overall"]["best_pos"],
                                              "per_depth": {pd["bin"]: {s: pd[f"best_{s}"] for s in ("neg", "pos")}
                                                            for pd in d["per_depth"] if "best_neg" in pd}}
                             for d in dirs}}


def _print(args, info, dirs, verdict):
    print(f"benchmark: {info['n_synsets']} synsets (glosses), {info['n_docs']} documents (lemma strings, "
          f"{info['multiword_docs']} multi-word), bank {info['n_bank_glosses']} glosses / {info['n_bank_words']} words; "
          f"grade-2 pairs {info['grade2_pairs']}, grade-1 pairs {info['grade1_pairs']}")
    for d in dirs:
        o = d["overall"]
        print(f"{d['direction']}: {d['n_test']} test / {d['n_val']} val queries × {d['n_docs']} docs; cosine NDCG@{args.k} "
              f"{o['cosine_ndcg']:.4f}; |q| cv {d['query_norm']['cv']:.3f}, |d| cv {d['doc_norm']['cv']:.3f}")
        for lab, r in [("all", o)] + [(f"depth {pd['bin']}", pd) for pd in d["per_depth"] if "best_neg" in pd]:
            print(f"  {lab:11s} n={r['n_queries']:5d} cos {r['cosine_ndcg']:.3f}  "
                  + "  ".join(f"α{'<' if s == 'neg' else '>'}0 {100 * r[f'best_{s}']['gain']:+6.2f}% at {r[f'best_{s}']['alpha']:+.2f} "
                              f"(null q95 {100 * r[f'best_{s}']['null_gain_q95']:.2f}%)" for s in ("neg", "pos"))
                  + f"  [{r['regime']}]")
        h = d["query_alpha_grid"]
        if h is not None:
            print(f"  α_q grid {np.asarray(h['query_alphas']).tolist()}: max |ΔNDCG| per query over α_q = "
                  f"{h['max_abs_per_query_deviation_over_query_alpha']:.3g} (exactly flat: {h['exactly_flat']})")
        b = d["baselines"]
        print("  baselines / cosine: " + ", ".join(f"{k} {v['relative']:.4f}" for k, v in b.items() if isinstance(v, dict))
              + f"  (β={b['qb_norm']['beta']:g}, α_val={b['alpha_val']['alpha']:+.2f})")
    print(verdict["text"])


def _figure(out, args, dirs, alphas, verdict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9.6))
    cols = plt.cm.viridis(np.linspace(0, 0.9, 5))
    curves = [d["overall"]["normalised"] for d in dirs] + [pd["normalised"] for d in dirs for pd in d["per_depth"]
                                                             if "normalised" in pd]
    lo = max(min(float(np.nanmin(c)) for c in curves), 0.8)  # the far tails (large |α|) are cut
    hi = max(max(float(np.nanmax(c)) for c in curves), 1.02)
    for ax, d in zip(axes[0], dirs):
        o = d["overall"]
        ax.fill_between(alphas, o["null_normalised_q05"], o["null_normalised_q95"], color="gray", alpha=0.3,
                        label=f"shuffled-norm null, all queries (5–95 %, {args.permutations} draws)")
        ax.plot(alphas, o["normalised"], "-", color="k", lw=2.4,
                label=f"all (n={o['n_queries']}, cos {o['cosine_ndcg']:.3f}): best {100 * o['best_gain']:+.1f}% "
                      f"at α={o['best_alpha']:+.2f}")
        for c, pd in zip(cols, d["per_depth"]):
            if "normalised" not in pd:
                continue
            ax.plot(alphas, pd["normalised"], "-", color=c, lw=1.5,
                    label=f"depth {pd['bin']} (n={pd['n_queries']}, cos {pd['cosine_ndcg']:.3f}): "
                          f"{100 * pd['best_gain']:+.1f}% at α={pd['best_alpha']:+.2f}")
        ax.axhline(1.0, color="gray", lw=1, ls="--")
        ax.axvline(0.0, color="gray", lw=0.8, ls=":")
        ax.set_ylim(lo - 0.02, hi + 0.02)
        ax.set_xlabel("α  (score cos(q,d)·|d|^α; paper γ = −α)")
        ax.set_ylabel(f"NDCG@{args.k} / NDCG@{args.k}(cosine)")
        target = "the gloss's synset" if d["direction"] == DIRECTIONS[0] else "the word's first sense"
        ax.set_title(f"({'ab'[DIRECTIONS.index(d['direction'])]}) {d['direction']}: {d['n_test']} test queries × {d['n_docs']} docs;\n"
                     f"lines per WordNet depth of {target}", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")

    ax = axes[1, 0]
    h = dirs[0]["query_alpha_grid"]
    qa = np.asarray(h["query_alphas"])
    im = ax.imshow(np.asarray(h["normalised"]), aspect="auto", origin="lower", cmap="magma",
                   extent=(alphas[0] - (alphas[1] - alphas[0]) / 2, alphas[-1] + (alphas[1] - alphas[0]) / 2,
                           qa[0] - QUERY_ALPHA_STEP / 2, qa[-1] + QUERY_ALPHA_STEP / 2))
    ax.set_yticks(qa)
    fig.colorbar(im, ax=ax, label=f"NDCG@{args.k} / NDCG@{args.k}(cosine)")
    ax.axvline(0.0, color="w", lw=0.8, ls=":")
    ax.set_xlabel("α_d (document exponent)")
    ax.set_ylabel("α_q (query exponent)")
    ax.set_title(f"(c) {DIRECTIONS[0]}: cos·|q|^α_q·|d|^α_d — every row identical: max |ΔNDCG| per query over α_q = "
                 f"{h['max_abs_per_query_deviation_over_query_alpha']:.3g}\n(|q|^α_q scales a query's whole score row, "
                 "so no ranking changes)", fontsize=8.5)

    ax = axes[1, 1]
    names = [k for k, v in dirs[0]["baselines"].items() if isinstance(v, dict) and k != "cosine"]
    x = np.arange(len(names))
    wdt = 0.38
    for j, (d, c) in enumerate(zip(dirs, ("tab:blue", "tab:orange"))):
        b = d["baselines"]
        rel = np.array([b[n]["relative"] for n in names])
        err = np.array([[b[n]["relative"] - (1 + b[n]["ci95"][0]), (1 + b[n]["ci95"][1]) - b[n]["relative"]] for n in names]).T
        ax.bar(x + (j - 0.5) * wdt, rel, wdt, color=c, yerr=np.maximum(err, 0), capsize=2,
               label=f"{d['direction']} (cosine NDCG@{args.k} {b['cosine']['ndcg']:.3f})")
        for xi, r, e in zip(x, rel, np.maximum(err[1], 0)):
            ax.text(xi + (j - 0.5) * wdt, r + e + 0.003, f"{r:.3f}", ha="center", va="bottom", fontsize=6.5, rotation=90)
    ax.axhline(1.0, color="gray", lw=1, ls="--")
    tick = {"center_docs": "centre docs", "center_both": "centre both", "abtt": "all-but-\nthe-top",
            "qb_norm": "QB-Norm\n(inv. softmax)", "csls": "CSLS", "alpha_val": "|d|^α,\nα from val",
            "alpha_oracle": "|d|^α,\nbest α on test"}
    ax.set_xticks(x, [tick.get(n, n) for n in names], fontsize=8)
    allrel = [d["baselines"][n]["relative"] for d in dirs for n in names]
    tops = [1 + d["baselines"][n]["ci95"][1] for d in dirs for n in names]
    bottoms = [1 + d["baselines"][n]["ci95"][0] for d in dirs for n in names]
    ax.set_ylim(min(min(allrel), min(bottoms), 1.0) - 0.02, max(max(allrel), max(tops), 1.0) + 0.07)
    ax.set_ylabel(f"NDCG@{args.k} / NDCG@{args.k}(cosine), test queries")
    ax.set_title("(d) norm-side baselines (bars: 95 % paired bootstrap over queries)", fontsize=9)
    ax.legend(fontsize=7.5, loc="upper left")
    head, _, rest = verdict["text"].partition("): ")
    fig.suptitle(head + "):\n" + rest.replace(" | ", "\n") if rest else verdict["text"], fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    out.savefig(fig)
    plt.close(fig)


if __name__ == "__main__":
    cli.script(main)
