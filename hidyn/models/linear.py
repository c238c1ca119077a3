"""Linear teacher–student regression spec (theory note docs/theory/linear.md §1).

One frozen :class:`LinearSpec` describes linear regression on Gaussian features x ~ N(0, Σ) with
Σ = diag(λ) in its eigenbasis, trained by online SGD, full-batch GD or multi-pass SGD.  It is consumed
by the exact mode recursion (linear.md §2), the Marchenko–Pastur GD curves (§6) and the Monte-Carlo
backends.  Only numpy and scipy are imported here (the models → numpy/scipy rule of ARCHITECTURE.md).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Any, ClassVar

import numpy as np

from hidyn.models._base import ModelSpec, check_bool, check_choice, check_int, check_real

__all__ = ["LinearSpec", "ALGORITHMS", "SCHEDULES", "eigenvalues", "teacher_coefficients", "lr_values",
           "sgd_stability_bound", "sgd_kernel_mass"]

ALGORITHMS = ("sgd", "gd", "multipass_sgd")
SPECTRA = ("isotropic", "power_law")
TEACHERS = ("isotropic", "power_law")
NORMALIZATIONS = ("none", "trace")
#: named schedules and their parameters (besides the initial step "lr"), with defaults (None: required)
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "cosine": {"horizon": None, "final": 0.0},
    "step": {"every": None, "factor": 0.5},
    "power": {"exponent": 0.5, "offset": 1.0},
}


def _explicit_array(name: str, value, d: int, *, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    if arr is None or arr.ndim != 1:
        raise ValueError(f"{name}={value!r} is invalid: must be one of the names or a 1-D array of d = {d} "
                         f"{what}")
    if arr.size != d:
        raise ValueError(f"{name} has length {arr.size}, which is invalid: must be an array of d = {d} {what}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name}[{bad}]={float(arr[bad])!r} is invalid: must be finite ({what})")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


def _schedule(value) -> dict:
    """Validate a named schedule ``{"schedule": name, "lr": η₀, ...}`` and fill its defaults."""
    name = check_choice("lr['schedule']", value.get("schedule"), tuple(SCHEDULES))
    unknown = set(value) - {"schedule", "lr"} - set(SCHEDULES[name])
    if unknown:
        raise ValueError(f"lr: unknown key(s) {sorted(unknown)} for schedule {name!r}; valid: 'schedule', 'lr'"
                         + "".join(f", {k!r}" for k in SCHEDULES[name]))
    out = {"schedule": name, "lr": check_real("lr['lr']", value.get("lr"), 0.0, lo_open=True)}
    for key, default in SCHEDULES[name].items():
        val = value.get(key, default)
        if val is None:
            raise ValueError(f"lr['{key}'] is required for schedule {name!r}")
        if key in ("horizon", "every"):
            out[key] = check_int(f"lr['{key}']", val, 1)
        elif key == "factor":
            out[key] = check_real("lr['factor']", val, 0.0, 1.0, lo_open=True)
        elif key == "offset":
            out[key] = check_real("lr['offset']", val, 0.0, lo_open=True)
        else:  # final, exponent
            out[key] = check_real(f"lr['{key}']", val, 0.0)
    if name == "cosine" and out["final"] > out["lr"]:
        raise ValueError(f"lr['final']={out['final']!r} is invalid: must be in [0, lr['lr']={out['lr']!r}]")
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class LinearSpec(ModelSpec):
    """Linear regression on Gaussian features with any covariance spectrum (linear.md §1).

    Conventions: x ~ N(0, Σ), Σ = diag(λ₁ … λ_d) in its eigenbasis (never formed: x = √λ ⊙ z);
    y = ⟨w*, x⟩ + σξ.  ``test_loss`` = E(y − ⟨w, x⟩)² = Σ_k λ_k (w_k − w*_k)² + σ² (no ½, noise
    included); ``train_loss`` = (1/n)‖y − Xw‖² on a fixed training set.

    Parameters
    ----------
    d : int
        Dimension, ≥ 1.
    spectrum : {"isotropic", "power_law"} or array_like (d,)
        Σ = I, λ_k = k^(−a) (a = ``spectrum_exponent``), or d explicit eigenvalues (finite, ≥ 0, not all 0).
    spectrum_exponent : float
        a ≥ 0 of the power law.
    normalization : {"none", "trace"}
        ``"trace"`` rescales the eigenvalues to tr Σ = 1 (named and explicit spectra alike).
    teacher : {"power_law", "isotropic"} or array_like (d,)
        λ_k w*_k² ∝ k^(−b) (b = ``teacher_exponent``, normalised to signal variance Σ λ_k w*_k² = 1,
        w*_k ≥ 0), a uniformly random unit vector drawn per seed (‖w*‖ = 1), or d explicit coefficients
        in the eigenbasis.
    teacher_exponent : float
        b ≥ 0 (source condition).
    noise : float
        σ ≥ 0, label-noise standard deviation.
    algorithm : {"sgd", "gd", "multipass_sgd"}
        Online SGD with fresh samples, full-batch GD or multi-pass SGD (batches drawn with replacement)
        on a fixed set of n = round(ratio·d) rows.
    ratio : float or None
        n/d > 0 for ``gd`` and ``multipass_sgd``; None (online) for ``sgd``.
    batch_size : int
        B ≥ 1 samples per SGD step (≤ n for multi-pass SGD).  Unused by GD.
    lr : float, dict or array_like
        Constant step η > 0; a named schedule ``{"schedule": "cosine", "lr": η₀, "horizon": K,
        "final": η_K}`` (η_k = η_K + (η₀ − η_K)(1 + cos(π·min(k, K)/K))/2), ``{"schedule": "step",
        "lr": η₀, "every": m, "factor": f}`` (η₀ f^⌊k/m⌋), ``{"schedule": "power", "lr": η₀,
        "exponent": p, "offset": k₀}`` (η₀(1 + k/k₀)^(−p)); or an array of per-step values (finite,
        ≥ 0; a run may not go past its end).  GD (time t = η·k) needs a constant η.
    init_scale : float or None
        w₀ ~ N(0, (s²/d) I_d) with s = init_scale; None or 0: w₀ = 0.
    per_mode : bool
        Also record the per-mode errors (w_k − w*_k)² (variable ``mode_error``, dims (…, mode)).

    Notes
    -----
    Time is the number of steps k for ``sgd`` and ``multipass_sgd`` (``samples_seen`` = k·B is also
    recorded) and t = η·k for ``gd`` (``samples_seen`` = k·n, the rows read).  A constant η (or a
    schedule's largest value) above the online-SGD stability bound (linear.md §3) or the GD bound
    2/λ_max(Σ̂) (isotropic Σ) raises a RuntimeWarning naming the bound.
    """

    model: ClassVar[str] = "linear"
    backends: ClassVar[dict[str, str]] = {"numpy": "hidyn.solvers.mc.linear_numpy:LinearNumpyBackend",
                                          "numba": "hidyn.solvers.mc.linear_numba:LinearNumbaBackend",
                                          "jax": "hidyn.solvers.mc.linear_jax:LinearJaxBackend"}

    d: int = 1000
    spectrum: Any = "power_law"
    spectrum_exponent: float = 1.5
    normalization: str = "none"
    teacher: Any = "power_law"
    teacher_exponent: float = 1.5
    noise: float = 0.0
    algorithm: str = "sgd"
    ratio: float | None = None
    batch_size: int = 1
    lr: Any = 0.1
    init_scale: float | None = None
    per_mode: bool = False

    # -- validation -------------------------------------------------------------------------------
    def _validate(self) -> None:
        self._set("d", check_int("d", self.d, 1))
        d = self.d
        if isinstance(self.spectrum, str):
            self._set("spectrum", check_choice("spectrum", self.spectrum, SPECTRA))
        else:
            lam = _explicit_array("spectrum", self.spectrum, d, what="eigenvalues ≥ 0")
            if np.any(lam < 0):
                bad = int(np.flatnonzero(lam < 0)[0])
                raise ValueError(f"spectrum[{bad}]={float(lam[bad])!r} is invalid: eigenvalues must be ≥ 0")
            if not np.any(lam > 0):
                raise ValueError("spectrum is invalid: all eigenvalues are 0 (at least one must be > 0)")
            self._set("spectrum", lam)
        self._set("spectrum_exponent", check_real("spectrum_exponent", self.spectrum_exponent, 0.0))
        self._set("normalization", check_choice("normalization", self.normalization, NORMALIZATIONS))
        if isinstance(self.teacher, str):
            self._set("teacher", check_choice("teacher", self.teacher, TEACHERS))
        else:
            self._set("teacher", _explicit_array("teacher", self.teacher, d, what="teacher coefficients"))
        self._set("teacher_exponent", check_real("teacher_exponent", self.teacher_exponent, 0.0))
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("algorithm", check_choice("algorithm", self.algorithm, ALGORITHMS))
        if self.ratio is not None:
            self._set("ratio", check_real("ratio", self.ratio, 0.0, lo_open=True))
        if self.algorithm == "sgd" and self.ratio is not None:
            raise ValueError(f"ratio={self.ratio!r} is invalid with algorithm='sgd' (online SGD, fresh "
                             f"samples): must be None; use algorithm='multipass_sgd' for SGD on a fixed set")
        if self.algorithm != "sgd":
            if self.ratio is None:
                raise ValueError(f"ratio=None is invalid with algorithm={self.algorithm!r}: must be a "
                                 f"number > 0 (n = round(ratio·d) training rows)")
            if self.n < 1:
                raise ValueError(f"ratio={self.ratio!r} with d={d} gives n = round(ratio·d) = 0 rows; "
                                 f"ratio must be ≥ {0.5 / d:.3g} at this d")
        hi = self.n if self.algorithm == "multipass_sgd" else None
        self._set("batch_size", check_int("batch_size", self.batch_size, 1, hi))
        if self.init_scale is not None:
            self._set("init_scale", check_real("init_scale", self.init_scale, 0.0))
        self._set("per_mode", check_bool("per_mode", self.per_mode))
        self._set("lr", self._validate_lr(self.lr))
        if self.algorithm == "gd" and not isinstance(self.lr, float):
            raise ValueError(f"lr={self.lr!r} is invalid with algorithm='gd': must be a constant number > 0 "
                             f"(GD time is t = η·k, which needs a constant η)")
        self._warn_stability()

    @staticmethod
    def _validate_lr(lr):
        if isinstance(lr, dict):
            return _schedule(lr)
        if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
            return check_real("lr", lr, 0.0, lo_open=True)
        if isinstance(lr, (list, tuple, np.ndarray)):
            arr = np.asarray(lr, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"lr is invalid: an array of per-step values must be 1-D and non-empty "
                                 f"(got shape {arr.shape})")
            bad = ~np.isfinite(arr) | (arr < 0)
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"lr[{i}]={float(arr[i])!r} is invalid: per-step learning rates must be finite "
                                 f"and ≥ 0")
            arr = arr.copy()
            arr.setflags(write=False)
            return arr
        raise ValueError(f"lr={lr!r} is invalid: must be a number > 0, a schedule dict "
                         f"{{'schedule': one of {tuple(SCHEDULES)}, 'lr': η₀, ...}} or a 1-D array of per-step "
                         f"values")

    def _warn_stability(self) -> None:
        lam = eigenvalues(self)
        if isinstance(self.lr, dict):
            top = self.lr["lr"]   # every named schedule starts at its largest value
        else:
            top = float(np.max(self.lr))
        if self.algorithm == "sgd":
            bound = sgd_stability_bound(lam, self.batch_size)
            if top >= bound:
                what = (f"lr={top:.6g}" if isinstance(self.lr, float) else
                        f"the largest scheduled lr ({top:.6g})")
                consequence = ("the loss will grow geometrically" if isinstance(self.lr, float) else
                               "held constant it would diverge; a short excursion can be harmless, and a "
                               "divergence is detected and reported")
                warnings.warn(f"{what} exceeds the online-SGD stability bound η_max = {bound:.6g} for "
                              f"batch_size={self.batch_size} and this spectrum (linear.md §3): {consequence}",
                              RuntimeWarning, stacklevel=4)
        elif self.algorithm == "gd" and self.is_isotropic:
            # λ_max(Σ̂) → λ(1 + √(d/n))² in the proportional limit (linear.md §6)
            bound = 2.0 / (float(lam[0]) * (1.0 + math.sqrt(self.d / self.n)) ** 2)
            if top >= bound:
                warnings.warn(f"lr={top:.6g} exceeds the GD stability bound 2/λ_max(Σ̂) ≈ {bound:.6g} "
                              f"(λ_max(Σ̂) ≈ (1 + √(d/n))² for isotropic Σ, linear.md §6)", RuntimeWarning,
                              stacklevel=4)

    # -- derived ----------------------------------------------------------------------------------
    @property
    def n(self) -> int | None:
        """Training rows round(ratio·d); None online."""
        return None if self.ratio is None else int(round(self.ratio * self.d))

    @property
    def is_isotropic(self) -> bool:
        """All eigenvalues equal (after normalisation)."""
        lam = eigenvalues(self)
        return bool(np.all(lam == lam[0]))

    @property
    def default_t_max(self) -> float:  # type: ignore[override]
        """1000 steps for the SGD algorithms, t = η·k = 50 for GD."""
        return 50.0 if self.algorithm == "gd" else 1000.0

    @property
    def time_units(self) -> str:  # type: ignore[override]
        return "eta * steps" if self.algorithm == "gd" else "steps"

    @property
    def time_per_step(self) -> float:
        return float(self.lr) if self.algorithm == "gd" else 1.0


def eigenvalues(spec: LinearSpec) -> np.ndarray:
    """λ of shape (d,), float64 (linear.md §1), after the optional trace normalisation."""
    if isinstance(spec.spectrum, np.ndarray):
        lam = spec.spectrum.astype(np.float64)
    elif spec.spectrum == "isotropic":
        lam = np.ones(spec.d)
    else:
        lam = np.arange(1, spec.d + 1, dtype=np.float64) ** (-spec.spectrum_exponent)
    if spec.normalization == "trace":
        lam = lam / lam.sum()
    return lam


def teacher_coefficients(spec: LinearSpec) -> np.ndarray | None:
    """w* of shape (d,) for deterministic teachers; None for the random ``"isotropic"`` teacher.

    Power law: λ_k w*_k² = k^(−b)/Σ_j j^(−b), so Σ λ_k w*_k² = 1; modes with λ_k = 0 get w*_k = 0.
    """
    if isinstance(spec.teacher, np.ndarray):
        return spec.teacher.astype(np.float64)
    if spec.teacher == "isotropic":
        return None
    lam = eigenvalues(spec)
    k = np.arange(1, spec.d + 1, dtype=np.float64)
    target = k ** (-spec.teacher_exponent)
    target[lam <= 0] = 0.0
    target /= target.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(lam > 0, np.sqrt(target / np.where(lam > 0, lam, 1.0)), 0.0)


def lr_values(spec: LinearSpec, steps: int) -> np.ndarray:
    """Per-step learning rates η_0 … η_{steps−1}, shape (steps,), float64.

    Raises a ValueError naming ``lr`` when an explicit array is shorter than ``steps``.
    """
    steps = int(steps)
    lr = spec.lr
    k = np.arange(steps, dtype=np.float64)
    if isinstance(lr, float):
        return np.full(steps, lr)
    if isinstance(lr, np.ndarray):
        if lr.size < steps:
            raise ValueError(f"lr has {lr.size} per-step values, which is invalid for a run of {steps} steps: "
                             f"the array must cover every step (length ≥ {steps})")
        return np.array(lr[:steps], dtype=np.float64)
    name, eta0 = lr["schedule"], lr["lr"]
    if name == "constant":
        return np.full(steps, eta0)
    if name == "cosine":
        h, fin = lr["horizon"], lr["final"]
        return fin + (eta0 - fin) * 0.5 * (1.0 + np.cos(math.pi * np.minimum(k, h) / h))
    if name == "step":
        return eta0 * lr["factor"] ** np.floor(k / lr["every"])
    return eta0 * (1.0 + k / lr["offset"]) ** (-lr["exponent"])


def sgd_kernel_mass(eta: float, lam: np.ndarray, batch: int) -> float:
    """κ(η) = (η/B) Σ_k λ_k / (2 − η(1 + 1/B)λ_k), the mass of the Volterra kernel (linear.md (3.1)).

    Returns inf where some mode factor a_k = 1 − 2ηλ_k + η²(1+1/B)λ_k² is ≥ 1 (a single mode unstable).
    """
    c = 1.0 + 1.0 / batch
    den = 2.0 - eta * c * lam
    if np.any(den <= 0):
        return math.inf
    return float(eta / batch * np.sum(lam / den))


def sgd_stability_bound(lam, batch: int) -> float:
    """Largest constant η for which online SGD's expected loss stays bounded (linear.md §3).

    The root of κ(η) = 1 below 2/((1 + 1/B)λ_max), found by ``scipy.optimize.brentq``.  Isotropic
    check: Σ = I_d, B = 1 gives 2/(d + 2).
    """
    from scipy.optimize import brentq

    lam = np.asarray(lam, dtype=np.float64)
    lam = lam[lam > 0]
    top = 2.0 / ((1.0 + 1.0 / batch) * lam.max())
    return float(brentq(lambda e: sgd_kernel_mass(e, lam, batch) - 1.0 if e < top else 1.0,
                        0.0, top, xtol=1e-14 * top, rtol=1e-13))
