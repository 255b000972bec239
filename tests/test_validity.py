"""normflow.validity (docs/theory.md §16): the map's pieces against direct computations, the
shipped regions against the errors they were read from, and the quick experiment in process."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_experiment

from normflow import validity as va
from normflow.defaults import DEFAULTS

ROOT_DIR = Path(__file__).resolve().parents[1]


def test_hyperparameters_put_the_axis_value_where_its_group_says():
    v = np.array([1e-4, 1e-3])
    hp = va.hyperparameters(va.FAMILIES["sgd"], v)
    np.testing.assert_allclose(hp["lr"] * hp["weight_decay"], v)
    hp = va.hyperparameters(va.FAMILIES["adamw_b2"], v)
    np.testing.assert_allclose(1 - hp["b2"], v)
    assert np.all(hp["weight_decay"] == va.FAMILIES["adamw_b2"].weight_decay)
    hp = va.hyperparameters(va.FAMILIES["sgdm_beta"], np.array([0.1, 1.0]))
    np.testing.assert_allclose(hp["momentum"], [0.9, 0.0])
    np.testing.assert_allclose(hp["b1"], hp["momentum"])


def test_every_map_spans_two_decades_and_contains_the_main_jobs_default():
    for f in va.FAMILIES.values():
        assert f.hi / f.lo >= 100 - 1e-9, f.name
        lr, wd = DEFAULTS[f.optimizer]
        v = {"eta_lambda": lr * wd, "one_minus_b2": 1 - f.b2, "one_minus_momentum": 1 - f.momentum}[f.axis]
        assert f.lo <= v * (1 + 1e-9) and v <= f.hi * (1 + 1e-9), f.name


def _fake_map(err):
    f = va.FAMILIES["sgd"]
    values = np.geomspace(f.lo, f.hi, err.shape[0])
    p = np.geomspace(0.01, 1, err.shape[1])
    z = np.zeros_like(err)
    return va.FamilyMap(f, values, p, np.geomspace(0.008, 1.2, err.shape[1] + 1), err, z, z, z,
                        np.ones(err.shape[1], int), np.zeros(err.shape[0], bool), 100, 1, [])


def test_region_is_read_off_the_map():
    rng = np.random.default_rng(0)
    err = rng.uniform(-0.12, 0.12, (5, 4))
    fmap = _fake_map(err)
    reg = va.region(fmap)
    ok = np.abs(err) <= 0.05
    assert reg["points_holding"] == ok.sum() and reg["points"] == err.size
    g = fmap.values[:, None] / fmap.p[None, :]
    assert reg["group_max"] == pytest.approx(g[~ok].min())
    assert np.all(ok[g < reg["group_max"]])  # below the bound every point holds
    for b, row in enumerate(reg["by_p"]):
        assert row["holds_at"] == pytest.approx(list(fmap.values[ok[:, b]]))
        first_bad = np.flatnonzero(~ok[:, b])
        expect = None if (first_bad.size and first_bad[0] == 0) else fmap.values[(first_bad[0] if first_bad.size else 5) - 1]
        assert row["all_hold_up_to"] == (None if expect is None else pytest.approx(expect))


def _regions(err):
    fmap = _fake_map(err)
    return {"families": {"sgd": va.to_json(fmap)}}, fmap


def test_check_reads_the_nearest_point_and_names_the_miss():
    err = np.zeros((3, 3))
    err[2, 0] = 0.2  # large ηλ, rare concepts: outside
    regions, fmap = _regions(err)
    lr = 0.5
    inside = va.check("sgd", lr=lr, weight_decay=fmap.values[0] / lr, p=[0.5, 1.0], regions=regions)
    assert inside.inside is True and inside.family == "sgd"
    out = va.check("sgd", lr=lr, weight_decay=fmap.values[2] / lr, p=[0.011, 0.9], regions=regions)
    assert out.inside is False and "1 of 2 concepts" in out.message and "20%" in out.message
    # below the smallest measured ηλ: read at the smallest; above the largest: unmeasured
    assert va.check("sgd", lr=lr, weight_decay=fmap.values[0] / lr / 10, p=[0.01], regions=regions).inside is True
    assert va.check("sgd", lr=lr, weight_decay=fmap.values[2] / lr * 10, p=[0.5], regions=regions).inside is None
    # sgd_l2's step is sgd's; adam has no map
    assert va.check("sgd_l2", lr=lr, weight_decay=fmap.values[0] / lr, p=[0.5], regions=regions).inside is True
    assert va.check("adam", lr=0.01, weight_decay=0.0, p=[0.5], regions=regions).inside is None


SHIPPED = va.load_regions()


@pytest.mark.skipif(not SHIPPED, reason="no shipped regions")
def test_shipped_regions_are_the_maps_they_were_read_from():
    """normflow/_data/validity.json (a full `normflow validity` run): every map of FAMILIES, at
    least 8 x 8 points over two decades of each axis with 3 seeds, and each stored region is
    region() of its stored errors; the main job's verdict is check() of the stored map."""
    import jax
    import jax.numpy as jnp

    import normflow as nf

    assert set(SHIPPED["families"]) == set(va.FAMILIES)
    task = nf.HierarchicalTask(depth=3, branching=4, dim=32, key=jax.random.key(0), dtype=jnp.float32)
    p_main = np.asarray(task.frequency(64))
    for name, f in SHIPPED["families"].items():
        fam = va.FAMILIES[name]
        err = np.array(f["error"], dtype=float)
        assert err.shape[0] >= 8 and err.shape[1] >= 8 and f["seeds"] >= 3, name
        assert f["values"][-1] / f["values"][0] >= 99, name
        assert f["p"][-1] / f["p"][0] >= (5 if fam.concepts else 50), name  # adam_l2_frequent: p >= 0.05
        assert va.region(va.from_json(f)) == f["region"], name
        lr, wd = DEFAULTS[fam.optimizer]
        c = va.check(fam.optimizer, lr=lr, weight_decay=wd, p=p_main, b2=fam.b2,
                     regions={"families": {name: f}})
        assert c.inside == f["main_job_default"]["inside"], name


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    t = tmp_path_factory.mktemp("validity")
    rc, stdout, stderr = run_experiment("validity", ["--quick", "--quiet", "--out", str(t / "out"),
                                                     "--figures", str(t / "figs")])
    assert rc == 0, stderr[-3000:]
    return json.loads((t / "out" / "results.json").read_text()), stdout, t


def test_quick_run_writes_maps_figures_and_regions(quick):
    res, stdout, t = quick
    assert res["status"] == "ok" and set(res["maps"]) == {"sgd"}
    sde = res["sde"]["modified_drift"]
    assert len(sde["lr"]) == 1 and sde["mean_sgd"][0] > 0 and (t / "figs" / "validity_sde.png").stat().st_size > 10_000
    for name, m in res["maps"].items():
        assert (t / "figs" / f"validity_{name}.png").stat().st_size > 10_000
        assert np.array(m["error"], dtype=float).shape == (3, 5)
        assert va.region(va.from_json(m)) == m["region"]
        assert name in stdout


def test_quick_sgd_map_holds_where_the_angular_step_is_small(quick):
    """docs/theory.md §6: the mean-field map's relative error on R is O(ε²) with ε² ≈ 2ηλ/p at
    equilibrium. In the quick map's most frequent bin (p ≈ 0.8) ε² ≤ 0.03 at every ηλ measured,
    so every point there holds within 5 %; at the rarest bin and the largest ηλ, ε² ≈ 0.9 and
    the first-order picture must fail by more than 5 %."""
    res, _, _ = quick
    m = res["maps"]["sgd"]
    err = np.array(m["error"], dtype=float)
    p = np.asarray(m["p"])
    eps2 = 2 * np.asarray(m["values"])[:, None] / p[None, :]
    assert eps2[:, -1].max() < 0.03
    assert np.all(np.abs(err[:, -1]) < 0.05)
    assert eps2[-1, 0] > 0.5 and abs(err[-1, 0]) > 0.05


# docs/theory.md §16 quotes these numbers of the shipped maps: (text on the page, the number
# recomputed from normflow/_data/validity.json, the rounding the page uses)
def _err(f, a, b):
    return 100 * SHIPPED["families"][f]["error"][a][b]


QUOTED = [
    ("`ηλ/p ≈ 0.07`", lambda: SHIPPED["families"]["sgd"]["region"]["group_max"], 0.005),
    ("+443 %", lambda: _err("sgd", -1, 0), 0.5),
    ("(−87 % at", lambda: _err("adamw", -1, 0), 0.5),
    ("`ηλ/p ≈ 0.0075`", lambda: SHIPPED["families"]["sgdm"]["region"]["group_max"], 0.00005),
    ("`ηλ/p ≈ 0.009`", lambda: SHIPPED["families"]["sgdmw"]["region"]["group_max"], 0.0005),
    ("`0.018`", lambda: SHIPPED["families"]["sgdp"]["region"]["group_max"], 0.0005),
    ("up to ≈ 0.27", lambda: SHIPPED["families"]["sgdm_beta"]["region"]["group_max"], 0.005),
    ("up to `ηλ/p ≈ 0.04`", lambda: SHIPPED["families"]["adamw"]["region"]["group_max"], 0.005),
    ("`(1−β₂)/p` up to 0.25", lambda: SHIPPED["families"]["adamw_b2"]["region"]["group_max"], 0.005),
    ("(+30 %)", lambda: _err("adamw_b2", -1, 0), 0.5),
    ("`ηλ/p ≈ 0.014`", lambda: SHIPPED["families"]["adam_l2_frequent"]["region"]["group_max"], 0.0005),
    ("step 619", lambda: SHIPPED["families"]["adam_l2"]["blowups"][0]["step"], 0),
    ("(−18 % at", lambda: _err("adamp", 0, 0), 0.5),
    ("(+34 %)", lambda: _err("lion", 0, 0), 0.5),
    ("(−42 % at", lambda: min(SHIPPED["families"]["lion"]["error"][-1]) * 100, 0.5),
]


@pytest.mark.skipif(not SHIPPED, reason="no shipped regions")
@pytest.mark.parametrize("text, value, rounding", QUOTED, ids=[q[0] for q in QUOTED])
def test_theory_page_quotes_the_shipped_maps(text, value, rounding):
    from pathlib import Path
    import re

    page = (Path(__file__).resolve().parents[1] / "docs" / "theory.md").read_text(encoding="utf-8")
    sec = page.split("## §16 The validity map", 1)[1]
    assert text in sec, text
    quoted = float(re.findall(r"[−+-]?\d+(?:\.\d+)?", text.replace("−", "-"))[-1 if "β" in text else 0])
    v = value()
    assert abs(v - quoted) <= rounding + 1e-12, (text, v)


def test_path_errors_are_the_largest_along_the_path():
    """_bin_errors over T compared times: the signed error of largest size, per concept the
    largest, against a direct computation on a 2-bin, 3-time toy map."""
    p = np.array([0.1, 0.1, 0.5, 0.5])
    idx = np.array([0, 0, 1, 1])
    th = np.ones((1, 2, 3, 4))
    obs = th.copy()
    obs[0, :, 1, :2] = 0.9   # bin 0 misses by -10 % at t = 1
    obs[0, :, 2, :2] = 1.05  # and +5 % at t = 2
    obs[0, 0, 0, 2] = 1.2    # seed 0, concept 2: +20 % at t = 0; seed 1 is exact
    err, med, worst, spread, counts, pb = va._bin_errors(obs, th, p, idx, 2)
    np.testing.assert_allclose(err[0], [-0.10, 0.05])
    np.testing.assert_allclose(worst[0], [0.10, 0.10])
    np.testing.assert_allclose(spread[0], [0.0, 0.10])
    np.testing.assert_array_equal(counts, [2, 2])
    np.testing.assert_allclose(pb, [0.1, 0.5])


def test_path_maps_span_two_decades_around_the_main_jobs_learning_rate():
    for f in va.PATH_FAMILIES.values():
        assert f.axis == "lr" and f.weight_decay == 0 and f.stats > 0, f.name
        assert f.hi / f.lo >= 100 - 1e-9, f.name
        lr, wd = DEFAULTS[f.optimizer]
        assert wd == 0 or f.optimizer == "sgd", f.name
        assert f.lo <= lr <= f.hi, f.name


def test_package_data_replaces_the_runs_maps_and_keeps_the_rest():
    """normflow.validity.package_data (what --update-package-data writes): a run of the path maps
    goes under "paths" and leaves the equilibrium maps and the SDE as shipped; an equilibrium run
    replaces its maps by name; an unknown map name is refused."""
    shipped = {"source": "x", "families": {"sgd": {"v": 1}, "lion": {"v": 2}}, "sde": {"s": 1}}
    run = {"families": ["gd", "adam"], "se_batches": 256}
    new = va.package_data(shipped, {"gd": {"v": 3}, "adam": {"v": 4}}, None, run=run)
    assert new["families"] == shipped["families"] and new["sde"] == {"s": 1} and new["source"] == "x"
    assert new["paths"] == {"gd": {"v": 3}, "adam": {"v": 4}}
    assert new["runs"] == {"gd": run, "adam": run}
    assert "paths" not in shipped  # the input is not changed
    again = va.package_data(new, {"sgd": {"v": 5}}, {"s": 2}, run={"families": ["sgd"]})
    assert again["families"] == {"sgd": {"v": 5}, "lion": {"v": 2}} and list(again["families"]) == ["sgd", "lion"]
    assert again["paths"] == new["paths"] and again["sde"] == {"s": 2}
    assert again["runs"]["gd"] == run and again["runs"]["sgd"] == again["runs"]["sde"] == {"families": ["sgd"]}
    with pytest.raises(ValueError, match="unknown maps"):
        va.package_data(shipped, {"nope": {}})


COMMITTED_PATHS = ROOT_DIR / "docs" / "results" / "validity" / "paths.json"


@pytest.mark.skipif(not SHIPPED.get("paths"), reason="no shipped path regions")
def test_shipped_path_maps_are_the_committed_path_run():
    """The shipped path maps are what `normflow validity --families gd,sgd_imprint,adam
    --update-package-data` writes from the committed run (docs/results/validity/paths.json):
    each entry is the sim's own map_entry of from_json of the stored map (its errors, its
    region() and the main job's verdict), and the run's flags are recorded."""
    from normflow.experiments import validity as exp

    committed = json.loads(COMMITTED_PATHS.read_text(encoding="utf-8"))
    assert set(SHIPPED["paths"]) == set(va.PATH_FAMILIES)
    defaults = exp.main_job_points()
    for name, f in SHIPPED["paths"].items():
        stored = committed["maps"][name]
        assert f["error"] == stored["error"] and f["values"] == stored["values"] and f["p"] == stored["p"], name
        assert f["region"] == va.region(va.from_json(stored)) == stored["region"], name
        want = exp.map_entry(va.from_json(stored), defaults[va.PATH_FAMILIES[name].optimizer])
        assert json.loads(json.dumps(want)) == f, name
        assert SHIPPED["runs"][name] == {k: committed["config"][k] for k in exp.RUN_FLAGS}, name
    assert np.array(SHIPPED["paths"]["adam"]["error"], dtype=float).shape == (8, 8)


@pytest.mark.skipif(not SHIPPED.get("paths"), reason="no shipped path regions")
def test_check_gives_path_formulas_a_verdict_from_their_maps():
    """check() on the shipped path maps (docs/theory.md §16): GD's modified flow holds at the main
    job's η = 0.5 and misses at η = 10 for frequent concepts (+110 %) but not rare ones; the SGD
    imprint (SGD without decay) holds at η = 0.5 and misses at η = 10 (+10 … +18 %), while SGD
    with decay is still read on the equilibrium map; Adam without decay misses at its main job's
    η = 0.01 (−7 … −11 % on the map's flat task)."""
    p_freq, p_rare = [0.8], [0.011]
    c = va.check("gd", lr=0.5, weight_decay=0.0, p=p_freq)
    assert c.inside is True and c.family == "gd"
    assert va.check("gd", lr=0.5, weight_decay=0.0, p=p_freq, momentum=0.0).inside is True  # GD has no momentum
    c = va.check("gd", lr=10.0, weight_decay=0.0, p=p_freq)
    assert c.inside is False and c.family == "gd" and "at lr=10" in c.message
    assert va.check("gd", lr=10.0, weight_decay=0.0, p=p_rare).inside is True
    assert va.check("gd", lr=20.0, weight_decay=0.0, p=p_rare).inside is None  # beyond the measured η
    c = va.check("sgd", lr=0.5, weight_decay=0.0, p=[0.05, 0.5])
    assert c.inside is True and c.family == "sgd_imprint"
    c = va.check("sgd", lr=10.0, weight_decay=0.0, p=[0.05, 0.5])
    assert c.inside is False and c.family == "sgd_imprint" and "at lr=10" in c.message
    c = va.check("sgd", lr=0.5, weight_decay=1e-3, p=[0.5])
    assert c.inside is True and c.family == "sgd" and c.detail["sgd_imprint"]["status"] == "unmeasured"
    c = va.check("adam", lr=0.01, weight_decay=0.0, p=[0.5])
    assert c.inside is False and c.family == "adam" and c.message.startswith("WARNING validity: adam at lr=0.01")


def test_check_reads_a_value_midway_between_two_measured_ones_at_the_worse():
    err = np.zeros((3, 3))
    err[1, :] = 0.08  # the second ηλ misses
    regions, fmap = _regions(err)
    lr = 0.5
    mid = np.sqrt(fmap.values[0] * fmap.values[1])  # equally far from both in log scale
    for v in (mid * (1 + 1e-12), mid * (1 - 1e-12)):
        c = va.check("sgd", lr=lr, weight_decay=v / lr, p=[0.5], regions=regions)
        assert c.inside is False and "8%" in c.message
    assert va.check("sgd", lr=lr, weight_decay=mid * 0.9 / lr, p=[0.5], regions=regions).inside is True


def test_a_concept_rarer_than_the_map_is_read_at_its_combined_group():
    """p below the map's rarest: read at the rarest p with ηλ scaled by p_min/p (the group ηλ/p kept),
    and "unmeasured" when that scaled ηλ lies beyond the map."""
    from normflow import validity as va

    f = va.load_regions()["families"]["sgd"]
    pmin, values = min(f["p"]), f["values"]
    rare = va.check("sgd", lr=1.0, weight_decay=values[2], p=[pmin * values[2] / values[3]])
    same = va.check("sgd", lr=1.0, weight_decay=values[3], p=[pmin])
    assert rare.detail["sgd"]["worst_map_error"] == pytest.approx(same.detail["sgd"]["worst_map_error"])
    far = va.check("sgd", lr=1.0, weight_decay=values[-1], p=[pmin / 10])
    assert far.detail["sgd"]["status"] == "unmeasured" and far.inside is None
