"""Observables computed from order parameters: every loss formula of hidyn lives here, once.

Theory solvers and Monte-Carlo backends both call these functions, so a simulated and a predicted
`test_loss` can never disagree by a convention.  Conventions per family (see the theory notes):

* DLN (dln.md §2.2): losses carry no ½ and `test_loss` includes σ².
* two_layer (teacher_student.md §5) and single_index (single_index.md §1): `test_loss` carries a ½ and
  excludes the label noise.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------------------------------
# Diagonal linear networks (dln.md §2.2)
# --------------------------------------------------------------------------------------------------
DLN_SUPPORT_THRESHOLD = 0.5


def dln_observables(beta, beta_star, noise: float) -> dict:
    """DLN observables of §2.2 from the weights, batched over leading dims.

    Parameters
    ----------
    beta, beta_star : ndarray, shape (..., d)
    noise : float
        Label-noise standard deviation σ.

    Returns
    -------
    dict of ndarray, shape (...)
        ``test_loss`` = ‖β − β*‖²/d + σ² (no ½), ``overlap`` = β·β*/d, ``norm1`` = ‖β‖₁/d,
        ``norm2`` = ‖β‖²/d, ``tpr`` = P(|β_i| > 0.5 | β*_i ≠ 0), ``fpr`` = P(|β_i| > 0.5 | β*_i = 0)
        (0 when every coordinate is in the support).
    """
    beta = np.asarray(beta)
    beta_star = np.asarray(beta_star)
    diff = beta - beta_star
    big = np.abs(beta) > DLN_SUPPORT_THRESHOLD
    support = beta_star != 0
    n_sup = np.maximum(support.sum(axis=-1), 1)
    n_null = np.maximum((~support).sum(axis=-1), 1)
    return {
        "test_loss": np.mean(diff * diff, axis=-1) + noise ** 2,
        "overlap": np.mean(beta * beta_star, axis=-1),
        "norm1": np.mean(np.abs(beta), axis=-1),
        "norm2": np.mean(beta * beta, axis=-1),
        "tpr": np.sum(big & support, axis=-1) / n_sup,
        "fpr": np.sum(big & ~support, axis=-1) / n_null,
    }


def dln_train_loss(residual) -> np.ndarray:
    """E_tr = (1/n)‖y − Xβ‖² from the residual r = Xβ − y of shape (..., n) (no ½, §2.2)."""
    residual = np.asarray(residual)
    return np.mean(residual * residual, axis=-1)


# --------------------------------------------------------------------------------------------------
# Spiked-covariance single-index model (single_index.md §1, §2)
# --------------------------------------------------------------------------------------------------
def _single_index_loss_moments(m, s, q, link, activation, spike, spike_angle, standardize_target):
    """(E[g̃²], E[g̃σ], E[σ²]) at each (m, s, q), g̃ = g(τν), broadcast over the inputs.

    Exact (Mehler) when g or σ is a polynomial, kink-aware polar quadrature otherwise
    (single_index.md §3).  Entries where m, s or q is not finite are NaN.
    """
    from hidyn.hermite import GaussianMoments, projection_covariance, target_scale

    tau = target_scale(spike, spike_angle, standardize_target)
    engine = GaussianMoments(link, activation, tau=tau)
    Q, M, R = projection_covariance(m, s, q, spike=spike, spike_angle=spike_angle)
    Q, M, R = np.broadcast_arrays(np.asarray(Q, dtype=np.float64), np.asarray(M, dtype=np.float64),
                                  np.asarray(R, dtype=np.float64))
    out = np.full((3,) + Q.shape, np.nan)
    ok = np.isfinite(Q) & np.isfinite(M)
    for idx in np.ndindex(Q.shape):
        if ok[idx]:
            out[(slice(None),) + idx] = engine.losses(max(float(Q[idx]), 0.0), float(M[idx]),
                                                      float(R[idx]))
    return out[0], out[1], out[2]


def _scalar_or_array(x):
    return float(x) if np.ndim(x) == 0 else x


def single_index_test_loss(m, s, q, *, link, activation, spike=0.0, spike_angle=0.0,
                           standardize_target=True):
    """Population test error ½E[(g(τν) − σ(λ))²] of the single-index model (noiseless, with ½).

    Parameters
    ----------
    m, s, q : float or ndarray (broadcastable)
        m = ⟨w, θ*⟩, s = ⟨w, u⟩ (``m_spike``), q = ‖w‖², e.g. measured along a simulation.
    link, activation : link specifications (see :func:`hidyn.hermite.make_link`)
        Target g and student σ; ``"he1"``…``"he4"`` are the normalised h_k.
    spike, spike_angle : float
        κ ≥ 0 and φ ∈ [0, π/2] of Σ = I + κuuᵀ, cos φ = ⟨u, θ*⟩.
    standardize_target : bool
        τ = (1 + κ cos²φ)^{−1/2} (True) or τ = 1.

    Returns
    -------
    float or ndarray, broadcast shape of (m, s, q)
        ½(E[g̃²] − 2E[g̃σ] + E[σ²]) with (λ, ν) of covariance (q + κs², m + κcs, 1 + κc²)
        (single_index.md §1–§2).  NaN where an input is not finite.
    """
    e_gg, e_gs, e_ss = _single_index_loss_moments(m, s, q, link, activation, spike, spike_angle,
                                                  standardize_target)
    return _scalar_or_array(0.5 * (e_gg - 2.0 * e_gs + e_ss))


def single_index_objective(m, s, q, *, link, activation, loss, spike=0.0, spike_angle=0.0, noise=0.0,
                           standardize_target=True):
    """Population training loss L of single_index.md §2 (the ``objective`` variable).

    Parameters
    ----------
    m, s, q, link, activation, spike, spike_angle, standardize_target :
        As in :func:`single_index_test_loss`.
    loss : {"correlation", "square"}
    noise : float
        Label-noise standard deviation (Δ = noise²).

    Returns
    -------
    float or ndarray
        correlation: L = −E[g̃σ(λ)]; square: L = ½(E[g̃²] − 2E[g̃σ] + E[σ²]) + ½Δ.
    """
    if loss not in ("correlation", "square"):
        raise ValueError(f"loss={loss!r} is not known; valid: correlation, square")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be ≥ 0 (label-noise standard deviation), got {noise!r}")
    e_gg, e_gs, e_ss = _single_index_loss_moments(m, s, q, link, activation, spike, spike_angle,
                                                  standardize_target)
    if loss == "correlation":
        return _scalar_or_array(-e_gs)
    return _scalar_or_array(0.5 * (e_gg - 2.0 * e_gs + e_ss) + 0.5 * noise * noise)
