"""SGD on a fixed pool against its SDE (docs/theory.md §5): the scans against plain Python loops, the
Itô identity of one Euler–Maruyama step, and the SDE's mean final norm against pool SGD."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normflow as nf
from normflow import sde


POOL, BS, POOL_KEY = 8, 16, 2  # the pool of the loop tests (one compile of its gradients)


@pytest.fixture(scope="module")
def tiny_task():
    """Depth-2, branching-2 hierarchy in dim 8, float64: 6 concepts."""
    return nf.HierarchicalTask(depth=2, branching=2, dim=8, key=jax.random.key(0), dtype=jnp.float64)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _pool(task, pool_key, batch_size, pool):
    """The pool as sde_flow draws it, written out (compiled, as the module draws it)."""
    return jax.vmap(lambda k: task.sample(k, batch_size))(jax.random.split(pool_key, pool))


_GRADS = {}


def _pool_grads_fn(task, pool_key_seed, batch_size, pool):
    """``w -> [K, N, d]``: the gradient of each pool minibatch's loss at the table ``w`` (numpy);
    one compile per pool (cached on the task's identity: the tests share one task)."""
    cache_key = (id(task), pool_key_seed, batch_size, pool)
    if cache_key not in _GRADS:
        _GRADS[cache_key] = _make_pool_grads(task, pool_key_seed, batch_size, pool)
    return _GRADS[cache_key]


def _make_pool_grads(task, pool_key_seed, batch_size, pool):
    loss_fn = nf.get_loss("info_nce")
    template = nf.default_model(task, jax.random.key(0))
    batches = _pool(task, jax.random.key(pool_key_seed), batch_size, pool)

    @jax.jit
    def grads(w):
        def one(batch):
            return jax.grad(lambda ww: task.loss(eqx.tree_at(lambda m: m.weight, template, ww), batch, loss_fn))(w)
        return jax.vmap(one)(batches)

    return lambda w: np.asarray(grads(jnp.asarray(w)))


def _init_weight(task, seed_key):
    return np.asarray(nf.default_model(task, jax.random.split(seed_key, 3)[0]).weight)


def _noise_key(seed_key, tag):
    return jax.random.fold_in(jax.random.split(seed_key, 3)[2], tag)


def test_pool_sgd_matches_a_python_loop(tiny_task):
    lr, lam, steps, pool, bs = 0.3, 0.2, 14, POOL, BS
    keys = jax.random.split(jax.random.key(1), 3)
    pool_key = jax.random.key(POOL_KEY)
    saves = [0, 3, 10, 14]
    run = sde.pool_sgd(tiny_task, lr, steps, keys=keys, weight_decay=lam, batch_size=bs, pool=pool,
                       pool_key=pool_key, save_steps=saves)
    assert run.norms.shape == (3, len(saves), tiny_task.num_concepts)
    np.testing.assert_array_equal(run.times, lr * np.array(saves))
    grads = _pool_grads_fn(tiny_task, POOL_KEY, bs, pool)
    for c in (0, 2):
        w = _init_weight(tiny_task, keys[c])
        k_idx = _noise_key(keys[c], 1)
        # step k's minibatch: randint(fold_in(k_idx, k), (), 0, pool)
        idx = np.asarray(jax.jit(jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k_idx, k), (), 0, pool)))(
            jnp.arange(steps)))
        ref = [np.linalg.norm(w, axis=-1)]
        for k in range(steps):
            w = w - lr * (grads(w)[idx[k]] + lam * w)
            if k + 1 in saves:
                ref.append(np.linalg.norm(w, axis=-1))
        assert len(set(idx.tolist())) > 1  # the run did draw from the pool
        np.testing.assert_allclose(np.asarray(run.norms[c]), np.stack(ref), rtol=1e-12, atol=0)
        np.testing.assert_allclose(np.asarray(run.params[c]), w.reshape(-1), rtol=1e-12, atol=1e-14)


def test_sde_euler_maruyama_matches_python_loops(tiny_task):
    """With a pool of one minibatch the diffusion vanishes exactly and the scan is Euler's method
    on the (modified) drift; with a pool of four, the same loop with the Gaussian increments."""
    lr, lam, substeps, bs = 0.2, 0.3, 3, BS
    dt = lr / substeps
    keys = jax.random.split(jax.random.key(3), 3)
    pool_key = jax.random.key(POOL_KEY)
    for pool, n_sub in ((1, 9), (POOL, 6)):
        ts = [0.0, dt, 2 * dt, n_sub * dt]
        run = sde.sde_euler_maruyama(tiny_task, lr, n_sub * dt, keys=keys, weight_decay=lam, batch_size=bs, pool=pool,
                                     pool_key=pool_key, substeps=substeps, ts=ts)
        np.testing.assert_array_equal(run.grid, [0, 1, 2, n_sub])
        np.testing.assert_allclose(run.times, ts, rtol=1e-15)
        grads = _pool_grads_fn(tiny_task, POOL_KEY, bs, pool)
        c = 1
        w = _init_weight(tiny_task, keys[c])
        k_dw = _noise_key(keys[c], 2)
        # substep n's increment: normal(fold_in(k_dw, n), (pool,))
        xis = np.asarray(jax.jit(jax.vmap(lambda n: jax.random.normal(jax.random.fold_in(k_dw, n), (pool,),
                                                                       jnp.float64)))(jnp.arange(n_sub)))
        ref = [np.linalg.norm(w, axis=-1)]
        for n in range(n_sub):
            gs = grads(w)  # [K, N, d]
            gbar = gs.mean(0)
            coef = 0.5 * lr * np.sum(gbar ** 2, -1, keepdims=True) / np.sum(w ** 2, -1, keepdims=True)
            drift = -gbar - lam * w + coef * w
            noise = np.sqrt(lr / pool) * np.einsum("knd,k->nd", gs - gbar, xis[n])
            w = w + drift * dt + noise * np.sqrt(dt)
            if n + 1 in (1, 2, n_sub):
                ref.append(np.linalg.norm(w, axis=-1))
        np.testing.assert_allclose(np.asarray(run.norms[c]), np.stack(ref), rtol=1e-12, atol=0)
        moved = np.max(np.abs(ref[-1] / ref[0] - 1))
        assert moved > 1e-3, moved  # the loop did something


def test_ito_growth_of_r2(tiny_task):
    """docs/theory.md §5, λ = 0, modified drift, free table. The gradients are tangent
    (``x·g_k = 0``), so one EM step ``Δx = a dt + Bξ√dt`` gives exactly

        E[ΔR_i²] = 2 x·a dt + |a|² dt² + dt tr(BBᵀ)_i = dt · η mean_k |g_{k,i}|²  +  dt² |a_i|²

    (``2x·a = η|ḡ_i|²`` from the modified drift, ``tr(BBᵀ)_i = η tr Σ_i``): the rate
    ``dR²/dt = η W²/R²`` with ``W² = R² mean_k|g_k|²``, plus the step's ``O(dt)``. Checked per
    concept on the seed mean of 4000 one-step runs from one state; tolerance 4 standard errors
    of that mean (the sample standard deviation over seeds / √4000)."""
    lr, substeps, pool, bs, seeds = 0.4, 2, POOL, BS, 4000
    dt = lr / substeps
    model = nf.default_model(tiny_task, jax.random.key(7))
    pool_key = jax.random.key(POOL_KEY)
    run = sde.sde_euler_maruyama(tiny_task, lr, dt, keys=jax.random.split(jax.random.key(9), seeds), batch_size=bs,
                                 pool=pool, pool_key=pool_key, substeps=substeps, ts=[0.0, dt], model=model)
    r2 = np.asarray(run.norms) ** 2  # [seeds, 2, N]
    d_r2 = r2[:, 1] - r2[:, 0]
    mean, se = d_r2.mean(0), d_r2.std(0, ddof=1) / np.sqrt(seeds)
    w = np.asarray(model.weight)
    gs = _pool_grads_fn(tiny_task, POOL_KEY, bs, pool)(w)  # [K, N, d]
    assert np.max(np.abs(np.einsum("knd,nd->kn", gs, w))) < 1e-12  # tangent gradients
    gbar = gs.mean(0)
    r2_0 = np.sum(w ** 2, -1)
    drift = -gbar + 0.5 * lr * np.sum(gbar ** 2, -1, keepdims=True) / r2_0[:, None] * w
    ms = np.mean(np.sum(gs ** 2, -1), 0)  # mean_k |g_{k,i}|² = W²/R²
    pred = dt * lr * ms + dt ** 2 * np.sum(drift ** 2, -1)
    z = (mean - pred) / se
    assert np.max(np.abs(z)) < 4, z
    # the test has power: without the Itô term (drift only) the growth is far off
    z_drift_only = (mean - (dt * lr * np.sum(gbar ** 2, -1) + dt ** 2 * np.sum(drift ** 2, -1))) / se
    assert np.min(z_drift_only) > 20, z_drift_only


def test_sde_mean_final_norm_matches_pool_sgd_at_small_lr(tiny_task):
    """ηλ = 0.0125, ε ≈ 0.05, six relaxation times 1/(4λ). The SDE here is EM with dt = η and no
    modified drift: each step has exactly pool SGD's one-step mean and covariance (the |ḡ|² and
    λ² terms included), so the seed means of the final norm (averaged over concepts) must agree
    within 4 standard errors of their paired difference. (With the modified drift, at this lr and
    λ, a 16-seed run with substeps 4 and 16 ended +0.8 % high, about 15 standard errors: the
    continuous SDE's O(η) bias, not tested here.)"""
    lam, t1, seeds = 1.0, 1.5, 32
    res = sde.compare_sde_sgd(tiny_task, [0.0125], weight_decay=lam, t1=t1, seeds=seeds, batch_size=16, pool=8,
                              substeps=1, num_saves=7, modified_drift=False, key=jax.random.key(11))
    diff = res.mean_sde[0] - res.mean_sgd[0]
    assert abs(diff) < 4 * res.mean_diff_se[0], (diff, res.mean_diff_se[0])
    # not trivially equal: the norms moved far from their start (R₀ = 1) and the noise is real
    assert abs(res.mean_sgd[0] - 1.0) > 100 * res.mean_se_sgd[0]
    assert res.std_sgd[0] > 0 and res.std_sde[0] > 0
    assert abs(res.std_rel_err[0]) < 4 * res.std_rel_err_se[0], (res.std_rel_err[0], res.std_rel_err_se[0])
    assert 0 < res.eps[0] < 0.2 and res.eta_lambda[0] == pytest.approx(0.0125)
