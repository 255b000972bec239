"""Test-wide setup: float64 for the theory checks (THEORY §11 tolerances need it), and a
small shared task factory. Tasks pass dtype explicitly, so float32 code paths stay testable."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

import normflow as nf  # noqa: E402


@pytest.fixture(scope="session")
def small_task():
    """Depth-2, branching-3 hierarchy in dim 8, float64: 12 concepts."""
    return nf.HierarchicalTask(depth=2, branching=3, dim=8, key=jax.random.key(0), dtype=jnp.float64)
