"""Linear family (docs/theory/linear.md): spec validation, the exact SGD recursion, the Marchenko–Pastur GD
curves and the numpy Monte-Carlo backend.  Fast tests only (each well under a few seconds)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.integrate import quad

import hidyn
from hidyn.models.linear import (
    eigenvalues,
    lr_values,
    sgd_kernel_mass,
    sgd_stability_bound,
    teacher_coefficients,
)
from hidyn.solvers.closed_form.linear import (
    gd_deterministic_equivalent,
    gd_marchenko_pastur,
    mp_quadrature,
    sgd_recursion,
    volterra_loss,
)


def spec(**kw):
    return hidyn.models.get("linear", **kw)


# -- spec ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(d=3, spectrum=[1.0, -0.5, 1.0]), r"spectrum\[1\]=-0.5 is invalid"),
    (dict(d=3, spectrum=[1.0, np.inf, 1.0]), r"spectrum\[1\]=inf is invalid"),
    (dict(d=3, spectrum=[1.0, 1.0]), r"spectrum has length 2, which is invalid: must be an array of d = 3"),
    (dict(d=3, spectrum=[0.0, 0.0, 0.0]), r"all eigenvalues are 0"),
    (dict(d=3, teacher=[1.0, 2.0]), r"teacher has length 2"),
    (dict(d=3, teacher=[1.0, np.nan, 2.0]), r"teacher\[1\]=nan is invalid"),
    (dict(batch_size=0), r"batch_size=0 is invalid: must be an integer in \[1, inf\]"),
    (dict(algorithm="multipass_sgd", ratio=0.5, d=100, batch_size=51),
     r"batch_size=51 is invalid: must be an integer in \[1, 50\]"),
    (dict(lr=[0.1, np.nan]), r"lr\[1\]=nan is invalid"),
    (dict(lr=[0.1, -0.1]), r"lr\[1\]=-0.1 is invalid"),
    (dict(lr=-0.1), r"lr=-0.1 is invalid"),
    (dict(lr={"schedule": "cosine", "lr": 0.1}), r"lr\['horizon'\] is required"),
    (dict(lr={"schedule": "warp", "lr": 0.1}), r"lr\['schedule'\]='warp' is invalid"),
    (dict(lr={"schedule": "step", "lr": 0.1, "every": 10, "factor": 2.0}), r"lr\['factor'\]=2.0 is invalid"),
    (dict(ratio=1.0), r"ratio=1.0 is invalid with algorithm='sgd'"),
    (dict(algorithm="gd"), r"ratio=None is invalid with algorithm='gd'"),
    (dict(algorithm="gd", ratio=1.0, lr=[0.1, 0.1]), r"algorithm='gd': must be a constant"),
    (dict(spectrum="flat"), r"spectrum='flat' is invalid"),
])
def test_bad_input_names_the_parameter(kw, match):
    with pytest.raises(ValueError, match=match):
        spec(**kw)


def test_lr_beyond_stability_bound_warns_with_the_bound():
    bound = 2.0 / 102.0
    with pytest.warns(RuntimeWarning, match=r"exceeds the online-SGD stability bound η_max = 0.0196078"):
        spec(d=100, spectrum="isotropic", teacher="isotropic", lr=0.03)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec(d=100, spectrum="isotropic", teacher="isotropic", lr=0.9 * bound)


def test_spectrum_teacher_and_schedules():
    s = spec(d=50, spectrum_exponent=2.0, teacher_exponent=1.2, normalization="trace")
    lam = eigenvalues(s)
    assert lam.sum() == pytest.approx(1.0) and lam[0] / lam[1] == pytest.approx(4.0)
    w = teacher_coefficients(s)
    assert (lam * w ** 2).sum() == pytest.approx(1.0)
    assert (lam * w ** 2)[0] / (lam * w ** 2)[9] == pytest.approx(10.0 ** 1.2)
    assert teacher_coefficients(spec(teacher="isotropic")) is None
    eta = lr_values(spec(lr={"schedule": "step", "lr": 0.2, "every": 3, "factor": 0.5}), 7)
    np.testing.assert_allclose(eta, [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05])
    eta = lr_values(spec(lr={"schedule": "power", "lr": 0.2, "exponent": 1.0, "offset": 2.0}), 3)
    np.testing.assert_allclose(eta, [0.2, 0.2 / 1.5, 0.2 / 2.0])
    with pytest.raises(ValueError, match=r"lr has 3 per-step values, which is invalid for a run of 5 steps"):
        lr_values(spec(lr=[0.1, 0.1, 0.1]), 5)


def test_spec_round_trips_through_config_json():
    s = spec(d=4, spectrum=[1.0, 0.5, 0.25, 0.0], teacher=[1.0, 0.0, 2.0, 1.0],
             lr={"schedule": "cosine", "lr": 0.1, "horizon": 100}, noise=0.1)
    back = hidyn.models.get("linear", **{k: v for k, v in __import__("json").loads(s.to_json()).items()
                                          if k != "model"})
    assert back.to_json() == s.to_json()


# -- stability (linear.md §3) ------------------------------------------------------------------------------
def test_stability_bound_isotropic_closed_form():
    for d, B in [(10, 1), (100, 1), (100, 8)]:
        # isotropic: κ(η) = (η/B)·d/(2 − η(1 + 1/B)) = 1  ⇔  η = 2B/(d + B + 1)
        assert sgd_stability_bound(np.ones(d), B) == pytest.approx(2.0 * B / (d + B + 1), rel=1e-10)


def test_stability_bound_separates_bounded_from_growing_loss():
    lam = eigenvalues(spec(d=300))
    top = sgd_stability_bound(lam, 4)
    assert sgd_kernel_mass(top, lam, 4) == pytest.approx(1.0, rel=1e-9)
    v0 = np.full(300, 1.0 / 300)
    below = sgd_recursion(lam, v0, np.full(40000, 0.98 * top), 4, 0.1, [20000, 40000])["test_loss"]
    stationary = 0.01 / (1.0 - sgd_kernel_mass(0.98 * top, lam, 4))         # σ²/(1 − κ), §3
    assert below[1] == pytest.approx(stationary, rel=1e-3)
    above = sgd_recursion(lam, v0, np.full(40000, 1.02 * top), 4, 0.1, [20000, 40000])
    assert above["diverged_at_step"] > 0 or above["test_loss"][1] > 100 * above["test_loss"][0]


# -- exact recursion (linear.md §2) ------------------------------------------------------------------------
def test_recursion_equals_direct_expectation_over_rows():
    """Eq. (2.5) against a brute-force mean over 100 000 independent runs that draw the full rows x_b =
    √λ⊙z_b (not the backend's reduced draw), small d, B = 2, a varying schedule, with noise."""
    rng = np.random.default_rng(1)
    d, B, sig, S = 8, 2, 0.4, 100_000
    lam = np.array([2.0, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.0])
    w_star = rng.standard_normal(d)
    etas = [0.3, 0.2, 0.25]
    w = np.zeros((S, d))
    means, sems = [], []
    for eta in etas:
        X = rng.standard_normal((S, B, d)) * np.sqrt(lam)
        y = X @ w_star + sig * rng.standard_normal((S, B))
        r = np.einsum("sbd,sd->sb", X, w) - y
        w = w - eta / B * np.einsum("sb,sbd->sd", r, X)
        L = ((w - w_star) ** 2) @ lam + sig ** 2
        means.append(L.mean())
        sems.append(L.std() / math.sqrt(S))
    th = sgd_recursion(lam, w_star ** 2, etas, B, sig, [1, 2, 3])["test_loss"]
    assert np.all(np.abs(np.array(means) - th) < 4 * np.array(sems)), (means, th, sems)
    # power: without the Gaussian fourth-moment excess (1 + 1/B → 1 in a_k, eq. 2.4) it is rejected
    v, wrong = w_star ** 2, []
    for eta in etas:
        loss = lam @ v + sig ** 2
        v = (1 - 2 * eta * lam + eta ** 2 * lam ** 2) * v + eta ** 2 / B * lam * loss
        wrong.append(lam @ v + sig ** 2)
    assert np.max(np.abs(np.array(means) - wrong) / np.array(sems)) > 10


def test_volterra_form_equals_recursion():
    lam = eigenvalues(spec(d=60))
    v0 = teacher_coefficients(spec(d=60)) ** 2
    L = volterra_loss(lam, v0, 0.3, 3, 0.2, 400)
    rec = sgd_recursion(lam, v0, np.full(400, 0.3), 3, 0.2, np.arange(401))["test_loss"]
    np.testing.assert_allclose(L, rec, rtol=1e-11)


def test_recursion_per_mode_and_divergence_flag():
    s = spec(d=30, per_mode=True, noise=0.1)
    th = hidyn.theory(s, times=[0, 10, 100])
    assert th["mode_error"].dims == ("time", "mode") and th["mode_error"].shape == (3, 30)
    lam = eigenvalues(s)
    np.testing.assert_allclose((th["mode_error"].values @ lam) + 0.01, th["test_loss"].values, rtol=1e-12)
    with pytest.warns(RuntimeWarning):
        bad = spec(d=100, spectrum="isotropic", lr=0.05)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        th = hidyn.theory(bad, times=np.arange(0, 5001, 100))
    assert th.attrs["diverged_at"] > 0 and np.isnan(th["test_loss"].values[-1])


def test_recursion_speed_scale_is_linear():
    """The compiled loop equals a plain numpy loop of eq. (2.5) at d = 10⁴ (the speed itself is measured
    in benchmarks/linear_recursion.py, not asserted)."""
    lam = np.arange(1, 10_001, dtype=np.float64) ** -1.5
    v = np.full(10_000, 1e-4)
    out = sgd_recursion(lam, v, np.full(2000, 0.2), 2, 0.1, [2000])
    for _ in range(2000):
        v = (1 - 0.4 * lam + 0.04 * 1.5 * lam ** 2) * v + 0.02 * lam * (lam @ v + 0.01)
    assert out["test_loss"][0] == pytest.approx(lam @ v + 0.01, rel=1e-12) and out["diverged_at_step"] == -1


def test_power_law_exponent_of_the_recursion():
    """Local log-log slope of the d = 20 000 recursion at 10⁴–10⁵ steps (σ = 0, η = 0.1) against eq. (5.1):
    a = 1.5, b = 2.5 (bias exponent (b−1)/a = 1, below the SGD-noise exponent 2 − 1/a = 4/3).  Measured
    slopes at d = 10⁵ settle at 1.003 from 10⁴ steps on; 0.03 covers the d = 20 000 tail correction."""
    from hidyn.families.linear import initial_mode_errors
    from hidyn.solvers.closed_form.linear import power_law_exponents

    s = spec(d=20_000, spectrum_exponent=1.5, teacher_exponent=2.5, lr=0.1)
    steps = np.array([10_000, 100_000])
    L = sgd_recursion(eigenvalues(s), initial_mode_errors(s), np.full(100_000, 0.1), 1, 0.0, steps)["test_loss"]
    slope = -np.log(L[1] / L[0]) / np.log(10.0)
    pred = power_law_exponents(1.5, 2.5)
    assert pred["dominant"] == pred["bias"] == pytest.approx(1.0)
    assert slope == pytest.approx(pred["dominant"], abs=0.03)
    assert power_law_exponents(1.5, 4.0)["dominant"] == pytest.approx(4.0 / 3.0)     # noise-dominated phase


def test_compute_optimal_batch_is_the_grid_minimum_of_best_constant_steps():
    from hidyn.families.linear import initial_mode_errors
    from hidyn.solvers.closed_form.linear import compute_optimal_batch

    s = spec(d=300)
    lam, v0 = eigenvalues(s), initial_mode_errors(s)
    out = compute_optimal_batch(lam, v0, 512, [1, 8, 64])
    assert np.all(out["best_lr"] < out["lr_max"])
    for B, loss in zip([1, 8, 64], out["final_loss"]):
        k = 512 // B
        brute = [sgd_recursion(lam, v0, np.full(k, e), B, 0.0, [k])["test_loss"][0]
                 for e in np.linspace(0.05, 0.999, 60) * sgd_stability_bound(lam, B)]
        assert loss <= min(brute) * (1 + 1e-3)
    assert out["optimal_batch"] == [1, 8, 64][int(np.argmin(out["final_loss"]))]


# -- Marchenko–Pastur GD (linear.md §6) ---------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_mp_quadrature_moments(gamma):
    x, w = mp_quadrature(gamma)
    mass = min(1.0, 1.0 / gamma)
    assert w.sum() == pytest.approx(mass, rel=1e-10)
    assert (w * x).sum() == pytest.approx(1.0, rel=1e-10)                  # (1/d) tr Σ̂ → 1
    assert (w * x * x).sum() == pytest.approx(1.0 + gamma, rel=1e-10)      # (1/d) tr Σ̂² → 1 + γ


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_mp_curves_against_adaptive_quadrature(ratio):
    gamma = 1.0 / ratio
    lo, hi = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2

    def dens(x):
        return math.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * math.pi * gamma * x)

    eta, sig, e0 = 0.3, 0.5, 1.3
    out = gd_marchenko_pastur(ratio, eta, [0, 7, 60], e0_norm2=e0, noise=sig)
    atom = max(0.0, 1.0 - ratio)
    for j, k in enumerate([0, 7, 60]):
        bias = quad(lambda x: (1 - eta * x) ** (2 * k) * dens(x), lo, hi, limit=200, epsabs=1e-13)[0] + atom
        var = quad(lambda x: (1 - (1 - eta * x) ** k) ** 2 / x * dens(x), lo, hi, limit=200, epsabs=1e-13)[0]
        assert out["test_loss"][j] == pytest.approx(sig ** 2 + e0 * bias + sig ** 2 * gamma * var, rel=1e-7)


def test_mp_curves_match_one_large_instance():
    """Self-averaging: (1/d)tr f(Σ̂) of one d = 800 instance equals the MP integrals to O(1/d)."""
    rng = np.random.default_rng(3)
    d, ratio, eta, k = 800, 2.0, 0.2, 30
    n = int(ratio * d)
    X = rng.standard_normal((n, d))
    s = np.linalg.eigvalsh(X.T @ X / n)
    q = (1 - eta * s) ** k
    inst_bias = np.mean(q ** 2)
    inst_var = np.mean((1 - q) ** 2 / s) / ratio
    th = gd_marchenko_pastur(ratio, eta, [k], e0_norm2=1.0, noise=1.0)["test_loss"][0]
    assert 1.0 + inst_bias + inst_var == pytest.approx(th, abs=20.0 / d)


def test_overtraining_peak_at_ratio_one():
    """With noise, the late-time GD test loss is worst at n = d, and at ratio 1 it rises after a minimum."""
    late = {r: gd_marchenko_pastur(r, 0.2, [50000], noise=0.5)["test_loss"][0] for r in (0.5, 1.0, 2.0)}
    assert late[1.0] > late[0.5] and late[1.0] > late[2.0]
    th = hidyn.theory("linear", algorithm="gd", ratio=1.0, spectrum="isotropic", teacher="isotropic", noise=0.5,
                      lr=0.2, t_max=5000.0)
    loss = th["test_loss"].values
    assert 0 < th.attrs["early_stop_time"] < 5000.0 and loss[-1] > th.attrs["early_stop_loss"] + 0.1


def test_multipass_theory_not_implemented():
    with pytest.raises(NotImplementedError, match="no theory method"):
        hidyn.theory("linear", algorithm="multipass_sgd", ratio=2.0, lr=0.1, t_max=10.0)


# -- GD, general spectrum: deterministic equivalent (linear.md §6.1–6.3) ---------------------------------------
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_deterministic_equivalent_reduces_to_marchenko_pastur(ratio):
    """Σ = cI: the contour evaluation of the two-point deterministic equivalent equals the MP integrals
    (an independent quadrature on the real axis), train and test, noise and init, up to k = 20000.  rtol 2e-7:
    the MP quadrature itself is good to ~1e-7 at the hard edge of ratio = 1 (measured: the gap does not move
    when the contour's digits go from 18 to 22; elsewhere it is < 1e-8)."""
    c, d, eta, sig, e0 = 0.7, 40, 0.3, 0.5, 1.3
    steps = np.array([0, 1, 5, 30, 250, 2000, 20000])
    out = gd_deterministic_equivalent(np.full(d, c), np.full(d, e0 / d), ratio, eta, steps, noise=sig)
    ref = gd_marchenko_pastur(ratio, eta * c, steps, e0_norm2=c * e0, noise=sig, n_nodes=4000)
    np.testing.assert_allclose(out["test_loss"], ref["test_loss"], rtol=2e-7)
    np.testing.assert_allclose(out["train_loss"], ref["train_loss"], rtol=2e-7, atol=1e-10)


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_deterministic_equivalent_exact_first_step(ratio):
    """k = 1 in closed form for any Σ: E Σ̂ΣΣ̂ → Σ³ + (1/n)tr(Σ²)Σ (Wick), E tr(ΣΣ̂)/n = tr(Σ²)/n, so
    L₁ = σ² + Σ_j v_j(λ_j − 2ηλ_j² + η²(λ_j³ + (γ/d)Σλ²·λ_j)) + σ²η²(γ/d)Σλ²."""
    lam = np.arange(1, 61) ** -1.3
    v = np.linspace(0.5, 2.0, lam.size) / lam.size
    eta, sig, gamma = 0.4, 0.3, 1.0 / ratio
    m2 = gamma / lam.size * np.sum(lam ** 2)
    bias = np.sum(v * (lam - 2 * eta * lam ** 2 + eta ** 2 * (lam ** 3 + m2 * lam)))
    want = sig ** 2 + bias + sig ** 2 * eta ** 2 * m2
    out = gd_deterministic_equivalent(lam, v, ratio, eta, [1], noise=sig)
    assert out["test_loss"][0] == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_deterministic_equivalent_matches_large_instances(ratio):
    """Self-averaging on a power-law spectrum: the mean over 4 instances at d = 600 (exact in ε and in the
    signs of e₀, by eigendecomposition of Σ̂) equals the deterministic equivalent to O(1/d) plus instance
    fluctuations.  Measured |difference| ≤ 4.2e-3 (test) and 1.6e-3 (train) here; the bound 1.5e-2 is far
    below the effect of replacing Σ by the isotropic spectrum of the same trace (0.68 at these times)."""
    rng = np.random.default_rng(11)
    d, eta, sig = 600, 0.4, 0.5
    n = int(round(ratio * d))
    lam = np.arange(1, d + 1) ** -1.5
    v = (np.arange(1, d + 1) ** -1.5 / np.sum(np.arange(1, d + 1) ** -1.5)) / lam + 0.25 / d
    steps = np.array([3, 20, 100])
    inst = np.zeros((2, steps.size))
    for _ in range(4):
        X = rng.standard_normal((n, d)) * np.sqrt(lam)
        s, U = np.linalg.eigh(X.T @ X / n)
        s = np.clip(s, 0.0, None)
        for j, k in enumerate(steps):
            q = (1 - eta * s) ** k
            M = (U * q) @ U.T                                  # (I − ηΣ̂)^k
            bias = np.sum(v * np.einsum("ij,i,ij->j", M, lam, M))
            h = np.where(s > 1e-12, (1 - q) ** 2 / np.where(s > 1e-12, s, 1.0), 0.0)
            var = sig ** 2 / n * np.sum(lam * np.einsum("ij,j,ij->i", U, h, U))
            tr = np.sum(v * np.einsum("ij,j,ij->i", U, s * q * q, U))
            tr_noise = sig ** 2 * (np.sum(q * q) / n + 1 - d / n)
            inst[:, j] += np.array([sig ** 2 + bias + var, tr + tr_noise]) / 4
    out = gd_deterministic_equivalent(lam, v, ratio, eta, steps, noise=sig)
    np.testing.assert_allclose(out["test_loss"], inst[0], atol=1.5e-2)
    np.testing.assert_allclose(out["train_loss"], inst[1], atol=1.5e-2)
    iso = gd_deterministic_equivalent(np.full(d, lam.mean()), v, ratio, eta, steps, noise=sig)
    assert np.max(np.abs(iso["test_loss"] - out["test_loss"])) > 0.3


def test_gd_theory_general_spectrum_through_hidyn_theory():
    kw = dict(algorithm="gd", ratio=2.0, spectrum="power_law", spectrum_exponent=1.5, teacher="power_law",
              noise=0.5, lr=0.3, init_scale=0.5, t_max=20.0, n_times=5)
    th = hidyn.theory("linear", d=300, **kw)
    assert th.attrs["method"] == "deterministic_equivalent"
    sp = spec(d=300, **{k: v for k, v in kw.items() if k not in ("t_max", "n_times")})
    from hidyn.families.linear import initial_mode_errors
    direct = gd_deterministic_equivalent(eigenvalues(sp), initial_mode_errors(sp), 2.0, 0.3,
                                         np.rint(th.time.values / 0.3).astype(int), noise=0.5)
    np.testing.assert_allclose(th.test_loss.values, direct["test_loss"])
    np.testing.assert_allclose(th.train_loss.values, direct["train_loss"])
    iso = dict(kw, spectrum="isotropic", teacher="isotropic")
    a = hidyn.theory("linear", d=300, method="deterministic_equivalent", **iso)
    b = hidyn.theory("linear", d=300, **iso)
    assert b.attrs["method"] == "marchenko_pastur"
    with pytest.raises(ValueError, match="spectrum is invalid for method 'marchenko_pastur'"):
        hidyn.theory("linear", d=300, method="marchenko_pastur", **kw)
    np.testing.assert_allclose(a.test_loss.values, b.test_loss.values, rtol=1e-8)


def test_spectral_edge_and_divergent_lr_refused():
    """x₊ = c(1 + √γ)² for Σ = cI; a power law's edge sits just above its spike λ₁ = 1 and above one large
    sample's top eigenvalue minus its O(n^(-1/2)) fluctuation; η ≥ 2/x₊ is refused by name."""
    from hidyn.solvers.closed_form.linear import gd_spectral_edge

    for ratio in (0.5, 1.0, 2.0):
        assert gd_spectral_edge(np.full(30, 0.7), ratio) == pytest.approx(0.7 * (1 + ratio ** -0.5) ** 2, rel=1e-10)
    lam = np.arange(1, 801) ** -1.5
    edge = gd_spectral_edge(lam, 1.0)
    X = np.random.default_rng(0).standard_normal((800, 800)) * np.sqrt(lam)
    top = np.linalg.eigvalsh(X.T @ X / 800)[-1]
    assert 1.0 < edge < 1.2 and abs(top - edge) < 0.1
    with pytest.raises(ValueError, match=r"lr=2.0 is invalid: GD diverges, must be < 2/x₊"):
        gd_deterministic_equivalent(lam, np.full(800, 1 / 800), 1.0, 2.0, [1])


@pytest.mark.parametrize("kw, match", [
    (dict(ratio=0.0), r"ratio=0.0 is invalid: must be > 0"),
    (dict(lr=-1.0), r"lr=-1.0 is invalid: must be > 0"),
    (dict(lam=np.array([1.0, -1.0])), r"lam is invalid"),
    (dict(v0=np.ones(3)), r"v0 of shape \(3,\) is invalid"),
    (dict(steps=[-1]), r"steps is invalid"),
])
def test_deterministic_equivalent_bad_input(kw, match):
    args = dict(lam=np.ones(2), v0=np.ones(2), ratio=1.0, lr=0.1, steps=[1])
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        gd_deterministic_equivalent(args.pop("lam"), args.pop("v0"), args.pop("ratio"), args.pop("lr"),
                                    args.pop("steps"))


# -- Monte-Carlo backend -------------------------------------------------------------------------------------
def test_mc_schema_reproducibility_and_seed_extension():
    kw = dict(d=40, noise=0.2, batch_size=3, lr=0.2, t_max=50, n_times=6, per_mode=True)
    a = hidyn.simulate("linear", seeds=3, **kw)
    b = hidyn.simulate("linear", seeds=[2], **kw)
    # seed i draws the same stream in any run (rounding of the seed-vectorised reductions aside)
    np.testing.assert_allclose(a["test_loss"].values[2], b["test_loss"].values[0], rtol=1e-12)
    assert a["mode_error"].dims == ("seed", "time", "mode")
    lam = eigenvalues(spec(d=40))
    np.testing.assert_allclose(a["mode_error"].values @ lam + 0.04, a["test_loss"].values, rtol=1e-12)
    np.testing.assert_allclose(a["samples_seen"].values[0], a["time"].values * 3)


@pytest.mark.parametrize("kw", [
    dict(batch_size=1, lr=0.1, init_scale=0.5),
    dict(batch_size=5, lr={"schedule": "cosine", "lr": 0.4, "horizon": 120}, teacher="isotropic"),
    dict(batch_size=16, lr=0.2, spectrum=np.r_[np.linspace(2.0, 0.1, 59), 0.0], per_mode=True),
])
def test_numba_online_sgd_bitwise_equal_to_numpy(kw, monkeypatch):
    """float64: the numba kernel runs the reference's draws in the reference's order (pairwise dot
    products), so every trajectory equals the numpy backend's bit for bit, for any chunking of the steps."""
    pytest.importorskip("numba")
    from hidyn.solvers.mc.linear_numba import LinearNumbaBackend

    base = dict(d=60, noise=0.3, t_max=120, n_times=7, **kw)
    a = hidyn.simulate("linear", seeds=3, backend="numpy", progress=False, **base)
    b = hidyn.simulate("linear", seeds=3, backend="numba", progress=False, **base)
    assert b.attrs["backend"] == "numba"
    for var in a.data_vars:
        np.testing.assert_array_equal(a[var].values, b[var].values)
    monkeypatch.setattr(LinearNumbaBackend, "chunk_floats", 3 * (2 * base["batch_size"] + 60))  # 3-step chunks
    c = hidyn.simulate("linear", seeds=[2], backend="numba", progress=False, **base)
    ref = hidyn.simulate("linear", seeds=[2], backend="numpy", progress=False, **base)
    np.testing.assert_array_equal(c["test_loss"].values, ref["test_loss"].values)
    # the same seed beside others: equal up to the observation's BLAS reduction over (seeds, d)
    np.testing.assert_allclose(c["test_loss"].values[0], a["test_loss"].values[2], rtol=1e-14)


def test_numba_backend_scope_and_auto_choice():
    pytest.importorskip("numba")
    from hidyn.api import _backend_class

    assert _backend_class(spec(d=20), "auto")[0] == "numba"
    gd = spec(d=20, algorithm="gd", ratio=1.0, lr=0.1)
    assert _backend_class(gd, "auto")[0] == "numpy"
    with pytest.raises(ValueError, match="algorithm='gd' is invalid for backend='numba'"):
        hidyn.simulate("linear", d=20, algorithm="gd", ratio=1.0, lr=0.1, t_max=1.0, n_times=2, seeds=1,
                       backend="numba", progress=False)


@pytest.mark.parametrize("algorithm", ["gd", "multipass_sgd"])
def test_fixed_set_initial_train_loss(algorithm):
    """At w = 0 the train loss is (1/n)‖y‖² and its mean over seeds is the signal variance plus σ²."""
    sim = hidyn.simulate("linear", d=50, ratio=2.0, algorithm=algorithm, noise=0.5, lr=0.1, batch_size=4,
                         t_max=5.0, n_times=3, seeds=20)
    assert sim["train_loss"].values[:, 0].mean() == pytest.approx(1.25, abs=4 * 1.25 * math.sqrt(2 / 2000))
    assert np.all(sim["train_loss"].values[:, -1] < sim["train_loss"].values[:, 0])


def test_mc_divergence_is_flagged_not_silent():
    with pytest.warns(RuntimeWarning):
        sim = hidyn.simulate("linear", d=50, spectrum="isotropic", lr=0.2, t_max=3000, n_times=10, seeds=2)
    assert np.all(sim.attrs["diverged_at"] > 0)


# -- differentiable theory (linear.md §8) ----------------------------------------------------------------------
def test_jax_recursion_and_its_gradients():
    pytest.importorskip("jax")
    from hidyn.solvers.closed_form.linear_jax import final_loss_and_grad, loss_curve

    lam = eigenvalues(spec(d=40))
    v0 = np.full(40, 1.0 / 40)
    lrs = np.linspace(0.4, 0.05, 60)
    np.testing.assert_allclose(loss_curve(lam, v0, lrs, 3, 0.2),
                               sgd_recursion(lam, v0, lrs, 3, 0.2, np.arange(61))["test_loss"], rtol=1e-12)
    f = final_loss_and_grad(lam, v0, 3, 0.2, log=False, wrt_batch=True)
    val, (g_lr, g_b) = f(lrs, 3.0)
    h = 1e-6
    for k in (0, 30, 59):
        up, down = lrs.copy(), lrs.copy()
        up[k] += h
        down[k] -= h
        fd = (loss_curve(lam, v0, up, 3, 0.2)[-1] - loss_curve(lam, v0, down, 3, 0.2)[-1]) / (2 * h)
        assert g_lr[k] == pytest.approx(fd, rel=1e-6, abs=1e-12)
    fd_b = (loss_curve(lam, v0, lrs, 3.0 + 1e-5, 0.2)[-1] - loss_curve(lam, v0, lrs, 3.0 - 1e-5, 0.2)[-1]) / 2e-5
    assert g_b == pytest.approx(fd_b, rel=1e-5) and g_b < 0      # a larger batch lowers the loss at fixed steps


def test_optimize_schedule_beats_constant_and_cosine():
    pytest.importorskip("jax")
    kw = dict(d=100, noise=0.3, batch_size=2)
    opt = hidyn.optimize_schedule("linear", steps=150, **kw)
    assert opt["schedule"].shape == (150,) and np.all(opt["schedule"] >= 0)
    assert np.all(opt["schedule"] <= opt["lr_cap"] + 1e-12)
    th = hidyn.theory(opt["spec"], times=[0, 150])
    assert float(th.test_loss[-1]) == pytest.approx(opt["final_loss"], rel=1e-10)
    assert opt["final_loss"] < 0.95 * opt["constant_loss"]
    cos = hidyn.theory("linear", lr={"schedule": "cosine", "lr": 0.9 * opt["lr_max"], "horizon": 150},
                       times=[0, 150], **kw)
    assert opt["final_loss"] < float(cos.test_loss[-1])
    with pytest.raises(ValueError, match="algorithm='gd' is invalid for optimize_schedule"):
        hidyn.optimize_schedule("linear", steps=10, algorithm="gd", ratio=1.0, lr=0.1)


def test_gd_mp_curve_with_schedule_is_differentiable():
    jax = pytest.importorskip("jax")
    from hidyn.solvers.closed_form.linear_jax import gd_mp_curve

    test, train = gd_mp_curve(1.0, np.full(30, 0.2), e0_norm2=1.3, noise=0.5, n_nodes=400)
    ref = gd_marchenko_pastur(1.0, 0.2, np.arange(31), e0_norm2=1.3, noise=0.5, n_nodes=400)
    np.testing.assert_allclose(test, ref["test_loss"], rtol=1e-10)
    np.testing.assert_allclose(train, ref["train_loss"], rtol=1e-10)
    lrs = np.linspace(0.3, 0.1, 20)

    def final(e):
        return gd_mp_curve(2.0, e, noise=0.5, n_nodes=400)[0][-1]

    with jax.enable_x64(True):
        g = jax.grad(final)(jax.numpy.asarray(lrs))
    h = 1e-6
    up, down = lrs.copy(), lrs.copy()
    up[10] += h
    down[10] -= h
    assert float(g[10]) == pytest.approx((final(up) - final(down)) / (2 * h), rel=1e-6)


def test_random_features_reduce_exactly_to_the_linear_family():
    """Brute-force SGD on φ = Wᵀx (x ∈ R^12, d = 5 features, 10⁵ runs) vs the recursion of the reduced spec."""
    from hidyn.solvers.closed_form.linear import random_features_reduction

    rng = np.random.default_rng(5)
    v, d, B, sig, S = 12, 5, 2, 0.2, 100_000
    D = np.arange(1, v + 1) ** -1.2
    b = np.arange(1, v + 1) ** -0.8
    W = rng.standard_normal((v, d)) / np.sqrt(d)
    red = random_features_reduction(W, D, b, sig)
    assert red["approximation_error"] > 0.01
    theta = np.zeros((S, d))
    etas = [0.4, 0.3, 0.3, 0.2]
    means, sems = [], []
    for eta in etas:
        x = rng.standard_normal((S, B, v)) * np.sqrt(D)
        y = x @ b + sig * rng.standard_normal((S, B))
        phi = x @ W
        r = np.einsum("sbd,sd->sb", phi, theta) - y
        theta = theta - eta / B * np.einsum("sb,sbd->sd", r, phi)
        err = b[None, :] - theta @ W.T                    # exact test loss E(y − ⟨θ, φ⟩)² per run
        L = (err ** 2) @ D + sig ** 2
        means.append(L.mean())
        sems.append(L.std() / np.sqrt(S))
    th = sgd_recursion(red["spectrum"], red["teacher"] ** 2, etas, B, red["noise"], [1, 2, 3, 4])["test_loss"]
    assert np.all(np.abs(np.array(means) - th) < 4 * np.array(sems)), (means, th)
    s = spec(d=d, spectrum=red["spectrum"], teacher=red["teacher"], noise=red["noise"], lr=0.1)
    assert float(hidyn.theory(s, times=[0]).test_loss[0]) == pytest.approx(b @ (D * b) + sig ** 2, rel=1e-10)
