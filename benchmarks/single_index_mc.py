"""Benchmark: hidyn's single-index online-SGD throughput against a naive loop and the RNG ceiling.

Problem (docs/theory/single_index.md §1): d = 4096, h₂ target and student, correlation loss, spike κ = 5 at
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

The three are measured in interleaved bursts of equal work and each reports its best burst, so that a
shared machine's load does not bias the ratio.  Run with ``python benchmarks/single_index_mc.py
[--seconds S]`` (about 20 s by default).
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


class _Ceiling:
    """The Gaussian generator hidyn uses (PCG64 ``standard_normal``, float64, one thread) filling a
    buffer as large as one hidyn block: normals/s ÷ d is the sample-update rate it allows."""

    def __init__(self, n_normals: int):
        self.gen = np.random.Generator(np.random.PCG64(12345))
        self.buf = np.empty(n_normals)

    def burst(self) -> float:
        t0 = time.perf_counter()
        self.gen.standard_normal(out=self.buf)
        return self.buf.size / (time.perf_counter() - t0) / D


class _Hidyn:
    """hidyn's numpy backend with SEEDS seeds; one burst = one block of steps (``advance`` only)."""

    def __init__(self):
        from hidyn import models, rng
        from hidyn.solvers.mc.single_index_numpy import SingleIndexNumpyBackend

        spec = models.get("single_index", **PARAMS)
        self.be = SingleIndexNumpyBackend(spec, "float64")
        self.state = self.be.init(rng.seed_sequences(0, SEEDS))
        self.block = self.be.block_steps(SEEDS)
        self.be.advance(self.state, self.block)              # warm-up: first block allocation

    def burst(self) -> float:
        t0 = time.perf_counter()
        self.be.advance(self.state, self.block)
        rate = SEEDS * self.block / (time.perf_counter() - t0)
        assert np.all(np.isfinite(self.state["m"])), "the benchmark run diverged"
        return rate


class _Naive:
    """One seed, one sample at a time, as a researcher would write it (independent of hidyn)."""

    def __init__(self, steps: int):
        self.gen = np.random.Generator(np.random.PCG64(7))
        d, kappa, phi = D, PARAMS["spike"], PARAMS["spike_angle"]
        c = math.cos(phi)
        basis, _ = np.linalg.qr(self.gen.standard_normal((d, 3)))
        self.theta = basis[:, 0]
        self.u = c * self.theta + math.sin(phi) * basis[:, 1]
        self.tau = 1.0 / math.sqrt(1.0 + kappa * c * c)
        self.amp = math.sqrt(1.0 + kappa) - 1.0
        self.w = 0.2 * self.theta + math.sqrt(1 - 0.04) * basis[:, 2]
        self.steps = steps

    def burst(self) -> float:
        gen, theta, u, tau, amp = self.gen, self.theta, self.u, self.tau, self.amp
        eta, d, w = PARAMS["lr"], D, self.w
        t0 = time.perf_counter()
        for _ in range(self.steps):
            z = gen.standard_normal(d)
            x = z + amp * (z @ u) * u                        # x ~ N(0, I + κuuᵀ), Σ never formed
            lam, nu = w @ x, theta @ x
            v = tau * nu
            F = (v * v - 1.0) / math.sqrt(2.0) * (2.0 * lam / math.sqrt(2.0))   # y σ'(λ), h₂/h₂
            w = w + (eta / d) * F * x
            w = w / np.linalg.norm(w)
        self.w = w
        return self.steps / (time.perf_counter() - t0)


def main(seconds: float = 20.0) -> dict:
    """Measure and print the three throughputs; returns them as a dict.

    The machine may be shared, so the three measurements are interleaved in short bursts of equal
    work (one hidyn block; the same number of normals for the ceiling; as many single-seed updates)
    and each reports its best burst: the speed each reaches when it has a core to itself.
    """
    ours = _Hidyn()
    ceil = _Ceiling(SEEDS * ours.block * D)
    naive = _Naive(SEEDS * ours.block)
    best = {"hidyn": 0.0, "naive": 0.0, "ceiling": 0.0}
    end = time.perf_counter() + seconds
    rounds = 0
    while time.perf_counter() < end or rounds < 3:
        best["ceiling"] = max(best["ceiling"], ceil.burst())
        best["hidyn"] = max(best["hidyn"], ours.burst())
        best["naive"] = max(best["naive"], naive.burst())
        rounds += 1
    frac = best["hidyn"] / best["ceiling"]
    print(f"single-index online SGD, d = {D}, h2/h2 correlation loss, sphere, spike 5 at 45 deg, float64 "
          f"(best of {rounds} interleaved bursts of {SEEDS * ours.block * D / 1e6:.1f} M normals each)")
    print(f"  hidyn numpy backend, {SEEDS} seeds (block {ours.block} steps): {best['hidyn']:10,.0f} "
          f"sample-updates/s")
    print(f"  naive per-sample numpy loop, 1 seed:            {best['naive']:10,.0f} sample-updates/s")
    print(f"  Gaussian-generator ceiling (normals/s / d):     {best['ceiling']:10,.0f} sample-updates/s "
          f"({best['ceiling'] * D / 1e6:.1f} M normals/s, PCG64, 1 thread)")
    print(f"  hidyn reaches {frac:.1%} of the ceiling (target >= 80%); "
          f"{best['hidyn'] / best['naive']:.2f}x the naive loop")
    return {**best, "fraction": frac}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="total measuring time")
    main(parser.parse_args().seconds)
