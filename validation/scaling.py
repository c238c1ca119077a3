"""Finite-size scaling: how fast finite-d Monte-Carlo approaches the d → ∞ theory.

Mean-field / ODE / DMFT limits predict that single runs deviate from the theory by O(d^(−1/2)).
:func:`single_run_distance` measures that deviation, :func:`fit_power_law` fits its slope in log d,
and :func:`finite_size_study` runs a family over several d and returns both as a Dataset that
:func:`hidyn.plot.finite_size_scaling` draws.
"""
from __future__ import annotations

import numpy as np

__all__ = ["single_run_distance", "fit_power_law", "finite_size_study"]


def single_run_distance(sim, theory, variable: str, *, skip_initial: bool = True) -> float:
    """Root-mean-square deviation of single runs from the theory over seeds, times (and extra dims).

    ``theory`` may carry a ``seed`` dim (per-seed theories) or not; it is interpolated onto the
    simulation's times.  The first save time is skipped when ``skip_initial`` (theories started from the
    simulation's own t = 0 values agree there exactly, which would dilute the statistic).
    """
    th = theory[variable]
    if th.sizes["time"] != sim.sizes["time"] or not np.allclose(th["time"], sim["time"]):
        th = th.interp(time=sim["time"].values)
    dev = (sim[variable] - th.assign_coords(time=sim["time"].values)).values
    if skip_initial:
        dev = dev[:, 1:]
    return float(np.sqrt(np.nanmean(dev ** 2)))


def fit_power_law(dims, values) -> dict:
    """Least-squares fit of log(values) = intercept + slope·log(d), with the slope's standard error."""
    x = np.log(np.asarray(dims, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    if x.size < 2:
        raise ValueError("need at least two dimensions to fit a slope")
    A = np.vstack([x, np.ones_like(x)]).T
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = max(x.size - 2, 1)
    sigma2 = float(res[0]) / dof if res.size else 0.0
    cov = sigma2 * np.linalg.inv(A.T @ A)
    return {"slope": float(coef[0]), "intercept": float(coef[1]), "slope_se": float(np.sqrt(cov[0, 0]))}


def finite_size_study(model: str, dims, *, variables, seeds: int = 8, theory_options=None, progress=False,
                      **params):
    """Simulate ``model`` at each d, compare single runs with the theory, fit the decay.

    The theory is computed once from the spec (``theory_options`` are passed to :func:`hidyn.theory`)
    unless the family starts its theory from the simulation (two_layer, single_index), in which case it
    is computed per d from the simulation's own initial order parameters.

    Returns
    -------
    xarray.Dataset
        ``distance`` (variable, d) and the fitted ``slope``, ``slope_se`` (variable).
    """
    import xarray as xr

    import hidyn
    from hidyn.families import family

    theory_options = dict(theory_options or {})
    dist = np.zeros((len(variables), len(dims)))
    shared = None
    for j, d in enumerate(dims):
        sim = hidyn.simulate(model, d=int(d), seeds=seeds, progress=progress, **params)
        if family(model).theory_needs_init:
            th = hidyn.theory(model, init=sim, **theory_options)
        else:
            if shared is None:
                spec = hidyn.results.spec_from_dataset(sim)
                shared = hidyn.theory(spec, times=sim["time"].values, **theory_options)
            th = shared
        for i, v in enumerate(variables):
            dist[i, j] = single_run_distance(sim, th, v)
    fits = [fit_power_law(dims, dist[i]) for i in range(len(variables))]
    return xr.Dataset(
        {"distance": (("variable", "d"), dist, {"long_name": "RMS deviation of single runs from theory",
                                               "units": "1"}),
         "slope": (("variable",), [f["slope"] for f in fits], {"long_name": "fitted slope in log d",
                                                              "units": "1"}),
         "slope_se": (("variable",), [f["slope_se"] for f in fits], {"long_name": "standard error of slope",
                                                                    "units": "1"})},
        coords={"variable": list(variables), "d": np.asarray(dims)},
        attrs={"model": model, "seeds": seeds})
