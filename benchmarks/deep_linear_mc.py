"""Throughput of the deep_linear Monte-Carlo: one batched run over seeds × learning rates (shared initial
weights, rank-one updates as factors) against a naive loop that trains each (seed, η) separately with
dense weight matrices, as a hand-written width sweep would.  Prints wall times and their ratio, measured
in one run, and checks both give the same losses.

Run:  python benchmarks/deep_linear_mc.py [--width 512] [--depth 2] [--seeds 4] [--lrs 8] [--steps 10]
      [--backend numpy|jax]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np


def naive(spec, seed_sequences, steps):
    """Dense GD per (seed, lr): matrices updated in place, the loss read after ``steps`` steps."""
    from hidyn.solvers.mc.deep_linear_numpy import draw_init

    X, y, _ = spec.dataset()
    Xh = X / math.sqrt(spec.d_in)
    eta = spec.layer_lrs()
    out = np.zeros((len(seed_sequences), spec.lrs.size))
    for i, ss in enumerate(seed_sequences):
        W0_init, hidden_init, v_init = draw_init(ss, spec)
        for r in range(spec.lrs.size):
            Ws = [W0_init.copy()] + [W.copy() for W in hidden_init]
            v = v_init.copy()
            for _ in range(steps):
                hs = [Xh.T]                                   # features of every training input
                for W in Ws:
                    hs.append(W @ hs[-1])
                resid = v @ hs[-1] - y                        # (P,)
                g = v.copy()
                grads = [None] * len(Ws)
                for ell in range(len(Ws) - 1, -1, -1):
                    grads[ell] = np.outer(g, hs[ell] @ resid) / spec.n_samples
                    g = Ws[ell].T @ g
                v_grad = hs[-1] @ resid / spec.n_samples
                for ell, W in enumerate(Ws):
                    W -= eta[r, ell] * grads[ell]
                v -= eta[r, -1] * v_grad
            beta = Ws[0].T
            for W in Ws[1:]:
                beta = beta @ W.T
            out[i, r] = 0.5 * np.mean((Xh @ (beta @ v) - y) ** 2)
    return out


def main(width=512, depth=2, seeds=4, n_lr=8, steps=10, backend="numpy"):
    import hidyn
    from hidyn import rng

    spec = hidyn.models.get("deep_linear", width=width, depth=depth, d_in=16, n_samples=64, noise=0.1,
                            lr=np.geomspace(0.05, 1.0, n_lr).tolist())
    hidyn.simulate(spec.replace(width=8), times=[0, 1], seeds=1, backend=backend)   # imports, compilation
    start = time.perf_counter()
    sim = hidyn.simulate(spec, times=[0, steps], seeds=seeds, backend=backend)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    ref = naive(spec, rng.seed_sequences(None, rng.seed_indices(seeds)), steps)
    t_naive = time.perf_counter() - start
    err = float(np.max(np.abs(sim.train_loss.isel(time=-1).values - ref) / np.abs(ref)))
    print(f"width {width}, depth {depth}, {seeds} seeds x {n_lr} learning rates, {steps} GD steps")
    print(f"  batched hidyn ({backend}): {t_batched:.2f} s   naive per-(seed, lr) dense loop: {t_naive:.2f} s   "
          f"ratio {t_naive / t_batched:.1f}x   (max relative loss difference {err:.1e})")
    return t_naive / t_batched


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lrs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backend", default="numpy")
    args = parser.parse_args()
    main(args.width, args.depth, args.seeds, args.lrs, args.steps, args.backend)
