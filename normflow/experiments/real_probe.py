#!/usr/bin/env python
"""Norm probe of all-MiniLM-L6-v2: token-row and single-word encoding norms against word frequency and WordNet depth.

    python sims/real_probe.py            # every eligible noun (about a minute on 2 cores)
    python sims/real_probe.py --quick    # the test-suite size (a random 300 of them)

The words are WordNet 3.0 noun lemmas that are one alphabetic word, have a wordfreq frequency
> 0, and are one whole-word token of the model's vocabulary (the tokenizer gives exactly
``[CLS] id [SEP]``; lemmas that share a token, e.g. "Apple"/"apple", are kept once, the lowercase
one first). Per word it measures two norms:

- the token-table row norm ``|word[id]|`` (:attr:`normflow.real.Bert.word`);
- the norm of the word's own encoding: the mean-pooled last hidden states of ``[CLS] w [SEP]``
  *before* the model's L2 normalisation (:class:`normflow.real.Bert`), in fixed-shape batches of
  ``--batch-size`` (checked against :func:`normflow.real.encode_texts` on the first words).

and reports (:mod:`normflow.real._probe`) Spearman's ρ of each norm with log frequency and with
WordNet depth (the depth of the word's first sense, ``--depth-of first``, or of its most
generic sense, ``generic``; both are reported), the partial ρ with depth given frequency, ρ with depth
within zipf bins one wide, and a continuous two-branch fit of log10 norm on log10 frequency
(breakpoint by least squares over a grid; a description, not a theory).

The lab's expectation, for reading the fit: under SGD the imprint writes frequency into the norm,
``R⁴ = R₀⁴ + 2η∫pW²`` (docs/theory.md §5) and ``R*⁴ ∝ ηpW²/λ`` with decay (§6): log R rises with
slope 1/4 in log p at fixed W². Under AdamW (the real model's optimizer) the norm of a frequent
concept is flat in p, ``R*² = (ηd/2λ)F`` for p ≫ 1−β₂, and only rare concepts (p ≪ 1−β₂) have
``⟨R²⟩ ∝ p`` (slope 1/2), with a smooth bend over about two decades around p = 1−β₂ (§8.2). p there
is the chance that a concept is in a training step, not a corpus frequency, and the table's
history (BERT pre-training, MiniLM distillation, contrastive fine-tuning) is not the lab's setting.

Writes ``<figures>/real_probe.png`` and ``<out>/results.json`` (counts, every correlation with its
n, the bins, the fits, and the per-word arrays).
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

FULL = {"max_words": 0, "batch_size": 256, "min_cell": 20}
QUICK = {"max_words": 300, "batch_size": 64, "min_cell": 5}
CHECK_WORDS = 16  # words whose fixed-shape encoding is compared with encode_texts
EXPECTATION = {
    "sgd": "docs/theory.md §5: R⁴(t) = R₀⁴ + 2η∫pW² (the imprint: the norm rises with frequency); §6: with decay "
           "R*⁴ = ηpW²/(λ(2−ηλ)), R* ∝ (pW²/λ)^(1/4): d log R / d log p = 1/4 at fixed W²",
    "adamw": "docs/theory.md §8.2 (and §8.1): for p ≫ 1−β₂, R*² = (ηd/2λ)·F, flat in p; for p ≪ 1−β₂, "
             "⟨R²⟩ = ηdp c²/(2λ(1−β₂)), d log R / d log p = 1/2; a smooth bend over ~2 decades around p = 1−β₂",
    "note": "p is the per-step chance that a concept is in the batch, not a corpus frequency; all-MiniLM-L6-v2 "
            "was trained with AdamW; its history (pre-training, distillation, fine-tuning) is not the lab's setting",
}


def build_parser():
    p = cli.make_parser("real_probe.py", __doc__.splitlines()[0])
    p.add_argument("--max-words", type=int, default=None,
                   help=f"use a random subset of this many eligible words, drawn with --seed; 0 = all "
                        f"(default {FULL['max_words']}, --quick {QUICK['max_words']})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"words per encoding batch (one compiled shape) (default {FULL['batch_size']}, "
                        f"--quick {QUICK['batch_size']})")
    p.add_argument("--depth-of", choices=("first", "generic"), default="first",
                   help="the depth used for the figure and the per-bin correlations: of the first sense, or of the "
                        "most generic sense (both are reported)")
    p.add_argument("--min-bin", type=int, default=10, help="zipf bins with fewer words get no correlation")
    p.add_argument("--min-cell", type=int, default=None,
                   help=f"panel (c): the least words in a (zipf bin, depth) cell for its median to be drawn "
                        f"(default {FULL['min_cell']}, --quick {QUICK['min_cell']})")
    p.add_argument("--num-breaks", type=int, default=200, help="candidate breakpoints of the two-branch fit")
    return p


def _check(args):
    cli.check_flags(args, max_words=cli.at_least(0), batch_size=cli.at_least(1), min_bin=cli.at_least(3),
                    min_cell=cli.at_least(1),
                    num_breaks=cli.at_least(1))
    if 0 < args.max_words < 20:
        raise cli.UsageError(f"--max-words: must be 0 (all) or >= 20, got {args.max_words}")


def select_words(table, tokenizer, noun_lemmas):
    """The eligible words of a :func:`normflow.real._wordnet.noun_table`: alphabetic, frequency > 0,
    one whole-word token; one word per token id. Returns ``(rows, token_ids, counts)``."""
    words = list(table.word)
    freq = np.asarray(table.frequency, float)
    alpha = [i for i, w in enumerate(words) if w.isascii() and w.isalpha()]
    enc = tokenizer.encode_batch([words[i] for i in alpha])
    cls_id, sep_id, unk_id = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[UNK]"))
    single = [(i, e.ids[1]) for i, e in zip(alpha, enc)
              if len(e.ids) == 3 and e.ids[0] == cls_id and e.ids[2] == sep_id and e.ids[1] != unk_id]
    positive = [(i, t) for i, t in single if freq[i] > 0]
    # one word per token: the lowercase lemma first, then the first in the table's order
    best: dict[int, int] = {}
    for i, t in positive:
        j = best.get(t)
        if j is None or (words[i].islower() and not words[j].islower()):
            best[t] = i
    rows = np.array(sorted(best.values()), int)
    token_of = {i: t for t, i in best.items()}
    counts = {"noun_lemmas": int(noun_lemmas), "single_word_alpha": len(alpha), "single_token": len(single),
              "single_token_frequency_positive": len(positive), "eligible": int(rows.size),
              "dropped_same_token": len(positive) - int(rows.size)}
    return rows, np.array([token_of[i] for i in rows], np.int32), counts


def encoding_norms(model, token_ids, batch_size, cls_id, sep_id):
    """Norms of the mean-pooled encodings of ``[CLS] t [SEP]`` (before normalisation), in batches
    of one fixed shape ``(batch_size, 3)`` (the last padded with copies of the first row)."""
    import equinox as eqx
    import jax.numpy as jnp

    @eqx.filter_jit
    def encode(m, ids):
        return m(ids, jnp.ones(ids.shape, m.word.dtype))

    n = token_ids.size
    ids = np.stack([np.full(n, cls_id), token_ids, np.full(n, sep_id)], axis=1).astype(np.int32)
    pad = (-n) % batch_size
    ids = np.concatenate([ids, np.repeat(ids[:1], pad, axis=0)]) if pad else ids
    out = [np.asarray(encode(model, jnp.asarray(ids[s: s + batch_size])), np.float64)
           for s in range(0, ids.shape[0], batch_size)]
    emb = np.concatenate(out)[:n]
    return np.linalg.norm(emb, axis=1), emb


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="real_probe", sizes=(QUICK, FULL))
    _check(args)
    out = cli.Output(args, "real_probe")
    out.add_config(model="all-MiniLM-L6-v2", check_words=CHECK_WORDS)

    import jax.numpy as jnp

    from normflow.real import _probe as probe
    from normflow.real import encode_texts, load_minilm, load_tokenizer
    from normflow.real._wordnet import load_wordnet, noun_table

    t_start = time.time()
    timings = {}
    t0 = time.time()
    model = load_minilm(jnp.float64 if args.x64 else jnp.float32)
    tok = load_tokenizer()
    timings["model"] = time.time() - t0

    t0 = time.time()
    wn = load_wordnet()
    table = noun_table(wn, single_word=True)
    rows, token_ids, counts = select_words(table, tok, len(wn.senses))
    if rows.size < 20:
        raise cli.UsageError(f"only {rows.size} eligible words: is the WordNet data installed?")
    if args.max_words and args.max_words < rows.size:
        pick = np.sort(np.random.default_rng(args.seed).choice(rows.size, args.max_words, replace=False))
        rows, token_ids = rows[pick], token_ids[pick]
    counts["used"] = int(rows.size)
    words = [table.word[i] for i in rows]
    freq = np.asarray(table.frequency, float)[rows]
    zipf = np.log10(freq) + 9.0
    depth = {"depth_first": np.asarray(table.depth_first, float)[rows],
             "depth_generic": np.asarray(table.depth_generic, float)[rows]}
    n_senses = np.asarray(table.n_senses, int)[rows]
    timings["words"] = time.time() - t0

    t0 = time.time()
    norms = {"token_norm": np.linalg.norm(np.asarray(model.word, np.float64)[token_ids], axis=1)}
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    norms["encoding_norm"], emb = encoding_norms(model, token_ids, args.batch_size, cls_id, sep_id)
    k = min(CHECK_WORDS, len(words))
    ref = encode_texts(model, words[:k], batch_size=k)
    check = float(np.max(np.linalg.norm(emb[:k] - ref, axis=1) / np.linalg.norm(ref, axis=1)))
    timings["encode"] = time.time() - t0

    t0 = time.time()
    key = f"depth_{args.depth_of}"
    corr, fits, medians = {}, {}, {}
    for name, v in norms.items():
        c = {"vs_log_frequency": probe.spearman_test(v, np.log10(freq))}
        for d, dv in depth.items():
            c[f"vs_{d}"] = probe.spearman_test(v, dv)
            c[f"vs_{d}_given_frequency"] = probe.partial_spearman(v, dv, np.log10(freq))
        c["vs_depth_by_zipf_bin"] = probe.binned_spearman(v, depth[key], zipf, probe.ZIPF_EDGES, min_n=args.min_bin)
        corr[name] = c
        fits[name] = probe.two_branch_fit(freq, v, num_breaks=args.num_breaks)
        medians[name] = probe.group_medians(v, depth[key], zipf, probe.ZIPF_EDGES, min_n=args.min_cell)
    depth_vs_freq = {d: probe.spearman_test(dv, np.log10(freq)) for d, dv in depth.items()}
    norm_vs_norm = probe.spearman_test(norms["token_norm"], norms["encoding_norm"])
    timings["statistics"] = time.time() - t0

    _report(args, counts, corr, fits, depth_vs_freq, norm_vs_norm, check, key)

    t0 = time.time()
    fig = _figure(args, freq, depth[key], norms, corr, fits, medians, counts, key)
    out.savefig(fig)
    import matplotlib.pyplot as plt

    plt.close(fig)
    timings["figure"] = time.time() - t0

    results = {
        "counts": counts,
        "depth_used": key,
        "correlations": corr,
        "depth_vs_log_frequency": depth_vs_freq,
        "token_norm_vs_encoding_norm": norm_vs_norm,
        "fits": fits,
        "medians_by_zipf_bin_and_depth": medians,
        "zipf_edges": probe.ZIPF_EDGES,
        "expectation": EXPECTATION,
        "check": {"encode_texts_max_rel_diff": check, "words": k},
        "words": {"word": words, "token_id": token_ids, "frequency": freq, "zipf": zipf,
                  "depth_first": depth["depth_first"], "depth_generic": depth["depth_generic"],
                  "n_senses": n_senses, "token_norm": norms["token_norm"], "encoding_norm": norms["encoding_norm"]},
    }
    path = out.write(results)
    cli.print_written(path, out.figure, timings, t_start)


def _fmt(c):
    if c["rho"] is None or not np.isfinite(c["rho"]):
        return f"   —   (n {c['n']})"
    return f"{c['rho']:+.3f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] (n {c['n']})"


def _report(args, counts, corr, fits, depth_vs_freq, norm_vs_norm, check, key):
    c = counts
    print(f"words: {c['noun_lemmas']} WordNet noun lemmas, {c['single_word_alpha']} single alphabetic words, "
          f"{c['single_token']} one whole-word token, {c['single_token_frequency_positive']} with frequency > 0, "
          f"{c['eligible']} distinct tokens; used {c['used']}"
          + (f" (random subset, seed {args.seed})" if c["used"] < c["eligible"] else ""))
    print(f"check: fixed-shape encodings vs encode_texts, max relative difference {check:.1e}")
    print(f"depth vs log frequency: spearman first sense {_fmt(depth_vs_freq['depth_first'])}, "
          f"most generic sense {_fmt(depth_vs_freq['depth_generic'])}; token norm vs encoding norm {_fmt(norm_vs_norm)}")
    for name, label in (("token_norm", "token-row norm |word[id]|"), ("encoding_norm", "encoding norm (unnormalised)")):
        r, f = corr[name], fits[name]
        print(f"{label}:")
        print(f"  spearman vs log frequency     {_fmt(r['vs_log_frequency'])}")
        for d in ("depth_first", "depth_generic"):
            print(f"  spearman vs {d:<14s}    {_fmt(r['vs_' + d])};  given frequency {_fmt(r[f'vs_{d}_given_frequency'])}")
        bins = ", ".join(f"{b['lo']:g}-{b['hi']:g}: " + ("—" if b["rho"] is None or not np.isfinite(b["rho"])
                                                          else f"{b['rho']:+.2f}") + f" (n {b['n']})"
                         for b in r["vs_depth_by_zipf_bin"] if b["n"])
        print(f"  spearman vs {key} within zipf bins: {bins}")
        print(f"  two-branch fit of log10 norm on log10 frequency: break at f = 10^{f['break_log10']:.2f} "
              f"(zipf {f['break_log10'] + 9:.2f}), slope left {f['slope_left']:+.4f} ± {f['se_left']:.4f} "
              f"(n {f['n_left']}), right {f['slope_right']:+.4f} ± {f['se_right']:.4f} (n {f['n_right']}); "
              f"rmse {f['rmse']:.4f} (one line: slope {f['line']['slope']:+.4f}, rmse {f['line']['rmse']:.4f}; "
              f"rss {100 * f['rss_gain']:.1f}% lower)")
    print("expectation (docs/theory.md): SGD slope +1/4 (§5 imprint, §6 R*⁴ ∝ pW²/λ); AdamW flat for frequent "
          "concepts (p ≫ 1−β₂) and +1/2 for rare ones (§8.2); the model was trained with AdamW")


def _figure(args, freq, depth, norms, corr, fits, medians, counts, key):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from matplotlib.lines import Line2D

    from normflow.real import _probe as probe

    lf = np.log10(freq)
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    labels = {"token_norm": "token-row norm |word[id]|", "encoding_norm": "encoding norm |mean-pooled h| before L2"}
    short = {"token_norm": "token-row norm", "encoding_norm": "single-word encoding norm"}
    dlabel = {"depth_first": "WordNet depth of the first sense", "depth_generic": "WordNet depth of the most generic sense"}[key]
    lo, hi = np.percentile(depth, [1, 99])
    order = np.argsort(-depth)  # shallow words on top
    grid = np.linspace(lf.min(), lf.max(), 200)
    x_ref = np.percentile(lf, [8, 8]) + np.array([0.0, 1.0])  # the reference slopes span one decade
    refs = (("slope +1/4: SGD imprint/equilibrium (theory §5, §6)", 0.25, "tab:red"),
            ("slope +1/2: AdamW, rare (p ≪ 1−β₂, §8.2)", 0.5, "tab:purple"),
            ("slope 0: AdamW, frequent (p ≫ 1−β₂, §8.2)", 0.0, "tab:blue"))
    for ax, name in zip(axes[0], ("token_norm", "encoding_norm")):
        v, f, r = norms[name], fits[name], corr[name]
        sc = ax.scatter(lf[order], v[order], c=depth[order], cmap="viridis_r", vmin=lo, vmax=hi,
                        s=5 if v.size > 2000 else 12, alpha=0.55, lw=0, rasterized=True)
        ax.plot(grid, probe.two_branch_curve(f, 10**grid), "k-", lw=1.8,
                label=f"two-branch fit: slopes {f['slope_left']:+.3f} | {f['slope_right']:+.3f}, "
                      f"break at zipf {f['break_log10'] + 9:.2f}")
        ax.plot(grid, 10 ** (f["line"]["intercept"] + f["line"]["slope"] * grid), ":", color="0.3", lw=1.3,
                label=f"one line: slope {f['line']['slope']:+.3f} (the break lowers its residual SS by "
                      f"{100 * f['rss_gain']:.1f}%)")
        y_lo, y_hi = np.percentile(v, [0.2, 99.8])
        ax.set_ylim(y_lo / 1.04, y_hi * (y_hi / y_lo) ** 0.45)  # room above the points for the legend
        y0 = float(probe.two_branch_curve(f, 10 ** x_ref[:1])[0])
        for label, slope, col in refs:  # clipped at the frame: only their slopes matter
            ax.plot(x_ref, y0 * 10 ** (slope * (x_ref - x_ref[0])), "--", color=col, lw=2.0, alpha=0.8,
                    label=label)
        ax.axvline(f["break_log10"], color="k", lw=0.6, alpha=0.4)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("log10 word frequency f (wordfreq: share of running words)")
        ax.set_ylabel(labels[name] + " (log scale)")
        top = ax.secondary_xaxis("top", functions=(lambda x: x + 9, lambda z: z - 9))
        top.set_xlabel("zipf = log10 f + 9", fontsize=8)
        a = r["vs_log_frequency"]
        ax.set_title(f"{'(a)' if name == 'token_norm' else '(b)'} {short[name]} vs frequency: "
                     f"Spearman ρ = {a['rho']:+.3f} (n {a['n']})", fontsize=9.5)
        ax.legend(fontsize=7, loc="upper left" if f["line"]["slope"] > 0 else "upper right",
                  title="solid: fits to the points; dashed: lab theory's slopes (guides; d log R / d log p)", title_fontsize=7)
        fig.colorbar(sc, ax=ax, label=dlabel + " (colour)", pad=0.01)

    ax = axes[1, 0]
    cmap = plt.cm.plasma
    nb = len(probe.ZIPF_EDGES) - 1
    for name, ls, mk in (("token_norm", "-", "o"), ("encoding_norm", ":", "s")):
        for i, b in enumerate(medians[name]):
            if len(b["groups"]) < 2:
                continue
            ax.plot(b["groups"], np.asarray(b["medians"]) / b["median"], ls, marker=mk, ms=3.5, lw=1.3,
                    color=cmap(i / (nb - 1) * 0.9))
    ax.axhline(1.0, color="0.5", lw=0.6)
    used = [i for i, b in enumerate(medians["token_norm"]) if len(b["groups"]) >= 2]
    handles = [Line2D([], [], color=cmap(i / (nb - 1) * 0.9), lw=2,
                      label=f"zipf {medians['token_norm'][i]['lo']:g}–{medians['token_norm'][i]['hi']:g} "
                            f"(n {medians['token_norm'][i]['n']})") for i in used]
    handles += [Line2D([], [], color="k", ls="-", marker="o", ms=3.5, label="token-row norm"),
                Line2D([], [], color="k", ls=":", marker="s", ms=3.5, label="encoding norm")]
    ax.legend(handles=handles, fontsize=7.5, ncol=2, loc="best")
    ax.set_xlabel(dlabel)
    ax.set_ylabel("median norm at that depth / median norm of the zipf bin")
    ax.set_title("(c) norm vs depth within zipf bins (medians; cells with "
                 f"≥ {args.min_cell} words)", fontsize=8.5)

    ax = axes[1, 1]
    rows = [("vs log10 frequency", "vs_log_frequency", None),
            (f"vs {key.replace('_', ' ')}", f"vs_{key}", None),
            (f"vs {key.replace('_', ' ')} | frequency (partial)", f"vs_{key}_given_frequency", None)]
    rows += [(f"vs {key.replace('_', ' ')}, zipf {b['lo']:g}–{b['hi']:g}", "vs_depth_by_zipf_bin", i)
             for i, b in enumerate(corr["token_norm"]["vs_depth_by_zipf_bin"]) if b["n"] >= args.min_bin]
    ylab = []
    for j, (label, field, i) in enumerate(rows):
        for name, off, col, mk in (("token_norm", -0.15, "tab:blue", "o"), ("encoding_norm", 0.15, "tab:orange", "s")):
            c = corr[name][field] if i is None else corr[name][field][i]
            if c["rho"] is None or not np.isfinite(c["rho"]):
                continue
            lo_, hi_ = c["ci95"]
            ax.errorbar(c["rho"], j + off, xerr=[[c["rho"] - lo_], [hi_ - c["rho"]]], fmt=mk, color=col, ms=5,
                        capsize=2, lw=1)
        n = (corr["token_norm"][field] if i is None else corr["token_norm"][field][i])["n"]
        ylab.append(f"{label}  (n {n})")
    ax.set_yticks(range(len(rows)), ylab, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="0.5", lw=0.8)
    ax.axhline(2.5, color="0.8", lw=0.8)
    ax.set_xlabel("Spearman ρ (95 % interval, Fisher z)")
    ax.legend(handles=[Line2D([], [], color="tab:blue", marker="o", ls="", label="token-row norm"),
                       Line2D([], [], color="tab:orange", marker="s", ls="", label="encoding norm")], fontsize=8,
              loc="best")
    ax.set_title("(d) Spearman ρ of the norms; partial: given log frequency (rank residuals)", fontsize=8.5)

    which = (f"a random {counts['used']} of the {counts['eligible']}" if counts["used"] < counts["eligible"]
             else f"all {counts['used']}")
    fig.suptitle(f"all-MiniLM-L6-v2: norms of {which} WordNet nouns that are one whole-word token", fontsize=11)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    cli.script(main)
