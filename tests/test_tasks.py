"""Synthetic tasks: shapes, determinism, and the specificity knobs behave as documented."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normflow as nf


def test_hierarchy_shapes_and_spread_ordering():
    task = nf.HierarchicalTask(depth=3, branching=4, dim=16, key=jax.random.key(0))
    assert task.num_concepts == 4 + 16 + 64
    depth, spread = np.asarray(task.depth), np.asarray(task.spread)
    assert np.bincount(depth).tolist() == [4, 16, 64]
    means = [spread[depth == l].mean() for l in range(3)]
    assert means[0] > means[1] > means[2], means  # generic concepts have spread-out contexts
    np.testing.assert_allclose(spread[depth == 2], 0.0, atol=1e-5)  # a leaf has one direction (float32 rounding)
    np.testing.assert_allclose(np.asarray(task.weights).sum(), 1.0, rtol=1e-6)


def test_sample_deterministic_and_unit_norm():
    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0))
    a = task.sample(jax.random.key(5), 32)
    b = task.sample(jax.random.key(5), 32)
    c = task.sample(jax.random.key(6), 32)
    assert np.array_equal(a.concepts, b.concepts) and np.array_equal(a.contexts, b.contexts)
    assert not np.array_equal(a.contexts, c.contexts)
    np.testing.assert_allclose(jnp.linalg.norm(a.contexts, axis=-1), 1.0, rtol=1e-5)
    assert a.concepts.shape == (32,) and a.contexts.shape == (32, 8)


def test_context_comes_from_a_leaf_below_the_concept():
    task = nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(1), context_noise=0.0)
    batch = task.sample(jax.random.key(2), 200)
    leaves = np.asarray(task.leaf_centers)
    for cid, ctx in zip(np.asarray(batch.concepts), np.asarray(batch.contexts)):
        lo, n = int(task.leaf_lo[cid]), int(task.leaf_count[cid])
        dist = np.min(np.linalg.norm(leaves[lo:lo + n] - ctx, axis=-1))
        assert dist < 1e-5


def test_zipf_frequency_spans_decades():
    task = nf.HierarchicalTask(depth=3, branching=4, dim=8, key=jax.random.key(0), frequency="zipf", zipf_exponent=1.2)
    w = np.asarray(task.weights, np.float64)
    np.testing.assert_allclose(w.max() / w.min(), task.num_concepts**1.2, rtol=1e-4)  # rank law
    p = np.asarray(task.frequency(4))
    assert p.max() / p.min() > 100
    # empirical check of p = 1 - (1 - w)^B on the most frequent concept (300 batches: 3 sigma ~ 0.08)
    i = int(np.argmax(p))
    draws = np.asarray(jax.vmap(lambda s: task.sample(jax.random.key(s), 4).concepts)(jnp.arange(300)))
    hits = np.mean([i in d for d in draws])
    assert abs(hits - p[i]) < 0.08


def test_flat_task_spread_tracks_knob():
    task = nf.FlatTask(64, 16, key=jax.random.key(0), spread_range=(0.1, 3.0))
    r = np.corrcoef(np.asarray(task.spread_scale), np.asarray(task.spread))[0, 1]
    assert r > 0.9


@pytest.mark.parametrize("kw", [dict(depth=0), dict(branching=0), dict(temperature=0.0), dict(frequency="pareto")])
def test_bad_task_arguments(kw):
    args = dict(depth=2, branching=2, dim=4, key=jax.random.key(0)) | kw
    with pytest.raises(ValueError):
        nf.HierarchicalTask(**args)


def test_inverse_cdf_sampler_matches_the_weights():
    """``sample_concepts`` draws the categorical distribution of ``weights``: a chi-square test
    over 200,000 draws of a Zipf task (85 concepts, weights spanning 200x), and zero-weight
    concepts are never drawn."""
    task = nf.HierarchicalTask(depth=3, branching=4, dim=8, key=jax.random.key(0), frequency="zipf", zipf_exponent=1.2)
    n = 200_000
    ids = np.asarray(task.sample_concepts(jax.random.key(3), n))
    w = np.asarray(task.weights, np.float64)
    counts = np.bincount(ids, minlength=task.num_concepts)
    expected = n * w / w.sum()
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    dof = task.num_concepts - 1
    # chi2 has mean dof and sd sqrt(2 dof) under the null; 6 sd is a 1e-9-level false alarm
    assert chi2 < dof + 6 * np.sqrt(2 * dof), (chi2, dof)
    # a concept of weight 0 (first, middle and last position) is never drawn
    w0 = np.asarray(task.weights).copy()
    w0[[0, 40, task.num_concepts - 1]] = 0.0
    t0 = eqx.tree_at(lambda t: t.weights, task, jnp.asarray(w0))
    ids0 = np.asarray(t0.sample_concepts(jax.random.key(4), 50_000))
    assert not np.isin(ids0, [0, 40, task.num_concepts - 1]).any()
    assert ids0.min() >= 0 and ids0.max() < task.num_concepts


def test_a_prepared_task_draws_the_same_integers():
    """``prepared()`` (the engines' once-per-chunk sampling table) changes no draw: the same
    ids as the task that builds its table at every draw, jitted and eager, for a Zipf task
    of 40,000 concepts (a four-level tree) in float32 and a flat one with zero weights; and a
    task whose weights were replaced draws from the new weights once prepared again."""
    keys = jax.random.split(jax.random.key(7), 64)
    w = np.ones(500)
    w[::3] = 0.0
    tasks = [nf.FlatTask(40_000, 4, key=jax.random.key(1), frequency="zipf", leaves_per_concept=1),
             nf.FlatTask(500, 4, key=jax.random.key(2), weights=w, leaves_per_concept=1)]
    draw = jax.jit(lambda t, k: jax.vmap(lambda kk: t.sample(kk, 512).concepts)(k))
    for task in tasks:
        prep = task.prepared()
        assert prep.sampling_table is not None and task.sampling_table is None
        want = np.asarray(draw(task, keys))
        np.testing.assert_array_equal(np.asarray(draw(prep, keys)), want)
        np.testing.assert_array_equal(np.asarray(prep.sample(keys[0], 512).concepts), want[0])
        assert len(np.unique(want)) > 100  # not a degenerate draw
    assert not np.isin(np.asarray(draw(tasks[1].prepared(), keys)), np.flatnonzero(w == 0)).any()
    only = eqx.tree_at(lambda t: t.weights, tasks[1], jnp.zeros(500).at[7].set(1.0))
    assert set(np.unique(np.asarray(draw(only.prepared(), keys)))) == {7}


# every size in float64 (one block, perfect squares and one past them, a non-square); float32
# (the same comparisons in another dtype) at two of them: each case is two compiles
_SIZES = [1, 2, 3, 16, 17, 32, 33, 72, 1000, 1024, 1025, 32769]  # 1-4 levels of the search tree


@pytest.mark.parametrize("n, dtype", [(n, jnp.float64) for n in _SIZES] + [(17, jnp.float32), (1025, jnp.float32)],
                         ids=[f"float64-{n}" for n in _SIZES] + ["float32-17", "float32-1025"])
def test_count_at_most_is_searchsorted_right(n, dtype):
    """The sampler's search tree gives exactly jnp.searchsorted(cdf, u, side="right"),
    including flat stretches of the cdf (zero weights), queries equal to a cdf entry, and
    queries below 0 or at/above the total."""
    from normflow.tasks import _count_at_most

    rng = np.random.default_rng(n)
    w = rng.random(n)
    w[rng.random(n) < 0.25] = 0.0
    # a sequential cumsum (XLA's parallel jnp.cumsum can dip by an ulp, and then the two searches
    # answer differently: a binary search assumes order); float64 -> float32 keeps the order
    cdf = jnp.asarray(np.cumsum(w), dtype)
    assert np.all(np.diff(np.asarray(cdf)) >= 0)
    total = float(cdf[-1])
    u = np.concatenate([rng.random(400) * total, np.asarray(cdf)[: min(n, 60)], [0.0, -1.0, total, 2 * total + 1]])
    u = jnp.asarray(u, dtype)
    got = np.asarray(_count_at_most(cdf, u))
    want = np.asarray(jnp.searchsorted(cdf, u, side="right"))
    np.testing.assert_array_equal(got, want)
    assert got.min() == 0 and got.max() == n  # both ends reached: the comparison is not vacuous
