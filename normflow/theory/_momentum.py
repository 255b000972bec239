"""Heavy ball with the radial part of its update removed (sgdp, docs/theory.md §7.3)."""

from __future__ import annotations

import numpy as np

from ._context import Context, Prediction, meanfield_prediction, r2_recursion, rms_window, tangent_rotation, window

__all__ = ["predict_sgdp"]


def predict_sgdp(ctx: Context) -> Prediction:
    """sgdp: second-order push only, ``R*⁴ = ηpW²/(2λ(1-β²))`` (docs/theory.md §7.3)."""
    beta = ctx.momentum
    le = 1 / np.sqrt(1 - beta**2)
    norms, full = meanfield_prediction(ctx, lr_scale=le, decay_scale=1.0)
    theta = tangent_rotation(ctx.lrs(), ctx.path("pw2"), full[:-1]) * le
    return Prediction("sgdp", "radial projection: R*⁴ = ηpW²/(2λ(1-β²))", "docs/theory.md §7.3",
                      "second-order push only; E|m|² = pW²/(1-β²) for uncorrelated sources", norms, True,
                      rms_window(theta, window(ctx, True)), {"eta_lambda": ctx.lr * ctx.weight_decay, "beta": beta})
