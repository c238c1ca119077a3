"""Population gradient flow of low-rank matrix sensing (matrix_sensing.md §2–§5).

Every function works in the basis of the ground truth: ``lam`` (n,) are its eigenvalues λ₁ ≥ … ≥ λ_n ≥ 0
(zero beyond the rank) and ``Y`` = Vᵀ X the student factor in that basis, so M* = diag(lam).  Leading
axes of ``Y`` (seeds) broadcast.  No I/O.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["riccati_naive", "population_flow", "factor_observables", "incremental_limit",
           "late_time_overparam", "asymmetric_flow", "asymmetric_observables", "MAX_GROWTH_EXPONENT"]

#: each restart of the stable evaluation grows the factor by at most e^(λ_max·h) with 2·λ_max·h ≤ this
MAX_GROWTH_EXPONENT = 6.0


def _s(lam, t):
    """s_i(t) = ∫₀ᵗ e^{2λ_i u} du = expm1(2λ_i t)/(2λ_i), and t where λ_i = 0 (§2)."""
    lam = np.asarray(lam, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(lam > 0, np.expm1(2.0 * lam * t) / np.where(lam > 0, 2.0 * lam, 1.0), t)
    return s


def riccati_naive(lam, Y0, t):
    """P(t) by (2.2) as written: e^{Λt}Y₀[I + 2Y₀ᵀS(t)Y₀]⁻¹Y₀ᵀe^{Λt}, shape (..., n, n).

    Exact in exact arithmetic; in floating point it loses the later-learnt directions once
    e^{2λ₁t} ≳ 1e16 and overflows past 1e308 (§3).  Kept as the reference the stable evaluation is
    tested against at moderate t.
    """
    lam = np.asarray(lam, dtype=np.float64)
    Y0 = np.asarray(Y0, dtype=np.float64)
    k = Y0.shape[-1]
    E = np.exp(lam * t)[:, None]
    B = E * Y0
    K = np.eye(k) + 2.0 * np.swapaxes(Y0, -1, -2) @ (_s(lam, t)[:, None] * Y0)
    return B @ np.linalg.solve(K, np.swapaxes(B, -1, -2))


def _restart(Y, two_s, grow, eye):
    """One exact restart (3.1): a factor of P(t + h) from a factor Y of P(t).

    ``two_s`` = 2s(h) and ``grow`` = e^{Λh} as (n, 1) columns, ``eye`` = I_k.
    """
    Yt = np.swapaxes(Y, -1, -2)
    L = np.linalg.cholesky(eye + Yt @ (two_s * Y))
    # Y L^{-T} = (L^{-1} Yᵀ)ᵀ; then the exact diagonal growth e^{Λh}
    return grow * np.swapaxes(np.linalg.solve(L, Yt), -1, -2)


def population_flow(lam, Y0, times):
    """Stable closed-form population gradient flow (§3): a factor Y(t) of P(t) at every time.

    Parameters
    ----------
    lam : array (n,)
        Eigenvalues of M* (≥ 0), in the basis of ``Y0``.
    Y0 : array (..., n, k)
        Initial factor(s) in that basis.
    times : array (T,)
        Sorted times ≥ 0 (gradient-flow time).

    Returns
    -------
    Y : ndarray (..., T, n, k)
        Factors with Y Yᵀ = P(t) exactly in exact arithmetic (restarts of (2.2) with
        2·λ_max·h ≤ :data:`MAX_GROWTH_EXPONENT`).
    """
    lam = np.asarray(lam, dtype=np.float64)
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("lam is invalid: the eigenvalues of M* must be finite and ≥ 0 (the symmetric flow "
                         "needs a PSD ground truth)")
    Y = np.array(Y0, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or np.any(np.diff(times) < 0) or (times.size and times[0] < 0):
        raise ValueError("times must be a sorted 1-D array of times ≥ 0")
    h_max = MAX_GROWTH_EXPONENT / (2.0 * lam.max()) if lam.max() > 0 else math.inf
    out = np.empty(Y.shape[:-2] + (times.size,) + Y.shape[-2:])
    now = 0.0
    for j, t in enumerate(times):
        span = t - now
        if span > 0:
            n_sub = max(1, math.ceil(span / h_max)) if math.isfinite(h_max) else 1
            h = span / n_sub
            two_s, grow, eye = 2.0 * _s(lam, h)[:, None], np.exp(lam * h)[:, None], np.eye(Y.shape[-1])
            for _ in range(n_sub):
                Y = _restart(Y, two_s, grow, eye)
            now = t
        out[..., j, :, :] = Y
    return out


def factor_observables(lam, Y, n_signal: int):
    """test_loss ‖YYᵀ − diag(λ)‖²_F, top-k eigenvalues of YYᵀ and their alignment with the signal.

    Parameters
    ----------
    lam : (n,) eigenvalues of M*
    Y : (..., n, k) factors
    n_signal : int
        r: the first r basis vectors span the range of M*.

    Returns
    -------
    dict with ``test_loss`` (...), ``eigenvalues`` (..., min(n, k)) decreasing, ``alignment``
    (..., min(n, k)) = squared norm of the eigenvector's first r coordinates.
    """
    lam = np.asarray(lam, dtype=np.float64)
    P = Y @ np.swapaxes(Y, -1, -2)
    D = P - np.diag(lam)
    loss = np.sum(D * D, axis=(-2, -1))
    U, s, _ = np.linalg.svd(Y, full_matrices=False)
    align = np.sum(U[..., :n_signal, :] ** 2, axis=-2)
    return {"test_loss": loss, "eigenvalues": s ** 2, "alignment": align}


def incremental_limit(lam, Y0, times, *, rtol_equal: float = 1e-9):
    """The α → 0 staircase (§4): eigenvalue curves, jump times and the loss plateaus.

    Direction i (distinct σ_i, learnt in decreasing order) follows the scalar Riccati solution (4.1),
    λ_i(t) = σ_i ρ_i / (ρ_i + (σ_i − ρ_i)e^{−2σ_i t}), with ρ_i the squared norm of its initial row's
    residual after projecting out the rows of the directions learnt before (4.2); a group of equal σ
    uses the squared singular values of its residual block.  At most k directions are learnt.

    Returns
    -------
    dict: ``eigenvalues`` (..., T, min(n, k)) sorted decreasingly (unlearnt and spurious directions are
    0 in this limit), ``test_loss`` (..., T) = Σ_i (σ_i − λ_i(t))² over the r signal directions,
    ``jump_times`` (..., r) midpoints t_i = log(σ_i/ρ_i − 1)/(2σ_i) (inf if never learnt),
    ``rho`` (..., r).
    """
    lam = np.asarray(lam, dtype=np.float64)
    Y0 = np.asarray(Y0, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    r = int(np.count_nonzero(lam > 0))
    sig = lam[:r]
    if np.any(np.diff(sig) > 0):
        raise ValueError("lam must be sorted decreasingly")
    k = Y0.shape[-1]
    lead = Y0.shape[:-2]
    rho = np.zeros(lead + (r,))
    i = 0
    while i < r:
        j = i
        while j + 1 < r and abs(sig[j + 1] - sig[i]) <= rtol_equal * sig[i]:
            j += 1
        prev = Y0[..., :i, :]                                   # rows learnt before, (..., i, k)
        block = Y0[..., i:j + 1, :]
        if i > 0:
            # orthogonal projector onto span(prev rows) in R^k via a QR of their transpose
            Qp, _ = np.linalg.qr(np.swapaxes(prev, -1, -2))
            Qp = Qp[..., :, :min(i, k)]
            block = block - (block @ Qp) @ np.swapaxes(Qp, -1, -2)
        sv = np.linalg.svd(block, compute_uv=False)             # (..., min(g, k))
        g = j - i + 1
        vals = np.zeros(lead + (g,))
        vals[..., :sv.shape[-1]] = sv ** 2
        rho[..., i:j + 1] = vals
        i = j + 1
    rho = np.where(rho > 1e-300, rho, 0.0)
    t = times[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        curves = np.where(rho[..., None, :] > 0,
                          sig * rho[..., None, :] / (rho[..., None, :] + (sig - rho[..., None, :])
                                                     * np.exp(-2.0 * sig * t)), 0.0)
        jumps = np.where((rho > 0) & (rho < sig), np.log(sig / np.where(rho > 0, rho, 1.0) - 1.0) / (2 * sig),
                         np.where(rho >= sig, 0.0, np.inf))
    loss = np.sum((sig - curves) ** 2, axis=-1)
    width = min(lam.size, k)
    ev = np.zeros(lead + (times.size, width))
    take = min(r, width)
    ev[..., :take] = -np.sort(-curves, axis=-1)[..., :take]
    return {"eigenvalues": ev, "test_loss": loss, "jump_times": jumps, "rho": rho}


def late_time_overparam(lam, Y0, times):
    """The k > r late-time law (5.1)–(5.2): spurious eigenvalues μ_j/(1 + 2μ_j t) and their loss.

    μ_j are the eigenvalues of Wᵀ Y_nᵀ Y_n W, W an orthonormal basis of the complement of the signal
    rows' span in R^k.  Valid once the signal block has saturated (up to O(e^{−2σ_r t})).

    Returns
    -------
    dict: ``mu`` (..., k − r), ``spurious`` (..., T, k − r) and ``test_loss`` (..., T).
    """
    lam = np.asarray(lam, dtype=np.float64)
    Y0 = np.asarray(Y0, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    r = int(np.count_nonzero(lam > 0))
    k = Y0.shape[-1]
    if k <= r:
        raise ValueError(f"student_rank k={k} is invalid for the over-parameterised law: must be > rank r={r}")
    _, _, Vt = np.linalg.svd(Y0[..., :r, :], full_matrices=True)
    W = np.swapaxes(Vt[..., r:, :], -1, -2)                    # (..., k, k − r)
    Yn = Y0[..., r:, :] @ W
    mu = np.linalg.eigvalsh(np.swapaxes(Yn, -1, -2) @ Yn)      # (..., k − r)
    nu = mu[..., None, :] / (1.0 + 2.0 * mu[..., None, :] * times[:, None])
    return {"mu": mu, "spurious": nu, "test_loss": np.sum(nu ** 2, axis=-1)}


def asymmetric_flow(lam, F0, G0, times, *, rtol: float = 1e-11, atol: float | None = None):
    """Population gradient flow of ½‖FGᵀ − diag(λ)‖²_F (§5): Ḟ = −ΔG, Ġ = −ΔᵀF by DOP853.

    There is no closed form (the flow of FGᵀ is not autonomous), so this integrates the factors.
    ``F0``, ``G0`` (n, k) are in the singular basis of M*.  Returns F, G of shape (T, n, k) and the
    solver's ``info`` (status, nfev).
    """
    from scipy.integrate import solve_ivp

    lam = np.asarray(lam, dtype=np.float64)
    F0 = np.asarray(F0, dtype=np.float64)
    G0 = np.asarray(G0, dtype=np.float64)
    n, k = F0.shape
    times = np.asarray(times, dtype=np.float64)
    scale = max(float(np.abs(F0).max()), float(np.abs(G0).max()), 1e-300)
    atol = 1e-12 * scale if atol is None else atol

    def rhs(_, z):
        F = z[:n * k].reshape(n, k)
        G = z[n * k:].reshape(n, k)
        D = F @ G.T
        D[np.diag_indices(n)] -= lam
        return np.concatenate([(-D @ G).ravel(), (-D.T @ F).ravel()])

    z0 = np.concatenate([F0.ravel(), G0.ravel()])
    if times[-1] == 0:
        Z = np.repeat(z0[None], times.size, axis=0)
        info = {"status": 0, "nfev": 0}
    else:
        sol = solve_ivp(rhs, (0.0, float(times[-1])), z0, method="DOP853", t_eval=times, rtol=rtol, atol=atol)
        if sol.status != 0:
            raise RuntimeError(f"asymmetric flow integration failed: {sol.message}")
        Z = sol.y.T
        info = {"status": int(sol.status), "nfev": int(sol.nfev)}
    return Z[:, :n * k].reshape(-1, n, k), Z[:, n * k:].reshape(-1, n, k), info


def asymmetric_observables(lam, F, G, n_signal: int):
    """test_loss ‖FGᵀ − diag(λ)‖²_F, top-k singular values of FGᵀ and their left vectors' alignment."""
    lam = np.asarray(lam, dtype=np.float64)
    P = F @ np.swapaxes(G, -1, -2)
    D = P - np.diag(lam)
    loss = np.sum(D * D, axis=(-2, -1))
    k = F.shape[-1]
    U, s, _ = np.linalg.svd(P)
    width = min(P.shape[-1], k)
    align = np.sum(U[..., :n_signal, :width] ** 2, axis=-2)
    return {"test_loss": loss, "eigenvalues": s[..., :width], "alignment": align}
