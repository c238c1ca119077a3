"""Teacher–student glue: the order-parameter ODE as the theory of :class:`TwoLayerSpec`.

The ODE must start from the same initial overlaps as the simulation it is compared with
(docs/theory/teacher_student.md §11, pitfall 7: a random start at finite d breaks the student symmetry by
O(d^(−1/2)), and the plateau length depends on the log of that asymmetry).  ``hidyn.compare(sim)``
therefore seeds the theory from the simulation's own t = 0 overlaps.
"""
from __future__ import annotations

import warnings

import numpy as np

from hidyn.families._protocol import Family
from hidyn.models.two_layer import TwoLayerSpec

#: compare(sim) passes the simulation to the theory as ``init``
THEORY_NEEDS_INIT = True


def auto_method(spec: TwoLayerSpec) -> str:
    return "ode"


def initial_overlaps(spec: TwoLayerSpec, init=None, *, per_seed: bool = False):
    """(Q0, R0, v0) for the ODE and a description, from a simulation, ``spec.init`` or the d → ∞ random start.

    With a simulation Dataset the overlaps at its first time are used: averaged over seeds, or one set
    per seed (leading dim ``seed``) when ``per_seed``.
    """
    if init is not None:
        first = init.isel(time=0)
        if per_seed:
            return first["Q"].values, first["R"].values, first["v"].values, "per-seed t=0 overlaps of the simulation"
        return (first["Q"].mean("seed").values, first["R"].mean("seed").values,
                first["v"].mean("seed").values, "seed-mean t=0 overlaps of the simulation")
    if spec.init is not None:
        return spec.init["Q"], spec.init["R"], np.asarray(spec.v0), "explicit init overlaps"
    K, M = spec.K, spec.M
    return (spec.init_scale ** 2 * np.eye(K), np.zeros((K, M)), np.asarray(spec.v0),
            "d -> infinity limit of the random start (R = 0: the symmetric plateau is never left)")


#: activations whose Gaussian averages are closed-form (elementary functions, exact to round-off)
EXACT_AVERAGES = ("erf", "linear")


ENGINES = ("scipy", "jax")


def ode(spec: TwoLayerSpec, times, *, init=None, per_seed: bool = True, method: str = "DOP853",
        rtol: float | None = None, atol: float | None = None, engine: str = "scipy",
        variables: str = "auto"):
    """Integrate the Saad–Solla / Goldt et al. ODEs (docs/theory/teacher_student.md §3) at ``times``.

    ``engine="scipy"`` (default) is :func:`hidyn.solvers.ode.two_layer.solve` (``solve_ivp`` with
    ``method``; ``variables`` chooses Schur-complement or overlap state variables); ``engine="jax"`` is
    :mod:`hidyn.solvers.ode.two_layer_jax` (diffrax Dopri8, erf only, float64, on JAX's default device;
    per-seed initial conditions run as one vmapped solve).  Both agree to ~1e-10 at the default
    tolerances.

    Default tolerances: rtol 1e-10, atol 1e-12 (docs/theory/teacher_student.md §7: the plateau exit amplifies
    small errors) when the averages are closed-form; rtol 1e-8, atol 1e-10 otherwise, because then the
    right-hand side is itself a quadrature accurate to ~1e-9 (ReLU's Plackett integral, Gauss–Hermite),
    and a tighter step control only chases quadrature noise (ReLU: 9 251 right-hand-side calls at
    rtol 1e-10 against 398 at 1e-8, final ε_g equal to 7e-10).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is invalid: must be one of {ENGINES}")
    if engine == "jax":
        if method != "DOP853" or variables != "auto":
            raise ValueError(f"engine='jax' integrates Schur variables with diffrax.Dopri8: method={method!r} "
                             f"and variables={variables!r} are options of engine='scipy'")
        from hidyn.solvers.ode import two_layer_jax as tl_jax

        solve, solve_batch = tl_jax.solve, tl_jax.solve_batch
    else:
        from hidyn.solvers.ode.two_layer import solve

        solve_batch = None

    exact = isinstance(spec.activation, str) and spec.activation in EXACT_AVERAGES
    rtol = rtol if rtol is not None else (1e-10 if exact else 1e-8)
    atol = atol if atol is not None else (1e-12 if exact else 1e-10)

    Q0, R0, v0, source = initial_overlaps(spec, init, per_seed=per_seed)
    kw = dict(lr=spec.lr, lr_second=spec.lr_second, train_second_layer=spec.train_second_layer,
              noise=spec.noise, batch_size=spec.batch_size, rtol=rtol, atol=atol)
    if engine == "scipy":
        kw.update(method=method, variables=variables)
    T, A = np.asarray(spec.T), np.asarray(spec.A)
    if per_seed and init is not None and solve_batch is not None:
        sol = solve_batch(Q0, R0, T, v0, A, spec.act, times, **kw)    # one vmapped solve over the seeds
        stack = {k: sol[k] for k in ("test_loss", "train_loss", "Q", "R", "v")}
        lead = ("seed",)
        info = dict(sol["info"])
        info["diverged_at_per_seed"] = np.asarray(info["diverged_at"], dtype=np.float64)
        info["diverged_at"] = float(np.max(info["diverged_at"]))
        coords = {"seed": init["seed"].values}
    elif per_seed and init is not None:
        # one warning for the whole ensemble, not one per seed's ODE
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            sols = [solve(Q0[i], R0[i], T, v0[i], A, spec.act, times, **kw) for i in range(Q0.shape[0])]
        for w in caught:
            if not (issubclass(w.category, RuntimeWarning) and "diverged at" in str(w.message)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        stack = {k: np.stack([s[k] for s in sols]) for k in ("test_loss", "train_loss", "Q", "R", "v")}
        lead = ("seed",)
        info = sols[0]["info"]
        per = np.array([s["info"].get("diverged_at", -1.0) for s in sols])
        info["diverged_at"] = float(per.max())
        info["diverged_at_per_seed"] = per
        info["divergence_reason"] = "; ".join(f"seed {i}: {s['info']['divergence_reason']}"
                                              for i, s in enumerate(sols) if s["info"].get("divergence_reason"))
        for key in ("psd_clipped", "test_loss_clipped"):
            info[key] = int(sum(s["info"][key] for s in sols))
        for key in ("psd_min_eigenvalue", "test_loss_min_raw"):
            info[key] = float(min(s["info"][key] for s in sols))
        if np.any(per >= 0):
            warnings.warn(f"the per-seed ODEs of {int(np.sum(per >= 0))} of {per.size} seeds diverged (first at "
                          f"t = {per[per >= 0].min():.6g}: {info['divergence_reason'].split('; ')[0]}); their "
                          f"values after that time are NaN (attrs 'ode_diverged_at_per_seed'). Lower the "
                          f"learning rate.", RuntimeWarning, stacklevel=3)
        coords = {"seed": init["seed"].values}
    else:
        sol = solve(Q0, R0, T, v0, A, spec.act, times, **kw)
        stack = {k: sol[k] for k in ("test_loss", "train_loss", "Q", "R", "v")}
        lead = ()
        info = sol["info"]
        coords = {}
    data = {
        "test_loss": (lead + ("time",), stack["test_loss"]),
        "train_loss": (lead + ("time",), stack["train_loss"]),
        "Q": (lead + ("time", "k", "k_"), stack["Q"]),
        "R": (lead + ("time", "k", "m"), stack["R"]),
        "v": (lead + ("time", "k"), stack["v"]),
    }
    attrs = {f"ode_{k}": v for k, v in info.items()}
    attrs["ode_engine"] = engine
    attrs["init_source"] = source
    if coords:
        attrs["coords"] = coords
    return data, attrs


METHODS = {"ode": ode}


def inadmissible(spec: TwoLayerSpec):
    """Admissibility check of simulated overlaps for the Monte-Carlo driver (hidyn.admissibility).

    A seed is stopped as diverged when its Ω = [[Q, R], [Rᵀ, T]] is not PSD beyond round-off, or when
    its largest student norm Q_kk exceeds Q_RUNAWAY times max(1, T_nn, Q_kk(0)): at a learning rate far
    beyond stability with a bounded activation the weights grow without bound while ε_g stays O(1)
    (erf saturates), which the loss blow-up test alone never sees.
    """
    from hidyn.admissibility import PSD_RTOL_MC, Q_RUNAWAY, two_layer_margin, two_layer_scale

    T = np.asarray(spec.T, dtype=np.float64)

    def check(obs, first):
        scale = two_layer_scale(T, first["Q"])
        psd, runaway = two_layer_margin(obs["Q"], obs["R"], T, scale, psd_rtol=PSD_RTOL_MC)
        return {"overlap matrix [[Q, R], [R^T, T]] not positive semi-definite": psd < 0,
                f"student norm max Q_kk > {Q_RUNAWAY:g} x its scale {scale:g} (weights running away; "
                f"lr beyond stability)": runaway < 0}

    return check


def default_variables(spec: TwoLayerSpec):
    return ["test_loss", "train_loss", "Q", "R", "v"] if spec.train_second_layer else \
        ["test_loss", "train_loss", "Q", "R"]


def default_tolerance(spec: TwoLayerSpec, sim=None):
    """Per variable z·SEM + c·d^(−1/2) against the per-seed ODE (each seed's ODE starts from its own
    t = 0 overlaps).

    One run's order parameters fluctuate around its ODE by σ₁ ≈ c₀·d^(−1/2) (Goldt et al. 2019:
    O(1/√N) convergence).  Measured c₀ (K = M = 2, erf, η = 0.5, d ∈ {250, 500, 1000}, 16 seeds): 0.18–0.26
    on ε_g, 0.29–0.44 on Q, 0.60–0.76 on R.  Those fluctuations average out in the seed mean (the z·SEM
    term, z = 3); what remains is a finite-d bias, largest at the specialisation transition where small
    timing differences are amplified: measured up to 0.42·d^(−1/2) beyond 3·SEM on Q for ReLU at d = 250.
    The allowance c is therefore one single-run standard deviation c₀ (rounded up) per variable: the
    seed mean may be biased by at most what a single run typically deviates.
    """
    from hidyn.validation.tolerance import Tolerance

    loss = Tolerance(z=3.0, c=0.3, p=0.5)
    return {"test_loss": loss, "train_loss": loss, "Q": Tolerance(z=3.0, c=0.5, p=0.5),
            "R": Tolerance(z=3.0, c=0.8, p=0.5), "v": Tolerance(z=3.0, c=0.5, p=0.5)}


# the family contract (hidyn/families/_protocol.py, docs/families.md): this module declares itself
FAMILY = Family(
    model="two_layer",
    spec_class=TwoLayerSpec,
    methods=METHODS,
    auto_method=auto_method,
    theory_needs_init=THEORY_NEEDS_INIT,
    default_variables=default_variables,
    default_tolerance=default_tolerance,
    inadmissible=inadmissible,
)
