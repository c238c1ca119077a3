"""Teacher–student two-layer network (soft committee machine) spec, docs/theory/teacher_student.md §1."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from hidyn.activations import get_activation
from hidyn.models._base import ModelSpec, check_bool, check_int, check_real

__all__ = ["TwoLayerSpec", "check_overlaps"]


def _matrix(name, value, shape):
    arr = np.array(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries")
    return arr


def check_overlaps(Q, R, T, *, K: int, M: int, parameter: str = "init") -> None:
    """Raise a ValueError unless Ω = [[Q, R], [Rᵀ, T]] is a symmetric positive semi-definite matrix."""
    Q = _matrix(f"{parameter}['Q']", Q, (K, K))
    R = _matrix(f"{parameter}['R']", R, (K, M))
    T = _matrix(f"{parameter}['T']", T, (M, M))
    for name, S in (("Q", Q), ("T", T)):
        if not np.allclose(S, S.T, rtol=0, atol=1e-12 * max(1.0, np.abs(S).max())):
            raise ValueError(f"{parameter}['{name}'] must be symmetric")
    omega = np.block([[Q, R], [R.T, T]])
    lam = np.linalg.eigvalsh(omega)
    if lam.min() < -1e-10 * max(1.0, lam.max()):
        raise ValueError(f"{parameter}: the overlap matrix [[Q, R], [R^T, T]] must be positive "
                         f"semi-definite (smallest eigenvalue {lam.min():.3g} < 0): these overlaps "
                         f"cannot come from real weight vectors")


@dataclasses.dataclass(frozen=True, eq=False)
class TwoLayerSpec(ModelSpec):
    """Soft committee machine learning a teacher of the same architecture by online SGD.

    Conventions (docs/theory/teacher_student.md §1): x ~ N(0, I_d) fresh every step; teacher
    y = Σ_n A_n g(B_n·x/√d) + σζ; student ŷ = Σ_k v_k g(W_k·x/√d); per-sample loss ½(y − ŷ)²;
    W_k ← W_k + (η/√d)·v_k g'(λ_k)Δ·x, v_k ← v_k + (η_v/d)·g(λ_k)Δ; time t = steps/d.

    Parameters
    ----------
    d : int
        Input dimension (≥ K + M, so that exact initial overlaps can be drawn).
    K, M : int
        Student and teacher widths (≥ 1).
    activation : str or tuple
        Name in :data:`hidyn.activations.ACTIVATIONS` (``"erf"`` is erf(x/√2)) or ``(g, dg[, d2g])``.
    lr : float
        η > 0, first-layer step.
    lr_second : float
        η_v ≥ 0, second-layer step; must be 0 unless ``train_second_layer``.
    train_second_layer : bool
    noise : float
        σ ≥ 0, output-noise standard deviation.
    batch_size : int
        B ≥ 1 samples averaged per step (the η² term of dQ/dt is divided by B); t counts steps/d.
    init_scale : float
        Random start: W_ki iid N(0, init_scale²), so Q(0) ≈ init_scale²·I and R(0) = O(d^(−1/2)).
    init : dict or None
        Explicit initial overlaps ``{"Q": (K, K), "R": (K, M), "v": (K,)}`` (finite d draws W with
        exactly these overlaps); ``"T"`` and ``"A"`` may be given here too.  None: random start.
    T : array (M, M) or None
        Teacher overlap B_n·B_m/d (held exactly at finite d); None = identity.
    A : array (M,) or None
        Teacher second layer; None = ones.
    v0 : array (K,) or None
        Initial student second layer; None = ones (the Saad–Solla machine).
    """

    model: ClassVar[str] = "two_layer"
    default_t_max: ClassVar[float] = 100.0
    time_units: ClassVar[str] = "steps / d"
    backends: ClassVar[dict[str, str]] = {"numpy": "hidyn.solvers.mc.two_layer_numpy:TwoLayerNumpyBackend",
                                          "numba": "hidyn.solvers.mc.numba_backend:TwoLayerNumbaBackend",
                                          "jax": "hidyn.solvers.mc.jax_backend:TwoLayerJaxBackend"}

    d: int = 1000
    K: int = 2
    M: int = 2
    activation: Any = "erf"
    lr: float = 0.5
    lr_second: float = 0.0
    train_second_layer: bool = False
    noise: float = 0.0
    batch_size: int = 1
    init_scale: float = 0.5
    init: Any = None
    T: Any = None
    A: Any = None
    v0: Any = None

    def _validate(self) -> None:
        K = self._set_get("K", check_int("K", self.K, 1))
        M = self._set_get("M", check_int("M", self.M, 1))
        self._set("d", check_int("d", self.d, 1))
        if self.d < K + M:
            # K student and M teacher vectors are linearly independent only for d ≥ K + M: below it
            # Ω = [[Q, R], [Rᵀ, T]] is singular (rank ≤ d), T cannot be held for d < M, and the overlaps
            # are not those of any generic start the d → ∞ theory describes
            raise ValueError(f"d={self.d!r} is invalid: must be an integer ≥ K + M = {K + M} (K={K} student "
                             f"and M={M} teacher vectors need that many dimensions to be linearly independent)")
        get_activation(self.activation)
        if isinstance(self.activation, str):
            self._set("activation", self.activation.lower())
        self._set("lr", check_real("lr", self.lr, 0.0, lo_open=True))
        self._set("lr_second", check_real("lr_second", self.lr_second, 0.0))
        self._set("train_second_layer", check_bool("train_second_layer", self.train_second_layer))
        if self.lr_second > 0 and not self.train_second_layer:
            raise ValueError(f"lr_second={self.lr_second!r} > 0 with train_second_layer=False: the second "
                             f"layer is frozen; set train_second_layer=True or lr_second=0")
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("batch_size", check_int("batch_size", self.batch_size, 1))
        self._set("init_scale", check_real("init_scale", self.init_scale, 0.0, lo_open=True))
        init = dict(self.init) if self.init is not None else None
        if init is not None:
            unknown = set(init) - {"Q", "R", "T", "v", "A"}
            if unknown:
                raise ValueError(f"init has unknown key(s) {sorted(unknown)}; valid: Q, R, T, v, A")
            for key in ("T", "A"):
                if key in init:
                    if getattr(self, key) is not None:
                        raise ValueError(f"{key} given both as a field and in init")
                    self._set(key, init.pop(key))
            if "v" in init:
                if self.v0 is not None:
                    raise ValueError("v given both as v0 and in init['v']")
                self._set("v0", init.pop("v"))
            if set(init) and set(init) != {"Q", "R"}:
                raise ValueError("init must give both 'Q' and 'R' (or neither)")
        T = np.eye(M) if self.T is None else _matrix("T", self.T, (M, M))
        A = np.ones(M) if self.A is None else _matrix("A", self.A, (M,))
        v0 = np.ones(K) if self.v0 is None else _matrix("v0", self.v0, (K,))
        self._set("T", T)
        self._set("A", A)
        self._set("v0", v0)
        if init:
            Q = _matrix("init['Q']", init["Q"], (K, K))
            R = _matrix("init['R']", init["R"], (K, M))
            check_overlaps(Q, R, T, K=K, M=M)
            self._set("init", {"Q": Q, "R": R})
            if self.d < K + M:
                raise ValueError(f"d={self.d} is invalid with explicit init overlaps: must be ≥ K + M "
                                 f"= {K + M} to draw weights with exactly these overlaps")
        else:
            self._set("init", None)
            lam = np.linalg.eigvalsh(T)
            if lam.min() < -1e-10 * max(1.0, lam.max()):
                raise ValueError("T must be positive semi-definite (it is a Gram matrix of teacher vectors)")

    def _set_get(self, name, value):
        self._set(name, value)
        return value

    def __eq__(self, other):
        return type(other) is type(self) and self.to_json() == other.to_json()

    __hash__ = None

    @property
    def act(self):
        return get_activation(self.activation)
