"""What reading and writing a minibatch's rows costs as the table grows: a probe behind
docs/benchmarks.md "Scale" (the sparse step's remaining growth from 1,024 to 131,072 concepts).

One compiled ``lax.scan`` of steps that each gather ``--batch-size`` random rows of each of
``--tables`` float32 tables of ``N × d``, add one to them, and scatter them back in place: the
sparse step's memory traffic (sgd: 1 table; sgdm: the table, its momentum and an int32 step
count, about 2; lazy AdamW: the table, m and v, 3), with none of its arithmetic. The same work
at every ``N``; what changes is where the rows live (cache at 1,024 × 64, 256 KiB a table;
main memory at 131,072 × 64, 32 MiB). Sizes are timed in alternation, best of ``--rounds``.

    python benchmarks/row_access.py                # tables 1 and 3, N 1,024 and 131,072, d 64
"""

import argparse
import time

import jax
import jax.numpy as jnp


def make_run(n: int, batch: int, steps: int):
    def step(tables, key):
        ids = jax.random.randint(key, (batch,), 0, n)
        return tuple(t.at[ids].set(t[ids] + 1.0) for t in tables), None

    return jax.jit(lambda tables, key: jax.lax.scan(step, tables, jax.random.split(key, steps))[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 131072])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--tables", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    cases = {}
    for k in a.tables:
        for n in a.sizes:
            tables = tuple(jnp.zeros((n, a.dim), jnp.float32) for _ in range(k))
            for steps in (a.steps, 2 * a.steps):
                run = make_run(n, a.batch_size, steps)
                jax.block_until_ready(run(tables, jax.random.key(0)))  # compile
                cases[(k, n, steps)] = (run, tables)
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(a.rounds):
        for c, (run, tables) in cases.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(tables, jax.random.key(1)))
            best[c] = min(best[c], time.perf_counter() - t0)
    print(f"µs per step (marginal: 2n steps - n steps), {a.batch_size} random rows of d={a.dim} per table")
    for k in a.tables:
        us = [1e6 * (best[(k, n, 2 * a.steps)] - best[(k, n, a.steps)]) / a.steps for n in a.sizes]
        print(f"  {k} table(s): " + ", ".join(f"N={n:,}: {u:.1f}" for n, u in zip(a.sizes, us))
              + f"; largest - smallest {us[-1] - us[0]:+.1f} µs")


if __name__ == "__main__":
    main()
