"""What a prediction takes and returns (docs/theory.md §15): :class:`Context`, :class:`Prediction`."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ._core import meanfield_norm_path
from ._schedule import meanfield_norm_path_lr, r2_path_lr

__all__ = ["Context", "Prediction", "meanfield_prediction", "r2_recursion", "rms_window", "tangent_rotation", "window"]


class Context(NamedTuple):
    """Everything a formula may use: the hyperparameters, the task's size, and statistics the
    lab measures along the run — never the measured norms themselves (except ``r0``).

    **Arguments:**

    - ``steps``: int ``[S]``, the steps at which norms are predicted (``steps[0] = 0``).
    - ``r0``: ``[N]``, the initial norm of each concept.
    - ``stat_steps``: int ``[C]``, steps at which the source statistics were measured.
    - ``p``, ``pw2``, ``mean_sq``, ``var``: ``[C, N]``, per concept at those steps
      (:class:`normflow.SourceEnergy`: frequency, ``pW²``, ``|s̄|²`` and ``V²`` at unit radius).
    - ``dim``: embedding dimension ``d``.
    - ``lr``, ``weight_decay``, ``momentum``, ``b1``, ``b2``, ``eps``: the run's hyperparameters
      (``lr`` is the peak value when ``lr_path`` is given).
    - ``total_steps``: the run's number of steps ``T``.
    - ``lr_path``: ``[T]`` per-step learning rate ``η_k`` (a schedule; ``lr_path[k]`` is the η of
      step ``k``, the step from ``R_k`` to ``R_{k+1}``, as ``WarmupCosine(...)(k)`` in the engines),
      or None for constant ``lr``. With it, :func:`meanfield_prediction` and :func:`r2_recursion`
      iterate their maps with η_k (docs/theory.md §13); a prediction that reads ``ctx.lr``
      directly sees the peak.
    - ``flow``: for ``gd``, a callable returning the modified-flow norms ``[S, N]`` at ``steps``.
    - ``energy_var``: ``[C, N]`` or None, the variance over steps of the per-step source energy
      ``|s_k|²`` (zeros included; :class:`normflow.SourceEnergy`), for formulas that need the
      spread of the per-sighting energy, not only its mean.
    """

    steps: np.ndarray
    r0: np.ndarray
    stat_steps: np.ndarray
    p: np.ndarray
    pw2: np.ndarray
    mean_sq: np.ndarray
    var: np.ndarray
    dim: int
    lr: float
    weight_decay: float
    total_steps: int
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    lr_path: np.ndarray | None = None
    flow: Callable[[], np.ndarray] | None = None
    energy_var: np.ndarray | None = None

    def path(self, name: str) -> np.ndarray:
        """Per-step ``[T, N]`` path of a measured statistic (``"p"``, ``"pw2"``, ``"mean_sq"``,
        ``"var"``), linear in the step between measurements, constant outside them."""
        vals = np.asarray(getattr(self, name), float)
        ks = np.asarray(self.stat_steps, float)
        grid = np.arange(self.total_steps, dtype=float)
        return np.stack([np.interp(grid, ks, vals[:, i]) for i in range(vals.shape[1])], axis=1)

    def lrs(self) -> np.ndarray:
        """``[T]`` per-step learning rate (``lr`` repeated when there is no schedule)."""
        if self.lr_path is None:
            return np.full(self.total_steps, float(self.lr))
        return np.asarray(self.lr_path, float)

    def at_steps(self, full: np.ndarray) -> np.ndarray:
        """Pick ``[S, N]`` rows at ``steps`` from a ``[T+1, N]`` array whose row ``k`` is the state
        after ``k`` steps."""
        return np.asarray(full)[np.asarray(self.steps)]


class Prediction(NamedTuple):
    """One optimizer's prediction for one run.

    **Fields:**

    - ``optimizer``, ``formula`` (one line), ``section`` (``"docs/theory.md §N"``), ``note``.
    - ``norms``: ``[S, N]`` predicted norms at ``Context.steps``.
    - ``equilibrium``: True if the formula is an equilibrium (compare time-averaged over the end
      of the run), False for a path (compare along it / at the end).
    - ``angular_update``: ``[N]`` predicted rms rotation of ``x̂`` per step (radians) over the
      last 20 % of the run (steps without the concept count as 0), or None where the section
      gives none.
    - ``regime``: the dimensionless groups the section's derivation needs small, by name.
    """

    optimizer: str
    formula: str
    section: str
    note: str
    norms: np.ndarray
    equilibrium: bool
    angular_update: np.ndarray | None = None
    regime: dict = {}


# ------------------------------------------------------------------ shared pieces of predictions


def tangent_rotation(lrs, pw2_path, norms_path) -> np.ndarray:
    """``[T, N]`` rms rotation per step of a tangent update of energy ``pW²/R²``:
    ``θ_k = η_k sqrt(pW²_k)/R_k²`` (docs/theory.md §14; ``R_k`` the norm before step ``k``)."""
    lrs = np.asarray(lrs, float)[:, None]
    return lrs * np.sqrt(np.asarray(pw2_path, float)) / np.asarray(norms_path, float) ** 2


def window(ctx: Context, equilibrium: bool) -> np.ndarray:
    """Boolean mask over the per-step axis ``[T]``: the last 20 % for equilibria, else all."""
    k = np.arange(ctx.total_steps)
    return k >= 0.8 * ctx.total_steps if equilibrium else np.ones(ctx.total_steps, bool)


def meanfield_prediction(ctx: Context, lr_scale: float = 1.0, decay_scale: float = 1.0,
                         energy_scale: float = 1.0):
    """Norms from the mean-field map of docs/theory.md §6 (§13 with a schedule),
    ``R²_{k+1} = (1-η'_kλ')² R²_k + η'_k² c·pW²_k / R²_k`` with ``η'_k = lr_scale·η_k``,
    ``η'_kλ' = decay_scale·η_kλ`` and ``c = energy_scale`` (the momentum and projection variants of
    §7 are this map with other constants). ``η_k = ctx.lr`` for every step, or ``ctx.lr_path[k]``
    with a schedule (:func:`normflow.theory.meanfield_norm_path_lr`, a ``lax.scan``: §13's map
    uses only the η of its own step).
    Returns ``(norms [S, N], full [T+1, N])``, ``full[k]`` the norm after ``k`` steps."""
    pw2 = ctx.path("pw2")
    wd_eff = decay_scale * ctx.weight_decay / lr_scale
    r0 = np.asarray(ctx.r0, float)
    if ctx.lr_path is None:
        eta = lr_scale * ctx.lr
        path = np.asarray(meanfield_norm_path(r0, energy_scale * pw2, eta, wd_eff))
    else:
        path = np.asarray(meanfield_norm_path_lr(r0, energy_scale * pw2, lr_scale * ctx.lrs(), wd_eff))
    full = np.concatenate([np.asarray(ctx.r0, float)[None], path], axis=0)
    return ctx.at_steps(full), full


def rms_window(theta: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(theta[mask] ** 2, axis=0))


def r2_recursion(ctx: Context, inc):
    """``R²_{k+1} = (1-η_kλ)² R²_k + η_k² inc``: the scale-free (Adam-type) step of docs/theory.md §8,
    with a per-step ``η_k = ctx.lr_path[k]`` under a schedule (§13).

    ``inc`` (a scalar, ``[N]`` or a per-step ``[T, N]``) is the squared displacement per step in
    units of ``η²``. Constant ``lr``: a float64 NumPy loop; with a schedule:
    :func:`normflow.theory.r2_path_lr` (a ``lax.scan``).
    Returns ``(norms [S, N], full [T+1, N])``."""
    if ctx.lr_path is not None:
        r0 = np.asarray(ctx.r0, float)
        inc_path = np.broadcast_to(np.asarray(inc, float), (ctx.total_steps, len(r0)))
        path = np.asarray(r2_path_lr(r0, inc_path, ctx.lrs(), ctx.weight_decay), float)
        full = np.concatenate([r0[None], path], axis=0)
        return ctx.at_steps(full), full
    lrs = ctx.lrs()
    q = (1 - lrs * ctx.weight_decay) ** 2
    r2 = np.empty((ctx.total_steps + 1, len(ctx.r0)))
    r2[0] = np.asarray(ctx.r0, float) ** 2
    per_step = np.ndim(inc) == 2
    for k in range(ctx.total_steps):
        r2[k + 1] = q[k] * r2[k] + lrs[k] ** 2 * (inc[k] if per_step else inc)
    full = np.sqrt(r2)
    return ctx.at_steps(full), full
