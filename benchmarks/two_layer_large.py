"""Benchmark: wall time of large teacher–student runs through ``hidyn.simulate`` (any backend).

Two runs from the issue and from the field's practice:

* d = 3000 to t = 10, one seed — the run the best public teacher–student package takes ≈ 46 s for on a
  CPU (batch-1 PyTorch loop);
* d = 16 384 to t = 100 (1.6 million steps per seed), K = M = 2 erf, η = 1 — the issue's large run;
  ``--seeds`` of them at once.

Each line prints the wall time, the sample-updates per second and the fraction of the all-core
generator ceiling (PCG64, measured in the same run; a GPU backend draws with ``jax.random`` instead).
Run ``python benchmarks/two_layer_large.py [--backend auto|numba|jax|numpy] [--seeds 2] [--quick]``.
"""
from __future__ import annotations

import argparse
import os
import time

from mc_throughput import gauss_throughput

import hidyn


def timed(d, t_max, seeds, backend):
    t0 = time.perf_counter()
    sim = hidyn.simulate("two_layer", d=d, K=2, M=2, activation="erf", lr=1.0, t_max=t_max, n_times=20,
                         seeds=seeds, backend=backend, progress=False)
    wall = time.perf_counter() - t0
    steps = round(t_max * d) * seeds
    return sim, wall, steps / wall


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seeds", type=int, default=os.cpu_count() or 1,
                        help="seeds of the d = 16 384 run (default: one per core)")
    parser.add_argument("--quick", action="store_true", help="d = 16 384 to t = 5 instead of t = 100")
    args = parser.parse_args(argv)
    threads = os.cpu_count() or 1
    ceiling = gauss_throughput(1 << 24, threads, 3)
    print(f"PCG64 all-core ceiling: {ceiling:.3g} normals/s ({threads} threads)")
    timed(64, 0.5, 1, args.backend)          # load or compile the kernels once: steady-state timings
    for d, t_max, seeds in ((3000, 10.0, 1), (16384, 5.0 if args.quick else 100.0, args.seeds)):
        sim, wall, rate = timed(d, t_max, seeds, args.backend)
        eg = float(sim["test_loss"].isel(time=-1).mean())
        print(f"d = {d:>6}, t = {t_max:>5g}, {seeds} seed(s), backend {sim.attrs['backend']}: {wall:8.1f} s wall, "
              f"{rate:.3g} sample-updates/s = {rate * d / ceiling:.2f} of the generator ceiling; "
              f"final eps_g {eg:.4g}")


if __name__ == "__main__":
    main()
