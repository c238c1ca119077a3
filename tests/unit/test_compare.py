"""Tolerance and Comparison on synthetic data with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import hidyn
from hidyn.validation.compare import compare_datasets
from hidyn.validation.tolerance import Tolerance


def _pair(offset, noise=0.01, n_seeds=16, seed=0):
    t = np.linspace(0, 1, 5)
    r = np.random.default_rng(seed)
    truth = 1.0 + t
    sim = xr.Dataset({"test_loss": (("seed", "time"), truth + offset + noise * r.standard_normal((n_seeds, 5)))},
                     coords={"time": t, "seed": np.arange(n_seeds)})
    th = xr.Dataset({"test_loss": (("time",), truth)}, coords={"time": t})
    return sim, th


def test_tolerance_bound_and_validation():
    tol = Tolerance(z=2, c=1.0, p=0.5, atol=0.1, rtol=0.01)
    assert tol.bound(0.5, -2.0, d=100) == pytest.approx(2 * 0.5 + 0.1 + 0.1 + 0.02)
    assert Tolerance().bound(0.1, 1.0, d=None) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="Tolerance.z"):
        Tolerance(z=-1)


def test_comparison_passes_unbiased_and_fails_biased():
    sim, th = _pair(0.0)
    cmp = compare_datasets(sim, th, tolerance=Tolerance(z=4))
    assert cmp.passed
    sim, th = _pair(0.05)  # 0.05 bias vs SEM 0.0025: z ≈ 20
    cmp = compare_datasets(sim, th, tolerance=Tolerance(z=4))
    assert not cmp.passed
    with pytest.raises(AssertionError, match="test_loss"):
        cmp.assert_ok()
    assert float(cmp.data["test_loss_z"].min()) > 10
    # a finite-size allowance c·d^(−p) that covers the bias passes it
    assert compare_datasets(sim, th, tolerance=Tolerance(z=4, c=0.6, p=0.5), d=100).passed


def test_theory_sem_adds_in_quadrature_and_nan_fails():
    sim, th = _pair(0.02)
    th["test_loss_sem"] = ("time", np.full(5, 0.01))
    cmp = compare_datasets(sim, th, tolerance=Tolerance(z=3))
    assert cmp.passed  # 0.02 < 3·√(0.0025² + 0.01²)
    sim["test_loss"][0, 3] = np.nan
    assert not compare_datasets(sim, th).passed


def test_summary_and_interpolation():
    sim, th = _pair(0.0)
    fine = th.interp(time=np.linspace(0, 1, 101))
    cmp = compare_datasets(sim, fine)
    text = cmp.summary(file=open("/dev/null", "w"))
    assert "test_loss" in text and "PASSED" in text


def test_compare_errors_for_unknown_variable():
    sim = hidyn.simulate("dln", d=32, ratio=None, algorithm="gf", t_max=1.0, n_times=4, seeds=2)
    with pytest.raises(ValueError, match="'foo' is not in the simulation"):
        hidyn.compare(sim, variables=["foo"])
