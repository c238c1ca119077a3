"""Per-family glue between a spec and the solvers: which theory methods exist, which is "auto",
and how a solver's output becomes schema variables.  One module per family, each declaring itself
with ``FAMILY = Family(...)`` at its end (the contract: :class:`Family`, ``docs/families.md``)."""
from __future__ import annotations

from hidyn.families._protocol import Family, TheoryMethod, family

__all__ = ["Family", "TheoryMethod", "family"]
