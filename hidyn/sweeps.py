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

One time axis
-------------
Discrete algorithms save at whole steps, so points with different steps (GD: t = η·k, online SGD:
t = steps/d) reach different times even when they were asked for the same ones.  The points are never
outer-joined on ``time`` (that pads most of the array with NaN).  Instead:

* a sweep of :func:`hidyn.simulate` without ``times=`` gives every point one shared requested grid
  (``t_max``, ``n_times``, ``spacing`` as given; a log grid starts at the coarsest point's step, so every
  point resolves it);
* when the points then reach the same times (to float rounding, e.g. 0.3 vs 0.30000000000000004) that
  grid is the ``time`` coordinate;
* otherwise the ``time`` coordinate is the shared requested grid, each point's record is taken at the
  step it saved for each requested time (at most half a step away, checked), and the times really
  reached are kept in the coordinate ``time_reached`` with dims (swept..., time);
* with no shared requested grid (a custom ``func`` whose points differ, or a swept ``t_max``) the sweep
  raises and says to pass ``times=`` — never NaN padding.
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
    # arrays (e.g. times=) as lists: numpy's repr elides long arrays, which would merge distinct grids
    blob = json.dumps({"point": point, "fixed": fixed}, sort_keys=True,
                      default=lambda o: o.tolist() if isinstance(o, np.ndarray) else repr(o))
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


#: simulate/theory arguments that shape the time grid; when one of them is swept the grids differ
_TIME_GRID_ARGS = ("times", "t_max", "n_times", "spacing")


def _shared_times(func, points: list[dict], names: list[str], fixed: dict):
    """The one requested save grid of a sweep, and whether the sweep must pass it to ``func``.

    Returns ``(grid, inject)``: ``times`` when given (shared, nothing to inject); for
    :func:`hidyn.simulate` a grid built once for all points and injected as ``times=`` (a log grid
    starts at the largest step over the points, the coarsest clock: ``simulate`` alone would start
    each point at its own step); for :func:`hidyn.theory` the grid every point requests anyway.
    ``(None, False)`` when a time-grid argument is swept, ``func`` is something else, a theory starts
    from a simulation (``init=<Dataset>``, its own times), or no point's spec can be built (those
    points fail on their own and are recorded).
    """
    import inspect

    import xarray as xr

    from hidyn import api, models

    if set(names) & set(_TIME_GRID_ARGS):
        return None, False
    if fixed.get("times") is not None:
        return np.asarray(fixed["times"], dtype=np.float64).ravel(), False
    if func not in (api.simulate, api.theory) or any(isinstance(p.get("init", fixed.get("init")), xr.Dataset)
                                                     for p in points):
        return None, False
    own = set(inspect.signature(func).parameters) - {"params"}
    steps, spec = [], None
    for point in points:
        kwargs = {**fixed, **point}
        model = kwargs.get("model", "dln")
        params = {k: v for k, v in kwargs.items() if k not in own}
        if kwargs.get("d") is not None:
            params["d"] = kwargs["d"]
        try:
            if func is api.theory:  # theory passes only spec fields to the spec; its grid has no `first`
                cls = models.spec_class(model) if isinstance(model, str) else type(model)
                spec = api._spec(model, {k: v for k, v in params.items() if k in set(cls.field_names())})
                break
            spec = api._spec(model, params)
            _, backend = api._backend_class(spec, kwargs.get("backend", "auto"))
            steps.append(backend(spec, kwargs.get("precision", "float64")).time_per_step)
        except Exception:  # noqa: BLE001 - the point itself will raise and be recorded as failed
            continue
    if spec is None:
        return None, False
    discrete = [h for h in steps if h is not None]
    try:
        grid = api.make_times(spec, t_max=fixed.get("t_max"), n_times=fixed.get("n_times", 100),
                              spacing=fixed.get("spacing", "log"), first=max(discrete) if discrete else None)
    except ValueError:   # a bad t_max/n_times: every point raises it and is recorded
        return None, False
    return grid, func is api.simulate


def _same_grid(a: np.ndarray, b: np.ndarray) -> bool:
    # rtol 1e-9: save times are step·h products, equal grids differ only in the last bits
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-300)


def _align_times(datasets: list, points: list[dict], requested):
    """Put every point on one ``time`` axis (see the module docstring); never pads with NaN."""
    import xarray as xr

    if not all("time" in ds.dims for ds in datasets):
        return datasets
    grids = [np.asarray(ds["time"].values, dtype=np.float64) for ds in datasets]
    ref = grids[0]
    if all(_same_grid(g, ref) for g in grids):
        return [ds.assign_coords(time=xr.Variable("time", ref, attrs=ds["time"].attrs)) for ds in datasets]
    if requested is None:
        lengths = sorted({g.size for g in grids})
        raise ValueError(
            f"sweep: the points saved different time grids (lengths {lengths}, e.g. {points[0]} ends at "
            f"t={ref[-1]:g}) and the sweep knows no shared requested grid to align them on (a swept "
            f"t_max/n_times/spacing, or a custom func); pass one grid as times=[...] (forwarded to func), "
            f"or sweep the points separately — a sweep does not pad mismatched times with NaN")
    requested = np.asarray(requested, dtype=np.float64)
    out = []
    for ds, g, point in zip(datasets, grids, points):
        # the saved step nearest each requested time (the one save_schedule rounded it to)
        if g.size == 1:
            idx = np.zeros(requested.size, dtype=np.int64)
        else:
            right = np.clip(np.searchsorted(g, requested), 1, g.size - 1)
            idx = np.where(np.abs(g[right] - requested) < np.abs(g[right - 1] - requested), right, right - 1)
        gap = np.abs(g[idx] - requested)
        # a discrete clock saves within half a step of each requested time; its step is at most the
        # smallest spacing of its distinct saved times
        half = 0.5 * (np.min(np.diff(g)) if g.size > 1 else 0.0)
        bad = gap > half * (1 + 1e-9) + 1e-12 * np.maximum(1.0, np.abs(requested))
        if np.any(bad):
            j = int(np.argmax(bad))
            raise ValueError(f"sweep: point {point} has no saved time near the requested t={requested[j]:g} "
                             f"(nearest {g[idx[j]]:g}); its grid does not come from the shared times")
        attrs = dict(ds["time"].attrs)
        reached_attrs = {"long_name": "time really reached (whole steps of this point's clock)",
                         "units": attrs.get("units", "1")}
        new = ds.isel(time=idx).assign_coords(time=xr.Variable("time", requested, attrs=attrs),
                                              time_reached=xr.Variable("time", g[idx], attrs=reached_attrs))
        if "time_" in ds.indexes and _same_grid(np.asarray(ds["time_"].values, dtype=np.float64), g):
            # two-time kernels (DLN DMFT): the second time runs on the same saved grid
            new = new.isel(time_=idx).assign_coords(
                time_=xr.Variable("time_", requested, attrs=dict(ds["time_"].attrs)))
        out.append(new)
    return out


def _warn_padded(datasets: list, names: list[str]):
    """Warn when another indexed dim (e.g. ``seed`` with ``seeds`` swept) differs between points."""
    dims = set.intersection(*(set(ds.indexes) for ds in datasets)) - {"time", *names}
    for dim in sorted(dims):
        first = datasets[0].indexes[dim]
        if any(not ds.indexes[dim].equals(first) for ds in datasets[1:]):
            warnings.warn(f"sweep: the points have different {dim!r} coordinates; the union is kept and "
                          f"entries a point lacks are NaN", RuntimeWarning, stacklevel=3)


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
        failed are missing and listed in ``attrs["sweep_failures"]``.  All points share one ``time``
        axis; where their clocks reached different times, ``time`` is the requested grid and the
        coordinate ``time_reached`` (dims swept..., time) holds each point's real save times (module
        docstring).

    Raises
    ------
    ValueError
        When the points' time grids differ and no shared requested grid is known (pass ``times=``).
    """
    import xarray as xr
    from tqdm.auto import tqdm

    if not callable(func):
        raise ValueError(f"func={func!r} must be callable (e.g. hidyn.simulate)")
    points, names, cartesian = grid_points(grid)
    clash = set(names) & set(fixed)
    if clash:
        raise ValueError(f"sweep: {sorted(clash)} given both in the grid and as fixed arguments")
    requested, inject = _shared_times(func, points, names, fixed)
    if inject:
        # the grid replaces the arguments it was made from (simulate takes times or t_max, not both)
        fixed = {**{k: v for k, v in fixed.items() if k not in _TIME_GRID_ARGS}, "times": requested}
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
    done = sorted(results)
    aligned = _align_times([results[i] for i in done], [points[i] for i in done], requested)
    _warn_padded(aligned, names)
    labelled = [_label(ds, points[i], names) for ds, i in zip(aligned, done)]
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
