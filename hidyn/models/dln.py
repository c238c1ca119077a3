"""Diagonal linear network spec (theory note docs/theory/dln.md §2)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from hidyn.models._base import ModelSpec, check_bool, check_choice, check_int, check_real

__all__ = ["DLNSpec", "initial_pq"]

TEACHERS = ("rademacher", "gauss")
INITS = ("pesme", "pm", "balanced")
PARAMETRIZATIONS = ("uv", "pm")
ALGORITHMS = ("gf", "gd", "sgd")


@dataclasses.dataclass(frozen=True)
class DLNSpec(ModelSpec):
    """Diagonal linear network β = u⊙v (or w+² − w−²) on Gaussian linear regression.

    Conventions are those of docs/theory/dln.md §2: X_{μi} iid N(0, 1/d), n = ratio·d rows, y = Xβ* + σξ,
    loss L = (1/(2δ))‖y − Xβ‖², time t = η·k for GD/SGD (the uv gradient-flow clock; the pm
    parametrisation runs on its own clock, twice as fast, and is not converted).

    Parameters
    ----------
    d : int
        Number of coordinates of β (≥ 1).
    ratio : float or None
        δ = n/d > 0; ``None`` is the population / online setting (no training set).
    sparsity : float
        ρ ∈ (0, 1]: fraction of nonzero teacher coordinates.
    teacher : {"rademacher", "gauss"}
        Law of the nonzero teacher entries (±1 or N(0, 1)).
    exact_sparsity : bool
        Place exactly round(ρd) nonzeros (default) instead of iid Bernoulli(ρ) ones.
    noise : float
        σ ≥ 0, the label-noise standard deviation.
    init_scale : float
        α > 0, the initialisation scale.
    init : {"pesme", "pm", "balanced"}
        Initialisation of docs/theory/dln.md §2.2 (same β₀ and Δ in both parametrisations).
    parametrization : {"uv", "pm"}
        β = u⊙v or β = w+² − w−².
    algorithm : {"gf", "gd", "sgd"}
        Gradient flow (integrated in mirror coordinates), full-batch GD, or minibatch SGD
        (online SGD with fresh rows when ``ratio is None``).
    lr : float
        η > 0: the GD/SGD step (time t = η·k).  Unused by gradient flow at finite d.
    batch_size : int or None
        B ≥ 1 rows per SGD step, at most n; None means n (full batch) when a training set exists.
    """

    model: ClassVar[str] = "dln"
    default_t_max: ClassVar[float] = 20.0
    backends: ClassVar[dict[str, str]] = {"numpy": "hidyn.solvers.mc.dln_numpy:DLNNumpyBackend",
                                          "numba": "hidyn.solvers.mc.numba_backend:DLNNumbaBackend",
                                          "jax": "hidyn.solvers.mc.jax_backend:DLNJaxBackend"}

    d: int = 1024
    ratio: float | None = 0.5
    sparsity: float = 0.1
    teacher: str = "rademacher"
    exact_sparsity: bool = True
    noise: float = 0.1
    init_scale: float = 0.5
    init: str = "pesme"
    parametrization: str = "uv"
    algorithm: str = "gd"
    lr: float = 0.1
    batch_size: int | None = None

    def _validate(self) -> None:
        self._set("d", check_int("d", self.d, 1))
        if self.ratio is not None:
            self._set("ratio", check_real("ratio", self.ratio, 0.0, lo_open=True))
        self._set("sparsity", check_real("sparsity", self.sparsity, 0.0, 1.0, lo_open=True))
        self._set("teacher", check_choice("teacher", self.teacher, TEACHERS))
        self._set("exact_sparsity", check_bool("exact_sparsity", self.exact_sparsity))
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("init_scale", check_real("init_scale", self.init_scale, 0.0, lo_open=True))
        self._set("init", check_choice("init", self.init, INITS))
        self._set("parametrization", check_choice("parametrization", self.parametrization,
                                                  PARAMETRIZATIONS))
        self._set("algorithm", check_choice("algorithm", self.algorithm, ALGORITHMS))
        self._set("lr", check_real("lr", self.lr, 0.0, lo_open=True))
        if self.batch_size is not None:
            hi = self.n if self.ratio is not None else None
            self._set("batch_size", check_int("batch_size", self.batch_size, 1, hi))
        if self.ratio is not None and self.n < 1:
            raise ValueError(f"ratio={self.ratio!r} with d={self.d} gives n = round(ratio·d) = 0 "
                             f"samples; ratio must be ≥ {0.5 / self.d:.3g} at this d")

    @property
    def n(self) -> int | None:
        """Number of training rows round(ratio·d), None in the population setting."""
        return None if self.ratio is None else int(round(self.ratio * self.d))

    @property
    def batch(self) -> int:
        """Rows per SGD step (B); the full training set when ``batch_size`` is None."""
        if self.batch_size is not None:
            return self.batch_size
        if self.ratio is None:
            raise ValueError("batch_size is required for online SGD (ratio=None, algorithm='sgd')")
        return self.n

    @property
    def time_units(self) -> str:
        """The clock of ``time``: η·k for GD/SGD (k steps of size η = ``lr``), gradient-flow time for
        ``gf``; the pm parametrisation's time is not rescaled to the uv clock (docs/theory/dln.md §2)."""
        clock = "gradient-flow time" if self.algorithm == "gf" else f"lr * steps ({self.algorithm.upper()})"
        return clock + (", pm clock (runs 2x the uv clock)" if self.parametrization == "pm" else "")

    @property
    def clock(self) -> float:
        """Factor c with p(t) = p₀e^{2c·s(t)}: 1 for uv, 2 for pm (the pm clock runs twice as fast)."""
        return 1.0 if self.parametrization == "uv" else 2.0


def initial_pq(spec: DLNSpec) -> tuple[float, float]:
    """Initial p₀ = w+(0)², q₀ = w−(0)² with β₀ = p₀ − q₀ (docs/theory/dln.md §2.2, §3).

    In the uv parametrisation w± = (u ± v)/2; the named inits give the same (p₀, q₀) in both
    parametrisations: pesme p₀ = q₀ = α²/2 (Δ = 2α²), pm p₀ = q₀ = α² (Δ = 4α²),
    balanced p₀ = α², q₀ = 0 (Δ = 0, β₀ = α²).
    """
    a2 = spec.init_scale ** 2
    if spec.init == "pesme":
        return a2 / 2.0, a2 / 2.0
    if spec.init == "pm":
        return a2, a2
    return a2, 0.0
