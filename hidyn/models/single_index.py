"""Spiked-covariance single-index model spec (theory note docs/theory/single_index.md §1).

One frozen :class:`SingleIndexSpec` describes online SGD on a single-index target under a spiked input
covariance; it is consumed by the d → ∞ ODE (``hidyn.theory``, note §2) and by the finite-d Monte-Carlo
backends (``hidyn.simulate``, note §1).  Only numpy and :mod:`hidyn.hermite` are imported here (the
models → numpy/scipy dependency rule of ARCHITECTURE.md).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import numpy as np

from hidyn.models._base import ModelSpec, check_bool, check_choice, check_int, check_real

__all__ = ["SingleIndexSpec", "GEOMETRIES", "LOSSES", "initial_overlaps", "feasibility_gap"]

GEOMETRIES = ("plain", "sphere", "sigma_sphere", "wn_sigma")
LOSSES = ("correlation", "square")
#: geometries whose iterate lives on Q = wᵀΣw = 1 (note §1 table)
SIGMA_GEOMETRIES = ("sigma_sphere", "wn_sigma")


def _finite_difference(g):
    """Central-difference derivative of a bare target callable.

    The single-index family never differentiates the target link (note §3: only σ' is needed), but
    :class:`hidyn.activations.Activation` carries a derivative, so a bare link callable gets this one.
    """
    def dg(x, g=g):
        x = np.asarray(x, dtype=np.float64)
        eps = 1e-6 * np.maximum(1.0, np.abs(x))
        return (np.asarray(g(x + eps), dtype=np.float64) - np.asarray(g(x - eps), dtype=np.float64)) / (2 * eps)

    return dg


def _normalise_link(name: str, value, *, allow_bare_callable: bool):
    """Canonical, JSON-round-trippable form of a link/activation and its :class:`~hidyn.hermite.Link`.

    * names are lower-cased;
    * Hermite coefficients ``{k: c_k}`` (keys may be digit strings, as after a JSON round trip) become
      the list ``[c_0, c_1, …]`` so that ``config_json`` rebuilds the same spec;
    * callables are kept as given (they cannot be saved: ``config_json`` records their names only).
    """
    from hidyn.hermite import make_link

    if isinstance(value, str) and value.startswith("<callable"):
        raise ValueError(f"{name}={value!r} is a callable recorded in a saved result; callables cannot "
                         f"be rebuilt from config_json: pass the spec (with the function) instead")
    if isinstance(value, dict):
        coefs = {}
        for k, v in value.items():
            if isinstance(k, str) and k.strip().isdigit():
                k = int(k)
            if not (isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 0):
                raise ValueError(f"{name}: Hermite orders must be integers ≥ 0, got key {k!r}")
            coefs[int(k)] = v
        link = make_link(coefs, parameter=name)   # validates the values, rejects an empty expansion
        out = [0.0] * (max(coefs) + 1)
        for k, v in coefs.items():
            out[k] = float(v)
        return out, link
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if (isinstance(value, (list, tuple)) and value
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
        link = make_link([float(v) for v in value], parameter=name)
        return [float(v) for v in value], link
    if callable(value) and not isinstance(value, type):
        from hidyn.activations import Activation

        if isinstance(value, Activation):
            return value, make_link(value, parameter=name)
        if not allow_bare_callable:
            raise ValueError(f"{name}: a callable student activation needs its derivative σ' (the SGD "
                             f"step uses F = yσ'(λ)); pass (sigma, dsigma) instead of a bare function")
        return value, make_link((value, _finite_difference(value)), parameter=name)
    link = make_link(value, parameter=name)       # names, tuples of callables; raises for the rest
    return (value.lower() if isinstance(value, str) else value), link


def _explain(check, name, value, *args, meaning: str, **kwargs):
    """Run a validator and add what the parameter means to its ValueError."""
    try:
        return check(name, value, *args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{err} ({meaning})") from None


def feasibility_gap(m: float, s: float, q: float, c: float) -> float:
    """q minus the smallest ‖w‖² compatible with (m, s); ≥ 0 iff (m, s, q) comes from a vector.

    The Gram matrix [[q, m, s], [m, 1, c], [s, c, 1]] of (w, θ*, u) must be PSD (note §1,
    *Feasibility*): q ≥ m² + (s − cm)²/(1 − c²) for c < 1, and s = m, q ≥ m² for c = 1.
    """
    if c >= 1.0:
        return q - m * m if abs(s - m) <= 1e-12 * max(1.0, abs(m)) else -abs(s - m)
    return q - m * m - (s - c * m) ** 2 / (1.0 - c * c)


def _constraint_q(geometry: str, kappa: float, s: float):
    """q fixed by the geometry: 1 (sphere), 1 − κs² (Σ-geometries, wᵀΣw = 1), None (plain)."""
    if geometry == "sphere":
        return 1.0
    if geometry in SIGMA_GEOMETRIES:
        return 1.0 - kappa * s * s
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class SingleIndexSpec(ModelSpec):
    """Online SGD on a single-index target with spiked input covariance (docs/theory/single_index.md §1).

    Conventions (note §1; adopted unchanged): x ~ N(0, Σ), Σ = I_d + κuuᵀ, ‖u‖ = ‖θ*‖ = 1,
    c = ⟨u, θ*⟩ = cos φ; target y = g(τ⟨θ*, x⟩) + noise·ξ; student σ(⟨w, x⟩); one step
    w ← w + (η/d)·(1/n_b)Σ_i F_i D_i with −∇ℓ = F·x (D = x, or x − λΣw for ``wn_sigma``), followed by
    the geometry's retraction; time t = steps/d.  Order parameters m = ⟨w, θ*⟩, s = ⟨w, u⟩ (reported
    as ``m_spike``), q = ‖w‖².

    Parameters
    ----------
    d : int
        Input dimension, ≥ 3 (the initial state is drawn in span(θ*, u, e₃), note §1).
    link : str, dict, sequence of float, tuple of callables, or callable
        Target g: ``"he1"``…``"he4"`` (normalised h_k = He_k/√(k!), P10), ``"relu"``, ``"tanh"``, any
        name of :data:`hidyn.activations.ACTIVATIONS`, normalised Hermite coefficients ``{k: c_k}`` /
        ``[c_0, c_1, …]`` (stored as the list), ``(g, dg)``, or a bare vectorised callable g (the
        target is never differentiated).  Its Hermite expansion must have a non-zero order k ≥ 1
        (otherwise k* is undefined).
    activation : same forms, or None
        Student σ; a callable must come with its derivative, ``(sigma, dsigma)``.  None (default): the
        same function as ``link`` (the matched teacher–student setting of note §3–§4).
    loss : {"correlation", "square"}
        ℓ = −yσ(λ) (F = yσ'(λ)) or ½(y − σ(λ))² (F = (y − σ(λ))σ'(λ)).
    noise : float
        Label-noise standard deviation √Δ ≥ 0 (the note writes Δ = noise²).
    spike : float
        κ ≥ 0.
    spike_angle : float
        φ ∈ [0, π/2] radians between u and θ* (φ = 0: u = θ*).
    standardize_target : bool
        τ = (1 + κc²)^{−1/2} (default, τν ~ N(0, 1)) or τ = 1 (raw target, P4).
    geometry : {"plain", "sphere", "sigma_sphere", "wn_sigma"}
        What follows each step (note §1 table).
    lr : float
        η > 0; the step is η/d.
    batch_size : int
        n_b ≥ 1 fresh samples averaged per step (the η² term is divided by n_b); t still counts steps/d.
    m0 : float or None
        Initial teacher overlap with s₀ = c·m₀ and q₀ = 1 (``plain``, ``sphere``) or 1 − κs₀²
        (Σ-geometries); finite-d runs draw w with exactly these overlaps.  Valid: [−1, 1] on
        ``plain``/``sphere``, [−1/√R, 1/√R] with R = 1 + κc² on the Σ-geometries.  None (default): a
        uniformly random direction (|m₀| ~ 1/√d) normalised by the geometry; the ODE then starts at
        m₀ = 1/√d.
    init : dict or None
        Explicit start ``{"m": m₀, "s": s₀, "q": q₀}`` ("s" defaults to c·m₀, "q" to the geometry's
        value and must equal it on the constrained geometries); overrides ``m0`` (note §1).  Must be
        realisable by a vector (Gram matrix of (w, θ*, u) PSD).
    finite_d : bool
        Keep the 1/d trace factors tr Σ/d = 1 + κ/d and tr Σ²/d = 1 + (2κ+κ²)/d in the ODE (note §2, P3).
        The Monte-Carlo is exact at finite d either way.

    Notes
    -----
    ``default_t_max`` = 20 time units (steps/d): enough for h₂ at η ~ 0.1–0.5 from m₀ ≳ 0.1 to settle.

    References
    ----------
    Ben Arous, Gheissari, Jagannath, JMLR 22 (2021), arXiv:2003.10409.
    Mousavi-Hosseini, Wu, Suzuki, Erdogdu, NeurIPS 2023, arXiv:2309.03843.
    """

    model: ClassVar[str] = "single_index"
    default_t_max: ClassVar[float] = 20.0
    time_units: ClassVar[str] = "steps / d"
    backends: ClassVar[dict[str, str]] = {
        "numpy": "hidyn.solvers.mc.single_index_numpy:SingleIndexNumpyBackend",
        "reduced": "hidyn.solvers.mc.single_index_numpy:SingleIndexReducedBackend",
        "numba": "hidyn.solvers.mc.numba_backend:SingleIndexNumbaBackend",
        "jax": "hidyn.solvers.mc.jax_backend:SingleIndexJaxBackend",
    }

    d: int = 1024
    link: Any = "he2"
    activation: Any = None
    loss: str = "correlation"
    noise: float = 0.0
    spike: float = 0.0
    spike_angle: float = 0.0
    standardize_target: bool = True
    geometry: str = "sphere"
    lr: float = 0.1
    batch_size: int = 1
    m0: float | None = None
    init: Any = None
    finite_d: bool = False

    def _validate(self) -> None:
        from hidyn.hermite import information_exponent

        self._set("d", check_int("d", self.d, 3))
        self._set("loss", check_choice("loss", self.loss, LOSSES))
        self._set("geometry", check_choice("geometry", self.geometry, GEOMETRIES))
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("spike", _explain(check_real, "spike", self.spike, 0.0,
                                    meaning="κ in Σ = I + κuuᵀ; valid range [0, ∞)"))
        self._set("spike_angle", _explain(check_real, "spike_angle", self.spike_angle, 0.0, 0.5 * math.pi,
                                          meaning="angle φ between u and θ* in radians; valid range "
                                                  "[0, π/2]"))
        self._set("standardize_target", check_bool("standardize_target", self.standardize_target))
        self._set("lr", check_real("lr", self.lr, 0.0, lo_open=True))
        self._set("batch_size", check_int("batch_size", self.batch_size, 1))
        self._set("finite_d", check_bool("finite_d", self.finite_d))
        link_value, link = _normalise_link("link", self.link, allow_bare_callable=True)
        activation = self.activation
        if activation is None:
            if callable(self.link) and not isinstance(self.link, (tuple, list)) and link.name == "custom":
                raise ValueError("activation=None copies the link, but a bare callable link has no "
                                 "derivative σ'; give activation=(sigma, dsigma)")
            activation = link_value
        act_value, act = _normalise_link("activation", activation, allow_bare_callable=False)
        self._set("link", link_value)
        self._set("activation", act_value)
        object.__setattr__(self, "_target", link)
        object.__setattr__(self, "_student", act)
        # k* must be defined (note §4): some order k ≥ 1 of the target as the SGD sees it, g(τν) with
        # τν of variance τ²R, and of the student, must be non-zero.  Raises a ValueError naming the field.
        information_exponent(link, scale=self.tau ** 2 * self.R, parameter="link")
        information_exponent(act, scale=1.0, parameter="activation")
        self._validate_start()

    def _validate_start(self) -> None:
        c, kappa, geo = self.cos_angle, self.spike, self.geometry
        if self.m0 is not None:
            if geo in SIGMA_GEOMETRIES:
                bound = 1.0 / math.sqrt(self.R)
                m0 = check_real("m0", self.m0)
                if abs(m0) > bound * (1.0 + 1e-15):
                    raise ValueError(f"m0={self.m0!r} is invalid: must lie in [−1/√R, 1/√R] = "
                                     f"[{-bound:.6g}, {bound:.6g}] for geometry={geo!r} (the start "
                                     f"q₀ = 1 − κc²m0² must satisfy q₀ ≥ m0², R = 1 + κc² = {self.R:.6g})")
            else:
                m0 = check_real("m0", self.m0, -1.0, 1.0)   # q₀ = 1 on plain and sphere
            self._set("m0", m0)
        if self.init is None:
            return
        if not isinstance(self.init, dict):
            raise ValueError(f"init={self.init!r} is invalid: must be a dict {{'m': m0, 's': s0, 'q': q0}} "
                             f"('s' and 'q' optional) or None")
        unknown = set(self.init) - {"m", "s", "q"}
        if unknown or "m" not in self.init:
            raise ValueError(f"init has keys {sorted(self.init)}; valid: 'm' (required), 's', 'q'")
        m = check_real("init['m']", self.init["m"])
        s = check_real("init['s']", self.init.get("s", c * m))
        qc = _constraint_q(geo, kappa, s)
        if "q" in self.init:
            q = check_real("init['q']", self.init["q"], 0.0)
            if qc is not None and abs(q - qc) > 1e-9 * max(1.0, abs(qc)):
                raise ValueError(f"init['q']={q!r} is invalid: off the {geo} constraint (q = {qc!r} for "
                                 f"s = {s!r}); omit 'q' or give that value")
        else:
            q = 1.0 if qc is None else qc
        if q < 0.0 or feasibility_gap(m, s, q, c) < -1e-12:
            raise ValueError(f"init={{'m': {m!r}, 's': {s!r}, 'q': {q!r}}} is invalid: not realisable by a "
                             f"vector w; the Gram matrix of (w, θ*, u) must be PSD, i.e. "
                             f"q ≥ m² + (s − cm)²/(1 − c²) (s = m and q ≥ m² when c = 1), c = {c:.6g}")
        self._set("init", {"m": m, "s": s, "q": q})

    # -- derived quantities ---------------------------------------------------------------------------
    @property
    def cos_angle(self) -> float:
        """c = cos φ (exactly 1 at φ = 0 and 0 at φ = π/2)."""
        phi = self.spike_angle
        return 1.0 if phi == 0.0 else (0.0 if phi == 0.5 * math.pi else math.cos(phi))

    @property
    def R(self) -> float:
        """R = θ*ᵀΣθ* = 1 + κc² = Var ν."""
        return 1.0 + self.spike * self.cos_angle ** 2

    @property
    def tau(self) -> float:
        """Target scale τ = R^{−1/2} (standardised) or 1 (raw, P4)."""
        return 1.0 / math.sqrt(self.R) if self.standardize_target else 1.0

    @property
    def noise_var(self) -> float:
        """Δ = noise² (note §1)."""
        return self.noise * self.noise

    @property
    def target(self):
        """The target link g as a :class:`hidyn.hermite.Link`."""
        return self._target

    @property
    def student(self):
        """The student activation σ as a :class:`hidyn.hermite.Link`."""
        return self._student

    def start(self) -> tuple[float, float, float] | None:
        """Initial (m₀, s₀, q₀) of note §1's convention, or None for a random start (``m0=None``)."""
        if self.init is not None:
            return self.init["m"], self.init["s"], self.init["q"]
        if self.m0 is None:
            return None
        return initial_overlaps(self.m0, self.cos_angle, self.spike, self.geometry)

    def ode_kwargs(self) -> dict:
        """Keyword arguments of :func:`hidyn.solvers.ode.single_index.solve` for this spec (no start)."""
        return dict(link=self._target, activation=self._student, loss=self.loss, spike=self.spike,
                    spike_angle=self.spike_angle, geometry=self.geometry, lr=self.lr, noise=self.noise,
                    batch_size=self.batch_size, standardize_target=self.standardize_target,
                    d=self.d if self.finite_d else None)

    def observable_kwargs(self) -> dict:
        """Keyword arguments of :func:`hidyn.observables.single_index_test_loss`."""
        return dict(link=self._target, activation=self._student, spike=self.spike,
                    spike_angle=self.spike_angle, standardize_target=self.standardize_target)

    def __eq__(self, other):
        return type(other) is type(self) and self.to_json() == other.to_json()

    __hash__ = None


def initial_overlaps(m0: float, c: float, kappa: float, geometry: str) -> tuple[float, float, float]:
    """(m₀, s₀, q₀) from m₀ alone (note §1): s₀ = c·m₀; q₀ = 1 or 1 − κs₀² (Σ-geometries)."""
    s0 = c * m0
    qc = _constraint_q(geometry, kappa, s0)
    return float(m0), float(s0), 1.0 if qc is None else float(qc)
