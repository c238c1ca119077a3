"""Benchmark: throughput of the exact online-SGD mode recursion (docs/theory/linear.md §2).

Prints, measured in one run, the mode updates per second (steps·d/s) of the compiled recursion
(:func:`hidyn.solvers.closed_form.linear.sgd_recursion`) and of a plain vectorised numpy loop of the
same update (one numpy expression per step, written here independently), and their ratio, at
d = 10⁴ (``--quick``: d = 2000).  The headline use case, 10⁶ steps at d = 10⁴, is extrapolated from
the measured rate.  Timings are the best of ``--repeat`` runs after a warm-up (compilation).
Run ``python benchmarks/linear_recursion.py [--quick] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def numpy_loop(lam, v0, eta, batch, noise, steps):
    v = v0.copy()
    c = 1.0 + 1.0 / batch
    a = 1.0 - 2.0 * eta * lam + eta * eta * c * lam * lam
    for _ in range(steps):
        loss = noise ** 2 + lam @ v
        v = a * v + (eta * eta / batch * loss) * lam
    return noise ** 2 + lam @ v


def main(argv=None):
    from hidyn.solvers.closed_form.linear import sgd_recursion

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    d = 2000 if args.quick else 10_000
    steps = 20_000 if args.quick else 200_000
    lam = np.arange(1, d + 1, dtype=np.float64) ** -1.5
    v0 = np.full(d, 1.0 / d)
    lrs = np.full(steps, 0.2)
    sgd_recursion(lam, v0, lrs[:10], 1, 0.1, [10])          # compile / load the cache
    best = min(_timed(lambda: sgd_recursion(lam, v0, lrs, 1, 0.1, [steps])) for _ in range(args.repeat))
    n_np = max(steps // 20, 100)
    best_np = min(_timed(lambda: numpy_loop(lam, v0, 0.2, 1, 0.1, n_np)) for _ in range(args.repeat))
    check = sgd_recursion(lam, v0, lrs[:n_np], 1, 0.1, [n_np])["test_loss"][0]
    assert abs(check - numpy_loop(lam, v0, 0.2, 1, 0.1, n_np)) <= 1e-10 * check
    rate, rate_np = steps * d / best, n_np * d / best_np
    print(f"d = {d}: compiled recursion {rate:.3g} mode-updates/s ({steps} steps in {best:.2f} s); "
          f"numpy loop {rate_np:.3g} /s; ratio {rate / rate_np:.1f}×")
    print(f"extrapolated: 10^6 steps at d = 10^4 in {1e10 / rate:.1f} s (compiled), {1e10 / rate_np:.0f} s (numpy)")


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
