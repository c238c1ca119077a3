"""Checks made before a run or a comparison starts: sizes, option names, comparability (issue #12).

* :func:`check_run_size` estimates the work (steps × cost of a step × seeds) and the memory of the saved
  points of a Monte-Carlo run and refuses, with the estimate and how to reduce it, what cannot finish or
  fit — before anything is allocated.
* :func:`check_options` names an unknown keyword of :func:`hidyn.theory` / :func:`hidyn.simulate` (a
  typo in a TOML file or a call) together with the valid ones, instead of a ``TypeError`` from deep in a
  solver.
* :func:`check_comparable` refuses a comparison of two results that do not describe the same model and
  spec, a theory that does not cover the simulation's times, and swapped arguments.
* :func:`few_seeds_warning` warns when the seed mean's standard error is itself too uncertain.
"""
from __future__ import annotations

import inspect
import json
import math
import warnings

import numpy as np

__all__ = ["MAX_WORK", "MAX_SAVE_TIMES", "MIN_SEEDS", "work_per_step", "check_run_size", "check_options",
           "check_comparable", "few_seeds_warning", "COMPARE_FREE_FIELDS", "free_fields"]

#: default refusal threshold of :func:`check_run_size`, in multiply-adds (one unit ≈ one multiply-add
#: on one coordinate of one seed).  The numba backends run ≈ 1e9 such units per second per core
#: (README quickstart: GD at d = 4096, n = 2048, 8 seeds, 200 steps ≈ 2.7e10 units in well under a
#: minute on 2 cores), so 1e14 is about a day of one core: beyond it a run is refused unless the caller
#: raises ``max_work`` explicitly.
MAX_WORK = 1e14

#: more save times than this are refused whatever the memory: no learning curve needs 10⁷ points, and
#: the time grid alone is allocated before any run-size estimate can be made
MAX_SAVE_TIMES = 10 ** 7

#: below this many seeds the standard error of the seed mean is not a usable error bar (see
#: :func:`few_seeds_warning`)
MIN_SEEDS = 4


# ------------------------------------------------------------------------------------------------
# run size
# ------------------------------------------------------------------------------------------------
def work_per_step(spec, backend=None) -> float:
    """Multiply-adds of one step of one seed (one evaluation of the gradient for gradient flow).

    dln: 2·n·d for full-batch GD/GF on a training set (X read for Xβ and Xᵀr), 2·B·d for minibatch
    SGD, B + d for online SGD (gradient drawn in law with O(B + d) normals), d for population GD/GF;
    two_layer: 2·(K + M)·d·B (pre-activations and the K updates); single_index: 2·d·B, or ~50·B for
    the exact reduced (m, s, q) chain (``backend.name == "reduced"``: O(1) per step at any d).
    """
    model = spec.model
    d = float(spec.d)
    if getattr(backend, "name", None) == "reduced":
        return 50.0 * getattr(spec, "batch_size", 1)
    if model == "dln":
        if spec.ratio is None:
            if spec.algorithm == "sgd":
                return float(spec.batch) + d
            return d
        if spec.algorithm == "sgd":
            return 2.0 * spec.batch * d
        return 2.0 * spec.n * d
    if model == "two_layer":
        return 2.0 * (spec.K + spec.M) * d * spec.batch_size
    if model == "single_index":
        return 2.0 * d * spec.batch_size
    return d


def _values_per_time(spec, variables: dict) -> int:
    sizes = {"k": "K", "k_": "K", "m": "M", "m_": "M"}
    total = 0
    for dims in variables.values():
        n = 1
        for dim in dims:
            n *= int(getattr(spec, sizes.get(dim, ""), 1) or 1)
        total += n
    return max(total, 1)


def check_n_times(n_times) -> None:
    """Refuse more than :data:`MAX_SAVE_TIMES` save times before the time grid is allocated."""
    if isinstance(n_times, (int, np.integer)) and not isinstance(n_times, bool) and n_times > MAX_SAVE_TIMES:
        raise ValueError(f"n_times={n_times!r} is invalid: must be ≤ {MAX_SAVE_TIMES:.0e} (the saved points "
                         f"alone would take {8 * n_times / 2**30:.3g} GiB per stored value); a learning curve "
                         f"needs 100–1000 log-spaced points (spacing='log', the default)")


def check_run_size(spec, backend, n_seeds: int, times, *, max_work: float | None = None) -> dict:
    """Refuse a Monte-Carlo run that cannot finish or whose saved points cannot fit in memory.

    Parameters
    ----------
    spec : ModelSpec
    backend : object with ``time_per_step`` (None for continuous time) and ``variables``
    n_seeds : int
    times : ndarray, shape (n_times,)
        Requested save times.
    max_work : float, optional
        Largest accepted work in multiply-adds (default :data:`MAX_WORK`); ``float("inf")`` disables
        the refusal.

    Returns
    -------
    dict
        ``work_estimate`` (multiply-adds; for gradient flow a lower bound: one right-hand side per save
        time) and ``n_steps_estimate``.

    Raises
    ------
    ValueError
        The estimated work exceeds ``max_work`` (the message gives the estimate and how to reduce it).
    MemoryError
        The saved points would not fit in memory.
    """
    from hidyn.solvers.mc.driver import check_memory

    limit = MAX_WORK if max_work is None else float(max_work)
    if not limit > 0:
        raise ValueError(f"max_work={max_work!r} is invalid: must be a number > 0 (multiply-adds)")
    times = np.asarray(times, dtype=np.float64)
    n_saves = int(times.size)
    per_time = _values_per_time(spec, backend.variables)
    check_memory(2 * 8 * n_saves * n_seeds * per_time,
                 f"the {n_saves} saved points of {n_seeds} seeds ({per_time} values each)",
                 "request fewer save times (n_times=, or a shorter times= array) or fewer seeds")
    t_end = float(times.max()) if n_saves else 0.0
    step = backend.time_per_step
    if step is not None and 0.0 < t_end < 0.5 * float(step):
        raise ValueError(f"t_max={t_end:.6g} is invalid: must be at least one step of the run (time per step "
                         f"{float(step):.6g}; for GD/SGD t = lr·steps, for online SGD t = steps/d); every save "
                         f"time would round to step 0")
    n_steps = 0.0 if step is None else t_end / float(step)
    cost = work_per_step(spec, backend)
    work = (n_steps + n_saves) * cost * n_seeds
    if work > limit:
        what = (f"{n_steps:.3g} steps (t_max={t_end:.6g} / time per step {step:.3g})" if step is not None
                else f"at least one gradient per save time ({n_saves} save times)")
        hours = work / 1e9 / 3600.0
        raise ValueError(
            f"simulate({spec.model!r}) would take about {work:.3g} multiply-adds (> max_work={limit:.3g}): "
            f"{what} × {cost:.3g} per step and seed × {n_seeds} seeds, ≈ {hours:.3g} core-hours at 1e9/s.  "
            f"Reduce t_max, n_times, d or the number of seeds (or raise the step size), or pass "
            f"max_work={10 ** math.ceil(math.log10(work)):.0e} if you really mean it")
    return {"work_estimate": float(work), "n_steps_estimate": float(n_steps)}


# ------------------------------------------------------------------------------------------------
# option names
# ------------------------------------------------------------------------------------------------
def method_options(func) -> tuple[set, bool]:
    """Keyword options of a theory method (beyond ``spec, times``) and whether it takes ``**kwargs``."""
    sig = inspect.signature(func)
    names, var_kw = set(), False
    for i, (name, p) in enumerate(sig.parameters.items()):
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif i >= 2 and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.add(name)
    return names, var_kw


def check_options(where: str, unknown, valid) -> None:
    """Raise a ValueError naming the unknown keyword(s) of ``where`` and the valid ones."""
    unknown = sorted(unknown)
    if not unknown:
        return
    import difflib

    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(valid), n=1)
        if close:
            hints.append(f"{key!r} → did you mean {close[0]!r}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for {where}{hint}; "
                     f"valid: {', '.join(sorted(valid))}")


# ------------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------------
#: spec fields that may legitimately differ between a simulation and the theory it is compared with,
#: per model and theory method (key None: every method).  The theory is the d → ∞ limit (d).  DLN: the
#: theory of an exact-sparsity run uses the sparsity round(ρd)/d (hidyn.families.dln.theory_spec_for,
#: checked separately) and ignores exact_sparsity; its dynamics is set by the method (closed form and
#: dmft_gf: gradient flow, dmft: GD), not by ``algorithm``, and the gradient-flow closed form has no
#: step size or batch.  two_layer / single_index: the ODE may start from other overlaps than the
#: spec's random start (``init``, ``init_scale``, ``m0``: a theory(init=sim) starts from the
#: simulation's own overlaps).  Everything else must be equal.  Run options (seeds, backend,
#: precision, seed entropy) are not spec fields and are not compared.
COMPARE_FREE_FIELDS = {
    "dln": {None: {"d", "sparsity", "exact_sparsity", "algorithm", "batch_size"},
            "closed_form": {"lr"}},
    "two_layer": {None: {"d", "init", "init_scale"}},
    "single_index": {None: {"d", "init", "m0"}},
}


def free_fields(model: str, method: str | None) -> set:
    """Spec fields that may differ between a simulation of ``model`` and a theory by ``method``."""
    table = COMPARE_FREE_FIELDS.get(model, {None: {"d"}})
    return set(table.get(None, set())) | set(table.get(method, set()))


def _spec_json(ds) -> dict | None:
    text = ds.attrs.get("config_json")
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _equal(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def check_comparable(empirical, theory=None, *, same_spec: bool = True) -> None:
    """Refuse a comparison that would be meaningless.

    Parameters
    ----------
    empirical, theory : xarray.Dataset
        ``theory`` None: only ``empirical`` is checked.
    same_spec : bool
        Check the spec fields (False: a deliberately different theory).

    Raises
    ------
    ValueError
        * ``empirical`` is not a Monte-Carlo result (no ``seed`` dim and method ≠ monte_carlo) or
          ``theory`` is one (arguments swapped?);
        * the two results are of different models, or their specs differ in a field other than
          :data:`COMPARE_FREE_FIELDS` (e.g. a different ``ratio``, ``lr``, ``activation``);
        * the theory does not cover the simulation's time range (interpolation would extrapolate).
    """
    import xarray as xr

    for name, ds in (("empirical", empirical), ("theory", theory)):
        if ds is None and name == "theory":
            continue
        if not isinstance(ds, xr.Dataset):
            raise ValueError(f"{name}={type(ds).__name__} is invalid: must be an xarray.Dataset from "
                             f"hidyn.simulate / hidyn.theory")
    e_mc = empirical.attrs.get("method") == "monte_carlo" or "seed" in empirical.dims
    if theory is None:
        if not e_mc:
            raise ValueError(f"empirical (method={empirical.attrs.get('method')!r}) is invalid: must be a "
                             f"Monte-Carlo result of hidyn.simulate (dim 'seed', method='monte_carlo')")
        return
    t_mc = theory.attrs.get("method") == "monte_carlo"
    if t_mc and not e_mc:
        raise ValueError("compare(empirical, theory): the arguments are swapped — the first must be the "
                         "Monte-Carlo result (hidyn.simulate, dim 'seed'), the second the theory "
                         f"(hidyn.theory); got method={empirical.attrs.get('method')!r} first and "
                         f"method={theory.attrs.get('method')!r} second")
    if not e_mc:
        raise ValueError(f"empirical (method={empirical.attrs.get('method')!r}) is invalid: must be a "
                         f"Monte-Carlo result of hidyn.simulate (dim 'seed', method='monte_carlo')")
    if t_mc:
        raise ValueError("theory (method='monte_carlo') is invalid: must be a result of hidyn.theory; to "
                         "compare two simulations compare their seed means directly")
    m_e, m_t = empirical.attrs.get("model"), theory.attrs.get("model")
    if m_e != m_t:
        raise ValueError(f"compare: the simulation is of model={m_e!r} but the theory of model={m_t!r}; "
                         f"compute the theory of the same model (hidyn.compare(sim) does it for you)")
    s_e, s_t = _spec_json(empirical), _spec_json(theory)
    if same_spec and s_e is not None and s_t is not None:
        free = free_fields(m_e, theory.attrs.get("method"))
        diff = [k for k in sorted(set(s_e) | set(s_t))
                if k not in free and k != "model" and not _equal(s_e.get(k), s_t.get(k))]
        if m_e == "dln" and "sparsity" not in diff and not _sparsity_ok(s_e, s_t):
            diff.append("sparsity")
        if diff:
            detail = ", ".join(f"{k}: simulation {s_e.get(k)!r} vs theory {s_t.get(k)!r}" for k in diff[:6])
            raise ValueError(f"compare: the simulation and the theory describe different specs ({detail}); "
                             f"compute the theory with the simulation's parameters, e.g. hidyn.compare(sim) or "
                             f"hidyn.theory(model, init=sim) (only {', '.join(sorted(free))} may differ)")
    t_sim = np.asarray(empirical["time"].values, dtype=np.float64)
    if "time" in theory.coords:
        t_th = np.asarray(theory["time"].values, dtype=np.float64)
        finite = t_th[np.isfinite(t_th)]
        if finite.size == 0:
            raise ValueError("compare: the theory has no finite time (a t → ∞ limit such as "
                             "method='fixed_point' cannot be compared with a learning curve)")
        lo, hi = float(finite.min()), float(finite.max())
        slack = 1e-9 * max(1.0, abs(hi))
        if t_sim.min() < lo - slack or t_sim.max() > hi + slack:
            raise ValueError(f"compare: the theory covers t ∈ [{lo:.6g}, {hi:.6g}] but the simulation's times "
                             f"span [{t_sim.min():.6g}, {t_sim.max():.6g}]; compute the theory at the "
                             f"simulation's times (hidyn.theory(..., times=sim.time.values))")


def _sparsity_ok(s_e: dict, s_t: dict) -> bool:
    """DLN: the theory's sparsity is ρ or, for an exact-sparsity run, round(ρd)/d."""
    rho, rho_t = s_e.get("sparsity"), s_t.get("sparsity")
    if not isinstance(rho, (int, float)) or not isinstance(rho_t, (int, float)):
        return rho == rho_t
    if math.isclose(rho, rho_t, rel_tol=1e-12):
        return True
    d = s_e.get("d")
    return bool(s_e.get("exact_sparsity")) and isinstance(d, int) and math.isclose(
        round(rho * d) / d, rho_t, rel_tol=1e-12)


def few_seeds_warning(n_seeds: int) -> str | None:
    """Warn (and return the message) when a seed mean's SEM comes from fewer than :data:`MIN_SEEDS` seeds.

    The sample standard deviation of n Gaussian seeds has relative error ≈ 1/√(2(n − 1)) (71 % for
    n = 2, 50 % for n = 3, 41 % for n = 4), and (mean − μ)/SEM follows a Student t with n − 1 degrees of
    freedom, whose tails are heavy for small n: P(|t| > 3) = 20 % for n = 2, 9.5 % for n = 3 and 5.8 %
    for n = 4, against 0.3 % for a Gaussian.  Below 4 seeds a "3-SEM" band is therefore no error bar at
    all (n = 1: no SEM; n = 2: |z| of 10⁴ happens when the two seeds nearly coincide), so the comparison
    warns and ``Comparison.summary()`` says so.
    """
    if n_seeds >= MIN_SEEDS:
        return None
    msg = (f"compare: only {n_seeds} seed(s): the standard error of the mean from n = {n_seeds} seeds is not "
           f"a usable error bar (relative error ≈ 1/√(2(n−1)), Student-t tails with n−1 dof), so z-scores "
           f"and pass/fail are unreliable; use at least {MIN_SEEDS} seeds (8–16 recommended)")
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return msg


def _run_options(func) -> set:
    sig = inspect.signature(func)
    return {name for name, p in sig.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and name != "model"}


def check_config(model, mode: str, params: dict, grid: dict, tolerance: dict, source: str) -> None:
    """Check the keys of a TOML run configuration before anything runs.

    ``[params]`` and ``[grid]`` keys must be spec fields of ``model`` or options of the run (of
    :func:`hidyn.simulate` for modes simulate/compare, of :func:`hidyn.theory` and its method for mode
    theory); ``[tolerance]`` keys fields of :class:`hidyn.Tolerance`.  A theory method that takes
    open-ended options (``**kwargs``) is checked when it runs instead.

    Raises
    ------
    ValueError
        Naming the file, the unknown key(s), a close match and the valid keys.
    """
    import dataclasses

    from hidyn import api, models
    from hidyn.families import family
    from hidyn.validation.tolerance import Tolerance

    cls = models.spec_class(model)
    fields = set(cls.field_names())
    keys = set(params) | set(grid)
    if mode == "theory":
        valid = fields | _run_options(api.theory)
        fam = family(model)
        method = params.get("method", "auto")
        candidates = [fam.methods[method]] if method in fam.methods else list(fam.methods.values())
        open_ended = False
        for func in candidates:
            names, var_kw = method_options(func)
            valid |= names
            open_ended |= var_kw
        if not open_ended:
            check_options(f"{source} ([params]/[grid], mode='theory', model={model!r})", keys - valid, valid)
    else:
        valid = fields | _run_options(api.simulate)
        check_options(f"{source} ([params]/[grid], mode={mode!r}, model={model!r})", keys - valid, valid)
    tol_fields = {f.name for f in dataclasses.fields(Tolerance)}
    check_options(f"{source} [tolerance]", set(tolerance) - tol_fields, tol_fields)
    for key, value in tolerance.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{source} [tolerance] {key}={value!r} is invalid: must be a finite number ≥ 0")
