"""The result schema shared by theory and Monte-Carlo.

Every hidyn result is an :class:`xarray.Dataset` with

* dims ``time`` (the family's natural time unit), ``seed`` (Monte-Carlo only), ``k``/``k_`` (student
  units), ``m``/``m_`` (teacher units), ``i`` (input coordinate of recorded weights, 0..d−1),
  ``grid_time``/``grid_time_`` (a solver's own step grid, e.g. the DMFT's two-time kernels),
  ``time_`` (second time of two-time kernels) and swept parameters as coordinates;
* data variables named as in :data:`VARIABLES`, each with ``long_name`` and ``units``;
* units: the ``time`` coordinate carries the family's clock (``spec.time_units``: ``"lr * steps"``
  for DLN GD/SGD, ``"gradient-flow time"`` for DLN gradient flow, ``"steps / d"`` for online SGD
  of the teacher–student and single-index families).  Losses, order parameters and weights are
  dimensionless — the inputs, labels and weights of every family are pure numbers — so their
  ``units`` is :data:`DIMENSIONLESS` (``"1"``, the CF/UDUNITS spelling), deliberately;
* netCDF-safe attrs only (str, int, float, 1-D numeric lists): ``hidyn_version``, ``model``,
  ``method``, every spec field that is not None, ``config_json`` (the full spec, the source of truth for
  reconstructing it), and for Monte-Carlo ``backend``, ``precision`` and ``seed_entropy``.  Theory
  results say what they are: ``limit = "d->inf"`` without the finite-d fields (``d``, …) in attrs or
  ``config_json``, or ``limit = "explicit instance"`` with ``n_rows``, ``n_features`` and only the spec
  fields the method used.
"""
from __future__ import annotations

import json
import numbers

import numpy as np
import xarray as xr

from hidyn._version import __version__

__all__ = ["VARIABLES", "DIMS", "DIMENSIONLESS", "variable_attrs", "safe_attrs", "make_dataset", "validate_dataset",
           "spec_from_dataset", "SchemaError"]

#: units of a dimensionless quantity (CF conventions / UDUNITS): losses, overlaps, weights
DIMENSIONLESS = "1"

#: (long_name, units) per variable; ``FAMILY_VARIABLES`` refines the meaning per family
VARIABLES: dict[str, tuple[str, str]] = {
    "train_loss": ("training loss", "1"),
    "test_loss": ("test (generalisation) error", "1"),
    "overlap": ("teacher overlap beta.beta*/d", "1"),
    "norm1": ("l1 norm |beta|_1/d", "1"),
    "norm2": ("squared norm |beta|^2/d", "1"),
    "tpr": ("support true-positive rate P(|beta_i|>0.5 | beta*_i!=0)", "1"),
    "fpr": ("support false-positive rate P(|beta_i|>0.5 | beta*_i=0)", "1"),
    "beta": ("network weights beta_i", "1"),
    "W": ("student first-layer weights W_ki", "1"),
    "w": ("student weights w_i", "1"),
    "support_size": ("number of nonzero coordinates of beta", "1"),
    "C_delta": ("DMFT correlation E[dbeta(t) dbeta(t')]", "1"),
    "R_beta": ("DMFT response E[d beta(t)/d h(t')]", "1"),
    "Q": ("student-student overlap W_i.W_k/d", "1"),
    "R": ("student-teacher overlap W_i.B_n/d", "1"),
    "T": ("teacher-teacher overlap B_n.B_m/d", "1"),
    "v": ("student second-layer weights", "1"),
    "A": ("teacher second-layer weights", "1"),
    "m": ("teacher overlap <w, theta*>", "1"),
    "m_spike": ("spike overlap <w, u>", "1"),
    "q": ("squared norm |w|^2", "1"),
    "cosine": ("cosine similarity m/sqrt(q)", "1"),
    "objective": ("population training objective", "1"),
    "samples_seen": ("number of samples seen (steps * batch size)", "1"),
    "mode_error": ("per-mode squared error (w_k - w*_k)^2 in the eigenbasis of Sigma", "1"),
    # alignment: one name, its meaning per family in FAMILY_VARIABLES
    "alignment": ("alignment of the learned solution with the teacher (see the family)", "1"),
    "weight_change": ("relative weight change |W_l(t) - W_l(0)|_2 / Bai-Yin limit of |W_l(0)|_2", "1"),
    "end_to_end": ("end-to-end linear map w_eff (f(x) = w_eff . x)", "1"),
    "feature_kernel": ("feature kernel H_l(t,t) = A_l^T A_l / width on inputs x/sqrt(d)", "1"),
    "gradient_kernel": ("gradient kernel G_l(t,t) = |width * g_l|^2 / width", "1"),
    "train_output": ("network output f(x_mu) on the training inputs", "1"),
    "feature_kernel_2t": ("two-time feature kernel H_l(t,t') = A_l(t)^T A_l(t') / width", "1"),
    "gradient_kernel_2t": ("two-time gradient kernel G_l(t,t') = (width g_l(t)).(width g_l(t')) / width", "1"),
    "optimal_lr": ("loss-minimising learning rate", "1"),
    "diverged_at": ("GD step at which the run diverged (-1: never)", "steps"),
    # matrix sensing (docs/theory/matrix_sensing.md §1)
    "eigenvalues": ("top eigenvalues of P = XX^T (FG^T: singular values), decreasing", "1"),
    "jump_times": ("alpha -> 0 jump (midpoint) time of each signal direction", "eta * steps"),
    "spurious_eigenvalues": ("spurious (k > r) eigenvalues of P, late-time law", "1"),
}

FAMILY_VARIABLES: dict[str, dict[str, tuple[str, str]]] = {
    "dln": {
        "train_loss": ("training error (1/n)|y - X beta|^2 (no 1/2, noise included)", "1"),
        "test_loss": ("test error |beta - beta*|^2/d + sigma^2 (no 1/2, noise included)", "1"),
    },
    "two_layer": {
        "test_loss": ("generalisation error eps_g = E[(yhat - y_clean)^2]/2 (noise-free)", "1"),
        "train_loss": ("expected online loss eps_g + sigma^2/2", "1"),
    },
    "single_index": {
        "test_loss": ("test error E[(g(tau nu) - sigma(lambda))^2]/2 (noise-free)", "1"),
    },
    "deep_linear": {
        "train_loss": ("training loss (1/2P) sum_mu (f(x_mu) - y_mu)^2 (noise included)", "1"),
        "test_loss": ("test error |w_eff - w*|^2/2 = E(f(x) - w*.x)^2/2 (noise-free)", "1"),
        "alignment": ("cosine between the learned end-to-end map and the teacher w*", "1"),
    },
    "matrix_sensing": {
        "test_loss": ("test error |P - M*|_F^2 (no 1/4, noise-free)", "1"),
        "train_loss": ("training error (1/m) sum_i (<A_i, P> - y_i)^2 (no 1/4, noise included; "
                       "population: |P - M*|_F^2 + sigma^2)", "1"),
        "alignment": ("alignment |U^T v_j|^2 of the j-th top eigenvector of P with the range of M*", "1"),
    },
    "linear": {
        "test_loss": ("test error E(y - <w, x>)^2 = sum_k lambda_k (w_k - w*_k)^2 + sigma^2 (no 1/2, noise "
                      "included)", "1"),
        "train_loss": ("training error (1/n)|y - X w|^2 (no 1/2)", "1"),
    },
}

DIMS = ("time", "seed", "k", "k_", "m", "m_", "time_", "d", "quantile", "i", "grid_time", "grid_time_")
DIMS += ("lr", "width", "layer", "hidden", "input", "input_", "sample")  # deep_linear
DIMS += ("rank_index", "signal_index", "spurious_index")  # matrix sensing
DIMS += ("mode",)  # linear


def variable_attrs(name: str, model: str | None = None) -> dict:
    """``long_name`` and ``units`` of a variable (``<name>_sem`` is its standard error)."""
    base, sem = (name[:-4], True) if name.endswith("_sem") else (name, False)
    long_name, units = FAMILY_VARIABLES.get(model or "", {}).get(base) or VARIABLES.get(base, (base, "1"))
    if sem:
        long_name = f"standard error of the mean of {long_name}"
    return {"long_name": long_name, "units": units}


def safe_attrs(attrs: dict) -> dict:
    """Convert attrs to netCDF-safe types: bools → 0/1, None dropped, dicts → JSON strings."""
    out = {}
    for key, val in attrs.items():
        if val is None:
            continue
        if isinstance(val, (bool, np.bool_)):
            out[key] = int(val)
        elif isinstance(val, numbers.Integral):
            out[key] = int(val)
        elif isinstance(val, numbers.Real):
            out[key] = float(val)
        elif isinstance(val, str):
            out[key] = val
        elif isinstance(val, dict):
            out[key] = json.dumps(val, sort_keys=True, default=str)
        elif isinstance(val, (list, tuple, np.ndarray)):
            arr = np.asarray(val)
            if arr.ndim == 1 and arr.size and arr.dtype.kind in "iufb":
                out[key] = arr.astype(np.float64 if arr.dtype.kind == "f" else np.int64)
            else:
                out[key] = json.dumps(np.asarray(val, dtype=object).tolist(), default=str)
        else:
            out[key] = str(val)
    return out


def make_dataset(data_vars: dict, coords: dict, attrs: dict, *, model: str) -> xr.Dataset:
    """Build a schema-conforming Dataset.

    Parameters
    ----------
    data_vars : dict name -> (dims, array)
    coords : dict name -> array or (dims, array)
    attrs : dict
        Converted with :func:`safe_attrs`; ``hidyn_version`` and ``model`` are added.  ``time_units``
        (popped) becomes the ``units`` of the ``time`` and ``grid_time`` coordinates.
    model : str
        Family key, used for the per-family meaning of loss names.
    """
    ds = xr.Dataset({name: xr.Variable(dims, np.asarray(val), attrs=variable_attrs(name, model))
                     for name, (dims, val) in data_vars.items()}, coords=coords)
    # the family's clock (spec.time_units); a hand-made dataset without one says so rather than claim
    # the time is dimensionless
    time_units = attrs.pop("time_units", None) or "unspecified (no time_units given)"
    if "time" in ds.coords:
        ds["time"].attrs.update(long_name="time", units=time_units)
    for name in ("grid_time", "grid_time_"):
        if name in ds.coords:
            ds[name].attrs.update(long_name="time on the solver's step grid", units=time_units)
    if "i" in ds.coords:
        ds["i"].attrs.update(long_name="input coordinate index", units=DIMENSIONLESS)
    if "seed" in ds.coords:
        ds["seed"].attrs.update(long_name="seed index")
    ds.attrs = safe_attrs({"hidyn_version": __version__, "model": model, **attrs})
    return ds


class SchemaError(ValueError):
    """A Dataset that does not follow hidyn's result schema."""


def validate_dataset(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` follows the schema; return it unchanged or raise :class:`SchemaError`."""
    problems = []
    for key in ("hidyn_version", "model", "method"):
        if key not in ds.attrs:
            problems.append(f"missing attr {key!r}")
    # summaries (e.g. escape-time ensembles, dims d × seed) have no time axis; learning curves do
    if "time" in ds.dims and ds.sizes["time"] > 1 and np.any(np.diff(ds["time"].values) < 0):
        problems.append("coordinate 'time' is not non-decreasing")
    if "time" in ds.coords and "since" in str(ds["time"].attrs.get("units", "")):
        problems.append("time units must not contain 'since' (they would be decoded as dates)")
    for name, var in ds.data_vars.items():
        for key in ("long_name", "units"):
            if key not in var.attrs:
                problems.append(f"variable {name!r} lacks attr {key!r}")
    for key, val in ds.attrs.items():
        ok = isinstance(val, (str, int, float, np.integer, np.floating)) or (
            isinstance(val, np.ndarray) and val.ndim == 1 and val.dtype.kind in "iuf")
        if not ok or isinstance(val, bool):
            problems.append(f"attr {key!r} has a type netCDF cannot store ({type(val).__name__})")
    if problems:
        raise SchemaError("not a valid hidyn result: " + "; ".join(problems))
    return ds


def spec_from_dataset(ds: xr.Dataset):
    """Rebuild the model spec recorded in a result's ``config_json`` attr."""
    from hidyn import models

    if "config_json" not in ds.attrs:
        raise SchemaError("the dataset has no 'config_json' attr: it was not produced by hidyn")
    cfg = json.loads(ds.attrs["config_json"])
    model = cfg.pop("model")
    return models.get(model, **cfg)
