"""Continuous-time engines with Diffrax (docs/theory.md §3, §4, §5).

Time convention: ``t = η · step``, so a flow integrated to ``t1`` corresponds to ``t1/η``
steps of an optimizer with learning rate ``η``.

- :func:`gradient_flow`: ``dθ/dt = -∇L(θ) - λθ`` on a fixed sample set (docs/theory.md §3).
- :func:`modified_flow`: GD's modified flow ``dx/dt = -∇L + (η/2)(|∇_x L|²/R²) x - λx`` per
  concept (docs/theory.md §4), free table only.
- :func:`sde_flow`: SGD as an Itô SDE, ``dθ = -(ḡ + λθ) dt + √η Σ^{1/2} dW`` (docs/theory.md §5), with
  ``Σ`` the covariance of the gradient over a pool of K minibatches (state dependent, rank K).

All return a :class:`~normflow.trajectory.Trajectory` with ``steps=None``; its ``radial``,
``angular`` and ``update_sq`` hold the continuous ``u = -(dx/dt) - λx`` at the saved states
(for the SDE: of the drift only).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import PRNGKeyArray

from .losses import get_loss
from .measure import split_update
from .models import EmbeddingTable
from .train import default_model, full_batch_of
from .trajectory import Trajectory

__all__ = ["gradient_flow", "gradient_flow_solution", "modified_flow", "sde_flow", "log_times"]


def log_times(t1: float, num: int = 64, t_min: float | None = None) -> np.ndarray:
    """``0`` followed by ``num-1`` log-spaced times up to ``t1`` (first at ``t_min``, default ``t1·1e-3``)."""
    if not t1 > 0:
        raise ValueError(f"t1 must be > 0, got {t1}")
    t_min = t1 * 1e-3 if t_min is None else t_min
    return np.concatenate([[0.0], np.geomspace(t_min, t1, num - 1)])


def _setup(task, key, model, loss, n_samples):
    k_model, k_data = jax.random.split(key)
    if model is None:
        model = default_model(task, k_model)
    data = full_batch_of(task, k_data, n_samples)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return model, data, params, static, get_loss(loss)


def _loss_of(p, static, task, batch, loss_fn):
    return task.loss(eqx.combine(p, static), batch, loss_fn)


def _concepts_of(p, static):
    return eqx.combine(p, static).concept_embeddings()


def _record(ts, ys, velocity, concepts_of, loss_at, weight_decay) -> Trajectory:
    """Per-concept norms and the continuous u = -(dx/dt) - λx at each saved state."""

    def one(p):
        x, dx = jax.jvp(concepts_of, (p,), (velocity(p),))
        u_r, ang, u_sq = split_update(x, -dx - weight_decay * x)
        return jnp.sqrt(jnp.sum(x * x, axis=-1)), u_r, ang, u_sq, loss_at(p)

    r, u_r, ang, u_sq, loss = jax.lax.map(one, ys)
    bad = ~jnp.isfinite(r)
    any_bad = jnp.any(bad)
    first_save = jnp.argmax(jnp.any(bad, axis=1))
    return Trajectory(
        steps=None, times=jnp.asarray(ts, r.dtype), norms=r, radial=u_r, angular=ang, update_sq=u_sq, loss=loss,
        diverged_step=jnp.where(any_bad, first_save, -1).astype(jnp.int32),
        diverged_concept=jnp.where(any_bad, jnp.argmax(bad[first_save]), -1).astype(jnp.int32),
    )


@eqx.filter_jit
def _flow_solve(params, static, task, data, loss_fn, lam, lr, ts, rtol, atol, max_steps, solver, modified):
    """One compiled program per (model structure, loss, solver, tolerances, modified?): the
    data, λ, η and save times are traced, so repeated calls do not recompile."""

    def velocity(p):
        g = jax.grad(_loss_of)(p, static, task, data, loss_fn)
        if not modified:
            return jax.tree_util.tree_map(lambda gi, pi: -gi - lam * pi, g, p)
        x, gx = p.weight, g.weight
        coef = 0.5 * lr * jnp.sum(gx * gx, axis=-1, keepdims=True) / jnp.sum(x * x, axis=-1, keepdims=True)
        return eqx.tree_at(lambda m: m.weight, p, -gx + coef * x - lam * x)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: velocity(y)), solver, t0=ts[0], t1=ts[-1], dt0=None, y0=params,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,  # the caller turns a failed solve into a one-line error
    )
    traj = _record(ts, sol.ys, velocity, lambda p: _concepts_of(p, static),
                   lambda p: _loss_of(p, static, task, data, loss_fn), lam)
    return traj, sol


def _run_flow(task, key, model, loss, n_samples, ts, lam, lr, rtol, atol, max_steps, solver, modified):
    model, data, params, static, loss_fn = _setup(task, key, model, loss, n_samples)
    if modified and not isinstance(model, EmbeddingTable):
        raise ValueError(f"modified_flow needs the free EmbeddingTable, got {type(model).__name__}")
    dtype = task.dtype
    ts = jnp.asarray(ts, dtype)
    traj, sol = _flow_solve(params, static, task, data, loss_fn, jnp.asarray(lam, dtype), jnp.asarray(lr, dtype),
                            ts, rtol, atol, max_steps, solver, modified)
    if not bool(sol.result == diffrax.RESULTS.successful):
        what = "modified flow" if modified else "gradient flow"
        reached = int(sol.stats["num_accepted_steps"]) if "num_accepted_steps" in sol.stats else -1
        why = "hit its step limit" if reached >= max_steps or sol.result == diffrax.RESULTS.max_steps_reached else "failed"
        raise ValueError(f"the {what} ODE {why} (max_steps={max_steps}, {reached} accepted steps) before t = "
                         f"{float(ts[-1]):g}" + (f" with lr={float(lr):g}: the flow is stiff or blows up there"
                                                 if modified else ""))
    last = jax.tree_util.tree_map(lambda y: y[-1], sol.ys)
    return dataclasses.replace(traj, model=eqx.combine(last, static)), sol


def gradient_flow(task, t1: float, *, key: PRNGKeyArray, model=None, loss="info_nce", weight_decay: float = 0.0,
                  n_samples: int = 512, ts=None, rtol: float = 1e-6, atol: float = 1e-8, max_steps: int = 100_000,
                  solver: diffrax.AbstractSolver | None = None) -> Trajectory:
    """Full-batch gradient flow ``dθ/dt = -∇L(θ) - λθ`` (docs/theory.md §3), adaptive Diffrax solve.

    For the free table ``∇L ⊥ x`` row by row, so ``R(t) = R₀ e^{-λt}`` exactly: the solve
    conserves each norm (λ=0) to the solver's tolerance. The data are the fixed set of
    ``n_samples`` samples that ``train(..., "gd", n_full=n_samples)`` uses for the same key,
    and the initial model is the same too.

    ``ts``: save times (default :func:`log_times`); ``solver`` default ``Tsit5``. Use
    :func:`gradient_flow_solution` to also get Diffrax's solver statistics.
    """
    return gradient_flow_solution(task, t1, key=key, model=model, loss=loss, weight_decay=weight_decay,
                                  n_samples=n_samples, ts=ts, rtol=rtol, atol=atol, max_steps=max_steps, solver=solver)[0]


def gradient_flow_solution(task, t1, *, key, model=None, loss="info_nce", weight_decay=0.0, n_samples=512, ts=None,
                           rtol=1e-6, atol=1e-8, max_steps=100_000, solver=None):
    """Like :func:`gradient_flow` but returns ``(trajectory, solution)``: the Diffrax solution,
    whose ``stats`` hold ``num_steps``, ``num_accepted_steps``, ``num_rejected_steps``."""
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    ts = log_times(t1) if ts is None else np.asarray(ts, dtype=float)
    solver = diffrax.Tsit5() if solver is None else solver
    return _run_flow(task, key, model, loss, n_samples, ts, weight_decay, 0.0, rtol, atol, max_steps, solver, False)


def modified_flow(task, lr: float, t1: float, *, key: PRNGKeyArray, model=None, loss="info_nce",
                  weight_decay: float = 0.0, n_samples: int = 512, ts=None, rtol: float = 1e-8, atol: float = 1e-10,
                  max_steps: int = 100_000) -> Trajectory:
    """GD's modified flow (docs/theory.md §4): per concept row ``x``,

        dx/dt = -∇ₓL + (η/2) (|∇ₓL|² / R²) x - λx,

    which gives ``dR²/dt = η|∇ₓL|² - 2λR²`` (GD: ``R'² = R² + η²|g|²`` per step of length
    ``η``) and, since ``|∇ₓL| ∝ 1/R``, slows the angular motion as R grows. It matches GD to
    ``O(η²)`` while the angular step ``ε = η|s|/R²`` is small. Free table only. With decay the
    ``O(ηλ²)`` term of ``(1-ηλ)²`` is dropped.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    ts = log_times(t1) if ts is None else np.asarray(ts, dtype=float)
    return _run_flow(task, key, model, loss, n_samples, ts, weight_decay, lr, rtol, atol, max_steps, diffrax.Tsit5(),
                     True)[0]


def _sde_pool(task, key: PRNGKeyArray, batch_size: int, pool: int):
    """The SDE's fixed pool of ``pool`` minibatches of ``batch_size`` samples (a ``Batch`` with a
    leading ``[pool]`` axis), drawn from ``key`` (docs/theory.md §5; :func:`sde_flow`'s pool)."""
    return jax.vmap(lambda k: task.sample(k, batch_size))(jax.random.split(key, pool))


class _SDETerms(NamedTuple):
    """docs/theory.md §5's SDE on the flat parameter vector (see :func:`_sde_terms`)."""

    loss_of: Callable  # (params, batch) -> loss of one minibatch
    pool_grads: Callable  # flat [P] -> the K pool gradients [K, P]
    drift: Callable  # (flat [P], pool_grads [K, P]) -> drift [P]
    diffusion: Callable  # pool_grads [K, P] -> diffusion matrix [P, K] (multiplies dW ∈ R^K)


def _sde_terms(task, static, unravel, pool_batches, loss_fn, lr, lam, mod_shape) -> _SDETerms:
    """The one definition of the SGD SDE (docs/theory.md §5) that :func:`sde_flow` and
    :mod:`normflow.sde` integrate: with ``g_k`` the gradient on pool minibatch k and ``ḡ`` their
    mean, drift ``-(ḡ + λθ) [+ (η/2)(|ḡ_x|²/R²) x]`` and diffusion ``√(η/K) [g_1-ḡ, …, g_K-ḡ]``.

    ``mod_shape``: ``None`` (no modified drift), or the free table's ``(N, d)`` (the flat vector is
    its rows: the modified drift of docs/theory.md §4). ``lr`` and ``lam`` may be traced.
    """
    pool = pool_batches.concepts.shape[0]

    def loss_of(p, batch):
        return task.loss(eqx.combine(p, static), batch, loss_fn)

    def pool_grads(flat):
        p = unravel(flat)
        return jax.vmap(lambda b: ravel_pytree(jax.grad(loss_of)(p, b))[0])(pool_batches)  # [K, P]

    def drift(flat, gs):
        gbar = jnp.mean(gs, axis=0)
        v = -gbar - lam * flat
        if mod_shape is not None:
            n, d = mod_shape
            x = flat.reshape(n, d)
            gx = gbar.reshape(n, d)
            coef = 0.5 * lr * jnp.sum(gx * gx, -1, keepdims=True) / jnp.sum(x * x, -1, keepdims=True)
            v = v + (coef * x).reshape(-1)
        return v

    def diffusion(gs):
        return jnp.sqrt(lr / pool) * (gs - jnp.mean(gs, axis=0)).T  # [P, K]

    return _SDETerms(loss_of, pool_grads, drift, diffusion)


def sde_flow(task, lr: float, t1: float, *, key: PRNGKeyArray, model=None, loss="info_nce", weight_decay: float = 0.0,
             batch_size: int = 64, pool: int = 32, dt: float | None = None, ts=None, modified_drift: bool = True
) -> Trajectory:
    """SGD as an Itô SDE (docs/theory.md §5), solved by Euler–Maruyama on a ``VirtualBrownianTree``.

    The "data distribution" is a fixed pool of ``pool`` minibatches of ``batch_size`` samples.
    With ``g_k`` the gradient on minibatch k and ``ḡ`` their mean,

        dθ = -(ḡ + λθ) dt [+ (η/2)(|ḡ_x|²/R²) x dt]  +  √(η/K) [g_1-ḡ, …, g_K-ḡ] dW,   dW ∈ R^K,

    so the diffusion's covariance is ``η Σ`` with ``Σ`` the pool covariance of the gradient —
    SGD that picks one pool minibatch per step has exactly this mean and covariance. Itô's
    correction then gives ``dR²/dt = η tr Σ_x`` per concept (docs/theory.md §5's ``ηV²/R²``); the
    optional modified drift (docs/theory.md §4, free table) adds the mean part ``η|ḡ_x|²`` so that
    ``dR²/dt = η W²/R²`` as in §5. ``dt`` defaults to ``lr`` (one SGD step per solver step).
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    k_model, k_pool, k_bm = jax.random.split(key, 3)
    if model is None:
        model = default_model(task, k_model)
    loss_fn = get_loss(loss)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    pool_batches = _sde_pool(task, k_pool, batch_size, pool)
    flat0, unravel = ravel_pytree(params)
    lam = weight_decay
    use_mod = modified_drift and isinstance(model, EmbeddingTable)
    sde = _sde_terms(task, static, unravel, pool_batches, loss_fn, lr, lam,
                     params.weight.shape if use_mod else None)
    loss_of = sde.loss_of

    def drift_flat(flat):
        return sde.drift(flat, sde.pool_grads(flat))

    def diffusion_flat(flat):
        return sde.diffusion(sde.pool_grads(flat))

    dt = lr if dt is None else dt
    ts = log_times(t1, t_min=max(dt, t1 * 1e-3)) if ts is None else np.asarray(ts, dtype=float)
    bm = diffrax.VirtualBrownianTree(0.0, float(ts[-1]), tol=dt / 8, shape=jax.ShapeDtypeStruct((pool,), flat0.dtype), key=k_bm)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, a: drift_flat(y)),
        diffrax.ControlTerm(lambda t, y, a: diffusion_flat(y), bm),
    )

    @eqx.filter_jit
    def solve(y0):
        return diffrax.diffeqsolve(
            terms, diffrax.Euler(), t0=0.0, t1=float(ts[-1]), dt0=dt, y0=y0,
            saveat=diffrax.SaveAt(ts=jnp.asarray(ts)), max_steps=int(np.ceil(ts[-1] / dt)) + 10,
        )

    sol = solve(flat0)
    ys = jax.vmap(unravel)(sol.ys)

    def velocity(p):
        return unravel(drift_flat(ravel_pytree(p)[0]))

    def concepts_of(p):
        return eqx.combine(p, static).concept_embeddings()

    def pool_loss(p):
        return jnp.mean(jax.vmap(lambda b: loss_of(p, b))(pool_batches))

    return eqx.filter_jit(_record)(ts, ys, velocity, concepts_of, pool_loss, lam)
