"""Benchmark: the headline call ``hidyn.simulate(model="dln", d=4096)`` against its fused GD kernel alone.

Issue #16's target is "the headline call at the fused kernel's cost": everything around the kernel
(drawing the designs in ``init``, the observables at every save, the driver) should add at most ~10 %.
In one run this script measures

* **headline**: the wall time of ``hidyn.simulate(model="dln", d=D)`` with its defaults (GD at n/d = 0.5,
  8 seeds, 100 log-spaced saves, the backend ``auto`` picks), after a small warm-up call so numba's
  compilation (or cache load) is not counted;
* **kernel alone**: the same number of GD steps of the same designs through
  :func:`hidyn.solvers.mc.numba_backend.dln_gd_fused` in one call, no saves;
* **init alone**: ``DLNNumbaBackend.init`` (teacher, designs and labels of all seeds) on the draw
  threads, and on one thread (the same values) for the speed-up of drawing on all cores;

and prints the ratio headline / kernel (the target is ≤ ~1.1), with the headline's time split into the
backend's ``init``, ``advance`` and ``observe`` (timed by wrappers on the class) and the rest (driver,
Dataset).  Each timing is the best of ``--repeat``
runs, so a shared machine's load biases it less; nothing is hard-coded.

Run ``python benchmarks/dln_headline.py [--d 4096] [--repeat 2]``.
"""
from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int, default=4096, help="input dimension (default 4096, the headline)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per timing; the best is kept")
    args = parser.parse_args(argv)

    import numpy as np

    import hidyn
    from hidyn import models, rng
    from hidyn.solvers.mc import numba_backend as nb

    hidyn.simulate(model="dln", d=64, progress=False)             # compile / load numba's cache

    # time spent in the backend's methods during the headline call (wrappers on the class: the call
    # itself is unchanged), to split the total into init / advance (the kernel) / observe / the rest
    spent: dict[str, float] = {}
    originals = {name: getattr(nb.DLNNumbaBackend, name) for name in ("init", "advance", "observe")}

    def timed(name, fn):
        def wrapper(self, *a, **k):
            t0 = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    best_total, sim, parts = np.inf, None, {}
    try:
        for name, fn in originals.items():
            setattr(nb.DLNNumbaBackend, name, timed(name, fn))
        for _ in range(args.repeat):
            spent.clear()
            t0 = time.perf_counter()
            sim = hidyn.simulate(model="dln", d=args.d, progress=False)
            total = time.perf_counter() - t0
            if total < best_total:
                best_total, parts = total, dict(spent)
    finally:
        for name, fn in originals.items():
            setattr(nb.DLNNumbaBackend, name, fn)
    n_steps = int(round(float(sim.attrs["n_steps"])))
    n_saves = sim.sizes["time"]
    n_seeds = sim.sizes["seed"]
    backend = sim.attrs.get("backend", "?")
    del sim

    spec = models.get("dln", d=args.d)
    be = nb.DLNNumbaBackend(spec)
    ss = rng.seed_sequences(None, n_seeds)
    threads = rng.draw_threads()
    best_serial = np.inf
    rng.set_draw_threads(1)                  # the same draws on one thread (the values do not change)
    try:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            state = be.init(ss)
            best_serial = min(best_serial, time.perf_counter() - t0)
            del state
    finally:
        rng.set_draw_threads(threads)
    best_init = np.inf
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        state = be.init(ss)
        best_init = min(best_init, time.perf_counter() - t0)
    best_kernel = np.inf
    c_lr = spec.clock * spec.lr
    for _ in range(args.repeat):
        wp, wm = state["wp0"].copy()[:, None, :], state["wm0"].copy()[:, None, :]
        t0 = time.perf_counter()
        nb.dln_gd_fused(state["X"], state["y3"], wp, wm, n_steps, c_lr, 1.0 / spec.ratio, 1)
        best_kernel = min(best_kernel, time.perf_counter() - t0)

    print(f"hidyn.simulate(model='dln', d={args.d}): GD, n/d = {spec.ratio}, {n_seeds} seeds, "
          f"{n_steps} steps, {n_saves} saves, backend {backend}; draw threads {rng.draw_threads()}, "
          f"numba threads {nb._numba_threads()}, cpus {os.cpu_count()}, best of {args.repeat}")
    print(f"  headline call (total)      {best_total:8.2f} s   of which: init {parts['init']:.2f} s, "
          f"advance {parts['advance']:.2f} s, observe {parts['observe']:.2f} s, "
          f"rest {best_total - sum(parts.values()):.2f} s")
    print(f"  fused kernel alone         {best_kernel:8.2f} s   ({best_kernel / n_steps * 1e3:.1f} ms/step)")
    print(f"  init alone (designs drawn) {best_init:8.2f} s   on {threads} draw threads "
          f"({best_serial:.2f} s on one: x{best_serial / best_init:.2f})")
    print(f"  ratio headline / kernel    {best_total / best_kernel:8.3f}   (target ≤ ~1.1)")
    print(f"  ratio advance-in-headline / kernel {parts['advance'] / best_kernel:.3f}   "
          f"(the same steps in the driver's calls vs one call)")


if __name__ == "__main__":
    main()
