"""Gradient-through-theory optimisation of learning-rate schedules (docs/theory/linear.md §8).

:func:`optimize_schedule` finds the per-step learning rates that minimise the final expected test loss
of online SGD on the linear model, by L-BFGS-B (``scipy.optimize.minimize``) on the exact gradient of
the differentiable recursion (``jax.grad`` through :mod:`hidyn.solvers.closed_form.linear_jax`).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["optimize_schedule"]


def optimize_schedule(model="linear", *, steps: int, lr_cap: float | None = None, init=None, maxiter: int = 500,
                      tol: float = 1e-12, **params) -> dict:
    """Loss-minimising learning-rate schedule for online SGD on the linear model, found by gradient.

    Parameters
    ----------
    model : str or LinearSpec
        ``"linear"`` (only the linear family has a differentiable theory) or a spec; ``params`` override it.
    steps : int
        Budget K of SGD steps (the schedule has K entries).
    lr_cap : float, optional
        Upper box bound on every η_k; default 2/((1 + 1/B)λ_max), beyond which one step amplifies the
        top mode (linear.md §8).
    init : array_like (K,), optional
        Starting schedule; default the constant 0.5·η_max(B) (stability bound, §3).
    maxiter, tol : passed to L-BFGS-B.
    **params
        Spec fields (``d``, ``spectrum``, ``teacher``, ``noise``, ``batch_size``, …); ``algorithm`` must
        be ``"sgd"``.

    Returns
    -------
    dict
        ``schedule`` (K,) float64, ``final_loss`` (the recursion's L_K for it), ``constant_lr`` and
        ``constant_loss`` (the best constant schedule at the same budget, by bounded scalar search),
        ``n_iterations``, ``converged``, ``message``, ``spec`` (a spec with ``lr=schedule``, ready for
        :func:`hidyn.simulate` to check it by Monte-Carlo).
    """
    from scipy.optimize import minimize, minimize_scalar

    from hidyn import models
    from hidyn.families.linear import initial_mode_errors
    from hidyn.models._base import check_int, check_real
    from hidyn.models.linear import eigenvalues, sgd_stability_bound
    from hidyn.solvers.closed_form.linear import sgd_recursion
    from hidyn.solvers.closed_form.linear_jax import final_loss_and_grad

    spec = models.get(model, **params)
    if spec.model != "linear":
        raise NotImplementedError(f"optimize_schedule needs a differentiable theory; model={spec.model!r} has none "
                                  f"(only 'linear')")
    if spec.algorithm != "sgd":
        raise ValueError(f"algorithm={spec.algorithm!r} is invalid for optimize_schedule: must be 'sgd' (the exact "
                         f"recursion of linear.md §2)")
    steps = check_int("steps", steps, 1)
    lam = eigenvalues(spec)
    v0 = initial_mode_errors(spec)
    B = spec.batch_size
    cap = 2.0 / ((1.0 + 1.0 / B) * float(lam.max())) if lr_cap is None else check_real("lr_cap", lr_cap, 0.0,
                                                                                      lo_open=True)
    bound = sgd_stability_bound(lam, B)
    x0 = np.full(steps, min(0.5 * bound, cap)) if init is None else np.asarray(init, dtype=np.float64)
    if x0.shape != (steps,) or not np.all(np.isfinite(x0)):
        raise ValueError(f"init is invalid: must be {steps} finite learning rates (got shape {x0.shape})")
    f = final_loss_and_grad(lam, v0, B, spec.noise, log=True)
    res = minimize(f, np.clip(x0, 0.0, cap), jac=True, method="L-BFGS-B", bounds=[(0.0, cap)] * steps,
                   options={"maxiter": maxiter, "ftol": tol, "gtol": 1e-10})
    schedule = np.asarray(res.x, dtype=np.float64)

    def const(log_eta):
        out = sgd_recursion(lam, v0, np.full(steps, math.exp(log_eta)), B, spec.noise, [steps])["test_loss"][0]
        return math.log(out) if np.isfinite(out) else 1e3

    c = minimize_scalar(const, bounds=(math.log(bound) - 10.0, math.log(0.999 * bound)), method="bounded",
                        options={"xatol": 1e-5})
    final = float(sgd_recursion(lam, v0, schedule, B, spec.noise, [steps])["test_loss"][0])
    return {"schedule": schedule, "final_loss": final, "constant_lr": math.exp(c.x),
            "constant_loss": math.exp(c.fun), "n_iterations": int(res.nit), "converged": bool(res.success),
            "message": str(res.message), "spec": spec.replace(lr=schedule), "lr_max": bound, "lr_cap": cap}
