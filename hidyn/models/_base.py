"""Base class and validators for model specs.

A spec is a frozen dataclass: one immutable description of a model that both the d → ∞ theory and the
finite-d Monte-Carlo consume.  Every field is validated in ``__post_init__`` and a bad value raises a
``ValueError`` that names the parameter, the value and the valid range.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, ClassVar

import numpy as np

__all__ = ["ModelSpec", "check_int", "check_real", "check_choice", "check_bool"]


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as an int in [lo, hi] or raise a ValueError naming ``name``."""
    rng = f"an integer in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    if not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    return value


def check_real(name: str, value, lo: float | None = None, hi: float | None = None, *,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as a finite float in the given interval or raise a ValueError naming ``name``."""
    lb = "(" if lo_open else "["
    ub = ")" if hi_open else "]"
    rng = f"a finite number in {lb}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{ub}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(f"{name}={value!r} is invalid: must be {rng}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` (lower-cased) if it is one of ``choices`` or raise a ValueError naming ``name``."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(f"{name}={value!r} is invalid: must be one of {', '.join(map(repr, choices))}")
    return value.lower()


def check_bool(name: str, value) -> bool:
    """Return ``value`` as a bool (True/False or the integers 0/1); strings such as "no" are refused
    (they would be truthy)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name}={value!r} is invalid: must be True or False")


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return f"<callable {getattr(value, '__name__', type(value).__name__)}>"
    return value


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Base of every model spec.

    Subclasses are frozen dataclasses that set ``model`` (the registry key), implement
    :meth:`_validate` (normalise and check fields, using ``object.__setattr__``) and name their
    Monte-Carlo backends and theory methods.
    """

    model: ClassVar[str] = ""
    #: default end time of a run in the family's time unit
    default_t_max: ClassVar[float] = 10.0
    #: time unit, written to the ``time`` coordinate's ``units`` attribute
    time_units: ClassVar[str] = "1"
    #: ``"module:Class"`` of each Monte-Carlo backend, imported lazily
    backends: ClassVar[dict[str, str]] = {}

    def __post_init__(self):
        self._validate()

    def _validate(self) -> None:  # overridden by every family
        raise TypeError("ModelSpec is abstract: use a family spec such as hidyn.models.get('dln')")

    def _set(self, name: str, value: Any) -> None:
        """Normalise a field inside the frozen dataclass during validation."""
        object.__setattr__(self, name, value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes) -> ModelSpec:
        """Return a copy with ``changes`` applied (and validated)."""
        unknown = set(changes) - set(self.field_names())
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for model {self.model!r}; "
                             f"valid: {', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-compatible dict of the fields (arrays as nested lists)."""
        return {f: _jsonable(getattr(self, f)) for f in self.field_names()}

    def to_json(self) -> str:
        return json.dumps({"model": self.model, **self.to_dict()}, sort_keys=True)
