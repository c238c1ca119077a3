"""Gaussian averages of the two-layer theory (hidyn.gaussian; docs/theory/teacher_student.md §3, §4).

References used here are independent of the code under test:
* Isserlis/Wick moments (exact) for :func:`expect` and the polynomial activations;
* tensor Gauss–Hermite quadrature (the generic path, fed a *custom* copy of erf/linear) for the erf and
  linear closed forms;
* 1-D adaptive integrals (scipy.integrate.quad, ~1e-13) of conditional Gaussian formulas for ReLU I2, J2,
  I3 and, on one-factor covariances (fields independent given one latent normal), for ReLU I4;
* Stein's lemma with Genz's quasi-Monte-Carlo 4-D orthant probability (scipy, abseps 1e-7; its actual
  error is ~1e-9) for ReLU I4 on general covariances;
* exact factorisations (block-diagonal covariances, duplicated fields).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from hidyn import gaussian as G
from hidyn.activations import Activation, get_activation

PHI, phi = stats.norm.cdf, stats.norm.pdf


def random_cov(n, rng, scale=1.0, rank=None):
    rank = n + 3 if rank is None else rank
    X = rng.standard_normal((n, rank))
    return scale * X @ X.T / rank


def custom_copy(name):
    """The registry activation as a 'custom' one: forces the quadrature path."""
    a = get_activation(name)
    return Activation("custom", a.g, a.dg, a.d2g)


# --------------------------------------------------------------------------------------------
# expect()
# --------------------------------------------------------------------------------------------
def test_expect_isserlis_moments_including_singular_and_batched():
    rng = np.random.default_rng(0)
    covs = np.stack([random_cov(4, rng), random_cov(4, rng, rank=2)])   # second one singular
    covs = np.stack([covs, covs[::-1]])                                   # batch (2, 2, 4, 4)

    def f(u):
        return u[..., 0] * u[..., 1] * u[..., 2] * u[..., 3]

    got = G.expect(f, covs, n_nodes=3)
    C = covs
    want = (C[..., 0, 1] * C[..., 2, 3] + C[..., 0, 2] * C[..., 1, 3] + C[..., 0, 3] * C[..., 1, 2])
    assert got.shape == (2, 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)

    c2 = covs[0, 0, :2, :2]
    got = G.expect(lambda u: u[..., 0] ** 2 * u[..., 1] ** 2, c2, n_nodes=4)
    assert got == pytest.approx(c2[0, 0] * c2[1, 1] + 2 * c2[0, 1] ** 2, rel=1e-13)


@pytest.mark.parametrize("cov, match", [
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
    (np.array([[1.0, 0.5], [0.1, 1.0]]), "symmetric"),
    (np.eye(5), "1 <= n <= 4"),
    (np.ones(3), "shape"),
    (np.array([[np.nan, 0.0], [0.0, 1.0]]), "non-finite"),
])
def test_expect_rejects_invalid_covariances(cov, match):
    with pytest.raises(ValueError, match=match):
        G.expect(lambda u: u[..., 0], cov)


def test_expect_rejects_bad_node_count():
    with pytest.raises(ValueError, match="n_nodes"):
        G.expect(lambda u: u[..., 0], np.eye(2), n_nodes=0)


# --------------------------------------------------------------------------------------------
# closed forms vs quadrature
# --------------------------------------------------------------------------------------------
def _omegas(rng):
    """Field covariances for K = M = 2 in the ODE range, including singular ones."""
    out = [random_cov(4, rng, scale=0.4)]
    T = random_cov(2, rng, scale=0.3)
    out.append(np.block([[T, T], [T, T]]))                       # students equal teachers
    W = random_cov(3, rng, scale=0.4)
    out.append(W[[0, 0, 1, 2]][:, [0, 0, 1, 2]])                 # two identical students
    return out


def test_erf_closed_forms_match_gauss_hermite():
    rng = np.random.default_rng(1)
    worst = 0.0
    for om in _omegas(rng):
        cf = G.two_layer_averages("erf", om, 2)
        gh = G.two_layer_averages(custom_copy("erf"), om, 2, n_nodes=28)
        for key in ("I2", "J2", "I3", "I4"):
            assert cf[key].shape == gh[key].shape
            worst = max(worst, float(np.max(np.abs(cf[key] - gh[key]))))
    assert worst < 1e-8


def test_erf_i3_stein_route_matches_direct_three_dimensional_quadrature():
    rng = np.random.default_rng(2)
    om = random_cov(4, rng, scale=0.4)
    erf = get_activation("erf")
    no_d2g = Activation("custom", erf.g, erf.dg, None)            # forces the 3-D route
    direct = G.two_layer_averages(no_d2g, om, 2, need_i4=False, n_nodes=32)["I3"]
    np.testing.assert_allclose(direct, G.two_layer_averages("erf", om, 2, need_i4=False)["I3"], atol=1e-10)


def test_linear_closed_forms_match_quadrature_and_formula():
    rng = np.random.default_rng(3)
    om = random_cov(5, rng)
    cf = G.two_layer_averages("linear", om, 3)
    gh = G.two_layer_averages(custom_copy("linear"), om, 3, n_nodes=4)
    for key in ("I2", "J2", "I3", "I4"):
        np.testing.assert_allclose(cf[key], gh[key], atol=1e-12)
    assert np.array_equal(cf["I4"][1, 2], om)       # I4(i,k,c,d) = C_cd  (§4.2)


def test_quadratic_activation_is_exact_against_isserlis():
    rng = np.random.default_rng(4)
    C = random_cov(4, rng)
    av = G.two_layer_averages("quadratic", C, 2, need_i4=False)
    d = np.diag(C)
    np.testing.assert_allclose(av["I2"], d[:, None] * d[None, :] + 2 * C ** 2, rtol=1e-12)
    np.testing.assert_allclose(av["J2"], 4 * C[:2, :2], rtol=1e-12)
    # I3(i,b,c) = E[2 u_i u_b u_c²] = 2 (C_ib C_cc + 2 C_ic C_bc)
    want = 2 * (C[:2, :, None] * d[None, None, :] + 2 * C[:2, None, :] * C[None, :, :])
    np.testing.assert_allclose(av["I3"], want, rtol=1e-12, atol=1e-13)


def test_batched_omega_equals_loop():
    rng = np.random.default_rng(5)
    oms = np.stack([random_cov(3, rng, scale=0.5) for _ in range(3)])
    for name in ("erf", "relu", "tanh"):
        batched = G.two_layer_averages(name, oms, 2, n_nodes=12)
        for j in range(3):
            single = G.two_layer_averages(name, oms[j], 2, n_nodes=12)
            for key in single:
                np.testing.assert_allclose(batched[key][j], single[key], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(G.two_layer_i2(name, oms, n_nodes=12), batched["I2"], rtol=1e-12, atol=1e-15)


def test_tanh_quadrature_against_monte_carlo():
    rng = np.random.default_rng(6)
    om = random_cov(3, rng, scale=0.5)
    av = G.two_layer_averages("tanh", om, 1)
    u = rng.multivariate_normal(np.zeros(3), om, size=400_000)
    g, dg = np.tanh(u), 1 / np.cosh(u) ** 2
    samples = {"I2": g[:, 0] * g[:, 2], "I3": dg[:, 0] * u[:, 1] * g[:, 2],
               "I4": dg[:, 0] ** 2 * g[:, 1] * g[:, 2]}
    got = {"I2": av["I2"][0, 2], "I3": av["I3"][0, 1, 2], "I4": av["I4"][0, 0, 1, 2]}
    for key, s in samples.items():
        se = s.std() / math.sqrt(s.size)
        assert abs(s.mean() - got[key]) < 5 * se, key


@pytest.mark.parametrize("bad, match", [
    (np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "positive semi-definite"),
    (np.zeros((2, 3)), "shape"),
])
def test_two_layer_averages_rejects_invalid_omega(bad, match):
    with pytest.raises(ValueError, match=match):
        G.two_layer_averages("erf", bad, 1)


def test_two_layer_averages_rejects_bad_K():
    with pytest.raises(ValueError, match="K"):
        G.two_layer_averages("erf", np.eye(3), 4)


# --------------------------------------------------------------------------------------------
# ReLU
# --------------------------------------------------------------------------------------------
def _quad(f, lo=-12.0, hi=12.0, points=(0.0,)):
    return integrate.quad(f, lo, hi, points=list(points), epsabs=1e-14, epsrel=1e-13, limit=400)[0]


def _relu_pair_refs(C, a, b, c):
    """I2(a,b), J2(a,b), I3(a,b,c) for ReLU by conditioning on u_a (1-D quadrature)."""
    saa = C[a, a]

    def cond(x, j):  # mean and sd of u_j given u_a = x
        m = C[a, j] / saa * x
        return m, math.sqrt(max(C[j, j] - C[a, j] ** 2 / saa, 0.0))

    def erelu(m, s):
        return m * PHI(m / s) + s * phi(m / s) if s > 0 else max(m, 0.0)

    dens = lambda x: phi(x / math.sqrt(saa)) / math.sqrt(saa)
    i2 = _quad(lambda x: max(x, 0) * erelu(*cond(x, b)) * dens(x))
    j2 = _quad(lambda x: (x > 0) * PHI(cond(x, b)[0] / cond(x, b)[1]) * dens(x))

    def i3_integrand(x):  # E[u_b relu(u_c) | u_a = x] with Stein: m_b E[relu] + cov(b,c|a) P(u_c > 0)
        mb, _ = cond(x, b)
        mc, sc = cond(x, c)
        cov_bc = C[b, c] - C[a, b] * C[a, c] / saa
        p_c = PHI(mc / sc) if sc > 0 else float(mc > 0)
        return (x > 0) * (mb * erelu(mc, sc) + cov_bc * p_c) * dens(x)

    i3 = _quad(i3_integrand)
    return i2, j2, i3


def test_relu_i2_j2_i3_closed_forms_against_conditional_quadrature():
    rng = np.random.default_rng(7)
    C = random_cov(4, rng)
    av = G.two_layer_averages("relu", C, 2, need_i4=False)
    worst = 0.0
    for a, b, c in [(0, 1, 2), (1, 3, 0), (0, 2, 3), (1, 0, 1)]:
        i2, j2, i3 = _relu_pair_refs(C, a, b, c)
        worst = max(worst, abs(av["I2"][a, b] - i2), abs(av["I3"][a, b, c] - i3))
        if b < 2:
            worst = max(worst, abs(av["J2"][a, b] - j2))
    assert worst < 1e-10


def _one_factor_i4(a, sig, tup):
    """E[Θ(u_i)Θ(u_k) relu(u_a) relu(u_b)] with u_j = sig_j (a_j Z + √(1−a_j²) ε_j), as a 1-D integral in Z.

    Given Z the fields are independent, so the integrand is a product of closed forms.  Composite
    64-point Gauss–Legendre on panels with breakpoints at 0 (where degenerate fields jump), at the
    scales √(1−a_j²)/|a_j| of nearly degenerate fields (near-steps) and at ±1, ±3, ±6, ±12; the
    reference is accurate to ~1e-14 (it reproduces itself with 128 points per panel).
    """
    labels = {}
    for lab, kind in zip(tup, "ttrr"):
        labels.setdefault(lab, []).append(kind)

    def f(z):
        val = phi(z)
        for lab, kinds in labels.items():
            m = sig[lab] * a[lab] * z
            s = sig[lab] * math.sqrt(max(1 - a[lab] ** 2, 0.0))
            n_r = kinds.count("r")
            if s == 0:
                val = val * (m > 0) * (1.0, m, m * m)[n_r]
            elif n_r == 0:
                val = val * PHI(m / s)
            elif n_r == 1:
                val = val * (m * PHI(m / s) + s * phi(m / s))
            else:
                val = val * ((m * m + s * s) * PHI(m / s) + m * s * phi(m / s))
        return val

    scales = [math.sqrt(1 - x * x) / abs(x) for x in a if 0.99 < abs(x) < 1]
    pts = {0.0, 1.0, 3.0, 6.0, 12.0} | {x * k for x in scales for k in (1, 3, 10) if x * k < 1}
    edges = sorted(pts | {-p for p in pts})
    x, w = np.polynomial.legendre.leggauss(64)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        z = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
        total += 0.5 * (hi - lo) * float(w @ f(z))
    return total


@pytest.mark.parametrize("case", ["generic", "student_equals_teacher", "near_degenerate", "anti"])
def test_relu_i4_one_factor_covariances(case):
    rng = np.random.default_rng({"generic": 8, "student_equals_teacher": 9, "near_degenerate": 10, "anti": 11}[case])
    a = rng.uniform(-0.9, 0.9, 4)
    if case == "student_equals_teacher":
        a[0] = a[2] = 1.0
    elif case == "near_degenerate":
        a[0], a[2], a[1] = 1 - 1e-9, 1 - 2e-9, -(1 - 1e-7)
    elif case == "anti":
        a[1], a[3] = 1.0, -1.0
    sig = rng.uniform(0.5, 1.5, 4)
    om = np.outer(sig * a, sig * a)
    np.fill_diagonal(om, sig ** 2)
    I4 = G.two_layer_averages("relu", om, 2)["I4"]
    worst = max(abs(I4[i, k, p, q] - _one_factor_i4(a, sig, (i, k, p, q)))
                for i in range(2) for k in range(i, 2) for p in range(4) for q in range(p, 4))
    assert worst < 1e-9


def _stein_i4_reference(C, abseps=1e-7):
    """E[Θ1Θ2 relu(u3) relu(u4)] (fields 0..3) by Stein's lemma + Genz's 4-D orthant probability.

    E[u_a u_b ΠΘ] = C_ab P4 + Σ_{j≠b} C_aj φ(0; C_jj) E[u_b Π_{m≠j}Θ_m | u_j = 0], the conditional term
    being a trivariate first orthant moment Σ_m Σ_bm φ(0; Σ_mm) P2(rest | u_m = 0).
    """
    a, b = 2, 3
    p4 = stats.multivariate_normal(mean=np.zeros(4), cov=C, abseps=abseps, releps=0,
                                   maxpts=10 ** 7).cdf(np.zeros(4))
    total = C[a, b] * p4
    for j in range(4):
        if j == b:
            continue
        rest = [m for m in range(4) if m != j]
        S = C[np.ix_(rest, rest)] - np.outer(C[rest, j], C[j, rest]) / C[j, j]
        bi = rest.index(b)
        moment = 0.0
        for mi in range(3):
            others = [x for x in range(3) if x != mi]
            S2 = S[np.ix_(others, others)] - np.outer(S[others, mi], S[mi, others]) / S[mi, mi]
            rho = S2[0, 1] / math.sqrt(S2[0, 0] * S2[1, 1])
            moment += S[bi, mi] / math.sqrt(2 * math.pi * S[mi, mi]) * (0.25 + math.asin(rho) / (2 * math.pi))
        total += C[a, j] / math.sqrt(2 * math.pi * C[j, j]) * moment
    return total


def test_relu_i4_general_covariance_against_stein_and_genz():
    rng = np.random.default_rng(12)
    C = random_cov(4, rng)
    got = G.two_layer_averages("relu", C, 2)["I4"][0, 1, 2, 3]
    assert got == pytest.approx(_stein_i4_reference(C), abs=2e-7)


def test_relu_i4_exact_factorisations():
    rng = np.random.default_rng(13)
    s = rng.uniform(0.5, 2.0, 4)
    r1, r2 = 0.83, -0.61
    # (i, a) independent of (k, b): E[Θ_i relu_a] E[Θ_k relu_b], E[Θ_x relu_z] = σ_z (1 + ρ)/(2√(2π))
    om = np.diag(s)
    om[0, 2] = om[2, 0] = r1 * math.sqrt(s[0] * s[2])
    om[1, 3] = om[3, 1] = r2 * math.sqrt(s[1] * s[3])
    want = (math.sqrt(s[2]) * (1 + r1) * math.sqrt(s[3]) * (1 + r2)) / (8 * math.pi)
    assert G.two_layer_averages("relu", om, 2)["I4"][0, 1, 2, 3] == pytest.approx(want, abs=1e-14)
    # students equal teachers: Θ_i relu_i = relu_i, so I4(0,1,2,3) = I2(0,1)
    T = random_cov(2, rng)
    om = np.block([[T, T], [T, T]])
    av = G.two_layer_averages("relu", om, 2)
    assert av["I4"][0, 1, 2, 3] == pytest.approx(av["I2"][0, 1], abs=1e-13)
    # two identical students: I4(0,1,2,3) on the duplicated Ω equals I4(0,0,1,2) on the reduced one
    W = random_cov(3, rng)
    dup = G.two_layer_averages("relu", W[[0, 0, 1, 2]][:, [0, 0, 1, 2]], 2)["I4"][0, 1, 2, 3]
    red = G.two_layer_averages("relu", W, 1)["I4"][0, 0, 1, 2]
    assert dup == pytest.approx(red, abs=1e-13)


def test_orthant_probability():
    R = np.full((4, 4), 0.5)
    np.fill_diagonal(R, 1.0)
    assert G.orthant_probability(R) == pytest.approx(0.2, abs=1e-14)      # equicorrelated ρ = 1/2: 1/(n+1)
    for rho in (0.1, 0.9, 0.999):
        R = np.full((4, 4), rho)
        np.fill_diagonal(R, 1.0)
        c = math.sqrt(rho / (1 - rho))
        want = _quad(lambda z: PHI(c * z) ** 4 * phi(z))
        assert G.orthant_probability(2.0 * R) == pytest.approx(want, abs=1e-11)
    assert G.orthant_probability(np.eye(3)) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="positive diagonal"):
        G.orthant_probability(np.zeros((2, 2)))


def test_relu_i2_diagonal_and_nearly_parallel_fields_are_exact():
    """E[relu(u)²] = C/2 exactly (arccos(ρ) at ρ rounding to 1 − 1e-16 used to give 1e-8 errors), and
    nearly parallel fields u_a = z1, u_b = z1 + e z2 agree with an orthant-probability derivation."""
    var = np.linspace(0.1, 3.0, 50)                    # arccos(ρ) was up to 8.9e-9 off on this grid
    np.testing.assert_allclose(np.diag(G.two_layer_i2("relu", np.diag(var))), var / 2.0, rtol=1e-15, atol=0)
    # E_z1[relu(z1) relu(z1 + s)] = 1/2 + s/√(2π) for s ≥ 0 and Φ(s) for s < 0.  Averaged over s = e z2:
    # the s ≥ 0 half gives 1/4 + e/(2π); the s < 0 half is P(z2 < 0, z3 < e z2) for an independent z3, a
    # bivariate orthant probability with correlation −e/√(1 + e²): 1/4 − arctan(e)/(2π)
    e = 1e-7
    want = 0.5 + (e - math.atan(e)) / (2 * math.pi)
    cov = np.array([[1.0, 1.0], [1.0, 1.0 + e * e]])
    # arccos(ρ) with ρ = 1/√(1 + e²) rounding near 1 was 3.6e-10 (relative) off here
    assert G.two_layer_i2("relu", cov)[0, 1] == pytest.approx(want, rel=1e-14)
