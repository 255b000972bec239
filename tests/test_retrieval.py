"""Tests for normflow.retrieval: NDCG@k by hand, tie rule, α = 0 exactness, scale invariances."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normflow import retrieval


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """float64 for this module only: jax config is process-global, so restore it afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


HYP = settings(deadline=None, max_examples=25, derandomize=True)


def _f64(x):
    return jnp.asarray(x, dtype=jnp.float64)


def _embeddings(seed: int, n: int, d: int = 6) -> np.ndarray:
    """Random directions with random (log-normal, widely spread) norms."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.exp(rng.normal(scale=1.5, size=(n, 1)))


# --------------------------------------------------------------------------------------------
# NDCG@k by hand
# --------------------------------------------------------------------------------------------


def _one(scores, rel, k=10):
    return float(retrieval.ndcg_at_k(_f64([scores]), jnp.asarray([rel]), k)[0])


def test_ndcg_perfect_ranking_is_one():
    # rel = [3, 2, 0, 1]; scores order the docs 0, 1, 3, 2 -> gains 3, 2, 1, 0 = the ideal order.
    rel = [3, 2, 0, 1]
    scores = [4.0, 3.0, 1.0, 2.0]
    dcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4) + 0 / math.log2(5)
    assert float(retrieval.dcg_at_k(_f64([scores]), jnp.asarray([rel]), 10)[0]) == pytest.approx(dcg, abs=1e-12)
    assert _one(scores, rel) == pytest.approx(1.0, abs=1e-12)


def test_ndcg_reversed_ranking():
    # rel = [3, 2, 0, 1]; scores order the docs 2, 3, 1, 0 -> gains 0, 1, 2, 3 (worst order).
    rel = [3, 2, 0, 1]
    scores = [1.0, 2.0, 4.0, 3.0]
    np.testing.assert_array_equal(retrieval.rank(_f64([scores]), 4), [[2, 3, 1, 0]])
    # DCG  = 0/log2(2) + 1/log2(3) + 2/log2(4) + 3/log2(5)
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4) + 3 / math.log2(5)
    # IDCG = 3/log2(2) + 2/log2(3) + 1/log2(4) + 0/log2(5)   (k = 10 > D = 4: no truncation)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4) + 0 / math.log2(5)
    assert float(retrieval.ideal_dcg_at_k(jnp.asarray([rel]), 10)[0]) == pytest.approx(idcg, abs=1e-12)
    assert _one(scores, rel) == pytest.approx(dcg / idcg, abs=1e-12)


def test_ndcg_tie_resolved_by_lower_index():
    # scores [1, 1, 0, 0]: two ties. Lower index first -> order 0, 1, 2, 3.
    scores = [1.0, 1.0, 0.0, -0.0]  # -0.0 == 0.0 is a tie too
    np.testing.assert_array_equal(retrieval.rank(_f64([scores]), 4), [[0, 1, 2, 3]])
    # rel = [0, 2, 0, 1]: gains in rank order 0, 2, 0, 1.
    rel = [0, 2, 0, 1]
    # DCG  = 0/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5)
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 0 / math.log2(4) + 1 / math.log2(5)
    # IDCG = 2/log2(2) + 1/log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert _one(scores, rel) == pytest.approx(dcg / idcg, abs=1e-12)
    # The opposite tie rule (higher index first, e.g. trec_eval on docnos "0".."3") would give
    # order 1, 0, 3, 2 -> DCG = 2/log2(2) + 0 + 1/log2(4) + 0, a different value.
    other = 2 / math.log2(2) + 1 / math.log2(4)
    assert _one(scores, rel) != pytest.approx(other / idcg, abs=1e-6)


def test_rank_ties_top_k_and_nan_last():
    scores = _f64([[0.5, 0.9, 0.5, 0.9, jnp.nan, 0.5]])
    np.testing.assert_array_equal(retrieval.rank(scores, 6), [[1, 3, 0, 2, 5, 4]])
    np.testing.assert_array_equal(retrieval.rank(scores, 3), [[1, 3, 0]])
    assert retrieval.rank(scores, 100).shape == (1, 6)  # min(k, D) columns
    with pytest.raises(ValueError):
        retrieval.rank(scores, 0)


def test_ndcg_no_relevant_doc_is_zero_and_masked():
    scores = _f64([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    rel = jnp.asarray([[0, 0, 0, 0], [1, 0, 0, 0]])
    out = retrieval.ndcg_at_k(scores, rel, 10)
    assert float(out[0]) == 0.0  # no relevant doc: 0 (trec_eval), not NaN
    assert float(out[1]) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(retrieval.has_relevant(rel), [False, True])


def test_ndcg_k_smaller_than_number_of_relevant_docs():
    # rel = [1, 3, 2, 2, 0], scores rank docs 0, 1, 2, 3, 4; k = 2 < 4 relevant docs.
    rel = [1, 3, 2, 2, 0]
    scores = [5.0, 4.0, 3.0, 2.0, 1.0]
    # DCG@2  = 1/log2(2) + 3/log2(3)
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    # IDCG@2 = 3/log2(2) + 2/log2(3)   (ideal order 3, 2, 2, 1 truncated at k = 2)
    idcg = 3 / math.log2(2) + 2 / math.log2(3)
    assert float(retrieval.ideal_dcg_at_k(jnp.asarray([rel]), 2)[0]) == pytest.approx(idcg, abs=1e-12)
    assert _one(scores, rel, k=2) == pytest.approx(dcg / idcg, abs=1e-12)


def test_ideal_dcg_counts_relevant_docs_ranked_below_k():
    # Only doc 3 is relevant (grade 5) and it is ranked 4th; k = 2 -> DCG@2 = 0, IDCG@2 = 5/log2(2).
    rel = [0, 0, 0, 5]
    scores = [4.0, 3.0, 2.0, 1.0]
    assert float(retrieval.ideal_dcg_at_k(jnp.asarray([rel]), 2)[0]) == pytest.approx(5 / math.log2(2))
    assert _one(scores, rel, k=2) == 0.0


def test_ndcg_float_grades_and_negative_grades_clipped():
    # rel = [0.5, -1, 2.0]; scores rank 1, 0, 2. Negative grade counts as 0 (trec_eval: gain > 0).
    rel = [0.5, -1.0, 2.0]
    scores = [2.0, 3.0, 1.0]
    # DCG = 0/log2(2) + 0.5/log2(3) + 2/log2(4);  IDCG = 2/log2(2) + 0.5/log2(3)
    dcg = 0 / math.log2(2) + 0.5 / math.log2(3) + 2.0 / math.log2(4)
    idcg = 2.0 / math.log2(2) + 0.5 / math.log2(3)
    assert float(retrieval.ndcg_at_k(_f64([scores]), _f64([rel]), 10)[0]) == pytest.approx(dcg / idcg, abs=1e-12)


# --------------------------------------------------------------------------------------------
# Independent reference implementation (pure Python)
# --------------------------------------------------------------------------------------------


def _ref_ndcg(scores: list[float], rel: list[int], k: int) -> float:
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], j))[:k]
    dcg = sum(rel[j] / math.log2(r + 2) for r, j in enumerate(order))
    ideal = sorted(rel, reverse=True)[:k]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


@HYP
@given(
    seed=st.integers(0, 2**31 - 1),
    n_d=st.sampled_from([1, 4, 9]),
    k=st.sampled_from([1, 3, 10]),
    coarse=st.booleans(),
)
def test_ndcg_matches_pure_python_reference(seed, n_d, k, coarse):
    # Few distinct shapes (each new shape recompiles); k = 10 > D = 9 covers the k > D edge.
    n_q = 3
    rng = np.random.default_rng(seed)
    rel = rng.integers(0, 4, size=(n_q, n_d)) * (rng.random((n_q, n_d)) < 0.5)
    # coarse=True: integer scores in {0,1,2} -> many ties, exercising the tie rule.
    scores = rng.integers(0, 3, size=(n_q, n_d)).astype(float) if coarse else rng.normal(size=(n_q, n_d))
    got = np.asarray(retrieval.ndcg_at_k(_f64(scores), jnp.asarray(rel), k))
    want = [_ref_ndcg(scores[i].tolist(), rel[i].tolist(), k) for i in range(n_q)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(retrieval.has_relevant(jnp.asarray(rel)), rel.sum(axis=1) > 0)


# --------------------------------------------------------------------------------------------
# Scores: α = 0 exactness, sign convention, invariances
# --------------------------------------------------------------------------------------------


def test_exponent_zero_is_bitwise_cosine():
    q = _f64(_embeddings(0, 7))
    d = _f64(_embeddings(1, 40))
    q_hat = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    d_hat = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    cos = jnp.matmul(q_hat, d_hat.T, precision=jax.lax.Precision.HIGHEST)
    s = retrieval.norm_weighted_scores(q, d)
    assert s.dtype == jnp.float64
    np.testing.assert_array_equal(s, cos)  # bit-identical
    np.testing.assert_array_equal(
        jnp.argsort(-s, axis=-1, stable=True), jnp.argsort(-cos, axis=-1, stable=True)
    )
    # Same ranking as an independent numpy cosine.
    qn, dn = np.asarray(q), np.asarray(d)
    cos_np = (qn / np.linalg.norm(qn, axis=1, keepdims=True)) @ (dn / np.linalg.norm(dn, axis=1, keepdims=True)).T
    np.testing.assert_array_equal(retrieval.rank(s, 40), np.argsort(-cos_np, axis=1, kind="stable"))
    # Explicit exponents 0.0 passed as arrays are still bit-identical.
    np.testing.assert_array_equal(retrieval.norm_weighted_scores(q, d, _f64(0.0), _f64(0.0)), s)


def test_traced_exponent_zero_weighting_is_exact_under_jit_and_vmap():
    # The weighting step alone, given a cosine matrix: with a traced α = 0 (jit, vmap over an
    # α grid as in ndcg_curve) it must return the cosine matrix bit for bit, norms of any size.
    q = _f64(_embeddings(8, 5))
    d = _f64(_embeddings(9, 25))
    cos = retrieval.norm_weighted_scores(q, d)
    qn, dn = jnp.linalg.norm(q, axis=-1), jnp.linalg.norm(d, axis=-1)
    qn = qn.at[0].set(0.0).at[1].set(jnp.inf)  # pow(0, 0) = pow(inf, 0) = 1 too
    w = jax.jit(retrieval._metrics._weight)
    np.testing.assert_array_equal(w(cos, qn, dn, _f64(0.0), _f64(0.0)), cos)
    grid = jax.jit(jax.vmap(lambda a: retrieval._metrics._weight(cos, qn, dn, a, a)))(_f64([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(grid[1], cos)
    for dtype in (jnp.float32, jnp.bfloat16):
        c = cos.astype(dtype)
        out = w(c, qn.astype(dtype), dn.astype(dtype), jnp.zeros((), dtype), jnp.zeros((), dtype))
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, c)


def test_weighting_formula_and_sign_convention():
    q = _f64(_embeddings(2, 3))
    d = _f64(_embeddings(3, 5))
    qn, dn = jnp.linalg.norm(q, axis=-1), jnp.linalg.norm(d, axis=-1)
    s0 = retrieval.norm_weighted_scores(q, d)
    s = retrieval.norm_weighted_scores(q, d, query_exponent=0.7, doc_exponent=-1.3)
    np.testing.assert_allclose(s, s0 * qn[:, None] ** 0.7 * dn[None, :] ** -1.3, rtol=1e-12)
    # Two docs in the same direction as the query, norms 1 and 10: cos ties at 1.
    # α < 0 (the paper's γ > 0) discounts the long one; α > 0 favours it.
    q1 = _f64([[1.0, 0.0]])
    d2 = _f64([[10.0, 0.0], [1.0, 0.0]])
    assert retrieval.rank(retrieval.norm_weighted_scores(q1, d2, doc_exponent=-0.5), 1)[0, 0] == 1
    assert retrieval.rank(retrieval.norm_weighted_scores(q1, d2, doc_exponent=+0.5), 1)[0, 0] == 0
    assert retrieval.rank(retrieval.norm_weighted_scores(q1, d2), 2).tolist() == [[0, 1]]  # tie -> index


@HYP
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.floats(1e-3, 1e3),
    a_q=st.floats(-2.0, 2.0),
    a_d=st.floats(-2.0, 2.0),
)
def test_scaling_all_docs_changes_no_ranking(seed, c, a_q, a_d):
    q = _f64(_embeddings(seed, 4))
    d = _f64(_embeddings(seed + 1, 15))
    r1 = retrieval.rank(retrieval.norm_weighted_scores(q, d, a_q, a_d), 15)
    r2 = retrieval.rank(retrieval.norm_weighted_scores(q, c * d, a_q, a_d), 15)
    np.testing.assert_array_equal(r1, r2)


@HYP
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.floats(1e-3, 1e3),
    which=st.integers(0, 3),
    a_q=st.floats(-2.0, 2.0),
    a_d=st.floats(-2.0, 2.0),
)
def test_scaling_one_query_changes_its_ranking_not(seed, c, which, a_q, a_d):
    q = _f64(_embeddings(seed, 4))
    d = _f64(_embeddings(seed + 1, 15))
    q2 = q.at[which].multiply(c)
    r1 = retrieval.rank(retrieval.norm_weighted_scores(q, d, a_q, a_d), 15)
    r2 = retrieval.rank(retrieval.norm_weighted_scores(q2, d, a_q, a_d), 15)
    np.testing.assert_array_equal(r1, r2)


# --------------------------------------------------------------------------------------------
# ndcg_curve
# --------------------------------------------------------------------------------------------


def _corpus(seed=5, n_q=6, n_d=30):
    rng = np.random.default_rng(seed)
    q = _f64(_embeddings(seed, n_q))
    d = _f64(_embeddings(seed + 1, n_d))
    rel = rng.integers(0, 4, size=(n_q, n_d)) * (rng.random((n_q, n_d)) < 0.2)
    rel[0] = 0  # one unanswerable query
    rel[1, 3] = 2  # make sure the others are answerable
    rel[2:, 0] = 1
    return q, d, jnp.asarray(rel)


def test_ndcg_curve_alpha_zero_is_cosine_ndcg_and_shapes():
    q, d, rel = _corpus()
    alphas = _f64([-1.0, -0.5, 0.0, 0.5])
    for weight in ("doc", "both"):
        curve = retrieval.ndcg_curve(q, d, rel, alphas, k=10, weight=weight)
        assert isinstance(curve, retrieval.NDCGCurve)
        assert curve.alphas.shape == (4,)
        assert curve.ndcg.shape == (4,)
        assert curve.per_query.shape == (4, 6)
        cos_ndcg = retrieval.ndcg_at_k(retrieval.norm_weighted_scores(q, d), rel, 10)
        # Jitted curve vs eager cosine: equal up to XLA's reduction order (see module docstring).
        np.testing.assert_allclose(curve.per_query[2], cos_ndcg, rtol=0, atol=1e-12)
        mask = retrieval.has_relevant(rel)
        assert not bool(mask[0]) and bool(jnp.all(mask[1:]))
        assert float(curve.per_query[2, 0]) == 0.0
        assert float(curve.ndcg[2]) == pytest.approx(float(jnp.mean(cos_ndcg[1:])), abs=1e-12)


def test_ndcg_curve_matches_direct_evaluation_per_alpha():
    q, d, rel = _corpus(seed=11)
    alphas = _f64([-2.0, -0.3, 0.0, 0.8, 1.5])
    mask = np.asarray(retrieval.has_relevant(rel))
    doc = retrieval.ndcg_curve(q, d, rel, alphas, k=5, weight="doc")
    both = retrieval.ndcg_curve(q, d, rel, alphas, k=5, weight="both")
    for i, a in enumerate(np.asarray(alphas)):
        want_doc = retrieval.ndcg_at_k(retrieval.norm_weighted_scores(q, d, 0.0, a), rel, 5)
        want_both = retrieval.ndcg_at_k(retrieval.norm_weighted_scores(q, d, a, a), rel, 5)
        np.testing.assert_allclose(doc.per_query[i], want_doc, atol=1e-12)
        np.testing.assert_allclose(both.per_query[i], want_both, atol=1e-12)
        assert float(doc.ndcg[i]) == pytest.approx(float(np.mean(np.asarray(want_doc)[mask])), abs=1e-12)
    # |q|^α is constant within a query, so per-query NDCG of "both" equals "doc".
    np.testing.assert_allclose(both.per_query, doc.per_query, atol=1e-12)


def test_ndcg_curve_rejects_unknown_weight():
    q, d, rel = _corpus()
    with pytest.raises(ValueError):
        retrieval.ndcg_curve(q, d, rel, _f64([0.0]), weight="query")
