"""Benchmark: one-pass DLN DMFT (docs/theory/dln.md §5.2) against finite-d gradient descent producing the same curves.

Prints, for T = 150 GD steps (η = 0.1, t = 15):

* the DMFT solve with K = 16 000 single-site samples (numpy engine, float32 tangents): wall time,
  tracemalloc peak and process peak RSS, with the default replica error bars and with the cheaper
  jackknife ones;
* finite-d GD at d = 4096 with 8 seeds (a plain numpy loop written here, float64), recording the same
  observables (train/test loss, overlap, norms, TPR/FPR) at every step: wall time and peak memory;
* the largest deviation between the two test-loss curves in units of their combined standard error;
* when jax is installed, the JAX engine (:mod:`hidyn.solvers.dmft.dln_jax`) on the same problem, in a
  child process so that its peak RSS is its own: first call (compiles the per-step kernels) and second
  call for both error methods, and its deviation from the numpy engine, on the same seed (the two
  engines draw the same random numbers: rounding only) and on an independent seed (in SEM units).

Usage: ``python benchmarks/dln_dmft.py [--quick] [--no-jax] [--jax-device cpu|gpu]``
(``--quick``: T = 40, K = 4000, d = 1024, 2 seeds).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import resource
import time
import tracemalloc

import numpy as np

from hidyn.solvers.dmft import dln


def finite_d_gd(d, ratio, sparsity, noise, alpha, lr, n_steps, seed):
    """GD on β = u ⊙ v (pesme init, exact-ρ rademacher teacher, X_{μi} ~ N(0, 1/d)); curves (T+1,)."""
    rng = np.random.default_rng(seed)
    n = int(round(ratio * d))
    X = rng.standard_normal((n, d)) / math.sqrt(d)
    beta_star = np.zeros(d)
    supp = rng.choice(d, int(round(sparsity * d)), replace=False)
    beta_star[supp] = rng.choice([-1.0, 1.0], supp.size)
    y = X @ beta_star + noise * rng.standard_normal(n)
    on = beta_star != 0
    u, v = np.full(d, math.sqrt(2) * alpha), np.zeros(d)
    keys = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")
    out = {key: np.empty(n_steps + 1) for key in keys}
    for k in range(n_steps + 1):
        beta = u * v
        r = X @ beta - y
        big = np.abs(beta) > dln.SUPPORT_THRESHOLD
        out["train_loss"][k] = r @ r / n
        out["test_loss"][k] = np.mean((beta - beta_star) ** 2) + noise**2
        out["overlap"][k] = beta @ beta_star / d
        out["norm1"][k] = np.mean(np.abs(beta))
        out["norm2"][k] = beta @ beta / d
        out["tpr"][k] = big[on].mean()
        out["fpr"][k] = big[~on].mean()
        if k == n_steps:
            break
        g = X.T @ r / ratio
        u, v = u - lr * v * g, v - lr * u * g
    return out


def _measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        res = fn()
        wall = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return res, wall, peak, rss


def _jax_child(params, T, K, device, queue):
    """Time the JAX engine in its own process (peak RSS of the child alone); results via ``queue``."""
    import jax

    from hidyn.solvers.dmft import dln_jax

    rows = []
    for method in ("jackknife", "replicas"):
        for call in ("first", "second"):
            t0 = time.perf_counter()
            th = dln_jax.solve(**params, n_steps=T, n_samples=K, seed=0, error_method=method, device=device)
            rows.append((method, call, time.perf_counter() - t0))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    other = dln_jax.solve(**params, n_steps=T, n_samples=K, seed=1, device=device)
    keep = ("train_loss", "test_loss", "train_loss_sem", "test_loss_sem")
    queue.put({"rows": rows, "rss": rss, "device": th["info"]["device"], "version": jax.__version__,
               "same": {k: th[k] for k in keep}, "other": {k: other[k] for k in keep},
               "mem_est": dln_jax.estimate_memory(K, T, "float32")["total"]})


def _run_jax(params, T, K, device):
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: its ru_maxrss is the JAX run's
    queue = ctx.Queue()
    proc = ctx.Process(target=_jax_child, args=(params, T, K, device, queue))
    proc.start()
    res = queue.get()
    proc.join()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--no-jax", action="store_true", help="skip the JAX engine")
    ap.add_argument("--jax-device", default=None, help="JAX device for the JAX engine (cpu, gpu)")
    args = ap.parse_args(argv)
    T, K, d, seeds = (40, 4000, 1024, 2) if args.quick else (150, 16000, 4096, 8)
    p = dict(ratio=args.ratio, sparsity=0.1, noise=0.0, init_scale=0.3, lr=0.1)
    print(f"DLN GD, δ={p['ratio']}, ρ={p['sparsity']}, σ={p['noise']}, α={p['init_scale']}, "
          f"η={p['lr']}, T={T} (t={p['lr'] * T:g})")

    est = dln.estimate_memory(K, T, "float32")["total"]
    print(f"DMFT memory estimate (K={K}, float32 tangents): {est / 1e9:.3f} GB")
    rows = []
    for method in ("jackknife", "replicas"):
        th, wall, peak, rss = _measure(lambda: dln.solve(**p, n_steps=T, n_samples=K, seed=0,
                                                         error_method=method))
        rows.append((method, th, wall, peak, rss))
        print(f"DMFT  error_method={method:9s}: wall {wall:7.2f} s, tracemalloc peak {peak / 1e9:.3f} GB, "
              f"process peak RSS so far {rss / 1e9:.3f} GB, pivots kept {th['info']['n_pivots_kept']}")
    th = rows[-1][1]

    runs, wall, peak, rss = _measure(lambda: [finite_d_gd(d, p["ratio"], p["sparsity"], p["noise"],
                                                          p["init_scale"], p["lr"], T, 100 + s)
                                              for s in range(seeds)])
    print(f"finite-d GD d={d}, {seeds} seeds: wall {wall:7.2f} s, tracemalloc peak {peak / 1e9:.3f} GB, "
          f"process peak RSS so far {rss / 1e9:.3f} GB")
    print(f"time ratio finite-d / DMFT: {wall / rows[0][2]:.2f} (jackknife), "
          f"{wall / rows[1][2]:.2f} (replicas)")

    sim = np.array([r["test_loss"] for r in runs])
    se = sim.std(axis=0, ddof=1) / math.sqrt(seeds)
    z = np.abs(th["test_loss"] - sim.mean(axis=0))[1:] / np.hypot(th["test_loss_sem"], se)[1:]
    print(f"test_loss DMFT vs finite-d: max |z| = {z.max():.2f} over {T} steps")
    for k in (T // 10, T // 3, T):
        print(f"  t={p['lr'] * k:5.1f}: DMFT E_te {th['test_loss'][k]:.5f} ± {th['test_loss_sem'][k]:.5f}, "
              f"finite-d {sim[:, k].mean():.5f} ± {se[k]:.5f}; DMFT E_tr {th['train_loss'][k]:.3e}, "
              f"finite-d {np.mean([r['train_loss'][k] for r in runs]):.3e}")

    has_jax = importlib.util.find_spec("jax") is not None
    if args.no_jax or not has_jax:
        print("JAX engine: skipped" + ("" if args.no_jax else " (jax not installed)"))
        return
    res = _run_jax(p, T, K, args.jax_device)
    print(f"JAX engine (jax {res['version']}, device {res['device']}, memory estimate "
          f"{res['mem_est'] / 1e9:.3f} GB):")
    for method, call, wall in res["rows"]:
        print(f"  error_method={method:9s} {call:6s} call: wall {wall:7.2f} s")
    print(f"  child-process peak RSS {res['rss'] / 1e9:.3f} GB")
    for key in ("train_loss", "test_loss"):
        same = np.abs(res["same"][key] - th[key])[1:]
        z_other = (np.abs(res["other"][key] - th[key])
                   / np.hypot(res["other"][f"{key}_sem"], th[f"{key}_sem"]))[1:]
        print(f"  {key}: same seed max |jax − numpy| = {same.max():.2e} "
              f"(= {np.max(same / th[f'{key}_sem'][1:]):.3f} SEM); independent seed max |z| = {z_other.max():.2f}")


if __name__ == "__main__":
    main()
