"""normflow.stats: the fits the sims report, against cases with a known answer."""

import numpy as np
import pytest

from normflow import DEFAULTS, OPTIMIZERS, stats


def test_loglog_fit_recovers_a_power_law_and_drops_bad_points():
    x = np.geomspace(1e-3, 1e2, 30)
    y = 3.0 * x**1.7
    fit = stats.loglog_fit(np.r_[x, 0.0, np.nan, 1.0], np.r_[y, 1.0, 1.0, -2.0])
    assert fit.n == 30
    assert fit.slope == pytest.approx(1.7, rel=1e-12) and fit.intercept == pytest.approx(np.log10(3.0), rel=1e-12)
    assert fit.r == pytest.approx(1.0, abs=1e-12)
    assert np.isnan(stats.loglog_fit([1.0], [2.0]).slope)


def test_rankdata_averages_ties_and_spearman_matches_hand_values():
    np.testing.assert_array_equal(stats.rankdata([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks x = (1.5, 1.5, 3, 4), y = (1, 2, 3, 4): Pearson r of the ranks by hand
    rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1, 2, 3, 4.0])
    assert stats.spearman([0, 0, 1, 2], [1, 2, 3, 4]) == pytest.approx(np.corrcoef(rx, ry)[0, 1], rel=1e-12)
    assert np.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))
    # invariant under monotone maps
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert stats.spearman(a, b) == pytest.approx(stats.spearman(np.exp(a), b**3), rel=1e-12)


def test_hinge_fit_finds_the_break_and_both_slopes():
    x = np.geomspace(1e-4, 1.0, 41)
    y = np.sqrt(np.minimum(x, 1e-2)) * 7.0  # slope 1/2 below p = 1e-2, flat above
    fit = stats.hinge_fit(x, y, num_breaks=401)
    assert np.log10(fit.x_break) == pytest.approx(-2.0, abs=0.01)
    assert fit.slope_left == pytest.approx(0.5, abs=1e-3) and fit.slope_right == pytest.approx(0.0, abs=1e-3)
    assert fit.rss < 1e-6 and fit.n == 41
    assert np.isnan(stats.hinge_fit(x[:4], y[:4]).x_break)


def test_defaults_cover_every_optimizer():
    assert set(DEFAULTS) == set(OPTIMIZERS)
    assert all(lr > 0 and wd >= 0 for lr, wd in DEFAULTS.values())
    assert DEFAULTS["adam"][1] == 0.0  # adam takes no decay (check_optimizer_args)
