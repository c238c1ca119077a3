"""``hidyn.show_versions()``: the versions that matter for a bug report."""
from __future__ import annotations

import importlib.metadata as md
import platform
import sys

PACKAGES = ("numpy", "scipy", "xarray", "h5netcdf", "h5py", "matplotlib", "numba", "tqdm", "jax",
            "jaxlib", "diffrax", "dask", "distributed", "zarr")


def versions() -> dict:
    """Versions of Python, the platform, hidyn and its (optional) dependencies (None if absent)."""
    from hidyn._version import __version__

    out = {"hidyn": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def show_versions(file=None) -> None:
    """Print :func:`versions` one per line (absent optional packages show as 'not installed')."""
    for key, val in versions().items():
        print(f"{key:>12}: {val if val is not None else 'not installed'}", file=file or sys.stdout)
