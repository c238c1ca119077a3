"""The JAX DMFT engine on a CUDA device (skipped without one; see tests/conftest.py).

On the GPU the sample side (trajectories, response tangents, per-batch kernel rows) runs on the device
and the O(T²) kernel algebra on the host, exactly as on the CPU.  The same seed must reproduce the
numpy reference to the rounding level of tests/unit/test_dmft_jax.py, and a production-size solve
(T = 150, K = 16 000, the size of docs/theory/dln.md §5.2) must run and agree with the reference within its
Monte-Carlo error.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from hidyn.solvers.dmft import dln, dln_jax  # noqa: E402

pytestmark = pytest.mark.gpu

CASE = dict(ratio=0.5, sparsity=0.1, noise=0.1, init_scale=0.3, lr=0.1, n_steps=40, n_samples=4000)


def test_runs_on_cuda_and_matches_numpy_same_seed():
    ref = dln.solve(**CASE, seed=11)
    out = dln_jax.solve(**CASE, seed=11, device="gpu")
    assert "cuda" in out["info"]["device"].lower() or "gpu" in out["info"]["device"].lower()
    for key in ("train_loss", "test_loss", "overlap", "norm1", "norm2"):
        tol = 1e-3 * np.abs(ref[key]) + 0.05 * ref[f"{key}_sem"] + 1e-9
        assert np.all(np.abs(out[key] - ref[key]) <= tol), key
    for key in ("C_delta", "R_beta", "M", "C_r"):
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=1e-3 * np.abs(ref[key]).max(), err_msg=key)


def test_production_size_on_cuda_within_monte_carlo_error():
    kw = dict(ratio=0.5, sparsity=0.1, noise=0.0, init_scale=0.3, lr=0.1, n_steps=150, n_samples=16000)
    dln_jax.solve(**kw, seed=1, device="gpu")  # compiles the main and replica kernels
    start = time.perf_counter()
    out = dln_jax.solve(**kw, seed=2, device="gpu")
    wall = time.perf_counter() - start
    ref = dln.solve(**kw, seed=3)
    print(f"GPU jax solve T=150, K=16000 (replica error bars): {wall:.2f} s; numpy: "
          f"{ref['info']['wall_time_s']:.2f} s")
    for key in ("train_loss", "test_loss", "overlap", "norm1"):
        for k in (15, 50, 100, 150):
            sem = math.hypot(out[f"{key}_sem"][k], ref[f"{key}_sem"][k])
            assert abs(out[key][k] - ref[key][k]) <= 4 * sem, (key, k)
