#!/usr/bin/env python
"""Issue 16: the norm against measured word frequency at the size of a real vocabulary, under SGD+decay, AdamW and lazy AdamW, beside each formula and beside the real model's token-norm curve.

The task: a :class:`normflow.FlatTask` whose concepts are words with their measured frequencies
(``weights=``, :func:`normflow.real.vocabulary_frequencies`): the 21,736 whole-word tokens of
all-MiniLM-L6-v2's vocabulary that wordfreq knows, plus wordfreq's own most frequent English words
beyond it up to ``--concepts`` (30,000). A step draws ``--batch-size`` tokens i.i.d. from those
frequencies, so a word's per-step presence is ``p = 1 − (1 − w)^B``. wordfreq's frequencies end
near 1e-8 and ``p`` saturates at 1 for ``w ≳ 1/B``, so the decades of ``p`` shrink as the batch
grows: ``−log10(B·w_min)``; at B = 512 they are 5.2 (B = 1,024: 4.9). Float64 throughout: the
float32 inverse-CDF sampler resolves a weight only to ~1e-7.

    python sims/vocabulary.py            # 30,000 words, 8,000 steps, batch 512
    python sims/vocabulary.py --quick    # 3,000 words, 600 steps (tests)

Optimizers (one run each, the same initial table and minibatches): SGD+decay and lazy AdamW on
the sparse engine (``train(..., sparse=True)``), AdamW dense (its moments move every row).
Measured: the final norms (as the real model's single snapshot) and, against the formulas, the rms
norm over the last ``--window`` of the run pooled in log-spaced bins of ``p``.

Formulas (dashed): SGD ``nf.theory.predict("sgd")`` and AdamW ``nf.theory.predict("adamw")`` on a
:class:`normflow.theory.Context` whose "concepts" are the bins (per bin: ``p``, and ``pW²``,
``|s̄|²``, ``V²`` pooled from ``nf.source_energy`` of the final table; a per-word Context would be
a ``[T, N]`` path of 2·10⁸ floats); lazy AdamW docs/theory.md §8.6's closed form
``⟨R²⟩ = η²dp/(1−α²)·F_lazy``. Bins with no sighting in the source-energy batches get no SGD/AdamW
formula value.

Beside the real model (docs/results/real/real_probe.json: token-row norm of 10,752 one-token
nouns against wordfreq frequency): per optimizer, Spearman's ρ of final norm with frequency, the
two-branch fit of log norm on log frequency (:func:`normflow.real._probe.two_branch_fit`, the same
function and grid as the real probe, on wordfreq frequency as there), and the most frequent
words (the slope of the frequent branch, and the median norm of the 100 most frequent words over
the largest binned median). The shape criterion, fixed before the runs: **the real curve's shape** is
ρ > 0, a rising rare branch (slope_left > 0) and a frequent branch that is flat or falling
(slope_right ≤ slope_left/4; the real one: 0.10 then −0.036).
"""

from __future__ import annotations

import json
import time

import numpy as np

from normflow import cli

OPTIMIZERS = ("sgd", "adamw", "lazy_adamw")
SPARSE = {"sgd": True, "adamw": False, "lazy_adamw": True}
# the real model's measured curve: docs/results/real/real_probe.json, shipped as package data
# (docs/make_tables.py writes both from the same run of `normflow real_probe`)
REAL_PROBE = "_data/real_probe.json"
KNEE = 0.25  # the shape criterion: slope_right <= KNEE * slope_left (see the module docstring)
TOP = 100  # "the most frequent words"


def build_parser():
    from normflow.optimizers import EXTRA

    p = cli.make_parser("vocabulary.py", "Norm against measured word frequency at vocabulary scale (30,000 words) "
                                         "under SGD+decay, AdamW and lazy AdamW, beside the formulas and the real model")
    p.add_argument("--concepts", type=int, default=None, help="words (default 30000; --quick: 3000)")
    p.add_argument("--dim", type=int, default=32, help="embedding dimension (>= 2)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default 8000; --quick: 600)")
    p.add_argument("--batch-size", type=int, default=512, help="tokens per step")
    cli.add_sgd_adamw_args(p, adamw_weight_decay=EXTRA["lazy_adamw"].weight_decay, adamw="AdamW and lazy AdamW",
                           b2=True)
    p.add_argument("--bins", type=int, default=None, help="log-spaced p bins (default 20; --quick: 8)")
    cli.add_measure_args(p, window=0.3, se_batches=(128, 16), what="the source statistics at the end")
    return p


def resolve(args):
    cli.resolve_quick(args, concepts=(30000, 3000), steps=(8000, 600), bins=(20, 8), se_batches=(128, 16))
    cli.check_flags(args, concepts=cli.at_least(100), dim=cli.at_least(2), steps=cli.at_least(10),
                    batch_size=cli.at_least(2), sgd_lr=cli.POSITIVE, sgd_weight_decay=cli.POSITIVE,
                    adamw_lr=cli.POSITIVE, adamw_weight_decay=cli.POSITIVE, b1=cli.FRACTION, b2=cli.FRACTION,
                    init_norm=cli.POSITIVE, window=cli.OPEN_FRACTION, bins=cli.at_least(4),
                    se_batches=cli.at_least(2))
    if args.concepts > 100_000:
        raise cli.UsageError(f"--concepts: must be <= 100000 (wordfreq's whole words), got {args.concepts}")


def presence(weights: np.ndarray, batch_size: int) -> np.ndarray:
    """``p = 1 − (1 − w)^B`` in float64 without cancellation (``−expm1(B·log1p(−w))``).

    **Arguments:** `weights`, float[N] sampling weights summing to 1; `batch_size`, B.

    **Returns:** float64[N], the per-step probability that each word is in the batch.
    """
    w = np.asarray(weights, np.float64)
    return -np.expm1(batch_size * np.log1p(-w))


def bin_index(p: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)


def top_words_ratio(freq: np.ndarray, norm: np.ndarray, edges_log10: np.ndarray, top: int = TOP) -> float:
    """Median norm of the ``top`` most frequent words over the largest median norm of the
    log10-frequency bins (bins one decade wide): < 1 when the most frequent words fall back."""
    order = np.argsort(-freq)
    med_top = float(np.median(norm[order[:top]]))
    lf = np.log10(freq)
    meds = [np.median(norm[(lf >= lo) & (lf < hi)]) for lo, hi in zip(edges_log10[:-1], edges_log10[1:])
            if np.sum((lf >= lo) & (lf < hi)) >= 10]
    return med_top / float(np.max(meds))


def shape_of(rho: float, fit: dict) -> dict:
    """The module docstring's shape criterion on a Spearman ρ and a two-branch fit."""
    rising = fit["slope_left"] > 0
    knee = fit["slope_right"] <= KNEE * fit["slope_left"]
    return {"rho_positive": bool(rho > 0), "rare_branch_rises": bool(rising), "frequent_branch_flat_or_falling": bool(knee),
            "frequent_branch_falls": bool(fit["slope_right"] < 0), "real_shape": bool(rho > 0 and rising and knee)}


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="vocabulary")
    resolve(args)
    out = cli.Output(args, "vocabulary")
    out.add_config(loss="info_nce", eps=1e-8, context_noise=0.3, spread_range=[0.5, 1.0], leaves_per_concept=16,
                   dtype="float64", knee=KNEE, top_words=TOP, sparse=SPARSE)

    import jax

    cli.cpu_setup()
    with jax.enable_x64(True):
        return _run(args, out)


def _run(args, out):
    import jax
    import jax.numpy as jnp

    import normflow as nf
    from normflow.real import vocabulary_frequencies
    from normflow.real._probe import spearman_test, two_branch_curve, two_branch_fit
    from normflow.theory import lazy_adamw_r2

    t_start = time.time()
    timings = {}
    from importlib import resources

    real = json.loads(resources.files("normflow").joinpath(REAL_PROBE).read_text(encoding="utf-8"))
    real_fit = real["fits"]["token_norm"]
    real_rho = real["correlations"]["token_norm"]["vs_log_frequency"]["rho"]

    t0 = time.time()
    vf = vocabulary_frequencies(args.concepts)
    n = args.concepts
    words, freq, in_vocab = vf.words[:n], vf.frequency[:n], vf.in_vocab[:n]
    # ascending frequency in the table: the cumulative sum is then finest where the weights are smallest
    asc = np.argsort(freq, kind="stable")
    words = [words[i] for i in asc]
    freq, in_vocab = freq[asc], in_vocab[asc]
    w = freq / freq.sum()
    pf = presence(w, args.batch_size)
    timings["words"] = time.time() - t0

    dtype = jnp.float64
    key = jax.random.key(args.seed)
    k_task, k_model, k_run, k_se = jax.random.split(key, 4)
    task = nf.FlatTask(n, args.dim, key=k_task, weights=w, spread_range=(0.5, 1.0), context_noise=0.3, dtype=dtype)
    model = nf.default_model(task, k_model, init_norm=args.init_norm)
    T = args.steps
    w0 = int(round(T * (1 - args.window)))
    s = np.unique(np.concatenate([[0], np.linspace(w0, T, 24).round().astype(int)]))
    edges = np.geomspace(pf.min() * (1 - 1e-9), pf.max() * (1 + 1e-9), args.bins + 1)
    idx = bin_index(pf, edges)
    occupied = [b for b in range(args.bins) if np.any(idx == b)]
    pb = np.array([float(np.exp(np.mean(np.log(pf[idx == b])))) for b in occupied])
    d = args.dim
    hyper = {"sgd": (args.sgd_lr, args.sgd_weight_decay), "adamw": (args.adamw_lr, args.adamw_weight_decay),
             "lazy_adamw": (args.adamw_lr, args.adamw_weight_decay)}
    zipf_edges = np.arange(np.floor(np.log10(freq.min())), np.ceil(np.log10(freq.max())) + 1)
    runs = {}
    for name in OPTIMIZERS:
        t0 = time.time()
        lr, wd = hyper[name]
        run = nf.train(task, name, lr=lr, weight_decay=wd, b1=args.b1, b2=args.b2, steps=T, key=k_run,
                       batch_size=args.batch_size, save_steps=s, model=model, sparse=SPARSE[name])
        cli.check_diverged(run, what=name)
        steps_arr = np.asarray(run.steps)
        norms = np.asarray(run.norms, np.float64)
        final = norms[-1]
        r2 = np.mean(norms[steps_arr >= w0] ** 2, axis=0)
        # source statistics of the final table, pooled per bin (a rare word is in few batches)
        final_model = run.model  # the table at the last (recorded) step, up to date on the sparse engine too
        assert isinstance(final_model, nf.EmbeddingTable)
        assert np.allclose(np.linalg.norm(np.asarray(final_model.concept_embeddings()), axis=-1), final)
        cnt, s2, ms, var = (np.zeros(len(occupied)) for _ in range(4))
        chunk = min(32, args.se_batches)
        for j in range(-(-args.se_batches // chunk)):
            se = nf.source_energy(final_model, task, key=jax.random.fold_in(k_se, j), batch_size=args.batch_size,
                                  num_batches=chunk)
            nn = np.asarray(se.p, np.float64) * chunk
            for i, b in enumerate(occupied):
                m = idx == b
                cnt[i] += nn[m].sum()
                s2[i] += (nn[m] * np.asarray(se.source_norm, np.float64)[m] ** 2).sum()
                ms[i] += (nn[m] * np.asarray(se.mean_sq, np.float64)[m]).sum()
                var[i] += (nn[m] * np.asarray(se.var, np.float64)[m]).sum()
        seen = cnt > 0
        w2b = np.where(seen, s2 / np.maximum(cnt, 1), np.nan)
        rb = np.sqrt([np.mean(r2[idx == b]) for b in occupied])
        if name == "lazy_adamw":
            law = np.asarray(lazy_adamw_r2(lr, wd, d, pf, args.b1), np.float64)
            thb = np.sqrt([np.mean(law[idx == b]) for b in occupied])
            formula = "⟨R²⟩ = η²dp/(1−α²)·F_lazy, F_lazy = (1−β₁)(1+β₁a)/((1+β₁)(1−β₁a)), a = pα/(1−(1−p)α)  (docs/theory.md §8.6)"
        else:
            k = np.flatnonzero(seen)
            ctx = nf.theory.Context(
                steps=np.array([0, T]), r0=np.full(k.size, args.init_norm), stat_steps=np.array([T]),
                p=pb[k][None], pw2=(pb[k] * w2b[k])[None], mean_sq=(ms[k] / cnt[k])[None], var=(var[k] / cnt[k])[None],
                dim=d, lr=lr, weight_decay=wd, total_steps=T, b1=args.b1, b2=args.b2)
            pred = nf.theory.predict(name, ctx)
            thb = np.full(len(occupied), np.nan)
            thb[k] = np.asarray(pred.norms, np.float64)[-1]
            formula = f"nf.theory.predict({name!r}) on the bins: {pred.formula}  ({pred.section})"
        err = rb / thb - 1
        if name == "lazy_adamw":  # docs/theory.md §16 has no map of §8.6 yet
            valid = {"inside": None, "map": None, "message": "validity: no measured map for lazy_adamw (docs/theory.md §16)",
                     "detail": {}}
        else:
            valid = nf.validity.check_json(nf.validity.check(name, lr=lr, weight_decay=wd, p=pf, momentum=args.b1,
                                                             b2=args.b2))
        if not args.quiet or valid["inside"] is False:
            print(f"{name}: {valid['message']}")
        rho = spearman_test(freq, final)
        fit = two_branch_fit(freq, final, num_breaks=real_fit["num_breaks"])
        runs[name] = {
            "optimizer": name, "lr": lr, "weight_decay": wd, "sparse": SPARSE[name], "formula": formula, "validity": valid,
            "spearman_vs_frequency": rho, "two_branch_fit": fit,
            "slope_left": fit["slope_left"], "slope_right": fit["slope_right"], "break_frequency": fit["x_break"],
            "top_words_over_peak": top_words_ratio(freq, final, zipf_edges),
            "shape": shape_of(rho["rho"], fit),
            "formula_median_abs_rel_error": float(np.nanmedian(np.abs(err))) if np.isfinite(err).any() else None,
            "formula_max_abs_rel_error": float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else None,
            "bins": {"p": pb, "norm_rms": rb, "norm_formula": thb, "rel_error": err, "w2": w2b,
                     "sightings_in_se_batches": cnt, "count": [int(np.sum(idx == b)) for b in occupied]},
            "final_norm": final,
        }
        timings[name] = time.time() - t0

    real_shape = shape_of(real_rho, real_fit)
    matches = [k for k in OPTIMIZERS if runs[k]["shape"]["real_shape"]]
    verdict = ("the real curve's shape (ρ > 0, rising rare branch, flat or falling frequent branch) is matched by: "
               + (", ".join(matches) if matches else "none") + "; not by: "
               + (", ".join(k for k in OPTIMIZERS if k not in matches) or "none"))

    print(f"task: {n} words ({int(in_vocab.sum())} whole-word tokens of the real vocabulary, "
          f"{int((~in_vocab).sum())} from wordfreq's top list), batch {args.batch_size}: p from {pf.min():.2g} to "
          f"{pf.max():.2g} ({np.log10(pf.max() / pf.min()):.2f} decades); {T} steps, dim {d}")
    print(f"{'':>11} {'Spearman':>9} {'slope rare':>10} {'slope freq':>10} {'break w':>9} {'top/peak':>8} "
          f"{'|err| med':>9} {'max':>7}  shape")
    for k in OPTIMIZERS:
        r = runs[k]
        me = r["formula_median_abs_rel_error"]
        mx = r["formula_max_abs_rel_error"]
        print(f"{k:>11} {r['spearman_vs_frequency']['rho']:>9.3f} {r['slope_left']:>10.3f} {r['slope_right']:>10.3f} "
              f"{r['break_frequency']:>9.2g} {r['top_words_over_peak']:>8.3f} "
              f"{100 * me if me is not None else float('nan'):>8.1f}% {100 * mx if mx is not None else float('nan'):>6.1f}%  "
              f"{'real shape' if r['shape']['real_shape'] else 'not'}")
    print(f"{'real model':>11} {real_rho:>9.3f} {real_fit['slope_left']:>10.3f} {real_fit['slope_right']:>10.3f} "
          f"{real_fit['x_break']:>9.2g} {'':>8} {'':>9} {'':>7}  (all-MiniLM-L6-v2 token rows, real_probe.json)")
    print(verdict)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(15, 5.6))
    colors = {"sgd": "tab:blue", "adamw": "tab:red", "lazy_adamw": "tab:green"}
    labels = {"sgd": "SGD+decay", "adamw": "AdamW", "lazy_adamw": "lazy AdamW"}
    # binned by wordfreq frequency: the measured final norms (median per bin), the formula per p bin
    fb = [float(np.exp(np.mean(np.log(freq[idx == b])))) for b in occupied]
    for k in OPTIMIZERS:
        r = runs[k]
        c = colors[k]
        ax.scatter(freq, r["final_norm"], s=1, color=c, alpha=0.05, rasterized=True)
        med = [np.median(r["final_norm"][idx == b]) for b in occupied]
        ax.plot(fb, med, "o-", color=c, lw=2, ms=4,
                label=f"{labels[k]}: measured final norm (median per bin), ρ = {r['spearman_vs_frequency']['rho']:.2f}")
        ax.plot(fb, r["bins"]["norm_formula"], "--", color=c, lw=1.5, label=f"{labels[k]}: formula (rms, per bin)")
        ax2.plot(fb, med / np.nanmax(med), "-", color=c, lw=2, label=f"{labels[k]} (synthetic)")
    xx = np.geomspace(max(freq.min(), 1e-8), freq.max(), 200)
    real_curve = two_branch_curve(real_fit, xx)
    ax2.plot(xx, real_curve / real_curve.max(), "k-", lw=2.5,
             label=f"all-MiniLM-L6-v2 token rows (two-branch fit, ρ = {real_rho:.2f})")
    cli.label_axes(ax, xlabel="wordfreq frequency of the word", ylabel="embedding norm |x|", log="xy",
                   title=f"{n} words, batch {args.batch_size}, {T} steps: measured (solid) and formula (dashed)")
    cli.label_axes(ax2, xlabel="wordfreq frequency of the word", ylabel="norm / its largest value (shape only)",
                   log="xy", title="shape beside the real model's measured token-norm curve")
    fig.tight_layout()
    out.savefig(fig)

    body = {
        "verdict": verdict, "matches_real_shape": matches,
        "shape_criterion": f"rho > 0, slope_left > 0 and slope_right <= {KNEE} * slope_left (two-branch fit of "
                           "log10 final norm on log10 wordfreq frequency, normflow.real._probe.two_branch_fit)",
        "task": {"num_concepts": n, "in_vocab": int(in_vocab.sum()), "added_from_wordfreq_top": int((~in_vocab).sum()),
                 "batch_size": args.batch_size, "p_min": float(pf.min()), "p_max": float(pf.max()),
                 "decades": float(np.log10(pf.max() / pf.min())), "words": words, "frequency": freq, "p": pf,
                 "in_vocab_mask": in_vocab},
        "real_model": {"source": "docs/results/real/real_probe.json (normflow/_data/real_probe.json)", "spearman_vs_frequency": real_rho,
                       "slope_left": real_fit["slope_left"], "slope_right": real_fit["slope_right"],
                       "break_frequency": real_fit["x_break"], "n": real_fit["n"], "shape": real_shape},
        "headline": {k: {"spearman": runs[k]["spearman_vs_frequency"]["rho"], "slope_left": runs[k]["slope_left"],
                         "slope_right": runs[k]["slope_right"], "break_frequency": runs[k]["break_frequency"],
                         "top_words_over_peak": runs[k]["top_words_over_peak"],
                         "formula_median_abs_rel_error": runs[k]["formula_median_abs_rel_error"],
                         "real_shape": runs[k]["shape"]["real_shape"]} for k in OPTIMIZERS},
        "window_start_step": w0,
        "runs": runs,
    }
    path = out.write(body)
    cli.print_written(path, out.figure, timings, t_start)


if __name__ == "__main__":
    cli.script(main)
