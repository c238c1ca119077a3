"""Public entry points: :func:`simulate`, :func:`theory`, :func:`compare`."""
from __future__ import annotations

import importlib
import importlib.util
import time as _time

import numpy as np

from hidyn import models, rng
from hidyn.checks import check_comparable, check_n_times, check_options, check_run_size, method_options
from hidyn.families import family
from hidyn.models._base import ModelSpec, check_bool, check_int, check_real
from hidyn.results import make_dataset, spec_from_dataset
from hidyn.solvers.mc.driver import can_record_weights

__all__ = ["simulate", "theory", "compare", "make_times"]

PRECISIONS = ("float64", "float32")


def make_times(spec: ModelSpec, *, times=None, t_max=None, n_times: int = 100, spacing: str = "log",
               first: float | None = None) -> np.ndarray:
    """Save times: explicit ``times``, or ``n_times`` points on [0, t_max] (log- or linear-spaced).

    Log spacing puts t = 0 first and ``n_times − 1`` geometric points from ``first`` (one step of a
    discrete algorithm, else t_max·1e-3) to ``t_max``: learning curves span decades.
    """
    if times is not None:
        if t_max is not None:
            raise ValueError("give either times or t_max, not both")
        t = np.asarray(times, dtype=np.float64).ravel()
        if t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(np.diff(t) < 0):
            raise ValueError("times must be a non-empty, sorted array of finite times ≥ 0")
        return t
    t_max = spec.default_t_max if t_max is None else check_real("t_max", t_max, 0.0, lo_open=True)
    n_times = check_int("n_times", n_times, 2)
    check_n_times(n_times)
    if spacing == "linear":
        return np.linspace(0.0, t_max, n_times)
    if spacing != "log":
        raise ValueError(f"spacing={spacing!r} is invalid: must be 'log' or 'linear'")
    if n_times == 2:                   # np.geomspace(first, t_max, 1) would be [first], not [t_max]
        return np.array([0.0, t_max])
    first = min(first or t_max * 1e-3, t_max)
    # geomspace(a, a, n) can come out one ulp non-monotone (a, a(1+ε), a): keep the grid sorted
    grid = np.maximum.accumulate(np.minimum(np.geomspace(first, t_max, n_times - 1), t_max))
    return np.concatenate([[0.0], grid])


def _spec(model, params) -> ModelSpec:
    return models.get(model, **params)


def _backend_class(spec: ModelSpec, backend: str, record_weights: bool = False):
    choices = tuple(spec.backends)
    if backend == "auto":
        # jax if a GPU is visible to JAX, else numba if installed, else the numpy reference; a backend
        # that cannot run this spec (``unsupported_reason``) is skipped.  The machine probes run once
        # per process and are cached on this function; jax is imported only when the model has a jax
        # backend, jax is installed and a GPU plugin is present (importing jax costs ~1 s).
        import os
        import pkgutil

        probe = _backend_class.__dict__.setdefault("_probe", {})

        def gpu_visible() -> bool:
            if "gpu" not in probe:
                probe["gpu"] = False
                platforms = os.environ.get("JAX_PLATFORMS", "").lower()
                plugins = any(m.name.startswith(("jax_cuda", "jax_rocm")) for m in pkgutil.iter_modules())
                if (importlib.util.find_spec("jax") is not None and plugins
                        and (not platforms or "cuda" in platforms or "gpu" in platforms
                             or "rocm" in platforms)):
                    try:
                        import jax

                        probe["gpu"] = any(dev.platform == "gpu" for dev in jax.devices())
                    except Exception:  # a broken plugin or driver: fall back to the CPU backends
                        probe["gpu"] = False
            return probe["gpu"]

        def installed(package: str) -> bool:
            if package not in probe:
                probe[package] = importlib.util.find_spec(package) is not None
            return probe[package]

        def runs(name: str) -> bool:
            module, _, cls_name = spec.backends[name].partition(":")
            cls = getattr(importlib.import_module(module), cls_name)
            if record_weights and not can_record_weights(cls):
                return False
            check = getattr(cls, "unsupported_reason", None)
            return check is None or check(spec) is None

        backend = "numpy"
        if "jax" in choices and installed("jax") and gpu_visible() and runs("jax"):
            backend = "jax"
        elif "numba" in choices and installed("numba") and runs("numba"):
            backend = "numba"
    if backend not in choices:
        raise ValueError(f"backend={backend!r} is not available for model {spec.model!r}; "
                         f"valid: 'auto', {', '.join(map(repr, choices))}")
    module, _, cls = spec.backends[backend].partition(":")
    cls = getattr(importlib.import_module(module), cls)
    if record_weights and not can_record_weights(cls):
        # the numpy reference of every family records its weights
        raise ValueError(f"record_weights=True is invalid with backend={backend!r}: it does not simulate "
                         f"the d-dimensional weights; use backend='numpy' or backend='auto'")
    return backend, cls


def simulate(model="dln", *, d=None, times=None, t_max=None, n_times: int = 100, spacing: str = "log",
             seeds=8, seed=None, backend: str = "auto", precision: str = "float64", progress=None,
             record_weights: bool = False, max_work: float | None = None, **params):
    """Monte-Carlo: run the real finite-d dynamics for several seeds and record order parameters.

    Parameters
    ----------
    model : str or ModelSpec
        Registry key (``"dln"``, …; see :func:`hidyn.models.available`) or a spec.
    d : int, optional
        Dimension (overrides the spec's ``d``).
    times, t_max, n_times, spacing
        Save times: explicit ``times``, or ``n_times`` log- (default) or linear-spaced points on
        [0, t_max] (default: the family's ``default_t_max``).  Discrete algorithms round them to whole
        steps; the recorded ``time`` coordinate holds the times really reached.
    seeds : int or sequence of int
        Number of seeds, or explicit seed indices (seed i always draws the same stream).
    seed : int, optional
        Entropy of the whole run (default 0: reproducible).  Recorded as ``seed_entropy``.
    backend : str
        ``"auto"`` or a backend name of the model (``"numpy"``).
    precision : {"float64", "float32"}
    progress : bool or None
        Progress bar (``None``: only on a terminal).
    record_weights : bool
        Also record the d-dimensional weights at every save time (default False): DLN ``beta``
        (seed, time, i), teacher–student ``W`` (seed, time, k, i) (``v`` is always recorded),
        single-index ``w`` (seed, time, i) in the simulation's frame (e₀ = θ*).  They take
        seeds × n_times × d (× K) × 8 bytes, checked against the machine's memory before the run.
        ``backend="auto"`` picks a backend that can record them.
    max_work : float, optional
        Refuse (ValueError, with the estimate) a run estimated at more multiply-adds than this
        (steps × cost of a step × seeds; default :data:`hidyn.checks.MAX_WORK` ≈ a day of one core).
    **params
        Spec fields (see the family's spec class, e.g. :class:`hidyn.models.DLNSpec`).

    Returns
    -------
    xarray.Dataset
        Variables with dims (``seed``, ``time``, …) as in :mod:`hidyn.results`; attrs record the spec,
        backend, precision, seed entropy, wall time and per-seed divergence times (−1: none).
    """
    from hidyn.solvers.mc import driver

    if d is not None:
        params["d"] = d
    spec = _spec(model, params)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: must be one of {PRECISIONS}")
    record_weights = check_bool("record_weights", record_weights)
    name, cls = _backend_class(spec, backend, record_weights)
    be = cls(spec, precision)
    # the count first: the index array, seed sequences and generators of seeds=10**9 would take GiBs
    n_seeds = rng.seed_count(seeds)
    driver.check_memory(be.memory_bytes(n_seeds) + n_seeds * rng.PER_SEED_BYTES,
                        f"simulate({spec.model!r}, d={getattr(spec, 'd', '?')}, seeds={n_seeds})",
                        "use fewer seeds, a smaller d, or run seeds in batches "
                        "(seeds=[0, 1], then seeds=[2, 3], ...) and xr.concat the results")
    idx = rng.seed_indices(seeds)
    t = make_times(spec, times=times, t_max=t_max, n_times=n_times, spacing=spacing,
                   first=be.time_per_step)
    weight_dims = be.weight_variables if record_weights else {}
    if record_weights:
        sizes = {k: int(np.prod([{"i": spec.d, "k": getattr(spec, "K", 1)}[dim] for dim in dims]))
                 for k, dims in weight_dims.items()}
        n_saved = driver.save_schedule(t, be.time_per_step)[1].size
        nbytes = driver.weights_nbytes(sizes, idx.size, n_saved)
        driver.check_memory(nbytes + be.memory_bytes(idx.size),
                            f"simulate({spec.model!r}, d={spec.d}, seeds={idx.size}, record_weights=True) "
                            f"storing {idx.size} seeds × {n_saved} times × {sum(sizes.values())} weights",
                            "record_weights=True needs seeds × n_times × d × 8 bytes: save fewer times "
                            "(n_times= or times=), use fewer seeds, or record_weights=False")
    check_run_size(spec, be, idx.size, t, max_work=max_work)
    start = _time.perf_counter()
    fam = family(spec.model)
    check = fam.inadmissible(spec)
    actual, data, info = driver.run(be, rng.seed_sequences(seed, idx), t, progress=progress,
                                    desc=f"{spec.model} d={getattr(spec, 'd', '')}",
                                    record_weights=record_weights, inadmissible=check)
    wall = _time.perf_counter() - start
    dims = {k: ("seed", "time") + tuple(extra) for k, extra in {**be.variables, **weight_dims}.items()}
    attrs = {"method": "monte_carlo", "backend": name, "precision": precision,
             **{k: v for k, v in spec.to_dict().items() if not isinstance(v, (list, dict))},
             "config_json": spec.to_json(), "seed_entropy": str(rng._entropy(seed)),
             "n_seeds": int(idx.size), "wall_time_s": wall, "time_units": spec.time_units,
             "record_weights": record_weights, **info}
    # a backend may label its extra dims (e.g. the learning-rate grid of deep_linear): ``coords``
    coords = {"seed": idx, "time": actual, **getattr(be, "coords", {}),
              **({"i": np.arange(spec.d)} if record_weights else {})}
    return make_dataset({k: (dims[k], v) for k, v in data.items()}, coords, attrs, model=spec.model)


def theory(model="dln", *, method: str = "auto", times=None, t_max=None, n_times: int | None = None,
           spacing: str | None = None, init=None, **params):
    """The d → ∞ theory of a model, on the same variables and units as :func:`simulate`.

    Parameters
    ----------
    model : str or ModelSpec
    method : str
        ``"auto"`` picks the most exact method available (closed form > ODE > DMFT); the family
        lists the others (``hidyn.families.family(model).methods``).
    times, t_max, n_times, spacing
        As in :func:`simulate` (default 100 log-spaced times).  The result's ``time`` coordinate is
        exactly ``times`` when given, except for discrete dynamics (the DMFT of GD), which round
        them to whole steps as :func:`simulate` does.  A method on its own grid (the DMFT) returns
        every grid point up to ``t_max`` when none of ``times``, ``n_times``, ``spacing`` is given.
        Limit methods whose times are fixed by the theory (t = ∞, jump times) refuse ``times`` and
        ``t_max``.
    init : xarray.Dataset or dict, optional
        Families whose theory starts from measured order parameters accept a simulation result or a
        dict of initial overlaps (see the family's docs).  Its spec fields become defaults.
    **params
        Spec fields, plus method options.

    Returns
    -------
    xarray.Dataset
        Variables with dims (``time``, …) and the same names and units as :func:`simulate`; attrs record
        the spec, the method and its solver information.  Provenance attrs say what the result is:
        ``limit = "d->inf"`` for a high-dimensional limit (no ``d`` attr, and no ``d`` in
        ``config_json``), ``limit = "explicit instance"`` with ``n_rows``/``n_features`` for a method run
        on a given design (only the spec fields it uses are recorded).
    """
    import json

    import xarray as xr

    sim = None
    if isinstance(init, xr.Dataset):
        sim = init
        base = spec_from_dataset(init)
        fields = set(base.field_names())
        spec = base.replace(**{k: v for k, v in params.items() if k in fields})
        options = {k: v for k, v in params.items() if k not in fields}
        if times is None and t_max is None:
            times = init["time"].values
    else:
        if init is not None:
            params["init"] = init  # a spec field (DLN: init name; two_layer: initial overlaps)
        cls = models.spec_class(model) if isinstance(model, str) else type(model)
        fields = set(cls.field_names())
        spec = _spec(model, {k: v for k, v in params.items() if k in fields})
        options = {k: v for k, v in params.items() if k not in fields}
    fam = family(spec.model)
    chosen = fam.auto_method(spec) if method == "auto" else method
    if chosen not in fam.methods:
        avail = ", ".join(map(repr, fam.methods))
        if method == "auto":
            raise NotImplementedError(f"no theory method is implemented yet for {spec.model!r} with "
                                      f"these parameters (auto chose {chosen!r}); available: {avail}")
        raise ValueError(f"method={method!r} is not a theory method of {spec.model!r}; valid: 'auto', {avail}")
    known, open_ended = method_options(fam.methods[chosen])
    if not open_ended:
        check_options(f"theory({spec.model!r}, method={chosen!r})", set(options) - known - {"init"},
                      set(fields) | known | {"method", "times", "t_max", "n_times", "spacing", "init"})
    if sim is not None:
        if not fam.theory_needs_init:
            raise ValueError(f"the {spec.model!r} theory does not start from a simulation; pass its "
                             f"parameters instead of init=<Dataset>")
        options["init"] = sim
    own_times = fam.own_times.get(chosen)
    if own_times is not None and ((times is not None and sim is None) or t_max is not None):
        raise ValueError(f"method={chosen!r} returns {own_times}: it takes no times or t_max")
    default_grid = fam.default_times.get(chosen)
    if default_grid is not None and times is None and n_times is None and spacing is None:
        # a solver with its own time grid (the DMFT's steps) returns all of it by default
        t = default_grid(spec, spec.default_t_max if t_max is None else
                         check_real("t_max", t_max, 0.0, lo_open=True))
    else:
        t = make_times(spec, times=times, t_max=t_max, n_times=100 if n_times is None else n_times,
                       spacing="log" if spacing is None else spacing)
    start = _time.perf_counter()
    data_vars, extra = fam.methods[chosen](spec, t, **options)
    wall = _time.perf_counter() - start
    t_out = extra.pop("time", t)
    coords = {"time": t_out, **extra.pop("coords", {})}
    # provenance (issue #11): a d → ∞ result records no dimension; an explicit-instance result records
    # the instance's shape and only the spec fields it used, never spec defaults it ignored
    limit = extra.pop("limit", "d->inf")
    used = extra.pop("spec_fields", None)
    fields = spec.to_dict()
    if used is not None:
        fields = {k: v for k, v in fields.items() if k in used}
    elif limit == "d->inf":
        fields = {k: v for k, v in fields.items() if k not in fam.finite_d_fields}
    attrs = {"method": chosen, "limit": limit,
             **{k: v for k, v in fields.items() if not isinstance(v, (list, dict))},
             "config_json": json.dumps({"model": spec.model, **fields}, sort_keys=True),
             "wall_time_s": wall, "time_units": spec.time_units, **extra}
    if extra.get("time_units"):
        attrs["time_units"] = extra["time_units"]
    return make_dataset(data_vars, coords, attrs, model=spec.model)


def compare(empirical, theory_ds=None, /, *, variables=None, tolerance=None, method: str = "auto",
            same_spec: bool = True):
    """Compare a Monte-Carlo result with its d → ∞ theory.

    Parameters
    ----------
    empirical : xarray.Dataset
        Output of :func:`simulate` (dims ``seed``, ``time``).
    theory_ds : xarray.Dataset, optional
        Output of :func:`theory`.  When omitted it is computed from the simulation's recorded spec at
        the simulation's times (``method`` picks the theory).
    variables : list of str, optional
        Default: every variable the two share.
    tolerance : Tolerance, optional
        Default: the family's default for this spec (``hidyn.families.family(model).default_tolerance``).
    same_spec : bool
        Refuse (ValueError) a theory whose spec differs from the simulation's in a field other than
        those that legitimately differ (``hidyn.checks.COMPARE_FREE_FIELDS``: d, ...).  ``False``
        compares with a deliberately different theory (e.g. to show a test has power).  Swapped
        arguments, different models and a theory that does not cover the simulation's times are
        refused either way; fewer than 4 seeds give a warning (the SEM is then no error bar).

    Returns
    -------
    Comparison
        ``.data``, ``.passed``, ``.summary()``, ``.assert_ok()``.
    """
    from hidyn.validation.compare import compare_datasets

    # refuse swapped arguments, different models or specs, and a theory shorter than the run
    check_comparable(empirical, theory_ds, same_spec=same_spec)
    spec = spec_from_dataset(empirical)
    fam = family(spec.model)
    if theory_ds is None:
        theory_ds = theory(fam.theory_spec_for(spec), method=method, times=empirical["time"].values,
                           **({"init": empirical} if fam.theory_needs_init else {}))
    if variables is None:
        wanted = fam.default_variables(spec)  # None: every variable the two share
        if wanted is not None:
            variables = [v for v in wanted if v in theory_ds.data_vars]
    if tolerance is None:
        tolerance = fam.default_tolerance(spec, empirical)
    return compare_datasets(empirical, theory_ds, variables=variables, tolerance=tolerance,
                            d=getattr(spec, "d", None))
