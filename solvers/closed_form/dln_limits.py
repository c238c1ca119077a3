"""Long-time and α → 0 limits of diagonal-linear-network gradient flow (docs/theory/dln.md §4).

Conventions are those of docs/theory/dln.md §2: X_{μi} ~ N(0, 1/d), δ = n/d, L(β) = ‖y − Xβ‖²/(2δ), gradient
g = Xᵀ(Xβ − y)/δ, E_tr = ‖y − Xβ‖²/n and E_te = ‖β − β*‖²/d + σ² (no ½, σ² included).

Mirror coordinates
------------------
Write p = w+², q = w−² (uv: w± = (u ± v)/2), β = p − q.  Gradient flow gives p(t) = p₀e^{2cs(t)},
q(t) = q₀e^{−2cs(t)} with s(t) = −∫₀ᵗ g and c = 1 (uv) or 2 (pm clock), so

    β = B(z) := p₀e^{2z} − q₀e^{−2z},   z = c·s(t) = −c∫₀ᵗ g ∈ row space of X.

B is increasing with B(0) = β₀ and B'(z) = 2(p + q) = √(Δ² + 4β²) (|Δ| = 4√(p₀q₀)).  If p₀q₀ > 0,
B(z) = (|Δ|/2)·sinh(2(z + θ₀)) with θ₀ = φ'_Δ(β₀) = ¼·log(p₀/q₀), i.e. z = φ'_Δ(β) − φ'_Δ(β₀), which is
the mirror-flow form of §3.  If q₀ = 0 (balanced init, Δ = 0) B(z) = p₀e^{2z} > 0: the sign is frozen
and the same formulas hold with an entropy potential on β > 0.

Implicit bias (finite d, δ < 1)
-------------------------------
The convex conjugate of the potential is ψ*(z) = ½(p₀e^{2z} + q₀e^{−2z}) − ½(p₀ + q₀), and
ψ(β) = sup_z zβ − ψ*(z) = φ_Δ(β) − φ_Δ(β₀) − φ'_Δ(β₀)(β − β₀) is the Bregman divergence of φ_Δ from β₀.
If the flow converges to an interpolator, z_∞ = Xᵀλ for some λ ∈ ℝⁿ and Xβ_∞ = y: these are the KKT
conditions of  β_∞ = argmin_{Xβ=y} Σ_i ψ_i(β_i),  whose dual is the smooth concave maximisation

    max_λ  yᵀλ − Σ_i ψ_i*((Xᵀλ)_i),   gradient y − Xβ(λ),   Hessian −X·diag(B'(Xᵀλ))·Xᵀ,

solved by damped Newton (:func:`implicit_bias_interpolator`).

Proportional limit (δ < 1)
--------------------------
For a separable potential ψ and X_{μi} ~ N(0, 1/d) the interpolator is described (docs/theory/dln.md §4) by
b̂ = prox_{θψ}(β* + τZ), τ² = (σ² + E(b̂ − β*)²)/δ, E[∂_x prox] = δ.  For the DLN potential the proximal
map is explicit in z: b̂ = B(z) with B(z) + θz = x, and ∂_x b̂ = B'(z)/(B'(z) + θ).  For δ > 1 gradient
flow converges to OLS, β̂ = β* + N(0, σ²/(δ − 1)) per coordinate (E(XᵀX)⁻¹ = d/(n − d − 1)·I), so the
same expectations with the identity map and τ² = σ²/(δ − 1) give every observable (:func:`fixed_point`).

Saddle-to-saddle (α → 0, pesme init, uv)
----------------------------------------
With τ = t/log(1/α) and S = s/log(1/α): dS/dτ = −g and β = α²·sinh(2 log(1/α)·S) → 0 unless |S| = 1.
:func:`saddle_to_saddle` runs the jump process of §4 (NNLS on the active set after flipping columns by
the signs); :func:`tiny_alpha_gradient_flow` integrates the exact finite-α flow in the variable S, whose
distance to the jump process shrinks like 1/log(1/α) (§10 pitfall 11).

References
----------
Woodworth et al., COLT 2020, arXiv:2002.09277 (hyperbolic-entropy implicit bias);
Pesme & Flammarion, NeurIPS 2023, arXiv:2304.00488 (saddle-to-saddle dynamics);
S. Nishiyama, M. Imaizumi, arXiv:2510.01930 (long-time fixed point of the DMFT).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import linalg, optimize, special
from scipy.integrate import solve_ivp

from hidyn.models._base import check_choice, check_int, check_real

#: scipy's brentq refuses rtol < 4·machine epsilon (8.9e-16); a smaller requested tol is clipped to it
_BRENTQ_RTOL_MIN = 4 * np.finfo(float).eps

__all__ = [
    "implicit_bias_interpolator",
    "fixed_point",
    "saddle_to_saddle",
    "jump_process_beta",
    "tiny_alpha_gradient_flow",
    "POTENTIALS",
    "SUPPORT_THRESHOLD",
]

SUPPORT_THRESHOLD = 0.5  # |β_i| > 0.5 counts as "in the support" (docs/theory/dln.md §2.2)
POTENTIALS = ("dln", "ridge", "l1")
TEACHERS = ("rademacher", "gauss")
_EXP_CLIP = 700.0  # e^{700} ≈ 1e304: largest exponent kept finite (docs/theory/dln.md §10 pitfall 1)
_Z_MAX = 10.0  # quadrature range of the standard normal Z (tail mass 1.5e-23)
_Z_STEP = 10.0  # largest change of the mirror coordinate z per Newton step (line-search start)
_GL_X, _GL_W = np.polynomial.legendre.leggauss(10)


# ----------------------------------------------------------------------------------------------------
# the map z ↦ β = B(z) = p₀e^{2z} − q₀e^{−2z} in log form (p₀ or q₀ may vanish, α may be 1e-150)
# ----------------------------------------------------------------------------------------------------
def _log0(a):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(a, dtype=np.float64))


class _Mirror:
    """The map z ↦ β = B(z) = p₀e^{2z} − q₀e^{−2z}, its derivative and conjugate potential, in log form.

    Built from lp = log p₀, lq = log q₀ (scalars or arrays; one of them may be −inf, i.e. Δ = 0).  When
    p₀q₀ > 0, B(z) = 2γ·sinh(a) with γ = √(p₀q₀), a = a₀ + 2z, a₀ = ½log(p₀/q₀): evaluated this way there is
    no cancellation between p and q (large α) and no underflow of α² (α down to 1e-150).
    """

    def __init__(self, lp, lq):
        self.lp, self.lq = np.asarray(lp, dtype=np.float64), np.asarray(lq, dtype=np.float64)
        self.both = np.isfinite(self.lp) & np.isfinite(self.lq)
        self.only_p = np.isfinite(self.lp) & ~np.isfinite(self.lq)
        with np.errstate(invalid="ignore"):
            self.lg = np.where(self.both, 0.5 * (self.lp + self.lq), -np.inf)  # log γ
            self.a0 = np.where(self.both, 0.5 * (self.lp - self.lq), 0.0)
        self.z0 = np.where(self.both, -0.5 * self.a0, np.where(self.only_p, -np.inf, np.inf))  # B(z0) = 0

    def beta_w(self, z):
        """(β, B'(z) = 2(p + q) = √(Δ² + 4β²)), exponents clipped at 700."""
        z = np.asarray(z, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            a = self.a0 + 2.0 * z
            m = np.exp(np.minimum(self.lg + np.abs(a), _EXP_CLIP))
            e = np.exp(-2.0 * np.abs(a))
            beta_b, w_b = np.sign(a) * m * (-np.expm1(-2.0 * np.abs(a))), 2.0 * m * (1.0 + e)
            P = np.exp(np.minimum(self.lp + 2.0 * z, _EXP_CLIP))
            Q = np.exp(np.minimum(self.lq - 2.0 * z, _EXP_CLIP))
        beta = np.where(self.both, beta_b, np.where(self.only_p, P, -Q))
        w = np.where(self.both, w_b, np.where(self.only_p, 2.0 * P, 2.0 * Q))
        return beta, w

    def conj(self, z):
        """ψ*(z) = ½(p + q) − ½(p₀ + q₀) (elementwise): = 2γ·sinh(a₀ + z)·sinh(z), or ½p₀(e^{2z} − 1)."""
        z = np.asarray(z, dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            u = self.a0 + z
            both = np.sign(u) * np.sign(z) * np.exp(np.minimum(
                math.log(2.0) + self.lg + _log_abs_sinh(u) + _log_abs_sinh(z), _EXP_CLIP))
            zp = np.where(self.only_p, z, -z)  # ½p₀(e^{2z} − 1) or ½q₀(e^{−2z} − 1)
            lw = np.where(self.only_p, self.lp, self.lq)
            one = np.sign(zp) * np.exp(np.minimum(lw - math.log(2.0) + _log_abs_expm1(2.0 * zp), _EXP_CLIP))
        return np.where(self.both, both, one)

    def inverse(self, b):
        """z with B(z) = b (±inf where b is outside the range of B, i.e. of the wrong sign when Δ = 0)."""
        b = np.asarray(b, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            g2 = 2.0 * np.exp(self.lg)
            ash = np.sign(b) * (np.log(np.abs(b) + np.hypot(b, g2)) - np.log(g2))  # arcsinh(b/2γ)
            zb = 0.5 * (ash - self.a0)
            zp = np.where(b > 0, 0.5 * (np.log(np.abs(b)) - self.lp), -np.inf)
            zq = np.where(b < 0, -0.5 * (np.log(np.abs(b)) - self.lq), np.inf)
        return np.where(self.both, zb, np.where(self.only_p, zp, zq))


def _log_abs_sinh(u):
    a = np.abs(u)
    return a + np.log(-np.expm1(-2.0 * a)) - math.log(2.0)


def _log_abs_expm1(v):
    """log|e^v − 1|."""
    return np.where(v > 0, v + np.log(-np.expm1(-np.abs(v))), np.log(-np.expm1(-np.abs(v))))


def _as_coordinate_array(name, value, d):
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != d):
        raise ValueError(f"{name} must be a scalar or an array of shape ({d},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return np.broadcast_to(arr, (d,)).copy()


def _check_design(X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must be a 2-d array of shape (n, d) with n, d ≥ 1, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape (n,) = ({X.shape[0]},) to match X, got shape {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite")
    return X, y


# ----------------------------------------------------------------------------------------------------
# 1. finite-d implicit bias: dual damped Newton
# ----------------------------------------------------------------------------------------------------
def implicit_bias_interpolator(X, y, *, p0, q0, beta0=None, tol: float = 1e-12,
                               max_iter: int = 200) -> dict:
    """Limit t → ∞ of DLN gradient flow on L = ‖y − Xβ‖²/(2δ) when it interpolates (δ ≤ 1, docs/theory/dln.md §4).

    Solves  β_∞ = argmin_{Xβ=y} Σ_i φ_{Δ_i}(β_i) − φ'_{Δ_i}(β_{0,i})·β_i  through its dual: with
    z = Xᵀλ, β(λ) = p₀e^{2z} − q₀e^{−2z} (= (|Δ|/2)·sinh(2z + 2φ'_Δ(β₀)) when Δ ≠ 0) and λ ∈ ℝⁿ maximises
    yᵀλ − ½Σ(p₀e^{2z} + q₀e^{−2z}); damped Newton with an Armijo line search and a cap on the change of z
    per step.  The limit does not depend on the parametrisation (uv or pm: only the clock differs) nor on
    the time scale.

    Δ = 0 (balanced init, p₀q₀ = 0) is handled: β_i keeps the sign of its non-zero weight and the
    potential is an entropy on that half-line; the dual optimum is attained only if an interpolator
    with *strictly* those signs exists (otherwise ``converged`` is False and a warning is issued:
    gradient flow then tends to a sign-constrained least-squares point, not described here).

    Parameters
    ----------
    X : array_like, shape (n, d)
        Design (n ≤ d; for n > d gradient flow tends to OLS, use a least-squares solver).
    y : array_like, shape (n,)
        Labels.
    p0, q0 : float or array_like, shape (d,)
        Initial w+(0)², w−(0)² ≥ 0 per coordinate (:func:`hidyn.models.dln.initial_pq`);
        β₀ = p₀ − q₀ and |Δ| = 4√(p₀q₀).  p₀ + q₀ > 0 is required (otherwise β_i ≡ 0).
    beta0 : array_like, shape (d,), optional
        Start the flow from this β₀ on the same leaf |Δ| = 4√(p₀q₀) (the weights are then
        p = (β₀ + √(β₀² + Δ²/4))/2, q = p − β₀).  Default: β₀ = p₀ − q₀.  With Δ_i = 0, β₀,i ≠ 0 is
        required and fixes the frozen sign.
    tol : float
        Convergence when max_μ |(Xβ − y)_μ| ≤ tol·max(1, max|y|).
    max_iter : int
        Maximum number of Newton iterations.

    Returns
    -------
    dict
        ``beta`` (d,) the interpolator; ``dual`` (n,) λ; ``mirror_shift`` (d,) z = Xᵀλ (the change of
        the uv mirror coordinate φ'_Δ(β)); ``bregman`` Σ_i ψ_i(β_i) (the minimised potential, with
        ψ(β₀) = 0); ``residual`` max|Xβ − y|; ``newton_decrement`` (λ²/2 of the last Newton
        step, NaN if none was needed); ``n_iter`` (Newton steps taken); ``converged`` (bool).
    """
    X, y = _check_design(X, y)
    n, d = X.shape
    if n > d:
        raise ValueError(f"X has n={n} > d={d} rows: interpolators need ratio n/d ≤ 1 (for n > d gradient "
                         f"flow converges to the least-squares solution, e.g. numpy.linalg.lstsq)")
    tol = check_real("tol", tol, 0.0, lo_open=True)
    max_iter = check_int("max_iter", max_iter, 1)
    p0 = _as_coordinate_array("p0", p0, d)
    q0 = _as_coordinate_array("q0", q0, d)
    if np.any(p0 < 0) or np.any(q0 < 0):
        raise ValueError("p0 and q0 must be ≥ 0 (they are w+(0)², w−(0)²)")
    if beta0 is not None:
        beta0 = _as_coordinate_array("beta0", beta0, d)
        frozen = (p0 == 0) | (q0 == 0)
        if np.any(frozen & (beta0 == 0)):
            raise ValueError("beta0: coordinates with Δ = 4√(p0·q0) = 0 need β₀ ≠ 0 (β₀ = 0 is a fixed point)")
        # p − q = β₀ and pq = γ² on the same leaf, in logs: the weight on the side of β₀ is
        # (|β₀| + √(β₀² + 4γ²))/2 and the other one γ² divided by it
        lg = np.where(frozen, -np.inf, 0.5 * (_log0(p0) + _log0(q0)))
        lbig = np.log(0.5 * (np.abs(beta0) + np.hypot(beta0, 2.0 * np.exp(lg))))
        lsmall = 2.0 * lg - lbig
        lp, lq = np.where(beta0 >= 0, lbig, lsmall), np.where(beta0 >= 0, lsmall, lbig)
    else:
        if np.any(p0 + q0 == 0):
            raise ValueError("p0 + q0 must be > 0 for every coordinate (p0 = q0 = 0 freezes β_i at 0)")
        lp, lq = _log0(p0), _log0(q0)
    mir = _Mirror(lp, lq)
    ynorm = max(1.0, float(np.max(np.abs(y))))

    def evaluate(lam):
        z = X.T @ lam
        beta, w = mir.beta_w(z)
        F = float(np.sum(mir.conj(z))) - float(y @ lam)  # −(dual objective)
        return z, w, beta, F

    lam = np.zeros(n)
    z, w, beta, F = evaluate(lam)
    decrement = math.nan
    n_steps = 0
    for _ in range(max_iter):
        grad = X @ beta - y
        if np.max(np.abs(grad)) <= tol * ynorm:
            break
        H = (X * w) @ X.T  # w = B'(z)
        step = _solve_psd(H, -grad)
        dz = X.T @ step
        decrement = 0.5 * float(-grad @ step)
        zmax = float(np.max(np.abs(dz)))
        t = min(1.0, _Z_STEP / zmax) if zmax > 0 else 1.0
        slope = float(grad @ step)
        accepted = False
        for _ in range(80):
            cand = evaluate(lam + t * step)
            # Armijo on the dual, or (close to the optimum, where F is flat to rounding) a decrease
            # of the residual with a short step in z
            if np.isfinite(cand[3]) and (cand[3] <= F + 1e-4 * t * slope
                                         or (t * zmax <= 0.1 and np.max(np.abs(X @ cand[2] - y))
                                             < np.max(np.abs(grad)))):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        lam = lam + t * step
        z, w, beta, F = cand
        n_steps += 1
    residual = float(np.max(np.abs(X @ beta - y)))
    converged = residual <= tol * ynorm
    if not converged:
        frozen = bool(np.any(~mir.both))
        hint = (" Some coordinates have Δ = 0 (balanced init): an interpolator with their frozen signs "
                "strictly inside the half-lines may not exist." if frozen else "")
        warnings.warn(f"implicit_bias_interpolator: no convergence after {n_steps} Newton steps "
                      f"(max|Xβ − y| = {residual:.3g}).{hint}", RuntimeWarning, stacklevel=2)
    bregman = float(np.sum(z * beta - mir.conj(z)))
    return {"beta": beta, "dual": lam, "mirror_shift": z, "bregman": bregman, "residual": residual,
            "newton_decrement": float(decrement), "n_iter": n_steps, "converged": bool(converged)}


def _solve_psd(H, rhs):
    """Solve H x = rhs for a symmetric positive semi-definite H (Cholesky, jitter, then lstsq)."""
    scale = float(np.max(np.diag(H))) if H.size else 1.0
    for jitter in (0.0, 1e-14, 1e-12, 1e-10):
        try:
            low = np.linalg.cholesky(H + jitter * scale * np.eye(H.shape[0]))
            return linalg.cho_solve((low, True), rhs, check_finite=False)
        except np.linalg.LinAlgError:
            continue
    return np.linalg.lstsq(H, rhs, rcond=None)[0]


# ----------------------------------------------------------------------------------------------------
# 2. proportional-limit fixed point
# ----------------------------------------------------------------------------------------------------
class _Prox:
    """Proximal map b̂ = prox_{θψ}(x) of a separable potential ("dln", "ridge", "l1"), or the identity
    ("identity", for OLS), vectorised over x."""

    def __init__(self, potential, p0=None, q0=None):
        self.potential = potential
        if potential == "dln":  # p0, q0 > 0
            self.mir = _Mirror(math.log(p0), math.log(q0))
            self.z0 = float(self.mir.z0)  # B(z0) = 0

    def __call__(self, x, theta):
        """(b̂, ∂_x b̂) at the points x (any shape)."""
        x = np.asarray(x, dtype=np.float64)
        if self.potential == "identity":  # OLS: b̂ = x
            return x.copy(), np.ones(x.shape)
        if self.potential == "ridge":  # ψ = b²/2
            return x / (1.0 + theta), np.full(x.shape, 1.0 / (1.0 + theta))
        if self.potential == "l1":  # ψ = |b|: soft threshold
            return np.sign(x) * np.maximum(np.abs(x) - theta, 0.0), (np.abs(x) > theta).astype(float)
        b, w = self.mir.beta_w(self._solve(x, theta))
        return b, w / (w + theta)

    def _solve(self, x, theta):
        """z with h(z) = B(z) + θz − x = 0.  h is increasing, convex for z ≥ z₀ and concave for z ≤ z₀
        (B'' = 4B), so Newton started on the far side of the root (the bracket end below) converges
        monotonically without safeguards."""
        z0 = self.z0
        up = x >= theta * z0  # root above z0
        # root above z0: B(z) ≤ x − θz0 gives z ≤ B⁻¹(x − θz0), and B(z) ≥ 0 gives θz ≤ x
        zb = self.mir.inverse(x - theta * z0)
        with np.errstate(divide="ignore", invalid="ignore"):
            zt = x / theta
        z = np.where(up, np.minimum(zb, zt), np.maximum(zb, zt))
        z = np.where(np.isfinite(z), z, z0)
        for _ in range(200):
            b, w = self.mir.beta_w(z)
            step = (b + theta * z - x) / (w + theta)
            z = z - step
            if np.all(np.abs(step) <= 1e-15 * (1.0 + np.abs(z))):
                break
        return z

    def kinks(self, theta):
        """Points x around which ∂_x prox changes quickly, with their width in x."""
        if self.potential == "l1":
            return [-theta, theta], 0.0
        if self.potential in ("ridge", "identity"):
            return [], 0.0
        # B'(z) = 4γ·cosh(a) = θ (a = a₀ + 2z); no solution when θ ≤ 4γ = |Δ| (lazy regime, smooth)
        lc = math.log(theta) - math.log(4.0) - float(self.mir.lg)  # log(θ/4γ)
        if lc <= 0:
            return [], 0.0
        acosh = lc + math.log1p(math.sqrt(-math.expm1(-2.0 * lc)))
        z = (np.array([acosh, -acosh]) - float(self.mir.a0)) / 2.0
        b, _ = self.mir.beta_w(z)
        return list(b + theta * z), 0.5 * theta

    def inverse(self, b, theta):
        """x = b + θψ'(b) (the prox is increasing, so P(b̂ > b) = P(x > inverse(b)))."""
        if self.potential == "identity":
            return b
        if self.potential == "ridge":
            return b * (1.0 + theta)
        if self.potential == "l1":
            return b + theta * math.copysign(1.0, b)
        return b + theta * float(self.mir.inverse(b))


def _components(sparsity, teacher, tau):
    """Mixture components of x = β* + τZ: weight, mean m and sd s of x, E[β*|x] = a0 + a1·x,
    E[β*²|x] = c0 + c2·x², and whether β* ≠ 0."""
    comps = []
    if sparsity < 1:
        comps.append(dict(w=1.0 - sparsity, m=0.0, s=tau, a0=0.0, a1=0.0, c0=0.0, c2=0.0, support=False))
    if teacher == "rademacher":
        for v in (1.0, -1.0):
            comps.append(dict(w=sparsity / 2, m=v, s=tau, a0=v, a1=0.0, c0=1.0, c2=0.0, support=True))
    else:
        v = 1.0 + tau * tau
        comps.append(dict(w=sparsity, m=0.0, s=math.sqrt(v), a0=0.0, a1=1.0 / v, c0=tau * tau / v,
                          c2=1.0 / v ** 2, support=True))
    return comps


def _nodes(comp, kinks, width):
    """Composite Gauss–Legendre nodes x and weights (including the normal density of x) for one
    component, refined with panels of width ``width`` around each kink."""
    m, s = comp["m"], comp["s"]
    if s == 0.0:
        return np.array([m]), np.array([1.0])
    edges = [np.linspace(-_Z_MAX, _Z_MAX, 41)]
    for k in kinks:
        zk = (k - m) / s
        edges.append(np.array([zk]))
        h = width / s
        if 0 < h < 0.5:
            edges.append(zk + h * np.arange(-24, 25))
    e = np.unique(np.clip(np.concatenate(edges), -_Z_MAX, _Z_MAX))
    mid, half = 0.5 * (e[1:] + e[:-1]), 0.5 * (e[1:] - e[:-1])
    Z = (mid[:, None] + half[:, None] * _GL_X[None, :]).ravel()
    W = (half[:, None] * _GL_W[None, :]).ravel() * np.exp(-0.5 * Z * Z) / math.sqrt(2.0 * math.pi)
    return m + s * Z, W


def _expectations(prox, theta, tau, sparsity, teacher):
    """E over (β*, Z) of ∂prox, b̂², b̂β*, |b̂|, (b̂ − β*)² and the support probabilities."""
    kinks, width = prox.kinks(theta)
    out = dict(dprox=0.0, norm2=0.0, overlap=0.0, norm1=0.0, mse=0.0, tpr=0.0, fpr=0.0)
    w_sup = sparsity
    w_null = 1.0 - sparsity
    x_up = prox.inverse(SUPPORT_THRESHOLD, theta)
    x_dn = prox.inverse(-SUPPORT_THRESHOLD, theta)
    for c in _components(sparsity, teacher, tau):
        x, W = _nodes(c, kinks, width)
        b, db = prox(x, theta)
        e_star = c["a0"] + c["a1"] * x
        e_star2 = c["c0"] + c["c2"] * x * x
        wt = c["w"]
        out["dprox"] += wt * float(W @ db)
        out["norm2"] += wt * float(W @ (b * b))
        out["overlap"] += wt * float(W @ (b * e_star))
        out["norm1"] += wt * float(W @ np.abs(b))
        out["mse"] += wt * float(W @ (b * b - 2.0 * b * e_star + e_star2))
        if c["s"] > 0:
            prob = special.ndtr((c["m"] - x_up) / c["s"]) + special.ndtr((x_dn - c["m"]) / c["s"])
        else:
            prob = float(abs(float(prox(np.array([c["m"]]), theta)[0][0])) > SUPPORT_THRESHOLD)
        if c["support"]:
            out["tpr"] += wt * prob / w_sup
        else:
            out["fpr"] += wt * prob / w_null
    return out


def fixed_point(*, ratio: float, sparsity: float, teacher: str = "rademacher", noise: float = 0.0,
                p0: float | None = None, q0: float | None = None, potential: str = "dln",
                tol: float = 1e-12) -> dict:
    """d → ∞ limit of the DLN gradient-flow solution at t = ∞ (docs/theory/dln.md §4), exact in the teacher prior.

    For δ < 1 the flow converges to the interpolator of :func:`implicit_bias_interpolator`, described in
    the proportional limit by b̂ = prox_{θψ}(β* + τZ) (Z ~ N(0, 1)) with

        τ² = (σ² + E(b̂ − β*)²)/δ,   E[∂_x prox_{θψ}(β* + τZ)] = δ,

    where ψ is the Bregman potential of the DLN (p₀, q₀), or the ridge (ψ = β²/2: the α → ∞, min-ℓ2
    limit) or ℓ1 (ψ = |β|: the α → 0, basis-pursuit limit) potential.  The largest root τ is returned
    (the one reached by state evolution from an uninformed start).  Expectations over β* are exact sums over the point
    masses (rademacher) or use the Gaussian conditional moments of β* given x (gauss); the remaining
    integral over Z is a composite 10-point Gauss–Legendre rule on |Z| ≤ 10, refined around the points
    where ∂prox changes quickly.  For δ ≥ 1 gradient flow converges to OLS (any Δ ≠ 0), i.e.
    b̂ = β* + τZ with τ² = σ²/(δ − 1).

    Parameters
    ----------
    ratio : float
        δ = n/d > 0.
    sparsity : float
        ρ ∈ (0, 1], fraction of non-zero teacher coordinates.
    teacher : {"rademacher", "gauss"}
        Law of the non-zero teacher coordinates (±1 or N(0, 1)).
    noise : float
        σ ≥ 0, label-noise standard deviation.
    p0, q0 : float
        Initial w+(0)², w−(0)² (:func:`hidyn.models.dln.initial_pq`); both > 0 (Δ ≠ 0).  Required for
        ``potential="dln"``, ignored otherwise.  p₀ ≠ q₀ (β₀ ≠ 0) is allowed.
    potential : {"dln", "ridge", "l1"}
    tol : float
        Relative tolerance of the root finding for θ and τ.

    Returns
    -------
    dict
        Floats ``test_loss`` (σ² + E(b̂ − β*)²), ``train_loss`` (0 for an interpolator, σ²(1 − 1/δ) for OLS),
        ``overlap`` E b̂β*, ``norm1`` E|b̂|, ``norm2`` E b̂², ``tpr``, ``fpr`` (threshold 0.5 on |b̂|),
        ``theta`` θ (0 for OLS), ``tau`` τ, ``df`` E[∂prox] (= δ for δ < 1, 1 for OLS), and the string
        ``regime`` ("interpolator" or "ols").  For δ = 1 and σ > 0 the losses and norms are infinite.
        When there is no positive root (exact recovery, e.g. the ℓ1 potential below the Donoho–Tanner
        transition with σ = 0) every output is evaluated at τ ≈ 1e-15·√((σ² + ρ)/δ), where it has
        reached its τ ↓ 0 value to rounding.
    """
    ratio = check_real("ratio", ratio, 0.0, lo_open=True)
    sparsity = check_real("sparsity", sparsity, 0.0, 1.0, lo_open=True)
    teacher = check_choice("teacher", teacher, TEACHERS)
    noise = check_real("noise", noise, 0.0)
    potential = check_choice("potential", potential, POTENTIALS)
    tol = check_real("tol", tol, 0.0, 1e-2, lo_open=True)
    if potential == "dln":
        if p0 is None or q0 is None:
            raise ValueError("p0 and q0 are required for potential='dln' (see hidyn.models.dln.initial_pq)")
        p0 = check_real("p0", p0, 0.0)
        q0 = check_real("q0", q0, 0.0)
        if p0 == 0.0 or q0 == 0.0:
            raise ValueError(f"p0={p0!r}, q0={q0!r}: the fixed point needs Δ = 4√(p0·q0) > 0; with Δ = 0 "
                             f"(balanced init) the signs of β are frozen and the flow is not described "
                             f"by this fixed point (use implicit_bias_interpolator at finite d)")
    star2 = sparsity  # E β*² = ρ for both teachers (amplitude 1)
    if ratio >= 1.0:
        return _ols_limit(ratio, sparsity, teacher, noise, star2)
    prox = _Prox(potential, p0, q0)

    def theta_of(tau, guess):
        def h(log_theta):
            return _expectations(prox, math.exp(log_theta), tau, sparsity, teacher)["dprox"] - ratio

        lo = hi = math.log(guess)
        step = 0.5
        while h(lo) < 0:  # E ∂prox decreases with θ
            lo -= step
            step *= 2
            if lo < -700:
                raise RuntimeError("fixed_point: no θ > 0 with E[∂prox] = ratio (θ → 0)")
        step = 0.5
        while h(hi) > 0:
            hi += step
            step *= 2
            if hi > 700:
                raise RuntimeError("fixed_point: no θ with E[∂prox] = ratio (θ → ∞)")
        if lo == hi:
            return math.exp(lo)
        return math.exp(optimize.brentq(h, lo, hi, xtol=1e-14, rtol=max(tol, _BRENTQ_RTOL_MIN)))

    cache = {}  # last θ (warm start of the bracket) and the solution at the last τ

    def G(log_tau):
        """δτ² − σ² − E(b̂ − β*)²: > 0 above the largest fixed point."""
        tau = math.exp(log_tau)
        guess = cache.get("theta", tau if potential != "ridge" else 1.0 / ratio - 1.0)
        theta = theta_of(tau, guess)
        cache["theta"] = theta
        e = _expectations(prox, theta, tau, sparsity, teacher)
        cache["last"] = (theta, e)
        return ratio * tau * tau - noise ** 2 - e["mse"]

    scale = math.sqrt((noise ** 2 + star2) / ratio)
    hi = math.log(scale)
    while G(hi) <= 0:
        hi += 1.0
        if hi > math.log(scale) + 60:
            raise RuntimeError("fixed_point: no fixed point found (τ → ∞)")
    found = False
    while hi > math.log(scale) - 35.0:  # down to τ ≈ 1e-15·scale
        lo = hi - 1.0
        if G(lo) < 0:
            found = True
            break
        hi = lo
    if found:
        log_tau = optimize.brentq(G, lo, hi, xtol=1e-14, rtol=max(tol, _BRENTQ_RTOL_MIN))
    else:
        log_tau = hi  # no positive root: exact recovery, report the limit τ ↓ 0
    G(log_tau)
    theta, e = cache["last"]
    tau = math.exp(log_tau)
    out = {"test_loss": noise ** 2 + e["mse"], "train_loss": 0.0, "overlap": e["overlap"],
           "norm1": e["norm1"], "norm2": e["norm2"], "tpr": e["tpr"], "fpr": e["fpr"],
           "theta": theta, "tau": tau, "df": e["dprox"]}
    return {**{k: float(v) for k, v in out.items()}, "regime": "interpolator"}


def _ols_limit(ratio, sparsity, teacher, noise, star2):
    """δ ≥ 1: β̂ = β* + N(0, σ²/(δ − 1)) per coordinate, E_tr = σ²(1 − 1/δ)."""
    if ratio == 1.0 and noise > 0:
        return {"test_loss": math.inf, "train_loss": 0.0, "overlap": star2, "norm1": math.inf,
                "norm2": math.inf, "tpr": 1.0, "fpr": 1.0 if sparsity < 1 else 0.0, "theta": 0.0,
                "tau": math.inf, "df": 1.0, "regime": "ols"}
    tau = 0.0 if noise == 0 else noise / math.sqrt(ratio - 1.0)
    e = _expectations(_Prox("identity"), 0.0, tau, sparsity, teacher)
    out = {"test_loss": noise ** 2 + tau * tau, "train_loss": noise ** 2 * (1.0 - 1.0 / ratio),
           "overlap": e["overlap"], "norm1": e["norm1"], "norm2": e["norm2"], "tpr": e["tpr"],
           "fpr": e["fpr"], "theta": 0.0, "tau": tau, "df": 1.0}
    return {**{k: float(v) for k, v in out.items()}, "regime": "ols"}


# ----------------------------------------------------------------------------------------------------
# 3. saddle-to-saddle jump process (α → 0)
# ----------------------------------------------------------------------------------------------------
def saddle_to_saddle(X, y, *, max_jumps: int | None = None, tol: float = 1e-12, nonneg: bool = False) -> dict:
    """α → 0 limit of uv gradient flow from the `pesme` init, in rescaled time τ = t/log(1/α) (docs/theory/dln.md §4).

    The limit β(τ) is piecewise constant.  With s(τ) = −∫₀^τ g (g = Xᵀ(Xβ − y)/δ, δ = n/d), s ∈ [−1, 1]^d:
    each coordinate's s_i moves at speed −g_i until the next one reaches ±1 (the jump time); then
    A = {i: |s_i| = 1} and β ← argmin L(b) over b_i = 0 (i ∉ A), s_i·b_i ≥ 0 (i ∈ A), computed by NNLS on
    the columns X_i·s_i.  Coordinates whose NNLS weight is 0 and whose gradient points inwards leave the
    boundary (and the support).  The process stops when g = 0: at the min-ℓ1 interpolator for n < d,
    at the least-squares solution for n ≥ d (full column rank).

    ``nonneg=True`` is the limit from the `balanced` init (Δ = 0, β₀ = α² > 0: signs frozen, docs/theory/dln.md §10
    pitfall 3).  Then β = α²e^{2z} with ż = −g, so in S = z/log(1/α) a coordinate activates only when
    S_i reaches +1 (there is no lower boundary: S_i may decrease without bound while β_i stays ~0), the
    active set is {i: S_i = 1} with b_i ≥ 0 (plain NNLS), and the process ends at the minimum-Σβ
    non-negative interpolator (or the NNLS solution).  Same clock: the jump times in t are ≈ τ·log(1/α).

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    max_jumps : int, optional
        Stop after this many jumps (default 20·d + 20; a warning is issued if g ≠ 0 then).
    tol : float
        A gradient entry with |g_i| ≤ tol·max(1, max|Xᵀy|/δ) counts as 0 (jump times within a relative
        1e-9 of each other are simultaneous).
    nonneg : bool
        Sign-frozen (balanced-init) variant, see above.

    Returns
    -------
    dict
        ``taus`` (K,) jump times τ_1 < … < τ_K; ``betas`` (K + 1, d): β on each plateau (row 0 is the
        initial saddle β = 0, row k the plateau after jump k); ``train_loss`` (K + 1,) E_tr = ‖y − Xβ‖²/n
        on each plateau; ``s`` (K + 1, d) the dual variable s at the start of each plateau;
        ``supports`` list of K + 1 index arrays {i: β_i ≠ 0}; ``active_sets`` list of K + 1 index arrays
        {i: |s_i| = 1}; ``beta`` (d,) the final point; ``n_jumps`` K; ``converged`` (g = 0 reached).
    """
    X, y = _check_design(X, y)
    n, d = X.shape
    delta = n / d
    tol = check_real("tol", tol, 0.0, 1e-3, lo_open=True)
    if max_jumps is None:
        max_jumps = 20 * d + 20
    max_jumps = check_int("max_jumps", max_jumps, 0)
    gtol = tol * max(1.0, float(np.max(np.abs(X.T @ y))) / delta)
    beta = np.zeros(d)
    s = np.zeros(d)
    tau = 0.0
    taus, betas, losses, ss, supports, actives = [], [beta.copy()], [], [s.copy()], [], []

    def record():
        losses.append(float(np.mean((y - X @ beta) ** 2)))
        supports.append(np.flatnonzero(beta != 0))
        actives.append(np.flatnonzero((s == 1.0) if nonneg else (np.abs(s) == 1.0)))

    record()
    converged = False
    for _ in range(max_jumps + 1):
        g = X.T @ (X @ beta - y) / delta
        moving = np.abs(g) > gtol
        if not np.any(moving):
            converged = True
            break
        if len(taus) == max_jumps:
            break
        with np.errstate(divide="ignore"):
            dt = np.where(moving, (1.0 + np.sign(g) * s) / np.abs(g), np.inf)
        # a coordinate on the boundary pushed outwards stays there (its NNLS gradient is 0 up to rounding)
        dt = np.where(moving & (np.abs(s) == 1.0) & (np.sign(g) == -s), np.inf, dt)
        if nonneg:                      # only the upper boundary S = +1 exists (reached when g < 0)
            dt = np.where(g < 0, dt, np.inf)
        step = float(np.min(dt))
        if not np.isfinite(step):
            break
        hit = dt <= step * (1.0 + 1e-9) + 1e-300
        tau += step
        s = s - step * np.where(moving, g, 0.0)
        s = np.minimum(s, 1.0) if nonneg else np.clip(s, -1.0, 1.0)
        s[hit] = -np.sign(g[hit])
        active = np.flatnonzero(s == 1.0) if nonneg else np.flatnonzero(np.abs(s) == 1.0)
        beta = np.zeros(d)
        if active.size:
            cols = X[:, active] * s[active]
            c, _ = optimize.nnls(cols, y, maxiter=50 * max(active.size, 10))
            beta[active] = s[active] * c
        taus.append(tau)
        betas.append(beta.copy())
        ss.append(s.copy())
        record()
    if not converged:
        warnings.warn(f"saddle_to_saddle: stopped after {len(taus)} jumps with a non-zero gradient "
                      f"(raise max_jumps)", RuntimeWarning, stacklevel=2)
    return {"taus": np.array(taus), "betas": np.array(betas), "train_loss": np.array(losses),
            "s": np.array(ss), "supports": supports, "active_sets": actives, "beta": beta.copy(),
            "n_jumps": len(taus), "converged": converged}


def jump_process_beta(result: dict, taus) -> np.ndarray:
    """β(τ) of the jump process returned by :func:`saddle_to_saddle` at the rescaled times ``taus``.

    Parameters
    ----------
    result : dict
        Output of :func:`saddle_to_saddle`.
    taus : array_like, shape (m,)
        Rescaled times τ = t/log(1/α) ≥ 0.

    Returns
    -------
    ndarray, shape (m, d)
        The plateau value in force at each τ (right-continuous: at a jump time, the new plateau).
    """
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if np.any(~np.isfinite(taus)) or np.any(taus < 0):
        raise ValueError("taus must be finite and ≥ 0")
    idx = np.searchsorted(result["taus"], taus, side="right")
    return result["betas"][idx]


# ----------------------------------------------------------------------------------------------------
# 4. finite-d gradient flow at tiny α in rescaled time
# ----------------------------------------------------------------------------------------------------
def tiny_alpha_gradient_flow(X, y, *, alpha: float, taus, rtol: float = 1e-10,
                             init: str = "pesme") -> np.ndarray:
    """Exact uv gradient flow from the `pesme` init (u₀ = √2α, v₀ = 0) at rescaled times τ = t/log(1/α).

    In the variable S = −(1/log(1/α))∫₀ᵗ g (docs/theory/dln.md §4) the flow is dS/dτ = −g(β), with
    β = α²·sinh(2 log(1/α)·S) = ½·sign(S)·e^{2ℓ(|S|−1)}·(1 − e^{−4ℓ|S|}), ℓ = log(1/α): S is O(1) for
    every α, so α = 1e-30 or 1e-300 is as cheap as α = 0.1 (no underflow of α²).  Integrated by the
    implicit Radau method with the exact Jacobian (the flow is stiff, with rates ∝ log(1/α), once
    coordinates are active).

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,)
    alpha : float
        Initialisation scale α ∈ (0, 1) (α ≥ 1 has no rescaled clock).
    taus : array_like, shape (m,)
        Non-decreasing rescaled times τ ≥ 0.
    rtol : float
        Relative tolerance of the integrator (absolute tolerance rtol/100 on S).
    init : {"pesme", "balanced"}
        ``"balanced"`` (u₀ = v₀ = α, Δ = 0): β = α²e^{2ℓS} = e^{2ℓ(S−1)} > 0 (signs frozen), the flow
        whose α → 0 limit is ``saddle_to_saddle(..., nonneg=True)``.

    Returns
    -------
    ndarray, shape (m, d)
        β(t = τ·log(1/α)).
    """
    X, y = _check_design(X, y)
    n, d = X.shape
    delta = n / d
    alpha = check_real("alpha", alpha, 0.0, 1.0, lo_open=True, hi_open=True)
    rtol = check_real("rtol", rtol, 1e-14, 1e-3)
    taus = np.atleast_1d(np.asarray(taus, dtype=np.float64))
    if taus.ndim != 1 or np.any(~np.isfinite(taus)) or np.any(taus < 0) or np.any(np.diff(taus) < 0):
        raise ValueError("taus must be a 1-d array of finite, non-negative, non-decreasing times")
    ell = -math.log(alpha)
    G = X.T @ X / delta
    b = X.T @ y / delta

    # |β| ≤ e^{300}/2: far beyond any value on the path, small enough that trial steps of the
    # integrator cannot overflow G·β
    clip = 300.0

    if init not in ("pesme", "balanced"):
        raise ValueError(f"init={init!r} is invalid: must be 'pesme' or 'balanced'")

    def beta_of(S):
        if init == "balanced":
            return np.exp(np.minimum(2.0 * ell * (S - 1.0), clip))
        a = np.abs(S)
        e = np.exp(np.minimum(2.0 * ell * (a - 1.0), clip))
        return 0.5 * np.sign(S) * e * (-np.expm1(-4.0 * ell * a))

    def dbeta(S):
        if init == "balanced":
            return 2.0 * ell * np.exp(np.minimum(2.0 * ell * (S - 1.0), clip))
        a = np.abs(S)
        e = np.exp(np.minimum(2.0 * ell * (a - 1.0), clip))
        return ell * e * (1.0 + np.exp(-4.0 * ell * a))

    def rhs(_t, S):
        return b - G @ beta_of(S)

    def jac(_t, S):
        return -G * dbeta(S)[None, :]

    out = np.empty((taus.size, d))
    t_end = float(taus[-1]) if taus.size else 0.0
    if t_end == 0.0:
        out[:] = 0.0
        return out
    sol = solve_ivp(rhs, (0.0, t_end), np.zeros(d), method="Radau", jac=jac, t_eval=taus,
                    rtol=rtol, atol=rtol * 1e-2)
    if sol.status < 0:
        raise RuntimeError(f"tiny_alpha_gradient_flow: integration failed: {sol.message}")
    return np.array([beta_of(S) for S in sol.y.T])
