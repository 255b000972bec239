"""The norm probe on the real model (normflow.real._probe, normflow.experiments.real_probe): its
statistics against references (scipy, closed forms, constructed data with a known answer), and
one quick run in process whose results.json must agree with its own per-word arrays."""

import math

import numpy as np
import pytest
import scipy.stats

from normflow.real import _probe as probe

# ---------------------------------------------------------------------------------------------
# Statistics.


def test_spearman_test_is_scipys_and_drops_nonfinite_pairs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    ref = scipy.stats.spearmanr(x, y)
    r = probe.spearman_test(x, y)
    assert r["rho"] == pytest.approx(ref.statistic, abs=1e-12) and r["p"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert r["n"] == 200 and r["ci95"][0] < r["rho"] < r["ci95"][1]
    x2, y2 = np.r_[x, np.nan, 1.0], np.r_[y, 2.0, np.inf]
    assert probe.spearman_test(x2, y2)["rho"] == pytest.approx(ref.statistic, abs=1e-12)
    assert probe.spearman_test(x2, y2)["n"] == 200
    assert math.isnan(probe.spearman_test([1, 2, 3], [5, 5, 5])["rho"])


def _pingouin_partial(x, y, z):
    """pingouin.partial_corr(method="spearman")'s formula, written out: ranks, their covariance,
    its inverse P, partial r = -P_xy / sqrt(P_xx P_yy), p from t with n - k - 2 dof (k = 1)."""
    ranks = np.stack([scipy.stats.rankdata(a) for a in (x, y, z)])
    prec = np.linalg.inv(np.cov(ranks))
    r = -prec[0, 1] / np.sqrt(prec[0, 0] * prec[1, 1])
    dof = len(x) - 3
    t = r * np.sqrt(dof / (1 - r**2))
    return r, 2 * scipy.stats.t.sf(abs(t), dof)


def test_partial_spearman_matches_pingouins_formula_and_the_closed_form():
    rng = np.random.default_rng(1)
    z = rng.normal(size=500)
    x = np.exp(z) + 0.5 * rng.normal(size=500)
    y = z**3 + rng.normal(size=500) + 0.3 * x
    y[::7] = np.round(y[::7])  # some ties
    r = probe.partial_spearman(x, y, z)
    ref_r, ref_p = _pingouin_partial(x, y, z)
    assert r["rho"] == pytest.approx(ref_r, abs=1e-10) and r["p"] == pytest.approx(ref_p, rel=1e-6)
    rxy, rxz, ryz = (scipy.stats.spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    closed = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert r["rho"] == pytest.approx(closed, abs=1e-10)
    assert r["n"] == 500


def test_partial_spearman_removes_a_shared_cause():
    """x and y both monotone in z plus independent noise: strongly correlated, but ~0 given z;
    and a z that carries nothing leaves the plain Spearman ρ nearly unchanged."""
    rng = np.random.default_rng(2)
    z = rng.uniform(size=4000)
    x = np.exp(3 * z) + 0.3 * rng.normal(size=4000)
    y = z + 0.1 * rng.normal(size=4000)
    assert probe.spearman_test(x, y)["rho"] > 0.5
    assert abs(probe.partial_spearman(x, y, z)["rho"]) < 0.05
    w = rng.normal(size=4000)
    assert probe.partial_spearman(x, y, w)["rho"] == pytest.approx(probe.spearman_test(x, y)["rho"], abs=0.01)


def test_binned_spearman_bins_counts_and_edges():
    rng = np.random.default_rng(3)
    by = np.r_[rng.uniform(1, 2, 50), rng.uniform(2, 3, 30), [3.0] * 4, [0.5, 9.0]]  # 3.0: the closed last bin
    x = rng.normal(size=by.size)
    y = x * np.where(by < 2, 1.0, -1.0) + 0.1 * rng.normal(size=by.size)
    bins = probe.binned_spearman(x, y, by, edges=(1, 2, 3), min_n=10)
    assert [(b["lo"], b["hi"], b["n"]) for b in bins] == [(1, 2, 50), (2, 3, 34)]
    sel = (by >= 2) & (by <= 3)
    assert bins[1]["rho"] == pytest.approx(scipy.stats.spearmanr(x[sel], y[sel]).statistic, abs=1e-12)
    assert bins[0]["rho"] > 0.9 and bins[1]["rho"] < -0.9
    few = probe.binned_spearman(x, y, by, edges=(1, 2, 3), min_n=40)
    assert few[1]["n"] == 34 and math.isnan(few[1]["rho"])
    with pytest.raises(ValueError, match="edges"):
        probe.binned_spearman(x, y, by, edges=(2, 1))


def test_group_medians():
    y = np.array([1.0, 3.0, 2.0, 10.0, 20.0, 30.0, 5.0])
    g = np.array([1, 1, 1, 2, 2, 2, 2])
    by = np.array([1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 2.5])
    m = probe.group_medians(y, g, by, edges=(1, 2, 3), min_n=3)
    assert m[0]["groups"] == [1.0, 2.0] and m[0]["medians"] == [2.0, 20.0] and m[0]["counts"] == [3, 3]
    assert m[0]["n"] == 6 and m[0]["median"] == pytest.approx(6.5)
    assert m[1]["n"] == 1 and m[1]["groups"] == []


def test_two_branch_fit_recovers_an_exact_piecewise_line():
    x = np.logspace(-7, -2, 400)
    lx = np.log10(x)
    ly = 0.3 + np.where(lx < -4.5, 0.5 * (lx + 4.5), -0.1 * (lx + 4.5))
    f = probe.two_branch_fit(x, 10**ly, num_breaks=501)  # -4.5 lies between grid points
    assert f["slope_left"] == pytest.approx(0.5, abs=2e-3) and f["slope_right"] == pytest.approx(-0.1, abs=2e-3)
    assert f["break_log10"] == pytest.approx(-4.5, abs=0.02) and f["at_break"] == pytest.approx(0.3, abs=2e-3)
    assert f["rmse"] < 2e-3 and f["rss_gain"] > 0.99
    assert f["n"] == 400 and f["n_left"] + f["n_right"] == 400
    np.testing.assert_allclose(np.log10(probe.two_branch_curve(f, x)), ly, atol=5e-3)


def test_two_branch_fit_exact_when_the_break_is_on_the_grid():
    """With the true break on the candidate grid the fit is exact (to rounding)."""
    rng = np.random.default_rng(4)
    lx = np.sort(rng.uniform(0.0, 4.0, 300))
    f0 = probe.two_branch_fit(10**lx, np.ones(300), num_breaks=11)
    grid = np.linspace(np.sort(lx)[f0["min_side"] - 1], np.sort(lx)[-f0["min_side"]], 11)
    b = grid[4]
    ly = 1.0 + np.where(lx < b, 0.25 * (lx - b), 0.0)
    f = probe.two_branch_fit(10**lx, 10**ly, num_breaks=11)
    assert f["break_log10"] == pytest.approx(b, abs=1e-12)
    assert f["slope_left"] == pytest.approx(0.25, abs=1e-10) and f["slope_right"] == pytest.approx(0.0, abs=1e-10)
    assert f["rss"] < 1e-20 and f["se_left"] < 1e-8
    assert f["line"]["slope"] == pytest.approx(np.polyfit(lx, ly, 1)[0], abs=1e-10)


def test_two_branch_fit_noisy_line_slopes_and_standard_errors():
    """A straight line with noise: both branches recover the one slope within a few standard errors."""
    rng = np.random.default_rng(5)
    lx = rng.uniform(-8, -2, 3000)
    ly = 0.2 * lx + 0.05 * rng.normal(size=3000)
    f = probe.two_branch_fit(10**lx, 10**ly)
    for side in ("left", "right"):
        assert abs(f[f"slope_{side}"] - 0.2) < 5 * f[f"se_{side}"] + 0.01
    assert f["line"]["slope"] == pytest.approx(0.2, abs=0.005) and 0 <= f["rss_gain"] < 0.01


# ---------------------------------------------------------------------------------------------
# One quick run, in process.


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("safetensors")
    from conftest import run_real_quick

    return run_real_quick(tmp_path_factory, "real_probe")


def test_quick_run_counts_and_figure(run):
    res, out, t = run
    assert res["status"] == "ok" and res["config"]["quick"] is True
    c = res["counts"]
    assert c["eligible"] <= c["single_token"] <= c["single_word_alpha"] <= c["noun_lemmas"]
    assert c["eligible"] > 1000 and c["used"] == len(res["words"]["word"]) == res["config"]["max_words"]
    assert len(set(res["words"]["word"])) == c["used"] and len(set(res["words"]["token_id"])) == c["used"]
    assert (t / "figs" / "real_probe.png").stat().st_size > 20_000
    assert (t / "out" / "real_probe.png").is_file()
    assert res["check"]["encode_texts_max_rel_diff"] < 1e-4
    assert "spearman" in out and "two-branch" in out


def test_quick_run_correlations_recomputed_from_its_arrays(run):
    res, _, _ = run
    w = res["words"]
    freq = np.asarray(w["frequency"], float)
    assert np.all(freq > 0)
    np.testing.assert_allclose(np.asarray(w["zipf"], float), np.log10(freq) + 9, atol=1e-6)
    for norm in ("token_norm", "encoding_norm"):
        v = np.asarray(w[norm], float)
        assert np.all(v > 0)
        cr = res["correlations"][norm]
        ref = scipy.stats.spearmanr(v, np.log10(freq)).statistic
        assert cr["vs_log_frequency"]["rho"] == pytest.approx(ref, abs=1e-9)
        for d in ("depth_first", "depth_generic"):
            dep = np.asarray(w[d], float)
            assert cr[f"vs_{d}"]["rho"] == pytest.approx(scipy.stats.spearmanr(v, dep).statistic, abs=1e-9)
            ref_r, _ = _pingouin_partial(v, dep, freq)
            assert cr[f"vs_{d}_given_frequency"]["rho"] == pytest.approx(ref_r, abs=1e-9)
            assert cr[f"vs_{d}_given_frequency"]["n"] == len(v)
        bins = cr["vs_depth_by_zipf_bin"]
        zipf = np.asarray(w["zipf"], float)
        dep = np.asarray(w[res["depth_used"]], float)
        assert sum(b["n"] for b in bins) == len(v)
        for b in bins:
            sel = (zipf >= b["lo"]) & ((zipf < b["hi"]) | (b["hi"] == bins[-1]["hi"]) & (zipf <= b["hi"]))
            assert b["n"] == int(sel.sum())
            if b["rho"] is not None:
                assert b["rho"] == pytest.approx(scipy.stats.spearmanr(v[sel], dep[sel]).statistic, abs=1e-9)
        f = res["fits"][norm]
        lx, ly = np.log10(freq), np.log10(v)
        u = lx - f["break_log10"]
        pred = f["at_break"] + f["slope_left"] * np.minimum(u, 0) + f["slope_right"] * np.maximum(u, 0)
        assert float(np.sum((pred - ly) ** 2)) == pytest.approx(f["rss"], rel=1e-6)
        assert f["rss"] <= f["line"]["rss"] + 1e-9
