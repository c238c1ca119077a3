"""d → ∞ theory of online SGD for spiked-covariance single-index learning (docs/theory/single_index.md).

Model (note §1): x ~ N(0, Σ), Σ = I + κuuᵀ, c = ⟨u, θ*⟩ = cos φ; target y = g(τν) + √Δ ξ with
ν = ⟨θ*, x⟩ and Δ = ``noise``²; student σ(λ), λ = ⟨w, x⟩; step w += (η/d) F x with −∇ℓ = F x,
F = yσ'(λ) (correlation loss) or (y − σ(λ))σ'(λ) (square loss); time t = steps/d.  Summary statistics
m = ⟨w, θ*⟩, s = ⟨w, u⟩ (reported as ``m_spike``), q = ‖w‖².

This module provides

* the (m, s, q) ODEs of note §2 for the geometries ``plain``, ``sphere``, ``sigma_sphere``, ``wn_sigma``
  (:func:`drift`, :func:`solve`), with the O(η²) corrector η²·B/n_b (pitfall P2) and the optional finite-d
  trace factors tr Σ/d, tr Σ²/d (P3);
* the escape theory of note §4: near-equator reduced dynamics dρ/dt ≈ ηGk*Aρ^{k*−1} − bρ, spike gain G,
  effective initial overlap, predicted escape times for k* = 1, 2, ≥ 3
  (:func:`near_equator_coefficients`, :func:`predicted_escape_time`) and the measured first passage of
  |m| to 1/2 (:func:`escape_time`);
* the closed-form stationary overlap of h₂ / correlation / sphere (note §3, :func:`stationary_overlap_he2`).

The Gaussian expectations come from :class:`hidyn.hermite.GaussianMoments` (Mehler / polar quadrature,
note §3) and the population losses from :mod:`hidyn.observables`.

References
----------
Ben Arous, Gheissari, Jagannath, JMLR 22 (2021), arXiv:2003.10409; NeurIPS 2022 (critical step size).
Mousavi-Hosseini, Wu, Suzuki, Erdogdu, NeurIPS 2023, arXiv:2309.03843 (spiked single-index models).
Arnaboldi, Dandi, Krzakala, Loureiro, Pesce, Stephan, ICML 2024, arXiv:2406.02157 (batch size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy.optimize import brentq

from hidyn.admissibility import single_index_margin
from hidyn.hermite import (
    GaussianMoments,
    Link,
    check_spike,
    hermite_coefficients,
    information_exponent,
    make_link,
    projection_covariance,
    spike_gain,
    target_scale,
)
from hidyn.observables import single_index_objective, single_index_test_loss
from hidyn.solvers.ode.integrate import DEFAULT_ATOL, DEFAULT_RTOL, integrate

__all__ = [
    "GEOMETRIES",
    "LOSSES",
    "SingleIndexParams",
    "make_params",
    "initial_state",
    "moments",
    "drift",
    "rho_rate",
    "solve",
    "escape_time",
    "spike_gain",
    "effective_initial_overlap",
    "near_equator_coefficients",
    "near_equator_drift",
    "predicted_escape_time",
    "stationary_overlap_he2",
]

GEOMETRIES = ("plain", "sphere", "sigma_sphere", "wn_sigma")
LOSSES = ("correlation", "square")
_CONSTRAINED = ("sphere", "sigma_sphere", "wn_sigma")
_ESCAPE_LEVEL = 0.5   # t_{1/2}: first passage of |m| to 1/2 (note §4)


# ---------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SingleIndexParams:
    """Validated parameters of the single-index ODE (names of the note's parameter table).

    Attributes
    ----------
    link, activation : Link
        Target g and student σ.
    loss : {"correlation", "square"}
    spike : float
        κ ≥ 0.
    spike_angle : float
        φ ∈ [0, π/2] (radians); ``cos_angle`` = c = cos φ.
    geometry : {"plain", "sphere", "sigma_sphere", "wn_sigma"}
    lr : float
        η > 0 (step η/d, time t = steps/d).
    noise : float
        Label-noise standard deviation √Δ ≥ 0.
    batch_size : int
        n_b ≥ 1; divides B in every η² term.
    standardize_target : bool
        τ = R^{−1/2} (True) or τ = 1 (False, pitfall P4); ``tau`` holds the value.
    d : int or None
        Dimension for the finite-d trace factors of note §2 (None: d → ∞, t₁ = t₂ = 1).
    moments : GaussianMoments
        Expectation engine for (g, σ, τ).
    """

    link: Link
    activation: Link
    loss: str
    spike: float
    spike_angle: float
    cos_angle: float
    geometry: str
    lr: float
    noise: float
    batch_size: int
    standardize_target: bool
    d: int | None
    tau: float
    moments: GaussianMoments

    @property
    def noise_var(self) -> float:
        """Δ = noise² (note §1)."""
        return self.noise * self.noise

    @property
    def R(self) -> float:
        """R = θ*ᵀΣθ* = 1 + κc² = Var ν."""
        return 1.0 + self.spike * self.cos_angle ** 2

    @property
    def trace1(self) -> float:
        """t₁ = tr Σ/d = 1 + κ/d (1 when d is None; note §2, P3)."""
        return 1.0 if self.d is None else 1.0 + self.spike / self.d

    @property
    def trace2(self) -> float:
        """t₂ = tr Σ²/d = 1 + (2κ + κ²)/d (1 when d is None; note §2, P3)."""
        return 1.0 if self.d is None else 1.0 + (2.0 * self.spike + self.spike ** 2) / self.d


def _real(value, name: str, valid: str) -> float:
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite real number ({valid}), got {value!r}")
    return float(value)


def make_params(*, link, activation, loss="correlation", spike=0.0, spike_angle=0.0, geometry="sphere",
                lr, noise=0.0, batch_size=1, standardize_target=True, d=None) -> SingleIndexParams:
    """Validate the single-index parameters and build the expectation engine.

    Parameters
    ----------
    link, activation : str, dict, sequence or tuple of callables
        Target g and student σ (see :func:`hidyn.hermite.make_link`).
    loss : {"correlation", "square"}
    spike : float
        κ ∈ [0, ∞).
    spike_angle : float
        φ ∈ [0, π/2] radians.
    geometry : {"plain", "sphere", "sigma_sphere", "wn_sigma"}
    lr : float
        η ∈ (0, ∞).
    noise : float
        Label-noise standard deviation ∈ [0, ∞) (Δ = noise²; never pass Δ here).
    batch_size : int
        n_b ≥ 1.
    standardize_target : bool
    d : int, optional
        Keeps the 1/d trace factors t₁, t₂ of note §2 when given.

    Returns
    -------
    SingleIndexParams

    Raises
    ------
    ValueError
        Any parameter outside its range; the message names the parameter and the valid range.
    """
    if not isinstance(geometry, str) or geometry not in GEOMETRIES:
        raise ValueError(f"geometry={geometry!r} is not known; valid: {', '.join(GEOMETRIES)}")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; valid: {', '.join(LOSSES)}")
    kappa, c = check_spike(spike, spike_angle)
    lr = _real(lr, "lr", "step η in w += (η/d) F x; valid range (0, ∞)")
    if lr <= 0.0:
        raise ValueError(f"lr must be > 0 (step η in w += (η/d) F x; valid range (0, ∞)), got {lr!r}")
    noise = _real(noise, "noise", "label-noise standard deviation; valid range [0, ∞)")
    if noise < 0.0:
        raise ValueError(f"noise must be ≥ 0 (label-noise standard deviation; valid range [0, ∞)), "
                         f"got {noise!r}")
    if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer ≥ 1 (samples averaged per step), got "
                         f"{batch_size!r}")
    if d is not None and (not isinstance(d, Integral) or isinstance(d, bool) or d < 1):
        raise ValueError(f"d must be None (d → ∞) or an integer ≥ 1 (finite-d trace factors), got {d!r}")
    if not isinstance(standardize_target, (bool, np.bool_)):
        raise ValueError(f"standardize_target must be True or False, got {standardize_target!r}")
    g = make_link(link, parameter="link")
    sig = make_link(activation, parameter="activation")
    tau = target_scale(kappa, spike_angle, bool(standardize_target))
    return SingleIndexParams(link=g, activation=sig, loss=loss, spike=kappa, spike_angle=float(spike_angle),
                             cos_angle=c, geometry=geometry, lr=lr, noise=noise, batch_size=int(batch_size),
                             standardize_target=bool(standardize_target),
                             d=None if d is None else int(d), tau=tau,
                             moments=GaussianMoments(g, sig, tau=tau))


# ---------------------------------------------------------------------------------------------------
# Initial conditions and constraints (note §1)
# ---------------------------------------------------------------------------------------------------
def _constraint_q(s, params: SingleIndexParams):
    """q on the constraint manifold: 1 (sphere), 1 − κs² (Σ-geometries, Q = wᵀΣw = 1); None (plain)."""
    if params.geometry == "sphere":
        return 1.0
    if params.geometry in ("sigma_sphere", "wn_sigma"):
        return 1.0 - params.spike * s * s
    return None


def _feasibility_gap(m: float, s: float, q: float, c: float) -> float:
    """q minus the smallest ‖w‖² compatible with (m, s): ≥ 0 iff the Gram matrix is PSD (note §1)."""
    if c >= 1.0:
        return min(q - m * m, -abs(s - m) if abs(s - m) > 1e-12 else 0.0)
    return q - m * m - (s - c * m) ** 2 / (1.0 - c * c)


def initial_state(params: SingleIndexParams, *, m0=None, init=None) -> np.ndarray:
    """Initial (m, s, q) following the convention of note §1.

    Parameters
    ----------
    params : SingleIndexParams
    m0 : float, optional
        Teacher overlap; s₀ = c·m₀, q₀ = 1 (``plain``, ``sphere``) or 1 − κs₀² (``sigma_sphere``,
        ``wn_sigma``).  Default when neither ``m0`` nor ``init`` is given: m₀ = 1/√d (needs ``d``).
    init : dict, optional
        Explicit start {"m", "s", "q"} overriding ``m0``; "s" defaults to c·m, "q" to the geometry's
        value.  On the constrained geometries "q", when given, must equal the constraint.

    Returns
    -------
    ndarray, shape (3,)
        (m₀, s₀, q₀).

    Raises
    ------
    ValueError
        m0 outside its range ([−1, 1] for ``plain``/``sphere``, [−1/√R, 1/√R] for the Σ-geometries), an
        infeasible (m, s, q) (Gram matrix of (w, θ*, u) not PSD), or q off the constraint.
    """
    c = params.cos_angle
    if init is not None:
        if not isinstance(init, dict):
            raise ValueError(f"init must be a dict with keys 'm' and optionally 's', 'q'; got {init!r}")
        unknown = set(init) - {"m", "s", "q"}
        if unknown or "m" not in init:
            raise ValueError(f"init must have key 'm' and optionally 's', 'q' (got keys {sorted(init)})")
        m = _real(init["m"], "init['m']", "teacher overlap ⟨w, θ*⟩")
        s = _real(init.get("s", c * m), "init['s']", "spike overlap ⟨w, u⟩")
        qc = _constraint_q(s, params)
        if "q" in init:
            q = _real(init["q"], "init['q']", "squared norm ‖w‖² ≥ 0")
            if qc is not None and abs(q - qc) > 1e-9 * max(1.0, abs(qc)):
                raise ValueError(f"init['q'] = {q!r} is off the {params.geometry} constraint "
                                 f"(q = {qc!r} for s = {s!r}); omit 'q' or give that value")
        else:
            q = 1.0 if qc is None else qc
        if q < 0.0 or _feasibility_gap(m, s, q, c) < -1e-12:
            raise ValueError(f"init = {{m: {m!r}, s: {s!r}, q: {q!r}}} is not realisable by a vector w: "
                             f"the Gram matrix of (w, θ*, u) must be PSD, i.e. q ≥ m² + (s − cm)²/(1 − c²) "
                             f"(s = m and q ≥ m² when c = 1), c = {c!r}")
        return np.array([m, s, q], dtype=np.float64)
    if m0 is None:
        if params.d is None:
            raise ValueError("give m0 (initial teacher overlap) or init, or d for the default m0 = 1/√d")
        m0 = 1.0 / math.sqrt(params.d)
    m0 = _real(m0, "m0", "initial teacher overlap")
    s0 = c * m0
    if params.geometry in ("plain", "sphere"):
        if abs(m0) > 1.0:
            where = "on the sphere" if params.geometry == "sphere" else "with q₀ = 1"
            raise ValueError(f"m0 must lie in [−1, 1] {where} (geometry={params.geometry!r}), got {m0!r}")
        q0 = 1.0
    else:
        bound = 1.0 / math.sqrt(params.R)
        if abs(m0) > bound * (1.0 + 1e-15):
            raise ValueError(f"m0 must lie in [−1/√R, 1/√R] = [{-bound:.6g}, {bound:.6g}] for "
                             f"geometry={params.geometry!r} (q₀ = 1 − κ c² m0² ≥ m0², R = 1 + κc² = "
                             f"{params.R:.6g}), got {m0!r}")
        q0 = 1.0 - params.spike * s0 * s0
    return np.array([m0, s0, q0], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# The drift (note §2)
# ---------------------------------------------------------------------------------------------------
def _mu_regression(Q: float, M: float, R: float, s: float, kappa: float, c: float):
    """(a_λ, a_ν) with E[μ | λ, ν] = a_λ λ + a_ν ν (note §2).

    Solves [[Q, M], [M, R]] a = ((1+κ)s, (1+κ)c); a = (0, 1) exactly when c = 1 (μ = ν); a
    pseudo-inverse when QR = M² (w ∥ θ*, pitfall P6).
    """
    if c == 1.0:
        return 0.0, 1.0
    b = np.array([(1.0 + kappa) * s, (1.0 + kappa) * c])
    det = Q * R - M * M
    if Q > 0.0 and det > 1e-12 * Q * R:
        return (R * b[0] - M * b[1]) / det, (Q * b[1] - M * b[0]) / det
    a = np.linalg.pinv(np.array([[Q, M], [M, R]]), rcond=1e-10) @ b
    return float(a[0]), float(a[1])


def moments(state, params: SingleIndexParams) -> dict:
    """Expectations entering the drift at one state (note §2, §3).

    Parameters
    ----------
    state : array_like, shape (3,)
        (m, s, q).  On the constrained geometries q is replaced by the constraint value.
    params : SingleIndexParams

    Returns
    -------
    dict of float
        ``Q``, ``M``, ``R`` (covariance of (λ, ν)), ``rho`` = M/√(QR), ``A_nu`` = E[Fν],
        ``A_lam`` = E[Fλ], ``A_mu`` = E[Fμ], ``B`` = E[F²]/n_b (including Δ·E[σ'²]/n_b), and ``q`` used.
    """
    m, s, q = (float(v) for v in np.asarray(state, dtype=np.float64)[:3])
    qc = _constraint_q(s, params)
    if qc is not None:
        q = qc   # substitute the constraint (note §2, integration note)
    Q, M, R = projection_covariance(m, s, q, spike=params.spike, spike_angle=params.spike_angle)
    Q = max(Q, 0.0)
    A_nu, A_lam, B = params.moments.sgd(Q, M, R, loss=params.loss, noise_var=params.noise_var)
    a_lam, a_nu = _mu_regression(Q, M, R, s, params.spike, params.cos_angle)
    rho = M / math.sqrt(Q * R) if Q > 0.0 else 0.0
    return {"Q": Q, "M": M, "R": R, "rho": rho, "A_nu": A_nu, "A_lam": A_lam,
            "A_mu": a_lam * A_lam + a_nu * A_nu, "B": B / params.batch_size, "q": q}


def drift(state, params: SingleIndexParams) -> np.ndarray:
    """d(m, s, q)/dt of note §2 (t = steps/d).

    Parameters
    ----------
    state : array_like, shape (3,)
        (m, s, q).  On ``sphere`` q is taken as 1 and on ``sigma_sphere`` / ``wn_sigma`` as 1 − κs²,
        whatever the input (the constraint is substituted, not integrated: note §2 integration note).
    params : SingleIndexParams

    Returns
    -------
    ndarray, shape (3,)
        (ṁ, ṡ, q̇).  ``plain``: ṁ = ηA_ν, ṡ = ηA_μ, q̇ = 2ηA_λ + η²t₁B.  ``sphere``:
        ṁ = η(A_ν − mA_λ) − ½η²t₁Bm (same for s), q̇ = 0.  ``sigma_sphere``: A_Σ = A_λ + κsA_μ,
        ṁ = η(A_ν − mA_Σ) − ½η²t₂Bm, q̇ = −2κsṡ.  ``wn_sigma``: P = q + (2κ+κ²)s²,
        β = η(A_λ(1−P) + κsA_μ) + ½η²t₂B, ṁ = η(A_ν − MA_λ) − mβ, ṡ = η(A_μ − (1+κ)sA_λ) − sβ,
        q̇ = −2κsṡ.  B is per step (divided by n_b).
    """
    m, s = float(state[0]), float(state[1])
    mo = moments(state, params)
    eta, kappa = params.lr, params.spike
    A_nu, A_lam, A_mu, B, q = mo["A_nu"], mo["A_lam"], mo["A_mu"], mo["B"], mo["q"]
    geo = params.geometry
    if geo == "plain":                                           # note §2, eq. 1
        return np.array([eta * A_nu, eta * A_mu, 2.0 * eta * A_lam + eta * eta * params.trace1 * B])
    if geo == "sphere":                                          # note §2, eq. 2
        corr = 0.5 * eta * eta * params.trace1 * B
        return np.array([eta * (A_nu - m * A_lam) - corr * m, eta * (A_mu - s * A_lam) - corr * s, 0.0])
    if geo == "sigma_sphere":                                    # note §2, eq. 3
        A_sig = A_lam + kappa * s * A_mu
        corr = 0.5 * eta * eta * params.trace2 * B
        dm = eta * (A_nu - m * A_sig) - corr * m
        ds = eta * (A_mu - s * A_sig) - corr * s
        return np.array([dm, ds, -2.0 * kappa * s * ds])
    # wn_sigma, note §2, eq. 4
    P = q + (2.0 * kappa + kappa * kappa) * s * s
    beta = eta * (A_lam * (1.0 - P) + kappa * s * A_mu) + 0.5 * eta * eta * params.trace2 * B
    dm = eta * (A_nu - mo["M"] * A_lam) - m * beta
    ds = eta * (A_mu - (1.0 + kappa) * s * A_lam) - s * beta
    return np.array([dm, ds, -2.0 * kappa * s * ds])


def rho_rate(state, params: SingleIndexParams) -> float:
    """dρ/dt of ρ = M/√(QR) along the full drift (chain rule; used to check the §4 reduction).

    Returns
    -------
    float
        Ṁ/√(QR) − ½ρQ̇/Q with Ṁ = ṁ + κcṡ and Q̇ = q̇ + 2κsṡ.
    """
    dm, ds, dq = drift(state, params)
    mo = moments(state, params)
    s = float(state[1])
    kappa, c = params.spike, params.cos_angle
    dM = dm + kappa * c * ds
    dQ = dq + 2.0 * kappa * s * ds
    return dM / math.sqrt(mo["Q"] * mo["R"]) - 0.5 * mo["rho"] * dQ / mo["Q"]


# ---------------------------------------------------------------------------------------------------
# Integration
# ---------------------------------------------------------------------------------------------------
def _rhs(params: SingleIndexParams):
    """Right-hand side for :func:`integrate`: (m, s, q) on ``plain``, (m, s) on the constrained ones."""
    if params.geometry == "plain":
        return lambda t, y: drift(y, params)

    def rhs(t, y):
        return drift((y[0], y[1], 0.0), params)[:2]    # q substituted inside the drift
    return rhs


def _integrate_state(params: SingleIndexParams, y0: np.ndarray, times, *, method, rtol, atol):
    """Integrate from the full state y0 = (m, s, q); returns (m, s, q, ODEResult)."""
    n = 3 if params.geometry == "plain" else 2
    c = params.cos_angle

    def feasible(y):
        # the Gram matrix of (w, θ*, u) stays PSD along the d → ∞ flow (note §1, Feasibility); leaving
        # it (|m| > 1 on the sphere, q < 0 on the Σ-geometries) is a divergence (issue #12)
        q = y[2] if n == 3 else _constraint_q(y[1], params)
        return float(single_index_margin(y[0], y[1], q, c))

    res = integrate(_rhs(params), np.asarray(y0, dtype=np.float64)[:n], times, method=method, rtol=rtol,
                    atol=atol, name=f"single_index ODE ({params.geometry}, lr={params.lr:g})",
                    admissible={"overlaps (m, s, q) infeasible: no unit vectors have them (|m| > 1 on "
                                "the sphere, Gram matrix of (w, theta*, u) not PSD)": feasible})
    t = np.asarray(times, dtype=np.float64)
    if t.size > 1 and t[-1] == t[0]:
        res.y[:] = res.y[0]     # integrate() leaves the rows of an empty interval NaN
    m, s = res.y[:, 0], res.y[:, 1]
    if n == 3:
        q = res.y[:, 2]
    else:
        qc = _constraint_q(s, params)
        q = np.broadcast_to(np.asarray(qc, dtype=np.float64), s.shape).copy()
        q[~np.isfinite(s)] = np.nan
    return m, s, q, res


def solve(*, link, activation, loss="correlation", spike=0.0, spike_angle=0.0, geometry="sphere", lr,
          noise=0.0, batch_size=1, standardize_target=True, m0=None, init=None, times, d=None,
          method="DOP853", rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL) -> dict:
    """Integrate the single-index ODE of note §2 and evaluate the observables.

    Parameters
    ----------
    link, activation, loss, spike, spike_angle, geometry, lr, noise, batch_size, standardize_target :
        See :func:`make_params` (names and units of the note's parameter table).
    m0 : float, optional
        Initial teacher overlap (s₀ = c·m₀, q₀ by the geometry's convention, note §1).
    init : dict, optional
        Explicit start {"m", "s", "q"}; overrides ``m0``.
    times : array_like, shape (n_times,)
        Non-decreasing output times t = steps/d; the integration starts at ``times[0]``.
    d : int, optional
        Keep the finite-d trace factors t₁ = 1 + κ/d, t₂ = 1 + (2κ+κ²)/d (note §2, P3); also gives the
        default m₀ = 1/√d.
    method, rtol, atol :
        Passed to :func:`hidyn.solvers.ode.integrate.integrate` (DOP853, 1e-10, 1e-12).

    Returns
    -------
    dict
        ``time`` (n_times,), ``m``, ``m_spike`` (= s), ``q``, ``cosine`` (= m/√q), ``rho`` (= M/√(QR),
        the student–teacher pre-activation correlation), ``test_loss`` (½E[(g(τν) − σ(λ))²], noiseless),
        ``objective`` (population training loss L of note §2), all float64 arrays of shape (n_times,), and
        ``info``: netCDF-safe dict with the integrator's fields (``solver``, ``rtol``, ``atol``, ``nfev``,
        ``status``, ``message``, ``diverged_at`` = −1 if none) plus ``geometry``, ``loss``, ``tau``,
        ``spike``, ``cos_angle``, ``batch_size``, ``finite_d`` (0 for d → ∞) and ``t_half`` (first passage
        of |m| to 1/2, −1 if not reached).

    Notes
    -----
    A divergence (``plain`` at large lr: q → ∞) stops the integration, warns (RuntimeWarning) and
    leaves NaN after ``info["diverged_at"]``; it is never silent.
    """
    params = make_params(link=link, activation=activation, loss=loss, spike=spike, spike_angle=spike_angle,
                         geometry=geometry, lr=lr, noise=noise, batch_size=batch_size,
                         standardize_target=standardize_target, d=d)
    y0 = initial_state(params, m0=m0, init=init)
    t = np.asarray(times, dtype=np.float64)
    m, s, q, res = _integrate_state(params, y0, t, method=method, rtol=rtol, atol=atol)
    obs = _observables(m, s, q, params)
    t_half = escape_time(t, m)
    info = dict(res.info)
    info.update({"model": "single_index", "geometry": params.geometry, "loss": params.loss,
                 "tau": params.tau, "spike": params.spike, "cos_angle": params.cos_angle,
                 "batch_size": params.batch_size, "finite_d": 0 if params.d is None else params.d,
                 "t_half": float(t_half) if np.isfinite(t_half) else -1.0})
    return {"time": t, "m": m, "m_spike": s, "q": q, **obs, "info": info}


def _observables(m, s, q, params: SingleIndexParams) -> dict:
    kw = dict(link=params.link, activation=params.activation, spike=params.spike,
              spike_angle=params.spike_angle, standardize_target=params.standardize_target)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = m / np.sqrt(q)
        Q, M, R = projection_covariance(m, s, q, spike=params.spike, spike_angle=params.spike_angle)
        rho = M / np.sqrt(Q * R)
    return {
        "cosine": cosine,
        "rho": rho,
        "test_loss": single_index_test_loss(m, s, q, **kw),
        "objective": single_index_objective(m, s, q, loss=params.loss, noise=params.noise, **kw),
    }


# ---------------------------------------------------------------------------------------------------
# Escape (note §4)
# ---------------------------------------------------------------------------------------------------
def escape_time(time, m, level: float = _ESCAPE_LEVEL):
    """First passage of |m| to ``level`` along sampled curves (t_{1/2} of note §4).

    Parameters
    ----------
    time : array_like, shape (n_times,)
        Increasing times (t = steps/d).
    m : array_like, shape (..., n_times)
        Teacher overlap(s), time last (e.g. (n_seeds, n_times) for an ensemble).  NaN never counts
        as a passage.
    level : float
        Threshold on |m| (1/2 by default).

    Returns
    -------
    float or ndarray, shape (...)
        Linear interpolation between the last sample below and the first at or above ``level``
        (``time[0]`` if the first sample is already there); ``inf`` where it is never reached, so that
        ensemble medians of censored runs stay meaningful (note §4: compare medians).
    """
    t = np.asarray(time, dtype=np.float64)
    a = np.abs(np.asarray(m, dtype=np.float64))
    if a.shape[-1] != t.size:
        raise ValueError(f"m has {a.shape[-1]} samples along its last axis, time has {t.size}")
    with np.errstate(invalid="ignore"):
        hit = np.nan_to_num(a, nan=-np.inf) >= level
    found = hit.any(axis=-1)
    i = np.argmax(hit, axis=-1)
    i_prev = np.maximum(i - 1, 0)
    a1 = np.take_along_axis(a, i[..., None], axis=-1)[..., 0]
    a0 = np.take_along_axis(a, i_prev[..., None], axis=-1)[..., 0]
    t1, t0 = t[i], t[i_prev]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(a1 > a0, (level - a0) / (a1 - a0), 1.0)
    out = np.where(i == 0, t[0], t0 + np.clip(frac, 0.0, 1.0) * (t1 - t0))
    out = np.where(found, out, np.inf)
    return float(out) if out.ndim == 0 else out


def effective_initial_overlap(d, spike=0.0, spike_angle=0.0) -> float:
    """Typical |ρ₀| = √(G/d) of a uniformly random start (ρ₀ ≈ N(0, G/d), note §4).

    Equivalently a start in dimension d_eff = d/G at ρ₀ = 1/√d_eff.
    """
    if not isinstance(d, (Integral, Real)) or isinstance(d, bool) or not d > 0:
        raise ValueError(f"d must be a positive number (dimension), got {d!r}")
    return math.sqrt(spike_gain(spike, spike_angle) / float(d))


def near_equator_coefficients(*, link, activation, loss="correlation", spike=0.0, spike_angle=0.0,
                              geometry="sphere", lr, noise=0.0, batch_size=1,
                              standardize_target=True) -> dict:
    """Coefficients of the reduced near-equator dynamics dρ/dt ≈ a ρ^{k*−1} − b ρ (note §4).

    a = ηGk*A with A = α_{k*}(σ; 1)·α_{k*}(g; τ²R) and G = ‖Σθ*‖²/R; b = ½η²B₀/n_b + ηκK_eff with
    B₀ = E[F²] at ρ = 0, Q = 1 (= (E[g̃²] + Δ)E[σ'²] for the correlation loss) and, for the square loss
    on ``sphere``/``sigma_sphere``, K_eff = K = E[λσσ'(λ)] (the spike-repelling term of §4, mechanism
    2); K_eff = 0 otherwise (it cancels exactly on ``wn_sigma``).

    Parameters
    ----------
    link, activation, loss, spike, spike_angle, geometry, lr, noise, batch_size, standardize_target :
        As in :func:`make_params`.  ``geometry`` must be one of the normalised geometries (Q ≈ 1 near the
        equator); the square loss with a spike needs u = θ* (spike_angle = 0) on ``sphere`` and
        ``sigma_sphere``, where the reduction closes.

    Returns
    -------
    dict
        ``k_star`` (int), ``A``, ``gain`` (G), ``B0`` (per sample), ``K``, ``K_eff``, ``signal_rate`` (a),
        ``noise_rate`` (b), ``lr``, ``batch_size``.

    Raises
    ------
    ValueError
        ``plain`` geometry (q̇ = η²B makes Q drift, the reduction does not close), a target with
        E[g(τν)] ≠ 0 (a mean adds first-order terms not in the reduction), undefined k*, or square loss
        with a misaligned spike on the Euclidean geometries.
    """
    params = make_params(link=link, activation=activation, loss=loss, spike=spike, spike_angle=spike_angle,
                         geometry=geometry, lr=lr, noise=noise, batch_size=batch_size,
                         standardize_target=standardize_target)
    if params.geometry not in _CONSTRAINED:
        raise ValueError(f"geometry={geometry!r}: the near-equator reduction of note §4 needs a normalised "
                         f"geometry ({', '.join(_CONSTRAINED)}); on 'plain' q̇ = η²B drives Q away from 1")
    kappa, c = params.spike, params.cos_angle
    v = params.tau ** 2 * params.R           # g(τν) = g(√v z), z ~ N(0, 1)
    k = information_exponent(params.link, params.activation, scale=v, activation_scale=1.0)
    cg = hermite_coefficients(params.link, 0, scale=v)    # cg[0] = E[g(τν)]
    scale_g = float(np.sqrt(params.moments.losses(1.0, 0.0, params.R)[0]))
    if abs(cg[0]) > 1e-10 * max(scale_g, 1e-300):
        raise ValueError(f"link={params.link.name!r}: the reduction of note §4 assumes a centred target, "
                         f"E[g(τν)] = 0, got {cg[0]:.6g} (a raw even target with a spike has a mean, P4)")
    A = float(hermite_coefficients(params.activation, k, scale=1.0)[k]
              * hermite_coefficients(params.link, k, scale=v)[k])
    G = spike_gain(kappa, params.spike_angle)
    _, _, B0 = params.moments.sgd(1.0, 0.0, params.R, loss=params.loss, noise_var=params.noise_var)
    K = float(params.moments.terms([("lsds", "one")], 1.0, 0.0, params.R)[0])   # E[λσσ'(λ)], Q = 1
    K_eff = 0.0
    if params.loss == "square" and params.geometry in ("sphere", "sigma_sphere") and kappa > 0.0:
        if c != 1.0:
            raise ValueError(f"spike_angle={spike_angle!r}: with the square loss on {geometry!r} the "
                             f"near-equator reduction closes only for an aligned spike (spike_angle = 0) "
                             f"or spike = 0")
        K_eff = K
    eta = params.lr
    return {"k_star": int(k), "A": A, "gain": G, "B0": float(B0), "K": K, "K_eff": K_eff,
            "signal_rate": float(eta * G * k * A),
            "noise_rate": float(0.5 * eta * eta * B0 / params.batch_size + eta * kappa * K_eff),
            "lr": eta, "batch_size": params.batch_size}


def near_equator_drift(rho, coefficients: dict):
    """dρ/dt ≈ a ρ^{k*−1} − b ρ (note §4) with a, b from :func:`near_equator_coefficients`.

    Parameters
    ----------
    rho : float or ndarray
    coefficients : dict
        Output of :func:`near_equator_coefficients`.

    Returns
    -------
    float or ndarray, shape of ``rho``
    """
    k = coefficients["k_star"]
    r = np.asarray(rho, dtype=np.float64)
    out = coefficients["signal_rate"] * r ** (k - 1) - coefficients["noise_rate"] * r
    return float(out) if out.ndim == 0 else out


def _sigma_direction(params: SingleIndexParams):
    """(m, s) of the unit vector Σθ*/‖Σθ*‖: (R, (1+κ)c)/√(GR) — the direction w grows along (§4)."""
    kappa, c, R = params.spike, params.cos_angle, params.R
    norm = math.sqrt(spike_gain(kappa, params.spike_angle) * R)
    return R / norm, (1.0 + kappa) * c / norm


def _state_along_sigma(eps: float, params: SingleIndexParams) -> np.ndarray:
    """w = ε Σθ*/‖Σθ*‖ + (rest ⊥ θ*, u) on the geometry's constraint (q = 1 on plain/sphere)."""
    vm, vs = _sigma_direction(params)
    m, s = eps * vm, eps * vs
    q = _constraint_q(s, params)
    return np.array([m, s, 1.0 if q is None else q])


def _state_at_rho(rho0: float, params: SingleIndexParams) -> np.ndarray:
    """Start along Σθ* with ρ = M/√(QR) = rho0 (closed forms derived from Q = 1 + κs² resp. Q = 1)."""
    G = spike_gain(params.spike, params.spike_angle)
    _, vs = _sigma_direction(params)
    if params.geometry in ("plain", "sphere"):
        den = G - rho0 * rho0 * params.spike * vs * vs
        if den <= 0.0:
            raise ValueError(f"rho0={rho0!r} is not reachable along Σθ* on the unit sphere")
        eps = math.copysign(abs(rho0) / math.sqrt(den), rho0)
    else:
        eps = rho0 / math.sqrt(G)     # Q ≡ 1: ρ = ε√G exactly
    return _state_along_sigma(eps, params)


def _rho_at_level(level: float, params: SingleIndexParams) -> float:
    """ρ at |m| = level along Σθ* (the ρ_end of note §4's formulas)."""
    vm, vs = _sigma_direction(params)
    eps = level / vm
    y = _state_along_sigma(eps, params)
    kappa = params.spike
    limit = 1.0 if params.geometry in ("plain", "sphere") else 1.0 / math.sqrt(1.0 + kappa * vs * vs)
    if eps > limit:
        raise ValueError(f"|m| = {level} is not reached along Σθ* (|m| ≤ {limit * vm:.6g} there); pass "
                         f"rho_end explicitly")
    Q, M, R = projection_covariance(*y, spike=kappa, spike_angle=params.spike_angle)
    return M / math.sqrt(Q * R)


def _formula_time(k: int, a: float, b: float, rho0: float, rho_end: float) -> float:
    """Time for the reduced ODE dρ/dt = aρ^{k−1} − bρ to carry |ρ| from |rho0| to rho_end (note §4)."""
    sign = 1.0 if rho0 >= 0.0 else -1.0
    y0 = abs(rho0)
    if k == 1:
        if a == 0.0:
            return math.inf
        a_eff = abs(a)
        y0 = rho0 if a > 0.0 else -rho0       # y = sign(a)ρ obeys ẏ = |a| − b y
        if y0 >= rho_end:
            return 0.0
        if b == 0.0:
            return (rho_end - y0) / a_eff
        if a_eff <= b * rho_end:
            return math.inf
        return math.log((a_eff - b * y0) / (a_eff - b * rho_end)) / b
    if y0 >= rho_end:
        return 0.0
    a_eff = a * sign ** k              # y = |ρ| obeys ẏ = a σ₀^k y^{k−1} − b y
    if k == 2:
        gamma = a_eff - b
        return math.log(rho_end / y0) / gamma if gamma > 0.0 else math.inf
    # k ≥ 3: u = y^{2−k} obeys u̇ = (k−2)(b u − a) (Bernoulli), exact solution
    u0, u1 = y0 ** (2 - k), rho_end ** (2 - k)
    if a_eff - b * u0 <= 0.0:
        return math.inf            # noise beats signal at ρ₀: no escape in the ODE
    if b == 0.0:
        return (u0 - u1) / (a_eff * (k - 2))
    return math.log((a_eff - b * u1) / (a_eff - b * u0)) / (b * (k - 2))


def _first_passage(params: SingleIndexParams, y0: np.ndarray, level: float, t_guess: float,
                   *, rtol: float, atol: float) -> float:
    """First time |m(t)| = level along the full ODE, refined by root finding between samples."""
    T = t_guess if (math.isfinite(t_guess) and t_guess > 0.0) else 10.0 / params.lr
    y = np.asarray(y0, dtype=np.float64)
    t_start = 0.0
    for _ in range(12):
        times = np.linspace(t_start, t_start + T, 1001)
        m, s, q, res = _integrate_state(params, y, times, method="DOP853", rtol=rtol, atol=atol)
        hit = np.nonzero(np.abs(np.nan_to_num(m)) >= level)[0]
        if hit.size:
            i = int(hit[0])
            if i == 0:
                return float(times[0])
            ya = np.array([m[i - 1], s[i - 1], q[i - 1]])

            def gap(t, ya=ya, ta=float(times[i - 1])):
                if t <= ta:   # integrate() leaves rows NaN for an empty interval
                    return abs(ya[0]) - level
                mm, _, _, _ = _integrate_state(params, ya, [ta, t], method="DOP853", rtol=rtol, atol=atol)
                return abs(mm[-1]) - level
            return float(brentq(gap, times[i - 1], times[i], xtol=1e-12 * max(1.0, times[i]), rtol=1e-13))
        if res.diverged or not np.all(np.isfinite(m)):
            return math.inf
        y = np.array([m[-1], s[-1], q[-1]])
        t_start = float(times[-1])
        T *= 3.0
    return math.inf


def predicted_escape_time(*, link, activation, loss="correlation", spike=0.0, spike_angle=0.0,
                          geometry="sphere", lr, noise=0.0, batch_size=1, standardize_target=True,
                          d=None, rho0=None, rho_end=None, method="auto", level=_ESCAPE_LEVEL,
                          rtol=1e-10, atol=1e-14) -> dict:
    """Predicted escape time t_{1/2} from the equator (note §4).

    Parameters
    ----------
    link, activation, loss, spike, spike_angle, geometry, lr, noise, batch_size, standardize_target :
        As in :func:`make_params`.
    d : int, optional
        Dimension; gives the default ρ₀ = √(G/d) (typical overlap of a random start, d_eff = d/G) and the
        sample count n = d·t.
    rho0 : float, optional
        Initial correlation ρ₀ (signed; for odd k* a negative ρ₀ escapes when A < 0).
    rho_end : float, optional
        ρ at |m| = ``level``; default: along the growth direction Σθ* on the geometry's constraint
        (κ = 0: ρ_end = level).  Enters the formulas only through ln ρ_end.
    method : {"auto", "formula", "ode"}
        ``"formula"``: exact time of the reduced ODE dρ/dt = aρ^{k−1} − bρ from ρ₀ to ρ_end
        (k* = 2: ln(ρ_end/ρ₀)/γ, γ = a − b; k* ≥ 3: the Bernoulli solution of §4's table).
        ``"ode"``: first passage of |m| to ``level`` along the full ODE of note §2, started along Σθ*
        at ρ₀.  ``"auto"``: ``"ode"`` for k* = 1 (O(1/η), no small-ρ phase), ``"formula"`` otherwise.
    level : float
        |m| threshold (1/2).
    rtol, atol : float
        Tolerances of the full ODE (method ``"ode"``).

    Returns
    -------
    dict
        ``t_half`` (time; inf when the ODE does not escape), ``samples`` (d·t_half, NaN without d),
        ``escapes`` (bool), ``method``, ``k_star``, ``gain`` (G), ``d_eff`` (d/G, NaN without d),
        ``rho0``, ``rho_end``, ``A``, ``B0``, ``K``, ``signal_rate`` (a), ``noise_rate`` (b),
        ``growth_rate`` (γ = a − b for k* = 2, NaN otherwise), ``lr_max`` (largest η with escape at this
        ρ₀: 2n_b(2GA − κK_eff)/B₀ for k* = 2, 2n_b(GkAρ₀^{k−2} − κK_eff)/B₀ for k* ≥ 3, inf for k* = 1).

    Raises
    ------
    ValueError
        Neither ``d`` nor ``rho0``; ``method="formula"`` on ``plain``; conditions of
        :func:`near_equator_coefficients`.
    """
    if method not in ("auto", "formula", "ode"):
        raise ValueError(f"method={method!r}; valid: 'auto', 'formula', 'ode'")
    params = make_params(link=link, activation=activation, loss=loss, spike=spike, spike_angle=spike_angle,
                         geometry=geometry, lr=lr, noise=noise, batch_size=batch_size,
                         standardize_target=standardize_target)
    G = spike_gain(params.spike, params.spike_angle)
    if rho0 is None:
        if d is None:
            raise ValueError("give d (for ρ₀ = √(G/d)) or rho0")
        rho0 = effective_initial_overlap(d, params.spike, params.spike_angle)
    rho0 = _real(rho0, "rho0", "initial correlation in (−1, 1)")
    if not 0.0 < abs(rho0) < 1.0:
        raise ValueError(f"rho0 must satisfy 0 < |rho0| < 1, got {rho0!r}")
    if rho_end is None:
        rho_end = _rho_at_level(level, params)
    rho_end = _real(rho_end, "rho_end", "correlation at escape in (0, 1]")
    coef = None
    if params.geometry in _CONSTRAINED:
        coef = near_equator_coefficients(link=link, activation=activation, loss=loss, spike=spike,
                                         spike_angle=spike_angle, geometry=geometry, lr=lr, noise=noise,
                                         batch_size=batch_size, standardize_target=standardize_target)
        k = coef["k_star"]
    else:
        k = information_exponent(params.link, params.activation, scale=params.tau ** 2 * params.R)
    if method == "auto":
        method = "ode" if k == 1 else "formula"
    if method == "formula" and coef is None:
        raise ValueError(f"geometry={geometry!r}: method='formula' needs a normalised geometry "
                         f"({', '.join(_CONSTRAINED)}); use method='ode'")
    nan = float("nan")
    t_formula = nan
    if coef is not None:
        t_formula = _formula_time(k, coef["signal_rate"], coef["noise_rate"], rho0, rho_end)
    if method == "formula":
        t_half = t_formula
    else:
        t_half = _first_passage(params, _state_at_rho(rho0, params), level, t_formula, rtol=rtol, atol=atol)
    out = {"t_half": float(t_half), "samples": float(d) * float(t_half) if d is not None else nan,
           "escapes": bool(math.isfinite(t_half)), "method": method, "k_star": int(k), "gain": G,
           "d_eff": float(d) / G if d is not None else nan, "rho0": rho0, "rho_end": rho_end,
           "A": nan, "B0": nan, "K": nan, "signal_rate": nan, "noise_rate": nan, "growth_rate": nan,
           "lr_max": nan}
    if coef is not None:
        out.update({key: coef[key] for key in ("A", "B0", "K", "signal_rate", "noise_rate")})
        kK = params.spike * coef["K_eff"]
        if k == 1:
            out["lr_max"] = math.inf
        else:
            sign = 1.0 if rho0 > 0.0 else -1.0
            sig = G * k * coef["A"] * sign ** k * abs(rho0) ** (k - 2)
            out["lr_max"] = max(0.0, 2.0 * params.batch_size * (sig - kK) / coef["B0"])
        if k == 2:
            out["growth_rate"] = float(coef["signal_rate"] - coef["noise_rate"])
    return out


# ---------------------------------------------------------------------------------------------------
# Closed forms (note §3)
# ---------------------------------------------------------------------------------------------------
def stationary_overlap_he2(lr, noise=0.0, batch_size=1) -> float:
    """Stable overlap m_∞ of h₂ teacher and student, correlation loss, ``sphere``, κ = 0 (note §3).

    From ṁ = 2η(1 − m²)m − ½(η²/n_b)·2(1 + 4m² + Δ)m = 0:

        m_∞² = (2 − η(1 + Δ)/n_b) / (2 + 4η/n_b),

    and m_∞ = 0 (the equator is stable) when η(1 + Δ)/n_b ≥ 2.

    Parameters
    ----------
    lr : float
        η > 0.
    noise : float
        Label-noise standard deviation (Δ = noise²).
    batch_size : int
        n_b ≥ 1.

    Returns
    -------
    float
        m_∞ ∈ [0, 1) (the fixed point ±m_∞; the sign follows m₀).
    """
    params = make_params(link="he2", activation="he2", lr=lr, noise=noise, batch_size=batch_size)
    eta = params.lr / params.batch_size
    num = 2.0 - eta * (1.0 + params.noise_var)
    return math.sqrt(num / (2.0 + 4.0 * eta)) if num > 0.0 else 0.0
