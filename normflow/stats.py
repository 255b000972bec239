"""Small host-side (NumPy) statistics the sims report: log-log fits, Spearman's rank
correlation, and a two-branch (hinge) fit that locates a crossover.

These run on recorded results after training (not inside ``jit``), take array-likes and
return plain floats in ``NamedTuple``s, and hold no state.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike, Float

__all__ = ["LogLogFit", "HingeFit", "loglog_fit", "rankdata", "spearman", "hinge_fit"]


class LogLogFit(NamedTuple):
    """``log10 y = intercept + slope · log10 x`` by least squares; ``r`` is Pearson's r of the
    logs; ``n`` the number of points used (finite and positive in both)."""

    slope: float
    intercept: float
    r: float
    n: int


class HingeFit(NamedTuple):
    """``log10 y = intercept + slope_left · min(u, 0) + slope_right · max(u, 0)`` with
    ``u = log10(x / x_break)``: two straight branches in log-log that meet at ``x_break``.
    ``rss`` is the residual sum of squares (in log10 units²), ``n`` the number of points."""

    x_break: float
    slope_left: float
    slope_right: float
    intercept: float
    rss: float
    n: int


def _positive_logs(x, y):
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y need the same number of points, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return np.log10(x[ok]), np.log10(y[ok])


def loglog_fit(x: Float[ArrayLike, " n"], y: Float[ArrayLike, " n"]) -> LogLogFit:
    """Least-squares line through ``(log10 x, log10 y)``; points that are not finite and
    positive are dropped. NaNs when fewer than two points (or no spread in x) remain."""
    lx, ly = _positive_logs(x, y)
    n = lx.size
    if n < 2 or np.ptp(lx) == 0:
        return LogLogFit(float("nan"), float("nan"), float("nan"), int(n))
    slope, intercept = np.polyfit(lx, ly, 1)
    r = float(np.corrcoef(lx, ly)[0, 1]) if np.ptp(ly) > 0 else float("nan")
    return LogLogFit(float(slope), float(intercept), r, int(n))


def rankdata(x: Float[ArrayLike, " n"]) -> Float[np.ndarray, " n"]:
    """Ranks 1..n with ties given their average rank (like ``scipy.stats.rankdata``)."""
    x = np.asarray(x, np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(x.size, np.float64)
    # boundaries of runs of equal values
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x: Float[ArrayLike, " n"], y: Float[ArrayLike, " n"]) -> float:
    """Spearman's rank correlation (Pearson's r of the average ranks); NaN if either side is
    constant or fewer than two finite pairs remain."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y need the same number of points, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    if rx.size < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def hinge_fit(
    x: Float[ArrayLike, " n"],
    y: Float[ArrayLike, " n"],
    *,
    num_breaks: int = 200,
    min_side: int = 2,
) -> HingeFit:
    """Fit two log-log branches meeting at ``x_break`` (see :class:`HingeFit`).

    For each candidate break on a grid of ``num_breaks`` points, log-spaced between the
    ``min_side``-th smallest and ``min_side``-th largest ``x`` (so each branch has at least
    ``min_side`` points), the intercept and the two slopes are linear least squares; the break
    with the smallest residual is returned. Points that are not finite and positive are
    dropped; NaNs if fewer than ``2·min_side + 1`` points remain.
    """
    lx, ly = _positive_logs(x, y)
    n = lx.size
    if n < 2 * min_side + 1 or np.ptp(lx) == 0:
        nan = float("nan")
        return HingeFit(nan, nan, nan, nan, nan, int(n))
    s = np.sort(lx)
    lo, hi = s[min_side - 1], s[-min_side]
    best = None
    for b in np.linspace(lo, hi, num_breaks):
        u = lx - b
        a = np.stack([np.ones(n), np.minimum(u, 0.0), np.maximum(u, 0.0)], axis=1)
        coef, *_ = np.linalg.lstsq(a, ly, rcond=None)
        rss = float(np.sum((a @ coef - ly) ** 2))
        if best is None or rss < best[0]:
            best = (rss, b, coef)
    assert best is not None  # the grid of hinges is not empty
    rss, b, (c0, c1, c2) = best
    return HingeFit(float(10**b), float(c1), float(c2), float(c0), rss, int(n))
