"""Learning-rate transfer across widths: loss after k steps vs η per width, its argmin, and the n = ∞
theory (deep_linear.md §5; Hayou, arXiv:2511.01734)."""
from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["lr_transfer", "parabolic_argmin"]


def parabolic_argmin(lrs, loss):
    """Minimiser of ``loss`` over the grid ``lrs``, refined by a parabola in ln η.

    Parameters
    ----------
    lrs : ndarray (R,)
        Increasing learning rates.
    loss : ndarray (..., R)
        Loss per learning rate; NaN (a diverged run) is never a minimum.

    Returns
    -------
    argmin : ndarray (...)
        The vertex of the parabola through the grid minimum and its two neighbours (in ln η, clipped to
        the neighbours' interval), or the grid point itself when the minimum sits at an edge of the grid
        or next to a diverged run; NaN when every run diverged.
    at_edge : ndarray (...) of bool
        True where the grid minimum is the first or last finite point of the grid.
    """
    x = np.log(np.asarray(lrs, dtype=np.float64))
    loss = np.asarray(loss, dtype=np.float64)
    flat = loss.reshape(-1, loss.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    edge = np.zeros(flat.shape[0], dtype=bool)
    for i, row in enumerate(flat):
        finite = np.isfinite(row)
        if not finite.any():
            continue
        j = int(np.nanargmin(np.where(finite, row, np.nan)))
        if j == 0 or j == row.size - 1 or not (finite[j - 1] and finite[j + 1]):
            out[i] = x[j]
            edge[i] = j == 0 or j == row.size - 1 or not (finite[j - 1] and finite[j + 1])
            continue
        (x0, x1, x2), (y0, y1, y2) = x[j - 1:j + 2], row[j - 1:j + 2]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / denom
        out[i] = x1 if a <= 0 else float(np.clip(-b / (2 * a), x0, x2))
    return np.exp(out).reshape(loss.shape[:-1]), edge.reshape(loss.shape[:-1])


def _theory_curve(spec, steps: int, variable: str):
    """(loss at ``steps`` per lr of the spec's grid, grid argmin, refined argmin η*_∞, method) of the
    n = ∞ theory; NaN for SP (its fixed-η limit diverges, deep_linear.md §3).  The grid argmin uses the
    same parabola estimator as the Monte-Carlo (like for like); the refined one minimises the theory
    loss over η between the grid neighbours of the minimum (scipy's bounded Brent search, ln η to 1e-4)."""
    import warnings

    from hidyn import api

    if spec.regime is None:
        return np.full(spec.lrs.size, np.nan), float("nan"), float("nan"), "none"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # diverged lrs are expected in a sweep
        th = api.theory(spec, times=[0.0, float(steps)])
    curve = th[variable].isel(time=-1).values
    if spec.regime == "sp":
        return curve, float("nan"), float("nan"), th.attrs["method"]
    from scipy.optimize import minimize_scalar

    eta_grid, _ = parabolic_argmin(spec.lrs, curve)
    if not math.isfinite(float(eta_grid)):
        return curve, float("nan"), float("nan"), th.attrs["method"]
    j = int(np.nanargmin(curve))
    lo = math.log(spec.lrs[max(j - 1, 0)])
    hi = math.log(spec.lrs[min(j + 1, spec.lrs.size - 1)])

    def at(log_eta):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            val = float(api.theory(spec.replace(lr=math.exp(log_eta)), times=[0.0, float(steps)])[variable]
                        .isel(time=-1).values[0])
        return val if math.isfinite(val) else 1e300

    res = minimize_scalar(at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return curve, float(eta_grid), float(math.exp(res.x)), th.attrs["method"]


def lr_transfer(model="deep_linear", *, widths, lrs, steps: int = 10, seeds=8, variable: str = "train_loss",
                theory: bool = True, backend: str = "auto", precision: str = "float64", progress=None,
                **params):
    """Loss after ``steps`` GD steps as a function of η for each width, its argmin η*(n) per seed, and
    the n = ∞ theory curve (deep_linear.md §5).

    Parameters
    ----------
    model : str
        ``"deep_linear"`` (the only family with a width).
    widths : sequence of int
        Widths n; one batched Monte-Carlo run (all η at once) per width.
    lrs : sequence of float > 0
        Increasing learning-rate grid (log-spaced is natural: ``np.geomspace``).
    steps : int ≥ 1
        Number k of GD steps after which the loss is read.
    seeds : int or sequence of int
        Monte-Carlo seeds (each seed's initial weights are shared by every η of the grid).
    variable : {"train_loss", "test_loss"}
    theory : bool
        Add the n = ∞ curve and its refined argmin (μP: dmft; NTP: the kernel limit; SP: NaN — its
        fixed-η limit diverges at the first step).
    backend, precision, progress
        As in :func:`hidyn.simulate`.
    **params
        Other spec fields (``parametrization``, ``depth``, ``d_in``, ``n_samples``, ``noise``,
        ``algorithm``, ``batch_size``, ``data_seed``, …).

    Returns
    -------
    xarray.Dataset
        ``loss`` (seed, lr, width) with NaN where a run diverged, ``loss_mean``/``loss_sem`` (lr, width),
        ``diverged_at`` (seed, lr, width; −1 if never), ``optimal_lr`` (seed, width),
        ``optimal_lr_at_edge`` (seed, width), ``optimal_lr_mean``/``optimal_lr_sem`` (width); with
        ``theory``: ``loss_theory`` (lr) and the attrs ``optimal_lr_theory`` (refined argmin of the
        n = ∞ loss) and ``optimal_lr_theory_grid`` (the Monte-Carlo's estimator applied to the n = ∞
        curve on the same grid: the like-for-like comparison for ``optimal_lr_mean``).
    """
    import warnings

    from hidyn import api, models, rng
    from hidyn.models._base import check_choice, check_int
    from hidyn.results import make_dataset

    if model != "deep_linear":
        raise ValueError(f"model={model!r} is invalid: must be 'deep_linear' (the family with a width)")
    steps = check_int("steps", steps, 1)
    variable = check_choice("variable", variable, ("train_loss", "test_loss"))
    widths = [check_int(f"widths[{i}]", w, 1) for i, w in enumerate(np.atleast_1d(widths).tolist())]
    lrs = np.asarray(lrs, dtype=np.float64).ravel()
    if lrs.size < 3 or np.any(np.diff(lrs) <= 0):
        raise ValueError(f"lrs={lrs.tolist()!r} is invalid: must be at least 3 increasing learning rates > 0")
    spec = models.get(model, lr=lrs.tolist(), width=widths[0], **params)
    n_seeds = rng.seed_indices(seeds).size
    loss = np.full((n_seeds, lrs.size, len(widths)), np.nan)
    div = np.full((n_seeds, lrs.size, len(widths)), -1.0)
    seed_idx = None
    for k, n in enumerate(widths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # diverged corners of the grid are expected
            sim = api.simulate(spec.replace(width=n), times=[0.0, float(steps)], seeds=seeds, backend=backend,
                               precision=precision, progress=progress)
        loss[:, :, k] = sim[variable].isel(time=-1).values
        div[:, :, k] = np.asarray(json.loads(sim.attrs["diverged_at"]) if isinstance(sim.attrs["diverged_at"], str)
                                  else sim.attrs["diverged_at"]).reshape(n_seeds, lrs.size)
        seed_idx = sim["seed"].values
        backend_used = sim.attrs["backend"]
    opt, edge = parabolic_argmin(lrs, np.moveaxis(loss, 1, -1))      # (seed, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                # all-NaN columns stay NaN
        sem = (lambda a, axis: np.nanstd(a, axis=axis, ddof=1) / np.sqrt(np.sum(np.isfinite(a), axis=axis))
               if n_seeds > 1 else np.zeros(np.delete(a.shape, axis)))
        data = {
            "loss": (("seed", "lr", "width"), loss),
            "loss_mean": (("lr", "width"), np.mean(loss, axis=0)),
            "loss_sem": (("lr", "width"), sem(loss, 0)),
            "diverged_at": (("seed", "lr", "width"), div),
            "optimal_lr": (("seed", "width"), opt),
            "optimal_lr_at_edge": (("seed", "width"), edge.astype(np.int8)),
            "optimal_lr_mean": (("width",), np.nanmean(opt, axis=0)),
            "optimal_lr_sem": (("width",), sem(opt, 0)),
        }
    attrs = {"method": "lr_transfer", "variable": variable, "steps": steps, "backend": backend_used,
             "precision": precision, "config_json": spec.to_json(),
             **{k: v for k, v in spec.to_dict().items() if not isinstance(v, (list, dict)) and k != "width"},
             "parametrization_name": spec.regime or "custom", "time_units": "GD steps"}
    if theory:
        curve, eta_grid, eta_inf, method = _theory_curve(spec, steps, variable)
        data["loss_theory"] = (("lr",), curve)
        attrs.update(optimal_lr_theory=eta_inf, optimal_lr_theory_grid=eta_grid, theory_method=method)
    ds = make_dataset(data, {"seed": seed_idx, "lr": lrs, "width": np.asarray(widths)}, attrs, model=model)
    for name, long_name in (("loss", f"{variable} after {steps} GD steps"),
                            ("loss_mean", f"seed mean of {variable} after {steps} steps (NaN if any diverged)"),
                            ("loss_sem", f"standard error of {variable} after {steps} steps"),
                            ("loss_theory", f"infinite-width {variable} after {steps} steps"),
                            ("optimal_lr", "argmin over the lr grid (parabola in ln lr), per seed"),
                            ("optimal_lr_at_edge", "1 where the grid minimum is at an edge of the grid"),
                            ("optimal_lr_mean", "seed mean of the optimal lr"),
                            ("optimal_lr_sem", "standard error of the optimal lr over seeds")):
        if name in ds:
            ds[name].attrs["long_name"] = long_name
    return ds
