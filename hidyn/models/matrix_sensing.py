"""Low-rank matrix sensing spec (theory page docs/theory/matrix_sensing.md §1)."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from hidyn.models._base import ModelSpec, check_choice, check_int, check_real

__all__ = ["MatrixSensingSpec", "EIGENVALUE_PRESETS", "preset_eigenvalues", "ground_truth_basis",
           "draw_init", "init_stream", "measurement_stream", "step_stream"]

PARAMETRIZATIONS = ("symmetric", "asymmetric")
ALGORITHMS = ("gf", "gd", "sgd")
EIGENVALUE_PRESETS = ("geometric", "linear", "equal")
#: eigenvalues of an explicit ground truth below this fraction of the largest count as zero
RANK_RTOL = 1e-12


def preset_eigenvalues(name: str, rank: int) -> np.ndarray:
    """σ₁ ≥ … ≥ σ_r of a preset (matrix_sensing.md §1): geometric 2^(1−i), linear (r−i+1)/r, equal 1."""
    i = np.arange(1, rank + 1, dtype=np.float64)
    if name == "geometric":
        return 2.0 ** (1.0 - i)
    if name == "linear":
        return (rank - i + 1.0) / rank
    return np.ones(rank)


def _array(name, value, shape):
    arr = np.array(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} with shape {arr.shape} is invalid: must have shape {shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} is invalid: it has non-finite entries")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class MatrixSensingSpec(ModelSpec):
    """Low-rank matrix sensing learnt by a factorised student from small initialisation.

    Conventions (matrix_sensing.md §1): ground truth M* = U diag(σ) Uᵀ (n × n, rank r, PSD); student
    P = XXᵀ (X n × k) or P = FGᵀ; X₀ = α·Z/√n with Z iid N(0, 1); measurements
    y_i = ⟨A_i, M*⟩ + σ_noise·ξ_i with A_i iid N(0, 1) entries, m = round(ratio·n²); symmetric loss
    (1/4m)Σ(⟨A_i, P⟩ − y_i)² (population ¼‖P − M*‖²_F), asymmetric (1/2m)Σ(…)² (population
    ½‖FGᵀ − M*‖²_F), so that F = G follows the symmetric flow; time t = η·steps.

    Parameters
    ----------
    d : int
        The matrix size n (≥ 1): ``hidyn.simulate(d=…)`` scales the matrix.
    rank : int
        r, the rank of M*, 1 ≤ r ≤ d.  Replaced by the numerical rank of ``ground_truth`` when given.
    eigenvalues : str or sequence of float
        A preset (``"geometric"`` σ_i = 2^(1−i), ``"linear"`` (r−i+1)/r, ``"equal"`` 1) or r positive
        values (stored sorted, largest first).  Read off ``ground_truth`` when given.
    ground_truth : array (d, d) or None
        Explicit M*: symmetric PSD for the symmetric model, any real d × d matrix for the asymmetric one.
        None: U = the first r coordinate vectors.
    student_rank : int or None
        k ≥ 1, the number of columns of X (or F, G).  None: k = r (or the width of ``init``).
    parametrization : {"symmetric", "asymmetric"}
        P = XXᵀ or P = FGᵀ.
    init_scale : float
        α > 0: each column of X₀ has norm ≈ α.
    init : array or None
        Explicit X₀ (d, k), or (2, d, k) holding (F₀, G₀) for the asymmetric model; None: random.
    ratio : float or None
        m/n² > 0; None is the population (RIP-ideal) loss.
    noise : float
        σ ≥ 0, the label-noise standard deviation.
    algorithm : {"gf", "gd", "sgd"}
        Gradient flow, gradient descent, or minibatch SGD over the m measurements (online SGD with
        fresh measurements when ``ratio`` is None).
    lr : float
        η > 0 (time t = η·steps); unused by gradient flow.
    batch_size : int or None
        B measurements per SGD step (≤ m); None: all m (required for online SGD).
    """

    model: ClassVar[str] = "matrix_sensing"
    default_t_max: ClassVar[float] = 40.0
    time_units: ClassVar[str] = "eta * steps (gradient-flow time)"
    backends: ClassVar[dict[str, str]] = {
        "numpy": "hidyn.solvers.mc.matrix_sensing_numpy:MatrixSensingNumpyBackend",
        "jax": "hidyn.solvers.mc.matrix_sensing_jax:MatrixSensingJaxBackend"}

    d: int = 32
    rank: int = 2
    eigenvalues: Any = "geometric"
    ground_truth: Any = None
    student_rank: int | None = None
    parametrization: str = "symmetric"
    init_scale: float = 0.01
    init: Any = None
    ratio: float | None = None
    noise: float = 0.0
    algorithm: str = "gd"
    lr: float = 0.05
    batch_size: int | None = None

    def _validate(self) -> None:
        n = check_int("d", self.d, 1)
        self._set("d", n)
        par = check_choice("parametrization", self.parametrization, PARAMETRIZATIONS)
        self._set("parametrization", par)
        if self.ground_truth is not None:
            M = _array("ground_truth", self.ground_truth, (n, n))
            if par == "symmetric":
                scale = max(1.0, float(np.abs(M).max()))
                if not np.allclose(M, M.T, rtol=0.0, atol=1e-12 * scale):
                    raise ValueError("ground_truth is invalid: must be a symmetric matrix for "
                                     "parametrization='symmetric' (use 'asymmetric' for a general M*)")
                M = 0.5 * (M + M.T)
                lam = np.linalg.eigvalsh(M)[::-1]
                if lam[-1] < -1e-10 * max(1.0, lam[0]):
                    raise ValueError(f"ground_truth is invalid: must be positive semi-definite for "
                                     f"parametrization='symmetric' (smallest eigenvalue {lam[-1]:.3g} < 0; "
                                     f"XXᵀ cannot fit it)")
            else:
                lam = np.linalg.svd(M, compute_uv=False)
            sig = lam[lam > RANK_RTOL * max(lam[0], 0.0)] if lam[0] > 0 else lam[:0]
            if sig.size == 0:
                raise ValueError("ground_truth is invalid: it is zero (rank 0); nothing to learn")
            self._set("ground_truth", M)
            self._set("rank", int(sig.size))
            self._set("eigenvalues", [float(v) for v in sig])
        else:
            r = check_int("rank", self.rank, 1, n)
            self._set("rank", r)
            ev = self.eigenvalues
            if isinstance(ev, str):
                ev = check_choice("eigenvalues", ev, EIGENVALUE_PRESETS)
                self._set("eigenvalues", ev)
            else:
                arr = np.array(ev, dtype=np.float64).ravel()
                if arr.size != r or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                    raise ValueError(f"eigenvalues={ev!r} is invalid: must be a preset "
                                     f"{EIGENVALUE_PRESETS} or {r} finite numbers > 0 (rank={r})")
                self._set("eigenvalues", [float(v) for v in np.sort(arr)[::-1]])
        if self.init is not None:
            arr = np.array(self.init, dtype=np.float64)
            lead = (2, n) if par == "asymmetric" else (n,)
            if arr.ndim != len(lead) + 1 or arr.shape[:-1] != lead or arr.shape[-1] < 1:
                want = "(2, d, k) (F₀, G₀)" if par == "asymmetric" else "(d, k)"
                raise ValueError(f"init with shape {arr.shape} is invalid: must have shape {want} with d={n}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("init is invalid: it has non-finite entries")
            if self.student_rank is not None and check_int("student_rank", self.student_rank, 1) != arr.shape[-1]:
                raise ValueError(f"student_rank={self.student_rank!r} is invalid: must equal the width "
                                 f"k={arr.shape[-1]} of init")
            self._set("init", arr)
            self._set("student_rank", int(arr.shape[-1]))
        elif self.student_rank is None:
            self._set("student_rank", self.rank)
        else:
            self._set("student_rank", check_int("student_rank", self.student_rank, 1))
        self._set("init_scale", check_real("init_scale", self.init_scale, 0.0, lo_open=True))
        if self.ratio is not None:
            self._set("ratio", check_real("ratio", self.ratio, 0.0, lo_open=True))
            if self.m < 1:
                raise ValueError(f"ratio={self.ratio!r} is invalid: with d={n} it gives m = round(ratio·d²) = 0 "
                                 f"measurements; must be ≥ {0.5 / n**2:.3g}")
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("algorithm", check_choice("algorithm", self.algorithm, ALGORITHMS))
        self._set("lr", check_real("lr", self.lr, 0.0, lo_open=True))
        if self.batch_size is not None:
            self._set("batch_size", check_int("batch_size", self.batch_size, 1, self.m))

    def __eq__(self, other):
        return type(other) is type(self) and self.to_json() == other.to_json()

    __hash__ = None

    @property
    def n(self) -> int:
        """Matrix size (= ``d``)."""
        return self.d

    @property
    def k(self) -> int:
        return self.student_rank

    @property
    def m(self) -> int | None:
        """Number of measurements round(ratio·n²); None in the population setting."""
        return None if self.ratio is None else int(round(self.ratio * self.d ** 2))

    @property
    def batch(self) -> int:
        """Measurements per SGD step."""
        if self.batch_size is not None:
            return self.batch_size
        if self.ratio is None:
            raise ValueError("batch_size is required for online SGD (ratio=None, algorithm='sgd')")
        return self.m

    @property
    def sigmas(self) -> np.ndarray:
        """σ₁ ≥ … ≥ σ_r (eigenvalues, or singular values of an asymmetric ground truth)."""
        if isinstance(self.eigenvalues, str):
            return preset_eigenvalues(self.eigenvalues, self.rank)
        return np.asarray(self.eigenvalues, dtype=np.float64)

    def ground_truth_matrix(self) -> np.ndarray:
        """M* as an (n, n) array."""
        if self.ground_truth is not None:
            return np.asarray(self.ground_truth, dtype=np.float64)
        M = np.zeros((self.d, self.d))
        M[np.arange(self.rank), np.arange(self.rank)] = self.sigmas
        return M


def ground_truth_basis(spec: MatrixSensingSpec):
    """(λ, U, V): M* = U diag(λ) Vᵀ over all n directions, λ sorted decreasingly (λ_i = 0 for i > r).

    Symmetric model: the eigen-decomposition (U = V); asymmetric: the SVD.  For the default ground truth
    U = V = I.  The first ``spec.rank`` columns of U span the range of M* (alignment, §1).
    """
    n = spec.d
    if spec.ground_truth is None:
        lam = np.zeros(n)
        lam[:spec.rank] = spec.sigmas
        return lam, np.eye(n), np.eye(n)
    M = spec.ground_truth_matrix()
    if spec.parametrization == "symmetric":
        lam, U = np.linalg.eigh(M)
        order = np.argsort(lam)[::-1]
        lam, U = np.clip(lam[order], 0.0, None), U[:, order]
        lam[spec.rank:] = 0.0
        return lam, U, U
    U, s, Vt = np.linalg.svd(M)
    s = s.copy()
    s[spec.rank:] = 0.0
    return s, U, Vt.T


# --- random streams (one per seed index i: SeedSequence(entropy, spawn_key=(i,)) from hidyn.rng) --------
# Sub-streams are children with fixed spawn keys, so the init a theory draws for seed i is exactly the
# Monte-Carlo's, and measurement chunk c is the same whether it is stored or regenerated.

def _child(ss: np.random.SeedSequence, *key) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + key)))


def init_stream(ss) -> np.random.Generator:
    return _child(ss, 0)


def measurement_stream(ss, chunk: int) -> np.random.Generator:
    return _child(ss, 1, int(chunk))


def step_stream(ss) -> np.random.Generator:
    """Minibatch choices and online measurements."""
    return _child(ss, 2)


def draw_init(spec: MatrixSensingSpec, ss) -> np.ndarray:
    """X₀ (n, k), or (2, n, k) = (F₀, G₀), for the seed with SeedSequence ``ss`` (§1): α·Z/√n."""
    if spec.init is not None:
        return np.array(spec.init, dtype=np.float64)
    shape = (2, spec.d, spec.k) if spec.parametrization == "asymmetric" else (spec.d, spec.k)
    return (spec.init_scale / math.sqrt(spec.d)) * init_stream(ss).standard_normal(shape)
