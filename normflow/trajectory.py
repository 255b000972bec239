"""The trajectory record every engine returns, and the choice of recorded steps.

docs/theory.md §2 terms, per concept, at each recorded step k (after k updates):

- ``norms``     ``R' = |x_k|``
- ``radial``    ``u_r = x̂_{k-1} · u``  (so the first-order radial drift is ``D = -u_r``)
- ``angular``   ``|P u| = |u - u_r x̂_{k-1}|``
- ``update_sq`` ``|u|²``

where ``u`` is defined by ``x_k = (1 - ηλ) x_{k-1} - η u`` with the run's lr ``η`` and
weight decay ``λ``, so that ``R'² = (1-ηλ)²R² - 2η(1-ηλ)R u_r + η²|u|²`` holds exactly for
every optimizer. For the flows the same fields hold the continuous analogue
``u = -(dx/dt) - λx`` at the saved states. Row 0 is the initial state (``u = 0`` there for the
discrete engines).

Time convention (used everywhere in the lab): ``t = η · step``. With a learning-rate schedule
(docs/theory.md §13) ``η`` above is the recorded step's own ``η_k`` (``u = 0`` on a step with
``η_k = 0``) and ``times`` is ``t_k = Σ_{j<k} η_j``.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, Int

__all__ = ["Trajectory", "log_steps", "normalize_save_steps"]


class Trajectory(eqx.Module):
    """Recorded per-concept norm dynamics. Arrays are ``[saves]`` or ``[saves, concepts]``
    (with a leading config axis when produced by a vmapped sweep). ``model`` is the final
    model and ``opt_state`` the final optimizer state (discrete engines). ``train`` has no
    resume argument: a run measured along the way is split with ``train(..., chunks=...,
    callback=...)`` instead."""

    steps: Int[Array, "*c S"] | None
    times: Float[Array, "*c S"]
    norms: Float[Array, "*c S N"]
    radial: Float[Array, "*c S N"]
    angular: Float[Array, "*c S N"]
    update_sq: Float[Array, "*c S N"]
    loss: Float[Array, "*c S"]
    diverged_step: Int[Array, "*c"]
    diverged_concept: Int[Array, "*c"]
    model: object = None
    opt_state: object = None

    @property
    def diverged(self) -> bool:
        """True if any run in the record produced a NaN/Inf (see ``diverged_step``)."""
        return bool(np.any(np.asarray(self.diverged_step) >= 0))


def log_steps(steps: int, num: int = 64) -> np.ndarray:
    """About ``num`` log-spaced integer steps in ``[0, steps]``, always including 0, 1 and ``steps``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    s = np.unique(np.round(np.geomspace(1, steps, max(num - 1, 1))).astype(np.int64))
    return np.unique(np.concatenate([[0], s, [steps]]))


def normalize_save_steps(save_steps, steps: int) -> np.ndarray:
    """Sorted unique steps in ``[0, steps]`` with 0 and ``steps`` added. ``None`` = log-spaced,
    an int = that many log-spaced steps."""
    if save_steps is None:
        return log_steps(steps)
    if isinstance(save_steps, (int, np.integer)):
        return log_steps(steps, int(save_steps))
    s = np.asarray(save_steps, dtype=np.int64)
    if s.ndim != 1 or np.any(s < 0) or np.any(s > steps):
        raise ValueError(f"save_steps must be a 1-D list of steps in [0, {steps}], got {save_steps!r}")
    return np.unique(np.concatenate([[0], s, [steps]]))
