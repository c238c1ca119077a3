"""Tests of hidyn.hermite: Hermite coefficients, Mehler sums, kink-aware polar quadrature
(docs/theory/single_index.md §3).

Expected values are derived independently of the code under test: scipy's He_n, Isserlis' theorem,
closed forms of the ReLU (arc-cosine) kernels and of the ReLU Hermite coefficients, adaptive scipy
quadrature and a Cartesian trapezoid rule (spectrally accurate for analytic integrands).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate as si_integrate
from scipy.special import eval_hermitenorm

from hidyn import hermite as H


def h(n, x):
    """Normalised probabilists' Hermite polynomial h_n = He_n/√(n!) (reference, via scipy)."""
    return eval_hermitenorm(n, x) / math.sqrt(math.factorial(n))


def trapezoid_2d(func, Q, M, R, n=1200, half=9.0):
    """E[func(λ, ν)] by the trapezoid rule on a Cartesian grid of the whitened variables.

    For analytic integrands (tanh, polynomials) the error is exponentially small in 1/h; not for kinks.
    """
    z = np.linspace(-half, half, n + 1)
    w = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    a = math.sqrt(Q)
    b = M / a
    c = math.sqrt(R - b * b)
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    return float(np.einsum("i,j,ij->", w, w, func(a * Z1, b * Z1 + c * Z2)))


COVARIANCES = [(1.0, 0.3, 1.0), (2.5, 1.1, 1.7), (0.4, -0.35, 1.3), (6.0, 2.0, 3.5), (1.0, 0.999, 1.0),
               (1.3, -0.9999 * math.sqrt(1.3), 1.0)]


# --------------------------------------------------------------------------------------------------
# Links and 1-d coefficients
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_registry_hermite_names_are_normalised_unit_vectors(k):
    coef = H.hermite_coefficients(f"he{k}", 6)
    expected = np.zeros(7)
    expected[k] = 1.0
    np.testing.assert_allclose(coef, expected, atol=1e-14)
    link = H.make_link(f"he{k}")
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(link.g(x), h(k, x), rtol=1e-13, atol=1e-13)


def test_linear_and_quadratic_coefficients():
    np.testing.assert_allclose(H.hermite_coefficients("linear", 3), [0, 1, 0, 0], atol=1e-15)
    # x² = He_2 + 1 = √2 h_2 + h_0
    np.testing.assert_allclose(H.hermite_coefficients("quadratic", 3), [1, 0, math.sqrt(2), 0], atol=1e-15)


def test_coefficient_links_round_trip():
    spec = {1: 0.5, 3: -0.2, 4: 0.1}
    link = H.make_link(spec)
    x = np.linspace(-3.5, 3.5, 29)
    expected = sum(c * h(k, x) for k, c in spec.items())
    d_expected = sum(c * k * eval_hermitenorm(k - 1, x) / math.sqrt(math.factorial(k)) for k, c in spec.items())
    np.testing.assert_allclose(link.g(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(link.dg(x), d_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(link.hermite(5), [0, 0.5, 0, -0.2, 0.1, 0], atol=1e-14)
    # the sequence form gives the same function
    np.testing.assert_allclose(H.make_link([0, 0.5, 0, -0.2, 0.1]).g(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("R", [0.5, 2.0, 6.0])
def test_scaled_coefficients_follow_pitfall_P4(R):
    # He_2(√R z) = R He_2(z) + (R − 1)  ⇒  h_2(√R z) = R h_2(z) + (R − 1)/√2
    np.testing.assert_allclose(H.hermite_coefficients("he2", 2, scale=R), [(R - 1) / math.sqrt(2), 0, R],
                               rtol=1e-13, atol=1e-14)
    # He_3(√R z) = R^{3/2} He_3(z) + 3√R(R − 1) z  ⇒  linear part 3√R(R − 1)/√6
    np.testing.assert_allclose(H.hermite_coefficients("he3", 3, scale=R),
                               [0, 3 * math.sqrt(R) * (R - 1) / math.sqrt(6), 0, R ** 1.5],
                               rtol=1e-13, atol=1e-14)


def test_relu_coefficients_match_closed_form():
    # E[relu(z) h_n(z)] = φ(0)(He_n(0) + n He_{n−2}(0))/√(n!) for n ≥ 2 (from z He_n = He_{n+1} + n He_{n−1}
    # and ∫_0^∞ He_k φ = He_{k−1}(0) φ(0)); c_0 = φ(0), c_1 = 1/2.
    phi0 = 1 / math.sqrt(2 * math.pi)
    expected = [phi0, 0.5] + [phi0 * (eval_hermitenorm(n, 0.0) + n * eval_hermitenorm(n - 2, 0.0))
                              / math.sqrt(math.factorial(n)) for n in range(2, 31)]
    np.testing.assert_allclose(H.hermite_coefficients("relu", 30), expected, rtol=0, atol=2e-14)
    # positive homogeneity: relu(√v z) = √v relu(z)
    np.testing.assert_allclose(H.hermite_coefficients("relu", 12, scale=3.0),
                               math.sqrt(3.0) * np.asarray(expected[:13]), atol=5e-14)


@pytest.mark.parametrize("scale", [1.0, 4.0, 30.0])
def test_tanh_coefficients_match_adaptive_quadrature(scale):
    got = H.hermite_coefficients("tanh", 9, scale=scale)
    for n in range(10):
        ref = si_integrate.quad(lambda z: math.tanh(math.sqrt(scale) * z) * h(n, z)
                                * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
                                -14, 14, points=[0.0], limit=500, epsabs=1e-14, epsrel=1e-12)[0]
        assert abs(got[n] - ref) < 1e-12, (n, got[n], ref)


# --------------------------------------------------------------------------------------------------
# Mehler vs quadrature
# --------------------------------------------------------------------------------------------------
def test_mehler_sum_definition():
    a = [0.3, -1.0, 2.0, 0.5]
    b = [1.0, 0.25, -0.5]
    rho = np.array([-0.7, 0.0, 0.4])
    np.testing.assert_allclose(H.mehler_sum(a, b, rho), 0.3 + (-0.25) * rho + (-1.0) * rho ** 2, rtol=1e-15)


@pytest.mark.parametrize("rho", [-0.95, -0.3, 0.0, 0.5, 1.0])
def test_mehler_reproduces_hermite_orthogonality(rho):
    # E[h_j(X) h_k(Y)] = δ_jk ρ^k for standard Gaussians with correlation ρ
    for j in range(1, 5):
        for k in range(1, 5):
            got = H.mehler(f"he{j}", f"he{k}", rho)
            assert abs(got - (rho ** k if j == k else 0.0)) < 1e-14


@pytest.mark.parametrize("Q,M,R", COVARIANCES)
def test_mehler_matches_isserlis(Q, M, R):
    # Isserlis: E[λ²ν²] = QR + 2M², E[λ³ν] = 3QM, E[λ⁴] = 3Q²
    quad = {0: 1.0, 2: math.sqrt(2.0)}     # x² in the h-basis
    assert abs(H.gaussian_expectation(quad, quad, Q, M, R) - (Q * R + 2 * M * M)) < 1e-12 * (Q * R + 2 * M * M)
    cube = H.make_link({1: 3.0, 3: math.sqrt(6.0)})   # x³ = He_3 + 3x
    assert abs(H.gaussian_expectation(cube, "linear", Q, M, R) - 3 * Q * M) < 1e-12 * max(1, abs(3 * Q * M))
    assert abs(H.gaussian_expectation(quad, quad, Q, Q, Q) - 3 * Q * Q) < 1e-12 * 3 * Q * Q


@pytest.mark.parametrize("Q,M,R", COVARIANCES)
def test_mehler_matches_polar_quadrature_for_polynomials(Q, M, R):
    worst = 0.0
    specs = ["he1", "he2", "he3", "he4", "quadratic", {0: 0.2, 1: -0.4, 3: 0.7}]
    for f in specs:
        for g in specs:
            mehler = H.gaussian_expectation(f, g, Q, M, R, method="mehler")
            polar = H.gaussian_expectation(f, g, Q, M, R, method="polar")
            scale = math.sqrt(H.gaussian_expectation(f, f, Q, Q, Q) * H.gaussian_expectation(g, g, R, R, R))
            worst = max(worst, abs(mehler - polar) / scale)
    assert worst < 1e-12, worst


# --------------------------------------------------------------------------------------------------
# Kink-aware polar quadrature vs brute force
# --------------------------------------------------------------------------------------------------
def _relu(x):
    return np.maximum(x, 0.0)


def _step(x):
    return (x > 0).astype(float)


@pytest.mark.parametrize("Q,M,R", COVARIANCES)
def test_polar_relu_matches_arccosine_kernels(Q, M, R):
    rho = M / math.sqrt(Q * R)
    th = math.acos(rho)
    # arc-cosine kernels (Cho & Saul orders 0 and 1) and E[relu(λ) 1{ν>0}] = √Q(1+ρ)/(2√(2π)) (Stein)
    rr = math.sqrt(Q * R) / (2 * math.pi) * (math.sqrt(1 - rho * rho) + rho * (math.pi - th))
    ss = (math.pi - th) / (2 * math.pi)
    rs = math.sqrt(Q) * (1 + rho) / (2 * math.sqrt(2 * math.pi))
    assert abs(H.polar_expectation(lambda l, n: _relu(l) * _relu(n), Q, M, R) - rr) < 1e-12 * max(rr, 1)
    assert abs(H.polar_expectation(lambda l, n: _step(l) * _step(n), Q, M, R) - ss) < 1e-12
    assert abs(H.polar_expectation(lambda l, n: _relu(l) * _step(n), Q, M, R) - rs) < 1e-12 * max(rs, 1)
    # the engine picks the polar rule for two non-polynomials and gives the same numbers
    assert abs(H.gaussian_expectation("relu", "relu", Q, M, R) - rr) < 1e-12 * max(rr, 1)


def test_polar_beats_tensor_gauss_hermite_for_relu():
    # P7: a tensor Gauss–Hermite rule converges only algebraically through the kink; the polar rule is exact
    Q, M, R = 1.0, 0.6, 1.0
    exact = (math.sqrt(1 - 0.36) + 0.6 * (math.pi - math.acos(0.6))) / (2 * math.pi)
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    Z1, Z2 = np.meshgrid(x, x, indexing="ij")
    tensor = float(np.einsum("i,j,ij->", w, w, _relu(Z1) * _relu(0.6 * Z1 + 0.8 * Z2)))
    polar = H.polar_expectation(lambda l, n: _relu(l) * _relu(n), Q, M, R)
    assert abs(tensor - exact) > 1e-6
    assert abs(polar - exact) < 1e-13


@pytest.mark.parametrize("Q,M,R", [(1.0, 0.3, 1.0), (2.5, 1.1, 1.7), (6.0, -2.0, 3.5), (1.0, 0.999, 1.0)])
def test_polar_tanh_matches_trapezoid(Q, M, R):
    funcs = [lambda l, n: np.tanh(l) * np.tanh(n),
             lambda l, n: l * np.tanh(l) ** 2 * np.tanh(0.8 * n) ** 2,
             lambda l, n: (1 / np.cosh(l) ** 2) ** 2 * n * np.tanh(n)]
    for f in funcs:
        ref = trapezoid_2d(f, Q, M, R)
        assert abs(H.polar_expectation(f, Q, M, R) - ref) < 1e-11 * max(1.0, abs(ref))


@pytest.mark.parametrize("Q,M,R", [(1.0, 0.4, 1.0), (2.0, -1.2, 1.5)])
def test_polar_mixed_relu_tanh_matches_nested_quadrature(Q, M, R):
    # E[relu(λ) tanh(ν)]: outer adaptive quadrature over z₁ > 0 (relu vanishes below), inner trapezoid in z₂
    a, b = math.sqrt(Q), M / math.sqrt(Q)
    c = math.sqrt(R - b * b)
    z2 = np.linspace(-10, 10, 2001)
    w2 = np.exp(-0.5 * z2 * z2) / math.sqrt(2 * math.pi) * (z2[1] - z2[0])

    def outer(z1):
        return a * z1 * math.exp(-0.5 * z1 * z1) / math.sqrt(2 * math.pi) * float(w2 @ np.tanh(b * z1 + c * z2))
    ref = si_integrate.quad(outer, 0.0, 12.0, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    got = H.polar_expectation(lambda l, n: _relu(l) * np.tanh(n), Q, M, R)
    assert abs(got - ref) < 1e-12


# --------------------------------------------------------------------------------------------------
# The moments of the ODE (§3 table)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["correlation", "square"])
@pytest.mark.parametrize("pair", [("he2", "he2"), ("he3", "he4"), ({1: 0.6, 2: 0.8}, "quadratic"),
                                  ("he4", "he1")])
def test_moments_mehler_equal_polar_for_polynomials(loss, pair):
    eng = H.GaussianMoments(*pair, tau=0.8)
    for Q, M, R in [(1.0, 0.3, 1.0), (1.7, 0.9, 1.4), (0.8, -0.7, 2.0)]:
        exact = np.array(eng.sgd(Q, M, R, loss=loss, noise_var=0.09))
        polar = np.array(eng.sgd(Q, M, R, loss=loss, noise_var=0.09, method="polar"))
        np.testing.assert_allclose(exact, polar, rtol=1e-12, atol=1e-12 * np.max(np.abs(exact)))
        np.testing.assert_allclose(eng.losses(Q, M, R), eng.losses(Q, M, R, method="polar"), rtol=1e-12,
                                   atol=1e-13)


@pytest.mark.parametrize("pair", [("he3", "relu"), ("tanh", "he2"), ("relu", "tanh")])
def test_moments_mixed_paths_agree_with_polar(pair):
    # (polynomial, non-polynomial): Mehler with 1-d quadrature coefficients; (non-poly, non-poly): polar
    eng = H.GaussianMoments(*pair, tau=0.9)
    for loss in ("correlation", "square"):
        auto = np.array(eng.sgd(1.4, 0.5, 1.2, loss=loss, noise_var=0.04))
        polar = np.array(eng.sgd(1.4, 0.5, 1.2, loss=loss, noise_var=0.04, method="polar"))
        np.testing.assert_allclose(auto, polar, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("m", [-0.6, 0.0, 0.3, 0.9])
def test_isotropic_noise_terms_match_section3(m):
    # note §3: g = σ = h_k, κ = 0, q = 1 (ρ = m): B_k(m) for both losses, and A_ν − mA_λ = (1 − m²) k m^{k−1}
    D = 0.3
    B = {
        ("correlation", 1): 1 + D, ("correlation", 2): 2 * (1 + 4 * m * m + D),
        ("correlation", 3): 3 * (1 + 12 * m * m + 18 * m ** 4 + D),
        ("square", 1): 2 * (1 - m) + D, ("square", 2): 12 * (1 - m * m) + 2 * D,
        ("square", 3): 96 + 36 * m * m - 186 * m ** 3 + 54 * m ** 4 + 3 * D,
    }
    for (loss, k), expected in B.items():
        eng = H.GaussianMoments(f"he{k}", f"he{k}")
        A_nu, A_lam, b = eng.sgd(1.0, m, 1.0, loss=loss, noise_var=D)
        assert abs(b - expected) < 1e-12 * max(1, abs(expected)), (loss, k, b, expected)
        assert abs((A_nu - m * A_lam) - (1 - m * m) * k * m ** (k - 1)) < 1e-12


# --------------------------------------------------------------------------------------------------
# Information exponent and errors
# --------------------------------------------------------------------------------------------------
def test_information_exponent_values():
    for k in range(1, 5):
        assert H.information_exponent(f"he{k}") == k
        assert H.information_exponent(f"he{k}", f"he{k}") == k
    assert H.information_exponent("relu") == 1
    assert H.information_exponent("tanh") == 1
    assert H.information_exponent("quadratic") == 2
    assert H.information_exponent({0: 1.0, 3: 2.0}) == 3
    assert H.information_exponent("he2", "relu") == 2          # ReLU has c_2 ≠ 0
    assert H.information_exponent("he3", "tanh") == 3          # α_3(tanh) = −0.148…
    # P4: a raw h_3 target with Var ν = R ≠ 1 gains a linear component
    assert H.information_exponent("he3", scale=6.0) == 1
    assert H.information_exponent("he3", scale=1.0) == 3


def test_information_exponent_even_target_odd_student_has_no_common_order():
    # tanh is odd: α_4(tanh) = 0, so the product with h_4 vanishes at every order
    with pytest.raises(ValueError, match=r"link='he4'.*information exponent k\* is undefined"):
        H.information_exponent("he4", "tanh")


def test_empty_hermite_expansion_raises():
    with pytest.raises(ValueError, match=r"link.*only a constant term.*k\* is undefined.*k ≥ 1"):
        H.information_exponent({0: 1.0})
    with pytest.raises(ValueError, match=r"link.*only a constant term.*k\* is undefined"):
        H.information_exponent({0: 1.0, 2: 0.0})
    # a (non-polynomial) callable that is constant: the quadrature finds no order up to 40
    const = (lambda x: np.full_like(np.asarray(x, dtype=float), 2.0), lambda x: np.zeros_like(x))
    with pytest.raises(ValueError, match=r"link='custom'.*no non-zero coefficient c_k of order 1 ≤ k ≤ 40"):
        H.information_exponent(const)
    with pytest.raises(ValueError, match=r"link: the Hermite expansion is empty"):
        H.make_link({})
    with pytest.raises(ValueError, match=r"activation: the Hermite expansion is empty"):
        H.make_link([], parameter="activation")


def test_bad_link_specs_name_the_parameter():
    with pytest.raises(ValueError, match=r"link='nope' is not a known activation; valid: .*he1"):
        H.make_link("nope")
    with pytest.raises(ValueError, match=r"activation: Hermite orders must be integers ≥ 0"):
        H.make_link({-1: 1.0}, parameter="activation")
    with pytest.raises(ValueError, match=r"link: a callable needs its derivative"):
        H.make_link(np.tanh)


def test_check_spike_ranges():
    with pytest.raises(ValueError, match=r"spike must be .*≥ 0.*\[0, ∞\)"):
        H.check_spike(-0.5, 0.0)
    with pytest.raises(ValueError, match=r"spike_angle must lie in \[0, π/2\]"):
        H.check_spike(1.0, 2.0)
    with pytest.raises(ValueError, match=r"spike_angle must lie in \[0, π/2\]"):
        H.check_spike(1.0, -0.1)
    assert H.check_spike(2.0, 0.0) == (2.0, 1.0)
    assert H.check_spike(2.0, math.pi / 2) == (2.0, 0.0)


@pytest.mark.parametrize("kappa,phi", [(0.0, 0.3), (3.0, 0.0), (5.0, math.pi / 4), (2.0, math.pi / 2)])
def test_spike_gain_and_covariance_from_explicit_vectors(kappa, phi):
    rng = np.random.default_rng(0)
    d = 7
    O, _ = np.linalg.qr(rng.standard_normal((d, d)))
    theta = O[:, 0]
    u = math.cos(phi) * O[:, 0] + math.sin(phi) * O[:, 1]
    Sigma = np.eye(d) + kappa * np.outer(u, u)
    w = rng.standard_normal(d)
    G = float(theta @ Sigma @ Sigma @ theta / (theta @ Sigma @ theta))
    assert abs(H.spike_gain(kappa, phi) - G) < 1e-12
    Q, M, R = H.projection_covariance(w @ theta, w @ u, w @ w, spike=kappa, spike_angle=phi)
    np.testing.assert_allclose([Q, M, R], [w @ Sigma @ w, w @ Sigma @ theta, theta @ Sigma @ theta], rtol=1e-12)
    assert abs(H.target_scale(kappa, phi) - 1 / math.sqrt(R)) < 1e-14
    assert H.target_scale(kappa, phi, standardize_target=False) == 1.0
