"""One prediction per optimizer (docs/theory.md §15): :func:`predict` and its table.

``PREDICTIONS[name](ctx)`` returns the :class:`~normflow.theory.Prediction` of the formula that
``docs/theory.md`` derives for optimizer ``name``, evaluated on a run's :class:`Context`. Every
sim, notebook and test that compares a run with the theory goes through :func:`predict`, so the
optimizer → formula choice is written once, here.
"""

from __future__ import annotations

import numpy as np

from . import _adam, _adamw, _lion, _momentum
from ._context import Context, Prediction, meanfield_prediction, rms_window, tangent_rotation, window

__all__ = ["PREDICTIONS", "predict"]


def _sgd(ctx: Context, name: str = "sgd") -> Prediction:
    if ctx.weight_decay == 0:
        norms, full = meanfield_prediction(ctx)
        eq, formula, sec = False, "imprint R⁴ = R₀⁴ + 2η Σ η pW²", "docs/theory.md §5"
    else:
        norms, full = meanfield_prediction(ctx)
        eq, formula, sec = True, "SGD+decay: R⁴ relaxes to R*⁴ = ηpW²/(λ(2-ηλ))", "docs/theory.md §6"
    theta = tangent_rotation(ctx.lrs(), ctx.path("pw2"), full[:-1])
    return Prediction(name, formula, sec,
                      "mean-field map R'² = (1-ηλ)²R² + η²pW²/R² with pW² measured along the run",
                      norms, eq, rms_window(theta, window(ctx, True)),
                      {"eta_lambda": ctx.lr * ctx.weight_decay})


def _gd(ctx: Context) -> Prediction:
    if ctx.flow is None:
        raise ValueError("predict('gd', ctx) needs ctx.flow (the modified-flow norms at ctx.steps)")
    return Prediction("gd", "modified flow dx/dt = -∇L + (η/2)|∇L|²/R² x", "docs/theory.md §4",
                      "Diffrax solve of GD's modified flow at the same times", np.asarray(ctx.flow()), False, None,
                      {})


PREDICTIONS = {
    "gd": _gd,
    "sgd": _sgd,
    "sgd_l2": lambda ctx: _sgd(ctx, "sgd_l2"),  # λx in the gradient = decoupled decay for plain SGD
    "sgdm": _momentum.predict_sgdm,
    "sgdmw": _momentum.predict_sgdmw,
    "sgdp": _momentum.predict_sgdp,
    "adam": _adam.predict_adam,
    "adamw": _adamw.predict_adamw,
    "adam_l2": _adam.predict_adam_l2,
    "adamp": _adam.predict_adamp,
    "lion": _lion.predict_lion,
}


def predict(optimizer: str, ctx: Context) -> Prediction:
    """The docs/theory.md prediction for a run of ``optimizer`` described by ``ctx``.

    **Arguments:**

    - ``optimizer``: a name of :data:`normflow.OPTIMIZERS`.
    - ``ctx``: the run's :class:`~normflow.theory.Context` (hyperparameters and measured
      source statistics).

    **Returns:** a :class:`~normflow.theory.Prediction` (formula, section, predicted norms at
    ``ctx.steps``, predicted angular update per step, regime groups).
    """
    try:
        fn = PREDICTIONS[optimizer]
    except KeyError:
        raise ValueError(f"no prediction for optimizer {optimizer!r}; known: {', '.join(PREDICTIONS)}") from None
    return fn(ctx)
