"""What the dense engine's divergence guard costs a dense AdamW step, and what other guards
would cost: a probe behind docs/benchmarks.md "Scale", not a benchmark of the lab's code.

One compiled ``lax.scan`` of 100 AdamW steps (optax) on a ``N × d`` float32 table whose gradient
is the scatter of a random minibatch's row gradients (the free table's dense gradient), timed
with each rule for a step that is not finite:

- ``none``: every step applied (``nf.train(..., guard=False)``);
- ``select``: the engine's rule, the new state checked (every value and the table's sum of
  squares finite) and ``jnp.where(keep, new, old)`` over the table and both moments;
- ``cond_after``: the same check, ``lax.cond(keep, new, old)`` instead of the select;
- ``cond_grad``: ``optax.apply_if_finite``'s rule, the step skipped (``lax.cond`` around it)
  when the loss or the dense gradient is not finite, checked before the step;
- ``cond_rows``: the same on the minibatch's row gradients (``B × d``) instead of the table's.

The last two are checks *before* the step: they miss a step whose finite gradient overflows
the table (``nf.train``'s ``sgd`` at ``lr=1e30``, ``tests/test_train.py``), which the engine's
rule catches. Each figure is the best of ``--repeats`` calls after a compiling one; rules are
timed in alternation over ``--rounds`` rounds (this VM's speed changes between states).

    python benchmarks/guard_cost.py                  # 131,072 x 64, batch 256
    python benchmarks/guard_cost.py --concepts 30522 --dim 384
"""

import argparse
import time

import jax
import jax.numpy as jnp
import optax

RULES = ("none", "select", "cond_after", "cond_grad", "cond_rows")


def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.isfinite(jnp.sum(x * x)) for x in jax.tree_util.tree_leaves(tree)]))


def make_run(rule: str, n: int, d: int, batch: int, steps: int):
    opt = optax.adamw(1e-3, weight_decay=0.01)

    def step(carry, key):
        x, s = carry
        ids = jax.random.randint(key, (batch,), 0, n)
        loss, g_rows = jax.value_and_grad(lambda r: jnp.sum(jnp.sin(r)))(x[ids])
        g = jnp.zeros_like(x).at[ids].add(g_rows)

        def apply(c):
            u, s2 = opt.update(g, c[1], c[0])
            return optax.apply_updates(c[0], u), s2

        if rule == "none":
            return apply(carry), loss
        if rule in ("cond_grad", "cond_rows"):
            keep = jnp.isfinite(loss) & _all_finite(g if rule == "cond_grad" else g_rows)
            return jax.lax.cond(keep, apply, lambda c: c, carry), loss
        new = apply(carry)
        keep = jnp.isfinite(loss) & _all_finite(new[0])
        if rule == "select":
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, carry), loss
        return jax.lax.cond(keep, lambda: new, lambda: carry), loss

    @jax.jit
    def run(x, s, key):
        return jax.lax.scan(step, (x, s), jax.random.split(key, steps))[0][0]

    return run, opt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=131072)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    x = jax.random.normal(jax.random.key(0), (a.concepts, a.dim))
    runs = {}
    for rule in RULES:
        run, opt = make_run(rule, a.concepts, a.dim, a.batch_size, a.steps)
        s = opt.init(x)
        run(x, s, jax.random.key(1)).block_until_ready()  # compile
        runs[rule] = (run, s)
    best = dict.fromkeys(RULES, float("inf"))
    for _ in range(a.rounds):
        for rule, (run, s) in runs.items():
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                run(x, s, jax.random.key(2)).block_until_ready()
                best[rule] = min(best[rule], time.perf_counter() - t0)
    print(f"{a.concepts:,} x {a.dim}, batch {a.batch_size}: µs per AdamW step (best of {a.rounds * a.repeats})")
    for rule in RULES:
        us = 1e6 * best[rule] / a.steps
        print(f"  {rule:>10}: {us:9.0f}  ({us / (1e6 * best['none'] / a.steps):.2f}x none)")


if __name__ == "__main__":
    main()
