"""Matrix-sensing glue: theory methods for :class:`hidyn.models.MatrixSensingSpec` (matrix_sensing.md §2–§6).

The population flow depends on the instance X₀ (with a random init the signal rows of X₀ are
O(α/√n) Gaussian and stay random as n → ∞, §4), so the theory is computed **per instance**: for an
explicit ``init=`` array once; for a random init on exactly the X₀ that Monte-Carlo seed i draws (the
same ``SeedSequence``), one curve per seed (dim ``seed``).  ``hidyn.compare(sim)`` passes the simulation
(its seed indices and entropy) and averages both sides over seeds.
"""
from __future__ import annotations

import numpy as np

from hidyn import rng as _rng
from hidyn.families._protocol import Family
from hidyn.models.matrix_sensing import MatrixSensingSpec, draw_init, ground_truth_basis

#: compare(sim) passes the simulation to the theory as ``init`` (to draw the same X₀ per seed)
THEORY_NEEDS_INIT = True


def auto_method(spec: MatrixSensingSpec) -> str:
    """Closed form (§2–§3) for the symmetric model, the integrated population flow for FGᵀ (§5)."""
    return "ode" if spec.parametrization == "asymmetric" else "closed_form"


def instances(spec: MatrixSensingSpec, init=None, seeds=1, seed=None):
    """Initial factors X₀ of the theory and the seed coordinate (None for an explicit ``spec.init``).

    ``init``: a simulation Dataset (its ``seed`` indices and ``seed_entropy`` are used); otherwise
    ``seeds`` (count or indices) and ``seed`` (entropy, default 0) as in :func:`hidyn.simulate`.
    Returns (X0 (S, n, k) or (S, 2, n, k), seed indices or None).
    """
    if spec.init is not None:
        return np.asarray(spec.init, dtype=np.float64)[None], None
    if init is not None:
        idx = np.asarray(init["seed"].values, dtype=np.int64)
        seed = init.attrs.get("seed_entropy", seed)
    else:
        idx = _rng.seed_indices(seeds)
    return np.stack([draw_init(spec, ss) for ss in _rng.seed_sequences(seed, idx)]), idx


def _pack(spec, obs, idx, extra_vars=()):
    lead = ("seed",) if idx is not None else ()
    sq = (lambda a: a) if idx is not None else (lambda a: a[0])
    data = {"test_loss": (lead + ("time",), sq(obs["test_loss"])),
            "eigenvalues": (lead + ("time", "rank_index"), sq(obs["eigenvalues"]))}
    if "alignment" in obs:
        data["alignment"] = (lead + ("time", "rank_index"), sq(obs["alignment"]))
    if spec.ratio is None:
        data["train_loss"] = (lead + ("time",), sq(obs["test_loss"] + spec.noise ** 2))
    for name, dims in extra_vars:
        data[name] = (lead + dims, sq(obs[name]))
    attrs = {"test_loss_definition": "|P - M*|_F^2 (no 1/4, no noise)"}
    if idx is not None:
        attrs["coords"] = {"seed": idx}
        attrs["init_source"] = "random init: the X0 of each Monte-Carlo seed index (same SeedSequence)"
    else:
        attrs["init_source"] = "explicit init"
    return data, attrs


def _symmetric_basis(spec):
    if spec.parametrization != "symmetric":
        raise ValueError(f"parametrization={spec.parametrization!r} is invalid for this method: it needs the "
                         f"symmetric model P = XX^T (use method='ode' for FG^T)")
    lam, U, _ = ground_truth_basis(spec)
    return lam, U


def closed_form(spec: MatrixSensingSpec, times, *, init=None, seeds=1, seed=None):
    """Population gradient flow in closed form, stably evaluated (§2–§3), per instance.

    It is the exact theory of ``ratio=None`` gradient flow, the η → 0 limit of GD and SGD, and the
    leading order of finite-m GD at m = ratio·n², n → ∞ (§6).  ``train_loss`` (population only) is
    test_loss + σ².
    """
    from hidyn.solvers.closed_form.matrix_sensing import factor_observables, population_flow

    lam, U = _symmetric_basis(spec)
    X0, idx = instances(spec, init, seeds, seed)
    Y = population_flow(lam, np.swapaxes(U, 0, 1) @ X0, times)
    data, attrs = _pack(spec, factor_observables(lam, Y, spec.rank), idx)
    attrs["dynamics"] = "population gradient flow (closed form, stable restarts)"
    return data, attrs


def incremental(spec: MatrixSensingSpec, times, *, init=None, seeds=1, seed=None):
    """The α → 0 staircase (§4) on each instance: eigenvalues switching on one at a time.

    Adds ``jump_times`` (dims ``signal_index``): the midpoints t_i = log(σ_i/ρ_i − 1)/(2σ_i), and
    attr ``leading_jump_times`` = log(1/α)/σ_i.
    """
    from hidyn.solvers.closed_form.matrix_sensing import incremental_limit

    lam, U = _symmetric_basis(spec)
    X0, idx = instances(spec, init, seeds, seed)
    out = incremental_limit(lam, np.swapaxes(U, 0, 1) @ X0, times)
    data, attrs = _pack(spec, out, idx, extra_vars=(("jump_times", ("signal_index",)),))
    attrs["dynamics"] = "alpha -> 0 incremental limit (matrix_sensing.md §4)"
    attrs["leading_jump_times"] = np.log(1.0 / spec.init_scale) / spec.sigmas
    return data, attrs


def late_time(spec: MatrixSensingSpec, times, *, init=None, seeds=1, seed=None):
    """The k > r late-time law (§5): spurious eigenvalues μ_j/(1 + 2μ_j t) and test_loss Σν_j².

    Valid once the signal block has saturated; ``spurious_eigenvalues`` has dims ``spurious_index``.
    """
    from hidyn.solvers.closed_form.matrix_sensing import late_time_overparam

    lam, U = _symmetric_basis(spec)
    X0, idx = instances(spec, init, seeds, seed)
    out = late_time_overparam(lam, np.swapaxes(U, 0, 1) @ X0, times)
    lead = ("seed",) if idx is not None else ()
    sq = (lambda a: a) if idx is not None else (lambda a: a[0])
    data = {"test_loss": (lead + ("time",), sq(out["test_loss"])),
            "spurious_eigenvalues": (lead + ("time", "spurious_index"), sq(out["spurious"]))}
    attrs = {"dynamics": "k > r late-time law (matrix_sensing.md §5)",
             "mu": np.ravel(out["mu"])}
    if idx is not None:
        attrs["coords"] = {"seed": idx}
    return data, attrs


def ode(spec: MatrixSensingSpec, times, *, init=None, seeds=1, seed=None, rtol: float = 1e-11):
    """Population gradient flow of the asymmetric model FGᵀ (§5) by DOP853, per instance.

    Also accepts the symmetric model (F = G = X: the same flow), which makes it a check of the closed form.
    """
    from hidyn.solvers.closed_form.matrix_sensing import asymmetric_flow, asymmetric_observables

    lam, U, V = ground_truth_basis(spec)
    X0, idx = instances(spec, init, seeds, seed)
    if spec.parametrization == "symmetric":
        F0 = G0 = X0
    else:
        F0, G0 = X0[:, 0], X0[:, 1]
    Fs, Gs, nfev = [], [], 0
    for f0, g0 in zip(F0, G0):
        F, G, info = asymmetric_flow(lam, U.T @ f0, V.T @ g0, times, rtol=rtol)
        Fs.append(F)
        Gs.append(G)
        nfev += info["nfev"]
    obs = asymmetric_observables(lam, np.stack(Fs), np.stack(Gs), spec.rank)
    data, attrs = _pack(spec, obs, idx)
    attrs["dynamics"] = "population gradient flow of the factors (DOP853)"
    attrs["ode_nfev"] = int(nfev)
    attrs["ode_rtol"] = float(rtol)
    return data, attrs


METHODS = {"closed_form": closed_form, "incremental": incremental, "late_time": late_time, "ode": ode}


def default_variables(spec: MatrixSensingSpec):
    """test_loss and the eigenvalues; train_loss in the population setting only (at finite m it contains
    the fitted noise, which the population flow does not model).  The eigenvector alignment is not
    compared by default: where two eigenvalues of P nearly coincide (spurious directions, crossings) its
    eigenvectors are ill-conditioned and an O(η) difference swaps them."""
    out = ["test_loss", "eigenvalues"]
    if spec.ratio is None:
        out.append("train_loss")
    return out


def default_tolerance(spec: MatrixSensingSpec, sim=None):
    """Tolerance of a finite-n run against the population gradient flow (per instance, seed means).

    The theory follows each seed's own X₀, so for the deterministic algorithms (GF, GD — finite-m GD is
    deterministic given the measurements) the spread of the runs over seeds is instance-to-instance
    variation, not sampling noise: z = 0 and the bound is the calibrated bias alone.  SGD adds real
    gradient noise: z = 3 standard errors of the seed mean on top.  scale = Σσ_i² (the t = 0 loss).

    * ``gf``, ``ratio=None``: the run integrates the same flow with DOP853 (rtol 1e-10) → atol 1e-6·scale
      (measured 3e-14 on test_loss at n = 16, matrix_sensing.md §9).
    * ``gd``: GD's per-step growth 1 + ησ instead of e^{ησ} delays each jump by ≈ ησ·t_i/2 with
      t_i ≈ log(1/α)/σ_i, so near a jump |GD − GF| ≈ |dL/dt|·η·log(1/α)/2.  Measured (§9) seed-mean
      max |GD − GF| ≤ 0.21·η·σ₁·(1 + log(1/α))·scale for η ∈ {0.02, 0.05, 0.1}, α ∈ {1e-2, 1e-4, 1e-8}
      → atol 0.5·η·σ₁·(1 + log(1/α))·scale (2.4× margin).
    * finite m (§6): add c·n^(−1/2) with c = 0.3·scale·(1 + log(1/α))/√ratio: the measured seed-mean
      |finite-m GD − population GD| (same X₀, same η; n ∈ {16, 32}, ratio ∈ {2, 4}, α ∈ {1e-2, 1e-4},
      §9) needed c ≤ 0.11 → about 3× margin.
    * ``sgd``: add 1.0·η·n²/B·scale for the gradient noise: measured seed-mean max |SGD − GF| (online,
      n ∈ {6, 10}, B ∈ {32, 128}, η ∈ {0.02, 0.05}, α = 0.3, 8 seeds) ≤ 0.91·η·n²/B·scale (§9).
    """
    from hidyn.validation.tolerance import Tolerance

    scale = float(np.sum(spec.sigmas ** 2))
    log_term = 1.0 + max(0.0, float(np.log(1.0 / spec.init_scale)))
    if spec.algorithm == "gf" and spec.ratio is None:
        return Tolerance(z=0.0, atol=1e-6 * scale)
    atol = 0.0 if spec.algorithm == "gf" else 0.5 * spec.lr * float(spec.sigmas[0]) * log_term * scale
    z = 0.0
    if spec.algorithm == "sgd":
        atol += 1.0 * spec.lr * spec.d ** 2 / spec.batch * scale
        z = 3.0
    c = 0.0 if spec.ratio is None else 0.3 * scale * log_term / np.sqrt(spec.ratio)
    return Tolerance(z=z, atol=atol, c=c, p=0.5)


# the family contract (hidyn/families/_protocol.py, docs/families.md): this module declares itself
FAMILY = Family(
    model="matrix_sensing",
    spec_class=MatrixSensingSpec,
    methods=METHODS,
    auto_method=auto_method,
    theory_needs_init=THEORY_NEEDS_INIT,
    default_variables=default_variables,
    default_tolerance=default_tolerance,
)
