"""Observables computed from order parameters: every loss formula of hidyn lives here, once.

Theory solvers and Monte-Carlo backends both call these functions, so a simulated and a predicted
`test_loss` can never disagree by a convention.  Conventions per family (see the theory notes):

* DLN (docs/theory/dln.md §2.2): losses carry no ½ and `test_loss` includes σ².
* two_layer (docs/theory/teacher_student.md §5) and single_index (docs/theory/single_index.md §1): `test_loss`
  carries a ½ and excludes the label noise.
"""
from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------
# Diagonal linear networks (docs/theory/dln.md §2.2)
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
# Spiked-covariance single-index model (docs/theory/single_index.md §1, §2)
# --------------------------------------------------------------------------------------------------
def _single_index_loss_moments(m, s, q, link, activation, spike, spike_angle, standardize_target):
    """(E[g̃²], E[g̃σ], E[σ²]) at each (m, s, q), g̃ = g(τν), broadcast over the inputs.

    Exact (Mehler) when g or σ is a polynomial, kink-aware polar quadrature otherwise
    (docs/theory/single_index.md §3).  Entries where m, s or q is not finite are NaN.
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
        (docs/theory/single_index.md §1–§2).  NaN where an input is not finite.
    """
    e_gg, e_gs, e_ss = _single_index_loss_moments(m, s, q, link, activation, spike, spike_angle,
                                                  standardize_target)
    return _scalar_or_array(0.5 * (e_gg - 2.0 * e_gs + e_ss))


def single_index_objective(m, s, q, *, link, activation, loss, spike=0.0, spike_angle=0.0, noise=0.0,
                           standardize_target=True):
    """Population training loss L of docs/theory/single_index.md §2 (the ``objective`` variable).

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


# --------------------------------------------------------------------------------------------------
# Teacher–student two-layer networks / soft committee machines (docs/theory/teacher_student.md §5)
# --------------------------------------------------------------------------------------------------
def _two_layer_fields(Q, R, T, v, A):
    """Broadcast the overlaps to a batch of field covariances Ω = [[Q, R], [Rᵀ, T]] and c = (v, −A).

    Returns Omega (..., K+M, K+M), c (..., K+M) and K; raises ValueError naming the bad argument.
    """
    Q = np.asarray(Q, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if R.ndim < 2:
        raise ValueError(f"R must have shape (..., K, M), got {R.shape}")
    K, M = R.shape[-2:]
    if Q.ndim < 2 or Q.shape[-2:] != (K, K):
        raise ValueError(f"Q must have shape (..., K, K) = (..., {K}, {K}) to match R {R.shape}, got {Q.shape}")
    if T.ndim < 2 or T.shape[-2:] != (M, M):
        raise ValueError(f"T must have shape (M, M) or (..., M, M) = (..., {M}, {M}), got {T.shape}")
    if v.ndim < 1 or v.shape[-1] != K:
        raise ValueError(f"v must have shape (K,) or (..., K) with K = {K}, got {v.shape}")
    if A.ndim < 1 or A.shape[-1] != M:
        raise ValueError(f"A must have shape (M,) or (..., M) with M = {M}, got {A.shape}")
    try:
        batch = np.broadcast_shapes(Q.shape[:-2], R.shape[:-2], T.shape[:-2], v.shape[:-1], A.shape[:-1])
    except ValueError:
        raise ValueError(f"leading (batch) dimensions of Q {Q.shape}, R {R.shape}, T {T.shape}, v {v.shape} "
                         f"and A {A.shape} do not broadcast") from None
    L = K + M
    omega = np.empty(batch + (L, L))
    omega[..., :K, :K] = Q
    omega[..., :K, K:] = R
    omega[..., K:, :K] = np.swapaxes(R, -1, -2)
    omega[..., K:, K:] = T
    c = np.empty(batch + (L,))
    c[..., :K] = v
    c[..., K:] = -A
    return omega, c, K


def two_layer_test_loss(Q, R, T, v, A, activation, *, check=True):
    """Generalisation error ε_g of a soft committee machine (docs/theory/teacher_student.md §5).

    ε_g = ½ E[(ŷ − y_clean)²] = ½ Σ_ab c_a c_b I2(a, b) with c = (v, −A) and I2 the Gaussian average of
    note §3 — measured against the noise-free teacher, so it carries a ½ and no σ²/2.  Closed forms for
    ``erf``, ``linear`` and ``relu``; Gauss–Hermite quadrature otherwise (:mod:`hidyn.gaussian`).

    Parameters
    ----------
    Q : array_like, shape (..., K, K)
        Student–student overlaps W_i·W_k/d.
    R : array_like, shape (..., K, M)
        Student–teacher overlaps W_i·B_n/d.
    T : array_like, shape (M, M) or (..., M, M)
        Teacher–teacher overlaps B_n·B_m/d.
    v : array_like, shape (K,) or (..., K)
        Student second-layer weights.
    A : array_like, shape (M,) or (..., M)
        Teacher second-layer weights.
    activation : str, Activation or tuple
        g, shared by teacher and student (``"erf"`` is erf(x/√2)).
    check : bool
        Validate that Ω is positive semi-definite.  ODE solvers pass False: near a perfectly learnt
        teacher Ω is singular and the integration error may leave it negative by ~rtol.

    Returns
    -------
    float or ndarray, shape (...)
        ε_g (dimensionless, same units as the squared outputs); a float when no batch dimension.
        Entries whose overlaps are not finite (e.g. after a divergence) are NaN.

    Raises
    ------
    ValueError
        Inconsistent shapes, or finite overlaps for which Ω = [[Q, R], [Rᵀ, T]] is not positive
        semi-definite.
    """
    from hidyn.gaussian import check_covariance, two_layer_i2

    omega, c, _ = _two_layer_fields(Q, R, T, v, A)
    batch = omega.shape[:-2]
    ok = np.all(np.isfinite(omega), axis=(-1, -2)) & np.all(np.isfinite(c), axis=-1)
    out = np.full(batch, np.nan)
    if np.any(ok):
        om = check_covariance(omega[ok], "Omega = [[Q, R], [R^T, T]]") if check else omega[ok]
        i2 = two_layer_i2(activation, om, check=False)
        cc = c[ok]
        out[ok] = 0.5 * np.einsum("...a,...ab,...b->...", cc, i2, cc)
    return _scalar_or_array(out)


def two_layer_train_loss(test_loss, noise):
    """Expected online training loss of the two-layer model: ε_g + σ²/2 (docs/theory/teacher_student.md §5).

    Parameters
    ----------
    test_loss : float or array_like
        ε_g from :func:`two_layer_test_loss`.
    noise : float
        Output-noise standard deviation σ ≥ 0.

    Returns
    -------
    float or ndarray
        ½E[Δ²] on a fresh noisy sample.
    """
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise!r}")
    return _scalar_or_array(np.asarray(test_loss, dtype=np.float64) + 0.5 * noise * noise)
