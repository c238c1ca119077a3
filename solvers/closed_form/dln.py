"""Exact gradient-flow solution of the DLN on a whitened / population loss (docs/theory/dln.md §3).

With XᵀX = δI (or the population loss E[xxᵀ] = I) the loss separates, L = ½‖β − b‖² + const, and each
coordinate follows its own flow with g = β − b.  In the variables p = w+², q = w−² (β = p − q;
uv: w± = (u ± v)/2) the flow is ṗ = −2c·g·p, q̇ = +2c·g·q with c = 1 (uv) or 2 (pm clock), so pq = γ²
is conserved and x = p/γ solves a Riccati equation with constant coefficients (§3):

    x(t) = (x₊ − K·x₋·e^{−2Dct}) / (1 − K·e^{−2Dct}),  x± = (b ± D)/(2γ),  D = √(b² + 4γ²),
    K = (x₀ − x₊)/(x₀ − x₋),  β = γ(x − 1/x).

When one of p₀, q₀ vanishes (balanced init, Δ = 0) the flow is logistic and the sign of β is frozen.
Averages over the teacher prior are computed exactly: finite sums for point masses, adaptive
quadrature (``scipy.integrate.quad_vec``) for Gaussian components, and root finding on the monotone map
b ↦ β(t; b) for the support-recovery probabilities (indicators are not smooth enough for quadrature).

References
----------
Woodworth et al., COLT 2020, arXiv:2002.09277; Pesme & Flammarion, NeurIPS 2023, arXiv:2304.00488.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, special

__all__ = ["beta_flow", "prior_components", "curves"]

SUPPORT_THRESHOLD = 0.5  # |β_i| > 0.5 counts as "in the support" (docs/theory/dln.md §2.2)


def beta_flow(t, b, p0: float, q0: float, clock: float = 1.0):
    """β(t) of one coordinate under gradient flow on ½(β − b)², exactly.

    Parameters
    ----------
    t : array_like
        Times (uv gradient-flow units), broadcast against ``b``.
    b : array_like
        Per-coordinate minimiser (β* in the population setting).
    p0, q0 : float
        Initial w+(0)², w−(0)² (see :func:`hidyn.models.dln.initial_pq`); β₀ = p₀ − q₀.
    clock : float
        1 for the uv parametrisation, 2 for pm (its flow is the uv flow at time 2t, §2.3).

    Returns
    -------
    ndarray
        β(t), the broadcast shape of ``t`` and ``b``.
    """
    tau = clock * np.asarray(t, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    tau, b = np.broadcast_arrays(tau, b)
    if p0 > 0 and q0 > 0:
        return _riccati(tau, b, p0, q0)
    if p0 > 0:
        return _logistic(tau, b, p0)
    if q0 > 0:
        return -_logistic(tau, -b, q0)
    return np.zeros(tau.shape)


def _riccati(tau, b, p0, q0):
    gamma = math.sqrt(p0 * q0)
    x0 = math.sqrt(p0 / q0)
    D = np.sqrt(b * b + 4.0 * gamma * gamma)
    # The root with no cancellation is computed directly and the other from x₊x₋ = −1.
    pos = b >= 0
    big = np.where(pos, (b + D), (b - D)) / (2.0 * gamma)
    xp = np.where(pos, big, -1.0 / big)
    xm = np.where(pos, -1.0 / big, big)
    K = (x0 - xp) / (x0 - xm)
    E = np.exp(-2.0 * D * tau)
    x = (xp - K * xm * E) / (1.0 - K * E)
    return gamma * (x - 1.0 / x)


def _logistic(tau, b, beta0):
    """β̇ = −2β(β − b), β(0) = β₀ > 0 (q ≡ 0): β = β₀ / (e^{−2bτ} + β₀(1 − e^{−2bτ})/b)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        E = np.exp(-2.0 * b * tau)
        h = np.where(b == 0, 2.0 * tau, -np.expm1(-2.0 * b * tau) / np.where(b == 0, 1.0, b))
        out = beta0 / (E + beta0 * h)
    return np.where(np.isfinite(out), out, 0.0)


def prior_components(sparsity: float, teacher: str, b_noise: float = 0.0):
    """Mixture components of the joint law of (β*, b) with b = β* + b_noise·Z.

    Returns a list of dicts with ``weight``, ``mean`` and ``var`` of b, ``star`` (the value of β* for
    point-mass teachers, or None for the Gaussian teacher, where E[β*|b] = b/(1 + b_noise²)),
    ``star2`` = E[β*²] and ``support`` (whether β* ≠ 0).
    """
    s2 = b_noise ** 2
    comps = [dict(weight=1.0 - sparsity, mean=0.0, var=s2, star=0.0, star2=0.0, support=False)]
    if teacher == "rademacher":
        for sign in (1.0, -1.0):
            comps.append(dict(weight=sparsity / 2, mean=sign, var=s2, star=sign, star2=1.0, support=True))
    else:
        comps.append(dict(weight=sparsity, mean=0.0, var=1.0 + s2, star=None, star2=1.0, support=True))
    return [c for c in comps if c["weight"] > 0]


def _moments(times, comp, p0, q0, clock, rtol):
    """E over b of (β, β², |β|, β·β*, (β − b)²) for one component, each of shape (n_times,)."""
    star = comp["star"]
    shrink = None if star is not None else 1.0 / comp["var"]  # E[β*|b] = b·shrink (gauss teacher)

    def f(b):
        beta = beta_flow(times, b, p0, q0, clock)
        s = star if star is not None else b * shrink
        return np.stack([beta, beta * beta, np.abs(beta), beta * s, (beta - b) ** 2])

    if comp["var"] == 0.0:
        return f(comp["mean"])
    sd = math.sqrt(comp["var"])

    def weighted(z):
        return f(comp["mean"] + sd * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    val, _err = integrate.quad_vec(weighted, -np.inf, np.inf, epsabs=1e-13, epsrel=rtol)
    return val


def _prob_abs_above(times, comp, p0, q0, clock, thr=SUPPORT_THRESHOLD):
    """P(|β(t; b)| > thr) for b in the component; exact via the monotone map b ↦ β(t; b)."""
    out = np.empty(len(times))
    for i, t in enumerate(times):
        if comp["var"] == 0.0:
            out[i] = float(abs(beta_flow(t, comp["mean"], p0, q0, clock)) > thr)
            continue
        sd = math.sqrt(comp["var"])
        prob = 0.0
        for sign in (1.0, -1.0):
            # sign·β(t; b) − thr is increasing in sign·b (the 1-D flow preserves order in b)
            def h(z, sign=sign):
                return sign * beta_flow(t, comp["mean"] + sign * sd * z, p0, q0, clock) - thr

            lo, hi = -50.0, 50.0
            if h(hi) <= 0:
                continue  # never above the threshold
            if h(lo) > 0:
                prob += 1.0
                continue
            z0 = optimize.brentq(h, lo, hi, xtol=1e-14, rtol=1e-14)
            prob += special.ndtr(-z0)
        out[i] = prob
    return out


def curves(times, *, sparsity: float, teacher: str, noise: float, p0: float, q0: float,
           clock: float = 1.0, ratio: float | None = None, rtol: float = 1e-10) -> dict:
    """d → ∞ averages of the DLN observables under exact gradient flow (docs/theory/dln.md §2.2, §3).

    Parameters
    ----------
    times : array_like, shape (n_times,)
    sparsity, teacher, noise, p0, q0, clock
        As in :class:`hidyn.models.DLNSpec` and :func:`beta_flow`.
    ratio : float or None
        ``None``: population loss, b = β* and ``train_loss`` ≡ ``test_loss``.  δ ≥ 1: whitened design
        XᵀX = δI, b = β* + (σ/√δ)Z and E_tr = E(β − b)² + σ²(1 − 1/δ).
    rtol : float
        Relative tolerance of the quadrature over Gaussian components.

    Returns
    -------
    dict name -> ndarray (n_times,)
        ``train_loss``, ``test_loss``, ``overlap``, ``norm1``, ``norm2``, ``tpr``, ``fpr``.
    """
    times = np.asarray(times, dtype=np.float64)
    if ratio is not None and ratio < 1:
        raise ValueError(f"ratio={ratio!r}: the closed form needs a whitened design XᵀX = δI, which "
                         f"exists only for ratio ≥ 1 (use ratio=None for the population loss, or the "
                         f"DMFT for a Gaussian design)")
    b_noise = 0.0 if ratio is None else noise / math.sqrt(ratio)
    comps = prior_components(sparsity, teacher, b_noise)
    acc = np.zeros((5, times.size))
    star2 = 0.0
    tpr = np.zeros(times.size)
    fpr = np.zeros(times.size)
    w_support = sum(c["weight"] for c in comps if c["support"])
    w_null = sum(c["weight"] for c in comps if not c["support"])
    for c in comps:
        acc += c["weight"] * _moments(times, c, p0, q0, clock, rtol)
        star2 += c["weight"] * c["star2"]
        prob = _prob_abs_above(times, c, p0, q0, clock)
        if c["support"]:
            tpr += c["weight"] * prob / w_support
        else:
            fpr += c["weight"] * prob / w_null
    e_beta, e_beta2, e_abs, e_cross, e_resid = acc
    test = e_beta2 - 2.0 * e_cross + star2 + noise ** 2
    if ratio is None:
        train = test.copy()
    else:
        train = e_resid + noise ** 2 * (1.0 - 1.0 / ratio)
    return {"train_loss": train, "test_loss": test, "overlap": e_cross, "norm1": e_abs,
            "norm2": e_beta2, "tpr": tpr, "fpr": fpr if w_null > 0 else np.zeros(times.size)}
