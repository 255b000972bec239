"""Peak memory of a long run: recording only at chosen steps keeps memory flat in the step count.

    python benchmarks/memory.py [--steps 10000 1000000] [--task tiny|small|standard] [--configs 1]

Each step count runs in a fresh subprocess, which reports its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, so it includes JAX, the compiler and the
compiled program) and its wall time. ``--configs N`` (N > 1) runs ``nf.sweep`` over N learning
rates instead of ``nf.train``. Tasks: ``tiny`` = HierarchicalTask(depth=2, branching=3, dim=8),
batch 16 (12 concepts; 10^6 steps take about a minute on 2 CPU cores); ``small`` =
HierarchicalTask(depth=2, branching=8, dim=32), batch 64 (72 concepts); ``standard`` (the
default, the issue's task) = FlatTask(1024, 64), batch 256 (10^6 steps take 15–25 minutes on a
2-core CPU). SGD with decay, 64 log-spaced recorded steps; on CPU with
``unroll_cpu_threefry()``, as the sims run. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

TASKS = {
    "tiny": ("HierarchicalTask(depth=2, branching=3, dim=8, key=key)", 16),
    "small": ("HierarchicalTask(depth=2, branching=8, dim=32, key=key)", 64),
    "standard": ("FlatTask(1024, 64, key=key)", 256),
}


def child(task_name: str, steps: int, configs: int) -> dict:
    import jax
    import numpy as np

    import normflow as nf
    from normflow import FlatTask, HierarchicalTask  # noqa: F401  (used by eval)
    from normflow.sweep import unroll_cpu_threefry

    if jax.default_backend() == "cpu":
        unroll_cpu_threefry(True)  # as the sims run

    key = jax.random.key(0)
    expr, batch = TASKS[task_name]
    task = eval(expr)
    t = time.perf_counter()
    if configs == 1:
        run = nf.train(task, "sgd", lr=0.3, weight_decay=1e-3, steps=steps, batch_size=batch, key=key, save_steps=64)
    else:
        run = nf.sweep(task, "sgd", lr=np.linspace(0.1, 0.5, configs), weight_decay=1e-3, seeds=0, steps=steps,
                       batch_size=batch, save_steps=64)
    norms = np.asarray(jax.block_until_ready(run.norms))
    wall = time.perf_counter() - t
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return dict(steps=steps, peak_rss_mib=round(peak_mib, 1), wall_s=round(wall, 1), saves=int(norms.shape[-2]),
                final_mean_norm=float(norms[..., -1, :].mean()), diverged=bool(run.diverged))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[10_000, 1_000_000])
    p.add_argument("--task", choices=sorted(TASKS), default="standard")
    p.add_argument("--configs", type=int, default=1)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.task, a.steps[0], a.configs)))
        return
    rows = []
    for steps in a.steps:
        cmd = [sys.executable, __file__, "--child", "--task", a.task, "--configs", str(a.configs), "--steps", str(steps)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"[memory] task={a.task} configs={a.configs} steps={steps:>9,}: peak RSS {row['peak_rss_mib']:.1f} MiB, "
              f"{row['wall_s']:.1f} s, {row['saves']} saves", flush=True)
    ratio = rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"]
    print(json.dumps(dict(task=a.task, configs=a.configs, runs=rows, peak_ratio_last_vs_first=round(ratio, 3))))


if __name__ == "__main__":
    main()
