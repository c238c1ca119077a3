"""Benchmark: online-SGD Monte-Carlo throughput of the linear family, numba vs numpy backend.

Prints, measured in one run, steps·d·seeds per second of ``hidyn.simulate("linear", algorithm="sgd",
backend=...)`` for the numpy reference and the numba backend (solvers/mc/linear_numba.py), their ratio,
and whether the two float64 runs are bit-for-bit equal, at d = 10³, 10⁴, 10⁵ (``--quick``: 10³, 10⁴).
Both backends draw the same 2B + d normals per step from the same Generators, so the ratio measures the
step loop (one fused pass over d in numba against ~10 array expressions with (seeds, d) temporaries in
numpy) plus the shared cost of drawing the normals.  Timings are the best of ``--repeat`` runs after a
warm-up (compilation); the draw threads follow ``hidyn.rng.set_draw_threads`` (default: the CPU count).
Run ``python benchmarks/linear_mc.py [--quick] [--repeat 2] [--seeds 8] [--batch 1]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None):
    import hidyn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args(argv)
    dims = (1000, 10_000) if args.quick else (1000, 10_000, 100_000)
    for d in dims:
        steps = max(200, int(2e7 // (d * args.seeds)))
        kw = dict(d=d, spectrum_exponent=1.5, teacher_exponent=1.5, noise=0.3, batch_size=args.batch, lr=0.1,
                  times=[0, steps], seeds=args.seeds, progress=False)
        hidyn.simulate("linear", backend="numba", **{**kw, "times": [0, 5]})        # compile / load the cache
        out = {}
        best = {}
        for backend in ("numpy", "numba"):
            runs = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                out[backend] = hidyn.simulate("linear", backend=backend, **kw)
                runs.append(time.perf_counter() - t)
            best[backend] = min(runs)
        same = np.array_equal(out["numpy"].test_loss.values, out["numba"].test_loss.values)
        rate = {b: steps * d * args.seeds / best[b] for b in best}
        print(f"d = {d:>6}, {steps} steps × {args.seeds} seeds, B = {args.batch}: numpy {rate['numpy']:.3g}, "
              f"numba {rate['numba']:.3g} steps·d·seeds/s; ratio {rate['numba'] / rate['numpy']:.1f}×; "
              f"bitwise equal: {same}")


if __name__ == "__main__":
    main()
