"""The family contract (issue #11, first slice): what a family's glue module declares about itself.

Each glue module ``hidyn/families/<model>.py`` ends with ``FAMILY = Family(...)``; :func:`family`
returns that object, and :mod:`hidyn.api`, :mod:`hidyn.checks` and ``hidyn.validation`` read its
fields instead of probing the module with ``hasattr``/``getattr(..., default)``.  Optional members
have explicit, documented defaults (the functions below), so every field of a :class:`Family` is
always present and always of the same type.  See ``docs/families.md``.
"""
from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Family", "TheoryMethod", "family", "same_spec", "no_admissibility_check",
           "all_shared_variables", "comparison_default_tolerance"]

#: A theory method: ``method(spec, times, **options) -> (data_vars, attrs)``.  ``times`` is a float64
#: array of shape (n_times,) in the spec's time units; ``data_vars`` maps a variable name to
#: ``(dims, values)`` with dims starting with ``"time"``; ``attrs`` holds solver information and may
#: carry the reserved keys ``time`` (the method's own times), ``coords``, ``limit``, ``spec_fields``
#: and ``time_units`` (see :func:`hidyn.api.theory`).
TheoryMethod = Callable[..., "tuple[dict, dict]"]


def same_spec(spec):
    """Default ``theory_spec_for``: the theory of a simulation uses the simulation's own spec."""
    return spec


def no_admissibility_check(spec) -> None:
    """Default ``inadmissible``: the family has no admissible set to watch during a Monte-Carlo run
    (``None`` tells :func:`hidyn.solvers.mc.driver.run` to skip the check)."""
    return None


def all_shared_variables(spec) -> None:
    """Default ``default_variables``: ``None``, i.e. :func:`hidyn.compare` compares every variable
    the simulation and the theory share."""
    return None


def comparison_default_tolerance(spec, sim=None) -> None:
    """Default ``default_tolerance``: ``None``, i.e. the generic default of
    :func:`hidyn.validation.compare.compare_datasets` (a family without derived constants)."""
    return None


def _frozen(name: str, mapping, model: str) -> Mapping:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{name}={mapping!r} is invalid for family {model!r}: must be a mapping")
    return types.MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Family:
    """What a model family provides, declared once by its glue module (``FAMILY = Family(...)``).

    Parameters
    ----------
    model : str
        Registry key (``hidyn.models.available()``), e.g. ``"dln"``.
    spec_class : type
        Its frozen spec class (``hidyn.models.spec_class(model)``); the spec also names the Monte-Carlo
        backends (``spec_class.backends``), which follow the driver contract of
        ``hidyn.solvers.mc.driver``.
    methods : Mapping[str, TheoryMethod]
        Theory methods by name, each ``method(spec, times, **options) -> (data_vars, attrs)``.
    auto_method : callable(spec) -> str
        The method ``method="auto"`` picks for a spec.  It may return a string that is not a key of
        ``methods`` (a sentence saying why nothing applies); :func:`hidyn.theory` then raises
        ``NotImplementedError`` quoting it.
    theory_needs_init : bool
        True when the theory starts from measured order parameters (``theory(..., init=sim)``):
        :func:`hidyn.compare` then passes the simulation as ``init``.  Default False.
    default_variables : callable(spec) -> sequence of str or None
        Variables :func:`hidyn.compare` checks by default.  Default :func:`all_shared_variables`.
    default_tolerance : callable(spec, sim=None) -> Tolerance or dict or None
        The family's derived tolerance (constants documented next to it).  Default
        :func:`comparison_default_tolerance`.
    theory_spec_for : callable(spec) -> spec
        The spec whose theory a simulation of ``spec`` is compared with.  Default :func:`same_spec`.
    inadmissible : callable(spec) -> callable or None
        A per-step check of the Monte-Carlo state against the admissible set (``hidyn.admissibility``),
        or None.  Default :func:`no_admissibility_check`.
    own_times : Mapping[str, str]
        Methods whose times are fixed by the theory (t = ∞, jump times), with a phrase saying which;
        they refuse ``times``/``t_max``.  Default empty.
    default_times : Mapping[str, callable(spec, t_max) -> ndarray]
        Methods on their own time grid (the DMFT's steps), returning that grid up to ``t_max`` (shape
        (n_times,)); used when no ``times``/``n_times``/``spacing`` is given.  Default empty.
    finite_d_fields : tuple of str
        Spec fields a d → ∞ result does not record (provenance).  Default ``("d",)``.
    """

    model: str
    spec_class: type
    methods: Mapping[str, TheoryMethod]
    auto_method: Callable[[Any], str]
    theory_needs_init: bool = False
    default_variables: Callable[[Any], Sequence[str] | None] = all_shared_variables
    default_tolerance: Callable[..., Any] = comparison_default_tolerance
    theory_spec_for: Callable[[Any], Any] = same_spec
    inadmissible: Callable[[Any], Any] = no_admissibility_check
    own_times: Mapping[str, str] = field(default_factory=dict)
    default_times: Mapping[str, Callable[[Any, float], np.ndarray]] = field(default_factory=dict)
    finite_d_fields: tuple = ("d",)

    def __post_init__(self):
        model = self.model
        if not isinstance(model, str) or not model:
            raise ValueError(f"model={model!r} is invalid: must be a non-empty string")
        if not isinstance(self.spec_class, type):
            raise ValueError(f"spec_class={self.spec_class!r} is invalid for family {model!r}: must be a class")
        methods = _frozen("methods", self.methods, model)
        if not methods:
            raise ValueError(f"methods={{}} is invalid for family {model!r}: must name at least one theory method")
        for name, func in methods.items():
            if not callable(func):
                raise ValueError(f"methods[{name!r}]={func!r} is invalid for family {model!r}: must be callable")
        object.__setattr__(self, "methods", methods)
        for name in ("auto_method", "default_variables", "default_tolerance", "theory_spec_for", "inadmissible"):
            value = getattr(self, name)
            if not callable(value):
                raise ValueError(f"{name}={value!r} is invalid for family {model!r}: must be callable")
        if not isinstance(self.theory_needs_init, bool):
            raise ValueError(f"theory_needs_init={self.theory_needs_init!r} is invalid for family "
                             f"{model!r}: must be True or False")
        for name in ("own_times", "default_times"):
            table = _frozen(name, getattr(self, name), model)
            unknown = set(table) - set(methods)
            if unknown:
                raise ValueError(f"{name} keys {sorted(unknown)} are invalid for family {model!r}: must be "
                                 f"theory methods ({', '.join(methods)})")
            object.__setattr__(self, name, table)
        object.__setattr__(self, "finite_d_fields", tuple(self.finite_d_fields))


def family(model: str) -> Family:
    """The :class:`Family` of a registered model (declared as ``FAMILY`` by ``hidyn.families.<model>``).

    Raises
    ------
    ValueError
        ``model`` is not a registered model (``hidyn.models.available()``).
    """
    import importlib

    from hidyn import models

    names = models.available()
    if model not in names:
        raise ValueError(f"model={model!r} is invalid: must be one of {', '.join(map(repr, names))}")
    fam = importlib.import_module(f"hidyn.families.{model}").FAMILY
    if fam.model != model or fam.spec_class is not models.spec_class(model):
        raise RuntimeError(f"hidyn.families.{model}.FAMILY declares model={fam.model!r}, "
                           f"spec_class={fam.spec_class.__name__}; the registry has "
                           f"{model!r} → {models.spec_class(model).__name__}")
    return fam
