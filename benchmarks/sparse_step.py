"""Micro-benchmark: µs per step of the dense and the sparse engine (``nf.train(..., sparse=True)``)
against the number of concepts.

    python benchmarks/sparse_step.py [--sizes 1024,8192,32768,131072] [--steps 2000]

FlatTask(N concepts, dim 64, 4 leaves per concept), batch 256, float32, one record at the end
(``save_steps=[steps]``), for ``sgd`` (decoupled decay 1e-3) and ``lazy_adamw`` (decay 0.05);
each program is compiled and run once, then the best of ``--repeats`` further calls is timed, at
``steps`` and ``2·steps``: µs/step is the difference over ``steps`` (a call's fixed costs cancel).
Not part of the test suite. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp

import normflow as nf

CONFIGS = {"sgd": (0.5, 1e-3), "lazy_adamw": (1e-2, 0.05)}


def per_step_us(task, opt, sparse, steps, repeats):
    """The marginal cost of a step: (time of 2·steps - time of steps) / steps, each the best of
    ``repeats`` calls after a first (compiling) one; the same compiled program runs both, so the
    fixed costs of a call (the table's initialisation, the record, the assembly) cancel."""
    lr, wd = CONFIGS[opt]

    def timed(n):
        run = lambda: nf.train(task, opt, lr=lr, weight_decay=wd, steps=n, key=jax.random.key(0), batch_size=256,
                               save_steps=[n], sparse=sparse).norms.block_until_ready()
        run()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t)
        return best

    return 1e6 * (timed(2 * steps) - timed(steps)) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1024,8192,32768,131072")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--dense-steps", type=int, default=500, help="steps of the dense runs at N >= 32768")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    out = {}
    print(f"{'concepts':>9} {'optimizer':>11} {'dense µs':>10} {'sparse µs':>10} {'dense/sparse':>12}", flush=True)
    for n in sizes:
        task = nf.FlatTask(n, 64, key=jax.random.key(1), leaves_per_concept=4, dtype=jnp.float32)
        for opt in CONFIGS:
            dense_steps = a.dense_steps if n >= 32768 else a.steps
            d = per_step_us(task, opt, False, dense_steps, a.repeats)
            s = per_step_us(task, opt, True, a.steps, a.repeats)
            out[f"{opt}_{n}"] = {"dense_us": round(d, 1), "sparse_us": round(s, 1)}
            print(f"{n:>9} {opt:>11} {d:>10.1f} {s:>10.1f} {d / s:>12.2f}", flush=True)
    for opt in CONFIGS:
        lo, hi = f"{opt}_{sizes[0]}", f"{opt}_{sizes[-1]}"
        if lo in out and hi in out:
            out[f"{opt}_sparse_ratio_{sizes[-1]}_vs_{sizes[0]}"] = round(out[hi]["sparse_us"] / out[lo]["sparse_us"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
