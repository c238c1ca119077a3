"""Per-family glue between a spec and the solvers: which theory methods exist, which is "auto",
and how a solver's output becomes schema variables.  One module per family."""
from __future__ import annotations

import importlib

__all__ = ["family"]


def family(model: str):
    """The glue module of a model family (``hidyn.families.<model>``)."""
    return importlib.import_module(f"hidyn.families.{model}")
