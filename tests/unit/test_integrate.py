"""The shared solve_ivp wrapper: save times, repeated times, divergence reporting."""
from __future__ import annotations

import numpy as np
import pytest

from hidyn.solvers.ode.integrate import integrate


def test_linear_ode_at_save_times_with_repeats():
    times = np.array([0.0, 0.0, 0.5, 1.0, 1.0, 3.0])
    res = integrate(lambda t, y: -np.array([1.0, 2.0]) * y, [1.0, 1.0], times)
    np.testing.assert_allclose(res.y, np.exp(-np.outer(times, [1.0, 2.0])), rtol=1e-9)
    assert res.info["rtol"] == 1e-10 and not res.diverged


def test_blow_up_is_reported_with_its_time():
    with pytest.warns(RuntimeWarning, match="diverged at t = 1"):
        res = integrate(lambda t, y: y ** 2, [1.0], [0.0, 0.5, 2.0], name="ODE")
    assert res.diverged and res.info["diverged_at"] == pytest.approx(1.0, abs=1e-6)
    assert res.y[1, 0] == pytest.approx(2.0, rel=1e-8) and np.isnan(res.y[2, 0])


def test_bad_times():
    with pytest.raises(ValueError, match="non-decreasing"):
        integrate(lambda t, y: y, [1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="non-finite"):
        integrate(lambda t, y: y, [np.nan], [0.0, 1.0])
