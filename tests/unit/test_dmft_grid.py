"""Tests of the causal two-time grid utilities (hidyn.solvers.dmft.grid).

The end-to-end check is a *linear* DMFT (plain GD on β for Gaussian linear regression), solved with the
grid utilities in one causal pass, whose kernels are known in closed form from the Marchenko–Pastur
law: with S = XᵀX/δ, GD gives Δβ^k = (I − ηS)^k Δβ^0 + η Σ_{m<k} (I − ηS)^m (σ/δ) Xᵀξ, hence

  R_β[k, j] = η ∫ (1 − ηλ)^{k−j−1} dμ(λ),
  C_Δ[k, l] = ρ ∫ (1 − ηλ)^{k+l} dμ(λ) + (σ²/δ) ∫ λ a_k(λ) a_l(λ) dμ(λ),  a_k = (1 − (1 − ηλ)^k)/λ,
  E_tr(k)   = ρ ∫ λ (1 − ηλ)^{2k} dμ(λ) + σ² [ (1/δ) ∫_{λ>0} (1 − ηλ)^{2k} dμ(λ) + (1 − 1/δ)_+ ],

where μ is the Marchenko–Pastur law of S (ratio γ = 1/δ, unit variance, an atom 1 − δ at 0 if δ < 1).
These formulas are derived in this file's docstring from the finite-d recursion, independently of
the DMFT (which never sees λ).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad

from hidyn.solvers.dmft.grid import (
    CausalGaussianSampler,
    CausalKernels,
    CausalTangentHistory,
    IncrementalCholesky,
    ResidualKernels,
    residual_kernels,
    resolvent_row,
    tangent_history_nbytes,
)


# ----------------------------------------------------------------------------------------------------
# CausalKernels
# ----------------------------------------------------------------------------------------------------
def test_kernels_structure_enforced():
    ker = CausalKernels(4)
    rng = np.random.default_rng(0)
    for k in range(4):
        ker.set_C_row(k, rng.standard_normal(k + 1))
        ker.set_R_row(k, rng.standard_normal(k))
    ker.check_causal()
    assert np.array_equal(ker.C, ker.C.T)
    assert np.all(np.triu(ker.R) == 0)
    assert ker.n_filled == 4
    # rows must come in order: writing row 2 of a fresh grid before rows 0, 1 violates causality
    fresh = CausalKernels(4)
    with pytest.raises(ValueError, match="before row"):
        fresh.set_C_row(2, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        ker.set_R_row(0, np.ones(1))  # R[0, :0] is empty: nothing may be written on the diagonal
    ker.R[1, 2] = 1.0
    with pytest.raises(AssertionError, match="acausal"):
        ker.check_causal()


# ----------------------------------------------------------------------------------------------------
# n-side algebra
# ----------------------------------------------------------------------------------------------------
def test_resolvent_and_residual_rows_match_dense_algebra():
    rng = np.random.default_rng(1)
    n, ratio, noise = 12, 0.7, 0.4
    R = np.tril(rng.standard_normal((n, n)), -1) * 0.3
    A = rng.standard_normal((n, n))
    C = A @ A.T / n
    res = ResidualKernels(n, ratio, noise)
    for k in range(n):
        res.update(k, C[k, : k + 1], R[k, :k])
    M_dense = np.linalg.inv(np.eye(n) + R / ratio)
    np.testing.assert_allclose(res.M, M_dense, atol=1e-12)
    np.testing.assert_allclose(res.C_r, M_dense @ (C + noise**2) @ M_dense.T, atol=1e-12)
    assert np.all(np.triu(res.M, 1) == 0) and np.all(np.diag(res.M) == 1)
    M2, Cr2 = residual_kernels(C, R, ratio, noise)
    np.testing.assert_allclose(M2, M_dense, atol=1e-12)
    np.testing.assert_allclose(Cr2, res.C_r, atol=1e-12)
    # a single row only uses rows < k of M
    M_poison = res.M.copy()
    M_poison[5:] = np.nan
    np.testing.assert_allclose(resolvent_row(R[5, :5], M_poison, ratio), res.M[5, :6], atol=1e-14)
    with pytest.raises(ValueError, match="in order"):
        ResidualKernels(n, ratio, noise).update(1, C[1, :2], R[1, :1])


# ----------------------------------------------------------------------------------------------------
# incremental Cholesky
# ----------------------------------------------------------------------------------------------------
def _factor(Q, rtol):
    ch = IncrementalCholesky(Q.shape[0], rtol)
    for k in range(Q.shape[0]):
        ch.add_row(Q[k, : k + 1])
    return ch


def test_cholesky_full_rank_matches_numpy():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((30, 30))
    Q = A @ A.T + 30 * np.eye(30)
    ch = _factor(Q, 1e-8)
    np.testing.assert_allclose(ch.L, np.linalg.cholesky(Q), rtol=1e-10, atol=1e-12)
    assert ch.rank == 30 and not ch.cut.any()


def test_cholesky_exact_low_rank_cuts_pivots():
    rng = np.random.default_rng(3)
    B = rng.standard_normal((40, 5))
    Q = B @ B.T
    ch = _factor(Q, 1e-8)
    assert ch.rank == 5  # rank-5 covariance: every later conditional variance is rounding noise
    # columns of cut pivots are identically zero, and the factor reproduces Q
    assert np.all(ch.L[:, ch.cut] == 0)
    np.testing.assert_allclose(ch.L @ ch.L.T, Q, atol=1e-9 * np.abs(Q).max())


def test_cholesky_cutoff_is_relative():
    # Same pattern of cuts when the covariance is rescaled by 2^-80 or 2^+80 (powers of two, so the
    # rounding is scaled exactly): the cutoff compares the conditional variance with the marginal
    # variance, not with an absolute number (which would cut every pivot at 2^-80 ≈ 1e-24).
    t = np.linspace(0, 3, 50)
    Q = np.exp(-((t[:, None] - t[None, :]) ** 2))  # Gaussian kernel: numerically low rank
    cuts = [_factor(s * Q, 1e-8).cut for s in (1.0, 2.0**-80, 2.0**80)]
    assert cuts[0].any()
    assert np.array_equal(cuts[0], cuts[1]) and np.array_equal(cuts[0], cuts[2])


def test_cholesky_cutoff_keeps_factor_bounded_on_numerically_low_rank_matrix():
    # For an exact PSD matrix Σ_j L[k, j]² = Q[k, k].  On numerically low-rank Gaussian kernels
    # (eigenvalues falling faster than exponentially) a plain forward substitution over the kept
    # pivots violates this by factors 3-20 at rtol = 1e-8 (rounding amplified along chains of small
    # pivots); the factor must keep bounded rows, drop at most rtol·Q_kk from each diagonal entry and
    # be off by at most ~√rtol elsewhere (docs/theory/dln.md §10 pitfall 5).
    for width, t in ((0.5, np.linspace(0, 6, 120)), (2.0, np.linspace(0, 3, 150))):
        Q = np.exp(-width * (t[:, None] - t[None, :]) ** 2)
        rtol = 1e-8
        ch = _factor(Q, rtol)
        assert 5 < ch.rank < 80
        recon = ch.L @ ch.L.T
        assert np.all(np.diag(recon) <= np.diag(Q) * (1 + 1e-12))
        assert np.all(np.diag(Q) - np.diag(recon) <= 1.01 * rtol * np.diag(Q))
        assert np.abs(recon - Q).max() <= np.sqrt(rtol) * np.diag(Q).max()
        # the kept-pivot count falls as the cutoff grows: 1e-4 keeps fewer than 1e-8
        assert _factor(Q, 1e-4).rank < ch.rank


def test_cholesky_rejects_bad_cutoff():
    with pytest.raises(ValueError, match="pivot_rtol"):
        IncrementalCholesky(3, pivot_rtol=-1.0)
    with pytest.raises(ValueError, match="pivot_rtol"):
        IncrementalCholesky(3, pivot_rtol=1.0)


# ----------------------------------------------------------------------------------------------------
# causal Gaussian sampler
# ----------------------------------------------------------------------------------------------------
def test_sampler_covariance_and_causality():
    rng = np.random.default_rng(4)
    n, K = 15, 100_000
    t = np.arange(n) * 0.3
    Q = np.minimum(t[:, None], t[None, :]) + 0.5 * np.exp(-np.abs(t[:, None] - t[None, :]))
    z = rng.standard_normal((n, K))
    samp = CausalGaussianSampler(z, 1e-8)
    zeta = np.array([samp.next(Q[k, : k + 1]) for k in range(n)])
    emp = zeta @ zeta.T / K
    # entrywise standard error of a sample covariance: sqrt((Q_kk Q_ll + Q_kl²)/K)
    se = np.sqrt((np.outer(np.diag(Q), np.diag(Q)) + Q**2) / K)
    assert np.all(np.abs(emp - Q) < 5 * se)
    # causality: changing future white noise leaves the past of ζ unchanged
    z2 = z.copy()
    z2[8:] = rng.standard_normal((n - 8, K))
    samp2 = CausalGaussianSampler(z2, 1e-8)
    zeta2 = np.array([samp2.next(Q[k, : k + 1]) for k in range(n)])
    np.testing.assert_array_equal(zeta2[:8], zeta[:8])
    assert not np.allclose(zeta2[8:], zeta[8:])


# ----------------------------------------------------------------------------------------------------
# tangent history
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", [1, 3, 16])
def test_tangent_history_contract_matches_dense(block):
    rng = np.random.default_rng(5)
    n, K = 11, 7
    D = np.zeros((n, n, K))  # D[l, j] for j < l
    hist = CausalTangentHistory(n, K, np.float64, block=block)
    assert hist.nbytes == tangent_history_nbytes(n, K, 8, block)
    for l in range(1, n):
        D[l, :l] = rng.standard_normal((l, K))
        hist.append(D[l, :l])
        w = rng.standard_normal(l + 1)
        expected = np.einsum("l,ljk->jk", w[1:], D[1 : l + 1, :l])
        np.testing.assert_allclose(hist.contract(w), expected, atol=1e-12)
        np.testing.assert_array_equal(hist.row(l), D[l, :l])
    with pytest.raises(ValueError):
        hist.append(np.zeros((n, K)))


def test_tangent_history_triangular_storage_halves_memory():
    full = 151 * 150 * 16000 * 4
    assert tangent_history_nbytes(151, 16000, 4, 16) < 0.6 * full


# ----------------------------------------------------------------------------------------------------
# end to end: the DMFT of linear GD, whose kernels follow from the Marchenko–Pastur law
# ----------------------------------------------------------------------------------------------------
def _mp_integral(f, ratio, include_atom=True):
    """∫ f(λ) dμ(λ) for the Marchenko–Pastur law of S = XᵀX/δ (γ = 1/δ)."""
    gam = 1.0 / ratio
    lo, hi = (1 - np.sqrt(gam)) ** 2, (1 + np.sqrt(gam)) ** 2
    c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)

    # λ = c + r cos θ removes the square-root end points: dλ √((hi−λ)(λ−lo)) = r² sin² θ dθ
    def integrand(th):
        lam = c + r * np.cos(th)
        return f(lam) * (r * np.sin(th)) ** 2 / (2 * np.pi * gam * lam)

    val = quad(integrand, 0, np.pi, epsabs=1e-13, epsrel=1e-12, limit=200)[0]
    if include_atom and ratio < 1:
        val += (1 - ratio) * f(0.0)
    return val


def _linear_dmft(ratio, sparsity, noise, lr, n_steps, K, seed):
    """One causal pass of the DMFT of GD on β (d-side Δβ^{k+1} = Δβ^k − η(g^k − h^k)), built only
    from the grid utilities.  The tangents of a linear process are deterministic, so R_β is exact."""
    n = n_steps + 1
    rng = np.random.default_rng(seed)
    beta_star = np.where(rng.random(K) < sparsity, rng.choice([-1.0, 1.0], K), 0.0)
    kern = CausalKernels(n)
    res = ResidualKernels(n, ratio, noise)
    samp = CausalGaussianSampler(rng.standard_normal((n, K)), 1e-8)
    hist = CausalTangentHistory(n, 1)  # one "sample": the deterministic tangent
    dbeta = np.zeros((n, K))
    dbeta[0] = -beta_star  # β^0 = 0
    tang = np.zeros((n_steps, 1))  # ∂Δβ^k/∂h^j, rows j
    for k in range(n):
        kern.set_C_row(k, dbeta[: k + 1] @ dbeta[k] / K)
        if k:
            hist.append(tang[:k])
        kern.set_R_row(k, tang[:k, 0])
        cr = res.update(k, kern.C[k, : k + 1], kern.R[k, :k])
        if k == n_steps:
            break
        zeta = samp.next(cr / ratio)
        g = zeta + res.M[k, : k + 1] @ dbeta[: k + 1]
        dg = hist.contract(res.M[k, : k + 1]) if k else np.zeros((0, 1))
        tang[:k] -= lr * dg
        tang[k] = lr  # kick: −η(g − h) → +η
        dbeta[k + 1] = dbeta[k] - lr * g
    kern.check_causal()
    # batch standard error of diag C_Δ
    batches = dbeta.reshape(n, 10, K // 10)
    c_sem = (batches**2).mean(axis=2).std(axis=1, ddof=1) / np.sqrt(10)
    return kern, res, c_sem


@pytest.mark.parametrize("ratio,noise", [(0.5, 0.0), (2.0, 0.3)])
def test_linear_dmft_reproduces_marchenko_pastur_kernels(ratio, noise):
    rho, lr, T = 0.3, 0.15, 25
    kern, res, c_sem = _linear_dmft(ratio, rho, noise, lr, T, K=40_000, seed=6)

    # Response: deterministic, so it must match the closed form to rounding error.
    R_ref = np.zeros((T + 1, T + 1))
    mom = [_mp_integral(lambda lam, m=m: (1 - lr * lam) ** m, ratio) for m in range(T)]
    for k in range(1, T + 1):
        for j in range(k):
            R_ref[k, j] = lr * mom[k - j - 1]
    np.testing.assert_allclose(kern.R, R_ref, atol=1e-10)

    # Correlation diagonal (test error) and train error: Monte-Carlo in the K samples, so compared
    # within 5 standard errors (+ a 0.5 % allowance for the Bernoulli support fluctuation, which the
    # batch error of C_Δ already contains, and the error of E_tr inherited from C_Δ).
    for k in (0, 3, 10, T):
        a_k = lambda lam, k=k: (1 - (1 - lr * lam) ** k) / lam
        c_ref = rho * _mp_integral(lambda lam: (1 - lr * lam) ** (2 * k), ratio)
        c_ref += noise**2 / ratio * _mp_integral(lambda lam: lam * a_k(lam) ** 2, ratio, include_atom=False)
        assert abs(kern.C[k, k] - c_ref) < 5 * c_sem[k] + 5e-3 * c_ref
        tr_ref = rho * _mp_integral(lambda lam: lam * (1 - lr * lam) ** (2 * k), ratio, include_atom=False)
        tr_ref += noise**2 * (_mp_integral(lambda lam: (1 - lr * lam) ** (2 * k), ratio, include_atom=False)
                              / ratio + max(0.0, 1 - 1 / ratio))
        assert abs(res.C_r[k, k] - tr_ref) < 5 * c_sem[k] + 5e-3 * tr_ref + 1e-12
