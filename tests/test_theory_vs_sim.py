"""Property tests (hypothesis, float64): measured norm dynamics against docs/theory.md §4–§8.

Each example draws a small hierarchical task (size, dimension, temperature) and η, λ inside
docs/theory.md §11's regime, trains it, measures the source energy ``pW²`` with
:func:`normflow.source_energy`, and compares with :mod:`normflow.theory`.

Why the tolerances are what they are (docs/theory.md §11, plus sampling):
- the formulas are for the *expected* norm; a single run fluctuates around it. At equilibrium
  R⁴ fluctuates with relative size ~ sqrt(2ηλκ) (κ = Var|s|²/(E|s|²)² ≈ 2) and correlation time
  1/(4ηλ) steps, so a time average over M relaxation times has relative error ~ sqrt(2ηλκ/M)/4
  in R. With ηλ ≤ 1.5e-3 and M ≥ 12 that is ≤ 0.6 %;
- pW² is estimated from ≥ 3500 minibatches (≥ 7 checkpoints × 512): relative error ≤ 2 % in pW², ≤ 0.5 % in R;
- O(ηλ) and O(ε²) terms that the formulas drop are ≤ 0.2 % here.
Summed (max over concepts ≈ 2.5 σ) this fits the issue's 3 % (SGD), 5 % (momentum, whose
larger effective step η/(1-β) enlarges the fluctuations by 1/sqrt(1-β)) and 15 % (AdamW, whose
equilibrium is itself an approximation: each coordinate moves ~η per step).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import normflow as nf
from normflow import theory as th

PROFILE = settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                   phases=[Phase.explicit, Phase.generate])  # no shrinking: each example trains a model
B = 16


def _task(branching, dim, temperature, seed=0):
    return nf.HierarchicalTask(depth=2, branching=branching, dim=dim, key=jax.random.key(seed),
                               temperature=temperature, dtype=jnp.float64)


def _equilibrium_run(task, opt, lr, wd, relax, predict, *, momentum=0.9, window=12, seed=1, se_batches=512):
    """Equilibrium norms, measured without waiting for R to crawl from its initial value.

    Phase 1 (3 relaxation times from the default init) lets the directions settle; its final
    pW² gives a first guess R_guess = predict(pW²), to which every row is rescaled (directions
    kept). Phase 2 runs 4 relaxation times of burn-in — leaving e^{-4} ≈ 2 % of any offset of
    R⁴ between the guess and the true equilibrium, so a wrong formula is not pulled toward
    agreement by more than that — then ``window`` relaxation times over which it returns the
    time-averaged (E R⁴)^{1/4} and pW² averaged over ≥ 4 checkpoints of 512 minibatches."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    n1 = int(np.ceil(3 * relax))
    # (the same number of saves and chunks in both phases: one compiled program per task shape)
    first = nf.train(task, opt, lr=lr, weight_decay=wd, steps=n1, batch_size=B, key=k1, momentum=momentum,
                     save_steps=np.linspace(0, n1, SAVES + 1).astype(int), chunks=CHUNKS)
    se = nf.source_energy(first.model, task, key=jax.random.key(seed + 7), batch_size=B, num_batches=se_batches)
    model = rescale_rows(first.model, jnp.broadcast_to(jnp.asarray(predict(np.asarray(se.pw2))), (task.num_concepts,)))
    steps = int(np.ceil((window + 4) * relax / 16) * 16)
    start = steps - int(window * relax)
    saves = np.linspace(start, steps, SAVES).astype(int)
    ses = []

    def cb(step, m):
        if step >= start:
            ses.append(np.asarray(nf.source_energy(m, task, key=jax.random.key(step), batch_size=B,
                                                   num_batches=se_batches).pw2))

    run = nf.train(task, opt, lr=lr, weight_decay=wd, steps=steps, batch_size=B, key=k2, model=model,
                   save_steps=saves, chunks=CHUNKS, callback=cb, momentum=momentum)
    assert int(run.diverged_step) == -1
    s = np.asarray(run.steps)
    r = np.asarray(run.norms)[s >= start]
    assert len(ses) >= 7
    return np.mean(r**4, axis=0) ** 0.25, np.mean(ses, axis=0), run


def rescale_rows(model, norms):
    """The free table with each row rescaled to the given norm (directions kept)."""
    w = model.weight
    w = w / jnp.linalg.norm(w, axis=-1, keepdims=True) * norms[:, None]
    return eqx.tree_at(lambda m: m.weight, model, w)


# Task shapes come from a small set so that compiled programs are shared between examples and
# tests (temperature, η and λ are traced values: drawing them costs no compile).
tasks = st.tuples(st.sampled_from([(2, 8), (3, 16)]), st.floats(0.1, 0.5)).map(lambda t: (*t[0], t[1]))
SAVES, CHUNKS = 128, 32  # the same recording layout everywhere: one compiled program per task shape


@PROFILE
@given(spec=tasks, lr=st.floats(0.1, 0.5), eta_lam=st.floats(5e-4, 1.5e-3))
def test_sgd_weight_decay_equilibrium(spec, lr, eta_lam):
    """docs/theory.md §6: R* = (ηpW²/(λ(2-ηλ)))^{1/4} per concept, within 3 %."""
    task = _task(*spec)
    wd = eta_lam / lr
    def predict(pw2):
        return th.sgd_wd_equilibrium(pw2, lr, wd, discrete=True)

    r, pw2, _ = _equilibrium_run(task, "sgd", lr, wd, 1 / (4 * eta_lam), predict)
    pred = np.asarray(predict(pw2))
    err = np.abs(r / pred - 1)
    assert err.max() < 0.03, (err.max(), r, pred)


@PROFILE
@given(spec=tasks, lr_eff=st.floats(0.1, 0.5), eta_lam=st.floats(5e-4, 1.5e-3), beta=st.floats(0.5, 0.9))
def test_momentum_sgd_equilibrium(spec, lr_eff, eta_lam, beta):
    """docs/theory.md §7 (decay added to the gradient before the momentum): R*⁴ = ηpW²/(2λ(1-β)), within 5 %."""
    task = _task(*spec)
    lr = lr_eff * (1 - beta)
    wd = eta_lam / lr_eff
    def predict(pw2):
        return th.momentum_equilibrium(pw2, lr, wd, beta)

    r, pw2, _ = _equilibrium_run(task, "sgdm", lr, wd, 1 / (4 * eta_lam), predict, momentum=beta)
    pred = np.asarray(predict(pw2))
    err = np.abs(r / pred - 1)
    assert err.max() < 0.05, (err.max(), r, pred)


@PROFILE
@given(temperature=st.floats(0.1, 0.5), dim=st.sampled_from([16, 32]), lr=st.floats(3e-3, 2e-2),
       eta_lam=st.floats(5e-4, 1e-3))
def test_adamw_frequent_concepts_equilibrium(temperature, dim, lr, eta_lam):
    """docs/theory.md §8: R* = sqrt(ηd/(2λ)) for concepts with p ≫ 1-β₂, within 15 %."""
    task = _task(3, dim, temperature)
    p = np.asarray(task.frequency(B))
    assert p.min() > 100 * (1 - 0.999)  # the frequent regime
    wd = eta_lam / lr
    pred = float(th.adamw_equilibrium(lr, wd, dim))
    r, _, _ = _equilibrium_run(task, "adamw", lr, wd, 1 / (2 * eta_lam), lambda pw2: pred, window=10, se_batches=8)
    err = np.abs(r / pred - 1)
    assert err.max() < 0.15, (err.max(), r, pred)


@PROFILE
@given(spec=tasks, lr=st.floats(0.08, 0.15))
def test_sgd_imprint_without_decay(spec, lr):
    """docs/theory.md §5: R⁴(T) - R₀⁴ = 2η Σ_k η pW²_k along the recorded path of pW², within 2 % for
    the total over concepts; per concept within 2 % plus 3 standard deviations of the two noises
    of the comparison, both measured by ``source_energy``: the realized sum's sampling noise
    sqrt(Σ_k Var|s_k|²)/Σ_k pW²_k (a leaf's per-step energy is heavy-tailed, so one run's sum
    can sit ~10 % from its expectation), and the error of the predicted sum itself, which is
    built from pW² estimated at 32 checkpoints from 512 minibatches each (relative error
    sqrt(Var|s|²/512)/pW² per checkpoint, up to ~8 % for a leaf), propagated through the
    interpolation of the path."""
    task = _task(*spec)
    steps = 8000
    ks, pws, evs = [], [], []

    def cb(step, model):
        se = nf.source_energy(model, task, key=jax.random.key(step), batch_size=B, num_batches=512)
        ks.append(step)
        pws.append(np.asarray(se.pw2))
        evs.append(np.asarray(se.energy_var))

    # Burn-in: let the directions leave their random start (where the mean source is ~10× its
    # later value and changes within a few steps, outside docs/theory.md §11's slowly-varying-W² regime),
    # then reset every norm to 1 and measure the imprint from there.
    k1, k2 = jax.random.split(jax.random.key(3))
    burn = nf.train(task, "sgd", lr=lr, steps=300, batch_size=B, key=k1, save_steps=2)
    start = rescale_rows(burn.model, jnp.ones(task.num_concepts))
    run = nf.train(task, "sgd", lr=lr, steps=steps, batch_size=B, key=k2, model=start,
                   save_steps=np.geomspace(1, steps, SAVES).astype(int), chunks=CHUNKS, callback=cb)
    # per-step path of pW², geometric between the measured checkpoints (log-spaced in step):
    # pW² decays roughly exponentially at first, which linear interpolation would overestimate
    grid = np.arange(steps)
    # interp_w[j, k]: weight of checkpoint j in the (log-)interpolated value at step k
    interp_w = np.stack([np.interp(grid, ks, np.eye(len(ks))[j]) for j in range(len(ks))])
    logp, logv = np.log(np.asarray(pws)), np.log(np.asarray(evs))
    path = np.exp(interp_w.T @ logp)  # [steps, N]
    var_path = np.exp(interp_w.T @ logv)
    r0, rt = np.asarray(run.norms[0]), np.asarray(run.norms[-1])
    pred = np.asarray(th.sgd_imprint(jnp.asarray(r0), jnp.asarray(path), lr))
    grew = rt**4 - r0**4
    expect = pred**4 - r0**4
    assert np.all(grew > 0.05 * r0**4)  # the imprint is large, not a rounding effect
    assert abs(grew.sum() / expect.sum() - 1) < 0.02, (grew.sum(), expect.sum())
    total = path.sum(axis=0)
    sigma_run = np.sqrt(var_path.sum(axis=0)) / total  # relative sampling std of the realized sum
    # relative std of the predicted sum: d(Σ_k path_k)/d(log pW²_j) = Σ_k interp_w[j,k]·path_k
    var_log_pw = np.asarray(evs) / (512 * np.asarray(pws) ** 2)
    sigma_pred = np.sqrt(np.sum((interp_w @ path) ** 2 * var_log_pw, axis=0)) / total
    sigma = np.hypot(sigma_run, sigma_pred)
    assert np.all(np.abs(grew / expect - 1) < 0.02 + 3 * sigma), (grew / expect, sigma_run, sigma_pred)
    assert sigma.max() < 0.05  # the allowance stays small (≤ 17 %)


@PROFILE
@given(spec=tasks, eps=st.floats(0.005, 0.05))
def test_modified_flow_matches_gd_when_angular_step_small(spec, eps):
    """docs/theory.md §4: the modified flow reproduces GD's norms within 1 % while ε = η|s|/R² ≤ 0.05."""
    task = _task(*spec)
    key = jax.random.key(5)
    model = nf.default_model(task, jax.random.split(key)[0])
    data = nf.full_batch(task, jax.random.fold_in(jax.random.split(key)[1], 2**31 - 1), 64)
    g = nf.measure.embedding_gradients(model, task, data)
    s_max = float(jnp.max(jnp.linalg.norm(g, axis=-1)))  # |s| at R = 1
    lr = eps / s_max
    steps = 400
    run = nf.train(task, "gd", lr=lr, steps=steps, key=key, n_full=64, save_steps=20)
    flow = nf.modified_flow(task, lr, lr * steps, key=key, n_samples=64, ts=np.asarray(run.times))
    err = np.max(np.abs(np.asarray(flow.norms) / np.asarray(run.norms) - 1))
    assert err < 0.01, err
    assert float(jnp.max(run.norms[-1] - run.norms[0])) > 0  # GD's norms did grow


def test_modified_flow_breaks_at_large_angular_step():
    """The same comparison at ε ≈ 1 misses by more than 1 % (docs/theory.md §4: 'it visibly fails')."""
    task = _task(3, 8, 0.2)
    key = jax.random.key(5)
    model = nf.default_model(task, jax.random.split(key)[0])
    data = nf.full_batch(task, jax.random.fold_in(jax.random.split(key)[1], 2**31 - 1), 64)
    s_max = float(jnp.max(jnp.linalg.norm(nf.measure.embedding_gradients(model, task, data), axis=-1)))
    lr = 1.0 / s_max
    run = nf.train(task, "gd", lr=lr, steps=400, key=key, n_full=64, save_steps=20)
    flow = nf.modified_flow(task, lr, lr * 400, key=key, n_samples=64, ts=np.asarray(run.times))
    assert np.max(np.abs(np.asarray(flow.norms) / np.asarray(run.norms) - 1)) > 0.01


@PROFILE
@given(spec=tasks, lr=st.floats(0.1, 0.5), eta_lam=st.floats(5e-4, 1.5e-3), scale=st.sampled_from([0.7, 2.5]))
def test_relaxation_follows_closed_form(spec, lr, eta_lam, scale):
    """docs/theory.md §6: from R₀ = scale·R* (directions already at equilibrium, so pW² is constant),
    R⁴(t) = e^{-4λt}R₀⁴ + R*⁴(1 - e^{-4λt}) within 5 % at t = ½, 1 and 2 relaxation times.

    Each concept's R⁴ is averaged over 8 independent continuations (different minibatch keys)
    of the same start, so the comparison is with the expected norm the formula describes.
    Starting far *below* equilibrium leaves §11's regime: at R₀ = 0.3R* the angular step is
    11× its equilibrium value (ε₀ ≈ 0.5) and the closed form misses by ~9 %; so scale ∈ {0.7, 2.5}."""
    task = _task(*spec)
    wd = eta_lam / lr
    relax = 1 / (4 * eta_lam)
    def predict(pw2):
        return th.sgd_wd_equilibrium(pw2, lr, wd, discrete=True)

    _, pw2, run = _equilibrium_run(task, "sgd", lr, wd, relax, predict, window=4)
    r_star = np.asarray(predict(pw2))
    start = rescale_rows(run.model, jnp.asarray(scale * r_star))
    times = np.array([0.5, 1.0, 2.0]) * relax
    saves = np.unique(np.round(times).astype(int))
    steps = int(saves[-1])
    layout = np.unique(np.concatenate([np.linspace(0, steps, SAVES - 2).astype(int), saves]))
    r4 = []
    for seed in range(8):
        rr = nf.train(task, "sgd", lr=lr, weight_decay=wd, steps=steps, batch_size=B, key=jax.random.key(100 + seed),
                      model=start, save_steps=layout, chunks=CHUNKS)
        sel = np.isin(np.asarray(rr.steps), saves)
        r4.append(np.asarray(rr.norms)[sel] ** 4)
    r_meas = np.mean(r4, axis=0) ** 0.25  # [3, N]
    r0 = scale * r_star
    pred = np.stack([np.asarray(th.sgd_wd_relaxation(r0, pw2, lr, wd, int(k))) for k in saves])
    err = np.abs(r_meas / pred - 1)
    assert err.max() < 0.05, (err.max(), r_meas, pred)
    # the test has teeth: the norm moved far from its start
    assert np.min(np.abs(r_meas[-1] / r0 - 1)) > 0.15

