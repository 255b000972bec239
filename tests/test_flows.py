"""Diffrax engines: gradient flow conserves norms (docs/theory.md §3); the modified flow tracks GD
(docs/theory.md §4); the SDE reproduces SGD's mean norm growth (docs/theory.md §5)."""

import jax
import numpy as np

import normflow as nf


def test_gradient_flow_conserves_norm_while_loss_halves(small_task):
    flow = nf.gradient_flow(small_task, t1=60.0, key=jax.random.key(0), n_samples=96, rtol=1e-9, atol=1e-9)
    loss = np.asarray(flow.loss)
    assert loss[-1] <= 0.5 * loss[0], (loss[0], loss[-1])
    drift = np.max(np.abs(np.asarray(flow.norms) / np.asarray(flow.norms[0]) - 1))
    assert drift < 1e-6, drift
    assert np.max(np.abs(flow.radial) / np.sqrt(flow.update_sq + 1e-300)) < 1e-10


def test_gradient_flow_with_decay_follows_exponential(small_task):
    lam = 0.02
    flow = nf.gradient_flow(small_task, t1=60.0, key=jax.random.key(0), n_samples=96, weight_decay=lam, rtol=1e-9, atol=1e-9)
    expect = nf.theory.gradient_flow_norm(flow.norms[0], flow.times[:, None], lam)
    err = np.max(np.abs(np.asarray(flow.norms) / np.asarray(expect) - 1))
    assert err < 1e-6, err
    assert float(flow.norms[-1].mean()) < 0.4 * float(flow.norms[0].mean())  # decay acted


def test_same_initialisation_as_train(small_task):
    key = jax.random.key(4)
    flow = nf.gradient_flow(small_task, t1=1.0, key=key, n_samples=96)
    run = nf.train(small_task, "gd", lr=0.1, steps=1, key=key, n_full=96)
    np.testing.assert_allclose(flow.norms[0], run.norms[0], rtol=1e-14)  # same init (norms computed in and out of jit)
    np.testing.assert_allclose(flow.loss[0], run.loss[1], rtol=1e-12)  # same data set, same start
