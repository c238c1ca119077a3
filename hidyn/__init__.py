"""hidyn: high-dimensional learning dynamics, theory and Monte-Carlo behind one spec.

>>> import hidyn
>>> sim = hidyn.simulate(model="dln", d=4096)        # finite-d Monte-Carlo, dims (seed, time)
>>> th = hidyn.theory("dln", ratio=None)              # d -> infinity closed form
>>> hidyn.compare(hidyn.simulate("dln", d=1024, ratio=None, algorithm="gf")).summary()

``import hidyn`` stays fast: xarray, scipy and the solvers load on first use of the functions below,
and matplotlib, numba, jax and dask only inside the functions that need them.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hidyn._version import __version__

# Static tools (type checkers, IDEs, the docs build) read the imports below; at run time the names are
# resolved lazily by __getattr__, so `import hidyn` loads neither xarray nor the solvers.  The
# `import x as x` form marks an explicit re-export (PEP 484).  Keep this block, __all__ and _LAZY in step
# (tests/unit/test_public_api.py checks it).
if TYPE_CHECKING:
    from hidyn import models as models
    from hidyn import plot as plot
    from hidyn._versions import show_versions as show_versions
    from hidyn.api import compare as compare
    from hidyn.api import simulate as simulate
    from hidyn.api import theory as theory
    from hidyn.escape import escape_time as escape_time
    from hidyn.io import load as load
    from hidyn.io import save as save
    from hidyn.optimize import optimize_schedule as optimize_schedule
    from hidyn.sweeps import sweep as sweep
    from hidyn.transfer import lr_transfer as lr_transfer
    from hidyn.validation.tolerance import Tolerance as Tolerance

__all__ = ["__version__", "simulate", "theory", "compare", "sweep", "save", "load", "models", "Tolerance",
           "show_versions", "plot"]
__all__ += ["escape_time"]
__all__ += ["optimize_schedule"]
__all__ += ["lr_transfer"]

_LAZY = {
    "simulate": "hidyn.api", "theory": "hidyn.api", "compare": "hidyn.api",
    "save": "hidyn.io", "load": "hidyn.io", "sweep": "hidyn.sweeps",
    "Tolerance": "hidyn.validation.tolerance",
    "show_versions": "hidyn._versions",
    "escape_time": "hidyn.escape",
    "optimize_schedule": "hidyn.optimize",
    "lr_transfer": "hidyn.transfer",
}
_SUBMODULES = ("models", "plot", "results", "observables", "io", "rng", "config", "api", "activations",
               "solvers", "validation")


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"hidyn.{name}")
    raise AttributeError(f"module 'hidyn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
