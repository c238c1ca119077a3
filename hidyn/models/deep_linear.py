"""Deep linear network spec and the abc-parametrisation table (theory page docs/theory/deep_linear.md).

f(x) = vᵀ W_L ⋯ W_1 W_0 x/√d_in, trained by full-batch GD (or minibatch SGD) on a fixed training set of
``n_samples`` Gaussian inputs with a linear teacher.  One spec drives the finite-width Monte-Carlo
(``hidyn.simulate``, vectorised over seeds and over a grid of learning rates) and the infinite-width
theory (``hidyn.theory``: the kernel limit for NTP, the μP dynamical mean-field theory, SP's blow-up).
Only numpy is imported here.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import numpy as np

from hidyn.models._base import ModelSpec, check_choice, check_int, check_real

__all__ = ["DeepLinearSpec", "PARAMETRIZATIONS", "abc_table", "effective_exponents", "INPUTS", "ALGORITHMS"]

PARAMETRIZATIONS = ("sp", "ntp", "mup")
INPUTS = ("gaussian", "whitened")
ALGORITHMS = ("gd", "sgd")


def abc_table(name: str, depth: int) -> dict[str, np.ndarray]:
    """The abc exponents of a named parametrisation (deep_linear.md §2; Yang & Hu, arXiv:2011.14522).

    Layer ℓ ∈ {0 (input), 1..L (hidden), L+1 (readout)} is W_ℓ = n^{-a_ℓ} w_ℓ, w_ℓ ~ N(0, n^{-2b_ℓ}),
    trained with learning rate η n^{-c_ℓ}.

    Parameters
    ----------
    name : {"sp", "ntp", "mup"}
    depth : int
        Number L of hidden-to-hidden layers.

    Returns
    -------
    dict with keys ``"a"``, ``"b"``, ``"c"``, each an array of shape (L + 2,).
    """
    name = check_choice("parametrization", name, PARAMETRIZATIONS)
    n_layers = depth + 2
    a = np.zeros(n_layers)
    b = np.zeros(n_layers)
    c = np.zeros(n_layers)
    if name == "sp":
        b[1:] = 0.5
    elif name == "ntp":
        a[1:] = 0.5
    else:  # μP, Yang & Hu Table 1 for SGD
        a[0], a[-1] = -0.5, 0.5
        b[:] = 0.5
    return {"a": a, "b": b, "c": c}


def effective_exponents(abc: dict) -> tuple[np.ndarray, np.ndarray]:
    """(p, q): the effective weights have init variance n^{-p_ℓ} and learning rate η n^{-q_ℓ}.

    p = 2(a + b), q = c + 2a (deep_linear.md eq. 2.1): the dynamics depend on the abc exponents only
    through these combinations (the abc symmetry).
    """
    a, b, c = (np.asarray(abc[k], dtype=np.float64) for k in ("a", "b", "c"))
    return 2.0 * (a + b), c + 2.0 * a


@dataclasses.dataclass(frozen=True)
class DeepLinearSpec(ModelSpec):
    """Deep linear network trained on a fixed linear-teacher data set (deep_linear.md §1–§2).

    Parameters
    ----------
    width : int ≥ 1
        Hidden width n (ignored by the infinite-width theory).
    depth : int ≥ 0
        Number L of hidden-to-hidden layers: f(x) = vᵀ W_L ⋯ W_1 W_0 x/√d_in (depth 0 is the two-layer
        linear network vᵀ W_0 x/√d_in).
    d_in : int ≥ 1
        Input dimension d.
    d_out : int
        Output dimension; only 1 is implemented.
    n_samples : int ≥ 1
        Training-set size P.
    noise : float ≥ 0
        Label-noise standard deviation σ.
    inputs : {"gaussian", "whitened"}
        x_μ ~ N(0, I) i.i.d., or whitened so that XᵀX/P = I exactly (needs n_samples ≥ d_in).
    parametrization : {"sp", "ntp", "mup"} or dict
        Named abc-parametrisation, or ``{"a": …, "b": …, "c": …}`` (each a number or L + 2 numbers,
        input layer first, readout last).
    lr : float > 0 or sequence of floats > 0
        Base learning rate η, or a grid of them (one Monte-Carlo run covers the whole grid: dim ``lr``).
    algorithm : {"gd", "sgd"}
        Full-batch GD or minibatch SGD (``batch_size`` samples without replacement per step).
    batch_size : int, optional
        Minibatch size for ``algorithm="sgd"`` (1 … n_samples).
    data_seed : int ≥ 0
        Seed of the training set and teacher (fixed across widths and Monte-Carlo seeds).
    """

    model: ClassVar[str] = "deep_linear"
    default_t_max: ClassVar[float] = 10.0
    time_units: ClassVar[str] = "GD steps"
    backends: ClassVar[dict[str, str]] = {
        "numpy": "hidyn.solvers.mc.deep_linear_numpy:DeepLinearNumpyBackend",
        "jax": "hidyn.solvers.mc.deep_linear_jax:DeepLinearJaxBackend",
    }

    width: int = 256
    depth: int = 1
    d_in: int = 16
    d_out: int = 1
    n_samples: int = 64
    noise: float = 0.0
    inputs: str = "gaussian"
    parametrization: Any = "mup"
    lr: Any = 0.5
    algorithm: str = "gd"
    batch_size: int | None = None
    data_seed: int = 0

    def _validate(self) -> None:
        self._set("width", check_int("width", self.width, 1))
        self._set("depth", check_int("depth", self.depth, 0))
        self._set("d_in", check_int("d_in", self.d_in, 1))
        self._set("d_out", check_int("d_out", self.d_out, 1))
        if self.d_out != 1:
            raise NotImplementedError(f"d_out={self.d_out}: only a scalar output (d_out=1) is implemented; "
                                      "the μP theory of deep_linear.md §4 is written for one output")
        self._set("n_samples", check_int("n_samples", self.n_samples, 1))
        self._set("noise", check_real("noise", self.noise, 0.0))
        self._set("inputs", check_choice("inputs", self.inputs, INPUTS))
        if self.inputs == "whitened" and self.n_samples < self.d_in:
            raise ValueError(f"n_samples={self.n_samples} is invalid: must be ≥ d_in={self.d_in} for "
                             f"inputs='whitened' (XᵀX/P = I needs P ≥ d)")
        self._set("parametrization", self._check_parametrization(self.parametrization))
        self._set("lr", self._check_lr(self.lr))
        self._set("algorithm", check_choice("algorithm", self.algorithm, ALGORITHMS))
        if self.algorithm == "sgd":
            if self.batch_size is None:
                raise ValueError("batch_size=None is invalid: must be an integer in [1, n_samples] for "
                                 "algorithm='sgd'")
            self._set("batch_size", check_int("batch_size", self.batch_size, 1, self.n_samples))
        elif self.batch_size is not None:
            raise ValueError(f"batch_size={self.batch_size!r} is invalid: must be None for algorithm='gd' "
                             f"(full batch)")
        self._set("data_seed", check_int("data_seed", self.data_seed, 0))

    def _check_parametrization(self, value):
        if isinstance(value, str):
            return check_choice("parametrization", value, PARAMETRIZATIONS)
        if not isinstance(value, dict) or set(value) != {"a", "b", "c"}:
            raise ValueError(f"parametrization={value!r} is invalid: must be one of "
                             f"{', '.join(map(repr, PARAMETRIZATIONS))} or a dict with keys 'a', 'b', 'c'")
        n_layers = self.depth + 2
        out = {}
        for key in ("a", "b", "c"):
            arr = np.asarray(value[key], dtype=np.float64) if not isinstance(value[key], str) else None
            if arr is None or arr.ndim > 1 or (arr.ndim == 1 and arr.size != n_layers) \
                    or not np.all(np.isfinite(arr)):
                raise ValueError(f"parametrization[{key!r}]={value[key]!r} is invalid: must be a finite "
                                 f"number or {n_layers} finite numbers (input, {self.depth} hidden, readout)")
            out[key] = [float(v) for v in np.broadcast_to(arr, (n_layers,))]
        return out

    @staticmethod
    def _check_lr(value):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return check_real("lr", value, 0.0, lo_open=True)
        arr = np.asarray(value, dtype=object)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"lr={value!r} is invalid: must be a finite number in (0, inf] or a non-empty "
                             f"1-D sequence of them")
        lrs = tuple(check_real(f"lr[{i}]", v, 0.0, lo_open=True) for i, v in enumerate(arr.tolist()))
        return lrs if len(lrs) > 1 else lrs[0]

    # ---------------------------------------------------------------- derived quantities
    @property
    def d(self) -> int:
        """The size sent to infinity (the width): ``hidyn.compare`` uses it in the finite-size term."""
        return self.width

    @property
    def lrs(self) -> np.ndarray:
        """The learning-rate grid, shape (n_lr,)."""
        return np.atleast_1d(np.asarray(self.lr, dtype=np.float64))

    @property
    def n_layers(self) -> int:
        """Trainable layers: input, ``depth`` hidden, readout."""
        return self.depth + 2

    @property
    def abc(self) -> dict[str, np.ndarray]:
        if isinstance(self.parametrization, str):
            return abc_table(self.parametrization, self.depth)
        return {k: np.asarray(v, dtype=np.float64) for k, v in self.parametrization.items()}

    @property
    def exponents(self) -> tuple[np.ndarray, np.ndarray]:
        """(p, q) of deep_linear.md eq. 2.1, each shape (L + 2,)."""
        return effective_exponents(self.abc)

    @property
    def regime(self) -> str | None:
        """The named parametrisation whose (p, q) these exponents equal, or None."""
        p, q = self.exponents
        for name in PARAMETRIZATIONS:
            p0, q0 = effective_exponents(abc_table(name, self.depth))
            if np.allclose(p, p0, atol=1e-12) and np.allclose(q, q0, atol=1e-12):
                return name
        return None

    def init_std(self, width: int | None = None) -> np.ndarray:
        """Standard deviation of an initial effective-weight entry per layer (on x̂ = x/√d), shape (L+2,)."""
        n = self.width if width is None else width
        p, _ = self.exponents
        return n ** (-p / 2.0)

    def layer_lrs(self, width: int | None = None) -> np.ndarray:
        """Effective learning rates η_ℓ = η n^{-q_ℓ} per (lr, layer), shape (n_lr, L+2)."""
        n = self.width if width is None else width
        _, q = self.exponents
        return self.lrs[:, None] * (float(n) ** (-q))[None, :]

    def dataset(self):
        """The fixed training set: ``(X (P, d), y (P,), w_star (d,))``, drawn from ``data_seed``.

        ‖w*‖ = 1, y = X w* + σξ.  Independent of the width and of the Monte-Carlo seeds.
        """
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.data_seed, 0xDEE9])))
        d, P = self.d_in, self.n_samples
        w = rng.standard_normal(d)
        w /= np.linalg.norm(w)
        G = rng.standard_normal((P, d))
        if self.inputs == "whitened":
            q, r = np.linalg.qr(G)
            X = math.sqrt(P) * q * np.sign(np.diag(r))[None, :]
        else:
            X = G
        xi = rng.standard_normal(P)
        y = X @ w + self.noise * xi
        return X, y, w

    def moments(self):
        """Σ̂ = X̂ᵀX̂/P (d, d), ĉ = X̂ᵀy/P (d,), yᵀy/P, w* — with x̂ = x/√d (deep_linear.md eq. 3.1)."""
        X, y, w = self.dataset()
        Xh = X / math.sqrt(self.d_in)
        P = self.n_samples
        return Xh.T @ Xh / P, Xh.T @ y / P, float(y @ y) / P, w
