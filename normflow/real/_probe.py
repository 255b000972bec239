"""Statistics of the norm probe on the real model: norms against frequency and WordNet depth.

:mod:`normflow.experiments.real_probe` measures, per English noun that is one whole-word token of
all-MiniLM-L6-v2, two norms (its token-table row and its mean-pooled encoding before the model's
L2 normalisation) and asks how they go with the word's corpus frequency and its WordNet depth
(specificity). The functions here are the host-side statistics it reports: pure NumPy/SciPy on
recorded arrays, no JAX, no state.

- :func:`spearman_test`: Spearman's ρ with its p-value and n (``scipy.stats.spearmanr``) and an
  approximate 95 % interval (Fisher z with the Fieller–Hartley–Pearson variance ``1.06/(n−3)``).
- :func:`partial_spearman`: Spearman's ρ of x and y given z: the Pearson correlation of the
  residuals of rank(x) and rank(y) after a least-squares line on rank(z) (the usual definition;
  pingouin's ``partial_corr(method="spearman")`` computes the same number from the inverse
  covariance of the ranks).
- :func:`binned_spearman`: Spearman's ρ within bins of a third variable (zipf bins of frequency).
- :func:`group_medians`: medians of y per (bin, group) cell, for median-line plots.
- :func:`two_branch_fit`: a continuous piecewise-linear fit of log10 y on log10 x with one
  breakpoint chosen by least squares over a grid (:func:`normflow.stats.hinge_fit`), beside the
  one-line fit. It is a description of the shape, not a model of it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.stats

from ..stats import hinge_fit, loglog_fit

__all__ = ["spearman_test", "partial_spearman", "binned_spearman", "group_medians", "two_branch_fit", "two_branch_curve",
           "ZIPF_EDGES"]

ZIPF_EDGES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
"""Default zipf bin edges: bins one wide, ``[1, 2), …, [7, 8]`` (zipf = log10 of the frequency per
10⁹ words; wordfreq's scale ends near 8, "the" is 7.7)."""


def _finite(*cols) -> tuple[np.ndarray, ...]:
    arrs = [np.asarray(c, np.float64).ravel() for c in cols]
    if len({a.size for a in arrs}) != 1:
        raise ValueError(f"the columns need the same length, got {[a.size for a in arrs]}")
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrs])
    return tuple(a[ok] for a in arrs)


def _ci(rho: float, n: int, level: float = 0.95) -> tuple[float, float]:
    if not (n > 3 and math.isfinite(rho)):
        return float("nan"), float("nan")
    z = math.atanh(min(max(rho, -1 + 1e-15), 1 - 1e-15))
    h = scipy.stats.norm.ppf(0.5 + level / 2) * math.sqrt(1.06 / (n - 3))
    return math.tanh(z - h), math.tanh(z + h)


def spearman_test(x, y) -> dict[str, Any]:
    """Spearman's rank correlation of ``x`` and ``y`` over their finite pairs.

    **Arguments:**

    - `x`, `y`: equal-length array-likes; a pair where either is NaN/inf is dropped.

    **Returns:** ``{"rho", "p", "n", "ci95"}``: ``scipy.stats.spearmanr``'s ρ and two-sided p-value,
    the number of pairs used, and an approximate 95 % interval ``tanh(atanh ρ ± 1.96·√(1.06/(n−3)))``
    (Fieller, Hartley and Pearson 1957). NaNs when fewer than 3 pairs remain or a side is constant.
    """
    x, y = _finite(x, y)
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"rho": float("nan"), "p": float("nan"), "n": n, "ci95": [float("nan"), float("nan")]}
    r = scipy.stats.spearmanr(x, y)
    rho, p = float(r.statistic), float(r.pvalue)
    return {"rho": rho, "p": p, "n": n, "ci95": list(_ci(rho, n))}


def _residual(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    design = np.stack([np.ones_like(z), z], axis=1)
    coef, *_ = np.linalg.lstsq(design, a, rcond=None)
    return a - design @ coef


def partial_spearman(x, y, z) -> dict[str, Any]:
    """Spearman's partial correlation of ``x`` and ``y`` given one covariate ``z``.

    The ranks of x, y and z (ties averaged, ``scipy.stats.rankdata``) are taken over the rows
    where all three are finite; rank(x) and rank(y) are each regressed on rank(z) (least squares
    with an intercept) and the result is the Pearson correlation of the two residuals. With one
    covariate this equals ``(ρxy − ρxz ρyz) / √((1 − ρxz²)(1 − ρyz²))`` in Spearman ρ's, and the
    precision-matrix formula ``−P_xy/√(P_xx P_yy)`` on the ranks that pingouin uses.

    **Arguments:**

    - `x`, `y`: the two variables (e.g. a norm and WordNet depth).
    - `z`: the covariate held fixed (e.g. log frequency; any monotone transform gives the same ranks).

    **Returns:** ``{"rho", "p", "n", "ci95"}``: the partial ρ, its two-sided p-value from Student's t
    with ``n − 3`` degrees of freedom (as pingouin), the rows used, and the Fisher-z interval of
    :func:`spearman_test` with ``n − 4`` in place of ``n − 3``. NaNs when fewer than 4 rows remain or
    a residual is constant.
    """
    x, y, z = _finite(x, y, z)
    n = int(x.size)
    nan = {"rho": float("nan"), "p": float("nan"), "n": n, "ci95": [float("nan"), float("nan")]}
    if n < 4:
        return nan
    rx, ry, rz = (scipy.stats.rankdata(a) for a in (x, y, z))
    ex, ey = _residual(rx, rz), _residual(ry, rz)
    sx, sy = float(np.sqrt(ex @ ex)), float(np.sqrt(ey @ ey))
    scale = np.sqrt(float(rx @ rx) * float(ry @ ry))
    if sx * sy <= 1e-12 * scale:
        return nan
    rho = float(np.clip(ex @ ey / (sx * sy), -1.0, 1.0))
    dof = n - 3
    if abs(rho) < 1.0:
        t = rho * math.sqrt(dof / (1.0 - rho**2))
        p = float(2.0 * scipy.stats.t.sf(abs(t), dof))
    else:
        p = 0.0
    return {"rho": rho, "p": p, "n": n, "ci95": list(_ci(rho, n - 1))}


def _bin_index(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: ``i`` for ``edges[i] <= v < edges[i+1]``, the last bin closed; −1 outside."""
    i = np.searchsorted(edges, v, side="right") - 1
    i[v == edges[-1]] = len(edges) - 2
    i[(v < edges[0]) | (v > edges[-1]) | ~np.isfinite(v)] = -1
    return i


def binned_spearman(x, y, by, edges=ZIPF_EDGES, *, min_n: int = 10) -> list[dict[str, Any]]:
    """Spearman's ρ of ``x`` and ``y`` within bins of ``by``.

    **Arguments:**

    - `x`, `y`: the two variables.
    - `by`: the binning variable (e.g. zipf frequency), same length.
    - `edges`: increasing bin edges; bin ``i`` is ``[edges[i], edges[i+1])``, the last one closed.
    - `min_n`: bins with fewer finite pairs get ρ = NaN (their n is still reported).

    **Returns:** one dict per bin, ``{"lo", "hi", "n", "rho", "p", "ci95"}`` (:func:`spearman_test`
    within the bin).
    """
    edges = np.asarray(edges, np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"edges: need at least two increasing values, got {edges.tolist()}")
    x, y, by = (np.asarray(a, np.float64).ravel() for a in (x, y, by))
    if not x.size == y.size == by.size:
        raise ValueError(f"x, y and by need the same length, got {x.size}, {y.size}, {by.size}")
    idx = _bin_index(by, edges)
    out = []
    for i in range(edges.size - 1):
        sel = idx == i
        r = spearman_test(x[sel], y[sel])
        if r["n"] < min_n:
            r = {**r, "rho": float("nan"), "p": float("nan"), "ci95": [float("nan"), float("nan")]}
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), **r})
    return out


def group_medians(y, group, by, edges=ZIPF_EDGES, *, min_n: int = 5) -> list[dict[str, Any]]:
    """Median of ``y`` for each value of ``group`` within each bin of ``by``.

    **Arguments:**

    - `y`: the values (a norm).
    - `group`: integer-valued labels (WordNet depth).
    - `by`, `edges`: the binning, as in :func:`binned_spearman`.
    - `min_n`: cells with fewer values are left out.

    **Returns:** one dict per bin, ``{"lo", "hi", "n", "median", "groups": [g…], "medians": [m…],
    "counts": [c…]}``: the bin's overall median and, per group with at least ``min_n`` values (sorted
    by group), its median and count.
    """
    y, group, by = (np.asarray(a, np.float64).ravel() for a in (y, group, by))
    if not y.size == group.size == by.size:
        raise ValueError(f"y, group and by need the same length, got {y.size}, {group.size}, {by.size}")
    edges = np.asarray(edges, np.float64)
    idx = _bin_index(by, edges)
    ok = np.isfinite(y) & np.isfinite(group)
    out = []
    for i in range(edges.size - 1):
        sel = ok & (idx == i)
        gs, ms, cs = [], [], []
        for g in np.unique(group[sel]):
            v = y[sel & (group == g)]
            if v.size >= min_n:
                gs.append(float(g))
                ms.append(float(np.median(v)))
                cs.append(int(v.size))
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "n": int(sel.sum()),
                    "median": float(np.median(y[sel])) if sel.any() else float("nan"),
                    "groups": gs, "medians": ms, "counts": cs})
    return out


def two_branch_fit(x, y, *, num_breaks: int = 200, min_side_frac: float = 0.05, min_side: int = 5) -> dict[str, Any]:
    """A continuous two-branch (piecewise linear) fit of ``log10 y`` on ``log10 x``.

    ``log10 y = c + b_left · min(u, 0) + b_right · max(u, 0)``, ``u = log10 x − log10 x_break``: two
    straight lines in log–log that meet at ``x_break``. For each of ``num_breaks`` candidate
    breakpoints, evenly spaced in log10 x so that each branch keeps at least
    ``max(min_side, min_side_frac·n)`` points, the three coefficients are linear least squares;
    the candidate with the least residual sum of squares wins (:func:`normflow.stats.hinge_fit`).
    The one-line fit is reported beside it, so that the gain from the break can be judged. A
    description of the curve's shape: nothing here says a corner exists.

    **Arguments:**

    - `x`, `y`: positive values (frequency, norm); points not finite and positive are dropped.
    - `num_breaks`: candidate breakpoints on the grid.
    - `min_side_frac`, `min_side`: the least share and number of points on each side of the break.

    **Returns:** a dict: ``n``; ``break_log10`` and ``x_break``; ``slope_left``, ``slope_right``
    (d log10 y / d log10 x on each side) with their OLS standard errors at the chosen break
    (``se_left``, ``se_right``; they ignore the choice of the break); ``at_break`` (log10 y there);
    ``n_left``, ``n_right``; ``rss`` and ``rmse`` (log10 units); ``line`` (the one-line fit: slope,
    intercept, rss, rmse); ``rss_gain`` = 1 − rss/line rss.
    """
    lx, ly = (np.log10(a) for a in _positive(x, y))
    n = int(lx.size)
    side = int(max(min_side, math.ceil(min_side_frac * n)))
    line = loglog_fit(10.0**lx, 10.0**ly)
    line_rss = float(np.sum((line.intercept + line.slope * lx - ly) ** 2)) if n >= 2 else float("nan")
    out: dict[str, Any] = {"n": n, "num_breaks": int(num_breaks), "min_side": side,
                           "line": {"slope": line.slope, "intercept": line.intercept, "rss": line_rss,
                                    "rmse": math.sqrt(line_rss / n) if n else float("nan")}}
    h = hinge_fit(10.0**lx, 10.0**ly, num_breaks=num_breaks, min_side=side)
    if not math.isfinite(h.x_break):
        nan = float("nan")
        return {**out, "break_log10": nan, "x_break": nan, "slope_left": nan, "slope_right": nan, "se_left": nan,
                "se_right": nan, "at_break": nan, "n_left": 0, "n_right": 0, "rss": nan, "rmse": nan, "rss_gain": nan}
    b = math.log10(h.x_break)
    u = lx - b
    design = np.stack([np.ones(n), np.minimum(u, 0.0), np.maximum(u, 0.0)], axis=1)
    dof = max(n - 3, 1)
    cov = np.linalg.pinv(design.T @ design) * (h.rss / dof)
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return {**out, "break_log10": b, "x_break": h.x_break, "slope_left": h.slope_left, "slope_right": h.slope_right,
            "se_left": float(se[1]), "se_right": float(se[2]), "at_break": h.intercept,
            "n_left": int(np.sum(u < 0)), "n_right": int(np.sum(u >= 0)), "rss": h.rss,
            "rmse": math.sqrt(h.rss / n), "rss_gain": 1.0 - h.rss / line_rss if line_rss > 0 else float("nan")}


def _positive(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _finite(x, y)
    ok = (x > 0) & (y > 0)
    return x[ok], y[ok]


def two_branch_curve(fit: dict[str, Any], x) -> np.ndarray:
    """The fitted two-branch curve of :func:`two_branch_fit` at ``x`` (returns y, not log10 y).

    **Arguments:**

    - `fit`: the dict :func:`two_branch_fit` returned.
    - `x`: positive points.

    **Returns:** ``10 ** (at_break + slope_left·min(u, 0) + slope_right·max(u, 0))``, ``u = log10 x − break_log10``.
    """
    u = np.log10(np.asarray(x, np.float64)) - fit["break_log10"]
    return 10.0 ** (fit["at_break"] + fit["slope_left"] * np.minimum(u, 0.0) + fit["slope_right"] * np.maximum(u, 0.0))
