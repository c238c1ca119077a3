"""One wrapper around :func:`scipy.integrate.solve_ivp` shared by every order-parameter ODE.

Every family's theory reduces to ``dy/dt = f(t, y)`` for a flat float64 state ``y``.  This module owns
what is common: dense output at the requested save times, tolerances recorded in the result, and
divergence detection (a blow-up is reported with its time and a warning instead of NaNs leaking into
results).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

__all__ = ["ODEResult", "integrate", "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_RTOL = 1e-10
DEFAULT_ATOL = 1e-12


@dataclass
class ODEResult:
    """Solution of an order-parameter ODE sampled at the save times.

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        Save times reached (all requested times when ``status == 0``).
    y : ndarray, shape (n_times, n_state)
        State at ``t``.  Rows after a divergence are NaN and ``diverged_at`` is set.
    info : dict
        netCDF-safe attributes: solver, rtol, atol, nfev, status, message, diverged_at (-1 if none).
    """

    t: np.ndarray
    y: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def diverged(self) -> bool:
        return self.info.get("diverged_at", -1.0) >= 0


def integrate(rhs, y0, times, *, method="DOP853", rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL,
              blowup=1e8, max_step=np.inf, name="ODE", admissible=None) -> ODEResult:
    """Integrate ``dy/dt = rhs(t, y)`` from ``times[0]`` and return the state at ``times``.

    Parameters
    ----------
    rhs : callable ``(t, y) -> dy/dt``, y of shape (n_state,)
    y0 : array_like, shape (n_state,)
    times : array_like, shape (n_times,)
        Increasing save times; the integration starts at ``times[0]``.
    method : str
        Any :func:`scipy.integrate.solve_ivp` method; DOP853 for non-stiff problems, LSODA or Radau
        for stiff ones.
    rtol, atol : float
        Tolerances (recorded in ``info``).
    blowup : float
        A state with ``max|y| > blowup`` or non-finite entries is declared diverged: integration stops
        at that time, a RuntimeWarning names it and later rows are NaN.
    name : str
        Used in the warning.
    admissible : dict description -> callable ``y -> float``, optional
        Margins of the state's admissible set (≥ 0 inside; see :mod:`hidyn.admissibility`), each a
        terminal event: the first one to turn negative stops the integration like a blow-up, and its
        description is recorded in ``info["divergence_reason"]`` and the warning.
    """
    times = np.asarray(times, dtype=np.float64)
    y0 = np.asarray(y0, dtype=np.float64).ravel()
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"times must be a non-empty 1-D array, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("times must be non-decreasing")
    if not np.all(np.isfinite(y0)):
        raise ValueError(f"{name}: initial state has non-finite entries")

    reached = [float(times[0])]

    def tracked(t, y):
        # the last time the solver evaluated: the failure time when solve_ivp stops without an event
        reached[0] = max(reached[0], float(t))
        return rhs(t, y)

    def blow(t, y):
        if not np.all(np.isfinite(y)):
            return -1.0
        return blowup - np.max(np.abs(y))

    blow.terminal = True
    events = [blow]
    reasons = [f"|state| > {blowup:g} or non-finite"]
    for desc, margin in (admissible or {}).items():
        def event(t, y, margin=margin):
            if not np.all(np.isfinite(y)):
                return -1.0
            return float(margin(y))

        event.terminal = True
        events.append(event)
        reasons.append(desc)
    if not np.all([float(margin(y0)) >= 0 for margin in (admissible or {}).values()]):
        raise ValueError(f"{name}: the initial state is outside the admissible set "
                         f"({', '.join(d for d, m in (admissible or {}).items() if float(m(y0)) < 0)})")

    # solve_ivp wants strictly increasing t_eval: integrate on the distinct times, then expand
    t_unique, where = np.unique(times, return_inverse=True)
    y = np.full((t_unique.size, y0.size), np.nan)
    y[0] = y0
    info = {"solver": method, "rtol": float(rtol), "atol": float(atol), "nfev": 0, "status": 0,
            "message": "", "diverged_at": -1.0, "divergence_reason": ""}
    if t_unique.size > 1:
        with np.errstate(over="ignore", invalid="ignore"):
            sol = solve_ivp(tracked, (t_unique[0], t_unique[-1]), y0, method=method, t_eval=t_unique,
                            rtol=rtol, atol=atol, events=events, max_step=max_step)
        n = sol.t.size
        y[:n] = sol.y.T
        info.update(nfev=int(sol.nfev), status=int(sol.status), message=str(sol.message))
        hits = [(float(h[0]), i) for i, h in enumerate(sol.t_events or []) if np.size(h)]
        if hits or sol.status < 0:
            t_div, which = min(hits) if hits else (reached[0], 0)
            info["diverged_at"] = t_div
            info["divergence_reason"] = reasons[which] if hits else f"solver failure: {sol.message}"
            y[n:] = np.nan
            # a row at exactly the divergence time may hold an overflowing or inadmissible state
            bad = ~np.all(np.isfinite(y[:n]) & (np.abs(y[:n]) <= blowup), axis=1)
            for margin in (admissible or {}).values():
                bad |= np.array([not (np.all(np.isfinite(row)) and float(margin(row)) >= 0) for row in y[:n]])
            y[:n][bad] = np.nan
            warnings.warn(f"{name} diverged at t = {t_div:.6g} ({info['divergence_reason']}); "
                          f"values after that time are NaN. Lower the learning rate.",
                          RuntimeWarning, stacklevel=2)
    return ODEResult(t=times.copy(), y=y[where], info=info)
