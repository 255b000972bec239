"""Tests of docs/theory.md §12 (Lion with decoupled decay): the engine against a direct NumPy Lion,
the sign-persistence factor γ against direct NumPy simulations of Lion's scalar sign process, and
R*² = ηdγ/(λ(2-ηλ)) against a NumPy simulation of a reduced model (rows driven by tangent
Gaussian kicks). Every expected value is computed here, never copied from the code under test."""

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import normflow as nf  # noqa: E402
from normflow import theory  # noqa: E402
from normflow.losses import get_loss  # noqa: E402
from normflow.theory._lion import lion_equilibrium, lion_gamma, lion_sign_correlation  # noqa: E402
from normflow.train import default_model  # noqa: E402


def _sign_process(p, b1, b2, steps, chains, seed):
    """Lion's per-coordinate sign ``u_t = sign(β₁m + (1-β₁)g_t)``, ``m ← β₂m + (1-β₂)g_t``, with
    ``g_t = χ_t ξ_t`` (χ ~ Bernoulli(p), ξ ~ N(0,1)), ``[steps, chains]``, m started stationary-ish
    (a burn-in of 20/(1-β₂) steps is dropped)."""
    rng = np.random.default_rng(seed)
    burn = int(20 / (1 - b2))
    m = np.zeros(chains)
    out = np.empty((steps, chains))
    for t in range(burn + steps):
        g = (rng.random(chains) < p) * rng.standard_normal(chains)
        c = b1 * m + (1 - b1) * g
        if t >= burn:
            out[t - burn] = np.sign(c)
        m = b2 * m + (1 - b2) * g
    return out


def _autocorr(u, max_lag):
    """Per-chain autocorrelation ``C(τ)``, τ = 0…max_lag, ``[max_lag+1, chains]`` (FFT, unbiased)."""
    n = u.shape[0]
    f = np.fft.rfft(u, n=2 * n, axis=0)
    ac = np.fft.irfft(np.abs(f) ** 2, axis=0)[: max_lag + 1]
    return ac / (n - np.arange(max_lag + 1))[:, None]


# ---------------------------------------------------------------- the engine is Lion


def test_train_lion_equals_numpy_lion_with_decoupled_decay():
    """nf.train(task, "lion") = x' = (1-ηλ)x - η sign(β₁m + (1-β₁)g), m ← β₂m + (1-β₂)g (float64)."""
    task = nf.HierarchicalTask(depth=2, branching=2, dim=4, key=jax.random.key(1), dtype=jnp.float64)
    lr, wd, b1, b2, steps, batch = 0.05, 0.3, 0.9, 0.99, 6, 8
    key = jax.random.key(7)
    run = nf.train(task, "lion", lr=lr, weight_decay=wd, steps=steps, batch_size=batch, key=key, b1=b1, b2=b2,
                   save_steps=np.arange(steps + 1))
    k_model, k_data = jax.random.split(key)
    w = np.asarray(default_model(task, k_model).weight, np.float64)
    loss = get_loss("info_nce")

    @jax.jit
    def grad(x, k):  # minibatch k exactly as nf.train draws it, and the gradient of the loss there
        b = task.sample(jax.random.fold_in(k_data, k), batch)
        return jax.grad(lambda y: loss(y[b.concepts], b.contexts, task.temperature))(x)

    m = np.zeros_like(w)
    norms = [np.linalg.norm(w, axis=-1)]
    for k in range(steps):
        g = np.asarray(grad(jnp.asarray(w), k))
        u = np.sign(b1 * m + (1 - b1) * g)
        w = (1 - lr * wd) * w - lr * u
        m = b2 * m + (1 - b2) * g
        norms.append(np.linalg.norm(w, axis=-1))
    np.testing.assert_allclose(np.asarray(run.model.weight), w, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(run.norms), np.array(norms), rtol=1e-12)


# ---------------------------------------------------------------- γ: the sign process


@settings(max_examples=4, deadline=None)
@given(b1=st.floats(0.5, 0.95), b2=st.floats(0.8, 0.95))
def test_sign_correlation_at_p_1_is_the_gaussian_arcsin(b1, b2):
    """With a kick every step (p = 1) the sign process is exactly Gaussian and C(τ) = (2/π) arcsin ρ(τ)
    has no approximation: it must match the simulation within its standard error."""
    u = _sign_process(1.0, b1, b2, steps=4000, chains=400, seed=int(1e4 * b1 + 1e2 * b2))
    lags = np.array([1, 2, 5, 10, 20])
    ac = _autocorr(u, lags.max())[lags]  # [lags, chains]
    sim, se = ac.mean(1), ac.std(1, ddof=1) / np.sqrt(ac.shape[1])
    c = np.asarray(lion_sign_correlation(1.0, b1, b2, max_lag=lags.max()))[lags - 1]
    assert np.all(np.abs(c - sim) <= 4 * se + 1e-3), (c, sim, se)


@settings(max_examples=4, deadline=None)
@given(p=st.floats(0.3, 1.0), b2=st.sampled_from([0.9, 0.95, 0.97]))
def test_gamma_matches_the_sparse_sign_process(p, b2):
    """γ = 1 + 2ΣC(τ) against the simulated sparse process. The formula replaces Var m by its mean over
    the presence pattern, an error second order in its relative fluctuation 1/sqrt(N_m),
    N_m = p(1+β₂)/(1-β₂): tolerance 1/N_m plus 4 standard errors of the simulation."""
    b1 = 0.9
    lag = int(np.ceil(40 / (1 - b2)))
    u = _sign_process(p, b1, b2, steps=20 * lag, chains=128, seed=int(1e3 * p + 1e3 * b2))
    ac = _autocorr(u, lag)
    g_chain = ac[0] + 2 * ac[1:].sum(0)
    sim, se = g_chain.mean(), g_chain.std(ddof=1) / np.sqrt(len(g_chain))
    g = float(lion_gamma(p, b1, b2))
    tol = (1 - b2) / (p * (1 + b2)) * sim + 4 * se
    assert abs(g - sim) <= tol, (g, sim, se, tol)


def test_gamma_with_heavy_tailed_kicks_matches_the_simulated_scale_mixture():
    """kick_m2: a present kick is N(0, w) with w ~ Gamma, E w = 1, E w² = kick_m2. Same error terms as
    the Gaussian case (1/N_m), plus the 32-node quadrature of w (below 1e-3 here)."""
    p, b1, b2, m2 = 0.6, 0.9, 0.95, 3.0
    shape = 1 / (m2 - 1)
    rng = np.random.default_rng(11)
    lag, chains = int(np.ceil(40 / (1 - b2))), 128
    steps, burn = 20 * lag, int(20 / (1 - b2))
    m = np.zeros(chains)
    u = np.empty((steps, chains))
    for t in range(burn + steps):
        w = rng.gamma(shape, 1 / shape, chains)
        g = (rng.random(chains) < p) * np.sqrt(w) * rng.standard_normal(chains)
        if t >= burn:
            u[t - burn] = np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
    ac = _autocorr(u, lag)
    g_chain = ac[0] + 2 * ac[1:].sum(0)
    sim, se = g_chain.mean(), g_chain.std(ddof=1) / np.sqrt(chains)
    g = float(lion_gamma(p, b1, b2, kick_m2=m2))
    assert g > float(lion_gamma(p, b1, b2))  # heavier tails persist longer
    assert abs(g - sim) <= (1 - b2) / (p * (1 + b2)) * sim + 4 * se, (g, sim, se)


def test_gamma_grows_with_the_memory_and_falls_with_the_sighting_rate():
    """γ increases with β₂ (longer memory of m) and decreases with p (each sighting refreshes the
    sign through the (1-β₁)g term); γ > 1 (positive correlations)."""
    g_b2 = np.asarray([float(lion_gamma(0.5, 0.9, b2)) for b2 in (0.9, 0.99, 0.999)])
    g_p = np.asarray(lion_gamma(np.array([0.1, 0.3, 0.6, 1.0]), 0.9, 0.99))
    assert np.all(g_b2 > 1) and np.all(np.diff(g_b2) > 0) and np.all(np.diff(g_p) < 0)


# ---------------------------------------------------------------- R*: a reduced model


def test_equilibrium_norm_of_rows_kicked_by_tangent_noise():
    """d-dimensional rows with a scale-invariant 'loss' whose gradient is pure noise, g = χ P ξ/R
    (P the tangent projector at x, ξ ~ N(0, I)), stepped by Lion with decoupled decay: the
    time-averaged R² matches η²dγ/(1-(1-ηλ)²). Error terms of the derivation: the decay within the
    sign memory, ηλ/(1-β₂); the Var-m approximation, 1/N_m; the tangent projection removes one of
    d directions from the kicks, 1/d; plus 4 standard errors (rows are independent)."""
    d, rows, p, b1, b2, lr, wd = 16, 48, 0.6, 0.9, 0.95, 2e-3, 0.5
    rng = np.random.default_rng(5)
    x = rng.standard_normal((rows, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = np.zeros_like(x)
    relax = int(1 / (2 * lr * wd))
    burn, keep = 8 * relax, 8000
    r2 = np.zeros(rows)
    for t in range(burn + keep):
        r = np.linalg.norm(x, axis=1, keepdims=True)
        xi = rng.standard_normal((rows, d))
        xh = x / r
        g = (rng.random((rows, 1)) < p) * (xi - np.sum(xi * xh, 1, keepdims=True) * xh) / r
        u = np.sign(b1 * m + (1 - b1) * g)
        x = (1 - lr * wd) * x - lr * u
        m = b2 * m + (1 - b2) * g
        if t >= burn:
            r2 += np.sum(x * x, 1) / keep
    r_star = float(lion_equilibrium(p, d, lr, wd, b1, b2))
    se = r2.std(ddof=1) / np.sqrt(rows) / r2.mean()
    tol = lr * wd / (1 - b2) + (1 - b2) / (p * (1 + b2)) + 1 / d + 4 * se
    assert abs(r2.mean() / r_star**2 - 1) <= tol, (r2.mean(), r_star**2, tol)


def test_predict_lion_relaxes_to_the_equilibrium_and_its_rotation():
    """predict('lion') runs R²_{k+1} = (1-ηλ)²R²_k + η²dγ(p̄) to R*, and θ = η sqrt(d-1)/R there."""
    total, d, lr, wd, b1, b2 = 30_000, 16, 1e-3, 0.5, 0.9, 0.99
    p = np.array([[0.3, 0.5, 0.9], [0.3, 0.5, 0.9]])
    ctx = theory.Context(steps=np.array([0, total]), r0=np.array([0.5, 1.0, 3.0]), stat_steps=np.array([0, total]),
                         p=p, pw2=0.1 * p, mean_sq=np.zeros_like(p), var=np.full_like(p, 0.1), dim=d, lr=lr,
                         weight_decay=wd, total_steps=total, b1=b1, b2=b2)
    pred = theory.predict("lion", ctx)
    r_star = np.asarray(lion_equilibrium(p[0], d, lr, wd, b1, b2))
    np.testing.assert_allclose(pred.norms[-1], r_star, rtol=1e-8)
    np.testing.assert_allclose(pred.angular_update, lr * np.sqrt(d - 1) / r_star, rtol=1e-6)
    assert pred.equilibrium and pred.section == "docs/theory.md §12"
