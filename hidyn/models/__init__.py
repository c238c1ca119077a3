"""Model specs and their registry.

``hidyn.models.get("dln", d=2048)`` builds a validated spec; ``available()`` lists the registered
families.  A family registers its spec class with :func:`register`.
"""
from __future__ import annotations

from hidyn.models._base import ModelSpec
from hidyn.models.deep_linear import DeepLinearSpec
from hidyn.models.dln import DLNSpec
from hidyn.models.linear import LinearSpec
from hidyn.models.matrix_sensing import MatrixSensingSpec
from hidyn.models.single_index import SingleIndexSpec
from hidyn.models.two_layer import TwoLayerSpec

__all__ = ["ModelSpec", "DLNSpec", "TwoLayerSpec", "get", "register", "available", "spec_class"]
__all__ += ["SingleIndexSpec"]
__all__ += ["DeepLinearSpec"]
__all__ += ["MatrixSensingSpec"]
__all__ += ["LinearSpec"]

_REGISTRY: dict[str, type[ModelSpec]] = {}


def register(cls: type[ModelSpec]) -> type[ModelSpec]:
    """Register a spec class under its ``model`` key (usable as a decorator)."""
    if not cls.model:
        raise ValueError(f"{cls.__name__} has no `model` key")
    _REGISTRY[cls.model] = cls
    return cls


def available() -> tuple[str, ...]:
    """Registry keys of the model families."""
    return tuple(sorted(_REGISTRY))


def spec_class(model: str) -> type[ModelSpec]:
    if not isinstance(model, str) or model not in _REGISTRY:
        raise ValueError(f"model={model!r} is not a known model; valid: {', '.join(available())}")
    return _REGISTRY[model]


def get(model, **params) -> ModelSpec:
    """Return a validated spec.

    Parameters
    ----------
    model : str or ModelSpec
        A registry key (see :func:`available`) or an existing spec, which ``params`` then override.
    **params
        Spec fields.  Unknown names raise a ValueError listing the valid ones.
    """
    if isinstance(model, ModelSpec):
        return model.replace(**params) if params else model
    cls = spec_class(model)
    unknown = set(params) - set(cls.field_names())
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for model {model!r}; "
                         f"valid: {', '.join(cls.field_names())}")
    return cls(**params)


register(DLNSpec)
register(TwoLayerSpec)
register(SingleIndexSpec)
register(DeepLinearSpec)
register(MatrixSensingSpec)
register(LinearSpec)
