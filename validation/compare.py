"""Line up a Monte-Carlo result with its d → ∞ theory: mean ± SEM, residual, z-score, pass/fail."""
from __future__ import annotations

import numpy as np
import xarray as xr

from hidyn.validation.tolerance import Tolerance

__all__ = ["Comparison", "compare_datasets", "ROUNDOFF"]

#: relative round-off floor added to every bound (see compare_datasets)
ROUNDOFF = 1e-10


class Comparison:
    """Theory vs Monte-Carlo, variable by variable.

    Attributes
    ----------
    data : xarray.Dataset
        For each compared variable ``X``: ``X_mean``, ``X_sem`` (combined MC and theory standard error),
        ``X_theory``, ``X_residual`` (mean − theory), ``X_z`` (residual / SEM) and ``X_ok``.
    tolerance : Tolerance
    d : int or None
        Dimension used in the finite-size term.
    """

    def __init__(self, data: xr.Dataset, variables, tolerance: Tolerance, d, notes=()):
        self.data = data
        self.variables = tuple(variables)
        self.tolerance = tolerance
        self.d = d
        #: caveats printed under the summary table (e.g. too few seeds for a usable SEM)
        self.notes = tuple(notes)

    def tolerance_for(self, variable: str) -> Tolerance:
        if isinstance(self.tolerance, dict):
            return self.tolerance.get(variable, Tolerance())
        return self.tolerance

    @property
    def passed(self) -> bool:
        """True when every compared point is within the tolerance."""
        return all(bool(self.data[f"{v}_ok"].all()) for v in self.variables)

    def table(self) -> list[dict]:
        rows = []
        for v in self.variables:
            res = np.abs(self.data[f"{v}_residual"].values)
            z = np.abs(self.data[f"{v}_z"].values)
            theory = np.abs(self.data[f"{v}_theory"].values)
            finite = np.isfinite(res)
            worst = int(np.nanargmax(np.where(finite, res, -np.inf))) if finite.any() else 0
            times = np.broadcast_to(self.data["time"].values.reshape(
                (-1,) + (1,) * (res.ndim - 1)), res.shape).ravel()
            rows.append({
                "variable": v,
                "max_abs_residual": float(np.nanmax(res)) if finite.any() else float("nan"),
                # relative to the variable's scale, not pointwise (theory values cross zero)
                "max_rel_residual": float(np.nanmax(res) / max(np.nanmax(theory), 1e-300))
                if finite.any() else float("nan"),
                "max_abs_z": float(np.nanmax(np.where(np.isfinite(z), z, np.nan))) if np.isfinite(z).any()
                else float("nan"),
                "worst_time": float(times[worst]),
                "passed": bool(self.data[f"{v}_ok"].all()),
            })
        return rows

    def summary(self, file=None) -> str:
        """Print (and return) a one-line-per-variable table."""
        def describe(tol):
            return (f"z={tol.z:g}·SEM + {tol.c:g}·d^-{tol.p:g} + {tol.atol:g} + {tol.rtol:g}·|theory|")

        if isinstance(self.tolerance, dict):
            head = f"theory vs Monte-Carlo (d={self.d}; tolerance per variable)"
        else:
            head = f"theory vs Monte-Carlo (d={self.d}, tolerance {describe(self.tolerance)})"
        lines = [head, f"{'variable':<12}{'max|res|':>12}{'res/scale':>10}{'max|z|':>9}{'at t':>10}  pass"]
        for r in self.table():
            line = (f"{r['variable']:<12}{r['max_abs_residual']:>12.3e}{r['max_rel_residual']:>10.2%}"
                    f"{r['max_abs_z']:>9.2f}{r['worst_time']:>10.4g}  {'yes' if r['passed'] else 'NO'}")
            if isinstance(self.tolerance, dict):
                line += f"   ({describe(self.tolerance_for(r['variable']))})"
            lines.append(line)
        lines.append(f"overall: {'PASSED' if self.passed else 'FAILED'}")
        lines.extend(f"warning: {note}" for note in self.notes)
        text = "\n".join(lines)
        print(text, file=file)
        return text

    def assert_ok(self):
        """Raise AssertionError with the summary table when any point is out of tolerance."""
        if not self.passed:
            import io

            buf = io.StringIO()
            raise AssertionError("theory and Monte-Carlo disagree:\n" + self.summary(file=buf))

    def __repr__(self):
        return f"<Comparison of {', '.join(self.variables)}: {'passed' if self.passed else 'FAILED'}>"


def compare_datasets(empirical: xr.Dataset, theory: xr.Dataset, *, variables=None,
                     tolerance: Tolerance | None = None, d=None) -> Comparison:
    """Compare a Monte-Carlo Dataset (dims seed, time, ...) with a theory Dataset (dims time, ...).

    ``tolerance`` is one :class:`Tolerance` for every variable, or a dict variable → Tolerance (variables
    on different scales, e.g. losses and overlaps, may need different finite-size allowances).
    The theory is interpolated (linearly) onto the simulation's times when its time grid differs.
    A theory variable ``X_sem`` (sampled theories such as the DMFT) adds in quadrature to the MC SEM.
    """
    tolerance = tolerance or Tolerance()
    per_var = tolerance if isinstance(tolerance, dict) else {}
    if variables is None:
        variables = [v for v in empirical.data_vars
                     if v in theory.data_vars and not v.endswith("_sem") and "time" in empirical[v].dims
                     and set(theory[v].dims) <= set(empirical[v].dims)]
    else:
        variables = list(variables)
        for v in variables:
            for name, ds in (("simulation", empirical), ("theory", theory)):
                if v not in ds.data_vars:
                    raise ValueError(f"variable {v!r} is not in the {name} result; it has "
                                     f"{', '.join(map(str, ds.data_vars))}")
    if not variables:
        raise ValueError("the simulation and the theory share no variable to compare")
    t_sim = empirical["time"].values
    if theory.sizes.get("time") != t_sim.size or not np.allclose(theory["time"].values, t_sim,
                                                                   rtol=1e-12, atol=1e-12):
        theory = theory.interp(time=t_sim)
    else:
        theory = theory.assign_coords(time=t_sim)
    if "seed" in theory.dims:
        # per-seed theories (e.g. ODEs started from each seed's own initial overlaps): the seed mean of
        # the simulation is compared with the seed mean of the theories
        theory = theory.mean("seed", skipna=False)
    if d is None:
        d = empirical.attrs.get("d")
    out = {}
    n_seeds = empirical.sizes.get("seed", 1)
    notes = []
    if "seed" in empirical.dims:
        from hidyn.checks import few_seeds_warning

        note = few_seeds_warning(n_seeds)
        if note:
            notes.append(note)
    for v in variables:
        emp = empirical[v]
        if "seed" in emp.dims:
            mean = emp.mean("seed", skipna=False)  # a diverged seed must fail, not vanish
            sem = emp.std("seed", ddof=1, skipna=False) / np.sqrt(n_seeds) if n_seeds > 1 else xr.zeros_like(mean)
        else:
            mean = emp
            sem = empirical[f"{v}_sem"] if f"{v}_sem" in empirical else xr.zeros_like(mean)
        th = theory[v]
        if f"{v}_sem" in theory:
            sem = np.sqrt(sem ** 2 + theory[f"{v}_sem"] ** 2)
        resid = mean - th
        # round-off floor: theory values that are exactly 0 in exact arithmetic (t = 0 overlaps) come
        # out of quadrature as ~1e-19; 1e-10 of the variable's scale is far below any statistical error
        floor = ROUNDOFF * float(np.nanmax(np.abs(th.values))) if th.size else 0.0
        tol = per_var.get(v, Tolerance()) if per_var else tolerance
        bound = tol.bound(sem, th, d) + floor
        with np.errstate(divide="ignore", invalid="ignore"):
            # a z-score is meaningless where the SEM is round-off (deterministic points such as t = 0)
            z = (resid / sem).where(sem > floor)
        out[f"{v}_mean"] = mean
        out[f"{v}_sem"] = sem
        out[f"{v}_theory"] = th
        out[f"{v}_residual"] = resid
        out[f"{v}_z"] = z
        # a NaN anywhere (divergence) is a failure, never a silent pass
        out[f"{v}_ok"] = (np.abs(resid) <= bound) & np.isfinite(resid)
    data = xr.Dataset(out)
    tol_desc = {k: t.to_dict() for k, t in per_var.items()} if per_var else tolerance.to_dict()
    data.attrs.update({"tolerance": str(tol_desc), "d": -1 if d is None else int(d),
                       "theory_method": str(theory.attrs.get("method", "")),
                       "backend": str(empirical.attrs.get("backend", ""))})
    data.attrs["n_seeds"] = int(n_seeds)
    return Comparison(data, variables, tolerance, None if d is None else int(d), notes)
