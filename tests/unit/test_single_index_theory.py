"""Tests of the d → ∞ single-index theory (solvers/ode/single_index.py, docs/theory/single_index.md §1–§4).

Independent references: a numpy implementation of one online-SGD step with d-dimensional spiked inputs
x = z + (√(1+κ) − 1)⟨z,u⟩u (Σ is never formed), the explicit isotropic formulas of note §3, the exact
linear solution, closed-form fixed points derived from the geometry (w ∝ Σθ*, θ*/√R), and 1-d quadrature
of 1/ṁ for escape times.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp
from scipy.optimize import fsolve
from scipy.special import eval_hermitenorm

from hidyn.observables import single_index_objective, single_index_test_loss
from hidyn.solvers.ode import single_index as si


def h(k):
    return lambda x: eval_hermitenorm(k, x) / math.sqrt(math.factorial(k))


def dh(k):
    return lambda x: k * eval_hermitenorm(k - 1, x) / math.sqrt(math.factorial(k))


# --------------------------------------------------------------------------------------------------
# One online-SGD step at large d, averaged over many fresh samples (note §1)
# --------------------------------------------------------------------------------------------------
KAPPA, PHI, NOISE, ETA, D_MC = 2.0, 0.6, 0.3, 0.3, 1000
M_MC, S_MC = 0.4, 0.55

# geometry -> (loss, link spec, activation spec, g, σ, σ') ; q is fixed by the geometry below
MC_CASES = {
    "plain": ("square", "he2", "tanh", h(2), np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    "sphere": ("correlation", "he2", "he2", h(2), h(2), dh(2)),
    "sigma_sphere": ("square", "he2", "relu", h(2), lambda x: np.maximum(x, 0.0), lambda x: (x > 0) * 1.0),
    "wn_sigma": ("correlation", {1: 0.6, 2: 0.8}, "he2", lambda x: 0.6 * x + 0.8 * h(2)(x), h(2), dh(2)),
}


def _mc_q(geometry):
    return {"plain": 1.3, "sphere": 1.0}.get(geometry, 1.0 - KAPPA * S_MC ** 2)


def _mc_one_step_increments(n_samples=100_000, chunk=5000, seed=20240611):
    """d·E[Δ(m, s, q)] of one SGD step from fixed (m, s, q), per geometry, with standard errors.

    w' = w + (η/d) F D with D = x (D = x − λΣw for wn_sigma, Σw = w + κ⟨u,w⟩u), then the geometry's
    retraction.  The new overlaps are computed exactly from the d-dimensional vectors' projections:
    ⟨w',θ*⟩ = m + hF⟨D,θ*⟩, ⟨w',u⟩ = s + hF⟨D,u⟩, ‖w'‖² = q + 2hF⟨D,w⟩ + h²F²‖D‖².
    """
    rng = np.random.default_rng(seed)
    d, c = D_MC, math.cos(PHI)
    tau = 1.0 / math.sqrt(1.0 + KAPPA * c * c)
    amp = math.sqrt(1.0 + KAPPA) - 1.0
    hstep = ETA / d
    basis, _ = np.linalg.qr(rng.standard_normal((d, 3)))
    theta, e2, e3 = basis.T
    u = c * theta + math.sqrt(1 - c * c) * e2
    ws = {}
    for geo in MC_CASES:
        q = _mc_q(geo)
        b = (S_MC - c * M_MC) / math.sqrt(1 - c * c)
        ws[geo] = M_MC * theta + b * e2 + math.sqrt(q - M_MC ** 2 - b * b) * e3
    acc = {geo: [] for geo in MC_CASES}
    for _ in range(n_samples // chunk):
        Z = rng.standard_normal((chunk, d))
        X = Z + amp * np.outer(Z @ u, u)                       # x ~ N(0, I + κuuᵀ)
        nu, mu = X @ theta, X @ u
        xx = np.einsum("ij,ij->i", X, X)
        xi = rng.standard_normal(chunk)
        for geo, (loss, _, _, g, sig, dsig) in MC_CASES.items():
            w, q = ws[geo], _mc_q(geo)
            lam = X @ w
            y = g(tau * nu) + NOISE * xi
            F = y * dsig(lam) if loss == "correlation" else (y - sig(lam)) * dsig(lam)
            if geo == "wn_sigma":
                sw = w + KAPPA * (u @ w) * u
                Dt, Du = nu - lam * (sw @ theta), mu - lam * (sw @ u)
                Dw = lam - lam * (sw @ w)
                DD = xx - 2 * lam * (X @ sw) + lam ** 2 * (sw @ sw)
            else:
                Dt, Du, Dw, DD = nu, mu, lam, xx
            Wt, Wu = M_MC + hstep * F * Dt, S_MC + hstep * F * Du
            WW = q + 2 * hstep * F * Dw + hstep ** 2 * F ** 2 * DD
            N2 = {"plain": np.ones_like(WW), "sphere": WW}.get(geo, WW + KAPPA * Wu ** 2)
            N = np.sqrt(N2)
            acc[geo].append(d * np.stack([Wt / N - M_MC, Wu / N - S_MC, WW / N2 - q], axis=1))
    out = {}
    for geo, parts in acc.items():
        a = np.concatenate(parts)
        out[geo] = (a.mean(axis=0), a.std(axis=0) / math.sqrt(a.shape[0]))
    return out


@pytest.fixture(scope="module")
def mc_increments():
    return _mc_one_step_increments()


@pytest.mark.parametrize("geometry", list(MC_CASES))
def test_drift_matches_one_step_online_sgd(geometry, mc_increments):
    loss, link, act = MC_CASES[geometry][:3]
    mean, se = mc_increments[geometry]
    kw = dict(link=link, activation=act, loss=loss, spike=KAPPA, spike_angle=PHI, geometry=geometry,
              lr=ETA, noise=NOISE)
    state = (M_MC, S_MC, _mc_q(geometry))
    ode = si.drift(state, si.make_params(d=D_MC, **kw))
    tol = 5.0 * se + 1e-9
    assert np.all(np.abs(mean - ode) <= tol), (geometry, mean, ode, (mean - ode) / np.maximum(se, 1e-300))
    # the test has the power to see the O(η²) corrector (P2): dropping it (B/n_b → 0) is rejected
    no_eta2 = si.drift(state, si.make_params(batch_size=10 ** 12, **kw))
    assert np.max(np.abs(mean - no_eta2) / np.maximum(se, 1e-300)) > 15.0


def test_batch_divides_noise_term_plain():
    # plain geometry: the q increment is exactly quadratic in the step, so a large lr is fine
    rng = np.random.default_rng(7)
    d, nb, eta, n_steps = 300, 4, 1.5, 20_000
    kappa, m, s, q = 1.0, 0.3, 0.3, 0.8  # aligned spike (c = 1): theta = u below
    basis, _ = np.linalg.qr(rng.standard_normal((d, 2)))
    theta = u = basis[:, 0]
    w = m * theta + math.sqrt(q - m * m) * basis[:, 1]
    tau = 1 / math.sqrt(1 + kappa)
    dq = []
    for _ in range(n_steps // 2000):
        Z = rng.standard_normal((2000 * nb, d))
        X = Z + (math.sqrt(1 + kappa) - 1) * np.outer(Z @ u, u)
        lam, nu = X @ w, X @ theta
        F = (h(2)(tau * nu) + 0.2 * rng.standard_normal(lam.size) - h(1)(lam)) * 1.0   # square loss, σ = h_1
        step = (F[:, None] * X).reshape(2000, nb, d).mean(axis=1)
        W = w + (eta / d) * step
        dq.append(d * (np.sum(W * W, axis=1) - q))
    dq = np.concatenate(dq)
    kw = dict(link="he2", activation="he1", loss="square", spike=kappa, geometry="plain", lr=eta, noise=0.2,
              d=d)
    pred = si.drift((m, s, q), si.make_params(batch_size=nb, **kw))[2]
    wrong = si.drift((m, s, q), si.make_params(batch_size=1, **kw))[2]
    se = dq.std() / math.sqrt(dq.size)
    assert abs(dq.mean() - pred) < 5 * se
    assert abs(dq.mean() - wrong) > 20 * se


def test_finite_d_trace_factors():
    kw = dict(link="he2", activation="he2", spike=3.0, spike_angle=0.4, lr=0.7)
    state = (0.3, 0.35, 0.6)
    for geo, trace in [("plain", 3.0), ("sphere", 3.0), ("sigma_sphere", 15.0), ("wn_sigma", 15.0)]:
        p_inf = si.make_params(geometry=geo, **kw)
        p_d = si.make_params(geometry=geo, d=50, **kw)
        B = si.moments(state, p_inf)["B"]
        diff = si.drift(state, p_d) - si.drift(state, p_inf)
        if geo == "plain":   # q̇ gets η²(κ/d)B
            np.testing.assert_allclose(diff, [0, 0, 0.49 * trace / 50 * B], atol=1e-13)
        else:                # ṁ, ṡ get −½η²(tr/d)B·(m, s)
            np.testing.assert_allclose(diff[:2], [-0.5 * 0.49 * trace / 50 * B * 0.3,
                                                  -0.5 * 0.49 * trace / 50 * B * 0.35], atol=1e-13)


# --------------------------------------------------------------------------------------------------
# Explicit solutions of note §3
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,loss,eta,noise,nb", [(2, "correlation", 0.3, 0.3, 2), (3, "square", 0.05, 0.0, 1),
                                                 (1, "correlation", 0.4, 0.5, 1), (2, "square", 0.1, 0.2, 3)])
def test_isotropic_sphere_matches_explicit_ode(k, loss, eta, noise, nb):
    D = noise ** 2
    Bk = {("correlation", 1): lambda m: 1 + D, ("correlation", 2): lambda m: 2 * (1 + 4 * m * m + D),
          ("correlation", 3): lambda m: 3 * (1 + 12 * m * m + 18 * m ** 4 + D),
          ("square", 2): lambda m: 12 * (1 - m * m) + 2 * D,
          ("square", 3): lambda m: 96 + 36 * m * m - 186 * m ** 3 + 54 * m ** 4 + 3 * D}[(loss, k)]

    def mdot(t, y):
        m = y[0]
        return [eta * k * (1 - m * m) * m ** (k - 1) - 0.5 * eta * eta * m * Bk(m) / nb]

    times = np.linspace(0, 60, 31)
    ref = solve_ivp(mdot, (0, 60), [0.35], t_eval=times, rtol=1e-12, atol=1e-14, method="DOP853").y[0]
    out = si.solve(link=f"he{k}", activation=f"he{k}", loss=loss, geometry="sphere", lr=eta, noise=noise,
                   batch_size=nb, m0=0.35, times=times)
    np.testing.assert_allclose(out["m"], ref, atol=1e-8)
    np.testing.assert_allclose(out["q"], 1.0)
    # κ = 0: the correlation ρ is m and the cosine is m
    np.testing.assert_allclose(out["cosine"], out["m"], atol=1e-15)


@pytest.mark.parametrize("noise,nb", [(0.0, 1), (0.4, 1), (0.4, 3)])
def test_linear_plain_square_exact_solution(noise, nb):
    eta, m0 = 0.6, 0.2
    times = np.linspace(0.0, 12.0, 25)
    out = si.solve(link="he1", activation="he1", loss="square", geometry="plain", lr=eta, noise=noise,
                   batch_size=nb, m0=m0, times=times)
    D = noise ** 2
    m = 1 - (1 - m0) * np.exp(-eta * times)
    rate = 2 * eta - eta ** 2 / nb                       # ė = −(2η − η²/n_b)e + η²Δ/n_b
    e_inf = eta ** 2 * D / nb / rate
    e = e_inf + (2 - 2 * m0 - e_inf) * np.exp(-rate * times)   # e = 1 − 2m + q, q₀ = 1
    np.testing.assert_allclose(out["m"], m, atol=1e-9)
    np.testing.assert_allclose(out["q"], e - 1 + 2 * m, atol=1e-9)
    np.testing.assert_allclose(out["test_loss"], 0.5 * e, atol=1e-9)
    np.testing.assert_allclose(out["objective"], 0.5 * e + 0.5 * D, atol=1e-9)


def test_divergence_is_reported_not_silent():
    times = np.linspace(0, 40, 41)
    with pytest.warns(RuntimeWarning, match="diverged"):
        out = si.solve(link="he1", activation="he1", loss="square", geometry="plain", lr=2.5, m0=0.2, times=times)
    t_div = out["info"]["diverged_at"]
    assert 0 < t_div < 40
    after = out["time"] > t_div
    assert np.all(np.isnan(out["q"][after])) and np.all(np.isfinite(out["q"][~after]))
    assert np.all(np.isnan(out["test_loss"][after]))
    # below the stability threshold η < 2 nothing is flagged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = si.solve(link="he1", activation="he1", loss="square", geometry="plain", lr=1.9, m0=0.2, times=times)
    assert ok["info"]["diverged_at"] == -1.0


# --------------------------------------------------------------------------------------------------
# Fixed points
# --------------------------------------------------------------------------------------------------
def test_stationary_overlap_he2_closed_form_values():
    # the note's numbers: m∞ = 0.890 at η = 0.1 and 0.612 at η = 0.5
    assert abs(si.stationary_overlap_he2(0.1) - 0.890) < 5e-4
    assert abs(si.stationary_overlap_he2(0.5) - 0.612) < 5e-4
    assert si.stationary_overlap_he2(2.5) == 0.0          # η(1 + Δ) ≥ 2: the equator is stable


@pytest.mark.parametrize("eta,noise,nb", [(0.1, 0.0, 1), (0.5, 0.0, 1), (0.4, 0.5, 2)])
def test_stationary_overlap_he2_matches_ode(eta, noise, nb):
    out = si.solve(link="he2", activation="he2", loss="correlation", geometry="sphere", lr=eta, noise=noise,
                   batch_size=nb, m0=0.3, times=[0.0, 400.0])
    assert abs(out["m"][-1] - si.stationary_overlap_he2(eta, noise, nb)) < 1e-8
    # negative start converges to −m∞
    neg = si.solve(link="he2", activation="he2", geometry="sphere", lr=eta, noise=noise, batch_size=nb,
                   m0=-0.3, times=[0.0, 400.0])
    assert abs(neg["m"][-1] + si.stationary_overlap_he2(eta, noise, nb)) < 1e-8


def _fixed_point(params, guess):
    """A root of the (m, s) drift, checked by its residual and its local stability, not by fsolve's flag.

    fsolve's `ier` depends on reaching its step tolerance, which rounding in the drift can make
    unreachable (scipy 1.17 returns ier = 5 for a root whose residual is 2.6e-11), so the root is
    judged directly: the residual is at the drift's rounding floor, the finite-difference Jacobian
    has eigenvalues with negative real parts (an attracting fixed point, the one the dynamics reach),
    and residual / min|eigenvalue| bounds the distance to the exact root to first order.
    """
    def F(y):
        return si.drift((y[0], y[1], 0.0), params)[:2] / params.lr

    sol = fsolve(F, guess, xtol=1e-10)
    residual = np.max(np.abs(F(sol)))
    # 1e-9: F is O(1) (the drift divided by η); its rounding floor measured here is ≤ 3e-11.
    assert residual < 1e-9, residual
    h_fd = 1e-6
    jac = np.column_stack([(F(sol + h_fd * e) - F(sol - h_fd * e)) / (2 * h_fd) for e in np.eye(2)])
    eig = np.linalg.eigvals(jac)
    assert np.all(eig.real < 0), eig
    assert residual / np.min(np.abs(eig)) < 1e-8     # first-order distance to the exact root
    return sol


def test_misaligned_spike_fixed_points():
    # note §4, mechanism 1: κ = 5, c = 1/√2, h₂/h₂, correlation loss
    kappa, phi = 5.0, math.pi / 4
    c = math.cos(phi)
    Sigma = np.eye(2) + kappa * np.outer([c, math.sin(phi)], [c, math.sin(phi)])
    theta = np.array([1.0, 0.0])
    R = theta @ Sigma @ theta
    direction = Sigma @ theta / np.linalg.norm(Sigma @ theta)
    kw = dict(link="he2", activation="he2", spike=kappa, spike_angle=phi)
    # sphere → w = Σθ*/‖Σθ*‖ as η → 0
    m, s = _fixed_point(si.make_params(geometry="sphere", lr=1e-6, **kw), [0.7, 0.7])
    assert abs(m - direction[0]) < 1e-5 and abs(s - direction @ [c, math.sin(phi)]) < 1e-5
    # the note's finite-η values of the same ODE
    assert abs(_fixed_point(si.make_params(geometry="sphere", lr=0.05, **kw), [0.7, 0.7])[0] - 0.766) < 5e-4
    assert abs(_fixed_point(si.make_params(geometry="sphere", lr=0.002, **kw), [0.7, 0.7])[0] - 0.8117) < 5e-5
    # sigma_sphere: same direction, normalised by wᵀΣw = 1 ⇒ m = R/√(θ*ᵀΣ³θ*)
    p = si.make_params(geometry="sigma_sphere", lr=1e-6, **kw)
    m, s = _fixed_point(p, [0.3, 0.4])
    assert abs(m - R / math.sqrt(theta @ Sigma @ Sigma @ Sigma @ theta)) < 1e-5
    assert abs(m / math.sqrt(si.moments((m, s, 0), p)["q"]) - direction[0]) < 1e-5
    # wn_sigma recovers θ*/√R (ρ → 1); the note quotes m = 0.516 at η = 0.01 (this ODE: 0.51548)
    m, s = _fixed_point(si.make_params(geometry="wn_sigma", lr=1e-6, **kw), [0.5, 0.35])
    assert abs(m - 1 / math.sqrt(R)) < 1e-5 and abs(s - c / math.sqrt(R)) < 1e-5
    assert abs(_fixed_point(si.make_params(geometry="wn_sigma", lr=0.01, **kw), [0.5, 0.35])[0] - 0.516) < 1e-3


def test_square_loss_aligned_spike_stalls_on_sphere():
    # note §4, mechanism 2: h₂, κ = 5, u = θ*, η = 0.01 stalls at m = 0.160, ρ = 0.37
    out = si.solve(link="he2", activation="he2", loss="square", spike=5.0, geometry="sphere", lr=0.01, m0=0.05,
                   times=[0.0, 3000.0])
    assert abs(out["m"][-1] - 0.160) < 5e-4 and abs(out["rho"][-1] - 0.37) < 5e-3
    np.testing.assert_allclose(out["m_spike"], out["m"], atol=1e-14)     # c = 1: s ≡ m
    # wn_sigma cancels the repelling term: ρ → 1 (up to the η² corrector)
    wn = si.solve(link="he2", activation="he2", loss="square", spike=5.0, geometry="wn_sigma", lr=0.01,
                  m0=0.05, times=[0.0, 3000.0])
    assert wn["rho"][-1] > 0.99


@pytest.mark.parametrize("geometry", ["sigma_sphere", "wn_sigma"])
def test_sigma_constraint_is_substituted(geometry):
    out = si.solve(link="he3", activation="tanh", loss="square", spike=4.0, spike_angle=0.7, geometry=geometry,
                   lr=0.2, m0=0.3, times=np.linspace(0, 20, 11))
    Q = out["q"] + 4.0 * out["m_spike"] ** 2
    np.testing.assert_allclose(Q, 1.0, atol=1e-14)
    assert np.all(out["q"] >= out["m"] ** 2)


# --------------------------------------------------------------------------------------------------
# Observables
# --------------------------------------------------------------------------------------------------
def test_population_losses_closed_forms():
    kappa, phi = 3.0, 0.5
    c = math.cos(phi)
    m, s, q = np.array([0.1, 0.4, -0.3]), np.array([0.2, 0.3, 0.1]), np.array([1.0, 0.9, 0.5])
    Q, M, R = q + kappa * s * s, m + kappa * c * s, 1 + kappa * c * c
    # linear/linear, raw target: ½E[(ν − λ)²] = ½(R − 2M + Q); standardised: ½(1 − 2M/√R + Q)
    raw = single_index_test_loss(m, s, q, link="he1", activation="he1", spike=kappa, spike_angle=phi,
                                 standardize_target=False)
    np.testing.assert_allclose(raw, 0.5 * (R - 2 * M + Q), rtol=1e-13)
    std = single_index_test_loss(m, s, q, link="he1", activation="he1", spike=kappa, spike_angle=phi)
    np.testing.assert_allclose(std, 0.5 * (1 - 2 * M / math.sqrt(R) + Q), rtol=1e-13)
    # h₂/h₂ correlation: −E[h₂(τν)h₂(λ)] = −Cov(τν, λ)² = −M²/R (Isserlis)
    corr = single_index_objective(m, s, q, link="he2", activation="he2", loss="correlation", spike=kappa,
                                  spike_angle=phi)
    np.testing.assert_allclose(corr, -M ** 2 / R, rtol=1e-13)
    sq = single_index_objective(m, s, q, link="he2", activation="he2", loss="square", spike=kappa,
                                spike_angle=phi, noise=0.5)
    tl = single_index_test_loss(m, s, q, link="he2", activation="he2", spike=kappa, spike_angle=phi)
    np.testing.assert_allclose(sq, tl + 0.125, rtol=1e-13)
    assert np.isnan(single_index_test_loss(np.nan, 0.1, 1.0, link="he1", activation="relu"))


def test_solve_outputs_and_info_are_netcdf_safe():
    out = si.solve(link="relu", activation="tanh", loss="correlation", spike=2.0, spike_angle=0.3,
                   geometry="sphere", lr=0.3, m0=0.1, times=np.linspace(0, 5, 6))
    for key in ("time", "m", "m_spike", "q", "cosine", "test_loss", "objective"):
        assert out[key].shape == (6,) and out[key].dtype == np.float64
    for key, val in out["info"].items():
        assert isinstance(val, (str, int, float)) and not isinstance(val, bool), (key, val)
    np.testing.assert_allclose(out["m_spike"][0], math.cos(0.3) * 0.1)
    np.testing.assert_allclose(out["objective"], single_index_objective(
        out["m"], out["m_spike"], out["q"], link="relu", activation="tanh", loss="correlation", spike=2.0,
        spike_angle=0.3), rtol=1e-14)


# --------------------------------------------------------------------------------------------------
# Escape (note §4)
# --------------------------------------------------------------------------------------------------
def test_escape_time_first_passage():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    assert si.escape_time(t, [0.1, 0.3, 0.7, 0.9]) == pytest.approx(1.5)
    assert si.escape_time(t, [0.1, -0.3, -0.6, 0.2]) == pytest.approx(1 + 0.2 / 0.3)   # |m|, first passage
    assert si.escape_time(t, [0.6, 0.7, 0.8, 0.9]) == 0.0
    assert si.escape_time(t, [0.1, 0.2, np.nan, np.nan]) == math.inf
    ens = si.escape_time(t, np.array([[0.1, 0.3, 0.7, 0.9], [0.0, 0.0, 0.0, 0.5], [0.1, 0.1, 0.1, 0.1]]))
    np.testing.assert_allclose(ens, [1.5, 3.0, np.inf])


def test_escape_k2_isotropic_ode_and_formula():
    eta, D = 0.2, 0.1

    def mdot(m):   # note §3, h₂/h₂ correlation
        return 2 * eta * (1 - m * m) * m - eta ** 2 * m * (1 + 4 * m * m + D)

    gaps = []
    for rho0 in (1e-4, 1e-6):
        exact = quad(lambda m: 1 / mdot(m), rho0, 0.5, epsabs=0, epsrel=1e-13, limit=200)[0]
        kw = dict(link="he2", activation="he2", lr=eta, noise=math.sqrt(D), rho0=rho0)
        ode = si.predicted_escape_time(method="ode", **kw)
        assert ode["t_half"] == pytest.approx(exact, rel=1e-8)
        form = si.predicted_escape_time(**kw)
        assert form["method"] == "formula" and form["k_star"] == 2
        assert form["growth_rate"] == pytest.approx(eta * (2 - 0.5 * eta * 2 * (1 + D)), rel=1e-12)
        gaps.append(exact - form["t_half"])
    # the leading-order formula differs from the exact time by a ρ₀-independent constant
    assert abs(gaps[0] - gaps[1]) < 1e-6
    # solve() records the same first passage from m₀ = ρ₀
    out = si.solve(link="he2", activation="he2", lr=eta, noise=math.sqrt(D), m0=1e-4,
                   times=np.linspace(0, 40, 2001))
    exact = quad(lambda m: 1 / mdot(m), 1e-4, 0.5, epsabs=0, epsrel=1e-13)[0]
    assert out["info"]["t_half"] == pytest.approx(exact, abs=1e-4)      # linear interpolation, Δt = 0.02


def test_escape_k1_integrates_the_ode():
    eta, D = 0.3, 0.1

    def mdot(m):   # h₁/h₁ correlation on the sphere: B₁ = 1 + Δ
        return eta * (1 - m * m) - 0.5 * eta ** 2 * m * (1 + D)

    res = si.predicted_escape_time(link="he1", activation="he1", lr=eta, noise=math.sqrt(D), rho0=1e-3)
    assert res["method"] == "ode" and res["k_star"] == 1
    assert res["t_half"] == pytest.approx(quad(lambda m: 1 / mdot(m), 1e-3, 0.5)[0], rel=1e-8)


def test_escape_k3_formula_against_ode_and_spike_speedup():
    # k* = 3: the Bernoulli formula approaches the full ODE as d grows (relative gap ~ ρ₀)
    gaps = []
    for d in (10_000, 100_000):
        kw = dict(link="he3", activation="he3", lr=1e-3, spike=5.0, d=d)
        f = si.predicted_escape_time(method="formula", **kw)["t_half"]
        o = si.predicted_escape_time(method="ode", **kw)["t_half"]
        gaps.append(abs(o / f - 1))
    assert gaps[0] < 0.02 and gaps[1] < 0.006 and gaps[1] < gaps[0] / 2.5
    # equal η, negligible noise: t(κ=0)/t(κ=5, aligned) = G^{k/2} = 6^{3/2} = 14.7 (note §4)
    t0 = si.predicted_escape_time(link="he3", activation="he3", lr=1e-12, d=10 ** 12)["t_half"]
    t5 = si.predicted_escape_time(link="he3", activation="he3", lr=1e-12, d=10 ** 12, spike=5.0)["t_half"]
    assert t0 / t5 == pytest.approx(6 ** 1.5, rel=2e-5)


def test_escape_k3_noise_threshold():
    # escape needs η < 2(GkAρ₀ − κK_eff)/B₀ (n_b = 1); B₀ = 3 for h₃/h₃, Δ = 0
    d = 10_000
    res = si.predicted_escape_time(link="he3", activation="he3", lr=1e-3, d=d)
    assert res["lr_max"] == pytest.approx(2 * 3 * (1 / math.sqrt(d)) / 3, rel=1e-12)
    assert res["escapes"]
    stuck = si.predicted_escape_time(link="he3", activation="he3", lr=1.05 * res["lr_max"], d=d)
    assert not stuck["escapes"] and stuck["t_half"] == math.inf


# the square-loss reduction closes for a misaligned spike only on wn_sigma (note §4, mechanism 2)
REDUCTION_CASES = [(geo, loss, k, kappa, c)
                   for geo in ("sphere", "sigma_sphere", "wn_sigma") for loss in ("correlation", "square")
                   for k in (2, 3) for kappa, c in ((0.0, 1.0), (3.0, 0.6), (5.0, 1.0))
                   if not (loss == "square" and geo != "wn_sigma" and c < 1)]


@pytest.mark.parametrize("geometry,loss,k,kappa,c", REDUCTION_CASES)
def test_near_equator_reduction_matches_full_drift(geometry, loss, k, kappa, c):
    eta = 0.05 if k == 2 else 0.01
    kw = dict(link=f"he{k}", activation=f"he{k}", loss=loss, spike=kappa, spike_angle=math.acos(c),
              geometry=geometry, lr=eta)
    coef = si.near_equator_coefficients(**kw)
    p = si.make_params(**kw)
    # two different small (m, s) with the same ρ scale: the reduced dynamics closes in ρ
    for init in ({"m": 1e-3}, {"m": 1e-3, "s": (2e-3 if c < 1 else 1e-3)}):
        state = si.initial_state(p, init=init)
        rho = si.moments(state, p)["rho"]
        full = si.rho_rate(state, p)
        scale = abs(coef["signal_rate"] * rho ** (k - 1)) + abs(coef["noise_rate"] * rho)
        assert abs(full - si.near_equator_drift(rho, coef)) < 1e-4 * scale


def test_gain_and_effective_initial_overlap():
    assert si.spike_gain(5.0, 0.0) == pytest.approx(6.0, rel=1e-15)
    assert si.spike_gain(5.0, math.pi / 2) == 1.0
    assert si.effective_initial_overlap(1000, 5.0, 0.0) == pytest.approx(math.sqrt(6 / 1000), rel=1e-15)
    res = si.predicted_escape_time(link="he2", activation="he2", lr=0.1, spike=5.0, d=1000)
    assert res["gain"] == pytest.approx(6.0) and res["d_eff"] == pytest.approx(1000 / 6)
    assert res["rho0"] == pytest.approx(math.sqrt(6 / 1000))
    assert res["samples"] == pytest.approx(1000 * res["t_half"])


def test_raw_target_changes_information_exponent():
    # P4: a raw h₃ target with an aligned spike has a linear part, k* = 1; standardised it stays 3
    std = si.near_equator_coefficients(link="he3", activation="he3", spike=3.0, lr=0.01)
    raw = si.near_equator_coefficients(link="he3", activation={1: 1.0, 3: 1.0}, spike=3.0, lr=0.01,
                                       standardize_target=False)
    assert std["k_star"] == 3 and raw["k_star"] == 1
    # a raw even target has a mean: the reduction refuses it
    with pytest.raises(ValueError, match=r"link='he2'.*centred target"):
        si.near_equator_coefficients(link="he2", activation="he2", spike=3.0, lr=0.01, standardize_target=False)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
BASE = dict(link="he2", activation="he2", lr=0.1, m0=0.2, times=[0.0, 1.0])


@pytest.mark.parametrize("override,pattern", [
    ({"spike": -1.0}, r"spike must be a finite number ≥ 0.*valid range \[0, ∞\)"),
    ({"spike_angle": 2.0}, r"spike_angle must lie in \[0, π/2\].*valid range \[0, 1\.57"),
    ({"spike_angle": -0.2}, r"spike_angle must lie in \[0, π/2\]"),
    ({"link": "sinc"}, r"link='sinc' is not a known activation; valid: .*relu"),
    ({"activation": "sinc"}, r"activation='sinc' is not a known activation"),
    ({"m0": 1.5}, r"m0 must lie in \[−1, 1\] on the sphere"),
    ({"m0": 0.6, "geometry": "wn_sigma", "spike": 3.0}, r"m0 must lie in \[−1/√R, 1/√R\] = \[-0\.5, 0\.5\]"),
    ({"lr": 0.0}, r"lr must be > 0.*valid range \(0, ∞\)"),
    ({"lr": -0.1}, r"lr must be > 0"),
    ({"geometry": "torus"}, r"geometry='torus' is not known; valid: plain, sphere, sigma_sphere, wn_sigma"),
    ({"loss": "hinge"}, r"loss='hinge' is not known; valid: correlation, square"),
    ({"noise": -0.1}, r"noise must be ≥ 0.*valid range \[0, ∞\)"),
    ({"batch_size": 0}, r"batch_size must be an integer ≥ 1"),
    ({"link": {}}, r"link: the Hermite expansion is empty"),
    ({"init": {"m": 0.9, "s": -0.9}, "spike_angle": 0.3}, r"init = .* is not realisable"),
    ({"init": {"m": 0.1, "q": 2.0}}, r"init\['q'\] = 2.0 is off the sphere constraint"),
])
def test_solve_rejects_bad_input(override, pattern):
    with pytest.raises(ValueError, match=pattern):
        si.solve(**{**BASE, **override})


def test_escape_rejects_empty_expansion_and_plain_formula():
    with pytest.raises(ValueError, match=r"link='hermite\{0:1\}'.*only a constant term.*k\* is undefined"):
        si.predicted_escape_time(link={0: 1.0}, activation="he2", lr=0.1, d=100)
    with pytest.raises(ValueError, match=r"geometry='plain'.*normalised geometry"):
        si.near_equator_coefficients(link="he2", activation="he2", geometry="plain", lr=0.1)
    with pytest.raises(ValueError, match=r"give d .* or rho0"):
        si.predicted_escape_time(link="he2", activation="he2", lr=0.1)
    with pytest.raises(ValueError, match=r"spike_angle=0.5: with the square loss"):
        si.near_equator_coefficients(link="he2", activation="he2", loss="square", spike=2.0, spike_angle=0.5,
                                     lr=0.1)
    with pytest.raises(ValueError, match=r"give m0"):
        si.solve(link="he2", activation="he2", lr=0.1, times=[0, 1])
