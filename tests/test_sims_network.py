"""sims/balance_fit.py (paper Fig. 3/5) and sims/ntk_drift.py (paper Fig. 1) end to end: each
runs once with --quick, in process; the tests check its numbers against the per-concept
arrays it wrote and against the theory's tolerances."""

import json

import numpy as np
import pytest
from conftest import run_experiment


def _args(out, figs, *extra):
    return ["--quick", "--quiet", "--out", str(out), "--figures", str(figs), *extra]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both quick sims, each run once in this process."""
    done = {}
    for name in ("balance_fit", "ntk_drift"):
        t = tmp_path_factory.mktemp(name)
        rc, _, err = run_experiment(name, _args(t / "out", t / "figs"))
        done[name] = (rc, err, t)
    return done


def _result(runs, name):
    code, err, tmp = runs[name]
    assert code == 0, err[-3000:]
    return json.loads((tmp / "out" / "results.json").read_text()), tmp


@pytest.fixture(scope="module")
def balance(runs):
    return _result(runs, "balance_fit")


@pytest.fixture(scope="module")
def ntk(runs):
    return _result(runs, "ntk_drift")


def _fit(pred, obs):
    pred, obs = np.asarray(pred, float), np.asarray(obs, float)
    ok = np.isfinite(pred) & (pred > 0) & (obs > 0)
    lx, ly = np.log(pred[ok]), np.log(obs[ok])
    return np.polyfit(lx, ly, 1)[0], np.corrcoef(lx, ly)[0, 1], np.exp(np.mean(ly - lx))


def _arr(x):
    return np.array([np.nan if v is None else v for v in x], float)


def test_balance_fit_outputs(balance):
    res, tmp = balance
    assert res["status"] == "ok"
    for name in ("balance_fit.png", "balance_fit_terms.png"):
        assert (tmp / "figs" / name).stat().st_size > 10_000
    assert res["config"]["quick"] is True and res["config"]["seed"] == 0


def test_balance_fit_json_fits_recomputed_from_arrays(balance):
    res, _ = balance
    for name, m in res["models"].items():
        pc = m["per_concept"]
        for kind, pred in pc["predicted"].items():
            f = m["fits"][kind]
            slope, r, ratio = _fit(_arr(pred), pc["norm_observed"])
            assert f["slope"] == pytest.approx(slope, rel=1e-9, abs=1e-12), (name, kind)
            assert f["r"] == pytest.approx(r, rel=1e-9, abs=1e-12), (name, kind)
            assert f["mean_ratio"] == pytest.approx(ratio, rel=1e-9), (name, kind)
        assert res["headline"][name]["plain"] == m["fits"]["plain"]


def test_balance_fit_table_obeys_theory(balance):
    """Free table: D = 0 (float32 rounding), λ_eff = λ exactly, and docs/theory.md §9 (= §6 here)
    predicts the per-concept equilibrium norms. R* ∝ (pW²/λ)^{1/4}, so a factor 2 error in pW² or
    λ moves the mean ratio by 19%: the 15% band catches it; the quick run's ~100 minibatches per
    concept limit r and the slope (measurement noise in pW² attenuates the slope)."""
    res, _ = balance
    m = res["models"]["table"]
    pc = m["per_concept"]
    assert m["median_abs_drift_over_lambda_R"] < 1e-4
    np.testing.assert_allclose(pc["lambda_eff"], m["weight_decay"], rtol=1e-4)
    f = m["fits"]["plain"]
    assert f["r"] > 0.9, f
    assert 0.6 < f["slope"] < 1.4, f
    assert abs(f["mean_ratio"] - 1) < 0.15, f
    assert m["taylor_max_rel_error"] < 1e-3  # the table's step is exactly quadratic in η


def test_balance_fit_network_needs_measured_terms(balance):
    """Network: the second-order expansion of one step holds (Taylor error small); the balance
    closes with measured terms (λ_eff, pW²_eff, D); docs/theory.md §9 as written (plain λ, the
    loss-gradient pW²) underpredicts the norm by a large factor (the finding reported in the
    README), and the NTK drift dominates the decay."""
    res, _ = balance
    m = res["models"]["network"]
    assert m["taylor_max_rel_error"] < 0.05
    meas = m["fits"]["measured"]
    assert meas["r"] > 0.9 and abs(meas["mean_ratio"] - 1) < 0.15, meas
    assert m["fits"]["plain"]["mean_ratio"] > 2.0, m["fits"]["plain"]
    assert m["median_abs_drift_over_lambda_R"] > 10


def test_validity_records(balance, ntk):
    """docs/theory.md §16: the table run is checked against the sgd map at the task's p
    (recomputed here from the config: Zipf weights over ranks, any order); the network and the
    gradient flow have no map, and say so."""
    from normflow import validity

    res, _ = balance
    cfg = res["config"]
    w = np.arange(1, cfg["num_concepts"] + 1, dtype=float) ** -cfg["zipf"]
    p = 1 - (1 - w / w.sum()) ** cfg["batch_size"]
    want = validity.check("sgd", lr=cfg["table_lr"], weight_decay=cfg["table_wd"], p=p)
    keys = {"inside", "map", "message", "detail"}
    v = res["models"]["table"]["validity"]
    assert set(v) == keys
    assert v["inside"] == want.inside and v["map"] == want.family and v["message"] == want.message
    net = res["models"]["network"]["validity"]
    assert set(net) == keys and net["inside"] is None and net["map"] is None and "free table" in net["message"]
    v = ntk[0]["validity"]
    assert set(v) == keys and v["inside"] is None and v["map"] is None and v["detail"] == {}
    assert v["message"] == "validity: gradient flow has no discrete-step formula to map (docs/theory.md §16)"


def test_balance_fit_bad_input_writes_nothing(tmp_path, capsys):
    from conftest import run_experiment

    rc, _, err = run_experiment("balance_fit", _args(tmp_path / "out", tmp_path / "figs", "--window", "1.5"))
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "--window" in err
    assert not (tmp_path / "out").exists()


def test_ntk_drift_table_constant_network_drifts(ntk):
    """The table's norms are conserved to the solver's error bound n_steps·(rtol + atol/R)
    (local error control per accepted step); the network's move by far more than that."""
    res, tmp = ntk
    assert res["status"] == "ok"
    assert (tmp / "figs" / "ntk_drift.png").stat().st_size > 10_000
    h = res["headline"]
    assert h["table_max_rel_norm_change"] <= h["table_drift_bound"]
    assert h["table_max_rel_norm_change"] < 1e-4
    assert h["network_max_rel_norm_change"] > 1e3 * max(h["table_max_rel_norm_change"], h["table_drift_bound"])


def test_ntk_drift_measured_rate_equals_D(ntk):
    """dR/dt from finite differences of the saved norms equals D from radial_drift. Error
    budget of a central difference over 2h: the solver's error in R between the two saves
    (local error control: ~rtol·R) plus float32 rounding (~eps·R), both divided by 2h
    (h = 1e-2·t ≥ 1e-4·t1), plus the O(h²) truncation; recomputed here from the arrays the sim
    wrote. A wrong D (a missing factor, a sign) would miss by O(1)."""
    res, _ = ntk
    pc = res["per_concept"]
    fd, d = np.asarray(pc["network_fd_eval"]), np.asarray(pc["network_drift_eval"])
    scale = np.max(np.abs(pc["network_drift"]))
    err = np.max(np.abs(fd - d)) / scale
    assert err == pytest.approx(res["headline"]["network_fd_vs_drift_worst_rel_error"], rel=1e-9)
    r_max = np.max(pc["network_norms"])
    h_min = np.min(res["eval_h"])
    budget = (res["solver"]["rtol"] + 8 * res["solver"]["eps"]) * r_max / (2 * h_min) / scale
    assert err < budget, (err, budget)
    assert err < 5e-3, err
    # the recorded continuous rate -u_r is the same quantity computed at the saved states
    assert res["headline"]["network_recorded_rate_vs_drift_worst_rel_error"] < 1e-5
    # table: D = 0 and its finite-difference rate is rounding noise only
    assert np.max(np.abs(pc["table_drift_eval"])) < 1e-5
    r_tab = np.max(pc["table_norms"])
    assert np.max(np.abs(pc["table_fd_eval"])) < (res["solver"]["rtol"] + 8 * res["solver"]["eps"]) * r_tab / (2 * h_min)


def test_ntk_drift_votes_sum_to_D(ntk):
    res, _ = ntk
    pc = res["per_concept"]
    votes = np.asarray(pc["network_votes_t0"])
    d0 = np.asarray(pc["network_drift"])[0]
    np.testing.assert_allclose(votes.sum(1), d0, atol=1e-5 * np.max(np.abs(d0)))
    off = ~np.eye(len(d0), dtype=bool)
    assert np.any(votes[off] > 0) and np.any(votes[off] < 0)  # votes of both signs


def test_ntk_drift_bad_input(tmp_path, capsys):
    from conftest import run_experiment

    rc, _, err = run_experiment("ntk_drift", _args(tmp_path / "out", tmp_path / "figs", "--t1", "-1"))
    assert rc == 2 and "--t1" in err
    assert not (tmp_path / "out").exists()
