"""Slow agreement tests: teacher–student online SGD against the order-parameter ODE."""
from __future__ import annotations

import numpy as np
import pytest

import hidyn
from hidyn.validation.cases import CASES, run_case

pytestmark = pytest.mark.slow

TS_CASES = [(name, d) for name, case in CASES.items() if case.model == "two_layer" for d in case.dims]


@pytest.mark.parametrize("name, d", TS_CASES, ids=[f"{n}-d{d}" for n, d in TS_CASES])
def test_two_layer_case(name, d):
    run_case(CASES[name], d).assert_ok()


def test_finite_size_scaling_slope_minus_one_half():
    """Single runs deviate from their own ODE by O(d^(-1/2)) (Goldt et al. 2019): the RMS deviation of
    ε_g and of the overlaps over seeds and times falls with slope ≈ −1/2 in log d."""
    dims = np.array([100, 200, 400, 800])
    rms = {"test_loss": [], "Q": [], "R": []}
    for d in dims:
        sim = hidyn.simulate("two_layer", d=int(d), K=2, M=2, activation="erf", lr=0.5, t_max=30.0,
                             n_times=20, seeds=16)
        th = hidyn.theory("two_layer", init=sim)  # per-seed ODEs
        for v in rms:
            dev = (sim[v] - th[v]).values[:, 1:]   # t = 0 is exact by construction
            rms[v].append(np.sqrt(np.mean(dev ** 2)))
    for v, values in rms.items():
        slope = np.polyfit(np.log(dims), np.log(values), 1)[0]
        assert -0.65 < slope < -0.35, (v, slope, values)
