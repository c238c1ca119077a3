"""d → ∞ theory of teacher–student two-layer networks (hidyn.solvers.ode.two_layer, docs/theory/teacher_student.md).

Independent references:
* the one-step change of (Q, R, v) under the SGD rule of note §1, averaged over fresh inputs — with real
  d-dimensional inputs and weights drawn with prescribed overlaps, and with the fields sampled exactly
  (a cheap, exact reformulation of a d-dimensional step) for sharper statistics;
* a direct Monte-Carlo estimate of ½E[(ŷ − y)²] from sampled Gaussian fields for ε_g;
* the measured tables of note §6.1/§6.2 (their quoted digits set the tolerances).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from hidyn import observables
from hidyn.activations import get_activation
from hidyn.solvers.ode import two_layer as TL

P_K2 = np.array([[0.625095, 0.897214], [0.775686, 0.225207]])


def eig_sqrt(C):
    lam, V = np.linalg.eigh(C)
    return V * np.sqrt(np.clip(lam, 0, None))


def draw_weights(Q, R, T, d, rng):
    """W (K×d), B (M×d) with WWᵀ/d = Q, WBᵀ/d = R, BBᵀ/d = T exactly (note: 'Drawing the initial condition')."""
    K, M = R.shape
    E, _ = np.linalg.qr(rng.standard_normal((d, K + M)))
    E = E.T * math.sqrt(d)
    B = eig_sqrt(T) @ E[:M]
    Tinv = np.linalg.inv(T)
    W = R @ Tinv @ B + eig_sqrt(Q - R @ Tinv @ R.T) @ E[M:]
    return W, B


def one_step_samples(lam, nu, xx, zeta, v, A, act, lr, lr_second, noise):
    """d × (change of Q, R, v) per sample for one SGD step (note §1), from fields and |x|²/d.

    With W' = W + (η/√d) v g'(λ) Δ x: d(Q'_ik − Q_ik) = η v_k g'_k Δ λ_i + η v_i g'_i Δ λ_k
    + η² v_i v_k g'_i g'_k Δ² |x|²/d ; d(R'_in − R_in) = η v_i g'_i Δ ν_n ; d(v' − v) = η_v g(λ_i) Δ.
    """
    delta = act.g(nu) @ A + noise * zeta - act.g(lam) @ v
    a = v * act.dg(lam) * delta[:, None]                     # (N, K)
    dq = lr * (a[:, :, None] * lam[:, None, :] + a[:, None, :] * lam[:, :, None]) \
        + lr ** 2 * (a[:, :, None] * a[:, None, :]) * xx[:, None, None]
    dr = lr * a[:, :, None] * nu[:, None, :]
    dv = lr_second * act.g(lam) * delta[:, None]
    return dq, dr, dv


def assert_within_se(samples, expected, n_se=5.0):
    mean = samples.mean(axis=0)
    se = samples.std(axis=0) / math.sqrt(samples.shape[0])
    z = np.abs(mean - expected) / se
    assert np.all(z < n_se), f"max z-score {z.max():.2f}: mean {mean}, drift {expected}, se {se}"


OV = dict(Q=np.array([[0.6, 0.15], [0.15, 0.45]]), R=np.array([[0.3, -0.1], [0.05, 0.4]]),
          T=np.array([[1.0, 0.2], [0.2, 0.8]]), v=np.array([0.8, 1.2]), A=np.array([1.0, 0.7]))


def test_drift_matches_one_sgd_step_with_real_inputs():
    """The key check: real d = 2000 inputs and weights, literal update, averaged over fresh inputs."""
    rng = np.random.default_rng(0)
    d, n, chunk = 2000, 24_000, 4000
    lr, lr_second, noise = 1.5, 0.7, 0.6
    act = get_activation("erf")
    W, B = draw_weights(OV["Q"], OV["R"], OV["T"], d, rng)
    dq, dr, dv = [], [], []
    for _ in range(n // chunk):
        X = rng.standard_normal((chunk, d))
        lam, nu = X @ W.T / math.sqrt(d), X @ B.T / math.sqrt(d)
        out = one_step_samples(lam, nu, np.einsum("nd,nd->n", X, X) / d, rng.standard_normal(chunk),
                               OV["v"], OV["A"], act, lr, lr_second, noise)
        dq.append(out[0]), dr.append(out[1]), dv.append(out[2])
    # the algebraic one-step change equals the literal W' update (checked on one sample)
    x = X[-1]
    delta = act.g(B @ x / math.sqrt(d)) @ OV["A"] + noise * 0.0 - act.g(W @ x / math.sqrt(d)) @ OV["v"]
    W1 = W + lr / math.sqrt(d) * (OV["v"] * act.dg(W @ x / math.sqrt(d)) * delta)[:, None] * x
    lit = d * (W1 @ W1.T - W @ W.T) / d
    alg = one_step_samples((W @ x)[None] / math.sqrt(d), (B @ x)[None] / math.sqrt(d), np.array([x @ x / d]),
                           np.zeros(1), OV["v"], OV["A"], act, lr, lr_second, noise)[0][0]
    np.testing.assert_allclose(lit, alg, rtol=1e-8, atol=1e-10)

    dQ, dR, dv_ = TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], OV["A"], "erf", lr=lr, lr_second=lr_second,
                           train_second_layer=True, noise=noise)
    assert_within_se(np.concatenate(dq), dQ)
    assert_within_se(np.concatenate(dr), dR)
    assert_within_se(np.concatenate(dv), dv_)


@pytest.mark.parametrize("name", ["erf", "relu", "tanh"])
def test_drift_linear_and_quadratic_parts_match_exact_field_sampling(name):
    """Sharper: sample the step exactly via the fields, and compare the η and η² coefficients separately.

    For x ~ N(0, I_d) and weights spanning an L-dim subspace, (λ, ν) = S z with z ~ N(0, I_L) and
    |x|² = |z|² + χ²_{d−L} exactly, so this is a d-dimensional SGD step without the d-dim vectors.  The
    output noise ζ and the χ² part are averaged analytically (exact conditional expectations:
    E_ζ[Δ²] = Δ₀² + σ², E_ζ[Δ] = Δ₀, E[χ²_{d−L}] = d − L), which only removes variance.
    """
    rng = np.random.default_rng({"erf": 1, "relu": 2, "tanh": 3}[name])
    act = get_activation(name)
    n_chunks, chunk, d, noise = 5, 400_000, 100_000, 0.5
    v, A, K = OV["v"], OV["A"], 2
    sqrt_om = eig_sqrt(TL._omega(OV["Q"], OV["R"], OV["T"]))
    parts = {"quad": [], "lin": [], "dR": [], "dv": []}
    for _ in range(n_chunks):
        z = rng.standard_normal((chunk, 4))
        u = z @ sqrt_om.T
        lam, nu = u[:, :K], u[:, K:]
        xx = (np.einsum("nj,nj->n", z, z) + d - 4) / d
        delta0 = act.g(nu) @ A - act.g(lam) @ v
        b = v * act.dg(lam)                                              # a = b Δ
        parts["quad"].append(b[:, :, None] * b[:, None, :] * ((delta0 ** 2 + noise ** 2) * xx)[:, None, None])
        ab = b * delta0[:, None]
        parts["lin"].append(ab[:, :, None] * lam[:, None, :] + ab[:, None, :] * lam[:, :, None])
        parts["dR"].append(ab[:, :, None] * nu[:, None, :])
        parts["dv"].append(act.g(lam) * delta0[:, None])
    samples = {k: np.concatenate(x) for k, x in parts.items()}

    kw = dict(noise=noise, train_second_layer=True, lr_second=1.0)
    d1 = TL.drift(OV["Q"], OV["R"], v, OV["T"], A, name, lr=1.0, **kw)
    d2 = TL.drift(OV["Q"], OV["R"], v, OV["T"], A, name, lr=2.0, **kw)
    quad = (d2[0] - 2 * d1[0]) / 2.0                                     # drift = η·lin + η²·quad
    assert_within_se(samples["quad"], quad)
    assert_within_se(samples["lin"], d1[0] - quad)
    assert_within_se(samples["dR"], d1[1])
    assert_within_se(samples["dv"], d1[2])


def test_drift_batch_size_divides_only_the_quadratic_term_real_inputs():
    rng = np.random.default_rng(4)
    d, steps, B, lr = 1000, 8000, 4, 2.0
    act = get_activation("erf")
    W, Bt = draw_weights(OV["Q"], OV["R"], OV["T"], d, rng)
    v, A = OV["v"], OV["A"]
    dq = np.empty((steps, 2, 2))
    for s in range(steps):
        X = rng.standard_normal((B, d))
        lam, nu = X @ W.T / math.sqrt(d), X @ Bt.T / math.sqrt(d)
        delta = act.g(nu) @ A - act.g(lam) @ v
        grad = ((v * act.dg(lam) * delta[:, None]).T @ X) / B          # mean per-sample gradient (K, d)
        W1 = W + lr / math.sqrt(d) * grad
        dq[s] = (W1 @ W1.T - W @ W.T)                                 # = d·ΔQ since Q = WWᵀ/d
    want = TL.drift(OV["Q"], OV["R"], v, OV["T"], A, "erf", lr=lr, batch_size=B)[0]
    assert_within_se(dq, want)
    # and the B = 1 drift is clearly different at this lr (the η² term is not divided)
    one = TL.drift(OV["Q"], OV["R"], v, OV["T"], A, "erf", lr=lr, batch_size=1)[0]
    assert np.max(np.abs(one - want)) > 10 * np.max(dq.std(axis=0) / math.sqrt(steps))


def test_drift_properties_and_frozen_second_layer():
    dQ, dR, dv = TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], OV["A"], "relu", lr=0.3, noise=0.2)
    assert dQ.shape == (2, 2) and dR.shape == (2, 2) and dv.shape == (2,)
    assert np.array_equal(dQ, dQ.T)
    assert np.all(dv == 0.0)
    # noise enters dQ only, through (η²/B) σ² v_i v_k J2 (pitfall 2)
    dQ0, dR0, _ = TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], OV["A"], "relu", lr=0.3)
    assert np.array_equal(dR, dR0)
    J2 = TL.two_layer_averages("relu", TL._omega(OV["Q"], OV["R"], OV["T"]), 2)["J2"]
    np.testing.assert_allclose(dQ - dQ0, 0.09 * 0.04 * np.outer(OV["v"], OV["v"]) * J2, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=float("inf")), "lr"),
    (dict(lr=0.5, noise=-0.1), "noise"), (dict(lr=0.5, batch_size=0), "batch_size"),
    (dict(lr=0.5, batch_size=1.5), "batch_size"), (dict(lr=0.5, lr_second=-1.0), "lr_second"),
])
def test_drift_rejects_bad_rates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], OV["A"], "erf", **kwargs)


def test_drift_rejects_bad_overlaps():
    with pytest.raises(ValueError, match="positive semi-definite"):
        TL.drift(OV["Q"], np.full((2, 2), 2.0), OV["v"], OV["T"], OV["A"], "erf", lr=0.5)
    with pytest.raises(ValueError, match="Q must have shape"):
        TL.drift(np.eye(3), OV["R"], OV["v"], OV["T"], OV["A"], "erf", lr=0.5)
    with pytest.raises(ValueError, match="A must have shape"):
        TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], np.ones(3), "erf", lr=0.5)
    with pytest.raises(ValueError, match="activation"):
        TL.drift(OV["Q"], OV["R"], OV["v"], OV["T"], OV["A"], "nope", lr=0.5)


# ------------------------------------------------------------------------------------------------
# generalisation error
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["erf", "relu", "tanh", "he2"])
def test_test_loss_against_monte_carlo_of_sampled_fields(name):
    rng = np.random.default_rng(5)
    act = get_activation(name)
    om = TL._omega(OV["Q"], OV["R"], OV["T"])
    u = rng.multivariate_normal(np.zeros(4), om, size=1_000_000)
    sq = 0.5 * (act.g(u[:, :2]) @ OV["v"] - act.g(u[:, 2:]) @ OV["A"]) ** 2
    eg = observables.two_layer_test_loss(OV["Q"], OV["R"], OV["T"], OV["v"], OV["A"], name)
    assert isinstance(eg, float)
    assert abs(sq.mean() - eg) < 5 * sq.std() / 1000.0


def test_test_loss_linear_formula_batches_and_nan_rows():
    rng = np.random.default_rng(6)
    Q = np.stack([OV["Q"], 0.5 * OV["Q"] + 0.1 * np.eye(2), OV["Q"]])
    R = np.stack([OV["R"], 0.5 * OV["R"], np.full((2, 2), np.nan)])
    v = rng.uniform(0.5, 1.5, (3, 2))
    got = observables.two_layer_test_loss(Q, R, OV["T"], v, OV["A"], "linear")
    A, T = OV["A"], OV["T"]
    for j in range(2):   # ½(vᵀQv − 2vᵀRA + AᵀTA)  (note §4.2)
        assert got[j] == pytest.approx(0.5 * (v[j] @ Q[j] @ v[j] - 2 * v[j] @ R[j] @ A + A @ T @ A), rel=1e-13)
    assert np.isnan(got[2])
    tr = observables.two_layer_train_loss(got, 0.4)
    np.testing.assert_allclose(tr[:2], got[:2] + 0.08)
    with pytest.raises(ValueError, match="noise"):
        observables.two_layer_train_loss(got, -1.0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        observables.two_layer_test_loss(OV["Q"], np.full((2, 2), 3.0), T, OV["v"], A, "erf")
    with pytest.raises(ValueError, match="T must have shape"):
        observables.two_layer_test_loss(OV["Q"], OV["R"], np.eye(3), OV["v"], A, "erf")


def test_test_loss_zero_at_teacher():
    T = OV["T"]
    for name in ("erf", "relu", "linear"):
        eg = observables.two_layer_test_loss(T, T, T, OV["A"], OV["A"], name)
        assert abs(eg) < 1e-14


# ------------------------------------------------------------------------------------------------
# solve
# ------------------------------------------------------------------------------------------------
def test_solve_outputs_symmetry_and_info():
    rng = np.random.default_rng(7)
    K, M = 3, 2
    X = rng.standard_normal((K + M, 8)) * 0.3
    om = X @ X.T
    Q0, R0, T = om[:K, :K], om[:K, K:], np.eye(M)
    T = om[K:, K:]
    times = np.linspace(0.0, 30.0, 31)
    sol = TL.solve(Q0, R0, T, np.ones(K), np.ones(M), "erf", times, lr=0.8, lr_second=0.4,
                   train_second_layer=True, noise=0.3)
    assert sol["Q"].shape == (31, K, K) and sol["R"].shape == (31, K, M) and sol["v"].shape == (31, K)
    assert sol["test_loss"].shape == (31,) and sol["train_loss"].shape == (31,)
    assert np.array_equal(sol["Q"], np.swapaxes(sol["Q"], 1, 2))      # exactly symmetric
    np.testing.assert_array_equal(sol["time"], times)
    np.testing.assert_allclose(sol["Q"][0], Q0)
    assert not np.allclose(sol["v"][-1], 1.0)                          # second layer moved
    np.testing.assert_allclose(sol["train_loss"], sol["test_loss"] + 0.045)
    for key, val in sol["info"].items():
        assert isinstance(val, (str, int, float)) and not isinstance(val, bool), key
    assert sol["info"]["diverged_at"] == -1.0 and sol["info"]["rtol"] == 1e-10
    # the saved test_loss is ε_g of the saved overlaps
    j = 17
    eg = observables.two_layer_test_loss(sol["Q"][j], sol["R"][j], T, sol["v"][j], np.ones(M), "erf")
    assert sol["test_loss"][j] == pytest.approx(eg, rel=1e-12)
    # dQ/dt at t = 0 from a tiny step equals the drift
    short = TL.solve(Q0, R0, T, np.ones(K), np.ones(M), "erf", [0.0, 1e-6], lr=0.8, lr_second=0.4,
                     train_second_layer=True, noise=0.3)
    dQ, dR, dv = TL.drift(Q0, R0, np.ones(K), T, np.ones(M), "erf", lr=0.8, lr_second=0.4,
                          train_second_layer=True, noise=0.3)
    np.testing.assert_allclose((short["Q"][1] - Q0) / 1e-6, dQ, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose((short["v"][1] - 1.0) / 1e-6, dv, rtol=1e-4, atol=1e-8)


def test_relu_ode_runs_and_learns():
    Q0, R0 = np.diag([0.5, 0.7]), 0.1 * P_K2
    sol = TL.solve(Q0, R0, np.eye(2), np.ones(2), np.ones(2), "relu", np.linspace(0, 30, 7), lr=0.5,
                   rtol=1e-8, atol=1e-10)
    assert np.all(np.isfinite(sol["Q"])) and np.all(np.isfinite(sol["test_loss"]))
    assert sol["info"]["diverged_at"] == -1.0
    assert sol["test_loss"][-1] < 0.5 * sol["test_loss"][0]


def test_divergence_at_absurd_learning_rate_is_reported():
    with pytest.warns(RuntimeWarning, match="diverged"):
        sol = TL.solve(0.5 * np.eye(2), np.full((2, 2), 0.1), np.eye(2), np.ones(2), np.ones(2), "relu",
                       np.linspace(0, 10, 11), lr=20.0, rtol=1e-6, atol=1e-9)
    assert 0.0 <= sol["info"]["diverged_at"] < 10.0
    assert np.isnan(sol["test_loss"][-1]) and np.isnan(sol["Q"][-1]).all()
    assert np.isfinite(sol["test_loss"][0])


def test_solve_rejects_bad_times():
    with pytest.raises(ValueError, match="non-decreasing"):
        TL.solve(OV["Q"], OV["R"], OV["T"], OV["v"], OV["A"], "erf", [0.0, 2.0, 1.0], lr=0.5)


# ------------------------------------------------------------------------------------------------
# phenomenology (note §6)
# ------------------------------------------------------------------------------------------------
def test_symmetric_plateau_error_closed_form_and_eta_to_zero_limit():
    assert TL.symmetric_plateau_error(2) == pytest.approx(0.011611, abs=1e-6)
    assert TL.symmetric_plateau_error(3) == pytest.approx(0.020297, abs=1e-6)
    for K in (2, 3):   # the finite-η fixed point tends to the closed form (λ ∝ η and ε − ε_sym ∝ η)
        fp = TL.plateau_fixed_point(K, 1e-4)
        assert fp["test_loss"] == pytest.approx(TL.symmetric_plateau_error(K), rel=1e-4)
        assert fp["q"] == pytest.approx(1 / (2 * K - 1), rel=1e-4)


@pytest.mark.parametrize("K, lr, q, r, eps, lam", [
    (2, 0.1, 0.334297, 0.408543, 0.012086, 6.62e-3),
    (2, 0.5, 0.339579, 0.410158, 0.014677, 0.03434),
    (3, 0.1, 0.201054, 0.258454, 0.021890, 4.72e-3),
])
def test_plateau_fixed_point_reproduces_note_table(K, lr, q, r, eps, lam):
    fp = TL.plateau_fixed_point(K, lr)
    assert fp["q"] == pytest.approx(q, abs=2e-6)
    assert fp["r"] == pytest.approx(r, abs=2e-6)
    assert fp["test_loss"] == pytest.approx(eps, abs=2e-6)
    assert fp["lambda_plus"] == pytest.approx(lam, rel=2e-3)


def test_escape_time_reproduces_note_and_edge_cases():
    times = np.linspace(0.0, 260.0, 2601)
    sol = TL.solve(np.diag([0.2, 0.3]), 1e-2 * P_K2, np.eye(2), np.ones(2), np.ones(2), "erf", times, lr=0.5)
    t_exit = TL.escape_time(sol["time"], sol["test_loss"], 0.014677)
    assert t_exit == pytest.approx(190.3, abs=0.5)                     # note §6.1 table, δ = 1e-2
    assert np.isnan(TL.escape_time(times[:100], sol["test_loss"][:100], 0.014677))
    assert TL.escape_time([0.0, 1.0], [0.001, 0.0005], 0.014677) == 0.0
    assert TL.escape_time([0.0, 1.0], [0.02, 0.0], 0.02) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="plateau"):
        TL.escape_time(times, sol["test_loss"], 0.0)


@pytest.mark.parametrize("lr, ratio", [(0.05, 0.18675), (0.1, 0.19002)])
def test_noise_floor_matches_note(lr, ratio):
    sigma = 0.5
    sol = TL.solve(np.eye(2), np.eye(2), np.eye(2), np.ones(2), np.ones(2), "erf", [0.0, 40.0 / lr],
                   lr=lr, noise=sigma)
    measured = sol["test_loss"][-1] / (lr * sigma ** 2)
    assert measured == pytest.approx(ratio, abs=2e-5)                  # note §6.2 ODE values
    lead = TL.noise_floor(lr, sigma, np.ones(2), np.eye(2)) / (lr * sigma ** 2)
    assert lead == pytest.approx(2 / (2 * math.sqrt(3) * math.pi), rel=1e-12)
    assert measured / lead == pytest.approx(1 + 0.35 * lr, abs=0.01)   # ≈ 1 + 0.35 η
    with pytest.raises(ValueError, match="noise"):
        TL.noise_floor(lr, -1.0, np.ones(2), np.eye(2))


def test_plateau_fixed_point_validation():
    with pytest.raises(ValueError, match="K must be >= 2"):
        TL.plateau_fixed_point(1, 0.1)
    with pytest.raises(ValueError, match="lr"):
        TL.plateau_fixed_point(2, 0.0)


# ------------------------------------------------------------------------------------------------
# compiled erf right-hand side and Schur-complement variables (issues #16, #17)
# ------------------------------------------------------------------------------------------------
def _random_overlaps(K, M, rng, scale=0.5, repeat_student=False):
    L = K + M
    X = rng.standard_normal((L, L + 1)) * scale
    if repeat_student and K > 1:
        X[1] = X[0]                                    # two identical students: Ω singular
    om = X @ X.T
    return om[:K, :K], om[:K, K:], om[K:, K:]


@pytest.mark.parametrize("K, M, train, noise, batch, variables, threaded", [
    (1, 1, False, 0.0, 1, "schur", False), (2, 2, False, 0.0, 1, "overlaps", False),
    (3, 2, True, 0.3, 2, "schur", False), (2, 5, True, 0.0, 1, "overlaps", True),
    (16, 12, True, 0.2, 3, "schur", False), (16, 12, True, 0.2, 3, "schur", True),
])
def test_compiled_erf_rhs_equals_generic_closed_forms(K, M, train, noise, batch, variables, threaded,
                                                      monkeypatch):
    """The compiled erf RHS (I4 contracted on the fly through the tilted covariance) against the generic
    path (the full I4 tensor of §4.1's Λ-form, itself tested against Gauss–Hermite in test_gaussian)."""
    if threaded:   # the thread-pool kernel, normally used from K²(K+M)² = 4e6 on
        monkeypatch.setattr(TL, "_PARALLEL_TERMS", 0)
    rng = np.random.default_rng(K * 100 + M)
    act = get_activation("erf")
    Q, R, T = _random_overlaps(K, M, rng, repeat_student=True)
    v, A = rng.standard_normal(K), rng.standard_normal(M)
    args = (T, v, A, K, M, act, 0.7, 0.4, train, noise, batch)
    fast = TL._System(*args, variables=variables)
    ref = TL._System(*args, variables=variables, compiled=False)
    assert fast.fast is not None and ref.fast is None
    y = fast.pack(Q, R, v)
    got, want = fast.rhs(0.0, y), ref.rhs(0.0, y)
    # both evaluate the same closed forms in float64; only the summation order differs
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13 * np.max(np.abs(want)))
    # the public drift (compiled for erf) against the generic tensors, unpacked
    dQ, dR, dv = TL.drift(Q, R, v, T, A, "erf", lr=0.7, lr_second=0.4, train_second_layer=train,
                          noise=noise, batch_size=batch)
    gQ, gR, gv = TL._drift_core(TL._omega(Q, R, T), v, A, K, act, 0.7, 0.4, train, noise, batch)
    scale = np.max(np.abs(gQ))
    np.testing.assert_allclose(dQ, gQ, rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_array_equal(dQ, dQ.T)
    np.testing.assert_allclose(dR, gR, rtol=1e-12, atol=1e-13 * scale)
    np.testing.assert_allclose(dv, gv if train else 0.0, rtol=1e-12, atol=1e-13 * scale)


def test_schur_and_overlap_variables_give_the_same_trajectory():
    rng = np.random.default_rng(11)
    Q0, R0, T = _random_overlaps(3, 2, rng, scale=0.3)
    times = np.linspace(0.0, 40.0, 9)
    kw = dict(lr=0.8, lr_second=0.3, train_second_layer=True, noise=0.2, rtol=1e-12, atol=1e-14)
    a = TL.solve(Q0, R0, T, np.ones(3), np.ones(2), "erf", times, variables="schur", **kw)
    b = TL.solve(Q0, R0, T, np.ones(3), np.ones(2), "erf", times, variables="overlaps", **kw)
    assert a["info"]["variables"] == "schur" and b["info"]["variables"] == "overlaps"
    for key in ("Q", "R", "v", "test_loss"):
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="variables='nope' is invalid"):
        TL.solve(Q0, R0, T, np.ones(3), np.ones(2), "erf", times, variables="nope", lr=0.5)
    # a singular T has no Schur complement: auto falls back, an explicit request is refused
    Ts = np.ones((2, 2))
    R1 = np.full((3, 2), 0.1)
    sol = TL.solve(0.5 * np.eye(3), R1, Ts, np.ones(3), np.ones(2), "erf", [0.0, 1.0], lr=0.5)
    assert sol["info"]["variables"] == "overlaps"
    with pytest.raises(ValueError, match="invertible T"):
        TL.solve(0.5 * np.eye(3), R1, Ts, np.ones(3), np.ones(2), "erf", [0.0, 1.0], lr=0.5, variables="schur")


def test_relu_ode_stays_in_the_psd_cone_and_eps_g_nonnegative_at_convergence():
    """Issue #17 reproduction: K = M = 1 ReLU from the d → ∞ random start, converged tail, 120 save times.

    In overlap variables Q − R²/T reached −2.8e−7 and 28 of 120 ε_g were negative.  In Schur variables the
    integrated S = Q − R²/T stays ≥ −atol, its rare negative round-off is clipped (and counted), and ε_g
    is never negative.
    """
    import hidyn

    th = hidyn.theory("two_layer", K=1, M=1, activation="relu", lr=0.5, t_max=1000, n_times=120)
    Q, R, T = th["Q"].values[:, 0, 0], th["R"].values[:, 0, 0], 1.0
    assert th.attrs["ode_variables"] == "schur"
    assert np.all(th["test_loss"].values >= 0.0)
    assert np.min(Q - R * R / T) >= -1e-15                  # round-off of forming Q = R²/T + S
    assert th["test_loss"].values[-1] < 1e-8                  # converged to the teacher
    # what was clipped: S near 0 relaxes as dS/dt ≈ −0.375 S plus the ReLU RHS's ~1e-10 quadrature error,
    # integrated at atol 1e-10: measured −1.8e-10 and −2.6e-9 (before/after the atan2 arc-cosine kernel)
    assert -1e-8 <= th.attrs["ode_psd_min_eigenvalue"] <= 0.0
    # ε_g from the integrated S (not from Q − R²/T): what is clipped is round-off of O(1) terms at the
    # teacher (measured −5.6e-17), not the √(round-off) ≈ −1e-9 of the overlap route
    assert th.attrs["ode_test_loss_min_raw"] >= -1e-15
    # the same run in overlap variables leaves the cone by far more than round-off (the defect)
    old = TL.solve(np.array([[Q[0]]]), np.array([[R[0]]]), np.eye(1), np.ones(1), np.ones(1), "relu",
                   th["time"].values, lr=0.5, rtol=1e-8, atol=1e-10, variables="overlaps")
    assert old["info"]["psd_min_eigenvalue"] < -1e-7          # measured −3.7e-7


def test_relu_test_loss_from_schur_coordinates():
    """ReLU ε_g from (S, R, T): equal to the closed form on generic overlaps, exact at the cone boundary."""
    rng = np.random.default_rng(12)
    for K, M in ((1, 1), (3, 2), (2, 4)):
        Q, R, T = _random_overlaps(K, M, rng, scale=0.6)
        v, A = rng.standard_normal(K), rng.standard_normal(M)
        S = Q - R @ np.linalg.inv(T) @ R.T
        got = TL._relu_test_loss_schur(S[None], R[None], T, v[None], A)[0]
        assert got == pytest.approx(observables.two_layer_test_loss(Q, R, T, v, A, "relu"), rel=1e-13)
    # a student parallel to the teacher, w = r·b: ε_g = ½E[(relu(r z) − relu(z))²] = (1 − r)²/4 exactly,
    # 2.5e-13 here; through Q = r² the closed form would carry √(round-off) ≈ 1e-9 errors
    r = 1.0 - 1e-6
    got = TL._relu_test_loss_schur(np.zeros((1, 1, 1)), np.full((1, 1, 1), r), np.eye(1), np.ones((1, 1)),
                                   np.ones(1))[0]
    assert got == pytest.approx((1.0 - r) ** 2 / 4.0, rel=1e-6)
    assert np.isnan(TL._relu_test_loss_schur(np.full((1, 1, 1), np.nan), np.ones((1, 1, 1)), np.eye(1),
                                             np.ones((1, 1)), np.ones(1))[0])
