"""JAX Monte-Carlo backends on a CUDA GPU, float32 and float64 (skipped without a GPU, tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import hidyn  # noqa: E402

pytestmark = pytest.mark.gpu


def _on_gpu(sim):
    assert sim.attrs["backend"] == "jax"
    assert sim.attrs["jax_device"] == "gpu"


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_two_layer_on_gpu_agrees_with_theory(precision):
    sim = hidyn.simulate("two_layer", d=1000, K=2, M=2, activation="erf", lr=1.0, init_scale=0.5,
                         t_max=40.0, n_times=20, seeds=16, backend="jax", precision=precision)
    _on_gpu(sim)
    assert sim.attrs["precision"] == precision
    hidyn.compare(sim).assert_ok()


def test_auto_picks_jax_when_a_gpu_is_visible():
    sim = hidyn.simulate("two_layer", d=64, t_max=0.5, n_times=3, seeds=2)
    _on_gpu(sim)


@pytest.mark.parametrize("precision", ["float32", "float64"])
@pytest.mark.parametrize("algorithm, extra", [("gd", {}), ("sgd", {"batch_size": 1024}), ("gf", {})])
def test_dln_population_on_gpu_agrees_with_the_closed_form(precision, algorithm, extra):
    lr = 0.01 if algorithm == "sgd" else 0.05
    sim = hidyn.simulate("dln", d=1024, ratio=None, algorithm=algorithm, lr=lr, init_scale=0.5, t_max=8.0,
                         n_times=10, seeds=8, backend="jax", precision=precision, **extra)
    _on_gpu(sim)
    tol = None
    if precision == "float32" and algorithm == "gf":
        # the family's GF tolerance is the float64 integrator's 1e-6; float32 rounding is ~1e-6 relative
        tol = hidyn.Tolerance(z=3.0, atol=1e-4 * 0.11)
    hidyn.compare(sim, tolerance=tol).assert_ok()


def test_dln_gd_training_set_float32_agrees_with_float64_in_law_on_gpu():
    """float32 draws other normals than float64 from the same keys: seed means within 4 combined SEM."""
    kw = dict(d=2048, ratio=0.5, lr=0.1, init_scale=0.3, times=[0.0, 2.0, 5.0], seeds=8, backend="jax")
    s32 = hidyn.simulate("dln", precision="float32", **kw)
    s64 = hidyn.simulate("dln", precision="float64", **kw)
    _on_gpu(s32)
    assert s32.attrs["precision"] == "float32" and s64.attrs["precision"] == "float64"
    for var in ("train_loss", "test_loss", "norm2"):
        a, b = s32[var].values, s64[var].values
        sem = np.sqrt(a.var(0, ddof=1) / a.shape[0] + b.var(0, ddof=1) / b.shape[0])
        assert np.all(np.abs(a.mean(0) - b.mean(0)) <= 4 * sem + 1e-6), var
