"""docs/theory.md §8.6's lazy-AdamW norm law against a simulation (float64, the sparse engine):
rms norm per frequency bin against the law, and the log-log slope against the law's 1/2.

    python benchmarks/lazy_adamw_law.py    # about 20 s on 2 CPU cores

A check, not a benchmark: it lives here until the vocabulary sim (issue 16) carries it."""
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
import normflow as nf
N, d, B, steps = 256, 32, 64, 40000
lr, wd, b1, b2 = 1e-2, 0.05, 0.9, 0.99
task = nf.FlatTask(N, d, key=jax.random.key(0), dtype=jnp.float64, frequency="zipf", zipf_exponent=1.0)
save = np.unique(np.linspace(0.6 * steps, steps, 200).astype(int))
t = time.time()
run = nf.train(task, "lazy_adamw", lr=lr, weight_decay=wd, b1=b1, b2=b2, steps=steps, key=jax.random.key(1),
               batch_size=B, save_steps=save, sparse=True)
r2 = np.mean(np.asarray(run.norms)[np.asarray(run.steps) >= 0.6 * steps] ** 2, axis=0)
p = np.asarray(task.frequency(B))
al = 1 - lr * wd
a = p * al / (1 - (1 - p) * al)
law = lr**2 * d * p / (1 - al**2) * (1 - b1) * (1 + b1 * a) / ((1 + b1) * (1 - b1 * a))
err = np.sqrt(r2 / law) - 1  # rms norm vs formula
order = np.argsort(p)
bins = np.array_split(order, 8)
print(f"{time.time()-t:.0f}s; rms R vs sqrt(law), by p-bin (low p first):")
for b in bins:
    print(f"  p {p[b].min():.3f}-{p[b].max():.3f}: rms R {np.sqrt(r2[b]).mean():.4f}  law {np.sqrt(law[b]).mean():.4f}  error {100*np.mean(err[b]):+.1f} %  (ηλ/p {lr*wd/p[b].mean():.4f}, (1-b2)/p {(1-b2)/p[b].mean():.3f})")
sl = np.polyfit(np.log(p), np.log(np.sqrt(r2)), 1)[0]
print("log-log slope of rms R against p:", round(sl, 3), "(law: 0.5 at small ηλ/p)")
