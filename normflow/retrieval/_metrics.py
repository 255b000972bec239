"""Norm-weighted retrieval scores and NDCG@k, vmapped over a grid of norm exponents.

The hypothesis under test: embedding norms of contrastive models encode specificity, so
re-weighting the cosine by a power of the norm should change retrieval quality. The score is

    score(q, d) = cos(q, d) · |q|^α_q · |d|^α_d

Sign convention (read this before comparing with the paper)
-----------------------------------------------------------
Every exponent in this module is an **α** (a multiplicative power of the norm):

* ``α < 0`` discounts long vectors, ``α > 0`` favours them, ``α = 0`` is plain cosine.
* The paper's *norm-discounted* retrieval writes ``cos · |q|^(−γ_q) · |d|^(−γ_d)``, so
  **γ = −α**. A paper value γ_d = 0.5 is ``doc_exponent = -0.5`` here.

Only the document exponent changes a single query's ranking: ``|q|^α_q`` is one positive
constant per query, so it rescales that query's whole row of scores. It matters for anything that
compares scores *across* queries (thresholds, calibration), not for per-query NDCG.

Exactness at α = 0
------------------
Cosines are formed as ``q̂ · d̂`` with ``q̂ = q/|q|``, ``d̂ = d/|d|`` and then multiplied by
``|q|^α_q`` and ``|d|^α_d``. For α = 0 the power is exactly ``1.0`` (IEEE ``pow(x, 0) = 1`` for
every x, including 0 and inf; also for a traced α under ``jit``/``vmap``) and multiplying by 1.0
is exact, so α = 0 reproduces the plain cosine matrix bit for bit, hence the cosine ranking
exactly, *when both are computed the same way*. Caveat: XLA may reorder the norm reductions or
rewrite ``x/sqrt(s)`` as ``x·rsqrt(s)`` under ``jit`` but not eagerly, so a jitted cosine can
differ from an eager one in the last ulp (seen in float32: near-ties may swap). That is a
property of the cosine computation, not of the exponent. The matmul uses
``precision=HIGHEST`` so float32 on GPU/TPU is not silently computed in TF32/bf16 passes.
Zero vectors have no direction; their cosines are NaN, and NaN scores rank last (below).

Ranking and ties
----------------
:func:`rank` sorts by descending score with a *stable* sort, so equal scores are ordered by
**lower document index first**; ``-0.0`` and ``0.0`` are equal, NaN ranks last. trec_eval (hence
pytrec_eval, hence BEIR) breaks ties differently: by docno *string*, in decreasing
lexicographic order (``comp_sim_docno`` in ``form_res_rels.c``). The two agree whenever there are
no exact score ties.

NDCG convention (trec_eval ``ndcg_cut``, which BEIR uses through pytrec_eval)
-----------------------------------------------------------------------------
* gain = the relevance grade itself (linear gain ``rel``, not ``2^rel − 1``);
* the document at 1-based rank r is discounted by ``1/log2(r + 1)`` (rank 1 undiscounted);
* DCG@k sums the top ``k`` ranked documents;
* ideal DCG@k uses the true relevances of **all** documents (also those ranked below k and those
  the scorer never surfaces), sorted descending and truncated at k;
* a query with no relevant document (ideal DCG = 0) scores NDCG = 0, as in trec_eval. Such
  queries drag a plain mean down; average with the :func:`has_relevant` mask instead (BEIR's
  qrels contain only answerable queries, so "mean over answerable queries" is what BEIR reports).
* negative grades are clipped to 0 (trec_eval only accumulates gains > 0 and treats negative
  qrels as unjudged).

Everything here is a pure function of arrays; ``k`` and ``weight`` are static Python values.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

__all__ = [
    "norm_weighted_scores",
    "rank",
    "dcg_at_k",
    "ideal_dcg_at_k",
    "ndcg_at_k",
    "has_relevant",
    "NDCGCurve",
    "ndcg_curve",
]

Exponent = float | Float[ArrayLike, ""]


def _float_dtype(*xs: ArrayLike) -> jnp.dtype:
    """Common floating dtype of the inputs (integer/bool inputs promote to the default float)."""
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return jnp.dtype(dtype)


def _norms_and_cosines(
    queries: Float[Array, "Q d"], docs: Float[Array, "D d"]
) -> tuple[Float[Array, " Q"], Float[Array, " D"], Float[Array, "Q D"]]:
    dtype = _float_dtype(queries, docs)
    q = jnp.asarray(queries, dtype=dtype)
    d = jnp.asarray(docs, dtype=dtype)
    q_norm = jnp.linalg.norm(q, axis=-1)
    d_norm = jnp.linalg.norm(d, axis=-1)
    q_hat = q / q_norm[:, None]
    d_hat = d / d_norm[:, None]
    cos = jnp.matmul(q_hat, d_hat.T, precision=jax.lax.Precision.HIGHEST)
    return q_norm, d_norm, cos


def _weight(
    cos: Float[Array, "Q D"],
    q_norm: Float[Array, " Q"],
    d_norm: Float[Array, " D"],
    query_exponent: Exponent,
    doc_exponent: Exponent,
) -> Float[Array, "Q D"]:
    a_q = jnp.asarray(query_exponent, dtype=cos.dtype)
    a_d = jnp.asarray(doc_exponent, dtype=cos.dtype)
    # pow(x, 0) == 1.0 exactly and x * 1.0 == x exactly: α = 0 is bit-identical to cosine.
    return (cos * (q_norm**a_q)[:, None]) * (d_norm**a_d)[None, :]


def norm_weighted_scores(
    queries: Float[Array, "Q d"],
    docs: Float[Array, "D d"],
    query_exponent: Exponent = 0.0,
    doc_exponent: Exponent = 0.0,
) -> Float[Array, "Q D"]:
    """``scores[i, j] = cos(q_i, d_j) · |q_i|^query_exponent · |d_j|^doc_exponent``.

    Exponents are **α's**: negative discounts long vectors, positive favours them. The paper's
    discount exponent is ``γ = −α`` (its ``cos·|d|^(−γ_d)`` is ``doc_exponent = −γ_d``).
    With both exponents 0 the result is exactly (bitwise) the cosine matrix ``q̂ · d̂ᵀ``.

    Args:
        queries: query embeddings, one per row (unnormalised; their norms are the signal).
        docs: document embeddings, one per row.
        query_exponent: α_q, a scalar (may be traced, e.g. under ``vmap``).
        doc_exponent: α_d, a scalar (may be traced).

    Returns:
        [Q, D] scores in the common floating dtype of ``queries`` and ``docs``.
    """
    q_norm, d_norm, cos = _norms_and_cosines(queries, docs)
    return _weight(cos, q_norm, d_norm, query_exponent, doc_exponent)


def rank(scores: Float[Array, "Q D"], k: int) -> Int[Array, "Q k"]:
    """Indices of the top-``k`` documents per query, best first.

    Deterministic tie rule: equal scores are ordered by **lower document index first** (a stable
    ascending sort of ``-scores``; ``-0.0 == 0.0``; NaN scores sort last). Note that
    ``lax.top_k`` would *not* do: it ranks NaN first and puts ``0.0`` before ``-0.0``. trec_eval
    breaks ties by decreasing docno string instead (see module docstring).

    Returns ``min(k, D)`` columns (int32, or int64 under x64).
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    order = jnp.argsort(-scores, axis=-1, stable=True)
    return order[..., :k]


def _gains(relevance: Real[Array, "Q D"], dtype: jnp.dtype) -> Float[Array, "Q D"]:
    # Linear gain = grade; negative grades count as 0 (trec_eval only sums gains > 0).
    return jnp.maximum(jnp.asarray(relevance, dtype=dtype), 0)


def _discounted_sum(sorted_gains: Float[Array, "Q k"]) -> Float[Array, " Q"]:
    # 0-based position i has 1-based rank i + 1, discounted by log2(rank + 1) = log2(i + 2).
    positions = jnp.arange(sorted_gains.shape[-1], dtype=sorted_gains.dtype)
    return jnp.sum(sorted_gains / jnp.log2(positions + 2), axis=-1)


def dcg_at_k(scores: Float[Array, "Q D"], relevance: Real[Array, "Q D"], k: int = 10) -> Float[Array, " Q"]:
    """DCG@k with trec_eval's convention: ``Σ_{r=1..k} rel_(r) / log2(r + 1)``.

    ``rel_(r)`` is the (non-negative, linear) grade of the document at rank r under
    :func:`rank`'s deterministic tie rule.
    """
    dtype = _float_dtype(scores, jnp.float32)
    gains = _gains(relevance, dtype)
    top = rank(scores, k)
    return _discounted_sum(jnp.take_along_axis(gains, top, axis=-1))


def ideal_dcg_at_k(relevance: Real[Array, "Q D"], k: int = 10) -> Float[Array, " Q"]:
    """Ideal DCG@k: all true grades of the query sorted descending, truncated at k."""
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    gains = _gains(relevance, _float_dtype(relevance))
    ideal = -jnp.sort(-gains, axis=-1)[..., :k]
    return _discounted_sum(ideal)


def ndcg_at_k(scores: Float[Array, "Q D"], relevance: Real[Array, "Q D"], k: int = 10) -> Float[Array, " Q"]:
    """Per-query NDCG@k = DCG@k / ideal DCG@k, trec_eval ``ndcg_cut.k`` convention.

    Linear gain ``rel``, discount ``1/log2(rank + 1)``, ideal DCG from all documents' grades
    sorted and truncated at k (identical to BEIR, which calls pytrec_eval). Queries without any
    relevant document get **0** (trec_eval convention); exclude them with :func:`has_relevant`.
    Score ties are ordered by lower document index (trec_eval: by docno string, descending).

    Args:
        scores: [Q, D] scores, higher is better.
        relevance: [Q, D] graded relevance (ints or floats, non-negative; negatives count as 0).
        k: cutoff (static).

    Returns:
        [Q] NDCG@k in the floating dtype of ``scores``.
    """
    dtype = _float_dtype(scores, jnp.float32)
    dcg = dcg_at_k(scores, relevance, k).astype(dtype)
    idcg = ideal_dcg_at_k(jnp.asarray(relevance, dtype=dtype), k)
    positive = idcg > 0
    return jnp.where(positive, dcg / jnp.where(positive, idcg, 1), jnp.zeros((), dtype))


def has_relevant(relevance: Real[Array, "Q D"]) -> Bool[Array, " Q"]:
    """Mask of answerable queries: those with at least one document of grade > 0."""
    return jnp.any(jnp.asarray(relevance) > 0, axis=-1)


class NDCGCurve(NamedTuple):
    """NDCG@k along a grid of norm exponents α.

    Attributes:
        alphas: [A] the exponent grid (α; the paper's γ is −α).
        ndcg: [A] NDCG@k averaged over answerable queries (NaN if there are none).
        per_query: [A, Q] NDCG@k per query (0 for unanswerable queries), for stratifying.
    """

    alphas: Float[Array, " A"]
    ndcg: Float[Array, " A"]
    per_query: Float[Array, "A Q"]


@functools.partial(jax.jit, static_argnames=("k", "weight"))
def ndcg_curve(
    query_emb: Float[Array, "Q d"],
    doc_emb: Float[Array, "D d"],
    relevance: Real[Array, "Q D"],
    alphas: Float[Array, " A"],
    k: int = 10,
    weight: Literal["doc", "both"] = "doc",
) -> NDCGCurve:
    """NDCG@k of norm-weighted retrieval for every α in ``alphas`` (vmapped, jitted).

    ``weight="doc"``: ``cos · |d|^α`` (``doc_exponent=α``, ``query_exponent=0``).
    ``weight="both"``: ``cos · |q|^α · |d|^α``. Because ``|q|^α`` is constant within a query,
    the per-query NDCG of "both" equals that of "doc"; the option exists so the same
    scores can be reused for cross-query analyses and as a consistency check.

    Norms and cosines are computed once; only the weighting and ranking are batched over α, so
    peak memory is about ``A · Q · D`` scores. α = 0 reproduces cosine NDCG exactly.

    Returns:
        :class:`NDCGCurve` with ``alphas`` [A], ``ndcg`` [A] (mean over queries with at least
        one relevant document; NaN if none) and ``per_query`` [A, Q].
    """
    if weight not in ("doc", "both"):
        raise ValueError(f'weight must be "doc" or "both", got {weight!r}')
    q_norm, d_norm, cos = _norms_and_cosines(query_emb, doc_emb)
    alphas = jnp.asarray(alphas, dtype=cos.dtype)
    answerable = has_relevant(relevance)

    def one(alpha: Float[Array, ""]) -> Float[Array, " Q"]:
        a_q = alpha if weight == "both" else jnp.zeros((), cos.dtype)
        scores = _weight(cos, q_norm, d_norm, a_q, alpha)
        return ndcg_at_k(scores, relevance, k)

    per_query = jax.vmap(one)(alphas)
    mask = answerable.astype(per_query.dtype)
    ndcg = jnp.sum(per_query * mask, axis=-1) / jnp.sum(mask)
    return NDCGCurve(alphas=alphas, ndcg=ndcg, per_query=per_query)
