"""Measure how finite-width deep linear networks approach their infinite-width theory, and how the
optimal learning rate drifts with width per parametrisation (docs/theory/deep_linear.md §7).

Prints, in one run:
* the RMS distance of single μP runs from the μP limit (train loss, t = 1..T, 3 learning rates) per
  width and its fitted slope in log n (expected −1/2: kernel fluctuations are O(n^{-1/2}));
* the distance of the seed mean from the limit (expected −1, the O(1/n) bias, until the SEM floor);
* the log-log slope of the optimal η (loss after k steps) against n for SP, NTP and μP.

Run:  python benchmarks/deep_linear_width_scaling.py [--max-width 4096] [--seeds 8]
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def main(max_width: int = 4096, seeds: int = 8, mean_seeds: int = 64, precision: str = "float64"):
    import hidyn
    from hidyn.validation.scaling import fit_power_law, single_run_distance

    warnings.simplefilter("ignore", RuntimeWarning)
    kw = dict(depth=1, d_in=8, n_samples=32, noise=0.1, lr=[0.2, 0.6, 1.0], times=np.arange(7.0))
    th = hidyn.theory("deep_linear", **kw)
    widths = [w for w in (128, 256, 512, 1024, 2048, 4096, 8192) if w <= max_width]
    dist, bias, sem = [], [], []
    for n in widths:
        start = time.perf_counter()
        sim = hidyn.simulate("deep_linear", width=n, seeds=seeds, backend="numpy", precision=precision, **kw)
        dist.append(single_run_distance(sim, th, "train_loss"))
        line = f"n = {n:5d}: single-run RMS distance {dist[-1]:.3e}"
        if n <= 1024:
            big = hidyn.simulate("deep_linear", width=n, seeds=mean_seeds, backend="numpy", **kw)
            dev = (big.train_loss.mean("seed") - th.train_loss).values[1:]
            bias.append(float(np.sqrt(np.mean(dev ** 2))))
            sem.append(float((big.train_loss.std("seed") / np.sqrt(mean_seeds)).values[1:].mean()))
            line += f"; seed-mean RMS distance ({mean_seeds} seeds) {bias[-1]:.3e} (mean SEM {sem[-1]:.1e})"
        print(line + f"  [{time.perf_counter() - start:.1f} s]", flush=True)
    fit = fit_power_law(widths, dist)
    print(f"single runs: slope {fit['slope']:+.3f} ± {fit['slope_se']:.3f} (expected -1/2)")
    nb = [w for w in widths if w <= 1024]
    fitb = fit_power_law(nb, bias)
    print(f"seed mean:   slope {fitb['slope']:+.3f} ± {fitb['slope_se']:.3f} over n = {nb} "
          f"(expected -1 above the SEM floor)")

    lt_widths = [64, 128, 256, 512, 1024, 2048]
    grids = {"sp": np.geomspace(1e-4, 0.3, 25), "ntp": np.geomspace(0.3, 10.0, 25), "mup": np.geomspace(0.1, 3.0, 25)}
    for par, lrs in grids.items():
        start = time.perf_counter()
        ds = hidyn.lr_transfer("deep_linear", widths=lt_widths, lrs=lrs, parametrization=par, steps=10,
                               seeds=seeds, depth=2, d_in=16, n_samples=64, noise=0.1, backend="numpy")
        eta = ds.optimal_lr_mean.values
        f = fit_power_law(lt_widths, eta)
        print(f"{par:>4}: optimal lr {np.round(eta, 4)} ± {np.round(ds.optimal_lr_sem.values, 4)}; "
              f"log-log slope {f['slope']:+.3f} ± {f['slope_se']:.3f}; n = inf theory "
              f"{ds.attrs.get('optimal_lr_theory', float('nan')):.4g} (grid estimator "
              f"{ds.attrs.get('optimal_lr_theory_grid', float('nan')):.4g})  [{time.perf_counter() - start:.1f} s]",
              flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-width", type=int, default=4096)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--mean-seeds", type=int, default=64)
    args = parser.parse_args()
    main(max_width=args.max_width, seeds=args.seeds, mean_seeds=args.mean_seeds)
