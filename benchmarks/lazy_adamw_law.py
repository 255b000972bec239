"""docs/theory.md §8.6's lazy-AdamW norm law against a simulation (float64, the sparse engine):
rms norm per frequency bin against the law, each bin's ηλ/(p(1−β₂)) (the v-constant assumption
needs it ≪ 1) and its measured mean-source fraction |s̄|²/W² (the restoring part the law leaves
out), and the log-log slope against the law's.

    python benchmarks/lazy_adamw_law.py                       # §8.6's table: N 256, β₂ 0.99, 40k steps, ~20 s
    python benchmarks/lazy_adamw_law.py --concepts 64 --weight-decay 0.025 --steps 24000 --window 0.667   # the test
    python benchmarks/lazy_adamw_law.py --concepts 64 --weight-decay 0.25 --b2 0.9 --steps 6000 --window 0.6
    python benchmarks/lazy_adamw_law.py --concepts 64 --weight-decay 0.25 --steps 16000 --window 0.625 --decay touched

``--decay touched`` (TF Addons' LazyAdam: a row decays only at its sightings) runs on the dense
engine with ``nf.lazy_adamw(..., decay="touched")`` and compares with §8.6's touched law, the
p = 1 AdamW equilibrium ``theory.adamw_equilibrium_finite`` for every p.

A check, not a benchmark; ``tests/test_theory_adamw.py`` runs the second command's configuration.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
import normflow as nf  # noqa: E402
from normflow import theory  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=256)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40000)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--b1", type=float, default=0.9)
    ap.add_argument("--b2", type=float, default=0.99)
    ap.add_argument("--window", type=float, default=0.4, help="fraction of the run (at the end) averaged")
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--decay", choices=("all", "touched"), default="all")
    a = ap.parse_args(argv)
    task = nf.FlatTask(a.concepts, a.dim, key=jax.random.key(0), dtype=jnp.float64, frequency="zipf",
                       zipf_exponent=1.0)
    start = int((1 - a.window) * a.steps)
    save = np.unique(np.linspace(start, a.steps, 200).astype(int))
    t = time.time()
    if a.decay == "all":
        run = nf.train(task, "lazy_adamw", lr=a.lr, weight_decay=a.weight_decay, b1=a.b1, b2=a.b2, steps=a.steps,
                       key=jax.random.key(a.seed), batch_size=a.batch_size, save_steps=save, sparse=True)
    else:
        opt = nf.lazy_adamw(a.lr, b1=a.b1, b2=a.b2, weight_decay=a.weight_decay, decay="touched")
        run = nf.train(task, opt, lr=a.lr, weight_decay=a.weight_decay, steps=a.steps, key=jax.random.key(a.seed),
                       batch_size=a.batch_size, save_steps=save)
    r2 = np.mean(np.asarray(run.norms)[np.asarray(run.steps) >= start] ** 2, axis=0)
    p = np.asarray(task.frequency(a.batch_size))
    se = nf.source_energy(run.model, task, key=jax.random.key(9), batch_size=a.batch_size, num_batches=256)
    mean_frac = np.asarray(se.mean_sq) / (np.asarray(se.mean_sq) + np.asarray(se.var))
    if a.decay == "all":
        law = np.asarray(theory.lazy_adamw_r2(a.lr, a.weight_decay, a.dim, p, a.b1))
    else:
        law = np.full_like(p, float(theory.adamw_equilibrium_finite(a.lr, a.weight_decay, a.dim, a.b1)) ** 2)
    el = a.lr * a.weight_decay
    print(f"{time.time() - t:.0f} s; rms R against √(8.6) by p-bin (rare first)")
    print("| p | rms R measured | √(8.6) | error | ηλ/(p(1−β₂)) | \\|s̄\\|²/W² |\n| --- | --- | --- | --- | --- | --- |")
    for b in np.array_split(np.argsort(p), a.bins):
        meas, want = np.sqrt(r2[b].mean()), np.sqrt(law[b].mean())
        print(f"| {p[b].min():.3f}–{p[b].max():.3f} | {meas:.4f} | {want:.4f} | {100 * (meas / want - 1):+.1f} % | "
              f"{el / (p[b].mean() * (1 - a.b2)):.3f} | {mean_frac[b].mean():.3f} |")
    slope = np.polyfit(np.log(p), np.log(np.sqrt(r2)), 1)[0]
    law_slope = np.polyfit(np.log(p), 0.5 * np.log(law), 1)[0]
    print(f"log-log slope of rms R on p: {slope:.3f} (the law's over the same p: {law_slope:.3f})")


if __name__ == "__main__":
    main()
