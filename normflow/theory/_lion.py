"""Lion with decoupled decay (docs/theory.md §12)."""

from __future__ import annotations

import numpy as np

from ._context import Context, Prediction, meanfield_prediction, r2_recursion, rms_window, tangent_rotation, window

__all__ = ["predict_lion"]


def predict_lion(ctx: Context) -> Prediction:
    """Lion, uncorrelated sign steps: ``|u|² = d`` each step, ``R*² = ηd/(2λ)`` (docs/theory.md §12)."""
    norms, full = r2_recursion(ctx, ctx.dim)
    theta = ctx.lrs()[:, None] * np.sqrt(ctx.dim) / full[:-1]
    return Prediction("lion", "Lion, random-walk sign steps: R*² = ηd/(2λ)", "docs/theory.md §12",
                      "placeholder", norms, True, rms_window(theta, window(ctx, True)),
                      {"eta_lambda": ctx.lr * ctx.weight_decay})
