"""docs/theory.md §1: every loss depends on the embeddings only through their directions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import normflow as nf

LOSSES = list(nf.LOSSES.values())


def _xy(seed, b=6, d=5):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.normal(kx, (b, d), jnp.float64), jax.random.normal(ky, (b, d), jnp.float64)


@pytest.mark.parametrize("loss", LOSSES, ids=list(nf.LOSSES))
@settings(max_examples=30, deadline=None)
@given(c=st.floats(1e-3, 1e3), row=st.integers(0, 5), side=st.sampled_from(["x", "y"]), seed=st.integers(0, 99))
def test_loss_invariant_to_scaling_any_embedding(loss, c, row, side, seed):
    x, y = _xy(seed)
    base = loss(x, y, 0.2)
    if side == "x":
        x = x.at[row].multiply(c)
    else:
        y = y.at[row].multiply(c)
    np.testing.assert_allclose(loss(x, y, 0.2), base, rtol=1e-12)


@pytest.mark.parametrize("loss", LOSSES, ids=list(nf.LOSSES))
def test_gradient_orthogonal_to_embedding(loss):
    """|<∇ℓ, x>| / (|∇ℓ||x|) < 1e-10 for every row, and |∇ℓ| ∝ 1/R (Euler)."""
    x, y = _xy(7, b=16, d=8)
    g = jax.grad(loss)(x, y, 0.1)
    cos = jnp.abs(jnp.sum(g * x, -1)) / (jnp.linalg.norm(g, axis=-1) * jnp.linalg.norm(x, axis=-1))
    assert float(jnp.max(cos)) < 1e-10
    g2 = jax.grad(loss)(3.0 * x, y, 0.1)
    np.testing.assert_allclose(g2 * 3.0, g, rtol=1e-10, atol=1e-14)


def test_table_gradient_orthogonal_per_concept(small_task):
    """Same check through the model: per concept row of the free table, in float64."""
    model = nf.default_model(small_task, jax.random.key(1))
    batch = small_task.sample(jax.random.key(2), 64)

    def loss_of(m):
        return nf.info_nce(m.embed_concepts(batch.concepts), m.embed_contexts(batch.contexts), small_task.temperature)

    g = jax.grad(loss_of)(model).weight
    x = model.weight
    present = np.unique(np.asarray(batch.concepts))
    gn = jnp.linalg.norm(g, axis=-1)[present]
    cos = jnp.abs(jnp.sum(g * x, -1))[present] / (gn * jnp.linalg.norm(x, axis=-1)[present])
    assert len(present) >= 10 and float(jnp.min(gn)) > 0
    assert float(jnp.max(cos)) < 1e-10


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'cosface'.*info_nce"):
        nf.get_loss("cosface")
