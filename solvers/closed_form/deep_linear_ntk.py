"""Kernel (NTP) limit of a deep linear network and the finite-width tangent kernel (deep_linear.md §3).

Solvers take arrays, return arrays: no I/O, no plotting.
"""
from __future__ import annotations

import numpy as np

__all__ = ["tangent_kernel", "ntp_kernel_constant", "kernel_gd", "sp_lr_max"]


def tangent_kernel(W0, hidden, v, layer_lrs):
    """Learning-rate-weighted tangent kernel of the end-to-end map β at finite width (eq. 3.3).

    Parameters
    ----------
    W0 : ndarray (n, d)
        Input layer (acting on x̂ = x/√d).
    hidden : list of ndarray (n, n)
        W_1 … W_L.
    v : ndarray (n,)
        Readout.
    layer_lrs : ndarray (L + 2,)
        Effective learning rate of each layer (input, hidden…, readout).

    Returns
    -------
    K : ndarray (d, d)
        β(t+1) = β(t) − K ∇_β L + O(η²).
    """
    L = len(hidden)
    A = [np.eye(W0.shape[1]), W0]                      # A_{-1} = I, A_0 = W0, A_ℓ = W_ℓ A_{ℓ-1}
    for W in hidden:
        A.append(W @ A[-1])
    g = [None] * (L + 1)
    g[L] = v
    for ell in range(L, 0, -1):
        g[ell - 1] = hidden[ell - 1].T @ g[ell]
    K = sum(layer_lrs[ell] * float(g[ell] @ g[ell]) * (A[ell].T @ A[ell]) for ell in range(L + 1))
    return K + layer_lrs[L + 1] * (A[L + 1].T @ A[L + 1])


def ntp_kernel_constant(depth: int) -> float:
    """k/η of the NTP kernel limit K = η(L + 2) I (eq. 3.3 at n → ∞)."""
    return float(depth + 2)


def sp_lr_max(width, depth: int, lam_max: float):
    """Largest stable η of SP at width n in the kernel approximation: 2/((1 + (L+1)n) λ_max) (§3)."""
    return 2.0 / ((1.0 + (depth + 1) * np.asarray(width, dtype=np.float64)) * lam_max)


def kernel_gd(S_hat, c_hat, yy, w_star, k, steps, *, beta0_var: float = 1.0):
    """Expected losses of GD in the kernel limit β(t+1) = β(t) − k(Σ̂β(t) − ĉ), β(0) ~ N(0, v I) (eq. 3.4–3.5).

    Parameters
    ----------
    S_hat : ndarray (d, d)
        X̂ᵀX̂/P.
    c_hat : ndarray (d,)
        X̂ᵀy/P.
    yy : float
        yᵀy/P.
    w_star : ndarray (d,)
        Teacher (raw-input coordinates).
    k : ndarray (R,)
        Kernel constants η(L + 2), one per learning rate.
    steps : ndarray (T,) of int
        Step counts.
    beta0_var : float
        Variance of each entry of β(0) (1 for NTP: f(0) is the GP with covariance x̂ᵀx̂').

    Returns
    -------
    dict: ``train_loss``, ``test_loss`` (T, R), expectations over β(0); ``end_to_end`` (T, R, d), the
    mean map E β(t)/√d.  (No alignment: a run's alignment is not a function of the mean map.)
    """
    d = S_hat.shape[0]
    lam, U = np.linalg.eigh(S_hat)
    lam = np.clip(lam, 0.0, None)
    cu = U.T @ c_hat                                           # ĉ in the eigenbasis
    k = np.atleast_1d(np.asarray(k, dtype=np.float64))
    steps = np.asarray(steps, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        m = 1.0 - k[None, :, None] * lam[None, None, :]         # (1, R, d)
        mt = m ** steps[:, None, None]                          # (T, R, d)
        # Σ_{s<t} m^s k = (1 − m^t)/λ for λ > 0; ĉ has no component where λ = 0
        safe = np.where(lam > 1e-14 * max(lam.max(), 1e-300), lam, 1.0)
        coef = np.where(lam > 1e-14 * max(lam.max(), 1e-300), (1.0 - mt) / safe, 0.0)
        b_u = coef * cu                                         # (T, R, d) mean map in eigenbasis
        train = 0.5 * (np.sum(lam * b_u ** 2, -1) - 2.0 * np.sum(b_u * cu, -1) + yy
                       + beta0_var * np.sum(lam * mt ** 2, -1))
        b = b_u @ U.T / np.sqrt(d)                              # E β/√d in input coordinates
        test = 0.5 * (np.sum((b - w_star) ** 2, -1) + beta0_var * np.sum(mt ** 2, -1) / d)
    return {"train_loss": train, "test_loss": test, "end_to_end": b}
