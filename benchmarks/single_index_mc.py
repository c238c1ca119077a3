"""Benchmark: hidyn's single-index online-SGD throughput against a naive loop and the RNG ceiling.

Problem (single_index.md §1): d = 4096, h₂ target and student, correlation loss, spike κ = 5 at
φ = π/4 (so that u is not θ*), ``sphere`` geometry, η = 0.1, m₀ = 0.2, batch size 1.

Printed, all measured in this one run, in sample-updates per second (one sample drawn and one SGD
update applied, per seed):

* hidyn: :class:`hidyn.solvers.mc.single_index_numpy.SingleIndexNumpyBackend` with 32 seeds
  (``advance`` only; float64).
* naive: one seed, one sample at a time, written the way a researcher would — a random dense θ* and
  u, x = z + (√(1+κ) − 1)⟨z, u⟩u (the rank-one trick, Σ never formed), λ, ν, F, w += (η/d)Fx,
  w /= ‖w‖ — independent of hidyn's code.
* ceiling: the Gaussian generator hidyn uses (PCG64 ``standard_normal``, float64, one thread) filling
  a large buffer, in normals/s ÷ d.  Every update needs d fresh normals, so no single-threaded sampler
  of x can beat it: on a CPU these runs are bound by drawing x.

Run with ``python benchmarks/single_index_mc.py [--seconds S]`` (about 30 s by default).
"""
from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # P9: BLAS threads do not help tiny vectors

import numpy as np

D = 4096
SEEDS = 32
PARAMS = dict(d=D, link="he2", activation="he2", loss="correlation", spike=5.0, spike_angle=math.pi / 4,
              geometry="sphere", lr=0.1, m0=0.2)


def generator_ceiling(seconds: float, d: int = D) -> float:
    """Sample-updates/s allowed by the Gaussian generator alone: normals/s ÷ d (best of repeats)."""
    gen = np.random.Generator(np.random.PCG64(12345))
    buf = np.empty(1 << 22)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        gen.standard_normal(out=buf)
        best = max(best, buf.size / (time.perf_counter() - t0))
    return best / d


def hidyn_throughput(seconds: float) -> tuple[float, int]:
    """Sample-updates/s of the numpy backend with SEEDS seeds (best of repeated advances)."""
    from hidyn import models, rng
    from hidyn.solvers.mc.single_index_numpy import SingleIndexNumpyBackend

    spec = models.get("single_index", **PARAMS)
    be = SingleIndexNumpyBackend(spec, "float64")
    state = be.init(rng.seed_sequences(0, SEEDS))
    steps = 4 * be.block_steps(SEEDS)
    be.advance(state, steps)                        # warm-up: first block allocation
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        be.advance(state, steps)
        best = max(best, SEEDS * steps / (time.perf_counter() - t0))
    assert np.all(np.isfinite(state["m"])), "the benchmark run diverged"
    return best, be.block_steps(SEEDS)


def naive_throughput(seconds: float) -> float:
    """Sample-updates/s of a per-sample loop, one seed (best of repeated batches of 256 updates)."""
    gen = np.random.Generator(np.random.PCG64(7))
    d, kappa, phi, eta = D, PARAMS["spike"], PARAMS["spike_angle"], PARAMS["lr"]
    c = math.cos(phi)
    basis, _ = np.linalg.qr(gen.standard_normal((d, 3)))
    theta = basis[:, 0]
    u = c * theta + math.sin(phi) * basis[:, 1]
    tau = 1.0 / math.sqrt(1.0 + kappa * c * c)
    amp = math.sqrt(1.0 + kappa) - 1.0
    w = 0.2 * theta + math.sqrt(1 - 0.04) * basis[:, 2]
    h2 = lambda v: (v * v - 1.0) / math.sqrt(2.0)        # noqa: E731  (normalised He_2)
    dh2 = lambda v: 2.0 * v / math.sqrt(2.0)             # noqa: E731
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(256):
            z = gen.standard_normal(d)
            x = z + amp * (z @ u) * u
            lam, nu = w @ x, theta @ x
            F = h2(tau * nu) * dh2(lam)
            w = w + (eta / d) * F * x
            w = w / np.linalg.norm(w)
        best = max(best, 256 / (time.perf_counter() - t0))
    return best


def main(seconds: float = 8.0) -> dict:
    """Measure and print the three throughputs; returns them as a dict."""
    ceiling = generator_ceiling(seconds / 2)
    ours, block = hidyn_throughput(seconds)
    naive = naive_throughput(seconds / 2)
    ceiling = max(ceiling, generator_ceiling(seconds / 2))      # machine state may drift: best of both
    frac = ours / ceiling
    print(f"single-index online SGD, d = {D}, h2/h2 correlation loss, sphere, spike 5 at 45 deg, float64")
    print(f"  hidyn numpy backend, {SEEDS} seeds (block {block} steps): {ours:12,.0f} sample-updates/s")
    print(f"  naive per-sample numpy loop, 1 seed:            {naive:12,.0f} sample-updates/s")
    print(f"  Gaussian-generator ceiling (normals/s / d):     {ceiling:12,.0f} sample-updates/s "
          f"({ceiling * D / 1e6:.1f} M normals/s, PCG64, 1 thread)")
    print(f"  hidyn reaches {frac:.1%} of the ceiling (target >= 80%); {ours / naive:.2f}x the naive loop")
    return {"hidyn": ours, "naive": naive, "ceiling": ceiling, "fraction": frac}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per phase")
    main(parser.parse_args().seconds)
