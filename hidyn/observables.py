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
