"""Matrix sensing: stable closed form, α → 0 and late-time laws, spec validation, numpy Monte-Carlo
(docs/theory/matrix_sensing.md)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import hidyn
from hidyn.solvers.closed_form import matrix_sensing as ms

LAM = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])


def _y0(alpha, k=3, n=6, seed=1):
    return alpha * np.random.default_rng(seed).standard_normal((n, k)) / np.sqrt(n)


def _riccati_ivp(lam, P0, times):
    """Independent reference: (2.1) Ṗ = AP + PA − 2P² integrated by DOP853 (rtol 1e-13)."""
    n = lam.size
    A = np.diag(lam)

    def rhs(_, p):
        P = p.reshape(n, n)
        return (A @ P + P @ A - 2.0 * P @ P).ravel()

    sol = solve_ivp(rhs, (0.0, times[-1]), P0.ravel(), method="DOP853", t_eval=times, rtol=1e-13, atol=1e-22)
    assert sol.status == 0
    return sol.y.T.reshape(-1, n, n)


def test_stable_closed_form_matches_solve_ivp_where_naive_formula_fails():
    """§3: ≤ 1e-10 at t where e^{2σ₁t} > 1e30, where the naive (2.2) has lost its later directions."""
    Y0 = _y0(1e-3)
    times = np.array([0.0, 2.0, 8.0, 16.0, 36.0, 40.0])
    assert np.exp(2 * LAM[0] * times[-2]) > 1e30
    Y = ms.population_flow(LAM, Y0, times)
    P = Y @ np.swapaxes(Y, -1, -2)
    ref = _riccati_ivp(LAM, Y0 @ Y0.T, times)
    assert np.max(np.abs(P - ref)) <= 1e-10
    # relative precision of the tiny early entries too (the plateau directions)
    assert np.allclose(P[1], ref[1], rtol=1e-8, atol=0)
    # the naive formula agrees at moderate t and is wrong by orders of magnitude more at e^{2t} ~ 1e26
    assert np.max(np.abs(ms.riccati_naive(LAM, Y0, 8.0) - P[2])) < 1e-12
    err_naive = np.max(np.abs(ms.riccati_naive(LAM, Y0, 30.0) - ms.population_flow(LAM, Y0, [30.0])[0]
                              @ ms.population_flow(LAM, Y0, [30.0])[0].T))
    assert err_naive > 1e-8


def test_riccati_factor_two():
    """The 2 in K = I + 2X₀ᵀSX₀ (2.2): with 1 instead the closed form would not solve (2.1)."""
    Y0 = _y0(0.3)
    t = np.array([0.0, 1.5])
    ref = _riccati_ivp(LAM, Y0 @ Y0.T, t)[-1]
    P = ms.riccati_naive(LAM, Y0, 1.5)
    assert np.max(np.abs(P - ref)) < 1e-12
    E = np.exp(LAM * 1.5)[:, None] * Y0
    K1 = np.eye(3) + Y0.T @ (ms._s(LAM, 1.5)[:, None] * Y0)
    assert np.max(np.abs(E @ np.linalg.solve(K1, E.T) - ref)) > 1e-3


def test_observables_from_factor():
    Y = _y0(0.7, k=3)
    obs = ms.factor_observables(LAM, Y, 2)
    P = Y @ Y.T
    lam, V = np.linalg.eigh(P)
    assert np.allclose(obs["eigenvalues"], lam[::-1][:3], rtol=1e-12)
    assert np.isclose(obs["test_loss"], np.sum((P - np.diag(LAM)) ** 2), rtol=1e-12)
    assert np.allclose(obs["alignment"], np.sum(V[:2, ::-1][:, :3] ** 2, axis=0), atol=1e-12)


@pytest.mark.parametrize("alpha, tol", [(1e-4, 3e-5), (1e-8, 3e-9)])
def test_incremental_limit_converges(alpha, tol):
    """§4: the staircase (4.1)–(4.2) approaches the exact flow as α → 0 (error O(α^{2(1−σ₂/σ₁)}) = O(α))."""
    Y0 = _y0(alpha)
    times = np.linspace(0.0, 2.5 * np.log(1 / alpha) / 0.5, 300)
    exact = ms.factor_observables(LAM, ms.population_flow(LAM, Y0, times), 2)
    inc = ms.incremental_limit(LAM, Y0, times)
    assert np.max(np.abs(exact["eigenvalues"] - inc["eigenvalues"])) < tol
    assert np.max(np.abs(exact["test_loss"] - inc["test_loss"])) < 2 * tol
    # jump times: leading order log(1/α)/σ_i plus the O(1) correction (4.3)
    z = Y0[:2] * np.sqrt(6) / alpha
    z2 = z[1] - (z[1] @ z[0]) / (z[0] @ z[0]) * z[0]
    corr = np.log(LAM[:2] * 6 / np.array([z[0] @ z[0], z2 @ z2])) / (2 * LAM[:2])
    assert np.allclose(inc["jump_times"], np.log(1 / alpha) / LAM[:2] + corr, rtol=0, atol=1e-6)
    # midpoint: the exact eigenvalue equals σ_i/2 there
    for i in range(2):
        Y = ms.population_flow(LAM, Y0, [inc["jump_times"][i]])
        assert abs(ms.factor_observables(LAM, Y, 2)["eigenvalues"][0, i] - LAM[i] / 2) < 10 * tol


def test_incremental_equal_eigenvalues_and_k_below_r():
    lam = np.array([1.0, 1.0, 0.5, 0.0])
    Y0 = 1e-8 * np.random.default_rng(3).standard_normal((4, 2))
    times = np.linspace(0.0, 60.0, 200)
    exact = ms.factor_observables(lam, ms.population_flow(lam, Y0, times), 3)
    inc = ms.incremental_limit(lam, Y0, times)
    assert np.max(np.abs(exact["eigenvalues"] - inc["eigenvalues"])) < 1e-6
    # k = 2 < r = 3: the third direction is never learnt, the loss stalls at σ₃²
    assert np.isinf(inc["jump_times"][2])
    assert np.isclose(exact["test_loss"][-1], 0.25, rtol=1e-6)


def test_overparameterised_late_time_law_and_exact_rank_rate():
    """§5: k > r spurious eigenvalues μ/(1 + 2μt), loss → (k − r)/(4t²); k = r: loss ∝ e^{−2σ_r t}."""
    Y0 = _y0(0.1)
    times = np.array([40.0, 200.0, 1000.0, 4000.0])
    exact = ms.factor_observables(LAM, ms.population_flow(LAM, Y0, times), 2)
    law = ms.late_time_overparam(LAM, Y0, times)
    assert np.allclose(exact["test_loss"], law["test_loss"], rtol=1e-6)
    assert np.allclose(exact["eigenvalues"][:, 2], law["spurious"][:, 0], rtol=1e-6)
    t_big = np.array([1e5, 1e6])
    assert np.allclose(ms.late_time_overparam(LAM, Y0, t_big)["test_loss"] * t_big ** 2, 0.25, rtol=0.05)
    # k = r: log-slope of the loss → −2σ_r
    times = np.linspace(30.0, 50.0, 5)
    loss = ms.factor_observables(LAM, ms.population_flow(LAM, Y0[:, :2], times), 2)["test_loss"]
    slope = np.polyfit(times, np.log(loss), 1)[0]
    assert abs(slope + 2 * LAM[1]) < 1e-3


def test_asymmetric_flow_reduces_to_symmetric_when_f_equals_g():
    Y0 = _y0(0.05)
    times = np.linspace(0.0, 20.0, 11)
    F, G, info = ms.asymmetric_flow(LAM, Y0, Y0, times)
    sym = ms.factor_observables(LAM, ms.population_flow(LAM, Y0, times), 2)
    asym = ms.asymmetric_observables(LAM, F, G, 2)
    assert np.allclose(asym["test_loss"], sym["test_loss"], rtol=1e-7, atol=1e-12)
    assert np.allclose(asym["eigenvalues"], sym["eigenvalues"], rtol=1e-7, atol=1e-12)


# --- spec ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, name", [
    (dict(d=4, rank=5), "rank="),
    (dict(student_rank=0), "student_rank="),
    (dict(init_scale=0.0), "init_scale="),
    (dict(init_scale=-1.0), "init_scale="),
    (dict(ratio=0.0), "ratio="),
    (dict(ratio=-2.0), "ratio="),
    (dict(d=3, ground_truth=np.diag([1.0, -0.5, 0.0])), "ground_truth"),
    (dict(d=3, ground_truth=np.array([[0, 1, 0], [0, 0, 0], [0, 0, 1.0]])), "ground_truth"),
    (dict(eigenvalues=[1.0]), "eigenvalues="),
    (dict(eigenvalues="nope"), "eigenvalues="),
    (dict(d=3, init=np.ones((4, 2))), "init"),
    (dict(algorithm="adam"), "algorithm="),
])
def test_bad_input_names_parameter(params, name):
    with pytest.raises(ValueError, match=name):
        hidyn.models.get("matrix_sensing", **params)


def test_spec_ground_truth_and_init():
    M = np.diag([2.0, 0.5, 0.0])
    spec = hidyn.models.get("matrix_sensing", d=3, ground_truth=M, init=np.ones((3, 4)))
    assert spec.rank == 2 and spec.k == 4 and spec.eigenvalues == [2.0, 0.5]
    # non-PSD is fine for the asymmetric model
    spec = hidyn.models.get("matrix_sensing", d=3, ground_truth=np.diag([1.0, -0.5, 0.0]),
                            parametrization="asymmetric")
    assert spec.rank == 2
    again = hidyn.models.get("matrix_sensing", **{k: v for k, v in spec.to_dict().items()})
    assert again == spec


# --- Monte-Carlo ---------------------------------------------------------------------------------------

def test_population_gf_equals_closed_form_on_an_explicit_instance():
    X0 = _y0(1e-3, k=2, n=6, seed=5)
    M = np.diag(LAM)
    times = [0.0, 5.0, 15.0, 30.0]
    sim = hidyn.simulate("matrix_sensing", d=6, ground_truth=M, init=X0, algorithm="gf", seeds=1, times=times,
                         backend="numpy")
    th = hidyn.theory("matrix_sensing", d=6, ground_truth=M, init=X0, times=times)
    assert "seed" not in th.dims
    assert np.allclose(sim.test_loss.values[0], th.test_loss.values, rtol=1e-7, atol=1e-12)
    assert np.allclose(sim.eigenvalues.values[0], th.eigenvalues.values, rtol=1e-7, atol=1e-12)


def test_theory_draws_the_same_random_init_as_each_seed():
    sim = hidyn.simulate("matrix_sensing", d=8, seeds=[2, 5], seed=7, t_max=2.0, n_times=3, backend="numpy")
    th = hidyn.theory("matrix_sensing", init=sim)
    assert list(th.seed.values) == [2, 5]
    assert np.allclose(sim.test_loss.values[:, 0], th.test_loss.values[:, 0], rtol=1e-13)
    assert np.allclose(sim.eigenvalues.values[:, 0], th.eigenvalues.values[:, 0], rtol=1e-10, atol=1e-20)


def test_stored_and_regenerated_measurements_agree(monkeypatch):
    from hidyn.solvers.mc import matrix_sensing_numpy as be

    kw = dict(d=6, ratio=2.0, noise=0.1, init_scale=0.3, lr=0.05, t_max=1.0, n_times=4, seeds=2, backend="numpy")
    stored = hidyn.simulate("matrix_sensing", **kw)
    monkeypatch.setattr(be, "MAX_STORED_BYTES", 0)
    monkeypatch.setattr(be, "CHUNK_ROWS", 16)
    regen = hidyn.simulate("matrix_sensing", **kw)
    assert stored.attrs["measurements_stored"] == 1 and regen.attrs["measurements_stored"] == 0
    # chunk size changes which stream holds which measurement: same law, different numbers
    monkeypatch.setattr(be, "CHUNK_ROWS", 512)
    regen = hidyn.simulate("matrix_sensing", **kw)
    assert np.allclose(stored.train_loss.values, regen.train_loss.values, rtol=1e-12)
    assert np.allclose(stored.test_loss.values, regen.test_loss.values, rtol=1e-12)


def test_finite_m_gradient_is_unbiased_for_the_population_gradient():
    """E over measurements of the finite-m gradient = the population gradient (P − M*)X (§1, §6)."""
    from hidyn.solvers.mc.matrix_sensing_numpy import MatrixSensingNumpyBackend

    spec = hidyn.models.get("matrix_sensing", d=4, ratio=2000.0, init_scale=0.8)
    be = MatrixSensingNumpyBackend(spec)
    state = be.init(hidyn.rng.seed_sequences(0, [0]))
    P = be._P(state)
    H = be._H(state, P)
    grad = 0.5 * (H + np.swapaxes(H, -1, -2)) @ state["X"]
    pop = (P - spec.ground_truth_matrix()) @ state["X"]
    # m = 32000 measurements: relative fluctuation ~ n/√m ≈ 0.02
    assert np.linalg.norm(grad - pop) < 0.1 * np.linalg.norm(pop)


def test_online_and_minibatch_sgd_run():
    sim = hidyn.simulate("matrix_sensing", d=6, algorithm="sgd", batch_size=8, init_scale=0.3, lr=0.01,
                         t_max=2.0, n_times=5, seeds=2, backend="numpy")
    assert np.all(np.isfinite(sim.test_loss.values))
    sim = hidyn.simulate("matrix_sensing", d=6, ratio=3.0, algorithm="sgd", batch_size=16, init_scale=0.3,
                         lr=0.01, t_max=2.0, n_times=5, seeds=2, backend="numpy")
    assert sim.test_loss.values[:, -1].mean() < sim.test_loss.values[:, 0].mean()


def test_divergence_is_flagged():
    with pytest.warns(RuntimeWarning, match="diverged"):
        sim = hidyn.simulate("matrix_sensing", d=6, init_scale=3.0, lr=1.5, t_max=30.0, n_times=10, seeds=2,
                             backend="numpy")
    assert np.all(sim.attrs["diverged_at"] >= 0)


def test_asymmetric_gd_tracks_its_population_flow():
    sim = hidyn.simulate("matrix_sensing", d=8, parametrization="asymmetric", student_rank=3, init_scale=0.1,
                         lr=0.01, t_max=20.0, n_times=15, seeds=2, backend="numpy")
    cmp = hidyn.compare(sim)
    assert cmp.data.attrs["theory_method"] == "ode"
    cmp.assert_ok()


def test_flow_is_autonomous_in_p_property():
    """§2: restarting the closed form from any factor of P(t₁) gives P(t₁ + t₂) (what §3's restarts rely on),
    on random instances (hypothesis)."""
    hyp = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    @hyp.settings(max_examples=15, deadline=None)
    @hyp.given(seed=st.integers(0, 2**31 - 1), k=st.integers(1, 4), t1=st.floats(0.1, 20.0),
               t2=st.floats(0.1, 20.0), log_alpha=st.floats(-8.0, 0.5))
    def check(seed, k, t1, t2, log_alpha):
        rng = np.random.default_rng(seed)
        n = 5
        lam = np.sort(np.concatenate([rng.uniform(0.1, 2.0, 2), np.zeros(n - 2)]))[::-1]
        Y0 = 10.0 ** log_alpha * rng.standard_normal((n, k)) / np.sqrt(n)
        direct = ms.population_flow(lam, Y0, [t1 + t2])[0]
        mid = ms.population_flow(lam, Y0, [t1])[0]
        # any other factor of P(t1): rotate by a random orthogonal k × k matrix
        Q, _ = np.linalg.qr(rng.standard_normal((k, k)))
        again = ms.population_flow(lam, mid @ Q, [t2])[0]
        P1, P2 = direct @ direct.T, again @ again.T
        assert np.max(np.abs(P1 - P2)) <= 1e-11 * max(1.0, np.abs(P1).max())

    check()
