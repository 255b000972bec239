"""normflow.balance (measured radial balance of one SGD step) and normflow.ntk (radial votes),
float64 (conftest): exact identities for the free table, the NTK decomposition for a network."""

import jax
import jax.numpy as jnp
import numpy as np

import normflow as nf


def _setup():
    task = nf.FlatTask(6, 8, key=jax.random.key(0), dtype=jnp.float64)
    net = nf.ConceptMLP(6, 8, key=jax.random.key(1), hidden=8, dtype=jnp.float64)
    table = nf.default_model(task, jax.random.key(2))
    return task, net, table


def test_balance_terms_free_table_is_exact():
    """Table: D = 0, λ_eff = λ, no curvature, and R'² - R² is exactly quadratic in η, so the
    'Taylor' expansion equals the measured one-step change to rounding; pW²_eff = pW² + λ²R⁴
    (both from the same minibatches: recomputed here from the embedding gradients)."""
    task, _, table = _setup()
    lr, wd, key = 0.3, 0.05, jax.random.key(3)
    bt = nf.balance_terms(table, task, key=key, lr=lr, weight_decay=wd, batch_size=16, num_batches=4)
    r = np.asarray(bt.norm)
    assert np.max(np.abs(bt.drift)) < 1e-12
    np.testing.assert_allclose(bt.lambda_eff, wd, rtol=1e-12)
    assert np.max(np.abs(bt.curvature)) < 1e-12
    np.testing.assert_allclose(bt.delta_r2, bt.delta_r2_taylor, rtol=1e-9, atol=1e-14)
    x = np.asarray(table.concept_embeddings())
    push = np.zeros(task.num_concepts)
    for k in jax.random.split(key, 4):
        g = np.asarray(nf.measure.embedding_gradients(table, task, task.sample(k, 16)))
        push += np.sum((g + wd * x) ** 2, axis=-1) / 4
    np.testing.assert_allclose(bt.push, push, rtol=1e-10)
    np.testing.assert_allclose(bt.pw2_eff, r**2 * push, rtol=1e-10)


def test_radial_votes_sum_to_radial_drift():
    task, net, table = _setup()
    batch = task.sample(jax.random.key(5), 32)
    votes = np.asarray(nf.radial_votes(net, task, batch))
    d = np.asarray(nf.radial_drift(net, task, batch))
    np.testing.assert_allclose(votes.sum(1), d, rtol=1e-10, atol=1e-12)
    assert np.abs(d).max() > 1e-3 and np.any(votes < 0) and np.any(votes > 0)
    assert np.max(np.abs(np.asarray(nf.radial_votes(table, task, batch)))) < 1e-12
