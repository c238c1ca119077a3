"""Benchmark: Monte-Carlo throughput of every backend against a naive loop and the machine's ceilings.

For each family at d = 4096 with 64 seeds (``--quick``: d = 1024, 16 seeds), in one run:

* **sample-updates per second** (one sample's contribution to one seed's update; for full-batch GD
  every step updates with all n rows, so a GD step counts n sample-updates) and the same × d
  (the numbers touched per second) for the numpy reference, numba and jax backends, and a naive
  per-sample numpy loop (one seed, one fresh x per step, written independently of hidyn);
* the machine's **ceilings**, measured in the same run: Gaussian-generator throughput (numpy PCG64
  ``standard_normal`` in the run's precision, normals/s on one core and on all cores, one Generator
  per thread; the all-core figure is measured again just before each online family, with bursts of
  the same work) and
  matvec bandwidth (``X @ v`` on a float64 matrix much larger than the caches, GB/s), and the
  throughput of ``jax.random.normal`` (threefry), the generator the jax backends are bound by;
* the **ratios** of each backend to the numpy reference and to the naive loop, and the **fraction of
  the binding ceiling**: online SGD needs d fresh normals per sample-update, so its ceiling is
  (all-core normals/s)/d; full-batch GD must read each row of X (d numbers) once per sample-update,
  so its ceiling is (bandwidth/8 bytes)/d.

DLN full-batch GD has extra variants: the fused one-pass gradient of the numba backend (each row of X
read once per step) against the reference's two matvecs (Xβ then Xᵀr), and G weight vectors sharing
one X — in one fused pass (numba) and as two matrix products (numpy BLAS).

Every timing is the best of ``--repeat`` bursts after a warm-up (compilation, first block), so a shared
machine's load biases the numbers less; the run prints what it measured, nothing is hard-coded.
Run ``python benchmarks/mc_throughput.py [--quick] [--families two_layer dln single_index]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time

import numpy as np

FAMILIES = ("two_layer", "dln", "single_index")


# --------------------------------------------------------------------------------------------------
# ceilings
# --------------------------------------------------------------------------------------------------
def gauss_throughput(n_normals: int, threads: int, repeat: int, chunk: int = 1 << 20,
                     dtype: str = "float64") -> float:
    """Normals per second of PCG64 ``standard_normal`` (in ``dtype``) with ``threads`` Generators at once.

    Each thread draws ``n_normals`` in chunks of ``chunk`` into one reused buffer (as the backends do:
    no page faults, no memory traffic beyond the caches), so a burst lasts as long as a backend's
    burst of the same work and sees the same load of a shared machine.  Best of ``repeat`` bursts.
    """
    gens = [np.random.Generator(np.random.PCG64(1000 + i)) for i in range(threads)]
    chunk = min(chunk, n_normals)
    bufs = [np.empty(chunk, dtype=dtype) for _ in range(threads)]
    n_chunks = max(1, n_normals // chunk)

    def work(g, b):
        for _ in range(n_chunks):
            g.standard_normal(out=b, dtype=b.dtype)

    best = 0.0
    for _ in range(repeat):
        workers = [threading.Thread(target=work, args=(g, b)) for g, b in zip(gens, bufs)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, threads * n_chunks * chunk / (time.perf_counter() - t0))
    return best


def jax_gauss_throughput(n_normals: int, repeat: int, dtype: str = "float64") -> float | None:
    """Normals per second of ``jax.random.normal`` (default threefry keys, jitted, all devices' cores).

    The generator ceiling of the jax backends: on a CPU it sits well below numpy's PCG64, which is
    why ``backend="auto"`` prefers numba there.  ``None`` when jax is not installed.
    """
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    with jax.enable_x64(dtype == "float64"):
        f = jax.jit(lambda k: jax.random.normal(k, (n_normals,), dtype=getattr(jnp, dtype)).sum())
        key = jax.random.key(0)
        f(key).block_until_ready()
        best = 0.0
        for i in range(repeat):
            k = jax.random.fold_in(key, i)
            t0 = time.perf_counter()
            f(k).block_until_ready()
            best = max(best, n_normals / (time.perf_counter() - t0))
    return best


def matvec_bandwidth(nbytes: int, d: int, repeat: int) -> float:
    """Bytes per second streamed by ``X @ v`` on a float64 (nbytes/8/d, d) matrix (BLAS, all threads)."""
    rows = max(1, nbytes // (8 * d))
    X = np.random.default_rng(0).standard_normal((rows, d))
    v = np.ones(d)
    X @ v
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        X @ v
        best = max(best, X.nbytes / (time.perf_counter() - t0))
    return best


# --------------------------------------------------------------------------------------------------
# timing helpers
# --------------------------------------------------------------------------------------------------
def _sync(state):
    for value in state.values() if isinstance(state, dict) else ():
        if hasattr(value, "block_until_ready"):
            value.block_until_ready()


def time_backend(cls, spec, n_seeds, steps, repeat, precision, warm=1):
    """Best seconds per ``advance(steps)`` of backend ``cls`` on ``n_seeds`` seeds (after a warm-up)."""
    from hidyn import rng

    be = cls(spec, precision)
    state = be.init(rng.seed_sequences(0, range(n_seeds)))
    be.advance(state, warm)
    _sync(state)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        be.advance(state, steps)
        _sync(state)
        best = min(best, time.perf_counter() - t0)
    del state
    return best


def naive_two_layer(d, steps, lr=1.0):
    """One seed, one fresh x per step, K = M = 2 erf (docs/theory/teacher_student.md §1), written from scratch."""
    from scipy.special import erf

    r = np.random.default_rng(0)
    B = r.standard_normal((2, d))
    W = 0.5 * r.standard_normal((2, d))
    s = 1.0 / math.sqrt(d)
    c = math.sqrt(2.0 / math.pi)
    t0 = time.perf_counter()
    for _ in range(steps):
        x = r.standard_normal(d)
        lam = (W @ x) * s
        y = erf((B @ x) * s / math.sqrt(2.0)).sum()
        delta = y - erf(lam / math.sqrt(2.0)).sum()
        W += (lr * s) * np.outer(c * np.exp(-0.5 * lam * lam) * delta, x)
    return time.perf_counter() - t0


def naive_dln_online(d, steps, lr, noise=0.1):
    """One seed of DLN online SGD with B = 1: a fresh row x ~ N(0, I/d) per step, g = d·x(x·β − y)."""
    r = np.random.default_rng(0)
    beta_star = np.where(r.random(d) < 0.1, 1.0, 0.0)
    wp = np.full(d, 0.5 / math.sqrt(2))
    wm = wp.copy()
    t0 = time.perf_counter()
    for _ in range(steps):
        x = r.standard_normal(d) / math.sqrt(d)
        res = x @ (wp * wp - wm * wm) - x @ beta_star - noise * r.standard_normal()
        step = (lr * d * res) * x
        wp *= 1.0 - step
        wm *= 1.0 + step
    return time.perf_counter() - t0


def naive_single_index(d, steps, lr=0.1, kappa=5.0):
    """One seed of spiked single-index online SGD (he2, correlation loss, sphere), written from scratch."""
    r = np.random.default_rng(0)
    theta = r.standard_normal(d)
    theta /= np.linalg.norm(theta)
    u = r.standard_normal(d)
    u /= np.linalg.norm(u)
    w = r.standard_normal(d)
    w /= np.linalg.norm(w)
    amp = math.sqrt(1.0 + kappa) - 1.0
    h2 = lambda z: (z * z - 1.0) / math.sqrt(2.0)    # noqa: E731
    t0 = time.perf_counter()
    for _ in range(steps):
        z = r.standard_normal(d)
        x = z + (amp * (z @ u)) * u
        lam, nu = w @ x, theta @ x
        w += (lr / d) * (h2(nu) * math.sqrt(2.0) * lam) * x
        w /= np.linalg.norm(w)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# families
# --------------------------------------------------------------------------------------------------
def _row(family, variant, backend, updates_per_s, d, ceiling, ref=None, naive=None, note=""):
    return {"family": family, "variant": variant, "backend": backend, "updates_per_s": updates_per_s,
            "elements_per_s": updates_per_s * d, "vs_numpy": None if not ref else updates_per_s / ref,
            "vs_naive": None if not naive else updates_per_s / naive,
            "ceiling_fraction": None if not ceiling else updates_per_s / ceiling, "note": note}


def _available(spec, name):
    import importlib

    if name not in type(spec).backends:
        return None
    module, _, cls = type(spec).backends[name].partition(":")
    try:
        klass = getattr(importlib.import_module(module), cls)
    except ImportError:
        return None
    check = getattr(klass, "unsupported_reason", None)
    return None if check and check(spec) else klass


def bench_two_layer(d, seeds, blocks, repeat, precision, gauss_all, naive_steps, log):
    from hidyn import models

    spec = models.get("two_layer", d=d, K=2, M=2, activation="erf", lr=1.0)
    steps = 256 * blocks
    ceiling = gauss_all("two_layer", steps * seeds * d) / d
    rows = []
    naive = naive_steps / min(naive_two_layer(d, naive_steps) for _ in range(repeat))
    rates = {}
    for name in ("numpy", "numba", "jax"):
        cls = _available(spec, name)
        if cls is None:
            continue
        wall = time_backend(cls, spec, seeds, steps, repeat, precision, warm=256)
        rates[name] = steps * seeds / wall
        log(f"  two_layer {name:<6} {rates[name]:.3g} sample-updates/s")
    for name, rate in rates.items():
        rows.append(_row("two_layer", "online SGD K=M=2 erf", name, rate, d, ceiling, rates.get("numpy"), naive))
    rows.append(_row("two_layer", "online SGD K=M=2 erf", "naive loop", naive, d, ceiling, rates.get("numpy"),
                     naive, "1 seed, 1 fresh x per step"))
    return rows


def bench_dln(d, seeds, gd_steps, sgd_steps, repeat, precision, gauss_all, bandwidth, naive_steps, log,
              ratio=0.5):
    from hidyn import models, rng
    from hidyn.solvers.mc import numba_backend as nbk
    from hidyn.solvers.mc.dln_numpy import DLNNumpyBackend

    rows = []
    item = np.dtype(precision).itemsize
    # --- full-batch GD --------------------------------------------------------------------------
    spec = models.get("dln", d=d, ratio=ratio, lr=0.1, init_scale=0.3)
    n = spec.n
    ceiling = bandwidth / item / d          # rows/s if X is read exactly once per step
    variant = f"full-batch GD, n = {n}"
    # one init (numpy Generators, ~S·n·d normals) shared by the numpy and numba backends: same state
    fused = nbk.DLNNumbaBackend(spec, precision)
    ref = DLNNumpyBackend(spec, precision)
    state = fused.init(rng.seed_sequences(0, range(seeds)))
    wp0, wm0 = state["wp"].copy(), state["wm"].copy()
    timings = {}
    for name, be in (("numpy", ref), ("numba", fused)):
        be.advance(state, 1)
        best = math.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            be.advance(state, gd_steps)
            best = min(best, time.perf_counter() - t0)
        timings[name] = best
        state["wp"][:], state["wm"][:] = wp0, wm0
    rates = {k: gd_steps * seeds * n / v for k, v in timings.items()}
    log(f"  dln GD numpy (two matvecs) {rates['numpy']:.3g} rows/s, numba fused {rates['numba']:.3g} rows/s")
    # G = seeds weight vectors sharing one X (the first seed's design)
    X1 = np.ascontiguousarray(state["X"][:1])
    Y = np.ascontiguousarray(np.broadcast_to(state["y"][:1, None, :], (1, seeds, n)))
    wp, wm = wp0[None].copy(), wm0[None].copy()
    threads = nbk._numba_threads()
    nbk.dln_gd_fused(X1, Y, wp, wm, 1, 0.1, 1.0 / ratio, threads)
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        nbk.dln_gd_fused(X1, Y, wp, wm, gd_steps, 0.1, 1.0 / ratio, threads)
        best = min(best, time.perf_counter() - t0)
    rates["numba shared X"] = gd_steps * seeds * n / best
    Xs, Ys = X1[0], Y[0]
    wp, wm = wp0.copy(), wm0.copy()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(gd_steps):
            R = (wp * wp - wm * wm) @ Xs.T - Ys          # (G, n): one GEMM
            step = 0.1 * ((R @ Xs) / ratio)              # (G, d): one GEMM
            wp *= 1.0 - step
            wm *= 1.0 + step
        best = min(best, time.perf_counter() - t0)
    rates["numpy shared X (GEMM)"] = gd_steps * seeds * n / best
    del state, X1, Y, Xs, Ys
    cls = _available(spec, "jax")
    if cls is not None:
        wall = time_backend(cls, spec, seeds, gd_steps, repeat, precision)
        rates["jax"] = gd_steps * seeds * n / wall
    for name, rate in rates.items():
        note = {"numpy": "X read twice per step (BLAS Xβ, Xᵀr)", "numba": "fused: X read once per step",
                "numba shared X": f"{seeds} seeds share one X, one fused pass",
                "numpy shared X (GEMM)": f"{seeds} seeds share one X, two GEMMs",
                "jax": "XLA: Xβ and Xᵀr"}.get(name, "")
        rows.append(_row("dln", variant, name, rate, d, ceiling, rates["numpy"], None, note))
    # --- online SGD, B = 1 ----------------------------------------------------------------------
    spec = models.get("dln", d=d, ratio=None, algorithm="sgd", batch_size=1, lr=0.01 / d, init_scale=0.5)
    ceiling = gauss_all("dln online", sgd_steps * seeds * d) / d
    naive = naive_steps / min(naive_dln_online(d, naive_steps, spec.lr) for _ in range(repeat))
    rates = {}
    for name in ("numpy", "numba", "jax"):
        cls = _available(spec, name)
        if cls is None:
            continue
        wall = time_backend(cls, spec, seeds, sgd_steps, repeat, precision)
        rates[name] = sgd_steps * seeds / wall
        log(f"  dln online SGD {name:<6} {rates[name]:.3g} sample-updates/s")
    for name, rate in rates.items():
        rows.append(_row("dln", "online SGD, B = 1 (exact O(d) sampler)", name, rate, d, ceiling,
                         rates.get("numpy"), naive))
    rows.append(_row("dln", "online SGD, B = 1 (exact O(d) sampler)", "naive loop", naive, d, ceiling,
                     rates.get("numpy"), naive, "1 seed, 1 fresh row per step"))
    return rows


def bench_single_index(d, seeds, steps, repeat, precision, gauss_all, naive_steps, log):
    from hidyn import models

    spec = models.get("single_index", d=d, link="he2", activation="he2", loss="correlation", spike=5.0,
                      spike_angle=math.pi / 4, geometry="sphere", lr=0.1, m0=0.2)
    ceiling = gauss_all("single_index", steps * seeds * d) / d
    naive = naive_steps / min(naive_single_index(d, naive_steps) for _ in range(repeat))
    rates = {}
    for name in type(spec).backends:
        if name == "reduced":        # O(1) per step: not a d-dimensional simulation
            continue
        cls = _available(spec, name)
        if cls is None:
            continue
        wall = time_backend(cls, spec, seeds, steps, repeat, precision, warm=64)
        rates[name] = steps * seeds / wall
        log(f"  single_index {name:<6} {rates[name]:.3g} sample-updates/s")
    rows = [_row("single_index", "online SGD he2, spike, sphere", k, v, d, ceiling, rates.get("numpy"), naive)
            for k, v in rates.items()]
    rows.append(_row("single_index", "online SGD he2, spike, sphere", "naive loop", naive, d, ceiling,
                     rates.get("numpy"), naive, "1 seed, 1 fresh x per step"))
    return rows


# --------------------------------------------------------------------------------------------------
def _fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def print_table(rows, ceilings, out=print):
    out("")
    out("ceilings (measured in this run):")
    for key, value in ceilings.items():
        out(f"  {key:<50} {value:.4g}")
    out("")
    head = (f"{'family':<13}{'variant':<40}{'backend':<23}{'updates/s':>11}{'×d /s':>11}"
            f"{'vs numpy':>10}{'vs naive':>10}{'of ceiling':>11}  note")
    out(head)
    out("-" * len(head))
    for r in rows:
        out(f"{r['family']:<13}{r['variant']:<40}{r['backend']:<23}{_fmt(r['updates_per_s']):>11}"
            f"{_fmt(r['elements_per_s']):>11}{_fmt(r['vs_numpy'], '.2f'):>10}{_fmt(r['vs_naive'], '.1f'):>10}"
            f"{_fmt(r['ceiling_fraction'], '.2f'):>11}  {r['note']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="d = 1024, 16 seeds, fewer steps (~1 min)")
    parser.add_argument("--d", type=int, help="dimension (default 4096; 1024 with --quick)")
    parser.add_argument("--seeds", type=int, help="seeds (default 64; 16 with --quick)")
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--precision", choices=("float64", "float32"), default="float64")
    parser.add_argument("--repeat", type=int, default=3, help="bursts per measurement (best is kept)")
    parser.add_argument("--json", help="also write the rows and ceilings to this JSON file")
    args = parser.parse_args(argv)
    d = args.d or (1024 if args.quick else 4096)
    seeds = args.seeds or (16 if args.quick else 64)
    quick = args.quick

    def log(msg):
        print(msg, flush=True)

    threads = os.cpu_count() or 1
    log(f"d = {d}, {seeds} seeds, {args.precision}, {threads} CPU threads; best of {args.repeat} bursts")
    reps = max(args.repeat, 5)        # the ceilings are cheap: more bursts, less sensitivity to load
    ceilings = {
        "gauss normals/s, one core": gauss_throughput(1 << 22, 1, reps, dtype=args.precision),
        f"gauss normals/s, all cores ({threads})": gauss_throughput(1 << 22, threads, reps, dtype=args.precision),
        "matvec bandwidth GB/s": matvec_bandwidth((64 if quick else 256) << 20, d, reps) / 1e9,
    }
    jax_gauss = jax_gauss_throughput(1 << 22, reps, args.precision)
    if jax_gauss is not None:
        ceilings["jax.random normals/s (threefry)"] = jax_gauss

    def gauss_all(family, total):
        """The all-core generator ceiling, re-measured just before a family's bursts with the same
        number of normals per burst (a shared machine's load drifts during a run; on such a machine
        the all-core figure can come out below the one-core one, so the best of the two is kept)."""
        value = max(gauss_throughput(max(total // threads, 1), threads, args.repeat, dtype=args.precision),
                    gauss_throughput(max(total // threads, 1), 1, 1, dtype=args.precision))
        ceilings[f"gauss normals/s, all cores, before {family}"] = value
        log(f"  generator ceiling before {family}: {value:.4g} normals/s")
        return value

    bandwidth = ceilings["matvec bandwidth GB/s"] * 1e9
    for k, v in ceilings.items():
        log(f"  {k}: {v:.4g}")
    rows = []
    naive_steps = 2000 if quick else 4000
    if "two_layer" in args.families:
        rows += bench_two_layer(d, seeds, 1 if quick else 2, args.repeat, args.precision, gauss_all,
                                naive_steps, log)
    if "dln" in args.families:
        rows += bench_dln(d, seeds, 2 if quick else 3, 256 if quick else 512, args.repeat, args.precision,
                          gauss_all, bandwidth, naive_steps, log)
    if "single_index" in args.families:
        rows += bench_single_index(d, seeds, 256 if quick else 512, args.repeat, args.precision, gauss_all,
                                   naive_steps, log)
    jax_ceiling = ceilings.get("jax.random normals/s (threefry)")
    if jax_ceiling:
        # the jax rows of the online families against the generator they draw from
        for r in rows:
            if r["backend"] == "jax" and "online" in r["variant"]:
                r["note"] = (r["note"] + "; " if r["note"] else "") + \
                    f"{r['elements_per_s'] / jax_ceiling:.2f} of the jax.random ceiling"
    print_table(rows, ceilings)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"d": d, "seeds": seeds, "precision": args.precision, "ceilings": ceilings,
                       "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
