#!/usr/bin/env python
"""Write the lab's notebooks (without outputs) from the cell sources below.

    python notebooks/make_notebooks.py      # rewrites notebooks/0*.ipynb

Edit the cells here, not the .ipynb files: the notebooks are generated and committed without
outputs; tests/test_notebooks.py runs each one top to bottom.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

TOUR = [
    ("md", """# 01 · A tour of normflow

One synthetic task, one gradient-flow (Diffrax ODE) run and one SGD run, and docs/theory.md's formula
drawn against the SGD trajectory. Runs in well under a minute on a laptop CPU.

* **Gradient flow** (docs/theory.md §3): the loss is scale-invariant, so `∇L ⊥ x` and every norm stays
  exactly where it started (no weight decay here).
* **SGD** (docs/theory.md §5): each noisy step adds `η²|g|²` to `R²`, so `R⁴(t) = R₀⁴ + 2η ∫ pW² dτ`: the
  norm integrates the *source energy* `pW²` of each concept, whatever direction it points."""),
    ("code", """import jax
import matplotlib.pyplot as plt
import numpy as np

import normflow as nf

key = jax.random.key(0)
k_task, k_run, k_se = jax.random.split(key, 3)
task = nf.HierarchicalTask(depth=2, branching=3, dim=16, key=k_task)   # 3 generic + 9 specific concepts
depth = np.asarray(task.depth)
print(task.num_concepts, "concepts; context spread by level:",
      [round(float(np.asarray(task.spread)[depth == l].mean()), 3) for l in (0, 1)])"""),
    ("md", """## Gradient flow: the norms do not move
`nf.gradient_flow` integrates `dθ/dt = -∇L(θ)` with Diffrax on a fixed full batch."""),
    ("code", """flow = nf.gradient_flow(task, t1=20.0, key=k_run, n_samples=256)
flow_drift = float(np.max(np.abs(np.asarray(flow.norms) / np.asarray(flow.norms)[0] - 1)))
print(f"loss {float(flow.loss[0]):.3f} -> {float(flow.loss[-1]):.3f};  max |R(t)/R(0) - 1| = {flow_drift:.1e}")
assert flow_drift < 1e-4, flow_drift     # conserved to the solver's tolerance (rtol 1e-6)"""),
    ("md", """## SGD: the norm records the source energy
Train the free table with minibatch SGD (no decay) and measure `pW²` (at unit radius, docs/theory.md §1)
at a few checkpoints with `nf.source_energy`; docs/theory.md §5's imprint then predicts the whole
norm trajectory: `nf.theory.predict` (docs/theory.md §15) picks the formula for the optimizer and
evaluates it on the measured statistics."""),
    ("code", """lr, steps, batch = 0.5, 2000, 32
checkpoints = []

def measure(step, model):
    se = nf.source_energy(model, task, key=jax.random.fold_in(k_se, step), batch_size=batch, num_batches=32)
    checkpoints.append((step, se))

run = nf.train(task, "sgd", lr=lr, steps=steps, batch_size=batch, key=k_run, save_steps=48,
               callback=measure, chunks=16)
norms = np.asarray(run.norms, float)
rec = np.asarray(run.steps)

stat = lambda f: np.stack([np.asarray(getattr(c[1], f), float) for c in checkpoints])
ctx = nf.theory.Context(steps=rec, r0=norms[0], stat_steps=np.array([c[0] for c in checkpoints]),
                        p=stat("p"), pw2=stat("pw2"), mean_sq=stat("mean_sq"), var=stat("var"),
                        dim=task.dim, lr=lr, weight_decay=0.0, total_steps=steps)
pred = nf.theory.predict("sgd", ctx)
print(pred.formula, f"({pred.section})")
theory = np.asarray(pred.norms, float)                      # at the recorded steps
err = np.abs(theory[-1] / norms[-1] - 1)
print("final norm, measured:", np.round(norms[-1], 3))
print("final norm, theory:  ", np.round(theory[-1], 3))
print(f"worst relative error at the end: {100 * err.max():.1f}%")
assert err.max() < 0.1, err.max()"""),
    ("code", """fig, ax = plt.subplots(figsize=(7, 4.2))
t_sgd = lr * rec
for l, c in zip((0, 1), ("tab:red", "tab:blue")):
    m = depth == l
    name = "generic (depth 0)" if l == 0 else "specific (depth 1)"
    ax.plot(t_sgd, norms[:, m].mean(1), "-", color=c, lw=2, label=f"{name}: SGD measured")
    ax.plot(t_sgd, theory[:, m].mean(1), "--", color=c, lw=1.5, label=f"{name}: imprint theory (docs/theory.md §5)")
    ax.plot(np.asarray(flow.times), np.asarray(flow.norms)[:, m].mean(1), ":", color=c, lw=2,
            label=f"{name}: gradient flow")
ax.set_xscale("symlog", linthresh=1.0)
ax.set_xlabel("time t = η·step")
ax.set_ylabel("mean norm |x| per level")
ax.legend(fontsize=7)
ax.set_title("the norm integrates the source energy under SGD, and stays put under gradient flow", fontsize=9)
plt.show()"""),
]

OPTIMIZERS = [
    ("md", """# 02 · Which optimizers imprint specificity in the norm?

A small concept tree (generic concepts have spread-out contexts, specific ones narrow contexts),
trained with several optimizers from the same start. For each: the generic/specific norm ratio
and the Spearman correlation of the final norm with the context spread. docs/theory.md §6 predicts that
SGD + decay makes generic concepts *larger* (`R⁴ ∝ pV²/λ`), §7 the same for momentum, and §8 that
AdamW erases the imprint (`R*² ≈ ηd/(2λ)` for every frequent concept). The full-size version is
`sims/specificity.py`; this notebook only uses library calls, at a small size."""),
    ("code", """import jax
import matplotlib.pyplot as plt
import numpy as np

import normflow as nf

key = jax.random.key(1)
k_task, k_run = jax.random.split(key)
task = nf.HierarchicalTask(depth=3, branching=3, dim=16, key=k_task)   # 3 + 9 + 27 concepts
depth = np.asarray(task.depth)
spread = np.asarray(task.spread)"""),
    ("md", """Each optimizer gets an `(lr, weight_decay)` with `ηλ = 2·10⁻³` (momentum: `ηλ/(1-β)`), so
1500 steps are several relaxation times (docs/theory.md §6: `1/(4ηλ)` steps)."""),
    ("code", """configs = {
    "sgd":   dict(lr=0.5, weight_decay=4e-3),
    "sgdm":  dict(lr=0.05, weight_decay=4e-3, momentum=0.9),
    "adamw": dict(lr=1e-2, weight_decay=0.2),
}
steps, batch = 1500, 64
rows, finals = [], {}
for name, hp in configs.items():
    run = nf.train(task, name, steps=steps, batch_size=batch, key=k_run, save_steps=16, **hp)
    assert not run.diverged, name
    r = np.asarray(run.norms, float)[-4:].mean(0)       # average of the last saves
    finals[name] = r
    ratio = r[depth == 0].mean() / r[depth == depth.max()].mean()
    rows.append((name, ratio, nf.stats.spearman(r, spread)))

print(f"{'optimizer':<8} {'generic/specific':>16} {'Spearman(norm, spread)':>23}")
for name, ratio, rho in rows:
    print(f"{name:<8} {ratio:>16.3f} {rho:>23.3f}")
res = {name: (ratio, rho) for name, ratio, rho in rows}
# SGD + decay imprints specificity (generic concepts larger); AdamW much less so.
assert res["sgd"][0] > 1.2 and res["sgd"][1] > 0.5, res["sgd"]
assert abs(np.log(res["adamw"][0])) < abs(np.log(res["sgd"][0])), res"""),
    ("code", """fig, ax = plt.subplots(figsize=(7, 4))
for name, c in zip(configs, ("tab:blue", "tab:orange", "tab:green")):
    r = finals[name]
    ax.scatter(spread, r / r.mean(), s=18, color=c, label=f"{name} (measured)")
ax.set_xlabel("context spread of the concept (1 - |mean leaf direction|²)")
ax.set_ylabel("final norm / mean norm")
ax.set_title("specificity imprint per optimizer: generic (large spread) vs specific", fontsize=9)
ax.legend(fontsize=8)
plt.show()"""),
]

NETWORK = [
    ("md", """# 03 · The NTK radial drift

For a free table the loss gradient is orthogonal to each embedding, so gradient flow cannot
change a norm (docs/theory.md §3). When the embeddings come from shared parameters, `x(a) = f_θ(a)`,
the flow moves `x(a)` by `-Σ_b K(a,b) ∇ₓL(b)` with the NTK `K(a,b) = J(a)J(b)ᵀ`, whose radial part

`D(a) = x̂(a)·J(a)(-∇_θ L)` (docs/theory.md §9)

is not zero. `nf.radial_drift` computes it with one `grad` and one `jvp`; `nf.radial_votes`
splits it into the votes of each concept. Full-size version: `sims/ntk_drift.py`."""),
    ("code", """import equinox as eqx
import jax
import matplotlib.pyplot as plt
import numpy as np

import normflow as nf

key = jax.random.key(2)
k_task, k_net, k_run = jax.random.split(key, 3)
n, n_samples = 8, 64
task = nf.FlatTask(n, 8, key=k_task)
net = nf.ConceptMLP(n, 8, key=k_net, hidden=16)
k_model, k_data = jax.random.split(k_run)               # the flows' data convention
data = nf.full_batch(task, jax.random.fold_in(k_data, 2**31 - 1), n_samples)
table = nf.default_model(task, k_model)
drift = eqx.filter_jit(nf.radial_drift)
d_table, d_net = np.asarray(drift(table, task, data)), np.asarray(drift(net, task, data))
print("D at t=0, free table:", np.round(d_table, 8))
print("D at t=0, network:   ", np.round(d_net, 3))
assert np.abs(d_table).max() < 1e-5 * np.abs(d_net).max()   # zero for the table, up to float32 rounding"""),
    ("md", """## Gradient flow: the network's norms move at exactly the rate D
Integrate the network with Diffrax (no decay), evaluate `D` with `nf.radial_drift` at every saved
state on the same data, and check that the saved norms obey `R(t) = R(0) + ∫₀ᵗ D dτ` (trapezoid
rule on the save grid). The norms come from the ODE solution, `D` from the formula: the check is
independent. (For the table `D = 0`, so its norms stay put: notebook 01 shows it.)"""),
    ("code", """ts = np.linspace(0.0, 0.5, 101)
flow_n, sol = nf.gradient_flow_solution(task, 0.5, key=k_run, model=net, n_samples=n_samples, ts=ts)
params, static = eqx.partition(net, eqx.is_inexact_array)
D = np.asarray(jax.lax.map(lambda p: nf.radial_drift(eqx.combine(p, static), task, data), sol.ys))
R = np.asarray(flow_n.norms)
integral = R[0] + np.concatenate([np.zeros((1, n)), np.cumsum(0.5 * (D[1:] + D[:-1]) * np.diff(ts)[:, None], axis=0)])
err = np.max(np.abs(R - integral)) / np.max(np.abs(R - R[0]))
print(f"network: max |R/R0 - 1| = {np.max(np.abs(R / R[0] - 1)):.2f};  "
      f"worst |R(t) - R(0) - ∫D| / max|R(t) - R(0)| = {err:.1e}")
assert np.max(np.abs(R / R[0] - 1)) > 1e-2 and err < 1e-2"""),
    ("code", """votes = np.asarray(nf.radial_votes(net, task, data))
assert np.allclose(votes.sum(1), D[0], atol=1e-5 * np.abs(D[0]).max())   # rows sum to D
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for a in range(n):
    line, = ax1.plot(ts, R[:, a], "-", lw=1.5, label=f"concept {a}: |x| measured")
    ax1.plot(ts, integral[:, a], "--", color=line.get_color(), lw=1)
ax1.plot([], [], "k--", lw=1, label="R(0) + ∫ D dt (theory)")
ax1.set_xlabel("flow time t")
ax1.set_ylabel("norm |x(a)|")
ax1.legend(fontsize=6, ncol=2)
v = np.abs(votes).max()
im = ax2.imshow(votes, cmap="RdBu_r", vmin=-v, vmax=v)
ax2.set_xlabel("voting concept c")
ax2.set_ylabel("concept a")
ax2.set_title("radial votes at t = 0 (red: outward)", fontsize=9)
fig.colorbar(im, ax=ax2, label="vote(a, c), dR/dt units")
plt.show()"""),
]


def build(cells):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives identical files
    return nb


def main():
    for name, cells in (("01_tour", TOUR), ("02_optimizers", OPTIMIZERS), ("03_network_drift", NETWORK)):
        path = HERE / f"{name}.ipynb"
        nbformat.write(build(cells), path)
        print(path)


if __name__ == "__main__":
    main()
