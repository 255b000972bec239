"""A retrieval benchmark from WordNet for the real model: glosses as queries, words as documents
(and the reverse), with the norm-weighted scores of :mod:`normflow.retrieval` and the norm-side
baselines a reader would ask for. Used by :mod:`normflow.experiments.real_retrieval`.

The benchmark (:func:`build_benchmark`)
---------------------------------------
``N`` noun synsets are sampled (seeded, stratified by WordNet depth: every depth in range gets an
equal share, capped by what WordNet has, the rest going to the other depths). The **documents**
are the distinct lemma strings of the sampled synsets (lower-cased, ``_`` → space; single or
multi-word); the **queries** are the synsets' glosses, cut to the definition (WordNet's quoted
usage examples, which contain the word itself, are dropped). A gloss's relevant documents are
the lemmas of its synset (grade 2) and, with ``graded=True``, the lemmas of its direct hypernyms
and hyponyms that are documents (grade 1); a lemma string shared by several sampled synsets is
relevant to each. The reverse direction (a word as the query, glosses as the documents) uses the
transposed relevance. The queries of each direction are split into a validation part (to tune
the baselines' one parameter) and a test part (where everything is reported); a further, disjoint
set of synsets gives the **query bank** of the querybank normalisation (its glosses for
gloss → word, its lemmas for word → gloss; none of them is a document or a query).

Scores and NDCG
---------------
NDCG@k is the lab's (:func:`normflow.retrieval.ndcg_at_k`, trec_eval ``ndcg_cut``).
:func:`top_k_ndcg` returns exactly ``ndcg_at_k(scores, relevance, k)`` but ranks only the union of
each query's top ``k`` documents (``lax.top_k``, lower index first among equal scores, like the
lab's stable sort) and its relevant documents, instead of sorting all ``D`` documents: the top
``k`` of that union is the full ranking's top ``k`` and the ideal DCG sees every relevant grade,
so nothing changes but the cost (a full sort of thousands of documents per query and α is what
made the direct route slow on CPU). Norm-weighted scores are ``cos · |q|^α_q · |d|^α_d`` computed
exactly as the lab's :func:`normflow.retrieval.norm_weighted_scores` (α = 0 is bitwise cosine).

Baselines (:func:`baseline_scores`)
-----------------------------------
- *centering*: cosine after subtracting the mean document embedding from the documents
  (``center_docs``), or each side's own mean from each side (``center_both``); and
  "all-but-the-top" (Mu & Viswanath 2018): each side centred and its top principal directions
  (:data:`ABTT_COMPONENTS`) projected out, then cosine (``abtt``). All on the unnormalised
  embeddings.
- *querybank normalisation with the inverted softmax* (QB-Norm, Bogolin et al. 2022; inverted
  softmax, Smith et al. 2017): ``exp(β s(q,d)) / Σ_b exp(β s(b,d))`` over the bank queries ``b``
  (cosines), ranked in log space; the plain inverted softmax, not QB-Norm's dynamic variant.
  ``β`` is chosen on the validation queries.
- *CSLS* (Conneau et al. 2018): ``2 cos(q,d) − r_Q(q) − r_B(d)`` with ``r`` the mean cosine of the
  ``k`` nearest neighbours (``r_B(d)``: among the bank queries).
"""

from __future__ import annotations

import functools
import re
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..retrieval._metrics import _norms_and_cosines, _weight, ndcg_at_k

__all__ = [
    "DEPTH_BINS", "ABTT_COMPONENTS", "CSLS_NEIGHBOURS", "BETAS",
    "definition", "lemma_text", "stratified_sample", "relevance_from_structure", "Benchmark", "build_benchmark",
    "depth_bin_masks", "cosines", "top_k_ndcg", "alpha_ndcg", "shuffled_norm_ndcg", "query_alpha_grid",
    "centered", "all_but_the_top", "inverted_softmax_scores", "csls_scores", "choose_beta", "baseline_scores", "query_ndcg",
    "paired_bootstrap", "encode_bucketed", "LENGTH_BUCKETS",
]

DEPTH_BINS: tuple[tuple[int, int], ...] = ((0, 5), (6, 7), (8, 9), (10, 11), (12, 10**6))
"""Depth bins of the target synset, inclusive ``(lo, hi)``: ≤5, 6–7, 8–9, 10–11, ≥12."""

ABTT_COMPONENTS = 4  # Mu & Viswanath's rule of thumb: about dim/100 directions (384/100)
CSLS_NEIGHBOURS = 10  # Conneau et al.'s K
BETAS = (1.0, 3.0, 10.0, 20.0, 30.0, 50.0, 100.0)  # inverse temperatures tried for the inverted softmax


# ---------------------------------------------------------------------------------------------
# The benchmark


_EXAMPLE = re.compile(r';?\s*"')


def definition(gloss: str) -> str:
    """A WordNet gloss without its usage examples: the text before the first quoted example.

    **Arguments:**

    - `gloss`: e.g. ``'a domesticated carnivorous mammal; "the dog barked all night"'``.

    **Returns:** ``'a domesticated carnivorous mammal'`` (stripped; the whole gloss when it starts
    with a quote).
    """
    m = _EXAMPLE.search(gloss)
    head = gloss[: m.start()] if m else gloss
    head = head.strip().rstrip(";").strip()
    return head if head else gloss.strip()


def lemma_text(lemma: str) -> str:
    """A lemma as a document: lower case, ``_`` as spaces (``'Hot_dog'`` → ``'hot dog'``)."""
    return " ".join(lemma.replace("_", " ").split()).lower()


def stratified_sample(depths: np.ndarray, n: int, *, rng: np.random.Generator, levels: Sequence[int] | None = None,
                      exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``n`` items drawn without replacement, the same number from every depth level
    (water-filling: a level with fewer items gives all it has, the rest is shared by the others).

    **Arguments:**

    - `depths`: ``int[M]``, each candidate's depth.
    - `n`: how many to draw (at most the number of candidates at ``levels``).
    - `rng`: the NumPy generator (seeded by the caller).
    - `levels`: the depth levels to draw from (default: every level present).
    - `exclude`: ``bool[M]``, candidates not to draw (e.g. already used).

    **Returns:** ``int[n]`` indices into ``depths``, sorted.
    """
    depths = np.asarray(depths)
    ok = np.ones(depths.shape, bool) if exclude is None else ~np.asarray(exclude, bool)
    levels = sorted(set(depths[ok].tolist())) if levels is None else list(levels)
    pools = [np.flatnonzero(ok & (depths == lv)) for lv in levels]
    avail = np.array([p.size for p in pools])
    if n > avail.sum():
        raise ValueError(f"asked for {n} items, only {int(avail.sum())} at depths {levels[0]}..{levels[-1]}")
    take = np.zeros(len(pools), int)
    left = n
    while left > 0:
        open_ = np.flatnonzero(take < avail)
        share = max(left // open_.size, 1)
        for i in open_:
            add = min(share, avail[i] - take[i], left)
            take[i] += add
            left -= add
            if left == 0:
                break
    picked = [rng.choice(p, size=t, replace=False) for p, t in zip(pools, take) if t]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, int)


def relevance_from_structure(synsets: Sequence[Any], lemmas_of, neighbours_of, *, graded: bool = True
                             ) -> tuple[list[str], np.ndarray]:
    """Documents and gloss → word relevance from a WordNet-like structure.

    **Arguments:**

    - `synsets`: the sampled synset ids (one query each, in this order).
    - `lemmas_of`: ``id -> list of lemma strings`` (any synset, also unsampled neighbours).
    - `neighbours_of`: ``id -> ids`` of the direct hypernyms and hyponyms.
    - `graded`: give the neighbours' lemmas grade 1 (else only the synset's own lemmas count).

    **Returns:** ``(docs, relevance)``: ``docs`` the distinct :func:`lemma_text` strings of the
    sampled synsets in order of first appearance; ``relevance`` ``int8[Q, D]``, 2 for the query
    synset's own lemmas, 1 (``graded``) for a neighbour's lemma that is a document, else 0.
    """
    docs: dict[str, int] = {}
    own = []
    for s in synsets:
        row = []
        for lem in lemmas_of(s):
            t = lemma_text(lem)
            row.append(docs.setdefault(t, len(docs)))
        own.append(row)
    rel = np.zeros((len(synsets), len(docs)), np.int8)
    for i, s in enumerate(synsets):
        if graded:
            for nb in neighbours_of(s):
                for lem in lemmas_of(nb):
                    j = docs.get(lemma_text(lem))
                    if j is not None:
                        rel[i, j] = 1
        rel[i, own[i]] = 2
    return list(docs), rel


class Benchmark(NamedTuple):
    """The WordNet gloss ↔ word benchmark (:func:`build_benchmark`).

    Attributes:
        synsets: ``int[N]`` the sampled synsets' offsets (one gloss query each).
        glosses: the ``N`` queries of gloss → word (definitions, examples dropped).
        depth: ``int[N]`` each synset's WordNet depth.
        docs: the ``D`` distinct lemma strings (documents of gloss → word, queries of word → gloss).
        doc_depth: ``int[D]`` a word's depth: that of its first sampled sense (WordNet sense order).
        relevance: ``int8[N, D]`` gloss → word grades (2 own lemma, 1 hypernym/hyponym lemma).
        gloss_val: ``bool[N]`` the gloss queries of the validation split (the rest: test).
        word_val: ``bool[D]`` the word queries of the validation split.
        bank_glosses: the query bank for gloss → word (glosses of further synsets).
        bank_words: the query bank for word → gloss (their lemma strings that are not documents).
    """

    synsets: np.ndarray
    glosses: list[str]
    depth: np.ndarray
    docs: list[str]
    doc_depth: np.ndarray
    relevance: np.ndarray
    gloss_val: np.ndarray
    word_val: np.ndarray
    bank_glosses: list[str]
    bank_words: list[str]


def build_benchmark(wn, n: int, *, seed: int = 0, bank: int | None = None, val_fraction: float = 0.25,
                    graded: bool = True, min_depth: int = 2, max_depth: int | None = None) -> Benchmark:
    """Sample the benchmark from WordNet's nouns (see the module docstring).

    **Arguments:**

    - `wn`: a :class:`normflow.real._wordnet.WordNet` (``synsets``: offset → synset with
      ``lemmas``, ``gloss``, ``hypernyms``, ``depth``; ``senses``: lemma → offsets in sense order).
    - `n`: synsets in the benchmark.
    - `seed`: NumPy seed of the sample and the splits.
    - `bank`: synsets for the query bank (default ``n // 4``), disjoint from the benchmark's.
    - `val_fraction`: share of each direction's queries in the validation split.
    - `graded`: grade-1 relevance for direct hypernym/hyponym lemmas.
    - `min_depth`, `max_depth`: the depth levels sampled (default: from 2 to the deepest).

    **Returns:** a :class:`Benchmark`.
    """
    rng = np.random.default_rng(seed)
    offsets = np.array(sorted(wn.synsets), np.int64)
    depth = np.array([_depth(wn, o) for o in offsets])
    hi = int(depth.max()) if max_depth is None else max_depth
    levels = list(range(min_depth, hi + 1))
    bank = n // 4 if bank is None else bank
    pick = stratified_sample(depth, n, rng=rng, levels=levels)
    used = np.zeros(offsets.size, bool)
    used[pick] = True
    bank_pick = stratified_sample(depth, bank, rng=rng, levels=levels, exclude=used) if bank else np.zeros(0, int)
    pick = rng.permutation(pick)  # query order carries no depth pattern
    chosen = offsets[pick].tolist()
    hyponyms = _hyponyms(wn)

    def lemmas_of(o):
        return list(wn.synsets[o].lemmas)

    def neighbours_of(o):
        return list(wn.synsets[o].hypernyms) + hyponyms.get(o, [])

    docs, rel = relevance_from_structure(chosen, lemmas_of, neighbours_of, graded=graded)
    glosses = [definition(wn.synsets[o].gloss) for o in chosen]
    qdepth = depth[pick]
    doc_depth = _word_depths(wn, docs, chosen, qdepth, rel)
    bank_glosses = [definition(wn.synsets[o].gloss) for o in offsets[bank_pick]]
    doc_set = set(docs)
    bank_words = list(dict.fromkeys(t for o in offsets[bank_pick] for t in map(lemma_text, lemmas_of(o)) if t not in doc_set))
    return Benchmark(
        synsets=offsets[pick], glosses=glosses, depth=qdepth, docs=docs, doc_depth=doc_depth, relevance=rel,
        gloss_val=_split(rng, len(chosen), val_fraction), word_val=_split(rng, len(docs), val_fraction),
        bank_glosses=bank_glosses, bank_words=bank_words,
    )


def _depth(wn, offset) -> int:
    s = wn.synsets[offset]
    d = getattr(s, "depth", None)
    if d is None:
        d = wn.depth[offset]
    return int(d)


def _hyponyms(wn) -> dict:
    out: dict = {}
    for o, s in wn.synsets.items():
        for h in s.hypernyms:
            out.setdefault(h, []).append(o)
    return out


def _word_depths(wn, docs, chosen, qdepth, rel) -> np.ndarray:
    """Each document's depth: its first sampled sense in WordNet order (else its shallowest)."""
    where = {o: i for i, o in enumerate(chosen)}
    keyed = {lemma_text(k): v for k, v in wn.senses.items()} if wn.senses else {}
    out = np.zeros(len(docs), int)
    for j, t in enumerate(docs):
        own = np.flatnonzero(rel[:, j] == 2)
        first = next((where[o] for o in keyed.get(t, ()) if o in where and rel[where[o], j] == 2), None)
        out[j] = qdepth[first] if first is not None else qdepth[own].min()
    return out


def _split(rng, m, fraction) -> np.ndarray:
    val = np.zeros(m, bool)
    val[rng.permutation(m)[: int(round(fraction * m))]] = True
    return val


def depth_bin_masks(depth: np.ndarray, bins: Sequence[tuple[int, int]] = DEPTH_BINS) -> list[np.ndarray]:
    """``bool`` masks of ``depth`` in each inclusive ``(lo, hi)`` bin."""
    d = np.asarray(depth)
    return [(d >= lo) & (d <= hi) for lo, hi in bins]


LENGTH_BUCKETS = (8, 16, 32, 64, 128, 256)
"""Padded lengths of :func:`encode_bucketed` (tokens; 256 is the model's ``max_seq_length``)."""


def encode_bucketed(model, texts: Sequence[str], *, tokens_per_batch: int = 1024,
                    buckets: Sequence[int] = LENGTH_BUCKETS) -> np.ndarray:
    """Unnormalised mean-pooled embeddings of ``texts``, as :func:`normflow.real.encode_texts`
    computes them, with fewer compiled shapes: the texts go by token length into a few padded
    lengths (``buckets``), each with a fixed batch of ``tokens_per_batch // length`` rows.

    **Arguments:**

    - `model`: the :class:`normflow.real.Bert` (:func:`normflow.real.load_minilm`).
    - `texts`: the inputs (truncated at the tokenizer's 256 tokens).
    - `tokens_per_batch`: padded tokens per call.
    - `buckets`: increasing padded lengths; the last must hold the longest text.

    **Returns:** ``float[len(texts), hidden]`` (NumPy), in the order of ``texts``.
    """
    from ._bert import _encode, load_tokenizer, tokenize

    texts = list(texts)
    out = np.zeros((len(texts), model.word.shape[1]), np.dtype(model.word.dtype))
    if not texts:
        return out
    lengths = np.array([len(e.ids) for e in load_tokenizer().encode_batch(texts)])
    edges = np.asarray(buckets)
    which = np.searchsorted(edges, lengths)
    if which.max() >= edges.size:
        raise ValueError(f"a text has {lengths.max()} tokens, more than the last bucket {edges[-1]}")
    for b, length in enumerate(edges.tolist()):
        idx = np.flatnonzero(which == b)
        rows = max(tokens_per_batch // length, 1)
        for s in range(0, idx.size, rows):
            part = idx[s : s + rows]
            ids, mask = tokenize([texts[i] for i in part] + [""] * (rows - part.size), length=length)
            out[part] = np.asarray(_encode(model, jnp.asarray(ids), jnp.asarray(mask)))[: part.size]
    return out


# ---------------------------------------------------------------------------------------------
# Scores and NDCG


_norms_and_cosines_jit = jax.jit(_norms_and_cosines)


def cosines(queries, docs) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(|q|, |d|, cos)``: norms and the cosine matrix, computed as :mod:`normflow.retrieval`
    does (``q̂ · d̂ᵀ`` at HIGHEST precision), jitted.

    **Arguments:** `queries` ``float[Q, d]``, `docs` ``float[D, d]`` (unnormalised).

    **Returns:** ``(float[Q], float[D], float[Q, D])``.
    """
    return _norms_and_cosines_jit(jnp.asarray(queries), jnp.asarray(docs))


@functools.partial(jax.jit, static_argnames=("k", "max_relevant"))
def top_k_ndcg(scores, relevance, k: int = 10, max_relevant: int = 1) -> jax.Array:
    """Per-query NDCG@k, equal to ``ndcg_at_k(scores, relevance, k)``, without a full sort.

    Ranks the union of each row's top ``k`` (``lax.top_k``: lower index first among equal scores,
    as the lab's stable sort) and its first ``max_relevant`` relevant columns, in document order,
    with :func:`normflow.retrieval.ndcg_at_k`. Exact when no row has more relevant documents than
    ``max_relevant`` and no score is NaN (NaN ranks last in the lab, first in ``lax.top_k``).

    **Arguments:**

    - `scores`: ``float[Q, D]``.
    - `relevance`: ``[Q, D]`` grades.
    - `k`: the cutoff (static).
    - `max_relevant`: an upper bound on relevant documents per query (static).

    **Returns:** ``float[Q]``.
    """
    return _pruned_ndcg(scores, relevance, _relevant_columns(relevance, max_relevant), k)


def _relevant_columns(relevance, max_relevant):
    r = min(max_relevant, relevance.shape[-1])
    return lax.top_k((relevance > 0).astype(jnp.float32), r)[1]


def _pruned_ndcg(scores, relevance, rel_cols, k):
    d = scores.shape[-1]
    top = lax.top_k(scores, min(k, d))[1]
    cols = jnp.sort(jnp.concatenate([top, rel_cols], axis=-1), axis=-1)
    dup = jnp.concatenate([jnp.zeros_like(cols[:, :1], bool), cols[:, 1:] == cols[:, :-1]], axis=-1)
    cols = jnp.sort(jnp.where(dup, d, cols), axis=-1)  # duplicates → a dummy column D, last
    real = cols < d
    safe = jnp.where(real, cols, 0)
    s = jnp.where(real, jnp.take_along_axis(scores, safe, axis=-1), -jnp.inf)
    g = jnp.where(real, jnp.take_along_axis(relevance, safe, axis=-1), 0)
    return ndcg_at_k(s, g, k)


@functools.partial(jax.jit, static_argnames=("k", "max_relevant"))
def _alpha_chunk(cos, q_norm, d_norm, relevance, alphas, query_alpha, k, max_relevant):
    rel_cols = _relevant_columns(relevance, max_relevant)  # once for every α

    def one(a):
        return _pruned_ndcg(_weight(cos, q_norm, d_norm, query_alpha, a), relevance, rel_cols, k)

    return lax.map(one, alphas)


def alpha_ndcg(cos, q_norm, d_norm, relevance, alphas, *, k: int = 10, query_alpha: float = 0.0,
               chunk: int = 256) -> np.ndarray:
    """Per-query NDCG@k of ``cos · |q|^query_alpha · |d|^α`` for every α of the grid.

    The queries go in chunks of ``chunk`` (the last padded), ordered by their number of relevant
    documents, so that each chunk's bound on it (:func:`top_k_ndcg`'s ``max_relevant``, rounded
    up to a power of two: a few compiled programs) stays small.

    **Arguments:**

    - `cos`, `q_norm`, `d_norm`: from :func:`cosines` (``d_norm`` may be permuted: the null).
    - `relevance`: ``[Q, D]`` grades (NumPy).
    - `alphas`: ``float[A]`` the document exponents.
    - `k`: NDCG cutoff.
    - `query_alpha`: α_q (it cannot change a query's ranking; see :func:`query_alpha_grid`).
    - `chunk`: queries per jitted call.

    **Returns:** ``float64[A, Q]`` NDCG@k (0 for a query without a relevant document).
    """
    rel = np.asarray(relevance)
    q = rel.shape[0]
    if q == 0:
        return np.zeros((len(alphas), 0))
    n_rel = (rel > 0).sum(1)
    order = np.argsort(n_rel, kind="stable")
    cos = jnp.asarray(cos)
    dtype = cos.dtype
    a = jnp.asarray(alphas, dtype)
    qa = jnp.asarray(query_alpha, dtype)
    dn = jnp.asarray(d_norm, dtype)
    qn = jnp.asarray(q_norm, dtype)
    c = min(chunk, q)
    out = np.zeros((len(alphas), q))
    for s in range(0, q, c):
        idx = order[s : s + c]
        pad = c - idx.size
        rows = jnp.asarray(np.concatenate([idx, np.full(pad, idx[0])]))  # padding: a repeated row
        max_rel = 1 << int(max(int(n_rel[idx].max()), 1) - 1).bit_length()
        res = _alpha_chunk(cos[rows], qn[rows], dn, jnp.asarray(rel[np.asarray(rows)]), a, qa, k, max(max_rel, 8))
        out[:, idx] = np.asarray(res, np.float64)[:, : idx.size]
    return out


def shuffled_norm_ndcg(cos, q_norm, d_norm, relevance, alphas, *, rng: np.random.Generator, num: int = 20,
                       k: int = 10, chunk: int = 256) -> np.ndarray:
    """The null: :func:`alpha_ndcg` with the document norms randomly permuted among the
    documents (directions, hence cosines, kept), ``num`` times.

    **Returns:** ``float64[num, A, Q]``.
    """
    d_norm = np.asarray(d_norm)
    return np.stack([alpha_ndcg(cos, q_norm, d_norm[rng.permutation(d_norm.size)], relevance, alphas, k=k, chunk=chunk)
                     for _ in range(num)])


def query_alpha_grid(cos, q_norm, d_norm, relevance, query_alphas, alphas, *, k: int = 10, chunk: int = 256) -> np.ndarray:
    """Per-query NDCG@k of ``cos · |q|^α_q · |d|^α_d`` on the 2-D grid.

    ``|q|^α_q`` is one positive factor per query: it scales a query's row of scores and so keeps
    its ranking, hence every per-query NDCG, unchanged (up to float rounding that could make two
    scores equal: the result is exactly flat in α_q unless that happens).

    **Returns:** ``float64[Aq, Ad, Q]``.
    """
    return np.stack([alpha_ndcg(cos, q_norm, d_norm, relevance, alphas, k=k, query_alpha=float(aq), chunk=chunk)
                     for aq in query_alphas])


# ---------------------------------------------------------------------------------------------
# Baselines


def centered(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """``x − mean`` (default: ``x``'s own mean over rows)."""
    x = np.asarray(x, np.float64)
    return x - (x.mean(0) if mean is None else np.asarray(mean, np.float64))


def all_but_the_top(x: np.ndarray, components: int = ABTT_COMPONENTS) -> np.ndarray:
    """Mu & Viswanath's "all-but-the-top": centre ``x`` and project out its top principal directions.

    **Arguments:** `x` ``float[M, d]``; `components`: how many directions to remove.

    **Returns:** ``float64[M, d]``.
    """
    c = centered(x)
    if components <= 0:
        return c
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    u = vt[:components]
    return c - (c @ u.T) @ u


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(cosines(a, b)[2], np.float64)


def inverted_softmax_scores(scores: np.ndarray, bank_scores: np.ndarray, beta: float) -> np.ndarray:
    """Querybank normalisation with the inverted softmax, in log space:
    ``β s(q,d) − log Σ_b exp(β s(b,d))``.

    **Arguments:**

    - `scores`: ``float[Q, D]`` query–document similarities.
    - `bank_scores`: ``float[B, D]`` the bank queries' similarities to the same documents.
    - `beta`: the inverse temperature β > 0.

    **Returns:** ``float64[Q, D]`` (the log of ``exp(β s(q,d)) / Σ_b exp(β s(b,d))``).
    """
    b = beta * np.asarray(bank_scores, np.float64)
    top = b.max(0)
    lse = top + np.log(np.exp(b - top).sum(0))
    return beta * np.asarray(scores, np.float64) - lse[None, :]


def csls_scores(scores: np.ndarray, bank_scores: np.ndarray, k: int = CSLS_NEIGHBOURS) -> np.ndarray:
    """CSLS: ``2 s(q,d) − r_D(q) − r_B(d)``, ``r_D(q)`` the mean of the query's ``k`` largest
    scores over the documents, ``r_B(d)`` the mean of the document's ``k`` largest over the bank.

    **Returns:** ``float64[Q, D]``.
    """
    s = np.asarray(scores, np.float64)
    b = np.asarray(bank_scores, np.float64)
    kq, kb = min(k, s.shape[1]), min(k, b.shape[0])
    r_q = -np.partition(-s, kq - 1, axis=1)[:, :kq].mean(1)
    r_b = -np.partition(-b, kb - 1, axis=0)[:kb].mean(0)
    return 2 * s - r_q[:, None] - r_b[None, :]


def query_ndcg(scores, relevance, k: int = 10) -> np.ndarray:
    """Per-query NDCG@k of a score matrix (:func:`top_k_ndcg`, the bound on relevant documents
    taken from ``relevance``).

    **Arguments:** `scores` ``[Q, D]``; `relevance` ``[Q, D]`` grades; `k` the cutoff.

    **Returns:** ``float64[Q]``.
    """
    rel = np.asarray(relevance)
    max_rel = max(int((rel > 0).sum(1).max()) if rel.size else 1, 1)
    return np.asarray(top_k_ndcg(jnp.asarray(scores), jnp.asarray(rel), k, max_rel), np.float64)


def choose_beta(scores: np.ndarray, bank_scores: np.ndarray, relevance: np.ndarray, betas: Sequence[float] = BETAS,
                k: int = 10) -> tuple[float, np.ndarray]:
    """The inverse temperature of :func:`inverted_softmax_scores` with the best mean NDCG@k on the
    given (validation) queries; ties go to the smallest β.

    **Returns:** ``(beta, mean NDCG@k per β)``.
    """
    ok = np.asarray(relevance).max(1) > 0
    means = np.array([query_ndcg(inverted_softmax_scores(scores, bank_scores, b), relevance, k)[ok].mean() for b in betas])
    return float(betas[int(np.argmax(means))]), means


def baseline_scores(queries: np.ndarray, docs: np.ndarray, bank: np.ndarray, *, beta: float,
                    components: int = ABTT_COMPONENTS, neighbours: int = CSLS_NEIGHBOURS,
                    cos: np.ndarray | None = None, bank_cos: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The norm-side baselines' score matrices (see the module docstring).

    **Arguments:**

    - `queries`, `docs`, `bank`: unnormalised embeddings ``[Q, d]``, ``[D, d]``, ``[B, d]``.
    - `beta`: the inverted softmax's β (chosen on validation queries with :func:`choose_beta`).
    - `components`: directions removed by all-but-the-top.
    - `neighbours`: CSLS's k.
    - `cos`, `bank_cos`: the cosine matrices ``[Q, D]``, ``[B, D]`` if already computed (default:
      :func:`cosines` in the embeddings' dtype), so that ``cosine`` is exactly the α = 0 scores.

    **Returns:** ``{name: [Q, D]}`` for ``cosine`` (in the embeddings' dtype), ``center_docs``,
    ``center_both``, ``abtt``, ``qb_norm`` and ``csls`` (float64; the centring is done in float64).
    """
    cos = np.asarray(cosines(queries, docs)[2]) if cos is None else np.asarray(cos)
    bank_cos = np.asarray(cosines(bank, docs)[2]) if bank_cos is None else np.asarray(bank_cos)
    q, d = (np.asarray(x, np.float64) for x in (queries, docs))
    return {
        "cosine": cos,
        "center_docs": _cos(q, centered(d)),
        "center_both": _cos(centered(q), centered(d)),
        "abtt": _cos(all_but_the_top(q, components), all_but_the_top(d, components)),
        "qb_norm": inverted_softmax_scores(cos, bank_cos, beta),
        "csls": csls_scores(cos, bank_cos, neighbours),
    }


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, rng: np.random.Generator, num: int = 1000,
                     level: float = 0.95) -> tuple[float, float]:
    """A percentile interval of ``mean(a) / mean(b) − 1`` over queries resampled with replacement.

    **Arguments:** `a`, `b`: ``float[Q]`` per-query NDCG of two scorers on the same queries.

    **Returns:** ``(lo, hi)``.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    idx = rng.integers(0, a.size, size=(num, a.size))
    r = a[idx].mean(1) / b[idx].mean(1) - 1.0
    return float(np.quantile(r, (1 - level) / 2)), float(np.quantile(r, (1 + level) / 2))
