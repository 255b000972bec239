"""The validity map (docs/theory.md §16): where each formula holds, measured.

A formula of docs/theory.md is derived under small dimensionless groups (§11): the decay per
step ``ηλ``, the angular step per sighting ``ε`` (at an SGD-type equilibrium
``ε² ≈ 2ηλ/p``), the second moment's memory in sightings ``p/(1-β₂)``, the momentum's memory
``1/(1-β₁)``. A :class:`Family` sweeps one of those groups (its ``axis``) over two decades on a
Zipf task whose concepts' frequencies ``p`` span two more, so every run of a family fills one
row of an ``axis × p`` map: one :func:`normflow.sweep` per family (the axis values × the seeds,
all hyperparameters traced, one compile), the source statistics measured at the end of each run
(:func:`normflow.source_energy`), the norms predicted by :func:`normflow.theory.predict` from
them, and the relative error of the time-averaged norm over the last 20 % of the run, per
concept, pooled per ``p`` bin as the main job pools per depth (mean norm of the bin's concepts,
averaged over seeds).

The path formulas (no decay: GD's modified flow, the SGD imprint, Adam without decay;
:data:`PATH_FAMILIES`) sweep the learning rate instead and take the largest error along the run.

:func:`measure_family` returns a :class:`FamilyMap`; :func:`region` reads the 5 % region off a
map; :func:`check` says whether a run lies inside the shipped regions
(``normflow/_data/validity.json``: the equilibrium maps under ``"families"``, the path maps under
``"paths"``, written by ``normflow validity --update-package-data`` through
:func:`package_data`).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["Family", "FAMILIES", "PATH_FAMILIES", "FamilyMap", "TASK", "measure_family", "region", "check", "check_json", "load_regions",
           "Check", "make_task", "to_json", "from_json", "all_hold_up_to", "package_data"]

# The map's task: a flat Zipf task whose p (per minibatch of 64) spans 0.0086 ... 1.
TASK = dict(num_concepts=512, dim=32, zipf_exponent=1.2, spread_range=(0.1, 2.0), context_noise=0.3, batch_size=64)
HOLDS = 0.05  # |relative error| of a bin's mean norm: the main job's "holds"
WINDOW = 0.2  # the last 20 % of the run is averaged, as in the main job


class Family(NamedTuple):
    """One formula's map: the optimizer, the section of docs/theory.md, the swept group.

    ``axis`` is ``"eta_lambda"`` (``weight_decay = v/lr``), ``"one_minus_b2"`` (``b2 = 1-v``)
    or ``"one_minus_momentum"`` (``momentum = b1 = 1-v``); ``lo``/``hi`` its range (log-spaced).
    The other hyperparameters are fixed at the main job's defaults (``normflow.defaults``), and
    ``steps`` is the main job's run length for the optimizer (6000; 20000 for the Adam family and
    Lion, whose norms relax over ~10⁴ steps). ``concepts`` and ``zipf_exponent`` override
    :data:`TASK`'s where a map needs another frequency range."""

    name: str
    optimizer: str
    section: str
    axis: str
    lo: float
    hi: float
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.9
    b2: float = 0.999
    steps: int = 6000
    concepts: int | None = None  # the task's size and Zipf exponent where they differ from TASK
    zipf_exponent: float | None = None
    stats: int = 0  # > 0: a path formula, its source statistics measured at this many log-spaced steps


FAMILIES = {f.name: f for f in (
    Family("sgd", "sgd", "§6", "eta_lambda", 1e-4, 1e-2, lr=0.5),
    Family("sgdm", "sgdm", "§7.1", "eta_lambda", 2e-5, 2e-3, lr=0.05),
    Family("sgdm_beta", "sgdm", "§7.1", "one_minus_momentum", 1e-2, 1.0, lr=0.05, weight_decay=1e-3),
    Family("sgdmw", "sgdmw", "§7.2", "eta_lambda", 1e-4, 1e-2, lr=0.05),
    Family("sgdp", "sgdp", "§7.3", "eta_lambda", 1e-4, 1e-2, lr=0.05),
    Family("adamw", "adamw", "§8.2", "eta_lambda", 2e-4, 2e-2, lr=0.01, steps=20000),
    Family("adamw_b2", "adamw", "§8.2", "one_minus_b2", 1e-3, 1e-1, lr=0.01, weight_decay=0.05, steps=20000),
    Family("adam_l2", "adam_l2", "§8.4", "eta_lambda", 2e-4, 2e-2, lr=0.01, steps=20000),
    # Adam+L2 drives a concept unseen for ~R/η steps to the origin (§8.4, "collapse"): on the
    # two-decade task its rarest concepts do, and the run ends in NaN; this map keeps p >= 0.05
    Family("adam_l2_frequent", "adam_l2", "§8.4", "eta_lambda", 2e-4, 2e-2, lr=0.01, steps=20000, concepts=128,
           zipf_exponent=1.0),
    Family("adamp", "adamp", "§8.5", "eta_lambda", 2e-4, 2e-2, lr=0.01, steps=20000),
    Family("lion", "lion", "§12", "eta_lambda", 2e-4, 2e-2, lr=0.001, b2=0.99, steps=20000),
)}

# Path formulas (no decay, no equilibrium): the learning rate is the swept group, the source
# statistics are measured along each run, the error is the largest along the path. Shipped under
# the package data's "paths" (a separate run: ``normflow validity --families gd,sgd_imprint,adam``).
PATH_FAMILIES = {f.name: f for f in (
    Family("gd", "gd", "§4", "lr", 0.1, 10.0, lr=0.5, steps=3000, stats=8),
    Family("sgd_imprint", "sgd", "§5", "lr", 0.1, 10.0, lr=0.5, steps=3000, stats=12),
    Family("adam", "adam", "§8.3", "lr", 1e-3, 1e-1, lr=0.01, steps=3000, stats=24),
)}

AXIS_LABEL = {"lr": "η (learning rate, no decay)", "eta_lambda": "ηλ (decay per step)", "one_minus_b2": "1 - β₂ (second-moment forgetting per step)",
              "one_minus_momentum": "1 - β (momentum forgetting per step)"}


def hyperparameters(family: Family, values) -> dict[str, np.ndarray]:
    """Per-config ``lr, weight_decay, momentum, b1, b2`` for the axis ``values``."""
    v = np.asarray(values, float)
    hp = dict(lr=np.full_like(v, family.lr), weight_decay=np.full_like(v, family.weight_decay),
              momentum=np.full_like(v, family.momentum), b1=np.full_like(v, family.momentum),
              b2=np.full_like(v, family.b2))
    if family.axis == "lr":
        hp["lr"] = v
    elif family.axis == "eta_lambda":
        hp["weight_decay"] = v / family.lr
    elif family.axis == "one_minus_b2":
        hp["b2"] = 1.0 - v
    elif family.axis == "one_minus_momentum":
        hp["momentum"] = hp["b1"] = 1.0 - v
    else:
        raise ValueError(f"unknown axis {family.axis!r}")
    return hp


class FamilyMap(NamedTuple):
    """A measured map. ``values [A]`` the axis, ``p [B]`` the bins' geometric-mean frequency,
    ``edges [B+1]``; ``error [A, B]`` the relative error of the bin's mean norm (seed-averaged
    norms), ``median``/``worst [A, B]`` the median and largest |error| of the bin's concepts,
    ``seed_spread [A, B]`` the largest difference between single seeds' bin errors,
    ``diverged [A]`` axis values where any seed diverged (the errors there are over the seeds
    that did not; NaN where none survived), ``blowups`` where:
    one dict per diverged run (axis value, seed, step, concept and its p)."""

    family: Family
    values: np.ndarray
    p: np.ndarray
    edges: np.ndarray
    error: np.ndarray
    median: np.ndarray
    worst: np.ndarray
    seed_spread: np.ndarray
    counts: np.ndarray
    diverged: np.ndarray
    steps: int
    seeds: int
    blowups: list = []


def make_task(key, num_concepts: int | None = None, dtype=None, zipf_exponent: float | None = None):
    """The map's flat Zipf task (:data:`TASK`, with ``num_concepts``/``zipf_exponent`` overridden
    where given)."""
    import jax.numpy as jnp

    from .tasks import FlatTask

    t = TASK
    return FlatTask(num_concepts or t["num_concepts"], t["dim"], key=key, frequency="zipf",
                    zipf_exponent=t["zipf_exponent"] if zipf_exponent is None else zipf_exponent,
                    spread_range=t["spread_range"], context_noise=t["context_noise"], dtype=dtype or jnp.float32)


def measure_family(family: Family, task, *, num_values: int = 8, seeds: Sequence[int] = (0, 1, 2), steps: int | None = None,
                   bins: int = 8, se_batches: int = 2048, batch_size: int = 64, key=None) -> FamilyMap:
    """Measure one family's map (one compiled sweep over ``num_values`` axis values × seeds).

    **Arguments:**

    - ``family``: a :class:`Family`.
    - ``task``: the task (:func:`make_task`); its ``frequency(batch_size)`` gives each concept's p.
    - ``num_values``, ``seeds``: the axis grid (log-spaced over ``[lo, hi]``) and the seeds.
    - ``steps``: run length (default ``family.steps``); ``bins``: log-spaced p bins; ``se_batches``: minibatches for the
      source statistics at the end of each run.
    - ``key``: the key of the source-statistics minibatches.

    **Returns:** a :class:`FamilyMap`.
    """
    import jax

    from . import theory
    from .measure import source_energy
    from .sweep import grid, sweep
    from .trajectory import log_steps

    steps = family.steps if steps is None else int(steps)
    values = np.geomspace(family.lo, family.hi, num_values)
    if family.stats:
        return _measure_path(family, task, values, seeds, steps, bins, se_batches, batch_size, key)
    arrays, _ = grid(v=values, seed=np.asarray(seeds))
    hp = hyperparameters(family, arrays["v"])
    w0 = int(round((1 - WINDOW) * steps))
    save = np.unique(np.concatenate([log_steps(steps, 24), np.linspace(w0, steps, 48).round().astype(int)]))
    run = sweep(task, family.optimizer, **hp, seeds=arrays["seed"].astype(int), steps=steps, batch_size=batch_size,
                save_steps=save)
    steps_arr = np.asarray(run.steps[0])
    norms = np.asarray(run.norms, np.float64)  # [C, S, N]
    p = np.asarray(task.frequency(batch_size), np.float64)
    d_step, d_concept = np.asarray(run.diverged_step), np.asarray(run.diverged_concept)
    bad = d_step >= 0
    blowups = [{"axis_value": float(arrays["v"][c]), "seed": int(arrays["seed"][c]), "step": int(d_step[c]) + 1,
                "concept": int(d_concept[c]), "p": float(p[int(d_concept[c])])} for c in np.flatnonzero(bad)]
    key = jax.random.key(12345) if key is None else key
    edges = np.geomspace(p.min() * (1 - 1e-9), p.max() * (1 + 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    win = steps_arr >= w0
    n_cfg, n_seed = len(arrays["v"]), len(seeds)
    obs = np.full((n_cfg, p.size), np.nan)
    th = np.full((n_cfg, p.size), np.nan)
    stats = np.full((n_cfg, 4, p.size), np.nan)  # pw2, mean_sq, var, energy_var at the end of each run
    for c in range(n_cfg):
        if bad[c]:
            continue
        model_c = jax.tree_util.tree_map(lambda a: a[c] if hasattr(a, "ndim") and a.ndim else a, run.model)
        se = source_energy(model_c, task, key=jax.random.fold_in(key, c), batch_size=batch_size, num_batches=se_batches)
        stats[c] = [np.asarray(x, np.float64) for x in (se.pw2, se.mean_sq, se.var, se.energy_var)]
        obs[c] = norms[c][win].mean(0)
    obs = obs.reshape(num_values, n_seed, -1)
    stats = stats.reshape(num_values, n_seed, 4, -1)
    # One prediction per axis value, from the seeds' pooled statistics (the seeds train the same
    # concepts of the same task; pooling averages the statistics' sampling noise), compared with
    # the seed-averaged norms. p is the task's exact frequency (a rare concept may not be drawn in
    # the statistics' minibatches).
    th = np.full((num_values, p.size), np.nan)
    for a in range(num_values):
        alive = ~np.isnan(stats[a]).any(axis=(1, 2))  # seeds that did not diverge
        if not alive.any():
            continue
        c = a * n_seed
        pooled = stats[a][alive].mean(0)
        f = lambda x: np.asarray(x, np.float64)[None]
        ctx = theory.Context(steps=steps_arr, r0=norms[c:c + n_seed, 0].mean(0), stat_steps=np.array([steps]), p=f(p),
                             pw2=f(pooled[0]), mean_sq=f(pooled[1]), var=f(pooled[2]), energy_var=f(pooled[3]),
                             dim=task.dim, lr=float(hp["lr"][c]), weight_decay=float(hp["weight_decay"][c]),
                             total_steps=steps, momentum=float(hp["momentum"][c]), b1=float(hp["b1"][c]),
                             b2=float(hp["b2"][c]))
        th[a] = np.asarray(theory.predict(family.optimizer, ctx).norms, np.float64)[win].mean(0)
    th = np.broadcast_to(th[:, None], obs.shape)
    err, med, worst, spread, counts, pb = _bin_errors(obs[:, :, None], th[:, :, None], p, idx, bins)
    return FamilyMap(family, values, pb, edges, err, med, worst, spread, counts,
                     bad.reshape(num_values, n_seed).any(1), steps, n_seed, blowups)


PATH_START = 0.01  # a path formula is compared at the recorded steps from 1 % of the run on


def _measure_path(family, task, values, seeds, steps, bins, se_batches, batch_size, key) -> FamilyMap:
    """A path formula's map (docs/theory.md §4, §5, §8.3): each (axis value, seed) is one
    :func:`normflow.train` split at ``family.stats`` log-spaced steps, where the source
    statistics are measured (the formula needs them along the run, as the main job does); the
    chunked program is compiled once and reused for every value (the hyperparameters are
    traced). The prediction is per run, from its own statistics; the error is the largest along
    the path (recorded steps from :data:`PATH_START` of the run on)."""
    import jax

    from . import theory
    from .flows import modified_flow
    from .measure import source_energy
    from .train import train
    from .trajectory import log_steps

    hp = hyperparameters(family, values)
    stat_steps = np.unique(np.geomspace(2, steps, family.stats).round().astype(int))
    save = np.union1d(log_steps(steps, 48), stat_steps)
    path = save >= PATH_START * steps
    p = np.asarray(task.frequency(batch_size), np.float64)
    key = jax.random.key(12345) if key is None else key
    n_full = 256
    obs = np.full((len(values), len(seeds), int(path.sum()), p.size), np.nan)
    th = np.full_like(obs, np.nan)
    blowups, bad = [], np.zeros(len(values), bool)
    for a in range(len(values)):
        lr = float(hp["lr"][a])
        for j, seed in enumerate(seeds):
            k_run, k_se = jax.random.key(int(seed)), jax.random.fold_in(key, a * len(seeds) + j)
            marks = []

            def on_chunk(step, model):
                se = source_energy(model, task, key=jax.random.fold_in(k_se, step), batch_size=batch_size,
                                   num_batches=se_batches)
                marks.append((step, *(np.asarray(x, np.float64) for x in (se.pw2, se.mean_sq, se.var, se.energy_var))))

            run = train(task, family.optimizer, lr=lr, weight_decay=float(hp["weight_decay"][a]), steps=steps,
                        batch_size=batch_size, key=k_run, momentum=float(hp["momentum"][a]), b1=float(hp["b1"][a]),
                        b2=float(hp["b2"][a]), save_steps=save, n_full=n_full, callback=on_chunk,
                        chunks=stat_steps[stat_steps < steps])
            norms = np.asarray(run.norms, np.float64)
            if run.diverged:
                bad[a] = True
                c = int(run.diverged_concept)
                blowups.append({"axis_value": float(values[a]), "seed": int(seed), "step": int(run.diverged_step) + 1,
                                "concept": c, "p": float(p[c])})
                continue
            ts = np.asarray(run.times, float)
            flow = (lambda: modified_flow(task, lr, lr * steps, key=k_run, n_samples=n_full, ts=ts, rtol=1e-6,
                                          atol=1e-8).norms) if family.optimizer == "gd" else None
            st = {f: np.stack([m[i] for m in marks]) for i, f in ((1, "pw2"), (2, "mean_sq"), (3, "var"),
                                                                   (4, "energy_var"))}
            ctx = theory.Context(steps=save, r0=norms[0], stat_steps=np.array([m[0] for m in marks]),
                                 p=np.broadcast_to(p, st["pw2"].shape), **st, dim=task.dim, lr=lr,
                                 weight_decay=float(hp["weight_decay"][a]), total_steps=steps,
                                 momentum=float(hp["momentum"][a]), b1=float(hp["b1"][a]), b2=float(hp["b2"][a]),
                                 flow=flow)
            obs[a, j] = norms[path]
            th[a, j] = np.asarray(theory.predict(family.optimizer, ctx).norms, np.float64)[path]
    edges = np.geomspace(p.min() * (1 - 1e-9), p.max() * (1 + 1e-9), bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    err, med, worst, spread, counts, pb = _bin_errors(obs, th, p, idx, bins)
    return FamilyMap(family, values, pb, edges, err, med, worst, spread, counts, bad, steps, len(seeds), blowups)


def _bin_errors(obs, th, p, idx, bins):
    """Per (axis value, p bin): the relative error of the bin's mean norm (seed-averaged), the
    median and largest per-concept |error|, and the spread of single seeds' errors, from
    ``obs``/``th [A, seeds, T, N]`` (NaN rows: diverged seeds). Over the ``T`` compared times
    (one for an equilibrium, the path's steps for a path formula) each is the one of largest
    size."""
    a_n = obs.shape[0]
    err, med, worst, spread = (np.full((a_n, bins), np.nan) for _ in range(4))
    counts = np.bincount(idx, minlength=bins)
    pb = np.array([np.exp(np.mean(np.log(p[idx == b]))) if counts[b] else np.nan for b in range(bins)])
    worst_of = lambda e: e[np.argmax(np.abs(e))]
    for a in range(a_n):
        alive = ~np.isnan(obs[a]).any(axis=(1, 2))
        if not alive.any() or np.isnan(th[a][alive]).any():
            continue
        for b in range(bins):
            m = idx == b
            if not m.any():
                continue
            o, t = obs[a][alive][..., m], th[a][alive][..., m]  # [seeds, T, concepts]
            err[a, b] = worst_of(o.mean((0, 2)) / t.mean((0, 2)) - 1)
            per_concept = np.abs(o.mean(0) / t.mean(0) - 1).max(0)
            med[a, b], worst[a, b] = np.median(per_concept), per_concept.max()
            per_seed = o.mean(2) / t.mean(2) - 1  # [seeds, T]
            spread[a, b] = np.max(per_seed.max(0) - per_seed.min(0))
    return err, med, worst, spread, counts, pb


def group(family: Family, values, p):
    """The family's combined small group at (axis value, p): ``ηλ/p`` (= ε²/2 at an SGD-type
    equilibrium) for the decay axis, ``(1-β₂)/p`` (one over the sightings the second moment
    remembers) and ``(1-β)/p`` for the memory axes."""
    return np.asarray(values, float)[:, None] / np.asarray(p, float)[None, :]


def region(fmap: FamilyMap, tol: float = HOLDS) -> dict:
    """The measured region where ``|error| ≤ tol``, as a reader can apply it.

    Per p bin: the axis values that hold and the largest of them (``None``: none holds). And
    over the whole map: ``group_max``, the smallest combined group (:func:`group`) among the
    points that fail; every measured point with a smaller group holds (``None`` if none fails).
    A blank point (NaN: no seed survived) neither holds nor fails.
    """
    ok = np.abs(fmap.error) <= tol
    rows = []
    for b in range(len(fmap.p)):
        hold = fmap.values[ok[:, b]]
        rows.append({"p": float(fmap.p[b]), "holds_at": [float(v) for v in hold],
                     "largest_holding": float(hold.max()) if hold.size else None,
                     "all_hold_up_to": all_hold_up_to(fmap.values, ok[:, b])})
    g = group(fmap.family, fmap.values, fmap.p)
    fail = np.abs(fmap.error) > tol  # a blank point (every seed diverged) neither holds nor fails
    g_max = float(g[fail].min()) if fail.any() else None
    inside = (g < g_max) if g_max is not None else np.ones_like(g, bool)
    return {"tolerance": tol, "by_p": rows, "group_max": g_max, "points_inside": int(inside.sum()),
            "points": int(g.size), "points_measured": int(np.isfinite(fmap.error).sum()), "points_holding": int(ok.sum())}


def all_hold_up_to(values, ok) -> float | None:
    """The largest of the increasing ``values`` up to which every ``ok`` is True (None: the
    first is not)."""
    best = None
    for v, o in zip(values, ok):
        if not o:
            break
        best = float(v)
    return best


# ---------------------------------------------------------------------------------- shipped regions


def load_regions() -> dict:
    """The measured regions shipped with the package (``normflow/_data/validity.json``: the
    equilibrium maps under ``"families"``, the path maps under ``"paths"``; regenerate with
    ``normflow validity --update-package-data``). ``{}`` if absent."""
    try:
        text = resources.files("normflow").joinpath("_data/validity.json").read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return {}
    return json.loads(text)


# optimizers whose step is another's: plain SGD with λx in the gradient is SGD with decoupled decay
ALIASES = {"sgd_l2": "sgd"}
# the axes that enter their formula's small group divided by the concept's p (docs/theory.md §16)
COMBINED = ("eta_lambda", "one_minus_b2", "one_minus_momentum")


class Check(NamedTuple):
    """Whether a run lies in its formula's measured 5 % region. ``inside``: True, False, or None
    (no map measures this optimizer or the run's groups lie outside every measured range);
    ``message``: one line for the run's output."""

    inside: bool | None
    family: str | None
    message: str
    detail: dict


def _axis_value(family: dict, hp: dict) -> float:
    if family["axis"] == "lr":
        return hp["lr"]
    if family["axis"] == "eta_lambda":
        return hp["lr"] * hp["weight_decay"]
    if family["axis"] == "one_minus_b2":
        return 1.0 - hp["b2"]
    return 1.0 - hp["momentum"]


def check(optimizer: str, *, lr: float, weight_decay: float, p, momentum: float = 0.9, b2: float = 0.999,
          regions: dict | None = None) -> Check:
    """Is this run inside the measured 5 % region of its formula (docs/theory.md §16)?

    **Arguments:**

    - ``optimizer``: a name of :data:`normflow.OPTIMIZERS`.
    - ``lr``, ``weight_decay``, ``momentum`` (= Adam's β₁), ``b2``: the run's hyperparameters.
    - ``p``: ``[N]`` the frequency of each concept per minibatch (``task.frequency(batch_size)``).
    - ``regions``: the maps' regions (default :func:`load_regions`): the maps under its
      ``"families"`` (equilibrium formulas) and ``"paths"`` (path formulas) are read alike.

    **Returns:** a :class:`Check`. Each of the optimizer's maps whose fixed groups are the run's
    (a path map's ``ηλ = 0`` exactly: it measures no decay) is read at the run's axis value
    and each concept's p (nearest measured point in log scale; a concept rarer than the map's
    rarest is read at the rarest p with the axis value scaled by ``p_min/p``, keeping the combined
    group ηλ/p, (1−β₂)/p or (1−β)/p, and the map is "unmeasured" if that lands beyond its
    largest value); a value below a map's smallest
    measured one is read at the smallest (the groups are small there; the derivations' error
    terms shrink with them — not so for Adam without decay, whose map misses at its smallest η
    too, docs/theory.md §16), a value above its largest is outside, one midway between two
    measured values is read at the worse of the two. A path map is read whatever
    the run's length (its runs are ``steps`` long, 3000). ``inside`` is False when any concept
    lands on a point that misses by more than 5 %.
    """
    regions = load_regions() if regions is None else regions
    hp = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, b2=b2)
    mapped = ALIASES.get(optimizer, optimizer)
    fams = [f for f in (*regions.get("families", {}).values(), *regions.get("paths", {}).values())
            if f["optimizer"] == mapped]
    if not fams:
        return Check(None, None, f"validity: no measured map for {optimizer} (docs/theory.md §16)", {})
    p = np.atleast_1d(np.asarray(p, float))
    verdicts = {}
    for f in fams:
        v = _axis_value(f, hp)
        run_groups = {**hp, "eta_lambda": lr * weight_decay}
        other_ok = all(np.isclose(run_groups[k], f["fixed"][k], rtol=1e-6, atol=0.0) for k in f["fixed"])
        values, pb, err = np.asarray(f["values"]), np.asarray(f["p"]), np.array(f["error"], dtype=float)
        if not other_ok or v > values.max() * (1 + 1e-9) or v <= 0:
            verdicts[f["name"]] = {"axis_value": v, "status": "unmeasured"}
            continue
        # a concept rarer than the map's rarest is read at the rarest p with its axis value scaled to keep
        # the combined group (ηλ/p, (1-β₂)/p, (1-β)/p: the group its derivation's error terms depend on)
        rare = (p < pb.min()) & (f["axis"] in COMBINED)
        v_c = np.where(rare, v * pb.min() / np.where(rare, p, 1.0), v)
        if np.any(v_c > values.max() * (1 + 1e-9)):
            verdicts[f["name"]] = {"axis_value": v, "status": "unmeasured",
                                   "why": f"{int(np.sum(v_c > values.max() * (1 + 1e-9)))} concepts rarer than the map's "
                                          f"rarest (p {pb.min():.3g}) with a group beyond its range"}
            continue
        ib = np.argmin(np.abs(np.log(pb)[None, :] - np.log(np.maximum(p, pb.min()) if f["axis"] in COMBINED else p)[:, None]),
                       axis=1)
        e = np.empty(p.size)
        for vv in np.unique(v_c):
            dist = np.abs(np.log(values) - np.log(max(vv, values.min())))
            sel = v_c == vv
            # a value midway between two measured ones (in log scale) is read at the worse of the two
            rows = [err[i, ib[sel]] for i in np.flatnonzero(dist <= dist.min() + 1e-9)]
            e[sel] = max(rows, key=lambda r: np.inf if np.isnan(r).any() else float(np.max(np.abs(r))))
        if np.isnan(e).any():  # the map's run diverged there (another concept of its task blew up)
            verdicts[f["name"]] = {"axis_value": v, "status": "unmeasured", "why": "the map's run diverged there"}
            continue
        n_out = int(np.sum(np.abs(e) > HOLDS))
        verdicts[f["name"]] = {"axis_value": v, "status": "inside" if n_out == 0 else "outside",
                               "concepts_outside": n_out, "worst_map_error": float(np.max(np.abs(e)))}
    statuses = [d["status"] for d in verdicts.values()]
    if "outside" in statuses:
        name = next(k for k, d in verdicts.items() if d["status"] == "outside")
        d = verdicts[name]
        axis = next(f["axis"] for f in fams if f["name"] == name)  # the axis of the map it misses on
        msg = (f"WARNING validity: {optimizer} at {axis}={d['axis_value']:.3g} lies outside the measured 5 % "
               f"region of its formula for {d['concepts_outside']} of {p.size} concepts (map '{name}' misses by up to "
               f"{100 * d['worst_map_error']:.0f}% there; docs/theory.md §16)")
        return Check(False, name, msg, verdicts)
    if "inside" in statuses:
        name = next(k for k, d in verdicts.items() if d["status"] == "inside")
        return Check(True, name, f"validity: inside the measured 5 % region of map '{name}' (docs/theory.md §16)",
                     verdicts)
    return Check(None, None, f"validity: {optimizer}'s hyperparameters lie outside every measured map "
                             f"(docs/theory.md §16)", verdicts)


def check_json(c: Check) -> dict:
    """A :class:`Check` as a run's ``results.json`` records it."""
    return {"inside": c.inside, "map": c.family, "message": c.message, "detail": c.detail}


def from_json(d: dict) -> FamilyMap:
    """The :class:`FamilyMap` of a stored map (:func:`to_json`'s output; per-concept summaries
    and seed spreads as stored, NaN where blank)."""
    arr = lambda k: np.array(d[k], dtype=float)
    return FamilyMap({**FAMILIES, **PATH_FAMILIES}[d["name"]], np.asarray(d["values"], float), np.asarray(d["p"], float),
                     np.asarray(d["p_edges"], float), arr("error"), arr("median_abs_error"), arr("worst_abs_error"),
                     arr("seed_spread"), np.asarray(d["concepts_per_bin"]), np.asarray(d["diverged"], bool), d["steps"],
                     d["seeds"], list(d.get("blowups", [])))


def to_json(fmap: FamilyMap) -> dict:
    """A map and its region, as ``results.json`` and the package data hold it."""
    f = fmap.family
    # the other groups the formula depends on (fixed in this map); the learning rate is not one
    # (it enters through ηλ and ε), and the decay is when the axis is another group
    groups = {"sgd": (), "sgd_l2": (), "gd": ()}.get(f.optimizer, ("momentum",) if f.optimizer.startswith("sgd")
                                                     else ("momentum", "b2"))
    groups = tuple(groups) + (() if f.axis == "eta_lambda" else ("eta_lambda",))
    fixed = {k: (f.lr * f.weight_decay if k == "eta_lambda" else getattr(f, k)) for k in groups
             if k != {"one_minus_b2": "b2", "one_minus_momentum": "momentum"}.get(f.axis)}
    nan = lambda a: [[None if not np.isfinite(x) else float(x) for x in row] for row in np.asarray(a, float)]
    return {"name": f.name, "optimizer": f.optimizer, "section": f"docs/theory.md {f.section}", "axis": f.axis,
            "fixed": fixed, "values": [float(v) for v in fmap.values], "p": [float(x) for x in fmap.p],
            "p_edges": [float(x) for x in fmap.edges], "concepts_per_bin": [int(c) for c in fmap.counts],
            "error": nan(fmap.error), "median_abs_error": nan(fmap.median), "worst_abs_error": nan(fmap.worst),
            "seed_spread": nan(fmap.seed_spread), "diverged": [bool(x) for x in fmap.diverged],
            "blowups": list(fmap.blowups),
            "steps": fmap.steps, "seeds": fmap.seeds, "region": region(fmap),
            "task": {**TASK, **({"num_concepts": f.concepts} if f.concepts else {}),
                     **({"zipf_exponent": f.zipf_exponent} if f.zipf_exponent is not None else {})}}


def package_data(shipped: dict, maps: dict, sde: dict | None = None, run: dict | None = None) -> dict:
    """The package data (``normflow/_data/validity.json``) after a ``normflow validity`` run.

    **Arguments:**

    - ``shipped``: the package data before the run (:func:`load_regions`; ``{}`` if none).
    - ``maps``: ``{name: map}`` of the run (:func:`to_json` plus the main job's verdict), names
      of :data:`FAMILIES` or :data:`PATH_FAMILIES`.
    - ``sde``: the run's SDE comparison, or None if it did not run one.
    - ``run``: the run's settings (its flags), recorded per map under ``"runs"``.

    **Returns:** a new dict: the run's equilibrium maps replace those of the same name under
    ``"families"``, its path maps those under ``"paths"``, its SDE comparison the shipped one;
    everything the run did not measure is kept as shipped (a run of the path maps alone leaves
    the equilibrium maps, and the docs' tables read from them, as they were).
    """
    unknown = set(maps) - set(FAMILIES) - set(PATH_FAMILIES)
    if unknown:
        raise ValueError(f"unknown maps {sorted(unknown)}")
    out = dict(shipped)
    for section, names in (("families", FAMILIES), ("paths", PATH_FAMILIES)):
        new = {k: v for k, v in maps.items() if k in names}
        if new:
            out[section] = {**shipped.get(section, {}), **new}
    if sde is not None:
        out["sde"] = sde
    if run is not None:
        out["runs"] = {**shipped.get("runs", {}), **{k: dict(run) for k in maps},
                       **({"sde": dict(run)} if sde is not None else {})}
    return out
