"""Admissible sets of the order parameters: when a run (or an ODE) has lost its meaning.

A learning rate far beyond stability does not always make the loss explode: with a bounded activation
(erf, tanh, sigmoid) the student weights of a two-layer network grow without bound while the loss stays
O(1) because the units saturate; an ODE integrated with a too-large step control may leave the set of
overlaps that real weight vectors can have.  Both must be reported as a divergence, never returned as
ordinary-looking curves.  This module holds, per family, a *margin* that is ≥ 0 while the order
parameters are admissible and < 0 once they are not.  The Monte-Carlo driver
(:func:`hidyn.solvers.mc.driver.run`, through ``hidyn.families.<model>.inadmissible``) and the ODE
integrator (:func:`hidyn.solvers.ode.integrate.integrate`, as a terminal event) use the same margins.

Only numpy: solvers import this module.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PSD_RTOL", "PSD_RTOL_MC", "Q_RUNAWAY", "two_layer_margin", "two_layer_scale", "single_index_margin",
           "FEASIBILITY_RTOL", "FEASIBILITY_RTOL_MC"]

#: relative round-off allowance on the smallest eigenvalue of Ω = [[Q, R], [Rᵀ, T]].  At finite d, Ω is
#: the Gram matrix W̃W̃ᵀ/d of real vectors, PSD up to round-off: its eigenvalues are exact to a few
#: ε·‖Ω‖ (ε = 1.2e-7 in float32, 2.2e-16 in float64); 1e-6 is above the float32 round-off of a Gram
#: matrix of a few units and far below any genuine violation, which is O(‖Ω‖) once it happens.
PSD_RTOL = 1e-6

#: the same allowance for Monte-Carlo overlaps, which may be computed in float32 (JAX backend) from
#: d-term sums: their round-off is ~ε32·log(d)·‖Ω‖ ≈ 1e-6 at d = 1000, so a well-learnt run (Ω singular:
#: Q = R = T) must not be flagged; a Gram matrix of real vectors can only lose PSD-ness by corruption,
#: which is O(‖Ω‖), so 1e-4 loses nothing
PSD_RTOL_MC = 1e-4

#: a student whose largest norm Q_kk exceeds Q_RUNAWAY × (its scale, :func:`two_layer_scale`) has run
#: away.  Every fixed point of the noise-free Saad–Solla ODE reproduces the teacher, so its Q_kk are
#: of the teacher's scale (Q = T for K = M, T = I; the Q of duplicated units equals T too), and label
#: noise moves them by O(ησ²).  Two decades above the larger of that scale and the initial one are
#: therefore no fixed point of any run.  Measured (K = M = 2, erf, T = I, d = 200, t ≤ 50): at
#: η ≤ 2 the largest Q_kk stays ≤ 1.2; at η = 5 it grows like t^(2/3) (33 at t = 50); at η = 50 it
#: reaches 124 at t = 1.6 and 1 900 at t = 50 while ε_g stays bounded (erf saturates), the silent
#: divergence of issue #12.  The same growth in the ODE (η² E[g'²Δ²] term of dQ/dt, note §3)
#: reaches 1 840 at t = 50.
Q_RUNAWAY = 100.0

#: relative allowance on the single-index feasibility gap q − m² − (s − cm)²/(1 − c²) along the ODE
#: (round-off of the integrator's state, rtol ≤ 1e-8)
FEASIBILITY_RTOL = 1e-6

#: the same for Monte-Carlo overlaps (float32 runs: d-term sums with round-off ~ε32·log d; see
#: :data:`PSD_RTOL_MC`)
FEASIBILITY_RTOL_MC = 1e-4


def two_layer_scale(T, Q0=None) -> float:
    """Scale of the student norms: max(1, max_n T_nn, max_k Q_kk(0)) (see :data:`Q_RUNAWAY`)."""
    scale = max(1.0, float(np.max(np.diagonal(np.asarray(T, dtype=np.float64)))))
    if Q0 is not None:
        q0 = np.asarray(Q0, dtype=np.float64)
        diag = np.diagonal(q0, axis1=-2, axis2=-1)
        if np.all(np.isfinite(diag)):
            scale = max(scale, float(np.max(diag)))
    return scale


def two_layer_margin(Q, R, T, scale: float, psd_rtol: float = PSD_RTOL):
    """Admissibility margins of two-layer overlaps, batched over leading dims.

    Parameters
    ----------
    Q : array_like, shape (..., K, K)
    R : array_like, shape (..., K, M)
    T : array_like, shape (M, M)
    scale : float
        Norm scale (:func:`two_layer_scale`).
    psd_rtol : float
        Round-off allowance on the smallest eigenvalue of Ω, relative to max(1, ‖Ω‖).

    Returns
    -------
    psd : ndarray, shape (...)
        λ_min(Ω)/max(1, ‖Ω‖) + psd_rtol: < 0 when Ω = [[Q, R], [Rᵀ, T]] is not positive semi-definite,
        i.e. no real weight vectors have these overlaps.
    runaway : ndarray, shape (...)
        1 − max_k Q_kk / (Q_RUNAWAY·scale): < 0 when the student norms ran away (:data:`Q_RUNAWAY`).
    Non-finite overlaps give −inf in both.
    """
    Q = np.asarray(Q, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    lead = Q.shape[:-2]
    Tb = np.broadcast_to(T, lead + T.shape)
    omega = np.concatenate([np.concatenate([Q, R], axis=-1),
                            np.concatenate([np.swapaxes(R, -1, -2), Tb], axis=-1)], axis=-2)
    finite = np.all(np.isfinite(omega.reshape(lead + (-1,))), axis=-1)
    safe = np.where(finite[..., None, None], omega, 0.0)
    lam = np.linalg.eigvalsh(0.5 * (safe + np.swapaxes(safe, -1, -2)))
    norm = np.maximum(1.0, np.max(np.abs(lam), axis=-1))
    psd = np.where(finite, lam[..., 0] / norm + psd_rtol, -np.inf)
    qmax = np.max(np.diagonal(safe[..., :Q.shape[-1], :Q.shape[-1]], axis1=-2, axis2=-1), axis=-1)
    runaway = np.where(finite, 1.0 - qmax / (Q_RUNAWAY * scale), -np.inf)
    return psd, runaway


def single_index_margin(m, s, q, c: float, rtol: float = FEASIBILITY_RTOL):
    """Feasibility margin of single-index overlaps (docs/theory/single_index.md §1, *Feasibility*), batched.

    The Gram matrix [[q, m, s], [m, 1, c], [s, c, 1]] of (w, θ*, u) must be PSD:
    q ≥ m² + (s − cm)²/(1 − c²) for |c| < 1 (for c = ±1: s = c·m and q ≥ m²).  On the sphere (q = 1)
    this contains |m| ≤ 1 and |cosine| ≤ 1.

    Returns
    -------
    ndarray, shape of the broadcast inputs
        (feasibility gap)/max(1, q) + rtol: < 0 when no vector w has these overlaps; −inf where an
        input is not finite.
    """
    m, s, q = (np.asarray(a, dtype=np.float64) for a in (m, s, q))
    with np.errstate(invalid="ignore", over="ignore"):
        if abs(c) >= 1.0:
            gap = q - m * m - np.abs(s - c * m)
        else:
            gap = q - m * m - (s - c * m) ** 2 / (1.0 - c * c)
        margin = gap / np.maximum(1.0, np.abs(q)) + rtol
    return np.where(np.isfinite(margin), margin, -np.inf)
