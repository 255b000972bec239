"""The WordNet retrieval benchmark on the real model (normflow.real._retrieval,
normflow.experiments.real_retrieval): the benchmark's relevance from a toy WordNet-like structure,
the pruned NDCG against the lab's full-sort NDCG, the exact flatness in α_q, the baselines against
direct NumPy references, and one quick run in process whose results.json must agree with its own
arrays."""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import pytest

from normflow.real import _retrieval as rr
from normflow.retrieval import best_alpha, ndcg_at_k, ndcg_curve

# ---------------------------------------------------------------------------------------------
# The benchmark, on a toy WordNet-like structure.


class _Syn(NamedTuple):
    lemmas: tuple
    gloss: str
    hypernyms: tuple
    depth: int


class _WN(NamedTuple):
    synsets: dict
    senses: dict


def _toy():
    """entity(0) > animal(1) > canine(2) > dog(3, also "domestic_dog") > puppy(4);
    frankfurter(5, lemmas "hot_dog", "Dog"?) under food(6) under entity. "dog" names two synsets."""
    s = {
        0: _Syn(("entity",), "that which exists", (), 0),
        1: _Syn(("animal", "beast"), 'a living organism; "animals move"', (0,), 1),
        2: _Syn(("canine", "canid"), "a carnivore of the dog family", (1,), 2),
        3: _Syn(("dog", "domestic_dog"), 'a domesticated canine; "the dog barked all night"', (2,), 3),
        4: _Syn(("puppy",), "a young dog", (3,), 4),
        6: _Syn(("food",), "any nutriment", (0,), 1),
        5: _Syn(("hot_dog", "Dog"), "a frankfurter in a bun", (6,), 2),
    }
    senses = {"dog": [3, 5], "domestic_dog": [3], "puppy": [4], "hot_dog": [5], "canine": [2], "canid": [2],
              "animal": [1], "beast": [1], "entity": [0], "food": [6]}
    return _WN(s, senses)


def test_definition_and_lemma_text():
    assert rr.definition('a domesticated canine; "the dog barked all night"') == "a domesticated canine"
    assert rr.definition('a thing; "x"; "y"') == "a thing"
    assert rr.definition("no examples here") == "no examples here"
    assert rr.definition('"only an example"') == '"only an example"'
    assert rr.lemma_text("Hot_dog") == "hot dog" and rr.lemma_text("Canis_familiaris") == "canis familiaris"


def test_stratified_sample_is_even_capped_seeded_and_excludes():
    depths = np.array([2] * 3 + [3] * 50 + [4] * 50 + [5] * 50)
    pick = rr.stratified_sample(depths, 60, rng=np.random.default_rng(0))
    counts = np.bincount(depths[pick], minlength=6)[2:]
    assert counts.tolist() == [3, 19, 19, 19] and np.unique(pick).size == 60  # depth 2 gives all it has
    again = rr.stratified_sample(depths, 60, rng=np.random.default_rng(0))
    assert np.array_equal(pick, again)
    used = np.zeros(depths.size, bool)
    used[pick] = True
    more = rr.stratified_sample(depths, 30, rng=np.random.default_rng(1), exclude=used)
    assert not np.intersect1d(pick, more).size and np.all(depths[more] > 2)
    assert rr.stratified_sample(depths, 9, rng=np.random.default_rng(0), levels=[4, 5]).size == 9
    with pytest.raises(ValueError):
        rr.stratified_sample(depths, 200, rng=np.random.default_rng(0))


def test_relevance_from_structure_grades_own_lemmas_2_and_neighbours_1():
    wn = _toy()
    hypo = {0: [1, 6], 1: [2], 2: [3], 3: [4], 6: [5]}
    chosen = [3, 5, 2]  # dog, hot dog, canine (4 "puppy" is a neighbour but not sampled)
    docs, rel = rr.relevance_from_structure(chosen, lambda o: wn.synsets[o].lemmas,
                                            lambda o: list(wn.synsets[o].hypernyms) + hypo.get(o, []))
    assert docs == ["dog", "domestic dog", "hot dog", "canine", "canid"]  # "Dog" of 5 is the same string
    ref = np.array([
        # dog  domestic hot  canine canid
        [2, 2, 0, 1, 1],  # gloss of 3: own lemmas; its hypernym canine's lemmas are documents
        [2, 0, 2, 0, 0],  # gloss of 5: "dog" (shared string) and "hot dog"; its hypernym food is no document
        [1, 1, 0, 2, 2],  # gloss of 2: own; its hyponym dog's lemmas
    ])
    assert np.array_equal(rel, ref)
    _, flat = rr.relevance_from_structure(chosen, lambda o: wn.synsets[o].lemmas, lambda o: [], graded=False)
    assert np.array_equal(flat, np.where(ref == 2, 2, 0))


def test_build_benchmark_on_the_toy_wordnet():
    wn = _toy()
    bm = rr.build_benchmark(wn, 4, seed=3, bank=1, min_depth=1)
    chosen = bm.synsets.tolist()
    assert len(chosen) == 4 and 0 not in chosen and len(bm.glosses) == 4
    assert sorted(bm.depth.tolist()) == sorted(wn.synsets[o].depth for o in chosen)
    for i, o in enumerate(chosen):
        assert bm.glosses[i] == rr.definition(wn.synsets[o].gloss) and '"' not in bm.glosses[i]
        own = {rr.lemma_text(lem) for lem in wn.synsets[o].lemmas}
        assert {bm.docs[j] for j in np.flatnonzero(bm.relevance[i] == 2)} == own
    # the bank: glosses of a further synset, none a query; its words are no documents
    assert len(bm.bank_glosses) == 1 and bm.bank_glosses[0] not in bm.glosses
    assert not set(bm.bank_words) & set(bm.docs)
    # a word's depth: its first sampled sense in WordNet's order
    if "dog" in bm.docs and {3, 5} <= set(chosen):
        assert bm.doc_depth[bm.docs.index("dog")] == 3
    for j, t in enumerate(bm.docs):
        own = [i for i in range(4) if bm.relevance[i, j] == 2]
        assert bm.doc_depth[j] in bm.depth[own]
    assert bm.gloss_val.sum() == 1 and bm.word_val.sum() == round(0.25 * len(bm.docs))


def test_build_benchmark_on_real_wordnet_relevance_of_known_synsets():
    wnmod = pytest.importorskip("normflow.real._wordnet")
    wn = wnmod.load_wordnet()
    dog = wn.senses["dog"][0]
    canine = [h for h in wn.synsets[dog].hypernyms if "canine" in wn.synsets[h].lemmas][0]
    puppy = wn.senses["puppy"][0]
    hyponyms = rr._hyponyms(wn)
    assert dog in hyponyms[canine] and dog in wn.synsets[puppy].hypernyms
    chosen = [dog, canine, puppy]
    docs, rel = rr.relevance_from_structure(chosen, lambda o: list(wn.synsets[o].lemmas),
                                            lambda o: list(wn.synsets[o].hypernyms) + hyponyms.get(o, []))
    j = {t: i for i, t in enumerate(docs)}
    assert rel[0, j["dog"]] == 2 and rel[0, j["domestic dog"]] == 2 and rel[0, j["canis familiaris"]] == 2
    assert rel[0, j["canine"]] == 1 and rel[0, j["puppy"]] == 1  # hypernym and hyponym
    assert rel[1, j["dog"]] == 1 and rel[1, j["canine"]] == 2 and rel[1, j["puppy"]] == 0
    assert rel[2, j["dog"]] == 1 and rel[2, j["puppy"]] == 2 and rel[2, j["canine"]] == 0
    assert "barked" not in rr.definition(wn.synsets[dog].gloss)


# ---------------------------------------------------------------------------------------------
# Scores and NDCG.


def test_top_k_ndcg_is_the_labs_ndcg_exactly_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(4):
        s = np.round(rng.normal(size=(30, 120)), 1)  # many exact ties, also at the cutoff
        rel = (rng.random((30, 120)) < 0.05) * rng.integers(1, 3, (30, 120))
        rel[0] = 0  # an unanswerable query: 0 in both
        mr = int((rel > 0).sum(1).max())
        a = np.asarray(ndcg_at_k(jnp.asarray(s), jnp.asarray(rel), 10))
        b = np.asarray(rr.top_k_ndcg(jnp.asarray(s), jnp.asarray(rel), 10, mr))
        assert np.array_equal(a, b)
    s = rng.normal(size=(5, 4))  # k > D
    rel = rng.integers(0, 3, (5, 4))
    assert np.array_equal(np.asarray(ndcg_at_k(jnp.asarray(s), jnp.asarray(rel), 10)),
                          np.asarray(rr.top_k_ndcg(jnp.asarray(s), jnp.asarray(rel), 10, 4)))


def _embeddings(rng, n, d=12):
    return rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=(n, 1))


def test_alpha_ndcg_is_ndcg_curve_and_alpha_0_is_cosine_exactly():
    rng = np.random.default_rng(1)
    q, d = _embeddings(rng, 37), _embeddings(rng, 90)
    rel = (rng.random((37, 90)) < 0.04) * 2
    rel[:, 0] = 1
    alphas = np.arange(-8, 5) * 0.25
    qn, dn, cos = rr.cosines(q, d)
    pq = rr.alpha_ndcg(cos, qn, dn, rel, alphas, k=5, chunk=10)  # 4 chunks, the last padded
    ref = ndcg_curve(jnp.asarray(q), jnp.asarray(d), jnp.asarray(rel), jnp.asarray(alphas), k=5)
    np.testing.assert_allclose(pq, np.asarray(ref.per_query), atol=1e-12)
    i0 = int(np.flatnonzero(alphas == 0)[0])
    mr = int((rel > 0).sum(1).max())
    assert np.array_equal(pq[i0], np.asarray(rr.top_k_ndcg(cos, jnp.asarray(rel), 5, mr), np.float64))
    norm, _, _ = best_alpha(alphas, pq.mean(1))
    assert norm[i0] == 1.0
    # the null: norms permuted, cosines kept; at α = 0 it is cosine again
    null = rr.shuffled_norm_ndcg(cos, qn, dn, rel, alphas, rng=np.random.default_rng(0), num=3, k=5)
    assert null.shape == (3, alphas.size, 37) and np.all(null[:, i0] == pq[i0])


def test_query_exponent_is_exactly_flat():
    rng = np.random.default_rng(2)
    q, d = _embeddings(rng, 25), _embeddings(rng, 60)
    rel = rng.integers(0, 3, (25, 60)) * (rng.random((25, 60)) < 0.1)
    qn, dn, cos = rr.cosines(q, d)
    alphas = np.array([-2.0, -1.0, 0.0, 1.0])
    grid = rr.query_alpha_grid(cos, qn, dn, rel, [-3.0, -1.0, 0.0, 2.0], alphas, k=10)
    assert grid.shape == (4, 4, 25)
    assert np.all(grid == grid[2][None])


# ---------------------------------------------------------------------------------------------
# Baselines.


def test_inverted_softmax_against_a_direct_numpy_reference():
    rng = np.random.default_rng(3)
    s = rng.uniform(-1, 1, (6, 9))
    bank = rng.uniform(-1, 1, (15, 9))
    for beta in (1.0, 20.0):
        ref = np.empty_like(s)
        for i in range(6):
            for j in range(9):
                ref[i, j] = np.exp(beta * s[i, j]) / sum(np.exp(beta * bank[b, j]) for b in range(15))
        got = rr.inverted_softmax_scores(s, bank, beta)
        np.testing.assert_allclose(np.exp(got), ref, rtol=1e-12)
        assert np.array_equal(np.argsort(-got, 1, kind="stable"), np.argsort(-ref, 1, kind="stable"))
    big = rr.inverted_softmax_scores(s, bank, 1000.0)  # log space: no overflow
    assert np.all(np.isfinite(big))


def test_csls_against_a_direct_reference():
    rng = np.random.default_rng(4)
    s, bank = rng.uniform(-1, 1, (5, 8)), rng.uniform(-1, 1, (12, 8))
    k = 3
    ref = np.empty_like(s)
    for i in range(5):
        for j in range(8):
            ref[i, j] = 2 * s[i, j] - np.mean(sorted(s[i])[-k:]) - np.mean(sorted(bank[:, j])[-k:])
    np.testing.assert_allclose(rr.csls_scores(s, bank, k), ref, atol=1e-14)


def test_centering_and_all_but_the_top():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 6)) + 3.0
    c = rr.centered(x)
    np.testing.assert_allclose(c.mean(0), 0, atol=1e-12)
    a = rr.all_but_the_top(x, 2)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    np.testing.assert_allclose(a @ vt[:2].T, 0, atol=1e-10)
    np.testing.assert_allclose(a @ vt[2:].T, c @ vt[2:].T, atol=1e-10)
    np.testing.assert_allclose(rr.all_but_the_top(x, 0), c)


def test_choose_beta_and_baseline_scores():
    rng = np.random.default_rng(6)
    q, d, b = _embeddings(rng, 20), _embeddings(rng, 40), _embeddings(rng, 15)
    rel = (rng.random((20, 40)) < 0.1) * 2
    rel[:, 1] = 1
    cos = np.asarray(rr.cosines(q, d)[2], np.float64)
    bank = np.asarray(rr.cosines(b, d)[2], np.float64)
    beta, means = rr.choose_beta(cos, bank, rel, k=10)
    assert means.shape == (len(rr.BETAS),) and beta == rr.BETAS[int(np.argmax(means))]
    scores = rr.baseline_scores(q, d, b, beta=beta, components=2, neighbours=3)
    assert set(scores) == {"cosine", "center_docs", "center_both", "abtt", "qb_norm", "csls"}
    np.testing.assert_allclose(scores["cosine"], cos, atol=1e-12)
    np.testing.assert_allclose(scores["qb_norm"], rr.inverted_softmax_scores(cos, bank, beta), atol=1e-12)
    dc = d - d.mean(0)
    np.testing.assert_allclose(scores["center_docs"], (q / np.linalg.norm(q, axis=1, keepdims=True))
                               @ (dc / np.linalg.norm(dc, axis=1, keepdims=True)).T, atol=1e-12)


def test_side_best_and_regime():
    from normflow.experiments.real_retrieval import regime, side_best

    a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    s = side_best(a, [1.01, 1.03, 1.0, 0.99, 0.98])
    assert s["neg"] == (-0.5, pytest.approx(0.03)) and s["pos"] == (0.5, pytest.approx(-0.01))
    assert regime(0.03, 0.01) == "gain" and regime(0.03, 0.04) == "flat" and regime(0.015, 0.0) == "marginal"


# ---------------------------------------------------------------------------------------------
# One quick run, in process.


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("safetensors")
    pytest.importorskip("normflow.real._wordnet")
    from conftest import run_real_quick

    return run_real_quick(tmp_path_factory, "real_retrieval")


def test_quick_run_checks_against_its_own_arrays(run):
    res, out, t = run
    assert res["status"] == "ok" and res["config"]["quick"] is True
    assert (t / "figs" / "real_retrieval.png").stat().st_size > 20_000 and (t / "out" / "real_retrieval.png").is_file()
    b = res["benchmark"]
    assert b["n_synsets"] == 300 and b["n_docs"] >= 300 and b["grade2_pairs"] >= b["n_docs"]
    alphas = np.asarray(res["alphas"])
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    for d in res["directions"]:
        o = d["overall"]
        norm = np.asarray(o["normalised"])
        assert norm[i0] == 1.0
        assert o["best_gain"] == pytest.approx(norm.max() - 1, abs=1e-12)
        assert o["best_neg"]["gain"] == pytest.approx(norm[alphas < 0].max() - 1, abs=1e-12)
        assert o["best_pos"]["gain"] == pytest.approx(norm[alphas > 0].max() - 1, abs=1e-12)
        assert o["best_neg"]["above_null_q95"] == (o["best_neg"]["gain"] > o["best_neg"]["null_gain_q95"])
        tq = d["test_queries"]
        cos0, best, dep = (np.asarray(tq[k], float) for k in ("ndcg_cosine", "ndcg_best", "depth"))
        assert cos0.size == d["n_test"] == o["n_queries"]
        assert o["cosine_ndcg"] == pytest.approx(cos0.mean(), rel=1e-12)
        assert best.mean() / cos0.mean() - 1 == pytest.approx(o["best_gain"], abs=1e-12)
        assert sum(pd["n_queries"] for pd in d["per_depth"]) == d["n_test"]
        for pd in d["per_depth"]:
            if "normalised" not in pd:
                continue
            m = (dep >= pd["lo"]) & (dep <= pd["hi"])
            assert pd["cosine_ndcg"] == pytest.approx(cos0[m].mean(), rel=1e-12)
            assert np.asarray(pd["normalised"])[i0] == 1.0
        bl = d["baselines"]
        assert bl["cosine"]["relative"] == 1.0 and bl["cosine_recomputed_max_abs_diff"] < 1e-6
        assert bl["cosine"]["ndcg"] == pytest.approx(o["cosine_ndcg"], rel=1e-12)
        assert bl["alpha_oracle"]["relative"] == pytest.approx(1 + o["best_gain"], abs=1e-12)
        assert bl["qb_norm"]["beta"] in res["config"]["betas"]
    h = res["directions"][0]["query_alpha_grid"]
    assert h["exactly_flat"] is True and h["row_at_query_alpha_0_equals_curve"] is True
    assert res["verdict"]["gain"] in (True, False) and "MiniLM-L6" in res["verdict"]["text"]
    assert "exactly flat: True" in out and "baselines / cosine" in out
    print(out.splitlines()[-2])  # the timings (pytest -s)
