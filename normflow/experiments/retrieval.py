#!/usr/bin/env python
"""Norm-aware retrieval (paper Fig. 4 and Fig. 6): when does scoring cos(q,d)·|d|^α beat cosine?

    python sims/retrieval.py                          # sgd+decay, sgd, adam, adamw; table and dual
    python sims/retrieval.py --optimizer adamw --weight-decay 0.1 --encoder table

Builds :class:`normflow.retrieval.RetrievalCorpus` on a concept tree (queries: the concepts at
every depth; documents: contexts attached to leaves and, as generic "hub" documents, to
internal nodes; relevant = the document's node is below or at the query), trains an encoder
on its co-occurrence pairs under each optimizer, and sweeps α over a grid. Encoders:
``table`` (a free row per concept and per document: docs/theory.md §5-§8 hold per document) and
``dual`` (:class:`normflow.DualEncoder`, an MLP context tower on the documents' fixed context
vectors). Configurations of one optimizer (e.g. SGD with and without decay) train together as
one :func:`normflow.sweep`. Writes ``<figures>/retrieval.png`` and ``<out>/results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli
from normflow.defaults import DEFAULTS  # per-optimizer (lr, λ) when --optimizer comes without them

# The default set: SGD with and without decay, Adam, AdamW.
DEFAULT_SET = (("sgd", 0.5, 1e-3), ("sgd", 0.5, 0.0), ("adam", 1e-2, 0.0), ("adamw", 1e-2, 0.05))
GAIN_MIN = 0.02  # "gain" (CLIP-like): best gain >= 2 % at α < 0 and above the shuffled-norm null's q95
FLAT_MAX = 0.01  # "flat" (MiniLM-like): best gain < 1 %, or not above the null's q95
NULL_PERMUTATIONS = 20  # shuffled-norm controls per run (benchmark.shuffled_norm_gains)
SOURCE_BATCHES = 1024  # minibatches for the per-document source energy (docs/theory.md §1)
ENCODERS = ("table", "dual")
B2 = 0.999  # Adam's β2 (nf.train's default), passed to the runs and to their validity checks


def training_frequency(corpus, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(p_docs [D], p_concepts [N])``: the probability that a row of the free tables gets a
    gradient in a minibatch of ``batch_size`` training pairs (docs/theory.md §1), exactly, from
    the corpus's sampler (:meth:`RetrievalCorpus.sample_ids`): a document uniformly (per draw
    ``1/D``), then a co-occurring concept ``c`` with probability ``w_c / Σ_{c' ~ j} w_c'``; so
    per draw concept ``c`` comes with ``q_c = (1/D) Σ_{j ~ c} w_c / Σ_{c' ~ j} w_c'`` and
    ``p = 1 - (1 - q)^B``."""
    co = np.asarray(corpus.cooccur, bool)  # [N, D]
    w = np.asarray(corpus.weights, np.float64)
    d = co.shape[1]
    q_c = (co * w[:, None] / (co * w[:, None]).sum(0, keepdims=True)).sum(1) / d
    q_d = np.full(d, 1.0 / d)
    return 1.0 - (1.0 - q_d) ** batch_size, 1.0 - (1.0 - q_c) ** batch_size


def validity(nf, corpus, enc, name, lr, wd, args) -> dict:
    """The run's validity record (docs/theory.md §16), as ``results.json`` holds it.

    The maps are measured on free tables (a row per concept, each row's own p). With
    ``--encoder table`` every document and every concept is such a row, but the concept task's
    ``frequency(batch_size)`` is not what this corpus trains with (pairs are drawn document
    first), so the check reads the maps at the frequencies the training batches give every
    trained row, documents and concepts together (:func:`training_frequency`). The DualEncoder's
    norms come from shared MLP towers: no map applies (as for balance_fit's network)."""
    if enc != "table":
        return {"inside": None, "map": None, "message": "validity: the maps are measured on the free table (docs/theory.md "
                "§16); the DualEncoder's norms come from shared MLP towers, outside every map", "detail": {"encoder": enc}}
    p_docs, p_concepts = training_frequency(corpus, args.batch_size)
    c = nf.validity.check(name, lr=lr, weight_decay=wd, p=np.concatenate([p_docs, p_concepts]), momentum=args.momentum,
                          b2=B2)
    return nf.validity.check_json(c)


def build_parser():
    p = cli.make_parser("retrieval.py", __doc__.splitlines()[0])
    cli.add_optimizer_args(p, optimizer=None, steps=3000, batch_size=64)
    cli.add_task_args(p, dim=32, depth=4, branching=3)
    p.add_argument("--encoder", choices=("table", "dual", "both"), default=None,
                   help="table: free rows per concept and document; dual: DualEncoder MLP towers "
                        "(default: both; table with --quick)")
    p.add_argument("--docs-per-leaf", type=int, default=3, help="documents attached to each leaf")
    p.add_argument("--docs-per-node", type=int, default=4, help="generic documents per internal node")
    p.add_argument("--no-hubs", action="store_true",
                   help="generic documents co-occur only with the concepts they are relevant to")
    p.add_argument("--loss", choices=("symmetric_info_nce", "info_nce", "siglip"), default="symmetric_info_nce")
    p.add_argument("--momentum", type=float, default=0.9, help="heavy-ball β / Adam β1")
    p.add_argument("--k", type=int, default=10, help="NDCG cutoff")
    p.add_argument("--alpha-min", type=float, default=-4.0, help="smallest α (score cos·|d|^α)")
    p.add_argument("--alpha-max", type=float, default=2.0, help="largest α")
    p.add_argument("--alpha-step", type=float, default=0.1, help="α grid spacing (α = 0 is on the grid)")
    return p


def _configs(args):
    """[(optimizer, lr, weight_decay)] for this run (--quick keeps only SGD with and without
    decay from the default set: one compiled sweep)."""
    if args.optimizer is None:
        if args.lr is not None or args.weight_decay is not None:
            raise cli.UsageError("--lr/--weight-decay: need --optimizer (the default set has its own values)")
        return [c for c in DEFAULT_SET if not (args.quick and c[0] != "sgd")]
    lr0, wd0 = DEFAULTS[args.optimizer]
    return [(args.optimizer, lr0 if args.lr is None else args.lr, wd0 if args.weight_decay is None else args.weight_decay)]


def _label(name, wd):
    if name == "adam":
        return "adam"
    return f"{name} (no decay)" if wd == 0 else f"{name} λ={wd:g}"


def _check(args, configs):
    from normflow.optimizers import check_optimizer_args

    for name, lr, wd in configs:
        check_optimizer_args(name, lr, wd, args.steps, args.batch_size)
    cli.check_flags(args, docs_per_leaf=cli.at_least(1), docs_per_node=cli.at_least(0), k=cli.at_least(1),
                    momentum=cli.FRACTION)
    cli.check_alpha_grid(args, max_points=2000)


def _regime(best_a, gain, null_q95):
    """gain (CLIP-like) / flat (MiniLM-like) / marginal; see GAIN_MIN, FLAT_MAX."""
    if not np.isfinite(gain):
        return "undefined"
    if gain < FLAT_MAX or gain <= null_q95:
        return "flat"
    if gain >= GAIN_MIN and best_a < 0:
        return "gain"
    return "marginal"


def _slope(x, y):
    """Least-squares slope and Pearson r of log y on log x (finite, positive entries)."""
    m = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    if m.sum() < 3:
        return None, None
    lx, ly = np.log(x[m]), np.log(y[m])
    if np.ptp(lx) == 0 or np.ptp(ly) == 0:
        return None, None
    return float(np.polyfit(lx, ly, 1)[0]), float(np.corrcoef(lx, ly)[0, 1])


def _train_group(corpus, model, name, cs, args, key):
    """Train every (name, lr, weight_decay) config of one optimizer from the same initial model
    and the same minibatch stream. A model made only of arrays (the tables) goes through one
    ``nf.sweep`` (one compiled vmap over the configs); ``nf.sweep`` cannot return a model with
    non-array leaves (the DualEncoder's activation functions), so those train one
    ``nf.train`` per config. Returns one record per config."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import normflow as nf

    common = dict(steps=args.steps, batch_size=args.batch_size, model=model, loss=args.loss, save_steps=16)
    if all(eqx.is_array(leaf) for leaf in jax.tree_util.tree_leaves(model)):
        run = nf.sweep(corpus, name, lr=[c[1] for c in cs], weight_decay=[c[2] for c in cs], momentum=args.momentum,
                       b1=args.momentum, b2=B2, keys=jnp.stack([key] * len(cs)), **common)
        return [jax.tree_util.tree_map(lambda a: a[i] if eqx.is_array(a) and a.ndim else a, run) for i in range(len(cs))]
    return [nf.train(corpus, name, lr=lr, weight_decay=wd, momentum=args.momentum, b1=args.momentum, b2=B2, key=key,
                     **common)
            for _, lr, wd in cs]


def _alpha_panel(ax, alphas, lines, ylim, *, xlabel, ylabel, title, fontsize):
    """NDCG against α relative to cosine's: one solid line per ``(values, color, label)``."""
    for values, color, label in lines:
        ax.plot(alphas, values, "-", color=color, lw=2, label=label)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.axvline(0.0, color="gray", lw=0.8, ls=":")
    ax.set_ylim(ylim[0] - 0.02, ylim[1] + 0.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=fontsize, loc="lower center")


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="retrieval")
    if args.quick:
        args.steps = min(args.steps, 400)
        args.depth, args.branching, args.dim = min(args.depth, 3), min(args.branching, 3), min(args.dim, 16)
    configs = _configs(args)
    _check(args, configs)
    if args.encoder is None:
        args.encoder = "table" if args.quick else "both"
    encoders = ENCODERS if args.encoder == "both" else (args.encoder,)
    out = cli.Output(args, "retrieval")
    cli.cpu_setup()  # one CPU device per core (sweeps spread over them); unrolled Threefry

    import normflow as nf
    from normflow import retrieval as bm
    from normflow import theory as th

    t_start = time.time()
    task, k_corpus, k_model, k_run, k_se, k_null = cli.task_from_args(args, 6)
    dtype = task.dtype
    alphas = bm.alpha_grid(args.alpha_min, args.alpha_max, args.alpha_step)
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    se_batches = 128 if args.quick else SOURCE_BATCHES
    n_null = 8 if args.quick else NULL_PERMUTATIONS

    runs, diverged = [], None
    corpus_info = None
    for enc in encoders:
        corpus = bm.RetrievalCorpus(task, key=k_corpus, docs_per_leaf=args.docs_per_leaf, docs_per_node=args.docs_per_node,
                                    hubs=not args.no_hubs, encoding="table" if enc == "table" else "context")
        if enc == "table":
            model = bm.DocumentTables(corpus.num_concepts, corpus.num_docs, args.dim, key=k_model, dtype=dtype)
        else:
            model = nf.DualEncoder(corpus.num_concepts, args.dim, key=k_model, dtype=dtype)
        qd, dd = np.asarray(corpus.query_depth), np.asarray(corpus.doc_depth)
        levels = sorted(set(qd.tolist()))
        if corpus_info is None:
            co = np.asarray(corpus.cooccur)
            corpus_info = {
                "n_queries": corpus.num_concepts, "n_docs": corpus.num_docs,
                "queries_by_depth": [int((qd == l).sum()) for l in levels],
                "docs_by_depth": [int((dd == l).sum()) for l in levels],
                "relevant_per_query_by_depth": [float(np.asarray(corpus.relevance)[qd == l].sum(1).mean()) for l in levels],
                "cooccurring_concepts_per_doc_by_depth": [float(co[:, dd == l].sum(0).mean()) for l in levels],
                "relevance": "binary: 1 iff the document's node is the query concept or lies below it",
                "training_pairs": ("document uniform, then a co-occurring concept; a document co-occurs with its "
                                   "node's ancestors-or-self" + ("" if args.no_hubs else " and every concept below its node")),
            }
        # One nf.sweep per optimizer: its configs (e.g. sgd with and without decay) share a program.
        groups = {}
        for c in configs:
            groups.setdefault(c[0], []).append(c)
        for name, cs in groups.items():
            t0 = time.time()
            run = _train_group(corpus, model, name, cs, args, k_run)
            t_train = time.time() - t0
            for ci, (_, lr, wd) in enumerate(cs):
                label = _label(name, wd)
                row = run[ci]
                # inside the measured 5 % region of its formula (docs/theory.md §16)?
                valid = validity(nf, corpus, enc, name, lr, wd, args)
                if valid["inside"] is False:
                    print(f"{enc} {label}: {valid['message']}", flush=True)
                if int(row.diverged_step) >= 0:
                    try:
                        cli.check_diverged(row, what=f"{enc} {label} (lr={lr}, weight_decay={wd})")
                    except cli.Diverged as e:
                        diverged = (e, {"encoder": enc, "label": label, "optimizer": name, "lr": lr, "weight_decay": wd,
                                        "diverged_step": int(row.diverged_step) + 1, "message": str(e),
                                        "loss": np.asarray(row.loss), "validity": valid})
                    break
                m = row.model
                ev = bm.evaluate(m, corpus, alphas, k=args.k)
                ndcg = np.asarray(ev.curve.ndcg, np.float64)
                norm, best_a, gain = bm.best_alpha(alphas, ndcg)
                per_depth = []
                for lvl, curve in zip(np.asarray(ev.depths).tolist(), np.asarray(ev.per_depth, np.float64)):
                    n_d, a_d, g_d = bm.best_alpha(alphas, curve)
                    per_depth.append({"depth": int(lvl), "n_queries": int((qd == lvl).sum()), "cosine_ndcg": float(curve[i0]),
                                      "ndcg": curve, "normalised": n_d, "best_alpha": a_d, "best_gain": g_d,
                                      "best_at_grid_edge": bool(a_d in (alphas[0], alphas[-1]))})
                docs = np.asarray(bm.document_embeddings(m, corpus), np.float64)
                dn = np.linalg.norm(docs, axis=-1)
                qn = np.linalg.norm(np.asarray(m.concept_embeddings(), np.float64), axis=-1)
                se = bm.document_source_energy(m, corpus, key=k_se, batch_size=args.batch_size, num_batches=se_batches,
                                               loss=args.loss)
                pw2, pv = np.asarray(se.pw2, np.float64), np.asarray(se.p, np.float64)
                slope, r = _slope(pw2, dn**4)
                null = bm.shuffled_norm_gains(m, corpus, alphas, key=k_null, k=args.k, num=n_null)
                null_q95 = float(np.quantile(null, 0.95))
                fp = np.asarray(bm.cosine_false_positives(m, corpus, k=args.k), np.float64)
                fp_r = float(np.corrcoef(np.log(dn), fp)[0, 1]) if fp.std() > 0 else None
                theory, formula = None, None
                if enc == "table" and name != "gd":
                    # docs/theory.md §15 per document row (a free row: §5–§8 apply to it), from the
                    # statistics measured at the end; compared with the final document norms
                    r0 = np.linalg.norm(np.asarray(model.doc_embeddings(), np.float64), axis=-1)
                    f = lambda a: np.asarray(a, np.float64)[None]
                    ctx = th.Context(steps=np.array([0, args.steps]), r0=r0, stat_steps=np.array([args.steps]),
                                     p=f(se.p), pw2=f(se.pw2), mean_sq=f(se.mean_sq), var=f(se.var), dim=args.dim,
                                     lr=lr, weight_decay=wd, total_steps=args.steps, momentum=args.momentum,
                                     b1=args.momentum)
                    pred = th.predict(name, ctx)
                    formula = f"{pred.section}: {pred.formula}, statistics measured per document at the end"
                    theory = np.asarray(pred.norms, np.float64)[-1]
                runs.append({
                    "encoder": enc, "label": label, "optimizer": name, "lr": lr, "weight_decay": wd, "validity": valid,
                    "final_loss": float(np.asarray(row.loss)[-1]),
                    "cosine_ndcg": float(ndcg[i0]), "ndcg": ndcg, "normalised": norm,
                    "best_alpha": best_a, "best_gain": gain, "best_ndcg": float(ndcg[i0] * (1 + gain)),
                    "best_at_grid_edge": bool(best_a in (alphas[0], alphas[-1])),
                    "regime": _regime(best_a, gain, null_q95), "per_depth": per_depth,
                    "null_gain": {"what": "best gain with the document norms randomly permuted among documents",
                                  "mean": float(null.mean()), "q95": null_q95, "max": float(null.max()),
                                  "num": n_null},
                    "false_positives": {"what": "cosine top-k hits that are not relevant, per document",
                                        "r_logR_vs_count": fp_r,
                                        "fp_weighted_norm_over_mean_norm": float((fp * dn).sum() / max(fp.sum(), 1) / dn.mean())},
                    "doc_norm_by_doc_depth": [float(dn[dd == l].mean()) for l in levels],
                    "doc_norm_cv": float(dn.std() / dn.mean()),
                    "hub_to_leaf_doc_norm_ratio": float(dn[dd == levels[0]].mean() / dn[dd == levels[-1]].mean()),
                    "query_norm_by_depth": [float(qn[qd == l].mean()) for l in levels],
                    "doc_theory_formula": formula,
                    "doc_theory_by_doc_depth": None if theory is None else [float(theory[dd == l].mean()) for l in levels],
                    "doc_source": {"p_mean": float(pv.mean()), "p_cv": float(pv.std() / pv.mean()),
                                   "pw2_by_doc_depth": [float(pw2[dd == l].mean()) for l in levels],
                                   "pv2_fraction": float(np.mean(np.asarray(se.var) / np.maximum(np.asarray(se.var + se.mean_sq), 1e-30))),
                                   "slope_logR4_vs_logpW2": slope, "r_logR4_vs_logpW2": r,
                                   "num_batches": se_batches},
                })
                print(f"{enc:5s} {label:18s} loss {runs[-1]['final_loss']:.3f}  cos NDCG@{args.k} {ndcg[i0]:.4f}  "
                      f"best α {best_a:+.2f} gain {100 * gain:+6.2f}%  [{runs[-1]['regime']}]  per depth: "
                      + ", ".join(f"d{r_['depth']} {r_['best_alpha']:+.1f}/{100 * r_['best_gain']:+.1f}%" for r_ in per_depth)
                      + f"  null q95 {100 * null_q95:.1f}%  r(log|d|, FP) {fp_r if fp_r is None else round(fp_r, 3)}"
                      + f"  doc norms by depth {np.round(runs[-1]['doc_norm_by_doc_depth'], 3).tolist()}"
                      + f"  ({t_train:.0f}s for the {name} sweep)", flush=True)
            if diverged:
                break
        if diverged:
            break

    settings = {"alphas": alphas, "k": args.k, "score": "cos(q, d) · |d|^α  (paper: α = -γ)", "configs": configs,
                "encoders": list(encoders), "gain_min": GAIN_MIN, "flat_max": FLAT_MAX,
                "ndcg": "trec_eval ndcg_cut: linear gain, 1/log2(rank+1), mean over answerable queries",
                "source_energy_batches": se_batches, "null_permutations": n_null, "save_steps": 16, "hubs": not args.no_hubs}
    if diverged:
        e, info = diverged
        out.write({"message": str(e), "diverged": info, "benchmark": corpus_info, **settings, "runs": runs}, status="diverged")
        raise e

    regimes = {}
    for r in runs:
        regimes.setdefault(r["regime"], []).append(f"{r['encoder']}: {r['label']}")
    both = bool(regimes.get("gain")) and bool(regimes.get("flat"))
    verdict = (f"BOTH REGIMES: gain (CLIP-like) for {', '.join(regimes['gain'])}; flat (MiniLM-like) for "
               f"{', '.join(regimes['flat'])}" if both else
               "ONLY ONE REGIME: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in regimes.items()))
    print(verdict)

    _figure(out, args, runs, alphas, levels, verdict)
    path = out.write({"verdict": verdict, "both_regimes": both, "regimes": regimes, "benchmark": corpus_info,
                      **settings, "runs": runs})
    print(f"total {time.time() - t_start:.1f}s  results: {path}  figure: {out.figure}")


def _figure(out, args, runs, alphas, levels, verdict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    encs = [e for e in ENCODERS if any(r["encoder"] == e for r in runs)]
    main_enc = encs[0]
    main_runs = [r for r in runs if r["encoder"] == main_enc]
    labels = list(dict.fromkeys(r["label"] for r in runs))
    colors = dict(zip(labels, plt.cm.tab10(np.arange(len(labels)))))
    ncol = max(len(main_runs), len(encs) + 1)
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 8.2), squeeze=False)
    enc_title = {"table": "free tables (a row per concept and per document)",
                 "dual": "DualEncoder (MLP towers, fixed context inputs)"}
    curves = [r["normalised"] for r in runs] + [pd["normalised"] for r in main_runs for pd in r["per_depth"]]
    ymin = max(min(min(np.nanmin(c) for c in curves), 0.9), 0.4)  # very low tails (large α > 0) are cut
    ymax = max(max(np.nanmax(c) for c in curves), 1.05)
    for j, enc in enumerate(encs):
        lines = [(r["normalised"], colors[r["label"]],
                  f"{r['label']}: {100 * r['best_gain']:+.1f}% at α={r['best_alpha']:+.1f} "
                  f"(shuffled norms: {100 * r['null_gain']['q95']:.1f}%)") for r in runs if r["encoder"] == enc]
        _alpha_panel(axes[0, j], alphas, lines, (ymin, ymax), xlabel="α  (score cos(q,d)·|d|^α; paper γ = −α)",
                     ylabel=f"NDCG@{args.k} / NDCG@{args.k}(cosine)", title=f"all queries — {enc_title[enc]}",
                     fontsize=7)
    # Document norms by the depth of the document's node: measured (solid) vs theory (dashed).
    ax = axes[0, len(encs)]
    for r in main_runs:
        c = colors[r["label"]]
        ax.plot(levels, r["doc_norm_by_doc_depth"], "o-", color=c, lw=2, label=f"{r['label']} measured")
        if r["doc_theory_by_doc_depth"] is not None:
            ax.plot(levels, r["doc_theory_by_doc_depth"], "s--", color=c, lw=1.5, mfc="none",
                    label=f"{r['label']} theory ({r['doc_theory_formula'].split(':')[0]})")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax.set_xticks(levels)
    ax.set_xlabel("depth of the document's node (0 = generic hub, last = leaf)")
    ax.set_ylabel("mean document norm |d|")
    ax.set_title(f"document norms — {main_enc}", fontsize=9)
    for j in range(len(encs) + 1, ncol):
        axes[0, j].axis("off")
    if ncol > len(encs) + 1:  # the legend in the free panel beside, else inside
        axes[0, len(encs) + 1].legend(*ax.get_legend_handles_labels(), fontsize=7.5, loc="center left",
                                      title="document norms (solid: measured, dashed: theory)", title_fontsize=7.5)
    else:
        ax.legend(fontsize=7)
    # Fig. 6 analog: per query depth, one panel per optimizer (main encoder).
    dcol = plt.cm.viridis(np.linspace(0, 0.85, len(levels)))
    for j, r in enumerate(main_runs):
        lines = [(pdp["normalised"], c, f"query depth {pdp['depth']} (cos {pdp['cosine_ndcg']:.2f}): "
                  f"{100 * pdp['best_gain']:+.1f}% at α={pdp['best_alpha']:+.1f}") for c, pdp in zip(dcol, r["per_depth"])]
        _alpha_panel(axes[1, j], alphas, lines, (ymin, ymax), xlabel="α",
                     ylabel=f"NDCG@{args.k} / cosine, per query depth", title=f"{r['label']} — {main_enc}",
                     fontsize=6.5)
    for j in range(len(main_runs), ncol):
        axes[1, j].axis("off")
    fig.suptitle(verdict, fontsize=8)
    fig.tight_layout()
    out.savefig(fig)
    plt.close(fig)


if __name__ == "__main__":
    cli.script(main)
