"""Plots for papers: theory lines over Monte-Carlo mean ± SEM bands.

Every function returns the Axes, never calls ``plt.show()`` and never changes global matplotlib
settings; labels come from the variables' ``long_name`` and ``units``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["learning_curves", "sweep_curves", "phase_diagram", "finite_size_scaling"]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
    return ax


def _label(var) -> str:
    name = var.attrs.get("long_name", var.name)
    units = var.attrs.get("units", "")
    return name if units in ("", "1") else f"{name} [{units}]"


def _positive(values, log: bool):
    return np.where(values > 0, values, np.nan) if log else values


def learning_curves(ds, theory=None, *, variables=("train_loss", "test_loss"), ax=None, logx=True,
                    logy=True, label=None, colors=None, band=True, short_labels=True):
    """Learning curves: Monte-Carlo mean ± SEM over seeds (markers and band), theory as lines.

    Parameters
    ----------
    ds : xarray.Dataset
        A :func:`hidyn.simulate` result (dims ``seed``, ``time``) or a theory result (dim ``time``).
    theory : xarray.Dataset, optional
        A :func:`hidyn.theory` result drawn as lines over ``ds``.
    variables : sequence of str
        Variables with dims (``[seed,] time``) to draw; missing ones are skipped.
    ax : matplotlib Axes, optional
    logx, logy : bool
        Log axes (t = 0 and non-positive values are dropped on a log axis).
    label : str, optional
        Prefix of the legend entries (e.g. the swept value).
    colors : sequence, optional
        One colour per variable.
    band : bool
        Draw the ± 1 SEM band.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    variables = [v for v in variables if v in ds.data_vars or (theory is not None and v in theory.data_vars)]
    if not variables:
        raise ValueError("none of the requested variables is in the dataset")
    prefix = f"{label}: " if label else ""
    for i, name in enumerate(variables):
        color = colors[i] if colors is not None else f"C{i}"
        legend = name if short_labels else _label(ds[name] if name in ds else theory[name])
        if name in ds.data_vars:
            var = ds[name]
            t = ds["time"].values
            keep = t > 0 if logx else np.ones_like(t, dtype=bool)
            if "seed" in var.dims:
                n = var.sizes["seed"]
                mean = var.mean("seed", skipna=False).values
                sem = (var.std("seed", ddof=1, skipna=False).values / np.sqrt(n)) if n > 1 else np.zeros_like(mean)
                ax.plot(t[keep], _positive(mean, logy)[keep], "o", ms=3, color=color,
                        label=f"{prefix}{legend} (MC, {n} seeds)")
                if band and n > 1:
                    lo = _positive(mean - sem, logy)
                    ax.fill_between(t[keep], lo[keep], (mean + sem)[keep], color=color, alpha=0.25, lw=0)
            else:
                ax.plot(t[keep], _positive(var.values, logy)[keep], "-", color=color,
                        label=f"{prefix}{legend} ({ds.attrs.get('method', 'theory')})")
        if theory is not None and name in theory.data_vars:
            t = theory["time"].values
            keep = t > 0 if logx else np.ones_like(t, dtype=bool)
            ax.plot(t[keep], _positive(theory[name].values, logy)[keep], "-", color=color, lw=1.5,
                    label=f"{prefix}{legend} (theory: {theory.attrs.get('method', '')})")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    tvar = ds["time"]
    ax.set_xlabel(f"time t [{tvar.attrs.get('units', '')}]" if tvar.attrs.get("units") else "time t")
    first = ds[variables[0]] if variables[0] in ds else theory[variables[0]]
    if len(variables) == 1:
        ax.set_ylabel(variables[0] if short_labels else _label(first))
    else:
        ax.set_ylabel("loss")
    ax.legend(fontsize=7, frameon=False)
    return ax


def sweep_curves(ds, dim: str, *, variable: str = "test_loss", theory=None, ax=None, cmap="viridis",
                 logx=True, logy=True):
    """Learning curves for every value of a swept parameter ``dim``: MC mean ± SEM and theory lines.

    ``ds`` (and ``theory``) are :func:`hidyn.sweep` results with ``dim`` as a dimension.
    """
    import matplotlib as mpl

    ax = _axes(ax)
    values = ds[dim].values
    colors = mpl.colormaps[cmap](np.linspace(0.05, 0.9, len(values)))
    for c, val in zip(colors, values):
        sub = ds.sel({dim: val})
        th = theory.sel({dim: val}) if theory is not None and dim in theory.dims else None
        learning_curves(sub, theory=th, variables=(variable,), ax=ax, logx=logx, logy=logy,
                        label=f"{dim}={val:g}" if isinstance(val, (int, float, np.number)) else f"{dim}={val}",
                        colors=[c])
    return ax


def phase_diagram(da, x: str, y: str, *, ax=None, log_color=True, cmap="magma", colorbar=True):
    """Heat map of a scalar over a 2-parameter sweep (e.g. final test error over (lr, ratio)).

    ``da`` is a DataArray with dims ``x`` and ``y`` (reduce time/seed first, e.g.
    ``ds.test_loss.isel(time=-1).mean("seed")``).
    """
    import matplotlib.colors as mcolors

    ax = _axes(ax)
    da = da.transpose(y, x)
    norm = mcolors.LogNorm() if log_color and np.nanmin(da.values) > 0 else None
    mesh = ax.pcolormesh(da[x].values, da[y].values, da.values, shading="nearest", cmap=cmap, norm=norm)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label=_label(da))
    return ax


def finite_size_scaling(study, *, ax=None, reference_slope: float = -0.5):
    """Log–log plot of the theory–MC distance against d with its fitted slope and a d^(−1/2) guide.

    ``study`` is a :func:`hidyn.validation.scaling.finite_size_study` Dataset.
    """
    ax = _axes(ax)
    d = study["d"].values.astype(float)
    for i, v in enumerate(study["variable"].values):
        dist = study["distance"].sel(variable=v).values
        slope = float(study["slope"].sel(variable=v))
        se = float(study["slope_se"].sel(variable=v))
        ax.plot(d, dist, "o-", color=f"C{i}", label=f"{v}: slope {slope:.2f} ± {se:.2f}")
        guide = dist[0] * (d / d[0]) ** reference_slope
        ax.plot(d, guide, ":", color=f"C{i}", lw=1)
    import matplotlib.ticker as mticker

    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="RMS |MC − theory| (single runs)")
    ax.set_xticks(d)
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda x, _pos: f"{x:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_title(f"{study.attrs.get('model', '')}: dotted = d^{reference_slope:g}", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return ax
