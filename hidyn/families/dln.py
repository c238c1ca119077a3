"""DLN glue: theory methods for :class:`hidyn.models.DLNSpec` (dln.md §3–§5)."""
from __future__ import annotations

import numpy as np

from hidyn.models.dln import DLNSpec, initial_pq

SCALARS = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")


def auto_method(spec: DLNSpec) -> str:
    """Most exact theory available: the closed form in the population setting, else the DMFT."""
    return "closed_form" if spec.ratio is None else "dmft"


def closed_form(spec: DLNSpec, times, **options):
    """Exact population / whitened-design gradient flow (dln.md §3), d → ∞ averages."""
    from hidyn.solvers.closed_form.dln import curves

    if options:
        raise ValueError(f"unknown option(s) {sorted(options)} for method 'closed_form'")
    p0, q0 = initial_pq(spec)
    out = curves(times, sparsity=spec.sparsity, teacher=spec.teacher, noise=spec.noise, p0=p0, q0=q0,
                 clock=spec.clock, ratio=spec.ratio)
    attrs = {"setting": "population" if spec.ratio is None else "whitened design X^T X = ratio I",
             "dynamics": "gradient flow"}
    return {k: (("time",), out[k]) for k in SCALARS}, attrs


METHODS = {"closed_form": closed_form}


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
    * ``gd``: GD departs from GF by O(η) (dln.md §3); measured max |GD − GF| ≈ 0.04·η·scale on the
      losses and ≈ 0.19·η·scale on ‖β‖²/d for η ∈ {0.01, 0.05} at d = 2048 (scale = ρ + σ², the
      t = 0 loss) → atol 0.5·η·scale (2.5× margin).
    * ``sgd`` (online, ``ratio=None``): adds the gradient-noise bias O(η·d/B) (dln.md §2.2); measured
      ≈ 0.11·(ηd/B)·scale for ηd/B ∈ [0.0025, 0.02] → atol (0.5·η + 0.25·ηd/B)·scale.
    z = 3 standard errors of the seed mean on top.
    """
    from hidyn.validation.tolerance import Tolerance

    scale = spec.sparsity + spec.noise ** 2
    if spec.algorithm == "gf":
        return Tolerance(z=3.0, atol=1e-6 * scale)
    eta_term = 0.5 * spec.lr
    if spec.algorithm == "sgd":
        eta_term += 0.25 * spec.lr * spec.d / spec.batch
    return Tolerance(z=3.0, atol=eta_term * scale)
