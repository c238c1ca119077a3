"""Scalar activation / link functions shared by the two-layer and single-index families.

An :class:`Activation` bundles g with its first two derivatives (the ODEs need g' and, through
Stein's lemma, g'').  Names follow the theory notes:

* ``"erf"`` is g(x) = erf(x/√2) (docs/theory/teacher_student.md §4.1), not erf(x);
* ``"he1"`` … ``"he4"`` are the *normalised* probabilists' Hermite polynomials He_k/√(k!)
  (docs/theory/single_index.md P10), and ``"he2"``/``"he3"`` the same functions in the two-layer family;
* ``"quadratic"`` is x², ``"linear"`` is x, ``"sigmoid"`` is the logistic function 1/(1+e^{−x}).

User-defined activations are given as a tuple ``(g, dg)`` or ``(g, dg, d2g)`` of vectorised callables.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["Activation", "get_activation", "ACTIVATIONS"]

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@dataclass(frozen=True)
class Activation:
    """A scalar function with its derivatives, all vectorised over ndarrays.

    Attributes
    ----------
    name : str
        Registry name, or ``"custom"`` for user callables.
    g, dg, d2g : callable
        g(x), g'(x), g''(x).  ``d2g`` is None when the user did not provide it.
    kink : bool
        True for non-smooth functions (ReLU): Gauss–Hermite tensor rules converge slowly for them.
    """

    name: str
    g: Callable[[np.ndarray], np.ndarray]
    dg: Callable[[np.ndarray], np.ndarray]
    d2g: Callable[[np.ndarray], np.ndarray] | None = None
    kink: bool = False

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _erf_g(x):
    return special.erf(np.asarray(x) / _SQRT2)


def _erf_dg(x):
    x = np.asarray(x)
    return _SQRT_2_OVER_PI * np.exp(-0.5 * x * x)


def _erf_d2g(x):
    x = np.asarray(x)
    return -x * _SQRT_2_OVER_PI * np.exp(-0.5 * x * x)


def _relu(x):
    return np.maximum(np.asarray(x), 0.0)


def _step(x):
    return (np.asarray(x) > 0).astype(np.float64)


def _zero(x):
    return np.zeros_like(np.asarray(x, dtype=np.float64))


def _one(x):
    return np.ones_like(np.asarray(x, dtype=np.float64))


def _sigmoid(x):
    return special.expit(np.asarray(x))


def _sigmoid_d(x):
    s = special.expit(np.asarray(x))
    return s * (1.0 - s)


def _sigmoid_d2(x):
    s = special.expit(np.asarray(x))
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _tanh_d(x):
    return 1.0 / np.cosh(np.asarray(x)) ** 2


def _tanh_d2(x):
    t = np.tanh(np.asarray(x))
    return -2.0 * t * (1.0 - t * t)


def _hermite(k: int) -> Activation:
    """Normalised probabilists' Hermite polynomial h_k = He_k/√(k!) with He_k' = k·He_{k−1}."""
    norm = 1.0 / math.sqrt(math.factorial(k))

    def he(n, x):
        return special.eval_hermitenorm(n, np.asarray(x, dtype=np.float64)) if n >= 0 else _zero(x)

    return Activation(
        name=f"he{k}",
        g=lambda x: norm * he(k, x),
        dg=lambda x: norm * k * he(k - 1, x),
        d2g=lambda x: norm * k * (k - 1) * he(k - 2, x),
    )


_REGISTRY: dict[str, Activation] = {
    "erf": Activation("erf", _erf_g, _erf_dg, _erf_d2g),
    "relu": Activation("relu", _relu, _step, _zero, kink=True),
    "linear": Activation("linear", lambda x: np.asarray(x, dtype=np.float64), _one, _zero),
    "tanh": Activation("tanh", lambda x: np.tanh(np.asarray(x)), _tanh_d, _tanh_d2),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_d, _sigmoid_d2),
    "quadratic": Activation("quadratic", lambda x: np.asarray(x, dtype=np.float64) ** 2,
                            lambda x: 2.0 * np.asarray(x, dtype=np.float64),
                            lambda x: 2.0 * _one(x)),
}
for _k in range(1, 5):
    _REGISTRY[f"he{_k}"] = _hermite(_k)

ACTIVATIONS: tuple[str, ...] = tuple(_REGISTRY)


def get_activation(spec, *, parameter: str = "activation") -> Activation:
    """Return the :class:`Activation` named by ``spec``.

    Parameters
    ----------
    spec : str, Activation, or tuple of callables
        A name in :data:`ACTIVATIONS`, an :class:`Activation`, or ``(g, dg)`` / ``(g, dg, d2g)``.
    parameter : str
        Name of the spec field, used in error messages.

    Raises
    ------
    ValueError
        Unknown name, a bare callable without its derivative, or a malformed tuple.
    """
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        key = spec.lower()
        if key not in _REGISTRY:
            raise ValueError(f"{parameter}={spec!r} is not a known activation; valid: "
                             f"{', '.join(ACTIVATIONS)}, or a tuple (g, dg[, d2g]) of callables")
        return _REGISTRY[key]
    if callable(spec):
        raise ValueError(f"{parameter}: a callable needs its derivative; pass (g, dg) or "
                         f"(g, dg, d2g) instead of a bare function")
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3) and all(callable(f) for f in spec):
        g, dg, *rest = spec
        return Activation("custom", g, dg, rest[0] if rest else None)
    raise ValueError(f"{parameter}={spec!r} must be a name ({', '.join(ACTIVATIONS)}) or a tuple "
                     f"(g, dg[, d2g]) of callables")
