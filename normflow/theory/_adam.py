"""Adam without decay, Adam with L2 decay, AdamP (docs/theory.md §8.3–§8.5)."""

from __future__ import annotations

import numpy as np

from ._context import Context, Prediction, meanfield_prediction, r2_recursion, rms_window, tangent_rotation, window

__all__ = ["predict_adam", "predict_adam_l2", "predict_adamp"]


def predict_adam(ctx: Context) -> Prediction:
    """Adam without decay: the scale-free random walk ``R² = R₀² + η²d·k`` (docs/theory.md §8.3)."""
    norms, full = r2_recursion(ctx, ctx.dim)
    theta = ctx.lrs()[:, None] * np.sqrt(ctx.dim * (1 - ctx.b1) / (1 + ctx.b1)) / full[:-1]
    return Prediction("adam", "scale-free random walk R² = R₀² + η²d·k", "docs/theory.md §8.3",
                      "each coordinate moves ~η per step whatever the gradient's size", norms, False,
                      rms_window(theta, window(ctx, True)), {})


def predict_adam_l2(ctx: Context) -> Prediction:
    """Adam with L2 decay through the preconditioner (docs/theory.md §8.4); placeholder: AdamW's."""
    norms, full = r2_recursion(ctx, ctx.dim)
    return Prediction("adam_l2", "AdamW: R*² = ηd/(2λ) (not expected to hold)", "docs/theory.md §8.4",
                      "placeholder", norms, True, None, {"eta_lambda": ctx.lr * ctx.weight_decay})


def predict_adamp(ctx: Context) -> Prediction:
    """AdamP: ``R*² = ηd(1-β₁)/(2λ(1+β₁))`` (docs/theory.md §8.5)."""
    c = (1 - ctx.b1) / (1 + ctx.b1)
    norms, full = r2_recursion(ctx, ctx.dim * c)
    theta = ctx.lrs()[:, None] * np.sqrt(ctx.dim * c) / full[:-1]
    return Prediction("adamp", "AdamP: R*² = ηd(1-β1)/(2λ(1+β1))", "docs/theory.md §8.5",
                      "projected Adam step has E|u|² ≈ d(1-β1)/(1+β1) per step", norms, True,
                      rms_window(theta, window(ctx, True)), {"eta_lambda": ctx.lr * ctx.weight_decay})
