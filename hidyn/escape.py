"""Escape from the equator: Monte-Carlo first-passage ensembles beside the d → ∞ prediction.

:func:`escape_time` measures t_{1/2}, the first time |m| = |⟨w, θ*⟩| reaches 1/2 (docs/theory/single_index.md §4),
for an ensemble of online-SGD runs at each dimension d, summarises the ensemble by its median and
quantiles (never by a censored mean, note §4 and P8), and adds the theory prediction of
:func:`hidyn.solvers.ode.single_index.predicted_escape_time` for the same start.

The recipe of note §4 ("What a simulator must do to compare escape times") is followed: the start is
m₀ = +1/√d exactly (default) or a uniformly random w (``start="random"``); |m| is used for every k*
(for odd k* the default start has m₀ > 0); the ensemble stops once a fixed fraction has escaped.
"""
from __future__ import annotations

import math
import numbers
import time as _time
import warnings

import numpy as np

__all__ = ["escape_time", "STARTS"]

STARTS = ("inv_sqrt_d", "random", "spec")
#: median of |N(0, 1)|: a random start has |ρ₀| ≈ |N(0, G/d)|, whose median is this × √(G/d)
_HALF_NORMAL_MEDIAN = 0.6744897501960817


def _dims(d) -> np.ndarray:
    vals = [d] if isinstance(d, numbers.Integral) and not isinstance(d, bool) else list(np.ravel(d))
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or int(v) < 3:
            raise ValueError(f"d={d!r} is invalid: must be an integer ≥ 3 or a sequence of them")
        out.append(int(v))
    if not out or len(set(out)) != len(out):
        raise ValueError(f"d={d!r} is invalid: give one dimension or distinct dimensions")
    return np.array(sorted(out), dtype=np.int64)


def _rho(m, s, q, spec) -> float:
    """ρ = M/√(QR) of note §1 at (m, s, q)."""
    Q = q + spec.spike * s * s
    M = m + spec.spike * spec.cos_angle * s
    return M / math.sqrt(Q * spec.R)


def _quantiles(times: np.ndarray, qs, t_stop: float) -> np.ndarray:
    """Quantiles of right-censored first-passage times (censored runs are ``inf``).

    A quantile is known when it lies below the time the ensemble was observed to; otherwise ``inf``.
    """
    big = 1e300
    vals = np.quantile(np.where(np.isfinite(times), times, big), qs)
    return np.where(vals <= t_stop, vals, np.inf)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y against x (NaN with fewer than two finite points)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def escape_time(model="single_index", *, d, seeds=256, start: str | None = None, level: float = 0.5,
                quantiles=(0.1, 0.25, 0.5, 0.75, 0.9), stop_quantile: float = 0.9, t_max=None,
                backend: str = "reduced", seed=None, precision: str = "float64",
                theory_method: str = "ode", progress=None, **params):
    """Escape times from the equator: per-seed Monte-Carlo first passages and the theory, per d.

    Parameters
    ----------
    model : str or SingleIndexSpec
        Only ``"single_index"`` is supported.
    d : int or sequence of int
        Dimension(s), each ≥ 3.
    seeds : int or sequence of int
        Ensemble size per d (note §4 asks for ≥ 100 runs), or explicit seed indices.
    start : {"inv_sqrt_d", "random", "spec"}, optional
        ``"inv_sqrt_d"`` (default): m₀ = +1/√d exactly with note §1's s₀, q₀ (capped at 1/√R on the
        Σ-geometries); ``"random"``: a uniformly random w (|m₀| half-normal of scale 1/√d);
        ``"spec"``: the ``m0``/``init`` given in ``params`` (implied when either is given).
    level : float
        Only 1/2 is supported (t_{1/2} of note §4; the backends record it on the fly, step by step).
    quantiles : sequence of float
        Ensemble quantiles to report, in (0, 1).
    stop_quantile : float
        Stop an ensemble once this fraction has escaped (censoring above it, note §4), in (0, 1].
    t_max : float, optional
        Longest time simulated (steps/d).  Default: 4× the predicted t_{1/2} (the per-run spread is
        O(1/γ) around it for k* = 2, note §4), at least 10/η, or 50/η when the theory predicts no
        escape.
    backend : {"reduced", "numpy", "numba"}
        ``"reduced"`` (default): the exact reduced chain of note §1 (same law as the full SGD, O(1) per
        step, so ensembles of hundreds of runs are cheap at any d); ``"numpy"``: the full
        d-dimensional SGD; ``"numba"``: the same SGD on the same random streams, faster.
    seed : int, optional
        Entropy of the run (default 0, reproducible).
    precision : {"float64", "float32"}
    theory_method : {"ode", "auto", "formula"}
        Passed to :func:`hidyn.solvers.ode.single_index.predicted_escape_time`.  ``"ode"`` (default):
        first passage of the full ODE of note §2 from ρ₀ — within ~5 % of the measured h₂ medians at
        d ≥ 256, where the leading-order formula of §4 (``"formula"``, ``"auto"`` for k* ≥ 2) is ~20 %
        low because it drops the nonlinear approach to |m| = 1/2; both have the same slope in ln d.
        ``"auto"`` becomes ``"ode"`` on ``plain``, where the near-equator formula does not apply.
    progress : bool or None
        A tqdm bar per d (None: only on a terminal).
    **params
        :class:`~hidyn.models.single_index.SingleIndexSpec` fields (link, activation, loss, noise,
        spike, spike_angle, geometry, lr, batch_size, standardize_target, …).

    Returns
    -------
    xarray.Dataset
        Dims ``d``, ``seed``, ``quantile``.  Variables (times in steps/d):

        * ``escape_time`` (d, seed): first time |m| ≥ 1/2, ``inf`` when censored;
        * ``escape_time_median`` (d), ``escape_time_quantiles`` (d, quantile): ensemble summary
          (``inf`` when the quantile lies above the observed time);
        * ``escaped_fraction`` (d), ``observed_time`` (d): fraction escaped and time simulated;
        * ``escape_time_theory`` (d): predicted t_{1/2} (``inf`` when the ODE does not escape);
        * ``rho0`` (d): the initial correlation ρ₀ used by the theory.

        Attrs: ``k_star``, ``start``, ``backend``, ``theory_method``, ``seed_entropy``, spec fields,
        and with several d the fitted slopes ``median_slope_ln_d`` / ``theory_slope_ln_d`` (of t
        against ln d, the k* = 2 law t ≈ ln d/(2γ)) and ``median_exponent`` / ``theory_exponent``
        (of ln t against ln d, the k* ≥ 3 law t ∝ d^{(k*−2)/2}).

    Raises
    ------
    NotImplementedError
        For a model other than ``"single_index"``.
    ValueError
        Invalid arguments (the message names the parameter and its valid range).

    References
    ----------
    Ben Arous, Gheissari, Jagannath, JMLR 22 (2021), arXiv:2003.10409 (search phase, information
    exponent).
    """
    from tqdm.auto import tqdm

    from hidyn import models, rng
    from hidyn.hermite import spike_gain
    from hidyn.models._base import ModelSpec, check_real
    from hidyn.results import make_dataset, safe_attrs
    from hidyn.solvers.mc import driver
    from hidyn.solvers.mc.single_index_numpy import ESCAPE_LEVEL, SingleIndexNumpyBackend, SingleIndexReducedBackend
    from hidyn.solvers.ode.single_index import predicted_escape_time

    key = model.model if isinstance(model, ModelSpec) else model
    if key != "single_index":
        raise NotImplementedError(f"escape_time is implemented for model='single_index' only (the equator "
                                  f"escape of docs/theory/single_index.md §4), got model={key!r}")
    dims = _dims(d)
    if level != ESCAPE_LEVEL:
        raise ValueError(f"level={level!r} is invalid: only {ESCAPE_LEVEL} (t_1/2 of note §4) is recorded "
                         f"by the backends")
    qs = np.asarray(quantiles, dtype=np.float64).ravel()
    if qs.size == 0 or np.any(~(qs > 0) | ~(qs < 1)):
        raise ValueError(f"quantiles={quantiles!r} is invalid: must be numbers in (0, 1)")
    stop_quantile = check_real("stop_quantile", stop_quantile, 0.0, 1.0, lo_open=True)
    backends = {"reduced": SingleIndexReducedBackend, "numpy": SingleIndexNumpyBackend}
    if backend == "numba":                  # full d-dimensional SGD, same streams as numpy, faster
        from hidyn.solvers.mc.numba_backend import SingleIndexNumbaBackend

        backends["numba"] = SingleIndexNumbaBackend
    if backend not in backends:
        raise ValueError(f"backend={backend!r} is invalid: must be one of 'reduced', 'numpy', 'numba'")
    if t_max is not None:
        t_max = check_real("t_max", t_max, 0.0, lo_open=True)
    given = {k for k in ("m0", "init") if params.get(k) is not None}
    if start is None:
        start = "spec" if given else "inv_sqrt_d"
    if start not in STARTS:
        raise ValueError(f"start={start!r} is invalid: must be one of {', '.join(map(repr, STARTS))}")
    if start != "spec" and given:
        raise ValueError(f"start={start!r} conflicts with {sorted(given)} in the parameters; use "
                         f"start='spec' (or leave start out) to start from them")
    if start == "spec" and not given:
        raise ValueError("start='spec' needs m0 or init among the parameters")
    if isinstance(model, ModelSpec):
        params = {**{k: v for k, v in model.to_dict().items() if k != "d"}, **params}
        for k in ("link", "activation"):
            if k not in params or isinstance(params[k], str) and params[k].startswith("<callable"):
                params[k] = getattr(model, k)
    # the count before the index array: seeds=10**9 is refused before GiBs of seed state exist
    n_seeds = rng.seed_count(seeds)
    driver.check_memory(n_seeds * rng.PER_SEED_BYTES, f"escape_time(seeds={n_seeds})", "use fewer seeds")
    idx = rng.seed_indices(seeds)
    seqs = rng.seed_sequences(seed, idx)

    per_d = []
    theory_errors: list[str] = []
    spec0 = None
    for dim in dims:
        p = dict(params)
        if start == "inv_sqrt_d":
            p["m0"], p["init"] = 1.0 / math.sqrt(dim), None
            if p.get("geometry") in ("sigma_sphere", "wn_sigma"):
                # the m0-only start needs m0² ≤ 1/R there (note §1, feasibility)
                from hidyn.hermite import check_spike

                kappa, c = check_spike(p.get("spike", 0.0), p.get("spike_angle", 0.0))
                p["m0"] = min(p["m0"], 1.0 / math.sqrt(1.0 + kappa * c * c))
        elif start == "random":
            p["m0"], p["init"] = None, None
        spec = models.get("single_index", d=int(dim), **p)
        spec0 = spec0 or spec
        th_kw = dict(link=spec.target, activation=spec.student, loss=spec.loss, spike=spec.spike,
                     spike_angle=spec.spike_angle, geometry=spec.geometry, lr=spec.lr, noise=spec.noise,
                     batch_size=spec.batch_size, standardize_target=spec.standardize_target)
        if start == "random":
            rho0 = _HALF_NORMAL_MEDIAN * math.sqrt(spike_gain(spec.spike, spec.spike_angle) / dim)
        else:
            rho0 = _rho(*spec.start(), spec)
        method = theory_method
        if method == "auto" and spec.geometry == "plain":
            method = "ode"
        try:
            pred = predicted_escape_time(**th_kw, d=int(dim), rho0=rho0, method=method)
        except ValueError as err:
            # e.g. |m| = 1/2 unreachable along Σθ* on a Σ-geometry, or no common Hermite order of g
            # and σ: the Monte-Carlo is still meaningful, the prediction is reported as NaN
            warnings.warn(f"no escape-time prediction at d={dim}: {err}", RuntimeWarning, stacklevel=2)
            theory_errors.append(str(err))
            pred = {"t_half": float("nan"), "k_star": -1, "method": "none"}
        t_pred = pred["t_half"]
        if t_max is None:
            horizon = 4.0 * t_pred if math.isfinite(t_pred) else 50.0 / spec.lr
            horizon = min(horizon, 1e3 / spec.lr)
            horizon = max(horizon, 10.0 / spec.lr)
        else:
            horizon = t_max
        be = backends[backend](spec, precision)
        driver.check_memory(be.memory_bytes(idx.size) + idx.size * rng.PER_SEED_BYTES,
                            f"escape_time(d={dim}, seeds={idx.size})",
                            "use fewer seeds or backend='reduced'")
        state = be.init(seqs)
        total = int(math.ceil(horizon * dim))
        chunk = int(dim)                              # one unit of time per chunk
        need = int(math.ceil(stop_quantile * idx.size))
        bar = tqdm(total=total, desc=f"escape d={dim}", disable=None if progress is None else not progress,
                   unit="step", leave=False)
        t0 = _time.perf_counter()
        done = 0
        try:
            with np.errstate(all="ignore"):
                while done < total and int(np.sum(np.isfinite(be.escape_times(state)))) < need:
                    n = min(chunk, total - done)
                    state = be.advance(state, n)
                    done += n
                    bar.update(n)
        finally:
            bar.close()
        t_obs = done / dim
        times = be.escape_times(state)
        per_d.append({"times": times, "median": _quantiles(times, [0.5], t_obs)[0],
                      "quantiles": _quantiles(times, qs, t_obs), "fraction": float(np.mean(np.isfinite(times))),
                      "observed": t_obs, "theory": t_pred, "rho0": rho0, "k_star": pred["k_star"],
                      "wall": _time.perf_counter() - t0, "method": pred["method"]})

    med = np.array([r["median"] for r in per_d])
    th = np.array([r["theory"] for r in per_d])
    logd = np.log(dims.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = {"median_slope_ln_d": _slope(logd, med), "theory_slope_ln_d": _slope(logd, th),
                  "median_exponent": _slope(logd, np.log(med)), "theory_exponent": _slope(logd, np.log(th))}
    data = {
        "escape_time": (("d", "seed"), np.stack([r["times"] for r in per_d])),
        "escape_time_median": (("d",), med),
        "escape_time_quantiles": (("d", "quantile"), np.stack([r["quantiles"] for r in per_d])),
        "escaped_fraction": (("d",), np.array([r["fraction"] for r in per_d])),
        "observed_time": (("d",), np.array([r["observed"] for r in per_d])),
        "escape_time_theory": (("d",), th),
        "rho0": (("d",), np.array([r["rho0"] for r in per_d])),
    }
    spec_fields = {k: v for k, v in spec0.to_dict().items()
                   if k not in ("d", "m0", "init") and not isinstance(v, (list, dict))}
    attrs = {"method": "monte_carlo_escape", "backend": backend, "precision": precision,
             "theory_method": per_d[0]["method"], "k_star": int(per_d[0]["k_star"]), "start": start,
             "escape_level": ESCAPE_LEVEL, "stop_quantile": stop_quantile, "n_seeds": int(idx.size),
             "seed_entropy": str(rng._entropy(seed)), "config_json": spec0.to_json(),
             "wall_time_s": float(sum(r["wall"] for r in per_d)), **spec_fields,
             **{k: v for k, v in slopes.items() if math.isfinite(v)}}
    if theory_errors:
        attrs["theory_error"] = theory_errors[0]
    ds = make_dataset(data, {"d": dims, "seed": idx, "quantile": qs}, attrs, model="single_index")
    meta = {
        "escape_time": ("first-passage time of |m| to 1/2 (inf: not reached)", "steps / d"),
        "escape_time_median": ("ensemble median of the escape time", "steps / d"),
        "escape_time_quantiles": ("ensemble quantiles of the escape time", "steps / d"),
        "escaped_fraction": ("fraction of runs that escaped", "1"),
        "observed_time": ("time simulated (censoring time)", "steps / d"),
        "escape_time_theory": ("predicted escape time t_1/2 (docs/theory/single_index.md section 4)", "steps / d"),
        "rho0": ("initial correlation rho0 = M/sqrt(QR) used by the theory", "1"),
    }
    for name, (long_name, units) in meta.items():
        ds[name].attrs.update(long_name=long_name, units=units)
    ds["d"].attrs.update(long_name="input dimension", units="1")
    ds.attrs = safe_attrs(dict(ds.attrs))
    return ds
