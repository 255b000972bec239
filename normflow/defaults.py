"""Per-optimizer default hyperparameters shared by the sims (docs/theory.md §11's regime).

``DEFAULTS[name] = (lr, weight_decay)`` (read from :data:`normflow.optimizers.REGISTRY`) for every optimizer of :data:`normflow.OPTIMIZERS`,
chosen so that, on the lab's standard hierarchy (``HierarchicalTask(depth=3, branching=4,
dim=32)``, batch 64), the angular step ``ε = η|s|/R²`` and ``ηλ`` are small and a run of a few
thousand steps spans several relaxation times (``1/(4ηλ)`` steps for the SGD family,
``~1/(2ηλ)`` for the Adam family). ``gd`` and ``adam`` have no decay (no equilibrium).
"""

from __future__ import annotations

from .optimizers import OPTIMIZERS, REGISTRY

__all__ = ["DEFAULTS", "default_hyper"]

DEFAULTS: dict[str, tuple[float, float]] = {n: (o.lr, o.weight_decay) for n, o in REGISTRY.items()}


def default_hyper(name: str) -> tuple[float, float]:
    """``(lr, weight_decay)`` for optimizer ``name`` (a one-line ``ValueError`` if unknown)."""
    try:
        return DEFAULTS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}") from None
