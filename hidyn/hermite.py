"""Hermite expansions and Gaussian expectations for the spiked-covariance single-index family.

Everything here follows docs/theory/single_index.md (the theory note) and uses numpy/scipy only, so that
:mod:`hidyn.observables` may import it.

Conventions (docs/theory/single_index.md §1, §3, P10)
-----------------------------------------
* h_n := He_n/√(n!) are the **normalised** probabilists' Hermite polynomials, E[h_n(z) h_m(z)] = δ_nm
  for z ~ N(0, 1).  The link names ``"he1"`` … ``"he4"`` mean h_1 … h_4.
* For a function f and a variance v, α_n(f; v) := E[f(√v z) h_n(z)] (note §3).  For v = 1 these are the
  Hermite coefficients c_n of f, f = Σ_n c_n h_n.
* Mehler: for (λ, ν) centred Gaussian with covariance [[Q, M], [M, R]] and ρ = M/√(QR),
  E[a(λ) b(ν)] = Σ_n α_n(a; Q) α_n(b; R) ρⁿ (note §3).  The sum is finite, hence exact, as soon as one
  of a, b is a polynomial.
* Two Gaussian functions that are both non-polynomial are integrated with the kink-aware polar rule of
  note §3 (:func:`polar_rule`): whiten, go to polar coordinates, cut the angle at the kink rays λ = 0
  and ν = 0, composite Gauss–Legendre panels in angle and radius.

What a :class:`Link` is
-----------------------
A target link g or a student activation σ of the single-index family, built by :func:`make_link` from

* a registry name of :mod:`hidyn.activations` (``"he1"``…``"he4"``, ``"linear"``, ``"quadratic"`` are
  recognised as polynomials and handled exactly; ``"relu"``, ``"tanh"``, ``"erf"``, ``"sigmoid"`` by
  quadrature);
* normalised Hermite coefficients: a dict ``{k: c_k}`` or a sequence ``[c_0, c_1, ...]``
  (f = Σ c_k h_k, a polynomial);
* a tuple ``(g, dg)`` / ``(g, dg, d2g)`` of vectorised callables (quadrature; a possible kink at 0 is
  always respected because every rule here has a breakpoint there).

References
----------
Ben Arous, Gheissari, Jagannath, JMLR 22 (2021), arXiv:2003.10409 (information exponent).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real

import numpy as np
from numpy.polynomial import hermite_e as _herme
from numpy.polynomial import polynomial as _poly

from hidyn.activations import Activation, get_activation

__all__ = [
    "Link",
    "make_link",
    "hermite_coefficients",
    "information_exponent",
    "mehler_sum",
    "mehler",
    "polar_rule",
    "polar_expectation",
    "gaussian_expectation",
    "GaussianMoments",
    "check_spike",
    "target_scale",
    "projection_covariance",
    "spike_gain",
]

# Registry names that are polynomials, as normalised Hermite coefficients {n: c_n} (note P10:
# "he_k" is h_k; quadratic x² = He_2 + 1 = √2 h_2 + h_0; linear x = h_1).  make_link checks each
# entry against the registry function, so a change in activations.py cannot go unnoticed.
_POLYNOMIAL_NAMES: dict[str, dict[int, float]] = {
    "he1": {1: 1.0},
    "he2": {2: 1.0},
    "he3": {3: 1.0},
    "he4": {4: 1.0},
    "linear": {1: 1.0},
    "quadratic": {0: 1.0, 2: math.sqrt(2.0)},
}

# Default truncation of Hermite series of non-polynomial functions.
DEFAULT_N_MAX = 40


# ---------------------------------------------------------------------------------------------------
# Power basis <-> normalised Hermite basis
# ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _power_to_hermite(degree: int) -> np.ndarray:
    """Matrix T with z^j = Σ_n T[n, j] h_n(z), shape (degree+1, degree+1).

    Built column by column from z·h_n = √(n+1) h_{n+1} + √n h_{n−1} (the normalised three-term
    recurrence), which avoids factorials and is exact up to the rounding of the square roots.
    """
    T = np.zeros((degree + 1, degree + 1))
    T[0, 0] = 1.0
    sq = np.sqrt(np.arange(degree + 2, dtype=np.float64))
    for j in range(degree):
        col = T[:, j]
        new = np.zeros(degree + 1)
        new[1:j + 2] += sq[1:j + 2] * col[:j + 1]   # √(n)   c_{n−1} → h_n   (n = 1 … j+1)
        new[:j] += sq[1:j + 1] * col[1:j + 1]       # √(n+1) c_{n+1} → h_n   (n = 0 … j−1)
        T[:, j + 1] = new
    T.flags.writeable = False
    return T


def _power_hermite_coefficients(power: np.ndarray, scale: float) -> np.ndarray:
    """α_n(p; v) = E[p(√v z) h_n(z)] for a power series p (ascending), exact; shape (deg+1,)."""
    deg = power.size - 1
    scaled = power * np.sqrt(scale) ** np.arange(deg + 1)   # p(√v z) = Σ p_j v^{j/2} z^j
    return _power_to_hermite(deg) @ scaled


def _hermite_to_power(coef: np.ndarray) -> np.ndarray:
    """Power-series coefficients of Σ_n c_n h_n (ascending), via numpy's He_n basis."""
    coef = np.asarray(coef, dtype=np.float64)
    fact = np.array([math.sqrt(math.factorial(n)) for n in range(coef.size)])
    return _herme.herme2poly(coef / fact)  # h_n = He_n/√(n!)


def _normalised_hermite_table(z: np.ndarray, n_max: int) -> np.ndarray:
    """h_n(z) for n = 0 … n_max, shape (n_max+1, z.size), by the stable normalised recurrence."""
    H = np.empty((n_max + 1, z.size))
    H[0] = 1.0
    if n_max >= 1:
        H[1] = z
    for n in range(1, n_max):
        H[n + 1] = (z * H[n] - math.sqrt(n) * H[n - 1]) / math.sqrt(n + 1)
    return H


# ---------------------------------------------------------------------------------------------------
# Link description
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Link:
    """A target link g or student activation σ of the single-index family.

    Build it with :func:`make_link`.

    Attributes
    ----------
    name : str
        Registry name, ``"hermite{...}"`` for coefficient input, or ``"custom"``.
    activation : Activation
        The function with its derivatives (``g``, ``dg``, ``d2g``); registry functions come from
        :func:`hidyn.activations.get_activation`.
    power : ndarray of float64, shape (degree+1,), or None
        Power-series coefficients (ascending) when the function is a polynomial, else None.
    kink : bool
        True for non-smooth functions (ReLU).
    """

    name: str
    activation: Activation
    power: np.ndarray | None = None
    kink: bool = False

    @property
    def is_polynomial(self) -> bool:
        return self.power is not None

    @property
    def degree(self) -> int | None:
        """Polynomial degree (None for non-polynomials)."""
        return None if self.power is None else self.power.size - 1

    def g(self, x):
        return self.activation.g(x)

    def dg(self, x):
        return self.activation.dg(x)

    def hermite(self, n_max: int | None = None, scale: float = 1.0) -> np.ndarray:
        """α_n(f; v) = E[f(√v z) h_n(z)] for n = 0 … n_max (note §3).

        Parameters
        ----------
        n_max : int, optional
            Highest order.  Default: the degree for polynomials, :data:`DEFAULT_N_MAX` otherwise.
        scale : float
            The variance v ≥ 0 of the argument.

        Returns
        -------
        ndarray, shape (n_max+1,)
            Exact for polynomials; kink-aware composite Gauss–Legendre quadrature otherwise.
        """
        return hermite_coefficients(self, n_max, scale=scale)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


def _is_real_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool) and math.isfinite(float(x))


def _link_from_hermite(coefs: dict[int, float], parameter: str) -> Link:
    """Polynomial link Σ_k c_k h_k from normalised Hermite coefficients."""
    if not coefs:
        raise ValueError(f"{parameter}: the Hermite expansion is empty (no coefficients); give "
                         f"{{k: c_k}} or [c_0, c_1, ...] with at least one entry")
    n_max = max(coefs)
    c = np.zeros(n_max + 1)
    for k, v in coefs.items():
        c[k] = float(v)
    power = np.trim_zeros(_hermite_to_power(c), "b")
    if power.size == 0:
        power = np.zeros(1)
    d1 = _poly.polyder(power) if power.size > 1 else np.zeros(1)
    d2 = _poly.polyder(d1) if d1.size > 1 else np.zeros(1)
    label = ",".join(f"{k}:{c[k]:.6g}" for k in sorted(coefs) if c[k] != 0.0) or "0"
    act = Activation(
        name=f"hermite{{{label}}}",
        g=lambda x, p=power: _poly.polyval(np.asarray(x, dtype=np.float64), p),
        dg=lambda x, p=d1: _poly.polyval(np.asarray(x, dtype=np.float64), p),
        d2g=lambda x, p=d2: _poly.polyval(np.asarray(x, dtype=np.float64), p),
    )
    power.flags.writeable = False
    return Link(act.name, act, power, False)


def make_link(spec, *, parameter: str = "link") -> Link:
    """Build a :class:`Link` from a name, Hermite coefficients, or callables.

    Parameters
    ----------
    spec : str, Link, Activation, dict, sequence of float, or tuple of callables
        * name: any :data:`hidyn.activations.ACTIVATIONS` entry (``"he1"``…``"he4"`` are h_k);
        * ``{k: c_k}`` or ``[c_0, c_1, …]``: f = Σ_k c_k h_k (normalised Hermite coefficients);
        * ``(g, dg)`` or ``(g, dg, d2g)``: vectorised callables.
    parameter : str
        Name of the field (``"link"`` or ``"activation"``), used in error messages.

    Returns
    -------
    Link

    Raises
    ------
    ValueError
        Unknown name, empty or non-numeric coefficients, negative orders, malformed tuple.
    """
    if isinstance(spec, Link):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        act = get_activation(key, parameter=parameter)  # raises ValueError for unknown names
        if key in _POLYNOMIAL_NAMES:
            link = _link_from_hermite(_POLYNOMIAL_NAMES[key], parameter)
            x = np.linspace(-3.0, 3.0, 13)
            if not np.allclose(link.g(x), act.g(x), rtol=1e-12, atol=1e-12):
                raise RuntimeError(f"activation {key!r} no longer matches its Hermite expansion "
                                   f"{_POLYNOMIAL_NAMES[key]} in hidyn.hermite")
            return Link(key, act, link.power, False)
        return Link(key, act, None, bool(act.kink))
    if isinstance(spec, Activation):
        if spec.name in _POLYNOMIAL_NAMES and spec is get_activation(spec.name):
            return make_link(spec.name, parameter=parameter)
        return Link(spec.name, spec, None, bool(spec.kink))
    if isinstance(spec, dict):
        coefs = {}
        for k, v in spec.items():
            if not (isinstance(k, Integral) and not isinstance(k, bool) and k >= 0):
                raise ValueError(f"{parameter}: Hermite orders must be integers ≥ 0, got key {k!r}")
            if not _is_real_number(v):
                raise ValueError(f"{parameter}: Hermite coefficient c_{k} must be a finite real "
                                 f"number, got {v!r}")
            coefs[int(k)] = float(v)
        return _link_from_hermite(coefs, parameter)
    if isinstance(spec, (tuple, list)) and spec and all(callable(f) for f in spec):
        act = get_activation(tuple(spec), parameter=parameter)
        return Link(act.name, act, None, bool(act.kink))
    if isinstance(spec, (tuple, list, np.ndarray)):
        arr = np.asarray(spec)
        if arr.ndim == 1 and arr.size and all(_is_real_number(v) for v in arr.tolist()):
            return _link_from_hermite({k: float(v) for k, v in enumerate(arr.tolist())}, parameter)
        if arr.size == 0:
            raise ValueError(f"{parameter}: the Hermite expansion is empty (no coefficients); give "
                             f"{{k: c_k}} or [c_0, c_1, ...] with at least one entry")
    if callable(spec):
        get_activation(spec, parameter=parameter)  # raises the registry's message
    raise ValueError(f"{parameter}={spec!r} must be an activation name, Hermite coefficients "
                     f"({{k: c_k}} or [c_0, c_1, ...]) or a tuple (g, dg[, d2g]) of callables")


# ---------------------------------------------------------------------------------------------------
# 1-d Hermite coefficients
# ---------------------------------------------------------------------------------------------------
_GL_LINE = 20      # Gauss–Legendre nodes per panel, 1-d rule
_LINE_HALF = 20.0  # the 1-d rule covers z ∈ [−20, 20]; φ(20) ≈ 1e-87


@lru_cache(maxsize=32)
def _line_rule(panels_per_unit: int, n_max: int):
    """Composite Gauss–Legendre rule for E[f(z)], z ~ N(0,1), with a breakpoint at z = 0.

    Panels of width 1/panels_per_unit on [−20, 20] (0 is a panel edge, so a kink of f at 0 costs
    nothing).  Returns nodes z, weights w (including the density φ) and the table of h_n(z), n ≤ n_max.
    """
    x, wx = np.polynomial.legendre.leggauss(_GL_LINE)
    n_pan = int(round(2 * _LINE_HALF * panels_per_unit))
    width = 1.0 / panels_per_unit
    left = -_LINE_HALF + width * np.arange(n_pan)
    z = (left[:, None] + 0.5 * width * (x[None, :] + 1.0)).ravel()
    w = (0.5 * width * np.broadcast_to(wx, (n_pan, _GL_LINE))).ravel()
    w = w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    H = _normalised_hermite_table(z, n_max)
    for arr in (z, w, H):
        arr.flags.writeable = False
    return z, w, H


def _panels_per_unit(scale: float) -> int:
    # f(√v z) varies on the scale 1/√v (tanh has poles at z = ±iπ/(2√v)): refine the panels with √v.
    return int(min(64, max(1, math.ceil(math.sqrt(max(scale, 0.0))))))


def _quadrature_hermite_coefficients(f: Callable, n_max: int, scale: float) -> np.ndarray:
    z, w, H = _line_rule(_panels_per_unit(scale), max(n_max, 1))
    vals = np.asarray(f(math.sqrt(scale) * z), dtype=np.float64)
    return H[:n_max + 1] @ (w * vals)


def hermite_coefficients(spec, n_max: int | None = None, *, scale: float = 1.0,
                         parameter: str = "link") -> np.ndarray:
    """Coefficients α_n(f; v) = E[f(√v z) h_n(z)], n = 0 … n_max (note §3).

    Parameters
    ----------
    spec : link specification (see :func:`make_link`)
    n_max : int, optional
        Highest order returned.  Default: the degree of a polynomial, else :data:`DEFAULT_N_MAX`.
    scale : float
        Variance v ≥ 0 of the argument (v = 1: ordinary Hermite coefficients c_n; v = R: the raw target
        of pitfall P4).
    parameter : str
        Name used in error messages.

    Returns
    -------
    ndarray of float64, shape (n_max+1,)
        Exact (power basis → h_n by the three-term recurrence) for polynomials.  Otherwise composite
        Gauss–Legendre on [−20, 20] with a breakpoint at 0 (20 nodes per panel of width ≤ 1/√v),
        accurate to ~1e-14 for ReLU, tanh, erf, sigmoid and n ≲ 60.
    """
    link = make_link(spec, parameter=parameter)
    scale = float(scale)
    if not (math.isfinite(scale) and scale >= 0.0):
        raise ValueError(f"scale must be a finite variance ≥ 0, got {scale!r}")
    if n_max is not None and (not isinstance(n_max, Integral) or n_max < 0):
        raise ValueError(f"n_max must be an integer ≥ 0, got {n_max!r}")
    if link.is_polynomial:
        alpha = _power_hermite_coefficients(np.asarray(link.power), scale)
        if n_max is None:
            return alpha
        out = np.zeros(n_max + 1)
        k = min(n_max + 1, alpha.size)
        out[:k] = alpha[:k]
        return out
    n_max = DEFAULT_N_MAX if n_max is None else int(n_max)
    return _quadrature_hermite_coefficients(link.g, n_max, scale)


def information_exponent(link, activation=None, *, scale: float = 1.0, activation_scale: float = 1.0,
                         n_max: int | None = None, rtol: float = 1e-10,
                         parameter: str = "link") -> int:
    """Information exponent k*: the first order k ≥ 1 with a non-zero Hermite coefficient.

    With ``activation`` given, k* is the first k ≥ 1 with α_k(σ; 1)·α_k(g; v) ≠ 0 (note §4), the order
    that governs the escape from the equator for this target/student pair.

    Parameters
    ----------
    link : link specification
        The target g.
    activation : link specification, optional
        The student σ.
    scale : float
        Variance v of the target's argument: 1 for the standardised target (τν ~ N(0,1)); R for the raw
        target of pitfall P4 (which turns h_3 into h_3 plus a linear part, k* = 1).
    activation_scale : float
        Variance of the student's argument (Q = 1 on the normalised geometries).
    n_max : int, optional
        Highest order examined for non-polynomials (default :data:`DEFAULT_N_MAX`).
    rtol : float
        A coefficient counts as non-zero when |c_k| > rtol·‖c‖ (quadrature round-off is ~1e-15).
    parameter : str
        Name of the target field in messages.

    Returns
    -------
    int
        k* ≥ 1.

    Raises
    ------
    ValueError
        When no order 1 ≤ k ≤ n_max has a non-zero coefficient (constant link, or no common order of
        target and student): k* is undefined.
    """
    g = make_link(link, parameter=parameter)
    orders = [g.degree] if g.is_polynomial else [None]
    sig = None
    if activation is not None:
        sig = make_link(activation, parameter="activation")
        orders.append(sig.degree if sig.is_polynomial else None)
    finite = [o for o in orders if o is not None]
    top = min(finite) if finite else (DEFAULT_N_MAX if n_max is None else int(n_max))
    cg = hermite_coefficients(g, top, scale=scale)
    coef = cg
    if sig is not None:
        cs = hermite_coefficients(sig, top, scale=activation_scale)
        coef = cg * cs
        norm = np.linalg.norm(cg) * np.linalg.norm(cs)
    else:
        norm = np.linalg.norm(cg)
    tol = rtol * max(norm, np.finfo(float).tiny)
    for k in range(1, coef.size):
        if abs(coef[k]) > tol:
            return k
    what = (f"the Hermite expansion of {parameter}={g.name!r}" if sig is None else
            f"the Hermite expansions of {parameter}={g.name!r} and activation={sig.name!r}")
    where = ("has only a constant term c_0" if coef.size <= 1 else
             f"has no non-zero {'product α_k(σ)α_k(g)' if sig is not None else 'coefficient c_k'} "
             f"of order 1 ≤ k ≤ {coef.size - 1}")
    raise ValueError(f"{what} {where}, so the information exponent k* is undefined; valid: "
                     f"{parameter} with some c_k ≠ 0 for an order k ≥ 1"
                     + ("" if sig is None else " shared with the activation"))


# ---------------------------------------------------------------------------------------------------
# Mehler sums
# ---------------------------------------------------------------------------------------------------
def mehler_sum(a, b, rho):
    """Σ_n a_n b_n ρⁿ for normalised Hermite coefficients a, b (note §3).

    Parameters
    ----------
    a, b : array_like, shape (n_a,), (n_b,)
        α_n of the two functions; the sum runs to min(n_a, n_b) − 1.
    rho : float or ndarray
        Correlation(s), any shape.

    Returns
    -------
    float or ndarray, shape of ``rho``
        E[f(X) g(Y)] for standard Gaussians with Corr(X, Y) = ρ (exact when one of f, g is a polynomial
        and its coefficients are complete).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = min(a.size, b.size)
    return _poly.polyval(np.asarray(rho, dtype=np.float64), a[:n] * b[:n])


def mehler(f, g, rho, *, var_f: float = 1.0, var_g: float = 1.0, n_max: int | None = None):
    """E[f(λ) g(ν)] by Mehler's formula, Var λ = var_f, Var ν = var_g, Corr(λ, ν) = ρ.

    Parameters
    ----------
    f, g : link specifications
    rho : float or ndarray
        Correlation in [−1, 1].
    var_f, var_g : float
        Variances Q and R.
    n_max : int, optional
        Truncation for two non-polynomials (default :data:`DEFAULT_N_MAX`); with at least one polynomial
        the sum stops at its degree and is exact.  ReLU coefficients decay like n^{-5/4}: truncated
        sums converge slowly near |ρ| = 1; use :func:`polar_expectation` there.

    Returns
    -------
    float or ndarray, shape of ``rho``
    """
    fl = make_link(f, parameter="f")
    gl = make_link(g, parameter="g")
    degs = [l.degree for l in (fl, gl) if l.is_polynomial]
    n = min(degs) if degs else (DEFAULT_N_MAX if n_max is None else int(n_max))
    return mehler_sum(hermite_coefficients(fl, n, scale=var_f), hermite_coefficients(gl, n, scale=var_g),
                      rho)


# ---------------------------------------------------------------------------------------------------
# Kink-aware polar quadrature (note §3, P7)
# ---------------------------------------------------------------------------------------------------
_TWO_PI = 2.0 * math.pi


@lru_cache(maxsize=8)
def _radial_rule(refine: int, n_radial: int, radial_panels: int, r_max: float):
    x, wx = np.polynomial.legendre.leggauss(n_radial)
    n_pan = radial_panels * refine
    width = r_max / n_pan
    left = width * np.arange(n_pan)
    r = (left[:, None] + 0.5 * width * (x[None, :] + 1.0)).ravel()
    w = (0.5 * width * np.broadcast_to(wx, (n_pan, n_radial))).ravel()
    w = w * r * np.exp(-0.5 * r * r) / _TWO_PI       # polar density r e^{−r²/2}/(2π)
    r.flags.writeable = False
    w.flags.writeable = False
    return r, w


def _whitening(Q: float, M: float, R: float):
    """(a, b, c) with λ = a z₁, ν = b z₁ + c z₂ for independent standard z₁, z₂ (note §3)."""
    if Q > 0.0:
        a = math.sqrt(Q)
        b = M / a
        c = math.sqrt(max(R - M * M / Q, 0.0))
    else:  # λ ≡ 0
        a, b, c = 0.0, 0.0, math.sqrt(max(R, 0.0))
    return a, b, c


def polar_rule(Q: float, M: float, R: float, *, n_angle: int = 16, angle_subpanels: int = 3,
               n_radial: int = 20, radial_panels: int = 6, r_max: float = 12.5,
               refine: int | None = None):
    """Nodes and weights for E[F(λ, ν)], (λ, ν) ~ N(0, [[Q, M], [M, R]]) (note §3).

    Whiten, λ = √Q z₁, ν = (M/√Q) z₁ + √(R − M²/Q) z₂, go to polar coordinates (r, θ) of (z₁, z₂), cut
    the angle at the kink rays λ = 0 (θ = ±π/2) and ν = 0 (θ = atan2(−M/√Q, √(R − M²/Q)) and +π);
    each sector gets ``angle_subpanels`` × ``n_angle`` Gauss–Legendre nodes, the radius
    ``radial_panels`` × ``n_radial`` nodes on [0, r_max] with weight r e^{−r²/2}/(2π).  Every
    function of λ alone or ν alone is smooth inside each sector, so kinks at 0 (ReLU) cost nothing.

    Parameters
    ----------
    Q, M, R : float
        Covariance entries (Q, R ≥ 0, M² ≤ QR up to round-off).
    n_angle, angle_subpanels, n_radial, radial_panels, r_max :
        Rule sizes (defaults: the note's 16, 3, 20, 6, 12.5).
    refine : int, optional
        Multiplies the number of panels in angle and radius.  Default ⌈√max(Q, R)/2⌉ (at least 1),
        because tanh(√Q z) has poles at distance π/(2√Q) from the real axis (P7): with it products of
        tanh and sech² stay within ~1e-13 of a reference for Q ≤ 25 and ~1e-11 up to Q = 400.

    Returns
    -------
    lam, nu, w : ndarray, shape (n_nodes,)
        Node coordinates and weights (Σ w = 1 to ~1e-34).
    """
    if refine is None:
        refine = int(min(16, max(1, math.ceil(math.sqrt(max(Q, R, 0.0)) / 2.0))))
    a, b, c = _whitening(Q, M, R)
    r, wr = _radial_rule(int(refine), int(n_radial), int(radial_panels), float(r_max))
    breaks = [0.5 * math.pi, 1.5 * math.pi]
    if a > 0.0 or b != 0.0 or c > 0.0:
        th = math.atan2(-b, c) % _TWO_PI
        breaks += [th, (th + math.pi) % _TWO_PI]
    breaks = np.unique(np.round(np.sort(np.asarray(breaks) % _TWO_PI), 14))
    edges = np.append(breaks, breaks[0] + _TWO_PI)
    x, wx = np.polynomial.legendre.leggauss(int(n_angle))
    sub = int(angle_subpanels) * int(refine)
    thetas, wths = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo < 1e-15:
            continue
        width = (hi - lo) / sub
        left = lo + width * np.arange(sub)
        thetas.append((left[:, None] + 0.5 * width * (x[None, :] + 1.0)).ravel())
        wths.append((0.5 * width * np.broadcast_to(wx, (sub, x.size))).ravel())
    theta = np.concatenate(thetas)
    wth = np.concatenate(wths)
    z1 = np.outer(r, np.cos(theta)).ravel()
    z2 = np.outer(r, np.sin(theta)).ravel()
    w = np.outer(wr, wth).ravel()
    return a * z1, b * z1 + c * z2, w


def polar_expectation(func: Callable, Q: float, M: float, R: float, **rule) -> float:
    """E[func(λ, ν)] with the kink-aware polar rule of :func:`polar_rule` (note §3).

    Parameters
    ----------
    func : callable ``(lam, nu) -> values``, vectorised over 1-d arrays
    Q, M, R : float
        Covariance of (λ, ν).
    **rule : passed to :func:`polar_rule`.

    Returns
    -------
    float
    """
    lam, nu, w = polar_rule(Q, M, R, **rule)
    return float(np.dot(w, np.asarray(func(lam, nu), dtype=np.float64)))


def gaussian_expectation(f, g, Q: float, M: float, R: float, *, method: str = "auto") -> float:
    """E[f(λ) g(ν)] for (λ, ν) ~ N(0, [[Q, M], [M, R]]).

    Parameters
    ----------
    f, g : link specifications
    Q, M, R : float
        Covariance entries.
    method : {"auto", "mehler", "polar"}
        ``"auto"``: Mehler (exact) when f or g is a polynomial, the polar rule otherwise.

    Returns
    -------
    float
    """
    fl = make_link(f, parameter="f")
    gl = make_link(g, parameter="g")
    if method not in ("auto", "mehler", "polar"):
        raise ValueError(f"method={method!r}; valid: 'auto', 'mehler', 'polar'")
    if method == "polar" or (method == "auto" and not (fl.is_polynomial or gl.is_polynomial)):
        return polar_expectation(lambda lam, nu: fl.g(lam) * gl.g(nu), Q, M, R)
    return float(mehler(fl, gl, _correlation(Q, M, R), var_f=Q, var_g=R))


def _correlation(Q: float, M: float, R: float) -> float:
    """ρ = M/√(QR), clipped to [−1, 1]; 0 when a variance vanishes."""
    if Q <= 0.0 or R <= 0.0:
        return 0.0
    return min(1.0, max(-1.0, M / math.sqrt(Q * R)))


# ---------------------------------------------------------------------------------------------------
# The moments of the ODE (note §3 table)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _SideFunction:
    """One factor of a separable term ⟨a|b⟩: a power series, or a callable (then power is None)."""

    func: Callable
    power: np.ndarray | None


def _side(power, func) -> _SideFunction:
    if power is not None:
        power = np.trim_zeros(np.asarray(power, dtype=np.float64), "b")
        if power.size == 0:
            power = np.zeros(1)
        p = power.copy()
        return _SideFunction(lambda x, p=p: _poly.polyval(np.asarray(x, dtype=np.float64), p), p)
    return _SideFunction(func, None)


# The separable terms of note §3's table.  Student side (functions of λ): ds = σ', lds = λσ',
# ds2 = σ'², s = σ, s2 = σ², sds = σσ', lsds = λσσ', sds2 = σσ'², s2ds2 = σ²σ'², one = 1.
# Teacher side (functions of ν, g̃(ν) = g(τν)): ng = νg̃, g = g̃, g2 = g̃², n = ν, one = 1.
_SGD_TERMS = {
    "correlation": {
        "A_nu": [(1.0, "ds", "ng")],
        "A_lam": [(1.0, "lds", "g")],
        "B": [(1.0, "ds2", "g2")],
    },
    "square": {
        "A_nu": [(1.0, "ds", "ng"), (-1.0, "sds", "n")],
        "A_lam": [(1.0, "lds", "g"), (-1.0, "lsds", "one")],
        "B": [(1.0, "ds2", "g2"), (-2.0, "sds2", "g"), (1.0, "s2ds2", "one")],
    },
}
_NOISE_TERM = ("ds2", "one")        # B gets + Δ⟨σ'²|1⟩ for both losses
_LOSS_TERMS = {"E_gg": ("one", "g2"), "E_gs": ("s", "g"), "E_ss": ("s2", "one")}


def _student_values(x, f, df) -> dict:
    """Lazy values of the student-side factors at polar nodes from σ(x) = f and σ'(x) = df."""
    return {"ds": lambda: df, "lds": lambda: x * df, "ds2": lambda: df * df, "s": lambda: f,
            "s2": lambda: f * f, "sds": lambda: f * df, "lsds": lambda: x * f * df,
            "sds2": lambda: f * df * df, "s2ds2": lambda: (f * df) ** 2, "one": lambda: 1.0}


def _teacher_values(v, gt) -> dict:
    """Lazy values of the teacher-side factors at polar nodes from g̃(v) = gt."""
    return {"ng": lambda: v * gt, "g": lambda: gt, "g2": lambda: gt * gt, "n": lambda: v,
            "one": lambda: 1.0}


class GaussianMoments:
    """Expectations of note §3 for one target/student pair and target scale τ.

    Every quantity is a sum of separable terms ⟨a|b⟩ = E[a(λ) b(ν)] with (λ, ν) ~ N(0, [[Q, M], [M, R]]).
    A term is evaluated by Mehler's formula (exact) when a or b is a polynomial, and by the polar rule of
    :func:`polar_rule` when both are not.  Non-polynomial coefficients α_n(a; Q) come from the 1-d rule
    of :func:`hermite_coefficients`.

    Parameters
    ----------
    target : link specification
        The target link g (the teacher computes g(τν)).
    activation : link specification
        The student activation σ.
    tau : float
        Target scale τ (R^{−1/2} for the standardised target, 1 for the raw one; note §1).

    Notes
    -----
    Only σ and σ' are needed, never σ'' (note §3).
    """

    def __init__(self, target, activation, *, tau: float = 1.0):
        self.target = make_link(target, parameter="link")
        self.activation = make_link(activation, parameter="activation")
        self.tau = float(tau)
        if not (math.isfinite(self.tau) and self.tau > 0.0):
            raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
        sig, g = self.activation, self.target
        if sig.is_polynomial:
            P = np.asarray(sig.power)
            dP = _poly.polyder(P) if P.size > 1 else np.zeros(1)
            x = np.array([0.0, 1.0])
            self._lam = {
                "ds": _side(dP, None), "lds": _side(_poly.polymul(x, dP), None),
                "ds2": _side(_poly.polymul(dP, dP), None), "s": _side(P, None),
                "s2": _side(_poly.polymul(P, P), None), "sds": _side(_poly.polymul(P, dP), None),
                "lsds": _side(_poly.polymul(x, _poly.polymul(P, dP)), None),
                "sds2": _side(_poly.polymul(P, _poly.polymul(dP, dP)), None),
                "s2ds2": _side(_poly.polymul(_poly.polymul(P, P), _poly.polymul(dP, dP)), None),
                "one": _side([1.0], None),
            }
        else:
            f, df = sig.g, sig.dg
            self._lam = {
                "ds": _side(None, df), "lds": _side(None, lambda x: x * df(x)),
                "ds2": _side(None, lambda x: df(x) ** 2), "s": _side(None, f),
                "s2": _side(None, lambda x: f(x) ** 2), "sds": _side(None, lambda x: f(x) * df(x)),
                "lsds": _side(None, lambda x: x * f(x) * df(x)),
                "sds2": _side(None, lambda x: f(x) * df(x) ** 2),
                "s2ds2": _side(None, lambda x: (f(x) * df(x)) ** 2),
                "one": _side([1.0], None),
            }
        tau = self.tau
        if g.is_polynomial:
            G = np.asarray(g.power) * tau ** np.arange(g.power.size)   # g(τν) = Σ g_j τ^j ν^j
            x = np.array([0.0, 1.0])
            self._nu = {
                "ng": _side(_poly.polymul(x, G), None), "g": _side(G, None),
                "g2": _side(_poly.polymul(G, G), None), "n": _side(x, None), "one": _side([1.0], None),
            }
        else:
            gf = g.g
            self._nu = {
                "ng": _side(None, lambda v: v * gf(tau * v)), "g": _side(None, lambda v: gf(tau * v)),
                "g2": _side(None, lambda v: gf(tau * v) ** 2), "n": _side([0.0, 1.0], None),
                "one": _side([1.0], None),
            }

    # -- core ---------------------------------------------------------------------------------------
    def terms(self, pairs, Q: float, M: float, R: float, *, method: str = "auto") -> np.ndarray:
        """Evaluate ⟨a|b⟩ for a list of (a, b) names at one covariance.

        Parameters
        ----------
        pairs : sequence of (str, str)
            Student-side and teacher-side names (see the module table ``_SGD_TERMS``).
        Q, M, R : float
            Var λ, Cov(λ, ν), Var ν.
        method : {"auto", "polar"}
            ``"polar"`` forces the 2-d rule for every term (used to cross-check Mehler).

        Returns
        -------
        ndarray, shape (len(pairs),)
        """
        Q, M, R = float(Q), float(M), float(R)
        Q = max(Q, 0.0)
        R = max(R, 0.0)
        rho = _correlation(Q, M, R)
        out = np.empty(len(pairs))
        alpha_lam: dict = {}
        alpha_nu: dict = {}
        polar = None

        def coefs(cache, name, fn, n, var):
            got = cache.get(name)
            if got is None or got.size < n + 1:
                if fn.power is not None:
                    got = _power_hermite_coefficients(fn.power, var)
                else:
                    got = _quadrature_hermite_coefficients(fn.func, n, var)
                cache[name] = got
            return got

        for i, (a, b) in enumerate(pairs):
            fa, fb = self._lam[a], self._nu[b]
            if method == "auto" and (fa.power is not None or fb.power is not None):
                # Mehler (note §3): finite, exact sum up to the smaller polynomial degree
                n = min(x.power.size - 1 for x in (fa, fb) if x.power is not None)
                ca = coefs(alpha_lam, a, fa, n, Q)
                cb = coefs(alpha_nu, b, fb, n, R)
                k = min(n + 1, ca.size, cb.size)
                out[i] = _poly.polyval(rho, ca[:k] * cb[:k])
            else:
                if polar is None:
                    # one kink-aware polar rule, σ, σ', g(τν) evaluated once per covariance
                    lam, nu, w = polar_rule(Q, M, R)
                    f = np.asarray(self.activation.g(lam), dtype=np.float64)
                    df = np.asarray(self.activation.dg(lam), dtype=np.float64)
                    gt = np.asarray(self.target.g(self.tau * nu), dtype=np.float64)
                    polar = (w, _student_values(lam, f, df), _teacher_values(nu, gt))
                w, lam_vals, nu_vals = polar
                out[i] = np.dot(w, lam_vals[a]() * nu_vals[b]())
        return out

    def sgd(self, Q: float, M: float, R: float, *, loss: str, noise_var: float = 0.0,
            method: str = "auto") -> tuple[float, float, float]:
        """A_ν = E[Fν], A_λ = E[Fλ], B = E[F²] of note §2 for one sample (no batch division).

        Parameters
        ----------
        Q, M, R : float
            Covariance of (λ, ν).
        loss : {"correlation", "square"}
            F = yσ'(λ) or (y − σ(λ))σ'(λ).
        noise_var : float
            Label-noise variance Δ = noise²; B includes + Δ·E[σ'(λ)²].
        method : {"auto", "polar"}

        Returns
        -------
        (A_nu, A_lam, B) : tuple of float
        """
        if loss not in _SGD_TERMS:
            raise ValueError(f"loss={loss!r} is not known; valid: 'correlation', 'square'")
        spec = _SGD_TERMS[loss]
        pairs = [(a, b) for key in ("A_nu", "A_lam", "B") for _, a, b in spec[key]] + [_NOISE_TERM]
        vals = self.terms(pairs, Q, M, R, method=method)
        out, i = [], 0
        for key in ("A_nu", "A_lam", "B"):
            tot = 0.0
            for coef, _, _ in spec[key]:
                tot += coef * vals[i]
                i += 1
            out.append(tot)
        out[2] += float(noise_var) * vals[i]
        return out[0], out[1], out[2]

    def losses(self, Q: float, M: float, R: float, *, method: str = "auto") -> tuple[float, float, float]:
        """(E[g̃²], E[g̃σ], E[σ²]) at covariance (Q, M, R), g̃ = g(τν) (note §2 population losses)."""
        vals = self.terms(list(_LOSS_TERMS.values()), Q, M, R, method=method)
        return float(vals[0]), float(vals[1]), float(vals[2])


# ---------------------------------------------------------------------------------------------------
# Spike geometry helpers (note §1)
# ---------------------------------------------------------------------------------------------------
def check_spike(spike, spike_angle) -> tuple[float, float]:
    """Validate (κ, φ) and return (κ, c = cos φ).

    Parameters
    ----------
    spike : float
        κ ≥ 0 in Σ = I + κuuᵀ.
    spike_angle : float
        φ ∈ [0, π/2], angle between u and θ* in radians.

    Returns
    -------
    (kappa, c) : tuple of float
        c is exactly 1 at φ = 0 and exactly 0 at φ = π/2.

    Raises
    ------
    ValueError
        κ < 0 or non-finite; φ outside [0, π/2].
    """
    if not _is_real_number(spike) or float(spike) < 0.0:
        raise ValueError(f"spike must be a finite number ≥ 0 (κ in Σ = I + κ u uᵀ; valid range "
                         f"[0, ∞)), got {spike!r}")
    if not _is_real_number(spike_angle) or not (0.0 <= float(spike_angle) <= 0.5 * math.pi):
        raise ValueError(f"spike_angle must lie in [0, π/2] radians (angle φ between u and θ*; valid "
                         f"range [0, {0.5 * math.pi:.15g}]), got {spike_angle!r}")
    phi = float(spike_angle)
    c = 1.0 if phi == 0.0 else (0.0 if phi == 0.5 * math.pi else math.cos(phi))
    return float(spike), c


def target_scale(spike, spike_angle, standardize_target: bool = True) -> float:
    """τ = R^{−1/2} with R = 1 + κc² (standardised target), or τ = 1 (raw target, P4)."""
    kappa, c = check_spike(spike, spike_angle)
    return 1.0 / math.sqrt(1.0 + kappa * c * c) if standardize_target else 1.0


def projection_covariance(m, s, q, *, spike=0.0, spike_angle=0.0):
    """Covariance of (λ, ν) from the order parameters (note §1 joint law).

    Parameters
    ----------
    m, s, q : float or ndarray (broadcastable)
        m = ⟨w, θ*⟩, s = ⟨w, u⟩, q = ‖w‖².
    spike, spike_angle : float
        κ and φ.

    Returns
    -------
    Q, M, R : float or ndarray
        Q = q + κs² = Var λ, M = m + κcs = Cov(λ, ν), R = 1 + κc² = Var ν.
    """
    kappa, c = check_spike(spike, spike_angle)
    m = np.asarray(m, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    Q = q + kappa * s * s
    M = m + kappa * c * s
    R = np.broadcast_to(np.float64(1.0 + kappa * c * c), np.broadcast(Q, M).shape)
    if Q.ndim == 0 and M.ndim == 0:
        return float(Q), float(M), float(R)
    return Q, M, np.array(R)


def spike_gain(spike, spike_angle) -> float:
    """G = ‖Σθ*‖²/(θ*ᵀΣθ*) = (1 + 2κc² + κ²c²)/(1 + κc²) (note §4).

    G = 1 + κ for u = θ*, 1 for u ⊥ θ*; it multiplies the escape signal rate and divides d in the
    effective initial overlap ρ₀ ~ N(0, G/d).
    """
    kappa, c = check_spike(spike, spike_angle)
    c2 = c * c
    return (1.0 + 2.0 * kappa * c2 + kappa * kappa * c2) / (1.0 + kappa * c2)
