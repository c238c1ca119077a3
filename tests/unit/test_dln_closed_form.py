"""The DLN closed form (docs/theory/dln.md §3) against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from hidyn.solvers.closed_form.dln import beta_flow, curves

TIMES = np.linspace(0.0, 20.0, 41)


def _ode_beta(b, p0, q0, clock):
    """Integrate ṗ = −2c(β − b)p, q̇ = 2c(β − b)q directly (the uv/pm flow in w±² variables)."""
    def rhs(_t, y):
        g = y[0] - y[1] - b
        return [-2 * clock * g * y[0], 2 * clock * g * y[1]]

    sol = solve_ivp(rhs, (0, TIMES[-1]), [p0, q0], t_eval=TIMES, method="DOP853", rtol=1e-13, atol=1e-300)
    return sol.y[0] - sol.y[1]


@pytest.mark.parametrize("p0, q0", [(0.125, 0.125), (1e-6, 1e-6), (0.25, 0.0), (0.0, 0.3), (0.3, 0.01)])
@pytest.mark.parametrize("b", [1.0, -1.0, 0.0, 0.3, -2.0])
@pytest.mark.parametrize("clock", [1.0, 2.0])
def test_closed_form_matches_ode(p0, q0, b, clock):
    np.testing.assert_allclose(beta_flow(TIMES, b, p0, q0, clock), _ode_beta(b, p0, q0, clock),
                               rtol=0, atol=1e-9)


def test_uv_mirror_flow_form():
    """β̇ = −(β − b)·√(Δ² + 4β²) with Δ = 4γ (uv, docs/theory/dln.md §3), by finite differences of the closed form."""
    p0 = q0 = 0.02
    t = np.linspace(0.1, 5, 50)
    h = 1e-6
    for b in (1.0, -0.5):
        beta = beta_flow(t, b, p0, q0)
        dbeta = (beta_flow(t + h, b, p0, q0) - beta_flow(t - h, b, p0, q0)) / (2 * h)
        delta = 4 * np.sqrt(p0 * q0)
        np.testing.assert_allclose(dbeta, -(beta - b) * np.sqrt(delta ** 2 + 4 * beta ** 2), atol=1e-7)


def test_sign_freezing_balanced_init():
    beta = beta_flow(TIMES, -1.0, 0.25, 0.0)
    assert np.all(beta >= 0) and beta[-1] < 1e-10


def test_tiny_init_scale_is_finite_and_escapes_on_log_clock():
    alpha = 1e-40
    p0 = q0 = alpha ** 2 / 2
    t_half = (np.log(1 / alpha) + 0.5 * np.log(2.0)) / 1.0  # docs/theory/dln.md §3 escape time for b = 1
    beta = beta_flow(np.array([0.9 * t_half, t_half, 1.1 * t_half]), 1.0, p0, q0)
    assert np.all(np.isfinite(beta))
    assert beta[0] < 0.05 and beta[1] == pytest.approx(0.5, abs=0.01) and beta[2] > 0.95


def test_pm_clock_is_uv_at_twice_the_time():
    np.testing.assert_allclose(beta_flow(TIMES, 0.7, 0.01, 0.01, 2.0), beta_flow(2 * TIMES, 0.7, 0.01, 0.01),
                               rtol=1e-13)


def test_population_averages_against_scalar_quadrature_and_grids():
    """quad_vec + root finding (the implementation) vs scalar QUADPACK integrals per time and a fine grid.

    (A fixed Gauss–Hermite rule is not an adequate oracle here: at late times β(t; b) varies sharply
    near b = 0, and even 180 nodes are off by 2e-5.)
    """
    from scipy.integrate import quad

    t = np.array([0.0, 0.5, 2.0, 8.0])
    p0 = q0 = 0.02
    rho, sigma = 0.3, 0.2
    got = curves(t, sparsity=rho, teacher="gauss", noise=sigma, p0=p0, q0=q0)
    phi = lambda z: np.exp(-z * z / 2) / np.sqrt(2 * np.pi)  # noqa: E731

    def gauss_mean(f, tt):
        return quad(lambda z: f(beta_flow(tt, z, p0, q0), z) * phi(z), -np.inf, np.inf, epsabs=1e-14,
                    epsrel=1e-13, limit=500)[0]

    for i, tt in enumerate(t):
        beta0 = float(beta_flow(tt, 0.0, p0, q0))   # null coordinates (b = β* = 0)
        test = rho * gauss_mean(lambda b, z: (b - z) ** 2, tt) + (1 - rho) * beta0 ** 2 + sigma ** 2
        assert got["test_loss"][i] == pytest.approx(test, rel=1e-9, abs=1e-12)
        assert got["overlap"][i] == pytest.approx(rho * gauss_mean(lambda b, z: b * z, tt), abs=1e-11)
        assert got["norm1"][i] == pytest.approx(rho * gauss_mean(lambda b, z: abs(b), tt)
                                                + (1 - rho) * abs(beta0), abs=1e-11)
    np.testing.assert_allclose(got["train_loss"], got["test_loss"])
    # support recovery: P(|β(t; z)| > 0.5) on a fine grid of z (indicator, so only grid accuracy)
    zz = np.linspace(-9, 9, 400_001)
    dens = phi(zz) * (zz[1] - zz[0])
    tpr = (np.abs(beta_flow(t[:, None], zz[None, :], p0, q0)) > 0.5) @ dens
    np.testing.assert_allclose(got["tpr"], tpr, atol=2e-4)


def test_whitened_design_limits():
    """δ ≥ 1 whitened design: t → ∞ gives β = b = β* + (σ/√δ)Z, so E_te = σ²/δ + σ², E_tr = σ²(1 − 1/δ)."""
    delta, sigma = 2.0, 0.3
    got = curves(np.array([0.0, 400.0]), sparsity=0.1, teacher="rademacher", noise=sigma, p0=0.125,
                 q0=0.125, ratio=delta)
    assert got["test_loss"][-1] == pytest.approx(sigma ** 2 / delta + sigma ** 2, rel=1e-6)
    assert got["train_loss"][-1] == pytest.approx(sigma ** 2 * (1 - 1 / delta), rel=1e-6)
    assert got["test_loss"][0] == pytest.approx(0.1 + sigma ** 2 + 0.0, rel=1e-12)
    with pytest.raises(ValueError, match="ratio ≥ 1"):
        curves(np.array([0.0]), sparsity=0.1, teacher="gauss", noise=0.1, p0=1, q0=1, ratio=0.5)
