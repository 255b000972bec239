"""AdamW at any frequency and finite ηλ (docs/theory.md §8.1–§8.2)."""

from __future__ import annotations

import numpy as np

from ._context import Context, Prediction, meanfield_prediction, r2_recursion, rms_window, tangent_rotation, window

__all__ = ["predict_adamw"]


def predict_adamw(ctx: Context) -> Prediction:
    norms, full = r2_recursion(ctx, ctx.dim)
    c = (1 - ctx.b1) / (1 + ctx.b1)
    theta = ctx.lrs()[:, None] * np.sqrt(ctx.dim * c) / full[:-1]
    return Prediction("adamw", "AdamW: R*² = ηd/(2λ)", "docs/theory.md §8.1", "frequent concepts (p ≫ 1-β₂)",
                      norms, True, rms_window(theta, window(ctx, True)),
                      {"eta_lambda": ctx.lr * ctx.weight_decay})
