"""Per-optimizer default hyperparameters shared by the sims (docs/theory.md §11's regime).

``DEFAULTS[name] = (lr, weight_decay)`` for every optimizer of :data:`normflow.OPTIMIZERS`,
chosen so that, on the lab's standard hierarchy (``HierarchicalTask(depth=3, branching=4,
dim=32)``, batch 64), the angular step ``ε = η|s|/R²`` and ``ηλ`` are small and a run of a few
thousand steps spans several relaxation times (``1/(4ηλ)`` steps for the SGD family,
``~1/(2ηλ)`` for the Adam family). ``gd`` and ``adam`` have no decay (no equilibrium).
"""

from __future__ import annotations

from .optimizers import OPTIMIZERS

__all__ = ["DEFAULTS", "default_hyper"]

DEFAULTS: dict[str, tuple[float, float]] = {
    "gd": (0.5, 0.0),
    "sgd": (0.5, 1e-3),
    "sgd_l2": (0.5, 1e-3),
    "sgdm": (0.05, 1e-3),
    "sgdmw": (0.05, 1e-2),
    "sgdp": (0.05, 1e-2),
    "adam": (1e-2, 0.0),
    "adamw": (1e-2, 0.05),
    "adam_l2": (1e-2, 0.05),
    "adamp": (1e-2, 0.05),
    "lion": (1e-3, 0.5),
}
assert set(DEFAULTS) == set(OPTIMIZERS), "every optimizer needs a default"


def default_hyper(name: str) -> tuple[float, float]:
    """``(lr, weight_decay)`` for optimizer ``name`` (a one-line ``ValueError`` if unknown)."""
    try:
        return DEFAULTS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}") from None
