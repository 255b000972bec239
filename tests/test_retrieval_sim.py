"""The retrieval benchmark builder (normflow.retrieval) and sims/retrieval.py (issue 7).

Relevance is checked against an independent construction of the tree (parent pointers from the
task's level-by-level numbering), not against the leaf-range formula the builder uses.
"""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normflow as nf
from conftest import run_experiment

from normflow import retrieval




def _ancestors_or_self(depth: int, branching: int) -> list[set[int]]:
    """Ancestor-or-self sets from the numbering: level l holds b^(l+1) nodes, numbered level by
    level; node i of level l (l > 0) has parent i // b of level l-1."""
    offsets = np.cumsum([0] + [branching ** (lvl + 1) for lvl in range(depth)])
    anc = []
    for lvl in range(depth):
        for i in range(branching ** (lvl + 1)):
            chain, j, lv = {offsets[lvl] + i}, i, lvl
            while lv > 0:
                j, lv = j // branching, lv - 1
                chain.add(int(offsets[lv] + j))
            anc.append({int(c) for c in chain})
    return anc


@pytest.fixture(scope="module")
def tree():
    task = nf.HierarchicalTask(depth=3, branching=3, dim=8, key=jax.random.key(1), dtype=jnp.float64)
    return task, _ancestors_or_self(3, 3)


@pytest.mark.parametrize("hubs", [True, False])
def test_relevance_iff_doc_below_query(tree, hubs):
    task, anc = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(2), docs_per_leaf=2, docs_per_node=1, hubs=hubs)
    depth = np.asarray(task.depth)
    n_leaves, n_inner = int((depth == 2).sum()), int((depth < 2).sum())
    assert corpus.num_docs == 2 * n_leaves + 1 * n_inner == 2 * 27 + 12
    node = np.asarray(corpus.doc_node)
    np.testing.assert_array_equal(np.asarray(corpus.doc_depth), depth[node])
    np.testing.assert_array_equal(np.bincount(node, minlength=task.num_concepts), np.where(depth == 2, 2, 1))
    rel = np.asarray(corpus.relevance)
    co = np.asarray(corpus.cooccur)
    want_rel = np.array([[q in anc[v] for v in node] for q in range(task.num_concepts)])
    np.testing.assert_array_equal(rel, want_rel.astype(int))
    # Leaf documents: relevant iff their leaf is in the query's leaf range [lo, lo + count).
    lo, cnt = np.asarray(task.leaf_lo), np.asarray(task.leaf_count)
    leaf_docs = np.flatnonzero(depth[node] == 2)
    leaf_index = lo[node[leaf_docs]]
    in_range = (leaf_index[None, :] >= lo[:, None]) & (leaf_index[None, :] < (lo + cnt)[:, None])
    np.testing.assert_array_equal(rel[:, leaf_docs], in_range.astype(int))
    # Every query is answerable; a root is answered by its whole subtree (9 leaves·2 + 4 nodes·1).
    assert rel.sum(axis=1).min() >= 1
    np.testing.assert_array_equal(rel[depth == 0].sum(axis=1), [9 * 2 + 4] * 3)
    np.testing.assert_array_equal(rel[depth == 2].sum(axis=1), [2] * 27)
    # Co-occurrence: relevance, plus (hubs) every concept below the document's node.
    want_co = want_rel | np.array([[v in anc[q] for v in node] for q in range(task.num_concepts)]) if hubs else want_rel
    np.testing.assert_array_equal(co, want_co)
    if hubs:
        assert co[:, depth[node] == 0].sum(axis=0).tolist() == [1 + 3 + 9] * 3  # a root hub: its whole subtree
    np.testing.assert_allclose(np.linalg.norm(np.asarray(corpus.contexts), axis=-1), 1.0, atol=1e-12)


def test_sampler_draws_cooccurring_pairs_and_uniform_documents(tree):
    task, _ = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(3), docs_per_leaf=2, docs_per_node=2)
    c, d = corpus.sample_ids(jax.random.key(4), 2048)
    c2, d2 = corpus.sample_ids(jax.random.key(4), 2048)
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(d, d2)
    assert bool(jnp.all(corpus.cooccur[c, d]))
    counts = np.bincount(np.asarray(d), minlength=corpus.num_docs)
    expected = 2048 / corpus.num_docs
    # chi-square with D-1 = 77 dof: mean 77, sd ~12.4; 150 is ~6 sd out.
    assert np.sum((counts - expected) ** 2 / expected) < 150
    batch = corpus.sample(jax.random.key(4), 8)
    np.testing.assert_array_equal(np.argmax(np.asarray(batch.contexts), axis=1), np.asarray(d[:8]))
    ctx = retrieval.RetrievalCorpus(task, key=jax.random.key(3), docs_per_leaf=2, docs_per_node=2, encoding="context")
    np.testing.assert_array_equal(ctx.sample(jax.random.key(4), 8).contexts, corpus.contexts[d[:8]])


def test_document_tables_rows_are_documents_and_source_frequency(tree):
    task, _ = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(5), docs_per_leaf=2, docs_per_node=1)
    model = retrieval.DocumentTables(corpus.num_concepts, corpus.num_docs, 8, key=jax.random.key(6), dtype=jnp.float64)
    ids = jnp.asarray([3, 0, 3, 65])
    np.testing.assert_array_equal(model.embed_contexts(corpus.inputs(ids)), model.docs[ids])
    np.testing.assert_array_equal(retrieval.document_embeddings(model, corpus), model.docs)
    se = retrieval.document_source_energy(model, corpus, key=jax.random.key(7), batch_size=16, num_batches=400)
    # Documents are drawn uniformly: p = 1 - (1 - 1/D)^B for every document.
    p_true = 1 - (1 - 1 / corpus.num_docs) ** 16
    assert float(jnp.mean(se.p)) == pytest.approx(p_true, rel=0.03)
    assert bool(jnp.all(se.pw2 > 0)) and bool(jnp.all(se.var >= 0))


def _training_p(depth, branching, docs_per_leaf, docs_per_node, batch_size):
    """Per-minibatch frequency of every document and concept row, from the tree's ancestor sets
    (independent of the builder): documents uniform per draw, then a co-occurring concept
    uniformly (the task's weights are uniform)."""
    anc = _ancestors_or_self(depth, branching)
    n = len(anc)
    n_leaf = branching ** depth
    node = np.repeat(np.arange(n), [docs_per_leaf if i >= n - n_leaf else docs_per_node for i in range(n)])
    co = np.array([[q in anc[v] or v in anc[q] for v in node] for q in range(n)], float)
    d = node.size
    q_c = (co / co.sum(0, keepdims=True)).sum(1) / d
    return 1 - (1 - 1 / d) ** batch_size * np.ones(d), 1 - (1 - q_c) ** batch_size


def test_training_frequency_matches_the_sampler(tree):
    from normflow.experiments.retrieval import training_frequency

    task, _ = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(16), docs_per_leaf=2, docs_per_node=1)
    p_d, p_c = training_frequency(corpus, 16)
    want_d, want_c = _training_p(3, 3, 2, 1, 16)
    np.testing.assert_allclose(p_d, want_d, rtol=1e-12)
    np.testing.assert_allclose(p_c, want_c, rtol=1e-12)
    # and against the sampler itself: presence frequencies over 4000 minibatches (binomial sd <= 0.008)
    c, d = jax.vmap(lambda k: corpus.sample_ids(k, 16))(jax.random.split(jax.random.key(17), 4000))
    seen_c = np.asarray(jax.vmap(lambda x: jnp.zeros(corpus.num_concepts, bool).at[x].set(True))(c)).mean(0)
    seen_d = np.asarray(jax.vmap(lambda x: jnp.zeros(corpus.num_docs, bool).at[x].set(True))(d)).mean(0)
    assert np.max(np.abs(seen_c - p_c)) < 0.04 and np.max(np.abs(seen_d - p_d)) < 0.04


def test_evaluate_alpha_zero_is_cosine_and_depth_means(tree):
    task, _ = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(8), docs_per_leaf=2, docs_per_node=1)
    model = retrieval.DocumentTables(corpus.num_concepts, corpus.num_docs, 8, key=jax.random.key(9), dtype=jnp.float64)
    # Give the documents unequal norms so α matters.
    scale = jnp.exp(jax.random.normal(jax.random.key(12), (corpus.num_docs, 1), jnp.float64))
    model = eqx.tree_at(lambda m: m.docs, model, model.docs * scale)
    alphas = retrieval.alpha_grid(-1.0, 1.0, 0.5)
    ev = retrieval.evaluate(model, corpus, alphas, k=5)
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    cos = retrieval.ndcg_at_k(retrieval.norm_weighted_scores(model.concepts, model.docs), corpus.relevance, 5)
    np.testing.assert_allclose(ev.curve.per_query[i0], cos, atol=1e-12)
    qd = np.asarray(corpus.query_depth)
    for row, lvl in zip(np.asarray(ev.per_depth), np.asarray(ev.depths)):
        np.testing.assert_allclose(row, np.asarray(ev.curve.per_query)[:, qd == lvl].mean(axis=1), atol=1e-12)
    assert not np.allclose(np.asarray(ev.curve.ndcg), float(ev.curve.ndcg[i0]))  # the norms do change rankings


def test_alpha_grid_and_best_alpha():
    a = retrieval.alpha_grid(-2.0, 2.0, 0.1)
    assert a.size == 41 and a[0] == pytest.approx(-2.0) and a[-1] == pytest.approx(2.0)
    assert np.count_nonzero(a == 0.0) == 1
    alphas = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    norm, best, gain = retrieval.best_alpha(alphas, [0.6, 0.6, 0.5, 0.55, 0.6])
    assert norm[2] == 1.0
    assert best == -0.5 and gain == pytest.approx(0.2)  # tie between -1, -0.5, 1: the α closest to 0 (then first)
    norm, best, gain = retrieval.best_alpha(alphas, [0.4, 0.45, 0.5, 0.5, 0.3])
    assert best == 0.0 and gain == 0.0  # a plateau through 0 picks 0
    with pytest.raises(ValueError):
        retrieval.best_alpha([-1.0, 1.0], [0.5, 0.5])


# --------------------------------------------------------------------------------------------
# The sim, in process
# --------------------------------------------------------------------------------------------




def _check_curve(alphas, ndcg, norm, best_a, gain):
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    assert norm[i0] == 1.0  # exactly
    assert np.all(np.isfinite(ndcg)) and np.all(np.isfinite(norm))
    assert np.all((ndcg >= 0) & (ndcg <= 1 + 1e-12))
    np.testing.assert_allclose(norm, ndcg / ndcg[i0], rtol=1e-12)
    j = int(np.flatnonzero(alphas == best_a)[0])
    assert norm[j] == norm.max()
    assert gain == pytest.approx(norm.max() - 1, abs=1e-12)
    ties = np.flatnonzero(norm == norm.max())
    assert abs(best_a) == np.min(np.abs(alphas[ties]))


def test_sim_quick_writes_curves(tmp_path):
    out, fig = tmp_path / "out", tmp_path / "fig"
    rc, stdout, stderr = run_experiment("retrieval", ["--quick", "--quiet", "--out", str(out), "--figures", str(fig)])
    assert rc == 0, stderr
    res = json.loads((out / "results.json").read_text())
    assert res["status"] == "ok"
    assert (fig / "retrieval.png").stat().st_size > 10_000
    alphas = np.asarray(res["alphas"], float)
    assert alphas.min() <= -1 and alphas.max() >= 1
    assert [(r_["encoder"], r_["optimizer"], r_["weight_decay"]) for r_ in res["runs"]] == [
        ("table", "sgd", 1e-3), ("table", "sgd", 0.0)]
    n_levels = len(res["benchmark"]["queries_by_depth"])
    for run in res["runs"]:
        ndcg, norm = np.asarray(run["ndcg"], float), np.asarray(run["normalised"], float)
        assert ndcg.shape == alphas.shape
        _check_curve(alphas, ndcg, norm, run["best_alpha"], run["best_gain"])
        assert run["cosine_ndcg"] == ndcg[alphas == 0.0][0]
        assert len(run["per_depth"]) == n_levels
        for pd in run["per_depth"]:
            _check_curve(alphas, np.asarray(pd["ndcg"], float), np.asarray(pd["normalised"], float), pd["best_alpha"],
                         pd["best_gain"])
        g, q95 = run["best_gain"], run["null_gain"]["q95"]
        assert run["null_gain"]["num"] == res["null_permutations"] and math.isfinite(q95)
        if g < res["flat_max"] or g <= q95:
            want = "flat"
        else:
            want = "gain" if g >= res["gain_min"] and run["best_alpha"] < 0 else "marginal"
        assert run["regime"] == want
        assert all(math.isfinite(x) and x > 0 for x in run["doc_norm_by_doc_depth"])
    # A theory line exists for every free-table run (docs/theory.md §15): SGD+decay (§6) and the
    # SGD imprint without decay (§5); each cites its section.
    assert [r_["doc_theory_by_doc_depth"] is not None for r_ in res["runs"]] == [True, True]
    assert [r_["doc_theory_formula"].split(":")[0] for r_ in res["runs"]] == ["docs/theory.md §6", "docs/theory.md §5"]
    assert res["both_regimes"] == (bool(res["regimes"].get("gain")) and bool(res["regimes"].get("flat")))
    # docs/theory.md §16: each configuration against its formula's measured region, at the
    # frequencies its training batches give every free row; recomputed from the run's config
    cfg = res["config"]
    assert not cfg["no_hubs"]
    p_d, p_c = _training_p(cfg["depth"], cfg["branching"], cfg["docs_per_leaf"], cfg["docs_per_node"], cfg["batch_size"])
    assert len(p_d) == res["benchmark"]["n_docs"] and len(p_c) == res["benchmark"]["n_queries"]
    for run in res["runs"]:
        v = run["validity"]
        assert set(v) == {"inside", "map", "message", "detail"}
        want = nf.validity.check(run["optimizer"], lr=run["lr"], weight_decay=run["weight_decay"],
                                 p=np.concatenate([p_d, p_c]), momentum=cfg["momentum"], b2=0.999)
        assert v["inside"] == want.inside and v["map"] == want.family and v["message"] == want.message
        assert (want.message in stdout) == (want.inside is False)


def test_dual_encoder_documents_go_through_the_context_tower(tree):
    task, _ = tree
    corpus = retrieval.RetrievalCorpus(task, key=jax.random.key(13), docs_per_leaf=2, docs_per_node=1, encoding="context")
    model = nf.DualEncoder(corpus.num_concepts, 8, key=jax.random.key(14), dtype=jnp.float64)
    d = retrieval.document_embeddings(model, corpus)
    np.testing.assert_allclose(d, jax.vmap(model.context_tower)(corpus.contexts), rtol=1e-12)
    alphas = retrieval.alpha_grid(-1.0, 1.0, 0.5)  # the grid of the test above: same compiled program
    ev = retrieval.evaluate(model, corpus, alphas, k=5)
    assert ev.per_depth.shape == (3, 5) and bool(jnp.all(jnp.isfinite(ev.per_depth)))
    null = retrieval.shuffled_norm_gains(model, corpus, alphas, key=jax.random.key(15), k=5, num=3)
    assert null.shape == (3,) and np.all(null >= 0)  # the best gain includes α = 0, so it is >= 0
    fp = np.asarray(retrieval.cosine_false_positives(model, corpus, k=10))
    # Each query's top 10 minus its relevant hits; the counts add up over documents.
    top = np.argsort(-np.asarray(retrieval.norm_weighted_scores(model.concept_embeddings(), d)), axis=1, kind="stable")[:, :10]
    assert fp.sum() == int((np.take_along_axis(np.asarray(corpus.relevance), top, axis=1) == 0).sum())


@pytest.mark.parametrize("bad", [["--lr", "0.1"]])
def test_sim_bad_input_exit_2_nothing_written(tmp_path, bad, capsys):
    from conftest import run_experiment

    out = tmp_path / "out"
    rc, _, err = run_experiment("retrieval", ["--quick", *bad, "--out", str(out), "--figures", str(tmp_path / "fig")])
    assert rc == 2
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "fig").exists()
