"""Save and load hidyn results (netCDF4 through h5netcdf; zarr optional)."""
from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from hidyn.results import SchemaError, validate_dataset

__all__ = ["save", "load"]


def _engine(path: Path, engine: str | None) -> str:
    if engine is not None:
        if engine not in ("h5netcdf", "zarr"):
            raise ValueError(f"engine={engine!r} is invalid: must be 'h5netcdf' or 'zarr'")
        return engine
    return "zarr" if path.suffix == ".zarr" else "h5netcdf"


def _array_attr(value):
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in value):
        import numpy as np

        return np.asarray(value, dtype=np.float64 if any(isinstance(v, float) for v in value) else np.int64)
    return value


def save(ds: xr.Dataset, path, *, engine: str | None = None) -> Path:
    """Write a hidyn result to ``path`` (``.nc`` → netCDF4/HDF5 via h5netcdf, ``.zarr`` → zarr).

    The file is written to a temporary name beside ``path`` and renamed, so an interrupted write never
    leaves a truncated file under the final name.

    Raises
    ------
    SchemaError
        ``ds`` does not follow the result schema (see :func:`hidyn.results.validate_dataset`).
    OSError
        The directory does not exist or is not writable (the message names the path).
    """
    path = Path(path)
    validate_dataset(ds)
    engine = _engine(path, engine)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise OSError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise OSError(f"cannot write {str(path)!r}: directory {str(parent)!r} is not writable")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        if engine == "zarr":
            try:
                import zarr  # noqa: F401
            except ImportError as err:
                raise ImportError("saving to .zarr needs the zarr extra: pip install 'hidyn[zarr]'") from err
            # zarr ≥ 3 (what xarray ≥ 2025 needs): format 3 without consolidated metadata, which the
            # format 3 specification does not include (zarr warns about it)
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        else:
            ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    return path


def load(path, *, engine: str | None = None) -> xr.Dataset:
    """Load a result written by :func:`save` (fully into memory; the file is closed on return).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    SchemaError
        The file is readable but was not written by hidyn (no ``hidyn_version`` attr) or breaks the schema.
    OSError
        The file is not a netCDF4/HDF5 (or zarr) file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no hidyn result at {str(path)!r}")
    engine = _engine(path, engine)
    if engine == "zarr":
        try:
            import zarr  # noqa: F401
        except ImportError as err:
            raise ImportError(f"loading {str(path)!r} (a zarr store) needs the zarr extra: "
                              f"pip install \"hidyn[zarr]\"") from err
    try:
        if engine == "zarr":
            try:
                import zarr  # noqa: F401
            except ImportError as err:
                raise ImportError("loading a .zarr needs the zarr extra: pip install 'hidyn[zarr]'") from err
            ds = xr.open_zarr(path, consolidated=False).load()
            # zarr keeps array attrs as JSON lists; the schema (and netCDF) has 1-D numeric arrays
            ds.attrs = {k: _array_attr(v) for k, v in ds.attrs.items()}
        else:
            with xr.open_dataset(path, engine="h5netcdf") as f:
                ds = f.load()
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read {str(path)!r} as a netCDF4/HDF5 file: {err}") from err
    if "hidyn_version" not in ds.attrs:
        raise SchemaError(f"{str(path)!r} was not written by hidyn (no 'hidyn_version' attr); "
                          f"open it with xarray.open_dataset instead")
    return validate_dataset(ds)
