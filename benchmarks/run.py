"""normflow benchmarks: how close the training engine and the sweep engine get to this machine's limit.

    python benchmarks/run.py [--quick] [--only standard,small,ode]

Every ratio is measured in this one process and run; each time is the best (minimum) of a few
repeats, so that other load on the machine inflates it as little as possible. Compile time is
reported separately from run time. The last line of output is one JSON object with the keys
``standard_fraction_of_matmul``, ``small_sweep_fraction_of_roofline``,
``small_sweep_vs_python_loop``, ``small_sweep_vs_torch`` (null without PyTorch) and
``ode_vs_rk4``, (the line before it holds every raw figure behind them).

Everything runs as the lab's sweep sims run (``normflow.cli.cpu_setup()``): on CPU with one JAX
device per core (``nf.cpu_devices_per_core()``; a sweep spreads its configs over them) and
``normflow.sweep.unroll_cpu_threefry()`` (JAX's unrolled Threefry lowering; bit-identical random
numbers, faster CPU code).

1. standard: FlatTask(1024 concepts, dim 64), batch 256, float32, SGD with decoupled decay,
   norms recorded (16 log-spaced saves over 1,000 steps), through ``nf.train``. FLOPs counted:
   the logits matmul, forward 2·B·B·d and backward 2x that, i.e. 6·B²·d per step (the free
   table needs only one of the two backward matmuls: contexts are data). Roofline: the best
   GFLOP/s of a jitted float32 square matmul (n = 512…2048) measured here. The headline
   ``standard_fraction_of_matmul`` is the run with each minibatch split over every device
   (``nf.train(..., devices="all")``; on CPU, ``nf.cpu_devices_per_core()`` gives one device
   per core) where there is more than one device, else the one-device run;
   ``standard_fraction_of_matmul_one_device`` is the one-device run. Also measured: the
   one-device run under JAX's stock (rolled) CPU Threefry lowering, and the sampler and the
   two matmuls alone in the same loop form (where the time goes).
2. small: HierarchicalTask(depth=2, branching=8) (72 concepts), dim 32, batch 64, 64 configs
   (4 lr x 4 weight decays x 4 seeds) through ``nf.sweep`` vs (a) a Python loop calling one
   jitted training step (the engine's own step) per config and step, and (b) a plain PyTorch
   eager loop of the same task (if torch is importable; 8 of the configs, the faster of 1 thread
   and torch's default thread count).
3. ode: ``nf.gradient_flow`` (Diffrax Tsit5, PID controller, rtol 1e-6) on the standard task to
   a fixed horizon vs fixed-step classic RK4 with the fewest steps that reach the same final
   accuracy against a tight reference (Tsit5 at rtol 1e-8; the task is float32); ``ode_vs_rk4`` = RK4 wall time / adaptive
   wall time (> 1: adaptive is faster at equal accuracy).
4. scale (``--only scale``; not in the default set, it takes ~17 minutes on 2 CPU cores):
   µs per step against the table's size, FlatTask(N concepts, dim 64, 4 leaves per concept),
   batch 256, float32, at N = 1,024 / 8,192 / 32,768 / 131,072 and at MiniLM's 30,522 x 384, for
   ``sgd``, ``sgdm``, ``adamw`` and ``lazy_adamw``, each through the dense engine (the step as it
   was before the sparse engine) and, for the three that have one, the sparse engine
   (``nf.train(..., sparse=True)``). µs/step is the marginal cost, (time of 2n steps - time of n
   steps)/n of one compiled program, so a call's fixed costs (initialisation, the record, the
   assembly) cancel. The sparse ratio 131,072 : 1,024 is measured again with the two sizes timed
   in alternation, the ratio taken within each of 7 rounds (the median and the range are
   reported), so that this VM's jumps of speed between rounds cancel. Dense AdamW's
   bytes moved per step (8 passes over the table: parameters, both moments read and written, the
   dense gradient written and read) ÷ its step time, with and without the divergence guard
   (``nf.train(..., guard=False)``), as a fraction of the memory bandwidth measured in the same
   run (``x ← 0.999·x + 1`` over a 256 MiB float32 array in a compiled loop: 2 passes each). And
   the sparse sweep at 131,072 concepts (``nf.sweep(..., sparse=True)``): its peak resident
   memory at a few config counts, each in a fresh process, the per-config slope, the largest
   sweep that fits in 24 GiB by that slope, and the throughput (config-steps/s) of each one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import normflow as nf
from normflow.sweep import unroll_cpu_threefry

STANDARD = dict(num_concepts=1024, dim=64, batch=256)
REF_RTOL = 1e-8
SMALL = dict(depth=2, branching=8, dim=32, batch=64, configs=64)


def log(*a):
    print(*a, flush=True)


def best_time(fn, repeats: int) -> float:
    """Minimum wall time of ``fn()`` (which must block until its result is ready)."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def block(x):
    return jax.block_until_ready(x)


# --------------------------------------------------------------------------- roofline
def matmul_roofline(quick: bool) -> dict:
    if jax.default_backend() == "cpu":
        sizes = (512, 1024) if quick else (512, 1024, 2048)
    else:
        sizes = (1024, 4096, 8192)
    rates = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        f = jax.jit(lambda a, b: a @ b)
        block(f(a, b))
        t = best_time(lambda: block(f(a, b)), repeats=5 if quick else 10)
        rates[n] = 2 * n**3 / t / 1e9
    # the logits matmul shape itself (B x d) @ (d x B), for reference
    B, d = STANDARD["batch"], STANDARD["dim"]
    x = jax.random.normal(jax.random.key(2), (B, d), jnp.float32)
    g = jax.jit(lambda x: x @ x.T)
    block(g(x))
    same = 2 * B * B * d / best_time(lambda: block(g(x)), 20) / 1e9
    peak = max(rates.values())
    log("[roofline] float32 matmul GFLOP/s: " + ", ".join(f"n={n}: {r:.1f}" for n, r in rates.items())
        + f"; logits shape {B}x{d}@{d}x{B}: {same:.1f}  -> roofline {peak:.1f} GFLOP/s")
    return dict(peak=peak, by_size=rates, logits_shape=same)


# --------------------------------------------------------------------------- standard task
def time_train(task, steps: int, repeats: int, **kw) -> dict:
    args = dict(lr=0.5, weight_decay=1e-3, batch_size=STANDARD["batch"], save_steps=16, key=jax.random.key(0)) | kw
    t = time.perf_counter()
    block(nf.train(task, "sgd", steps=steps, **args).norms)
    first = time.perf_counter() - t
    run = best_time(lambda: block(nf.train(task, "sgd", steps=steps, **args).norms), repeats)
    return dict(compile_s=max(first - run, 0.0), run_s=run, us_per_step=run / steps * 1e6)


def bench_standard(roof: dict, quick: bool) -> dict:
    B, d = STANDARD["batch"], STANDARD["dim"]
    flop = 6 * B * B * d
    steps = 50 if quick else 1000
    reps = 1 if quick else 3
    key = jax.random.key(0)
    out = dict(steps=steps, saves=16, flop_per_step=flop)
    on_cpu = jax.default_backend() == "cpu"
    # "lab": one device, as the sims run (unroll_cpu_threefry() on CPU); "data_parallel": the
    # same run with each minibatch split over all devices (nf.train(devices="all"); on CPU one
    # device per core), the headline where there is more than one device; "stock_threefry":
    # one device under JAX's default (rolled) CPU Threefry lowering (bit-identical numbers).
    many = jax.device_count() > 1
    variants = [("lab", True, None)] + ([("data_parallel", True, "all")] if many else []) \
        + ([("stock_threefry", False, None)] if on_cpu and not quick else [])
    task = nf.FlatTask(STANDARD["num_concepts"], d, key=key)
    for name, unroll, devices in variants:
        if on_cpu:
            unroll_cpu_threefry(unroll)  # also clears compilation caches
        r = time_train(task, steps, reps, devices=devices)
        r["gflops"] = flop / (r["us_per_step"] * 1e-6) / 1e9
        r["fraction_of_matmul"] = r["gflops"] / roof["peak"]
        out[name] = r
        r["devices"] = jax.device_count() if devices else 1
        log(f"[standard/{name}, {r['devices']} device{'s' if r['devices'] > 1 else ''}] {r['us_per_step']:.0f} us/step, {r['gflops']:.1f} GFLOP/s = "
            f"{100 * r['fraction_of_matmul']:.1f}% of matmul roofline (compile {r['compile_s']:.1f} s, {steps} steps)")
    if on_cpu:
        unroll_cpu_threefry(True)
    # where the time goes: the sampler alone and the two matmuls alone, in the same loop form
    n = 20 if quick else 200
    x = jax.random.normal(jax.random.key(3), (B, d), jnp.float32)
    y = task.sample(key, B).contexts

    def sampler_loop(w):
        def body(i, acc):
            b = task.sample(jax.random.fold_in(key, i), B)
            return acc + b.contexts[0, 0] + b.concepts[0]
        return jax.lax.fori_loop(0, n, body, w)

    def matmul_loop(x):  # the forward and the one backward matmul the free table needs
        return jax.lax.fori_loop(0, n, lambda i, x: x + 1e-6 * ((x @ y.T) @ y), x)

    for name, fn, arg in (("sampler", sampler_loop, 0.0), ("two_matmuls", matmul_loop, x)):
        f = jax.jit(fn)
        block(f(arg))
        out[f"{name}_us_per_step"] = best_time(lambda: block(f(arg)), 3) / n * 1e6
    log(f"[standard] parts, same loop form: task.sample {out['sampler_us_per_step']:.0f} us; logits matmul + its "
        f"backward for x {out['two_matmuls_us_per_step']:.0f} us ({4 * B * B * d / out['two_matmuls_us_per_step'] / 1e3:.1f}"
        f" GFLOP/s)")
    return out


# --------------------------------------------------------------------------- small sweep
def _small_task():
    return nf.HierarchicalTask(depth=SMALL["depth"], branching=SMALL["branching"], dim=SMALL["dim"], key=jax.random.key(0))


def _small_grid():
    arrays, _ = nf.grid(lr=[0.1, 0.2, 0.3, 0.5], weight_decay=[1e-4, 1e-3, 3e-3, 1e-2], seed=[0, 1, 2, 3])
    return arrays


def python_loop_rate(task, arrays, steps: int) -> dict:
    """Config-steps/s of a Python loop calling one jitted training step (the engine's step:
    normflow.train.run_chunk running one plain step) for each config in turn."""
    import equinox as eqx

    from normflow.optimizers import Hyper
    from normflow.train import init_state, run_chunk

    B = SMALL["batch"]
    loss_fn = nf.get_loss("info_nce")

    @eqx.filter_jit
    def step(state, k, static, hyper, data_key):
        rec = jnp.reshape(k + 1, (1,))
        st, _ = run_chunk(state, rec, jnp.ones(1, jnp.int32), jnp.zeros(1, bool), static=static, task=task,
                          optimizer="sgd", hyper=hyper, data_key=data_key, batch_size=B, loss_fn=loss_fn, fixed_batch=None)
        return st

    cfgs = []
    for c in range(len(arrays["lr"])):
        k_model, k_data = jax.random.split(jax.random.key(int(arrays["seed"][c])))
        model = nf.default_model(task, k_model)
        hyper = Hyper(*(jnp.asarray(v, task.dtype) for v in (arrays["lr"][c], arrays["weight_decay"][c], 0.9, 0.9, 0.999, 1e-8)))
        params, static = eqx.partition(model, eqx.is_inexact_array)
        cfgs.append((init_state(model, "sgd", hyper), static, hyper, k_data))
    t = time.perf_counter()
    block(step(cfgs[0][0], jnp.int32(0), *cfgs[0][1:]).params)
    compile_s = time.perf_counter() - t

    def run():
        last = None
        for state, static, hyper, k_data in cfgs:
            for k in range(steps):
                state = step(state, jnp.int32(k), static, hyper, k_data)
            last = state
        block(last.params)

    t = best_time(run, 2)
    return dict(compile_s=compile_s, run_s=t, config_steps_per_s=len(cfgs) * steps / t)


def torch_rate(task, arrays, steps: int) -> dict | None:
    """The same task as a plain PyTorch eager loop, one config after another."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    B, temp = SMALL["batch"], float(task.temperature)
    noise = float(task.context_noise)
    weights = torch.tensor(np.asarray(task.weights))
    centers = torch.tensor(np.asarray(task.leaf_centers))
    lo = torch.tensor(np.asarray(task.leaf_lo), dtype=torch.long)
    cnt = torch.tensor(np.asarray(task.leaf_count), dtype=torch.long)
    N, d = task.num_concepts, task.dim
    save = set(nf.log_steps(steps, 16).tolist())

    def one(lr, wd):
        w = torch.randn(N, d)
        w = (w / w.norm(dim=1, keepdim=True)).requires_grad_(True)
        opt = torch.optim.SGD([w], lr=lr, weight_decay=wd)  # = decoupled decay for plain SGD
        norms = []
        for k in range(steps):
            concepts = torch.multinomial(weights, B, replacement=True)
            leaf = lo[concepts] + (torch.rand(B) * cnt[concepts]).long().minimum(cnt[concepts] - 1)
            ctx = centers[leaf] + noise * torch.randn(B, d) / math.sqrt(d)
            ctx = ctx / ctx.norm(dim=1, keepdim=True)
            x = w[concepts]
            logits = (x / x.norm(dim=1, keepdim=True)) @ ctx.T / temp
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(B))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if k + 1 in save:
                with torch.no_grad():
                    norms.append(w.norm(dim=1))
        return norms

    one(0.1, 1e-3)  # warm-up
    n_cfg = min(len(arrays["lr"]), 8)  # a subset of the configs: the rate is per config-step
    best = None
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        for c in range(n_cfg):
            one(float(arrays["lr"][c]), float(arrays["weight_decay"][c]))
        t = time.perf_counter() - t
        r = dict(run_s=t, configs=n_cfg, steps=steps, config_steps_per_s=n_cfg * steps / t, torch=torch.__version__,
                 threads=threads)
        if best is None or r["config_steps_per_s"] > best["config_steps_per_s"]:
            best = r
    torch.set_num_threads(default_threads)
    return best  # the faster thread setting (1 or torch's default)


def bench_small(roof: dict, quick: bool) -> dict:
    task = _small_task()
    arrays = _small_grid()
    C, B, d = SMALL["configs"], SMALL["batch"], SMALL["dim"]
    assert len(arrays["lr"]) == C and task.num_concepts == 72
    flop = 6 * B * B * d
    steps = 20 if quick else 200
    kw = dict(lr=arrays["lr"], weight_decay=arrays["weight_decay"], seeds=arrays["seed"], batch_size=B, save_steps=16)
    t = time.perf_counter()
    block(nf.sweep(task, "sgd", steps=steps, **kw).norms)
    first = time.perf_counter() - t
    run = best_time(lambda: block(nf.sweep(task, "sgd", steps=steps, **kw).norms), 1 if quick else 2)
    rate = C * steps / run
    out = dict(compile_s=max(first - run, 0.0), run_s=run, config_steps_per_s=rate, gflops=rate * flop / 1e9)
    out["fraction_of_roofline"] = out["gflops"] / roof["peak"]
    log(f"[small/sweep] {C} configs x {steps} steps: {rate:.0f} config-steps/s, {out['gflops']:.2f} GFLOP/s = "
        f"{100 * out['fraction_of_roofline']:.1f}% of roofline (compile {out['compile_s']:.1f} s)")
    loop = python_loop_rate(task, arrays, steps=3 if quick else 20)
    out["python_loop"] = loop
    out["vs_python_loop"] = rate / loop["config_steps_per_s"]
    log(f"[small/python loop] {loop['config_steps_per_s']:.0f} config-steps/s (compile {loop['compile_s']:.1f} s) "
        f"-> sweep is {out['vs_python_loop']:.1f}x")
    tr = torch_rate(task, arrays, steps=3 if quick else 40)
    out["torch"] = tr
    out["vs_torch"] = None if tr is None else rate / tr["config_steps_per_s"]
    if tr is None:
        log("[small/torch] PyTorch not importable: skipped")
    else:
        log(f"[small/torch {tr['torch']}, {tr['threads']} threads] {tr['config_steps_per_s']:.0f} config-steps/s "
            f"-> sweep is {out['vs_torch']:.1f}x")
    return out


# --------------------------------------------------------------------------- ODE
def bench_ode(quick: bool) -> dict:
    import diffrax

    task = nf.FlatTask(STANDARD["num_concepts"], STANDARD["dim"], key=jax.random.key(0))
    key = jax.random.key(1)
    t1 = 50.0 if quick else 500.0
    n_samples = 512
    rtol, atol = 1e-6, 1e-8
    # The library call (it compiles on every call), for its solver statistics; --quick skips it.
    sol_lib, lib_s = None, None
    if not quick:
        t = time.perf_counter()
        _, sol_lib = nf.gradient_flow_solution(task, t1, key=key, rtol=rtol, atol=atol, n_samples=n_samples)
        block(sol_lib.ys)
        lib_s = time.perf_counter() - t
    # The same ODE, compiled once, so that compile and run time can be separated.
    # the same model, data and loss as gradient_flow (see normflow.flows)
    k_model, k_data = jax.random.split(key)
    params = nf.default_model(task, k_model)
    data = nf.full_batch(task, jax.random.fold_in(k_data, 2**31 - 1), n_samples)

    def loss_of(m, batch):
        return nf.info_nce(m.embed_concepts(batch.concepts), m.embed_contexts(batch.contexts), task.temperature)

    term = diffrax.ODETerm(lambda t, y, args: jax.tree_util.tree_map(lambda g: -g, jax.grad(loss_of)(y, data)))

    @jax.jit
    def adaptive(y0, rtol):
        return diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, t1, None, y0, saveat=diffrax.SaveAt(t1=True),
                                   stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol * rtol / 1e-6),
                                   max_steps=200_000)

    @jax.jit
    def rk4(y0, n):
        return diffrax.diffeqsolve(term, RK4(), 0.0, t1, t1 / n, y0, saveat=diffrax.SaveAt(t1=True),
                                   stepsize_controller=diffrax.ConstantStepSize(), max_steps=100_000)

    def final(sol):
        return np.asarray(jax.tree_util.tree_leaves(sol.ys)[0][-1], np.float64)

    # Reference: the same solver at rtol 1e-8 (float32 cannot resolve much tighter: at 1e-10 the
    # controller stalls at rounding level and takes ~50x more steps).
    t = time.perf_counter()
    adaptive = adaptive.lower(params, rtol).compile()  # rtol is traced: one program for both tolerances
    ad_compile = time.perf_counter() - t
    ref = final(block(adaptive(params, REF_RTOL)))
    sol = block(adaptive(params, rtol))
    ad_s = best_time(lambda: block(adaptive(params, rtol)), 2 if quick else 3)
    err = np.max(np.abs(final(sol) - ref))
    steps = int(sol.stats["num_steps"])
    if sol_lib is not None:
        assert steps == int(sol_lib.stats["num_steps"]), "benchmark ODE differs from gradient_flow_solution's"
    # Tsit5: 7 stages, first-same-as-last -> 6 new evaluations per step (+2 for the initial dt guess)
    nfe_ad = 6 * steps + 2
    # fewest RK4 steps with final error <= the adaptive solve's (error ~ n^-4: double, then bisect)
    errs = {}

    def rk_err(n):
        if n not in errs:
            errs[n] = np.max(np.abs(final(block(rk4(params, n))) - ref))
        return errs[n]

    t = time.perf_counter()
    rk4 = rk4.lower(params, 8).compile()  # the step count is traced: one program for every n
    rk_compile = time.perf_counter() - t
    lo_n, hi_n = 0, 8
    while rk_err(hi_n) > err and hi_n < 100_000:
        lo_n, hi_n = hi_n, hi_n * 2
    while hi_n - lo_n > max(1, hi_n // 50):  # within 2% of the fewest
        mid = (lo_n + hi_n) // 2
        lo_n, hi_n = (mid, hi_n) if rk_err(mid) > err else (lo_n, mid)
    n_rk = hi_n
    rk_s = best_time(lambda: block(rk4(params, n_rk)), 2 if quick else 3)
    out = dict(t1=t1, rtol=rtol, adaptive_steps=steps, adaptive_rejected=int(sol.stats["num_rejected_steps"]),
               reference_rtol=REF_RTOL, adaptive_nfe=nfe_ad, adaptive_run_s=ad_s, adaptive_compile_s=ad_compile,
               adaptive_final_error=float(err), library_call_s=lib_s, rk4_steps=n_rk, rk4_nfe=4 * n_rk, rk4_run_s=rk_s,
               rk4_compile_s=rk_compile, rk4_final_error=float(rk_err(n_rk)))
    out["ode_vs_rk4"] = rk_s / ad_s
    log(f"[ode] t1={t1}: adaptive Tsit5 rtol={rtol}: {steps} steps, {nfe_ad} evals, {ad_s:.3f} s (compile "
        f"{out['adaptive_compile_s']:.1f} s), final err {err:.2e}; RK4 at equal accuracy: {n_rk} steps, {4 * n_rk} evals, "
        f"{rk_s:.3f} s (err {out['rk4_final_error']:.2e}) -> adaptive is {out['ode_vs_rk4']:.2f}x faster")
    return out


def RK4():
    """Classic fourth-order Runge–Kutta as a Diffrax explicit RK solver."""
    import diffrax

    tab = diffrax.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )

    class _RK4(diffrax.AbstractERK):
        tableau = tab
        interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

        def order(self, terms):
            return 4

    return _RK4()


# --------------------------------------------------------------------------- scale
SCALE_SIZES = ((1024, 64), (8192, 64), (32768, 64), (131072, 64), (30522, 384))
SCALE_OPTS = {"sgd": dict(lr=0.5, weight_decay=1e-3), "sgdm": dict(lr=0.05, weight_decay=1e-3, momentum=0.9),
              "adamw": dict(lr=1e-2, weight_decay=0.05), "lazy_adamw": dict(lr=1e-2, weight_decay=0.05)}
SCALE_BATCH = 256


def _scale_run(task, opt: str, n: int, sparse: bool, **kw):
    """A call of ``n`` steps of ``opt`` on ``task`` that blocks until done (record at the end only)."""
    return lambda: block(nf.train(task, opt, steps=n, key=jax.random.key(0), batch_size=SCALE_BATCH, save_steps=[n],
                                  sparse=sparse, **SCALE_OPTS[opt], **kw).norms)


def per_step_us(task, opt: str, sparse: bool, steps: int, repeats: int, **kw) -> float:
    """Marginal µs per step: (best time of 2·steps - best time of steps) / steps, each the best of
    ``repeats`` calls after a first (compiling) one, with the record only at the end."""

    def timed(n):
        run = _scale_run(task, opt, n, sparse, **kw)
        run()
        return best_time(run, repeats)

    return 1e6 * (timed(2 * steps) - timed(steps)) / steps


def interleaved_ratio(opt: str, sizes, steps: int, rounds: int) -> dict:
    """The sparse step's µs at the largest over the smallest size, measured in alternation: each
    round times both sizes (n and 2n steps each, the marginal (t(2n) - t(n))/n per step) within
    seconds of each other, and the ratio is taken *within* each round, so a change of the
    machine's speed between rounds (this VM's jumps between states) cancels. Reported: the median
    of the rounds' ratios and their range, and each size's best marginal µs over the rounds."""
    tasks = [nf.FlatTask(n, d, key=jax.random.key(1), leaves_per_concept=4, dtype=jnp.float32) for n, d in sizes]
    runs = {(i, m): _scale_run(t, opt, m, True) for i, t in enumerate(tasks) for m in (steps, 2 * steps)}
    for run in runs.values():
        run()  # compile
    per_round = []
    for _ in range(rounds):
        t = {k: best_time(run, 1) for k, run in runs.items()}
        per_round.append([1e6 * (t[(i, 2 * steps)] - t[(i, steps)]) / steps for i in range(len(sizes))])
    us = np.asarray(per_round)
    ratios = us[:, -1] / us[:, 0]
    return dict(sizes=[list(nd) for nd in sizes], us=[float(u) for u in us.min(axis=0)],
                round_ratios=[float(r) for r in ratios], ratio=float(np.median(ratios)),
                ratio_range=[float(ratios.min()), float(ratios.max())])


def memory_bandwidth(quick: bool) -> float:
    """Bytes/s of ``x ← 0.999·x + 1`` over a 256 MiB float32 array, 10 times in one compiled
    ``fori_loop`` (each pass reads and writes the array once; the buffer is reused in place, so no
    fresh pages are faulted in): a STREAM-style figure from the same runtime as the benchmark."""
    n, reps = (64 if quick else 256) * 2**18, 10
    f = jax.jit(lambda a: jax.lax.fori_loop(0, reps, lambda i, x: 0.999 * x + 1.0, a))
    x = block(f(jnp.zeros(n, jnp.float32)))
    return 2 * reps * x.nbytes / best_time(lambda: block(f(x)), 5)


def _sweep_child(configs: int, steps: int) -> None:
    """(``--sweep-child``) one sparse sweep at 131,072 concepts; prints its peak RSS and time."""
    import resource

    task = nf.FlatTask(131072, 64, key=jax.random.key(1), leaves_per_concept=4, dtype=jnp.float32)
    kw = SCALE_OPTS["lazy_adamw"]
    run = lambda n: block(nf.sweep(task, "lazy_adamw", lr=np.full(configs, kw["lr"]), weight_decay=kw["weight_decay"],
                                   seeds=np.arange(configs), steps=n, batch_size=SCALE_BATCH, save_steps=[n],
                                   sparse=True).norms)
    run(steps), run(2 * steps)
    t = best_time(lambda: run(2 * steps), 1) - best_time(lambda: run(steps), 1)
    print(json.dumps(dict(configs=configs, peak_rss_gib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                          config_steps_per_s=configs * steps / t)))


def sweep_memory(quick: bool) -> dict:
    import subprocess

    counts, steps = ((2, 8) if quick else (4, 16, 64)), (50 if quick else 200)
    rows = []
    for c in counts:
        out = subprocess.run([sys.executable, __file__, "--sweep-child", str(c), str(steps)], capture_output=True,
                             text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        log(f"[scale] sparse lazy_adamw sweep, 131,072 concepts x {c} configs: peak RSS {rows[-1]['peak_rss_gib']:.2f} "
            f"GiB, {rows[-1]['config_steps_per_s']:,.0f} config-steps/s")
    c = np.array([r["configs"] for r in rows], float)
    m = np.array([r["peak_rss_gib"] for r in rows])
    slope, intercept = np.polyfit(c, m, 1)
    fits = int((24 - intercept) // slope)
    log(f"[scale] sweep memory: {intercept:.2f} GiB + {slope * 1024:.0f} MiB per config -> {fits} configs in 24 GiB")
    return dict(runs=rows, gib_per_config=slope, gib_fixed=intercept, configs_in_24_gib=fits)


def bench_scale(quick: bool) -> dict:
    bw = memory_bandwidth(quick)
    log(f"[scale] memory bandwidth (x <- 0.999 x + 1 over {64 if quick else 256} MiB): {bw / 1e9:.1f} GB/s")
    sizes = SCALE_SIZES[:2] + SCALE_SIZES[-1:] if quick else SCALE_SIZES
    rows = []
    for n, d in sizes:
        task = nf.FlatTask(n, d, key=jax.random.key(1), leaves_per_concept=4, dtype=jnp.float32)
        big = n * d > 2**20
        for opt in SCALE_OPTS:
            row = dict(concepts=n, dim=d, optimizer=opt)
            dense_steps, dense_repeats = (20 if quick else 100) if big else (200 if quick else 2000), 1 if big else 2
            row["dense_us"] = per_step_us(task, opt, False, dense_steps, dense_repeats)
            if opt != "adamw":  # cheap, and this VM's speed jumps between two states: best of 5
                row["sparse_us"] = per_step_us(task, opt, True, 200 if quick else 1000, 2 if quick else 5)
            else:  # also without the divergence guard (nf.train(..., guard=False))
                row["dense_unguarded_us"] = per_step_us(task, opt, False, dense_steps, dense_repeats, guard=False)
                row["bytes_per_step"] = 8 * n * d * 4
                row["fraction_of_bandwidth"] = row["bytes_per_step"] / (row["dense_us"] * 1e-6) / bw
                row["fraction_of_bandwidth_unguarded"] = row["bytes_per_step"] / (row["dense_unguarded_us"] * 1e-6) / bw
            rows.append(row)
            extra = (f"sparse {row['sparse_us']:9.1f} µs" if "sparse_us" in row
                     else f"{100 * row['fraction_of_bandwidth']:.0f} % of bandwidth; guard=False "
                          f"{row['dense_unguarded_us']:.1f} µs, {100 * row['fraction_of_bandwidth_unguarded']:.0f} %")
            log(f"[scale] {n:>7} x {d:<3} {opt:>10}: dense {row['dense_us']:9.1f} µs, {extra}")
    at = {(r["concepts"], r["dim"], r["optimizer"]): r for r in rows}
    base, top = sizes[0], (131072, 64) if not quick else sizes[1]
    ratios, interleaved = {}, {}
    for opt in SCALE_OPTS:
        f = "dense_us" if opt == "adamw" else "sparse_us"
        ratios[opt] = at[(*top, opt)][f] / at[(*base, opt)][f]
        if opt != "adamw":
            interleaved[opt] = interleaved_ratio(opt, (base, top), 200 if quick else 1000, 3 if quick else 7)
            ratios[opt] = interleaved[opt]["ratio"]
        lo_hi = interleaved[opt]["ratio_range"] if opt in interleaved else None
        log(f"[scale] {opt}: step at {top[0]:,} concepts / at {base[0]:,} = {ratios[opt]:.2f}x"
            + (f" (sparse, median of {len(interleaved[opt]['round_ratios'])} rounds timing both sizes in alternation,"
               f" range {lo_hi[0]:.2f}-{lo_hi[1]:.2f}x)" if lo_hi else " (dense)"))
    return dict(bandwidth_bytes_per_s=bw, rows=rows, ratio_largest_vs_smallest=ratios, interleaved=interleaved,
                largest=list(top), sweep=sweep_memory(quick))


# --------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps, fewer variants (well under a minute)")
    p.add_argument("--only", default="standard,small,ode", help="comma-separated subset of standard,small,ode,scale")
    p.add_argument("--sweep-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    parts = set(args.only.split(","))
    nf.cpu_devices_per_core()  # as the sweep sims run: one CPU device per core (before JAX starts)
    if args.sweep_child:
        return _sweep_child(*args.sweep_child)
    dev = jax.devices()[0]
    log(f"[machine] {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__}, "
        f"backend {jax.default_backend()}, device {dev.device_kind} x{jax.device_count()}, quick={args.quick}, "
        f"load average {os.getloadavg()[0]:.1f} (other processes on the machine inflate every time)")
    if jax.default_backend() == "cpu":
        unroll_cpu_threefry(True)  # as the sims run
    t0 = time.perf_counter()
    roof = matmul_roofline(args.quick)
    res = dict(machine=dict(cpus=os.cpu_count(), backend=jax.default_backend(), device=dev.device_kind,
                            devices=jax.device_count(), jax=jax.__version__, load_average=os.getloadavg()[0]),
               quick=args.quick,
               matmul_gflops=roof["peak"], logits_matmul_gflops=roof["logits_shape"])
    keys = dict(standard_fraction_of_matmul=None, small_sweep_fraction_of_roofline=None, small_sweep_vs_python_loop=None,
                small_sweep_vs_torch=None, ode_vs_rk4=None)
    if "standard" in parts:
        st = bench_standard(roof, args.quick)
        res["standard"] = st
        keys["standard_fraction_of_matmul"] = st.get("data_parallel", st["lab"])["fraction_of_matmul"]
        keys["standard_fraction_of_matmul_one_device"] = st["lab"]["fraction_of_matmul"]
        if "stock_threefry" in st:
            keys["standard_fraction_of_matmul_stock_threefry"] = st["stock_threefry"]["fraction_of_matmul"]
    if "small" in parts:
        sm = bench_small(roof, args.quick)
        res["small"] = sm
        keys["small_sweep_fraction_of_roofline"] = sm["fraction_of_roofline"]
        keys["small_sweep_vs_python_loop"] = sm["vs_python_loop"]
        keys["small_sweep_vs_torch"] = sm["vs_torch"]
    if "ode" in parts:
        od = bench_ode(args.quick)
        res["ode"] = od
        keys["ode_vs_rk4"] = od["ode_vs_rk4"]
    if "scale" in parts:
        sc = bench_scale(args.quick)
        res["scale"] = sc
        keys.update({f"scale_{o}_ratio": r for o, r in sc["ratio_largest_vs_smallest"].items()})
        big = [r for r in sc["rows"] if r["concepts"] * r["dim"] >= 2**23 and r["optimizer"] == "adamw"]
        keys["scale_adamw_fraction_of_bandwidth"] = max(r["fraction_of_bandwidth"] for r in big)
        keys["scale_adamw_unguarded_fraction_of_bandwidth"] = max(r["fraction_of_bandwidth_unguarded"] for r in big)
        keys["scale_sweep_configs_in_24_gib"] = sc["sweep"]["configs_in_24_gib"]
    res["total_s"] = time.perf_counter() - t0
    log(f"[total] {res['total_s']:.1f} s")
    rounded = {k: (None if v is None else round(float(v), 4)) for k, v in keys.items()}
    print(json.dumps({"details": res}, default=float))
    print(json.dumps(rounded))


if __name__ == "__main__":
    sys.exit(main())
