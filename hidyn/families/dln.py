"""DLN glue: theory methods for :class:`hidyn.models.DLNSpec` (docs/theory/dln.md §3–§5)."""
from __future__ import annotations

import numpy as np

from hidyn.families._protocol import Family
from hidyn.models.dln import DLNSpec, initial_pq

SCALARS = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")


def auto_method(spec: DLNSpec) -> str:
    """Most exact theory available: the closed form in the population setting; else the DMFT of GD
    (or its gradient-flow extrapolation for ``algorithm="gf"``).  Minibatch SGD on a finite training
    set has no DMFT here (docs/theory/dln.md §10 pitfall 12)."""
    if spec.ratio is None:
        return "closed_form"
    if spec.algorithm == "sgd":
        return "none (SGD on a training set has no DMFT in hidyn)"
    return "dmft_gf" if spec.algorithm == "gf" else "dmft"


def closed_form(spec: DLNSpec, times, **options):
    """Exact population / whitened-design gradient flow (docs/theory/dln.md §3), d → ∞ averages."""
    from hidyn.solvers.closed_form.dln import curves

    if options:
        from hidyn.checks import check_options

        check_options("theory('dln', method='closed_form') (it takes no options)", set(options),
                      set(DLNSpec.field_names()) | {"method", "times", "t_max", "n_times", "spacing"})
    p0, q0 = initial_pq(spec)
    out = curves(times, sparsity=spec.sparsity, teacher=spec.teacher, noise=spec.noise, p0=p0, q0=q0,
                 clock=spec.clock, ratio=spec.ratio)
    attrs = {"setting": "population" if spec.ratio is None else "whitened design X^T X = ratio I",
             "dynamics": "gradient flow"}
    return {k: (("time",), out[k]) for k in SCALARS}, attrs


def _dmft_output(out: dict, spec: DLNSpec, times, flow: bool):
    """Dataset pieces of a DMFT solve, the one-time curves at the requested ``times``.

    GD (``flow=False``) lives on its steps: ``times`` are rounded to whole steps k = round(t/η) (as
    :func:`hidyn.simulate` does) and the curves are read off the grid exactly; a simulation's times
    are reproduced exactly.  Gradient flow (``flow=True``) is interpolated from the Richardson grid
    t_k = η k by a cubic spline (:func:`hidyn.solvers.dmft.grid.interpolate_curves`); its error
    estimate is added in quadrature to ``<name>_sem`` and its largest ratio to the statistical SEM is
    recorded in attr ``dmft_interp_error_over_sem``.  The two-time kernels stay on the solver's grid
    (dims ``grid_time``, ``grid_time_``): the response jumps at t = t', so no interpolation of it in
    (t, t') is accurate.
    """
    from hidyn.solvers.dmft.grid import interpolate_curves

    grid = np.asarray(out["time"], dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    info = out["info"]
    n_samples = float(info.get("n_samples", 0) or info.get("coarse_n_samples", 0) or 0)
    # Richardson 2f(η/2) − f(η) of two independent sample sets: the resolution adds as √(2² + 1²)
    n_eff = n_samples / np.sqrt(5.0) if "coarse_n_samples" in info else n_samples
    sems = {}
    for k in SCALARS:
        sem = np.asarray(out[f"{k}_sem"], dtype=np.float64)
        if k in ("tpr", "fpr") and n_eff > 0:
            # a rate estimated from N samples has resolution 1/N; where (almost) no sample crossed the
            # threshold the replica spread is 0, so add the one-sample resolution in quadrature
            frac = spec.sparsity if k == "tpr" else 1.0 - spec.sparsity
            sem = np.sqrt(sem ** 2 + (1.0 / max(frac * n_eff, 1.0)) ** 2)
        sems[k] = sem
    data, attrs = {}, {}
    if flow:
        curves = np.stack([np.asarray(out[k], dtype=np.float64) for k in SCALARS], axis=1)
        vals, err = interpolate_curves(grid, curves, times)
        sem_grid = np.stack([sems[k] for k in SCALARS], axis=1)
        # an error bar is interpolated linearly: it is an envelope, not a smooth signal
        sem_t = np.stack([np.interp(times, grid, sem_grid[:, j]) for j in range(len(SCALARS))], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sem_t > 0, err / sem_t, np.where(err > 0, np.inf, 0.0))
        for j, k in enumerate(SCALARS):
            v = vals[:, j]
            if k in ("tpr", "fpr"):
                v = np.clip(v, 0.0, 1.0)  # rates: a spline overshoot at a kink must not leave [0, 1]
            data[k] = (("time",), v)
            data[f"{k}_sem"] = (("time",), np.sqrt(sem_t[:, j] ** 2 + err[:, j] ** 2))
        attrs["dmft_interpolation"] = ("cubic spline in t from the grid t_k = lr*k; error estimate "
                                       "|spline - pchip| added in quadrature to <name>_sem")
        attrs["dmft_interp_error_max"] = float(np.max(err)) if err.size else 0.0
        attrs["dmft_interp_error_over_sem"] = float(np.max(ratio)) if ratio.size else 0.0
        t_out = times
    else:
        lr = float(grid[1] - grid[0]) if grid.size > 1 else spec.lr
        steps = np.unique(np.rint(times / spec.lr).astype(np.int64))
        if steps[-1] >= grid.size:
            raise ValueError(f"times up to {times[-1]:g} need {steps[-1]} steps but the DMFT grid has "
                             f"{grid.size - 1} (lr={lr:g})")
        for k in SCALARS:
            data[k] = (("time",), np.asarray(out[k], dtype=np.float64)[steps])
            data[f"{k}_sem"] = (("time",), sems[k][steps])
        t_out = grid[steps]
    for k in ("C_delta", "R_beta"):
        data[k] = (("grid_time", "grid_time_"), out[k])
        data[f"{k}_sem"] = (("grid_time", "grid_time_"), out[f"{k}_sem"])
    attrs.update({f"dmft_{k}": v for k, v in out["info"].items() if k not in ("ratio", "sparsity", "teacher",
                                                                               "noise", "init_scale", "init",
                                                                               "parametrization", "lr")})
    attrs["time"] = t_out
    attrs["coords"] = {"grid_time": grid, "grid_time_": grid}
    return data, attrs


def dmft_grid(spec: DLNSpec, t_max: float) -> np.ndarray:
    """The DMFT's own step grid t_k = η k up to t_max: the default times of ``dmft``/``dmft_gf``."""
    n_steps = max(int(round(float(t_max) / spec.lr)), 1)
    return spec.lr * np.arange(n_steps + 1)


#: the DMFT stores O(K·T²) response tangents: beyond this many steps no budget reaches the escape
MAX_RESOLVABLE_STEPS = 2000


def escape_time_estimate(spec: DLNSpec) -> float:
    """Time at which small-α coordinates leave the search plateau, ≈ log(1/α)/|g| with |g| ≈ 1 for a unit
    teacher (docs/theory/dln.md §3 escape time, §6); the pm clock halves it.  0 for α ≥ 1 (no plateau)."""
    if spec.init_scale >= 1.0:
        return 0.0
    return float(np.log(1.0 / spec.init_scale)) / spec.clock


def _dmft_steps(spec: DLNSpec, times, flow: bool = False) -> int:
    t_end = float(np.max(times))
    n_steps = int(round(t_end / spec.lr))
    if flow:
        # the interpolated flow needs a grid that covers t_end and has ≥ 3 points (a cubic's error
        # can only be estimated from more than a chord)
        n_steps = max(int(np.ceil(t_end / spec.lr - 1e-9)), 2) if t_end > 0 else 0
    if n_steps < 1:
        raise ValueError(f"t_max = {t_end:g} is shorter than one step lr = {spec.lr:g}")
    t_esc = escape_time_estimate(spec)
    if t_esc / spec.lr > MAX_RESOLVABLE_STEPS:
        raise ValueError(
            f"init_scale={spec.init_scale:g} is so small that the escape from the search plateau takes "
            f"t ≈ log(1/α) = {t_esc:.3g}, i.e. ≈ {t_esc / spec.lr:.0f} GD steps of lr={spec.lr:g}: the "
            f"DMFT's O(K·T²) memory cannot reach it (at most ~{MAX_RESOLVABLE_STEPS} steps).  Use rescaled "
            f"time τ = t/log(1/α) with method='saddle_to_saddle' on an instance (X=, y=), "
            f"method='fixed_point' for t → ∞, or a larger init_scale")
    if t_end < t_esc:
        import warnings

        warnings.warn(f"t_max = {t_end:g} ends before the escape from the search plateau at t ≈ log(1/α) = "
                      f"{t_esc:.3g} (init_scale={spec.init_scale:g}): the curves will still sit on the plateau",
                      RuntimeWarning, stacklevel=3)
    return n_steps


ENGINES = ("numpy", "jax")


def _dmft_module(engine: str):
    """Solver module of a DMFT engine: the numpy reference or the JAX engine (same keys and seeds)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is invalid: must be one of {ENGINES}")
    if engine == "jax":
        from hidyn.solvers.dmft import dln_jax

        return dln_jax
    from hidyn.solvers.dmft import dln as dmft_dln

    return dmft_dln


def dmft(spec: DLNSpec, times, *, n_samples: int = 16000, seed: int = 0, n_batches: int = 8,
         tangent_dtype: str = "float32", memory_budget_gb: float = 4.0, pivot_rtol: float = 1e-8,
         error_method: str = "replicas", progress: bool = False, engine: str = "numpy", **engine_options):
    """DMFT effective process of GD with step ``spec.lr`` (docs/theory/dln.md §5), d → ∞ at fixed ratio.

    The one-time curves are returned at ``times`` rounded to whole steps k = round(t/η), exactly as
    :func:`hidyn.simulate` rounds them (``hidyn.theory`` without ``times``/``n_times``/``spacing``
    gives every step t_k = η·k up to t_max); the two-time kernels ``C_delta``, ``R_beta`` are on every
    step (dims ``grid_time``, ``grid_time_``).  Each curve
    comes with its Monte-Carlo standard error ``<name>_sem`` (combined with the simulation's SEM in
    comparisons).  Options are those of :func:`hidyn.solvers.dmft.dln.solve`; ``engine="jax"`` runs
    :func:`hidyn.solvers.dmft.dln_jax.solve` instead (same outputs and random numbers, the sample side
    on a JAX device), which also takes ``device`` and ``block`` (``engine_options``).
    """
    mod = _dmft_module(engine)
    if engine_options and engine != "jax":
        raise ValueError(f"unknown option(s) {sorted(engine_options)} for method 'dmft' with engine='numpy'")
    if spec.ratio is None:
        raise ValueError("ratio=None is the population setting: use method='closed_form'")
    out = mod.solve(ratio=spec.ratio, sparsity=spec.sparsity, teacher=spec.teacher, noise=spec.noise,
                    init_scale=spec.init_scale, init=spec.init, parametrization=spec.parametrization,
                    lr=spec.lr, n_steps=_dmft_steps(spec, times), n_samples=n_samples, seed=seed,
                    n_batches=n_batches, tangent_dtype=tangent_dtype, memory_budget_gb=memory_budget_gb,
                    pivot_rtol=pivot_rtol, error_method=error_method, progress=progress, **engine_options)
    data, attrs = _dmft_output(out, spec, times, flow=False)
    attrs["dynamics"] = "gradient descent with step lr"
    attrs["dmft_engine"] = engine
    return data, attrs


def dmft_gradient_flow(spec: DLNSpec, times, *, engine: str = "numpy", **options):
    """Gradient-flow DMFT: Richardson extrapolation 2f(η/2) − f(η) of two GD solves (docs/theory/dln.md §5.2).

    The extrapolation lives on the grid t_k = η k, k = 0..⌈max(times)/η⌉; the one-time curves are
    interpolated from it onto exactly ``times`` by a cubic spline whose estimated error (distance to
    the PCHIP interpolant) is added in quadrature to ``<name>_sem`` (attrs ``dmft_interp_error_max``,
    ``dmft_interp_error_over_sem``: its largest ratio to the statistical SEM).  The two-time kernels
    stay on the grid (dims ``grid_time``, ``grid_time_``).  ``engine`` selects the numpy reference
    (default) or the JAX engine, as in :func:`dmft`.
    """
    mod = _dmft_module(engine)
    if spec.ratio is None:
        raise ValueError("ratio=None is the population setting: use method='closed_form'")
    out = mod.solve_gradient_flow(ratio=spec.ratio, sparsity=spec.sparsity, teacher=spec.teacher,
                                  noise=spec.noise, init_scale=spec.init_scale, init=spec.init,
                                  parametrization=spec.parametrization, lr=spec.lr,
                                  n_steps=_dmft_steps(spec, times, flow=True), **options)
    data, attrs = _dmft_output(out, spec, times, flow=True)
    attrs["dynamics"] = "gradient flow (Richardson extrapolation of GD at lr and lr/2)"
    attrs["dmft_engine"] = engine
    return data, attrs


def fixed_point(spec: DLNSpec, times, *, potential: str = "dln", tol: float = 1e-12):
    """Long-time limit t → ∞ in the proportional regime (docs/theory/dln.md §4).

    δ < 1: gradient flow converges to an interpolator with an implicit bias set by the init; its
    proportional-limit risk solves the fixed point b̂ = prox_θ(β* + τZ).  δ > 1: OLS.  ``potential``
    "ridge" / "l1" give the α → ∞ (min-ℓ2) and α → 0 (basis pursuit) limits.  The result has a single
    time, t = ∞.
    """
    from hidyn.solvers.closed_form.dln_limits import fixed_point as solve_fixed_point

    if spec.ratio is None:
        raise ValueError("ratio=None (population): gradient flow converges to β* — use method='closed_form'")
    p0, q0 = initial_pq(spec)
    out = solve_fixed_point(ratio=spec.ratio, sparsity=spec.sparsity, teacher=spec.teacher, noise=spec.noise,
                            p0=p0, q0=q0, potential=potential, tol=tol)
    data = {k: (("time",), [out[k]]) for k in SCALARS}
    attrs = {"time": np.array([np.inf]), "regime": out["regime"], "potential": potential,
             **{f"fixed_point_{k}": float(out[k]) for k in ("theta", "tau", "df") if k in out}}
    return data, attrs


def _design(X, y):
    if X is None or y is None:
        raise ValueError("this method works on an explicit instance: pass X=(n, d) array and y=(n,) array")
    return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)


def _instance_provenance(X, beta_star) -> dict:
    """Attrs of a result on an explicit design: its shape, and the spec fields that shaped it (the init
    and, through the test error of ``beta_star``, the noise) — not the spec's d, ratio, sparsity."""
    used = ("init_scale", "init", "parametrization") + (("noise",) if beta_star is not None else ())
    return {"limit": "explicit instance", "n_rows": int(X.shape[0]), "n_features": int(X.shape[1]),
            "spec_fields": used}


def interpolator(spec: DLNSpec, times, *, X=None, y=None, beta_star=None, tol: float = 1e-12):
    """The finite-d limit of gradient flow on an explicit instance with n < d (docs/theory/dln.md §4, dual Newton).

    Returns β_∞ as the variable ``beta`` (dim ``i``) at time t = ∞, with its train error and, when
    ``beta_star`` is given, the test error and the other observables.
    """
    from hidyn.observables import dln_observables, dln_train_loss
    from hidyn.solvers.closed_form.dln_limits import implicit_bias_interpolator

    X, y = _design(X, y)
    p0, q0 = initial_pq(spec)
    out = implicit_bias_interpolator(X, y, p0=p0, q0=q0, tol=tol)
    data = {"beta": (("time", "i"), out["beta"][None]),
            "train_loss": (("time",), [float(dln_train_loss(X @ out["beta"] - y))])}
    if beta_star is not None:
        obs = dln_observables(out["beta"], np.asarray(beta_star, dtype=np.float64), spec.noise)
        data.update({k: (("time",), [float(v)]) for k, v in obs.items()})
    attrs = {"time": np.array([np.inf]), "converged": int(out["converged"]), "n_iter": int(out["n_iter"]),
             "residual": float(out["residual"]), **_instance_provenance(X, beta_star)}
    return data, attrs


def saddle_to_saddle(spec: DLNSpec, times, *, X=None, y=None, beta_star=None, max_jumps=None,
                     tol: float = 1e-12):
    """The α → 0 jump process (Pesme & Flammarion 2023; docs/theory/dln.md §4) on an explicit instance.

    ``time`` is the rescaled time τ = c·t/log(1/α) at which each plateau starts (τ = 0, then the jump
    times), c = ``spec.clock`` (1 for uv, 2 for the pm parametrisation, whose clock runs twice as fast):
    the jumps happen at t ≈ τ·log(1/α)/c, attr ``t_per_tau``.  ``beta`` (time, i) is the plateau value,
    ``train_loss`` its train error and ``support_size`` its number of nonzeros.  The last plateau is
    the min-ℓ1 interpolator (δ < 1) or least squares.

    Inits (docs/theory/dln.md §2.2): ``pesme`` and ``pm`` (β₀ = 0, |Δ| = 2α² or 4α²) share this limit — the clock
    ½·log(1/|Δ|) differs from log(1/α) by an O(1) shift only, which vanishes in τ as α → 0.
    ``balanced`` (Δ = 0) freezes the signs at β > 0: the limit is then the sign-constrained jump process
    (non-negative NNLS plateaus, ending at the minimum-Σβ non-negative interpolator), attr
    ``sign_constraint``.
    """
    from hidyn.observables import dln_observables
    from hidyn.solvers.closed_form.dln_limits import saddle_to_saddle as jump_process

    X, y = _design(X, y)
    nonneg = spec.init == "balanced"
    out = jump_process(X, y, max_jumps=max_jumps, tol=tol, nonneg=nonneg)
    taus = np.concatenate([[0.0], out["taus"]])
    data = {"beta": (("time", "i"), out["betas"]), "train_loss": (("time",), out["train_loss"]),
            "support_size": (("time",), np.count_nonzero(out["betas"], axis=1))}
    if beta_star is not None:
        obs = dln_observables(out["betas"], np.asarray(beta_star, dtype=np.float64), spec.noise)
        data.update({k: (("time",), v) for k, v in obs.items()})
    log_inv_alpha = float(np.log(1.0 / spec.init_scale))
    attrs = {"time": taus, "time_units": "tau = clock * t / log(1/alpha) (rescaled)", "n_jumps": int(out["n_jumps"]),
             "converged": int(out["converged"]), "clock": float(spec.clock),
             "t_per_tau": log_inv_alpha / spec.clock if log_inv_alpha > 0 else float("nan"),
             "sign_constraint": "beta >= 0 (balanced init, signs frozen)" if nonneg else "none",
             **_instance_provenance(X, beta_star)}
    return data, attrs


METHODS = {"closed_form": closed_form, "dmft": dmft, "dmft_gf": dmft_gradient_flow,
           "fixed_point": fixed_point, "interpolator": interpolator, "saddle_to_saddle": saddle_to_saddle}

#: methods on their own step grid: without times/n_times/spacing, ``hidyn.theory`` returns every step
DEFAULT_TIMES = {"dmft": dmft_grid, "dmft_gf": dmft_grid}

#: methods whose times are fixed by the theory; ``hidyn.theory`` refuses times/t_max for them
OWN_TIMES = {"fixed_point": "the single time t = inf", "interpolator": "the single time t = inf",
             "saddle_to_saddle": "its own jump times tau"}

#: spec fields that describe a finite-d instance only; a d → ∞ result does not record them
FINITE_D_FIELDS = ("d", "exact_sparsity", "batch_size")


def theory_spec_for(spec: DLNSpec) -> DLNSpec:
    """The spec whose d → ∞ theory describes a finite-d run exactly in law.

    With ``exact_sparsity`` the simulation places exactly round(ρd) nonzeros, so its empirical
    coordinate law has sparsity round(ρd)/d, not ρ: using it removes an O(1/d) offset that is
    bookkeeping, not physics.
    """
    if spec.exact_sparsity:
        return spec.replace(sparsity=round(spec.sparsity * spec.d) / spec.d)
    return spec


def default_variables(spec: DLNSpec):
    """Variables compared by default.  SGD noise moves null coordinates by O(√(ηd/B)), which biases
    ‖β‖₁/d and the thresholded support rates at that order, so for SGD only the smooth second-moment
    observables are compared against the gradient-flow theory."""
    if spec.algorithm == "sgd":
        return ["train_loss", "test_loss", "overlap", "norm2"]
    return list(SCALARS)


def default_tolerance(spec: DLNSpec, sim=None):
    """Tolerance for a finite-d run against the gradient-flow closed form (population setting).

    * ``gf``: the run is deterministic given the teacher and equals the closed form coordinate by
      coordinate, up to the integrator's tolerance (rtol 1e-8) → atol 1e-6·scale.
    * ``gd``: GD departs from GF by O(η) (docs/theory/dln.md §3); measured max |GD − GF| ≈ 0.04·η·scale on the
      losses and ≈ 0.19·η·scale on ‖β‖²/d for η ∈ {0.01, 0.05} at d = 2048 (scale = ρ + σ², the
      t = 0 loss) → atol 0.5·η·scale (2.5× margin).
    * ``sgd`` (online, ``ratio=None``): adds the gradient-noise bias O(η·d/B) (docs/theory/dln.md §2.2); measured
      ≈ 0.11·(ηd/B)·scale for ηd/B ∈ [0.0025, 0.02] → atol (0.5·η + 0.25·ηd/B)·scale.
    z = 3 standard errors of the seed mean on top.
    """
    from hidyn.validation.tolerance import Tolerance

    if spec.ratio is not None:
        # DMFT vs finite-d GD: the theory's own Monte-Carlo error enters through its _sem (combined in
        # quadrature); finite-d corrections are O(d^(-1/2)) relative — single runs fluctuate by
        # ≈ 2–4·d^(-1/2) relative on E_tr (docs/theory/dln.md §10 pitfall 9) while measured seed-mean deviations
        # stayed below 0.3·d^(-1/2) relative at d = 500–4000, δ ∈ {0.5, 2} → rtol 0.5·d^(-1/2), z = 4
        # (the DMFT SEM is itself estimated from 8 replicas).
        return Tolerance(z=4.0, rtol=0.5 / np.sqrt(spec.d))
    scale = spec.sparsity + spec.noise ** 2
    if spec.algorithm == "gf":
        return Tolerance(z=3.0, atol=1e-6 * scale)
    eta_term = 0.5 * spec.lr
    if spec.algorithm == "sgd":
        eta_term += 0.25 * spec.lr * spec.d / spec.batch
    return Tolerance(z=3.0, atol=eta_term * scale)


# the family contract (hidyn/families/_protocol.py, docs/families.md): this module declares itself
FAMILY = Family(
    model="dln",
    spec_class=DLNSpec,
    methods=METHODS,
    auto_method=auto_method,
    default_variables=default_variables,
    default_tolerance=default_tolerance,
    theory_spec_for=theory_spec_for,
    own_times=OWN_TIMES,
    default_times=DEFAULT_TIMES,
    finite_d_fields=FINITE_D_FIELDS,
)
