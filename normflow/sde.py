"""SGD against its SDE on one fixed pool of minibatches (docs/theory.md §5, §16).

:func:`normflow.flows.sde_flow` models SGD as the Itô SDE of docs/theory.md §5 on a fixed pool of
``K`` minibatches: with ``g_k`` the gradient on pool minibatch ``k`` and ``ḡ`` their mean,

    dθ = -(ḡ + λθ) dt [+ (η/2)(|ḡ_x|²/R²) x dt]  +  √(η/K) [g_1-ḡ, …, g_K-ḡ] dW,   dW ∈ R^K.

This module puts that model to the test (the drift and diffusion are
:func:`normflow.flows._sde_terms`, the one definition ``sde_flow`` integrates too):

- :func:`pool_sgd`: the discrete process the SDE approximates, SGD that draws one minibatch per
  step uniformly from the *same* pool; its one-step mean and covariance are the SDE's.
- :func:`sde_euler_maruyama`: the SDE by Euler–Maruyama in a ``lax.scan`` (``dt = η/substeps``),
  Gaussian increments from ``jax.random.normal``, vmapped over seeds.
- :func:`compare_sde_sgd`: the two over a range of learning rates, the same seeds and pool: mean
  and spread of the final norms and the time to equilibrium, placed on the angular step ``ε``
  (docs/theory.md §16's validity map: the SDE should hold for small ``ε`` and fail as ``η``
  grows, Li, Malladi and Arora, NeurIPS 2021, "On the validity of modeling SGD with SDEs").
- :func:`time_diffrax_vs_scan`: ``sde_flow``'s Diffrax solve against the scan, same ``dt``.

Keys. Seed ``c`` has one key ``k_c``, split as ``sde_flow`` splits its key:
``k_model, _, k_noise = jax.random.split(k_c, 3)``; the initial model is
``default_model(task, k_model)`` (so seed c of :func:`pool_sgd`, :func:`sde_euler_maruyama` and
``sde_flow(key=k_c)`` start from the same model). The pool is ``pool_key``'s (drawn as
``sde_flow`` draws its pool from its second key). SGD's step ``k`` (0-based) uses pool minibatch
``randint(fold_in(fold_in(k_noise, 1), k), (), 0, K)``; Euler–Maruyama's substep ``n`` the
increment ``√dt · normal(fold_in(fold_in(k_noise, 2), n), (K,))``. Time is ``t = η · step``.
"""

from __future__ import annotations

import time
from typing import NamedTuple, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray

from .flows import _sde_pool, _sde_terms, sde_flow
from .losses import get_loss
from .models import EmbeddingTable
from .train import default_model
from .trajectory import normalize_save_steps

__all__ = ["NormPaths", "SDEComparison", "DiffraxTiming", "pool_sgd", "sde_euler_maruyama", "compare_sde_sgd",
           "time_diffrax_vs_scan"]

_SGD_TAG, _EM_TAG = 1, 2  # fold_in tags of a seed's noise key: SGD's pool indices, EM's increments


class NormPaths(NamedTuple):
    """Recorded concept norms of a batch of seeds.

    - ``times``: ``[S]`` continuous time ``t`` of each record (``η·step``; for Euler–Maruyama the
      grid point actually used).
    - ``grid``: ``[S]`` the record's index on the process's own grid (SGD steps, EM substeps).
    - ``norms``: ``[seeds, S, N]`` per-concept norms ``|x_i|``.
    - ``params``: ``[seeds, P]`` the final parameters, flattened (``jax.flatten_util.ravel_pytree``
      of the model's inexact arrays).
    """

    times: Float[np.ndarray, " S"]
    grid: Int[np.ndarray, " S"]
    norms: Float[Array, "seeds S N"]
    params: Float[Array, "seeds P"]


@eqx.filter_jit
def _default_params(task, keys):
    """Each seed's ``default_model(task, split(key, 3)[0])``, its inexact arrays batched."""
    return jax.vmap(lambda k: eqx.partition(default_model(task, jax.random.split(k, 3)[0]), eqx.is_inexact_array)[0])(
        keys)


# The pool, drawn by sde_flow's own code under jit (the same batches as ``sde_flow``'s, to rounding:
# compiled, the contexts' normalisation can differ from the eager draw in the last bit).
_pool_of = eqx.filter_jit(_sde_pool)


def _seed_params(task, keys, model):
    """Batched initial parameters ``[seeds, ...]`` and the shared static part."""
    if model is None:
        static = eqx.partition(eqx.filter_eval_shape(default_model, task, jax.random.key(0)), eqx.is_inexact_array)[1]
        return _default_params(task, keys), static, True
    params, static = eqx.partition(model, eqx.is_inexact_array)
    n = keys.shape[0]
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), params), static, \
        isinstance(model, EmbeddingTable)


@jax.jit
def _noise_keys(keys, tag):
    return jax.vmap(lambda k: jax.random.fold_in(jax.random.split(k, 3)[2], tag))(keys)


def _unbatched(params):
    return jax.tree_util.tree_map(lambda a: a[0], params)


@eqx.filter_jit
def _scan_paths(params, static, task, pool_batches, loss_fn, lr, lam, dt, noise_keys, n_plain, kind, mod_shape):
    """One compiled program per (kind, shapes): every seed's process through the segments
    ``n_plain`` (record after each), vmapped over seeds. ``kind``: ``"sgd"`` or ``"em"``."""
    _, unravel = ravel_pytree(_unbatched(params))
    flats = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    sde = _sde_terms(task, static, unravel, pool_batches, loss_fn, lr, lam, mod_shape)
    pool = pool_batches.concepts.shape[0]

    def norms_of(flat):
        x = eqx.combine(unravel(flat), static).concept_embeddings()
        return jnp.sqrt(jnp.sum(x * x, axis=-1))

    if kind == "sgd":
        def step(flat, n, key):
            j = jax.random.randint(jax.random.fold_in(key, n), (), 0, pool)
            batch = jax.tree_util.tree_map(lambda a: a[j], pool_batches)
            g = ravel_pytree(jax.grad(sde.loss_of)(unravel(flat), batch))[0]
            return flat - lr * (g + lam * flat)
    else:
        sqrt_dt = jnp.sqrt(dt)

        def step(flat, n, key):
            gs = sde.pool_grads(flat)
            xi = jax.random.normal(jax.random.fold_in(key, n), (pool,), flat.dtype)
            return flat + sde.drift(flat, gs) * dt + sde.diffusion(gs) @ xi * sqrt_dt

    def one_seed(flat, key):
        def segment(carry, m):
            carry = jax.lax.fori_loop(0, m, lambda i, c: (step(c[0], c[1], key), c[1] + 1), carry)
            return carry, norms_of(carry[0])

        (flat, _), r = jax.lax.scan(segment, (flat, jnp.zeros((), n_plain.dtype)), n_plain)
        return r, flat

    return jax.vmap(one_seed)(flats, noise_keys)


def _run(task, keys, model, pool_key, batch_size, pool, loss, lr, weight_decay, step, grid, tag, kind, *, modified_drift):
    """The seeds' paths of one process (``kind`` ``"sgd"`` or ``"em"``, step ``step``) recorded at
    the grid points ``grid``: ``(norms [C, S, N], final flat params [C, P])``."""
    params, static, is_table = _seed_params(task, keys, model)
    mod_shape = _unbatched(params).weight.shape if (modified_drift and is_table) else None
    pool_batches = _pool_of(task, pool_key, batch_size, pool)
    dtype = task.dtype
    n_plain = jnp.asarray(np.diff(grid, prepend=0), jnp.int32)
    return _scan_paths(params, static, task, pool_batches, get_loss(loss), jnp.asarray(lr, dtype),
                       jnp.asarray(weight_decay, dtype), jnp.asarray(step, dtype), _noise_keys(keys, tag), n_plain, kind,
                       mod_shape)


def pool_sgd(task, lr: float, steps: int, *, keys: PRNGKeyArray, weight_decay: float = 0.0, batch_size: int = 64,
             pool: int = 32, pool_key: PRNGKeyArray, save_steps: Sequence[int] | int | None = None, model=None,
             loss="info_nce") -> NormPaths:
    """SGD on a fixed pool of minibatches: the discrete process of docs/theory.md §5's SDE.

    Each step draws one minibatch ``j`` uniformly from the pool and takes
    ``x' = x - η (g_j + λx)``. From any state its step has mean ``-η(ḡ + λx)`` and covariance
    ``η² Σ`` (``Σ`` the pool covariance of ``g``): those of one step ``dt = η`` of the SDE that
    :func:`normflow.flows.sde_flow` and :func:`sde_euler_maruyama` integrate.

    **Arguments:**

    - ``task``: the task; ``lr``: ``η``; ``steps``: number of SGD steps.
    - ``keys``: ``[seeds]`` one key per seed (model init and pool indices, see the module docstring).
    - ``weight_decay``: ``λ`` (coupled, in the gradient). ``batch_size``, ``pool``: the pool's
      minibatch size and number of minibatches, drawn from ``pool_key`` (the same pool as
      :func:`sde_euler_maruyama` and ``sde_flow`` for that key).
    - ``save_steps``: the steps to record (ints in ``[0, steps]``; 0 and ``steps`` are added; an int =
      that many log-spaced steps; ``None`` = log-spaced).
    - ``model``: the initial model of every seed (default: each seed's ``default_model``).
    - ``loss``: the loss name or function.

    **Returns:** a :class:`NormPaths` with ``times = η · save_steps``.
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    saves = normalize_save_steps(save_steps, int(steps))
    norms, final = _run(task, keys, model, pool_key, batch_size, pool, loss, lr, weight_decay, lr, saves, _SGD_TAG,
                        "sgd", modified_drift=False)
    return NormPaths(lr * saves.astype(np.float64), saves, norms, final)


def _em_grid(ts, t1, dt):
    ts = np.linspace(0.0, t1, 65) if ts is None else np.asarray(ts, dtype=np.float64)
    grid = np.rint(ts / dt).astype(np.int64)
    if ts.ndim != 1 or np.any(ts < 0) or np.any(ts > t1 + dt / 2) or np.any(np.diff(grid) < 0):
        raise ValueError(f"ts must be non-decreasing times in [0, t1={t1:g}], got {ts!r}")
    return grid


def sde_euler_maruyama(task, lr: float, t1: float, *, keys: PRNGKeyArray, weight_decay: float = 0.0,
                       batch_size: int = 64, pool: int = 32, pool_key: PRNGKeyArray, substeps: int = 4, ts=None,
                       modified_drift: bool = True, model=None, loss="info_nce") -> NormPaths:
    """docs/theory.md §5's SDE (the drift and diffusion of :func:`normflow.flows.sde_flow`) by
    Euler–Maruyama in a ``lax.scan``, vmapped over seeds:

        θ_{n+1} = θ_n + a(θ_n) dt + B(θ_n) ξ_n √dt,   ξ_n ~ N(0, I_K),   dt = η / substeps,

    with ``a`` the drift ``-(ḡ + λθ) [+ (η/2)(|ḡ_x|²/R²) x]`` and ``B = √(η/K) [g_1-ḡ, …, g_K-ḡ]``.

    **Arguments:**

    - ``task``, ``lr`` (``η``), ``t1``: the end time; ``keys``: ``[seeds]`` one key per seed (model
      init and increments, see the module docstring).
    - ``weight_decay``, ``batch_size``, ``pool``, ``pool_key``: as :func:`pool_sgd` (the same pool).
    - ``substeps``: EM substeps per SGD step (``dt = η/substeps``).
    - ``ts``: record times in ``[0, t1]``, non-decreasing (default 65 evenly spaced); each is moved
      to the nearest grid point ``n·dt``. The run stops at the last one.
    - ``modified_drift``: add docs/theory.md §4's modified drift (free table only, as ``sde_flow``).
    - ``model``, ``loss``: as :func:`pool_sgd`.

    **Returns:** a :class:`NormPaths` (``[seeds, len(ts), N]`` norms; ``times`` the grid times used).
    """
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not (isinstance(substeps, (int, np.integer)) and substeps >= 1):
        raise ValueError(f"substeps must be an int >= 1, got {substeps!r}")
    dt = lr / substeps
    grid = _em_grid(ts, t1, dt)
    norms, final = _run(task, keys, model, pool_key, batch_size, pool, loss, lr, weight_decay, dt, grid, _EM_TAG, "em",
                        modified_drift=modified_drift)
    return NormPaths(grid * dt, grid, norms, final)


@eqx.filter_jit
def _angular_steps(template, static, task, pool_batches, loss_fn, lr, flats):
    """``|Δx_i| / R_i`` of one SGD step (no decay) on each pool minibatch from each of the flat
    states ``flats`` ``[seeds, P]``: ``[seeds, K, N]``."""
    _, unravel = ravel_pytree(template)
    sde = _sde_terms(task, static, unravel, pool_batches, loss_fn, lr, 0.0, None)

    def concepts(flat):
        return eqx.combine(unravel(flat), static).concept_embeddings()

    def one(flat):
        x = concepts(flat)
        dx = jax.vmap(lambda g: concepts(flat - lr * g) - x)(sde.pool_grads(flat))
        return jnp.sqrt(jnp.sum(dx * dx, -1) / jnp.sum(x * x, -1))

    return jax.vmap(one)(flats)


def _settling_time(times, path, band):
    """First recorded time after which ``path`` stays within ``band`` (relative) of its last value."""
    out = np.abs(path / path[-1] - 1) > band
    if not out.any():
        return float(times[0])
    last_out = int(np.nonzero(out)[0][-1])
    return float(times[last_out + 1])


def _relaxation_time(times, path, band):
    """``∫ (F - m(t)) / (F - m(0)) dt`` with ``F`` the last value (``τ`` for ``m = F + (m₀-F)e^{-t/τ}``,
    up to ``e^{-T/τ}``); NaN when ``|F - m₀| < band·F`` (no relaxation to time)."""
    f, m0 = path[-1], path[0]
    if not abs(f - m0) > band * abs(f):
        return float("nan")
    y = (f - path) / (f - m0)
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(times)))


class SDEComparison(NamedTuple):
    """:func:`compare_sde_sgd`'s result; every field ``[L]`` (one entry per lr) unless noted.

    - ``lr``, ``eta_lambda`` (``ηλ``); ``eps``: the angular step per sighting at SGD's final state,
      ``ε = η|g_x|/R = η|s|/R²`` (docs/theory.md §4, §6), rms over the pool minibatches that hold
      the concept, averaged over concepts and seeds; ``eps_step``: the rms angular step per step
      (steps without the concept count 0; docs/theory.md §6 predicts ``√(1-(1-ηλ)²) ≈ √(2ηλ)`` at
      equilibrium).
    - ``mean_sgd``, ``mean_sde``: the seed mean of the final norm, per concept, averaged over
      concepts; ``mean_rel_err = mean_sde/mean_sgd - 1``; ``mean_diff_se``: the standard error of
      ``mean_sde - mean_sgd`` (paired over seeds, which share the initial model);
      ``mean_se_sgd``, ``mean_se_sde``: each mean's own standard error.
    - ``std_sgd``, ``std_sde``: the seed-to-seed standard deviation (ddof 1) of the final norm,
      per concept, averaged over concepts; ``std_rel_err``; ``std_rel_err_se``: its standard
      error by a paired bootstrap over seeds (400 resamples).
    - ``t_eq_sgd``, ``t_eq_sde``: the settling time, the first recorded time after which the
      seed-mean norm averaged over concepts stays within ``band`` of its final value.
    - ``tau_sgd``, ``tau_sde``: the integral relaxation time ``∫ (F - m(t))/(F - m(0)) dt`` of that
      path ``m`` (NaN where ``|F - m(0)| < band·F``).
    - ``times``: ``[L, S]`` record times; ``path_sgd``, ``path_sde``: ``[L, S]`` the paths ``m(t)``.
    """

    lr: np.ndarray
    eta_lambda: np.ndarray
    eps: np.ndarray
    eps_step: np.ndarray
    mean_sgd: np.ndarray
    mean_sde: np.ndarray
    mean_rel_err: np.ndarray
    mean_diff_se: np.ndarray
    mean_se_sgd: np.ndarray
    mean_se_sde: np.ndarray
    std_sgd: np.ndarray
    std_sde: np.ndarray
    std_rel_err: np.ndarray
    std_rel_err_se: np.ndarray
    t_eq_sgd: np.ndarray
    t_eq_sde: np.ndarray
    tau_sgd: np.ndarray
    tau_sde: np.ndarray
    times: np.ndarray
    path_sgd: np.ndarray
    path_sde: np.ndarray


def compare_sde_sgd(task, lrs: Sequence[float], *, weight_decay: float, t1: float, seeds: int = 32,
                    batch_size: int = 64, pool: int = 32, substeps: int = 4, num_saves: int = 65,
                    modified_drift: bool = True, band: float = 0.02, key: PRNGKeyArray | None = None, model=None,
                    loss="info_nce") -> SDEComparison:
    """Pool SGD against its SDE over a range of learning rates (docs/theory.md §5, §16).

    For each ``lr`` in ``lrs``: :func:`pool_sgd` for ``round(t1/lr)`` steps and
    :func:`sde_euler_maruyama` to the same time, over the same seeds (same initial models) and the
    same pool, both recorded at the same ``num_saves`` times (SGD steps ``round(t·/lr)``, EM grid
    points ``substeps`` times those). The SDE matches the discrete process in its one-step mean and
    covariance only, so the two should agree while the angular step ``ε`` and ``ηλ`` are small and
    part as ``η`` grows (Li, Malladi and Arora, NeurIPS 2021).

    Time to equilibrium. "The first recorded time within 2 % of the final value" is ill-posed: a
    noisy or overshooting path can enter the band and leave it again, and a run that starts near
    its final value is "at equilibrium" at ``t = 0``. The result holds the settling time (the
    first record after which the path *stays* in the band) and the integral relaxation time
    ``τ`` (robust to noise, and equal to ``1/(4λ)``-type time constants for an exponential
    approach), NaN where the run starts within the band.

    **Arguments:**

    - ``task``; ``lrs``: the learning rates; ``weight_decay``: ``λ``; ``t1``: the end time
      (choose several relaxation times ``1/(4λ)``).
    - ``seeds``: number of seeds; ``batch_size``, ``pool``: the pool; ``substeps``: EM substeps per
      SGD step; ``num_saves``: records (evenly spaced in ``[0, t1]``); ``modified_drift``: as
      :func:`sde_euler_maruyama`; ``band``: the settling band (relative).
    - ``key``: seeds and pool (``k_seeds, k_pool = split(key)``; default ``key(0)``); ``model``,
      ``loss``: as :func:`pool_sgd`.

    **Returns:** an :class:`SDEComparison`.
    """
    key = jax.random.key(0) if key is None else key
    k_seeds, pool_key = jax.random.split(key)
    keys = jax.random.split(k_seeds, seeds)
    loss_fn = get_loss(loss)
    pool_batches = _pool_of(task, pool_key, batch_size, pool)
    present = np.asarray(jax.vmap(lambda c: jnp.zeros(task.num_concepts, bool).at[c].set(True))(pool_batches.concepts))
    p_hat = present.mean(axis=0)  # [N] fraction of pool minibatches holding each concept
    params, static, _ = _seed_params(task, keys[:1], model)
    template = _unbatched(params)
    rng = np.random.default_rng(0)
    boot = rng.integers(0, seeds, size=(400, seeds))
    rows = []
    for lr in lrs:
        lr = float(lr)
        steps = max(int(round(t1 / lr)), 1)
        save = np.unique(np.rint(np.linspace(0, steps, num_saves)).astype(np.int64))
        common = dict(keys=keys, weight_decay=weight_decay, batch_size=batch_size, pool=pool, pool_key=pool_key,
                      model=model, loss=loss)
        sgd = pool_sgd(task, lr, steps, save_steps=save, **common)
        sde = sde_euler_maruyama(task, lr, steps * lr, substeps=substeps, ts=save * lr,
                                 modified_drift=modified_drift, **common)
        r_sgd, r_sde = np.asarray(sgd.norms), np.asarray(sde.norms)  # [C, S, N]
        f_sgd, f_sde = r_sgd[:, -1], r_sde[:, -1]  # [C, N]
        a_sgd, a_sde = f_sgd.mean(1), f_sde.mean(1)  # per seed, averaged over concepts
        m_sgd, m_sde = float(a_sgd.mean()), float(a_sde.mean())
        s_sgd, s_sde = float(f_sgd.std(0, ddof=1).mean()), float(f_sde.std(0, ddof=1).mean())
        b_sgd = f_sgd[boot].std(1, ddof=1).mean(-1)
        b_sde = f_sde[boot].std(1, ddof=1).mean(-1)
        with np.errstate(invalid="ignore", divide="ignore"):  # a resample of one repeated seed has no spread
            boot_err = b_sde / b_sgd - 1
        ang = np.asarray(_angular_steps(template, static, task, pool_batches, loss_fn, jnp.asarray(lr, task.dtype),
                                        sgd.params))  # [C, K, N]
        ms = (ang ** 2).mean(axis=(0, 1))  # [N]
        eps = float(np.mean(np.sqrt(ms / np.where(p_hat > 0, p_hat, np.nan))))
        p_sgd, p_sde = r_sgd.mean(axis=(0, 2)), r_sde.mean(axis=(0, 2))  # [S]
        times = sgd.times
        rows.append(dict(
            lr=lr, eta_lambda=lr * weight_decay, eps=eps, eps_step=float(np.sqrt(ms.mean())),
            mean_sgd=m_sgd, mean_sde=m_sde, mean_rel_err=m_sde / m_sgd - 1,
            mean_diff_se=float((a_sde - a_sgd).std(ddof=1) / np.sqrt(seeds)),
            mean_se_sgd=float(a_sgd.std(ddof=1) / np.sqrt(seeds)), mean_se_sde=float(a_sde.std(ddof=1) / np.sqrt(seeds)),
            std_sgd=s_sgd, std_sde=s_sde, std_rel_err=s_sde / s_sgd - 1, std_rel_err_se=float(np.nanstd(boot_err)),
            t_eq_sgd=_settling_time(times, p_sgd, band), t_eq_sde=_settling_time(times, p_sde, band),
            tau_sgd=_relaxation_time(times, p_sgd, band), tau_sde=_relaxation_time(times, p_sde, band),
            times=times, path_sgd=p_sgd, path_sde=p_sde,
        ))
    width = max(len(r["times"]) for r in rows)  # a short run (steps < num_saves) has fewer records: NaN-padded

    def column(f):
        if f in ("times", "path_sgd", "path_sde"):
            return np.stack([np.pad(np.asarray(r[f], float), (0, width - len(r[f])), constant_values=np.nan)
                             for r in rows])
        return np.asarray([r[f] for r in rows])

    return SDEComparison(**{f: column(f) for f in SDEComparison._fields})


@eqx.filter_jit
def _diffrax_norms(params, static, task, pool_batches, loss_fn, lr, lam, bm_keys, mod_shape, dt, t_end, ts):
    """``sde_flow``'s solve (the same terms, Brownian tree, solver, steps and save times) with its
    inputs traced, vmapped over seeds: the norms ``[seeds, len(ts), N]``. ``dt``, ``t_end``: floats."""
    _, unravel = ravel_pytree(_unbatched(params))
    sde = _sde_terms(task, static, unravel, pool_batches, loss_fn, lr, lam, mod_shape)
    pool = pool_batches.concepts.shape[0]

    def one(p, k_bm):
        flat0 = ravel_pytree(p)[0]
        bm = diffrax.VirtualBrownianTree(0.0, t_end, tol=dt / 8, shape=jax.ShapeDtypeStruct((pool,), flat0.dtype),
                                         key=k_bm)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, y, a: sde.drift(y, sde.pool_grads(y))),
            diffrax.ControlTerm(lambda t, y, a: sde.diffusion(sde.pool_grads(y)), bm),
        )
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), t0=0.0, t1=t_end, dt0=dt, y0=flat0,
                                  saveat=diffrax.SaveAt(ts=ts), max_steps=int(np.ceil(t_end / dt)) + 10)
        x = jax.vmap(lambda f: eqx.combine(unravel(f), static).concept_embeddings())(sol.ys)
        return jnp.sqrt(jnp.sum(x * x, axis=-1))

    return jax.vmap(one)(params, bm_keys)


class DiffraxTiming(NamedTuple):
    """:func:`time_diffrax_vs_scan`'s result.

    - ``dt``, ``steps``: the common step and number of steps (``t1 = steps · dt``).
    - ``sde_flow_s``: wall seconds of one ``sde_flow`` call (its second call; ``sde_flow`` builds
      and traces its solve anew on every call, so this includes tracing and a compilation-cache
      lookup); ``diffrax_s``: the same Diffrax solve compiled once (:func:`_diffrax_norms`), one
      seed, timed on its second call; ``scan_s``: :func:`sde_euler_maruyama`, one seed, second call.
    - ``replica_err``: max ``|norm|`` difference between ``sde_flow`` and the compiled Diffrax
      solve for seed 0 (the same SDE, pool and Brownian path: should be rounding).
    - ``mean_diffrax``, ``mean_scan``: the seed mean (``seeds`` seeds, same initial models and pool)
      of the final norm averaged over concepts; ``se_diffrax``, ``se_scan``: their standard errors;
      ``rel_diff = mean_scan/mean_diffrax - 1``; ``diff_se``: the standard error of the difference,
      paired over seeds (the two use different Brownian samples).
    """

    dt: float
    steps: int
    sde_flow_s: float
    diffrax_s: float
    scan_s: float
    replica_err: float
    mean_diffrax: float
    mean_scan: float
    se_diffrax: float
    se_scan: float
    rel_diff: float
    diff_se: float


def _wall(f):
    t = time.perf_counter()
    jax.block_until_ready(f())
    return time.perf_counter() - t


def time_diffrax_vs_scan(task, lr: float, t1: float, *, key: PRNGKeyArray, weight_decay: float = 0.0,
                         batch_size: int = 64, pool: int = 32, substeps: int = 1, seeds: int = 8,
                         modified_drift: bool = True, loss="info_nce") -> DiffraxTiming:
    """Wall time of ``sde_flow``'s Diffrax solve (Euler on a ``VirtualBrownianTree``) against the
    ``lax.scan`` Euler–Maruyama loop of :func:`sde_euler_maruyama`, the same SDE and ``dt``
    (docs/theory.md §5; diffrax issue 517 reports its SDE solvers slow against such a loop).

    One seed each, compiled by a first call, timed on a second (``block_until_ready``). Then the
    distributions: ``seeds`` seeds of each (seed keys ``split(key, seeds)``; every seed on the pool
    of seed 0's key, as ``sde_flow(key=keys[0])`` draws it), the final mean norms compared.

    **Arguments:**

    - ``task``, ``lr`` (``η``), ``t1`` (rounded to a whole number of steps ``dt = η/substeps``).
    - ``key``: the seeds' keys and the pool; ``weight_decay``, ``batch_size``, ``pool``,
      ``modified_drift``, ``loss``: as ``sde_flow``; ``substeps``: ``dt = η/substeps`` (default 1,
      ``sde_flow``'s default ``dt``); ``seeds``: seeds for the distribution comparison.

    **Returns:** a :class:`DiffraxTiming`.
    """
    dt = lr / substeps
    steps = max(int(round(t1 / dt)), 1)
    t_end = steps * dt
    keys = jax.random.split(key, seeds)
    pool_key = jax.random.split(keys[0], 3)[1]
    common = dict(weight_decay=weight_decay, batch_size=batch_size, pool=pool, modified_drift=modified_drift,
                  loss=loss)

    def flow():
        return sde_flow(task, lr, t_end, key=keys[0], dt=dt, ts=np.array([0.0, t_end]), **common).norms

    def scan(k):
        return sde_euler_maruyama(task, lr, t_end, keys=k, pool_key=pool_key, substeps=substeps,
                                  ts=np.array([0.0, t_end]), **common).norms

    params, static, is_table = _seed_params(task, keys, None)
    mod_shape = _unbatched(params).weight.shape if (modified_drift and is_table) else None
    pool_batches = _pool_of(task, pool_key, batch_size, pool)
    bm_keys = jax.vmap(lambda k: jax.random.split(k, 3)[2])(keys)
    dtype = task.dtype

    def replica(sl):
        return _diffrax_norms(jax.tree_util.tree_map(lambda a: a[sl], params), static, task, pool_batches,
                              get_loss(loss), jnp.asarray(lr, dtype), jnp.asarray(weight_decay, dtype), bm_keys[sl],
                              mod_shape, float(dt), float(t_end), jnp.asarray([0.0, t_end], dtype))

    ref = jax.block_until_ready(flow())
    sde_flow_s = _wall(flow)
    one = slice(0, 1)
    rep1 = jax.block_until_ready(replica(one))
    diffrax_s = _wall(lambda: replica(one))
    jax.block_until_ready(scan(keys[:1]))
    scan_s = _wall(lambda: scan(keys[:1]))
    a_dx = np.asarray(replica(slice(0, seeds)))[:, -1].mean(-1)
    a_em = np.asarray(scan(keys))[:, -1].mean(-1)
    se = lambda a: float(np.std(a, ddof=1) / np.sqrt(len(a)))  # noqa: E731
    return DiffraxTiming(
        dt=float(dt), steps=steps, sde_flow_s=sde_flow_s, diffrax_s=diffrax_s, scan_s=scan_s,
        replica_err=float(np.max(np.abs(np.asarray(rep1)[0] - np.asarray(ref)))),
        mean_diffrax=float(a_dx.mean()), mean_scan=float(a_em.mean()), se_diffrax=se(a_dx), se_scan=se(a_em),
        rel_diff=float(a_em.mean() / a_dx.mean() - 1), diff_se=se(a_em - a_dx),
    )
