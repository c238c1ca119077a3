"""Single-index glue: the (m, s, q) ODE of docs/theory/single_index.md §2 as the theory of :class:`SingleIndexSpec`.

``hidyn.compare(sim)`` starts the ODE from the simulation's seed-mean t = 0 overlaps
(``THEORY_NEEDS_INIT``): with ``m0=None`` each finite-d run starts from its own random overlap, and the
ODE must start where the runs start.  Without a simulation the start is ``spec.init``, ``spec.m0``, or
m₀ = 1/√d (the typical overlap of a random start, note §4).
"""
from __future__ import annotations

import math

import numpy as np

from hidyn.families._protocol import Family
from hidyn.models.single_index import SIGMA_GEOMETRIES, SingleIndexSpec

#: compare(sim) passes the simulation to the theory as ``init``
THEORY_NEEDS_INIT = True

VARIABLES = ("m", "m_spike", "q", "cosine", "test_loss", "objective")


def auto_method(spec: SingleIndexSpec) -> str:
    """The ODE of note §2 is the only (and most exact) d → ∞ theory of this family."""
    return "ode"


def initial_state(spec: SingleIndexSpec, init=None) -> tuple[dict | None, float | None, str]:
    """Start of the ODE as ``(init_dict, m0, description)`` for :func:`solvers.ode.single_index.solve`.

    Parameters
    ----------
    spec : SingleIndexSpec
    init : xarray.Dataset or dict, optional
        A simulation (its seed-mean overlaps at the first saved time are used) or ``{"m", "s", "q"}``.

    Notes
    -----
    On the constrained geometries only (m, s) are taken from a simulation and q follows from the
    constraint (q = 1, or q = 1 − κs² on the Σ-geometries): the seed mean of 1 − κs_i² is not
    1 − κ(mean s)², but the ODE lives on the constraint (note §2, integration note).  The seed mean of
    realisable states is realisable (the PSD condition of note §1 is convex), so the start is valid.
    """
    if init is not None and not isinstance(init, dict):
        first = init.isel(time=0)
        m = float(first["m"].mean("seed")) if "seed" in first["m"].dims else float(first["m"])
        s = float(first["m_spike"].mean("seed")) if "seed" in first["m_spike"].dims else float(first["m_spike"])
        start = {"m": m, "s": s}
        if spec.geometry == "plain":
            start["q"] = float(first["q"].mean("seed")) if "seed" in first["q"].dims else float(first["q"])
        return start, None, "seed-mean t=0 overlaps of the simulation"
    if isinstance(init, dict):
        return dict(init), None, "explicit init overlaps (theory argument)"
    if spec.init is not None:
        return dict(spec.init), None, "explicit init overlaps (spec.init)"
    if spec.m0 is not None:
        return None, spec.m0, "m0 (note §1 convention: s0 = c m0, q0 by geometry)"
    m0 = 1.0 / math.sqrt(spec.d)
    if spec.geometry in SIGMA_GEOMETRIES:
        m0 = min(m0, 1.0 / math.sqrt(spec.R))
    return None, m0, "m0 = 1/sqrt(d), the typical overlap of a random start (note §4)"


def ode(spec: SingleIndexSpec, times, *, init=None, method: str = "DOP853", rtol: float = 1e-10,
        atol: float = 1e-12):
    """Integrate the (m, s, q) ODE of note §2 at ``times`` and evaluate the observables.

    Parameters
    ----------
    spec : SingleIndexSpec
    times : array_like, shape (n_times,)
        Output times t = steps/d.
    init : xarray.Dataset or dict, optional
        See :func:`initial_state`.
    method, rtol, atol :
        Passed to :func:`hidyn.solvers.ode.single_index.solve`.

    Returns
    -------
    data_vars : dict name → (("time",), ndarray (n_times,))
        ``m``, ``m_spike``, ``q``, ``cosine``, ``test_loss``, ``objective``.
    attrs : dict
        ``ode_*`` solver information (``ode_diverged_at`` = −1 if none, ``ode_t_half``) and
        ``init_source``.
    """
    from hidyn.solvers.ode.single_index import solve

    start, m0, source = initial_state(spec, init)
    sol = solve(**spec.ode_kwargs(), m0=m0, init=start, times=np.asarray(times, dtype=np.float64),
                method=method, rtol=rtol, atol=atol)
    data = {name: (("time",), np.asarray(sol[name], dtype=np.float64)) for name in VARIABLES}
    attrs = {f"ode_{k}": v for k, v in sol["info"].items()}
    attrs["init_source"] = source
    return data, attrs


METHODS = {"ode": ode}


def inadmissible(spec: SingleIndexSpec):
    """Admissibility check of simulated overlaps for the Monte-Carlo driver (hidyn.admissibility).

    A seed is stopped as diverged when (m, s, q) is infeasible for a vector w (the Gram matrix of
    (w, θ*, u) not PSD beyond round-off: |m| > 1 or |cosine| > 1 on the sphere).
    """
    from hidyn.admissibility import FEASIBILITY_RTOL_MC, single_index_margin

    c = float(spec.cos_angle)

    def check(obs, first):
        margin = single_index_margin(obs["m"], obs["m_spike"], obs["q"], c, rtol=FEASIBILITY_RTOL_MC)
        return {"overlaps (m, s, q) infeasible for any vector w (|m| > 1 on the sphere, Gram matrix of "
                "(w, theta*, u) not PSD)": margin < 0}

    return check


def default_variables(spec: SingleIndexSpec):
    """Every order parameter and both population losses (all are functions of (m, s, q))."""
    return list(VARIABLES)


#: finite-size bias allowance (C_ABS + C_REL·|theory|)/√d, see :func:`default_tolerance`
C_ABS = 0.5
C_REL = 1.5


def default_tolerance(spec: SingleIndexSpec, sim=None):
    """Tolerance of a finite-d seed mean against the ODE: 4·SEM + (C_ABS + C_REL·|theory|)/√d.

    * z = 4: the SEM of 8–16 seeds is itself uncertain (Student t with 7–15 dof: P(|t| > 4) ≈ 0.1–0.5 %)
      and every variable is tested at ~30–100 correlated save times.
    * Finite-size bias.  A single run deviates from the ODE by O(η/√d) (note §2; measured seed spread
      of m ≈ 1.1/√d for h₂ at η = 0.2), which the SEM covers.  The seed *mean* is biased by O(1/d)
      (note P8): the ODE drops the O(h²) = O(d⁻²)-per-step terms of the retraction and the
      nonlinear response to the O(1/√d) fluctuations.  Measured with the exact reduced chain
      (400 runs, d = 256 and 1024) on the registered validation cases (h₂ with and without an aligned
      spike κ = 5, misaligned spike φ = 45° on ``sphere`` and ``sigma_sphere``, ReLU, tanh, linear;
      η ∈ [0.05, 0.5]): the largest excess over 3·SEM, times √d, is 0.41 on the order parameters
      (q, misaligned spike on ``sigma_sphere``, d = 256) and 9.1 on test losses of scale 12–15 (spiked
      h₂, where E[σ²] grows like (1 + κs²)²); ReLU, tanh and linear show none.  The bias shrinks like
      1/d (×3–20 from d = 256 to 1024).  With C_ABS = 0.5 and C_REL = 1.5 the measured excess uses at
      most 54 % of (C_ABS + C_REL·|theory|)/√d at any time point (d = 256, misaligned-spike test loss):
      a ≈ 2× margin at d = 256, more above it.
    * Not covered: runs started near the equator (m₀ ~ 1/√d), whose run-to-run spread is O(1) (note §4):
      compare escape-time medians with :func:`hidyn.escape_time` instead of seed means.

    Returns
    -------
    Tolerance
        ``Tolerance(z=4, c=C_ABS, p=0.5, rtol=C_REL/√d)``.
    """
    from hidyn.validation.tolerance import Tolerance

    return Tolerance(z=4.0, c=C_ABS, p=0.5, rtol=C_REL / math.sqrt(spec.d))


# the family contract (hidyn/families/_protocol.py, docs/families.md): this module declares itself
FAMILY = Family(
    model="single_index",
    spec_class=SingleIndexSpec,
    methods=METHODS,
    auto_method=auto_method,
    theory_needs_init=THEORY_NEEDS_INIT,
    default_variables=default_variables,
    default_tolerance=default_tolerance,
    inadmissible=inadmissible,
)
