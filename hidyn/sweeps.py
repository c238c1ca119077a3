"""Parameter sweeps that resume after interruption and scale out on any executor.

``hidyn.sweep(hidyn.simulate, {"lr": [0.1, 0.5], "d": [250, 1000]}, model="two_layer", seeds=8)`` runs
every grid point, makes each swept parameter a **coordinate** (never an attr: ``xr.concat`` would keep
only the first point's attrs, silently) and combines the points into one Dataset.

* ``executor``: None (serial), any :class:`concurrent.futures.Executor` — a
  ``ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn"))`` (JAX is not fork-safe) — or a
  ``dask.distributed.Client`` (its ``get_executor()`` is used) to spread points over many machines.
* ``out_dir``: one netCDF file per point, written atomically (temporary file + rename); points whose file
  exists are loaded instead of recomputed, so a sweep that was killed resumes without loss.
* A point that raises is recorded (``attrs["sweep_failures"]``, a JSON list, and
  ``out_dir/failures.json``) with a warning; the other points complete.  Failed points are retried on the
  next run.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import numbers
import re
import traceback
import warnings
from pathlib import Path

import numpy as np

__all__ = ["sweep", "grid_points", "point_filename"]


def _scalar(name, value):
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is None or isinstance(value, (bool, numbers.Number, str)):
        return value
    raise ValueError(f"sweep: value {value!r} of parameter {name!r} is not a scalar (number, string, "
                     f"bool or None); swept values become coordinates and must be scalars")


def grid_points(grid) -> tuple[list[dict], list[str], bool]:
    """Expand ``grid`` into a list of parameter dicts.

    Parameters
    ----------
    grid : dict name -> sequence (cartesian product) or sequence of dicts (explicit points)

    Returns
    -------
    points, names (the swept parameter names), cartesian (whether the points form a full product)
    """
    if isinstance(grid, dict):
        if not grid:
            raise ValueError("sweep: grid is empty")
        names = list(grid)
        values = []
        for name in names:
            vals = grid[name]
            if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
                raise ValueError(f"sweep: grid[{name!r}] must be a sequence of values, got {vals!r}")
            vals = [_scalar(name, v) for v in vals]
            if not vals:
                raise ValueError(f"sweep: grid[{name!r}] is empty")
            if len(set(map(repr, vals))) != len(vals):
                raise ValueError(f"sweep: grid[{name!r}] has repeated values")
            values.append(vals)
        points = [dict(zip(names, combo)) for combo in itertools.product(*values)]
        return points, names, True
    points = [dict(p) for p in grid]
    if not points or not all(isinstance(p, dict) for p in points):
        raise ValueError("sweep: grid must be a dict of sequences or a non-empty sequence of dicts")
    names = sorted(set().union(*points))
    for p in points:
        if set(p) != set(names):
            raise ValueError(f"sweep: every point must set the same parameters {names}, got {sorted(p)}")
        for k, v in p.items():
            p[k] = _scalar(k, v)
    return points, names, False


def point_filename(point: dict, fixed: dict) -> str:
    """Stable, readable file name of a grid point: ``name=value_...-<hash of point and fixed>.nc``."""
    blob = json.dumps({"point": point, "fixed": fixed}, sort_keys=True, default=repr)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
    label = "_".join(f"{k}={v}" for k, v in sorted(point.items()))
    label = re.sub(r"[^A-Za-z0-9_.=+-]", "-", label)[:80]
    return f"{label}-{digest}.nc"


def _run_point(func, kwargs: dict, path: str | None):
    """Worker: compute one point (and save it atomically). Module-level so it pickles for processes."""
    try:
        ds = func(**kwargs)
        if path is not None:
            from hidyn.io import save

            save(ds, path)
        return ("ok", ds)
    except Exception as err:  # recorded, never kills the sweep
        # an exception without a message (e.g. KeyError(), AssertionError()) still names its type and args
        return ("error", f"{type(err).__name__}: {str(err) or repr(err)}\n{traceback.format_exc(limit=3)}")


def _as_executor(executor):
    if executor is None:
        return None
    if hasattr(executor, "get_executor") and not hasattr(executor, "submit_point"):
        # dask.distributed.Client → a concurrent.futures-compatible executor
        return executor.get_executor()
    if not hasattr(executor, "submit"):
        raise ValueError(f"executor={executor!r} is invalid: must be a concurrent.futures.Executor or a "
                         f"dask.distributed.Client")
    return executor


def _label(ds, point: dict, names: list[str]):
    ds = ds.copy()
    for name in names:
        ds.attrs.pop(name, None)
    return ds.assign_coords({name: point[name] for name in names})


def sweep(func, grid, /, *, executor=None, out_dir=None, progress=None, **fixed):
    """Run ``func(**fixed, **point)`` for every grid point and combine the results.

    Parameters
    ----------
    func : callable returning an xarray.Dataset
        Usually :func:`hidyn.simulate` or :func:`hidyn.theory`.
    grid : dict name -> sequence, or sequence of dicts
        A dict is expanded as a cartesian product; a list gives explicit points.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
    out_dir : path, optional
        Directory of one ``.nc`` file per point; existing files are loaded, not recomputed.
    progress : bool or None
        Progress bar over points (None: only on a terminal).
    **fixed
        Arguments shared by every point.

    Returns
    -------
    xarray.Dataset
        For a cartesian grid, each swept parameter is a dimension coordinate; for a list of points the
        points are stacked along ``point`` with the parameters as coordinates along it.  Points that
        failed are missing and listed in ``attrs["sweep_failures"]``.
    """
    import xarray as xr
    from tqdm.auto import tqdm

    if not callable(func):
        raise ValueError(f"func={func!r} must be callable (e.g. hidyn.simulate)")
    points, names, cartesian = grid_points(grid)
    clash = set(names) & set(fixed)
    if clash:
        raise ValueError(f"sweep: {sorted(clash)} given both in the grid and as fixed arguments")
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
    results: dict[int, object] = {}
    failures = []
    todo = []
    for i, point in enumerate(points):
        path = None if out is None else out / point_filename(point, fixed)
        if path is not None and path.exists():
            from hidyn.io import load

            results[i] = load(path)
        else:
            todo.append((i, point, None if path is None else str(path)))
    disable = None if progress is None else not progress
    bar = tqdm(total=len(points), initial=len(results), desc="sweep", unit="point", disable=disable)
    try:
        pool = _as_executor(executor)
        if pool is None:
            outcomes = ((i, p, _run_point(func, {**fixed, **p}, path)) for i, p, path in todo)
        else:
            futures = [(i, p, pool.submit(_run_point, func, {**fixed, **p}, path)) for i, p, path in todo]
            outcomes = ((i, p, fut.result()) for i, p, fut in futures)
        for i, point, (status, value) in outcomes:
            if status == "ok":
                results[i] = value
            else:
                failures.append({"point": point, "error": value})
            bar.update(1)
    finally:
        bar.close()
    if out is not None:
        (out / "failures.json").write_text(json.dumps(failures, indent=1, default=repr))
    if failures:
        warnings.warn(f"sweep: {len(failures)} of {len(points)} points failed (first: {failures[0]['point']}: "
                      f"{failures[0]['error'].splitlines()[0]}); see attrs['sweep_failures']",
                      RuntimeWarning, stacklevel=2)
    if not results:
        raise RuntimeError(f"sweep: every point failed; first error (point {failures[0]['point']}): "
                           + failures[0]["error"])
    labelled = [_label(results[i], points[i], names) for i in sorted(results)]
    stacked = xr.concat([ds.expand_dims("point") for ds in labelled], dim="point", join="outer",
                        combine_attrs="drop_conflicts", coords="different", compat="equals")
    if cartesian and not failures:
        if len(names) == 1:  # a one-level index cannot be unstacked: the point dim becomes the parameter
            combined = stacked.swap_dims({"point": names[0]}).transpose(names[0], ...)
        else:
            combined = stacked.set_index(point=names).unstack("point").transpose(*names, ...)
    else:
        # explicit points, or a product with holes (failed points): keep the point dim rather than
        # fill the holes with invented values
        combined = stacked.transpose("point", ...)
    combined.attrs["swept"] = json.dumps(names)
    combined.attrs["sweep_failures"] = json.dumps(failures, default=repr)
    return combined
