#!/usr/bin/env python
"""Paper Fig. 1 on a synthetic task: under gradient flow the free table's norms stay constant
while a network's drift, at exactly the NTK radial rate D of docs/theory.md §9.

    python sims/ntk_drift.py            # default size (about a minute or two on 2 cores)
    python sims/ntk_drift.py --quick    # the test-suite size

The same :class:`normflow.FlatTask` and the same fixed full batch train (a) the free table and
(b) a network ``x(a) = MLP(table[a])`` (:class:`normflow.ConceptMLP`) under Diffrax gradient flow
``dθ/dt = -∇L(θ)`` (:func:`normflow.gradient_flow`, no weight decay). Per concept it compares

- ``dR/dt`` *measured from the saved norms*: central differences ``(R(t+h) - R(t-h))/2h`` on
  save points ``t ± h`` (``h = 10⁻² t``) around log-spaced evaluation times;
- ``dR/dt`` *recorded by the solver* at the saved states: ``-u_r`` with ``u = -dx/dt``
  (:class:`normflow.Trajectory` ``radial``);
- ``D = x̂·J(-∇_θL)`` from :func:`normflow.radial_drift` at the saved states, on the same data;

and reports the worst relative error. It also decomposes ``D`` into per-concept votes
(:func:`normflow.radial_votes`, paper Fig. 1's radial votes) at ``t = 0`` and ``t = t1``.
Writes ``<figures>/ntk_drift.png`` and ``<out>/results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from normflow import cli

FULL = {"num_concepts": 24, "hidden": 32, "n_samples": 256, "t1": 1.5, "evals": 24}
QUICK = {"num_concepts": 12, "hidden": 16, "n_samples": 128, "t1": 0.5, "evals": 8}
# docs/theory.md §16: the maps bound the small groups of a discrete step (ηλ, ε, 1-β); a
# gradient flow has none, so no map applies (recorded, no warning)
VALIDITY = {"inside": None, "map": None,
            "message": "validity: gradient flow has no discrete-step formula to map (docs/theory.md §16)", "detail": {}}
H_REL = 1e-2  # finite-difference half-step h = H_REL · t (float32 rounding ~ eps·R/h vs truncation ~ h²)


def build_parser():
    p = cli.make_parser("ntk_drift.py", __doc__.splitlines()[1])
    cli.add_sized_args(p, FULL, QUICK, [("num_concepts", int, "concepts of the flat task"),
                                        ("hidden", int, "network: table width and MLP hidden width"),
                                        ("n_samples", int, "size of the fixed full batch"),
                                        ("t1", float, "flow time t1 (t = η·steps)"),
                                        ("evals", int, "log-spaced times where dR/dt is measured by finite differences")])
    p.add_argument("--dim", type=int, default=16, help="embedding dimension")
    p.add_argument("--rtol", type=float, default=1e-6, help="Diffrax PID controller rtol")
    p.add_argument("--atol", type=float, default=1e-8, help="Diffrax PID controller atol")
    return p


def _check(args):
    cli.check_flags(args, num_concepts=cli.at_least(2), hidden=cli.at_least(2), n_samples=cli.at_least(2),
                    evals=cli.at_least(2), t1=cli.POSITIVE, rtol=cli.POSITIVE, atol=cli.POSITIVE)
    if args.rtol >= 1e-2:
        raise cli.UsageError(f"--rtol: must be < 1e-2 for a meaningful check, got {args.rtol}")


def save_grid(t1, evals, n_plot=41):
    """Evaluation times ``te`` (log-spaced), ``te ± h`` and a uniform plotting grid, merged."""
    te = np.geomspace(t1 * 1e-2, t1 / (1 + H_REL), evals)
    h = H_REL * te
    plot = np.linspace(0.0, t1, n_plot)
    ts = np.unique(np.concatenate([plot, te - h, te, te + h]))
    return ts, te, h


def main(argv=None):
    p = build_parser()
    args = cli.parse_args(p, argv, sim="ntk_drift", sizes=(QUICK, FULL))
    _check(args)
    out = cli.Output(args, "ntk_drift")
    out.add_config(fd_half_step_rel=H_REL, solver="Tsit5")

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import normflow as nf

    t_start = time.time()
    dtype = jnp.float64 if args.x64 else jnp.float32
    k_task, k_net, k_run = jax.random.split(jax.random.key(args.seed), 3)
    task = nf.FlatTask(args.num_concepts, args.dim, key=k_task, dtype=dtype)
    net = nf.ConceptMLP(args.num_concepts, args.dim, key=k_net, hidden=args.hidden, dtype=dtype)
    # The flows' data convention (normflow.flows): model key, data key = split(key); full batch
    # = full_batch(task, fold_in(data key, 2**31 - 1), n_samples).
    k_model, k_data = jax.random.split(k_run)
    data = nf.full_batch_of(task, k_data, args.n_samples)
    table = nf.default_model(task, k_model)
    ts, te, h = save_grid(args.t1, args.evals)
    i_e, i_m, i_p = (np.searchsorted(ts, v) for v in (te, te - h, te + h))

    res = {}
    for name, model in (("table", table), ("network", net)):
        t0 = time.time()
        traj, sol = nf.gradient_flow_solution(task, args.t1, key=k_run, model=model, n_samples=args.n_samples, ts=ts,
                                              rtol=args.rtol, atol=args.atol)
        cli.check_diverged(traj, what=f"{name} gradient flow")
        params, static = eqx.partition(model, eqx.is_inexact_array)
        loss0 = float(nf.get_loss("info_nce")(model.embed_concepts(data.concepts), data.contexts, task.temperature))
        if not np.isclose(loss0, float(traj.loss[0]), rtol=1e-5):
            raise AssertionError(f"data mismatch with the flow's full batch: loss {loss0} vs {float(traj.loss[0])}")
        drift = np.asarray(jax.lax.map(lambda q: nf.radial_drift(eqx.combine(q, static), task, data), sol.ys), float)
        r = np.asarray(traj.norms, float)
        rate = -np.asarray(traj.radial, float)  # λ = 0: dR/dt = -u_r exactly at saved states
        fd = (r[i_p] - r[i_m]) / (ts[i_p] - ts[i_m])[:, None]
        d_e = drift[i_e]
        scale = np.max(np.abs(drift))
        # relative errors only where D is more than rounding (for the table D = 0: report absolutes)
        if not scale > 1e4 * float(np.finfo(np.dtype(dtype)).eps) * np.max(r):
            scale = 0.0
        per_concept_scale = np.max(np.abs(d_e), axis=0)
        last = jax.tree_util.tree_map(lambda y: y[-1], sol.ys)
        votes0 = np.asarray(nf.radial_votes(model, task, data), float)
        votes1 = np.asarray(nf.radial_votes(eqx.combine(last, static), task, data), float)
        res[name] = {
            "wall": time.time() - t0,
            "norms": r, "drift": drift, "rate": rate, "fd": fd, "d_eval": d_e,
            "max_abs_drift": float(np.max(np.abs(drift))),
            "rel_norm_change": float(np.max(np.abs(r / r[0] - 1))),
            "rate_vs_drift": float(np.max(np.abs(rate - drift)) / scale) if scale > 0 else None,
            "fd_vs_drift": float(np.max(np.abs(fd - d_e)) / scale) if scale > 0 else None,
            "fd_vs_drift_per_concept": float(np.max(np.max(np.abs(fd - d_e), axis=0) / per_concept_scale))
            if scale > 0 and np.all(per_concept_scale > 0) else None,
            "max_abs_fd": float(np.max(np.abs(fd))),
            "steps_accepted": int(sol.stats["num_accepted_steps"]),
            "steps_rejected": int(sol.stats["num_rejected_steps"]),
            "votes_t0": votes0, "votes_t1": votes1,
            "votes_rowsum_err": float(max(np.max(np.abs(votes0.sum(1) - drift[0])), np.max(np.abs(votes1.sum(1) - drift[-1])))
                                      / scale) if scale > 0 else None,
            "loss": np.asarray(traj.loss, float),
        }

    tb, nw = res["table"], res["network"]
    # Table: the flow conserves each R to the solver's tolerance. Local error control keeps each
    # step's error below atol + rtol·|y| per component, so after n accepted steps the relative
    # norm drift is bounded by about n·(rtol + atol/R_min).
    r_min = float(np.min(tb["norms"][0]))
    table_bound = tb["steps_accepted"] * (args.rtol + args.atol / r_min)
    eps = float(np.finfo(np.dtype(dtype)).eps)
    off = ~np.eye(args.num_concepts, dtype=bool)
    v0 = nw["votes_t0"][off]
    sign_frac = float(np.mean(v0 > 0))

    print(f"task: FlatTask {args.num_concepts} concepts, dim {args.dim}, full batch {args.n_samples}; flow to t1={args.t1} "
          f"(rtol {args.rtol}, atol {args.atol}, {np.dtype(dtype).name})")
    print(f"free table: max |R(t)/R(0) - 1| = {tb['rel_norm_change']:.2e} (bound n·(rtol+atol/R) = {table_bound:.1e}, "
          f"{tb['steps_accepted']} steps); max |D| = {tb['max_abs_drift']:.1e}; max |FD dR/dt| = {tb['max_abs_fd']:.1e}")
    print(f"network: max |R(t)/R(0) - 1| = {nw['rel_norm_change']:.3f}; max |D| = {nw['max_abs_drift']:.3g} "
          f"({nw['steps_accepted']} steps)")
    print(f"  recorded dR/dt (-u_r) vs radial_drift D at {len(ts)} saved states: worst error "
          f"{nw['rate_vs_drift']:.2e} of max|D|")
    print(f"  finite-difference dR/dt from saved norms vs D at {args.evals} times: worst error "
          f"{nw['fd_vs_drift']:.2e} of max|D| (per concept, of that concept's max|D|: {nw['fd_vs_drift_per_concept']:.2e})")
    print(f"  radial votes at t=0: {100 * sign_frac:.0f}% of off-diagonal votes outward; rows sum to D within "
          f"{nw['votes_rowsum_err']:.1e} of max|D|")

    # Figure.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    cols = plt.cm.viridis(np.linspace(0, 0.9, args.num_concepts))
    for a in range(args.num_concepts):
        ax.plot(ts, nw["norms"][:, a], "-", color=cols[a], lw=1, label="network concepts (measured)" if a == 0 else None)
        ax.plot(ts, tb["norms"][:, a], "-", color="0.5", lw=3, alpha=0.5,
                label="free-table concepts (measured)" if a == 0 else None)
        ax.plot(ts[[0, -1]], tb["norms"][[0, 0], a], "--", color="k", lw=0.6,
                label="table theory: R(t) = R(0) (docs/theory.md §3)" if a == 0 else None)
    ax.set_xlabel("flow time t (= η·steps)")
    ax.set_ylabel("embedding norm |x(a)|")
    ax.set_title("gradient flow, no decay: the table's norms stay put, the network's drift", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    pick = np.argsort(np.abs(nw["drift"][0]))[::-1][:4]
    pos = ts > 0
    for j, a in enumerate(pick):
        c = plt.cm.tab10(j)
        ax.plot(ts[pos], nw["drift"][pos, a], "--", color=c, lw=1.5)
        ax.plot(ts[pos], nw["rate"][pos, a], "-", color=c, lw=0.8, alpha=0.7)
        ax.plot(te, nw["fd"][:, a], "o", color=c, ms=4, label=f"concept {a}")
    from matplotlib.lines import Line2D

    style = [Line2D([], [], color="k", ls="--", lw=1.5, label="D from radial_drift (theory)"),
             Line2D([], [], color="k", ls="-", lw=0.8, label="recorded dR/dt = -u_r (solver)"),
             Line2D([], [], color="k", ls="", marker="o", ms=4, label="finite differences of saved R")]
    ax.axhline(0, color="gray", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("flow time t")
    ax.set_ylabel("dR/dt  (norm per unit time)")
    ax.set_title("network: measured dR/dt against D = x̂·J(-∇θL), 4 concepts with largest |D(0)|", fontsize=9)
    ax.legend(handles=style + ax.get_legend_handles_labels()[0], fontsize=7, loc="best")

    ax = axes[1, 0]
    ax.scatter(nw["d_eval"].ravel(), nw["fd"].ravel(), s=8, c="tab:blue", label="network (concept × time)")
    ax.scatter(tb["d_eval"].ravel(), tb["fd"].ravel(), s=8, c="tab:orange", marker="x", label="free table")
    lim = 1.05 * max(np.max(np.abs(nw["d_eval"])), np.max(np.abs(nw["fd"])))
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="y = x")
    ax.set_xlabel("D from radial_drift (theory, docs/theory.md §9)")
    ax.set_ylabel("dR/dt from finite differences of saved norms (measured)")
    ax.set_title(f"worst error {nw['fd_vs_drift']:.1e} of max|D| (finite differences), "
                 f"{nw['rate_vs_drift']:.1e} (recorded rate)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    v = nw["votes_t0"]
    order = np.argsort(nw["drift"][0])
    vmax = np.max(np.abs(v))
    im = ax.imshow(v[np.ix_(order, order)], cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    fig.colorbar(im, ax=ax, label="vote(a, c) = x̂(a)ᵀK(a,c)(-∇ₓ₍c₎L)  (dR/dt units)")
    ax.set_xlabel("voting concept c (sorted by D(c) at t=0)")
    ax.set_ylabel("concept a (sorted by D(a) at t=0)")
    ax.set_title(f"radial votes at t = 0 (red outward, blue inward); {100 * sign_frac:.0f}% outward", fontsize=9)
    fig.suptitle("Fig. 1 rebuilt: the NTK radial drift under gradient flow (free table vs concept table + shared MLP)",
                 fontsize=10)
    fig.tight_layout()
    out.savefig(fig)
    plt.close(fig)

    def pack(m):
        return {k: m[k] for k in ("max_abs_drift", "rel_norm_change", "rate_vs_drift", "fd_vs_drift",
                                  "fd_vs_drift_per_concept", "max_abs_fd", "steps_accepted", "steps_rejected",
                                  "votes_rowsum_err")}

    results = {
        "task": {"kind": "FlatTask", "num_concepts": args.num_concepts, "dim": args.dim, "n_samples": args.n_samples},
        "solver": {"name": "Tsit5", "rtol": args.rtol, "atol": args.atol, "dtype": np.dtype(dtype).name, "eps": eps},
        "headline": {
            "table_max_rel_norm_change": tb["rel_norm_change"],
            "table_drift_bound": table_bound,
            "network_max_rel_norm_change": nw["rel_norm_change"],
            "network_fd_vs_drift_worst_rel_error": nw["fd_vs_drift"],
            "network_fd_vs_drift_worst_rel_error_per_concept": nw["fd_vs_drift_per_concept"],
            "network_recorded_rate_vs_drift_worst_rel_error": nw["rate_vs_drift"],
            "network_outward_vote_fraction_t0": sign_frac,
        },
        "error_note": ("errors are max |measured - D| / max |D| over concepts and times; per_concept divides by each "
                       "concept's own max |D|; finite differences use h = %g·t" % H_REL),
        "table": pack(tb),
        "network": pack(nw),
        "times": ts, "eval_times": te, "eval_h": h,
        "per_concept": {
            "network_norms": nw["norms"], "table_norms": tb["norms"],
            "network_drift_eval": nw["d_eval"], "network_fd_eval": nw["fd"], "network_rate": nw["rate"],
            "network_drift": nw["drift"], "table_drift_eval": tb["d_eval"], "table_fd_eval": tb["fd"],
            "network_votes_t0": nw["votes_t0"], "network_votes_t1": nw["votes_t1"],
        },
        "loss": {"network": nw["loss"], "table": tb["loss"]},
        "validity": VALIDITY,
    }
    path = out.write(results)
    print(f"total {time.time() - t_start:.1f}s; results: {path}  figure: {out.figure}")


if __name__ == "__main__":
    cli.script(main)
