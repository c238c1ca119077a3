"""Deep-linear glue: the infinite-width theories of :class:`DeepLinearSpec` (deep_linear.md §3–§4).

* ``"dmft"`` – the μP feature-learning limit (§4), deterministic, per learning rate of the grid;
* ``"ntk"`` – the NTP kernel limit (§3), expectations over the Gaussian initial function;
* ``"sp_limit"`` – SP at fixed η: the kernel diverges like η(L+1)n, so the n → ∞ limit blows up at the
  first step for every η > 0; reported (NaN after t = 0, ``diverged_at`` = 1, a warning), never hidden.

``auto_method`` picks by the parametrisation's effective exponents (eq. 2.1); other exponents raise
NotImplementedError.  Time is the GD step count; requested times are rounded to whole steps.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from hidyn.families._protocol import Family
from hidyn.models.deep_linear import DeepLinearSpec

#: compare(sim) computes the theory from the spec alone (the training set is fixed by data_seed)
THEORY_NEEDS_INIT = False

#: the theory's diverged runs are those whose loss passes the Monte-Carlo driver's threshold
BLOWUP_FACTOR = 1e8


def auto_method(spec: DeepLinearSpec) -> str:
    """dmft for μP, ntk for NTP, sp_limit for SP (by effective exponents, deep_linear.md §2)."""
    regime = spec.regime
    if regime is None:
        raise NotImplementedError(
            f"no infinite-width theory for the exponents {spec.parametrization!r}: the theory covers "
            f"exponents equivalent (p = 2(a+b), q = c+2a, deep_linear.md eq. 2.1) to 'sp', 'ntp' or 'mup'")
    return {"mup": "dmft", "ntp": "ntk", "sp": "sp_limit"}[regime]


def _steps(times):
    steps = np.rint(np.asarray(times, dtype=np.float64)).astype(np.int64)
    steps = np.unique(steps)
    return steps


def _check_spec(spec: DeepLinearSpec, method: str, regime: str):
    if spec.regime != regime:
        raise ValueError(f"method={method!r} is the {regime!r} limit but parametrization="
                         f"{spec.parametrization!r} has other effective exponents; use method='auto'")
    if spec.algorithm != "gd":
        raise NotImplementedError(f"algorithm={spec.algorithm!r}: the infinite-width theory is written for "
                                  f"full-batch GD (deep_linear.md §3–§4); minibatch SGD has only the "
                                  f"Monte-Carlo")


def _warn_diverged(div, lrs, method):
    if np.any(div >= 0):
        bad = lrs[div >= 0]
        warnings.warn(f"{method}: {bad.size} of {lrs.size} learning rates diverged (loss grew by "
                      f">{BLOWUP_FACTOR:.0e}×; smallest such η = {bad.min():.4g}); their later values are "
                      f"NaN and attrs['diverged_at'] records the step", RuntimeWarning, stacklevel=4)


def dmft(spec: DeepLinearSpec, times, *, kernels: bool = True, two_time: bool = False):
    """μP infinite-width limit (deep_linear.md §4) at each learning rate of ``spec.lr``.

    Parameters
    ----------
    spec : DeepLinearSpec
        μP (or equivalent exponents), full-batch GD.
    times : array_like
        Step counts (rounded to integers).
    kernels : bool
        Return the equal-time feature and gradient kernels and the training outputs.
    two_time : bool
        Also return the two-time kernels ``feature_kernel_2t`` (lr, hidden, time, time_, input, input_)
        = H_ℓ(t, t') and ``gradient_kernel_2t`` (lr, hidden, time, time_) = G_ℓ(t, t') at the saved steps.

    Returns
    -------
    data_vars : dict
        ``train_loss``, ``test_loss``, ``alignment`` (time, lr); ``weight_change`` (time, lr, layer);
        ``end_to_end`` (time, lr, input); with ``kernels``: ``feature_kernel`` (time, lr, hidden, input,
        input_), ``gradient_kernel`` (time, lr, hidden), ``train_output`` (time, lr, sample).
    attrs : dict
        ``time`` (the steps), ``coords`` and ``diverged_at`` (per lr, −1 if none).
    """
    from hidyn.solvers.dmft.deep_linear import solve_mup

    _check_spec(spec, "dmft", "mup")
    steps = _steps(times)
    S_hat, c_hat, yy, w_star = spec.moments()
    X, _, _ = spec.dataset()
    Xh = X / math.sqrt(spec.d_in)
    lrs = spec.lrs
    T = int(steps[-1])
    # memory of one solve (deep_linear.md §4): source covariances and coefficients O(L T² d²)
    from hidyn.solvers.mc.driver import check_memory

    d, L1, N = spec.d_in, spec.depth + 1, (T + 1) * (spec.d_in + 1)
    check_memory(8 * L1 * (N * N + (T + 1) * N * (d + 1) + (T + 1) ** 2 * (d * d + 1)),
                 f"the μP DMFT with {T} steps, d_in={d}, depth={spec.depth}",
                 "fewer steps (the cost grows like steps³·d_in³, memory like steps²·d_in²)")
    runs = [solve_mup(S_hat, c_hat, yy, w_star, spec.depth, lr, T, X_hat=Xh, return_kernels=two_time)
            for lr in lrs]
    div = np.array([r["diverged_at"] for r in runs], dtype=np.float64)
    _warn_diverged(div, lrs, "dmft")

    def stack(key):
        return np.stack([r[key][steps] for r in runs], axis=1)     # (time, lr, ...)

    data = {"train_loss": (("time", "lr"), stack("train_loss")),
            "test_loss": (("time", "lr"), stack("test_loss")),
            "alignment": (("time", "lr"), stack("alignment")),
            "weight_change": (("time", "lr", "layer"), stack("weight_change")),
            "end_to_end": (("time", "lr", "input"), stack("end_to_end"))}
    if kernels:
        data["feature_kernel"] = (("time", "lr", "hidden", "input", "input_"), stack("feature_kernel"))
        data["gradient_kernel"] = (("time", "lr", "hidden"), stack("gradient_kernel"))
        data["train_output"] = (("time", "lr", "sample"), stack("train_output"))
    coords = {"lr": lrs, "layer": np.arange(spec.n_layers), "hidden": np.arange(spec.depth + 1)}
    if two_time:
        ix = np.ix_(steps, steps)

        def two(key, diverged_at):
            arr = np.array(key[:, ix[0], ix[1]])                 # (hidden, time, time_, ...)
            if diverged_at >= 0:                                # entries from the diverged step on
                late = steps >= diverged_at
                arr[:, late] = np.nan
                arr[:, :, late] = np.nan
            return arr

        data["feature_kernel_2t"] = (("lr", "hidden", "time", "time_", "input", "input_"),
                                     np.stack([two(r["H"], r["diverged_at"]) for r in runs]))
        data["gradient_kernel_2t"] = (("lr", "hidden", "time", "time_"),
                                      np.stack([two(r["G"], r["diverged_at"]) for r in runs]))
        coords["time_"] = steps.astype(np.float64)
    return data, {"time": steps.astype(np.float64), "coords": coords, "diverged_at": div,
                  "theory": "muP infinite-width limit, discrete-time GD (deep_linear.md §4)"}


def ntk(spec: DeepLinearSpec, times):
    """NTP kernel limit (deep_linear.md eq. 3.4–3.5) at each learning rate of ``spec.lr``.

    Returns ``train_loss``, ``test_loss`` (expectations over the Gaussian initial function),
    ``weight_change`` (0: lazy), ``end_to_end`` (the mean map), dims (time, lr[, …]).
    """
    from hidyn.solvers.closed_form.deep_linear_ntk import kernel_gd, ntp_kernel_constant

    _check_spec(spec, "ntk", "ntp")
    steps = _steps(times)
    S_hat, c_hat, yy, w_star = spec.moments()
    lrs = spec.lrs
    k = lrs * ntp_kernel_constant(spec.depth)
    out = kernel_gd(S_hat, c_hat, yy, w_star, k, steps)
    train, test, b = out["train_loss"], out["test_loss"], out["end_to_end"]
    lam_max = float(np.linalg.eigvalsh(S_hat)[-1])
    loss0 = np.abs(train[0])
    bad = ~np.isfinite(train) | (np.abs(train) > BLOWUP_FACTOR * (loss0 + 1.0))
    div = np.where(bad.any(axis=0), steps[np.argmax(bad, axis=0)], -1).astype(np.float64)
    for r in range(lrs.size):
        if div[r] >= 0:
            after = steps >= div[r]
            train[after, r] = test[after, r] = np.nan
            b[after, r] = np.nan
    _warn_diverged(div, lrs, "ntk")
    wc = np.zeros((steps.size, lrs.size, spec.n_layers))
    wc[np.isnan(train)] = np.nan
    data = {"train_loss": (("time", "lr"), train), "test_loss": (("time", "lr"), test),
            "weight_change": (("time", "lr", "layer"), wc),
            "end_to_end": (("time", "lr", "input"), b)}
    coords = {"lr": lrs, "layer": np.arange(spec.n_layers)}
    return data, {"time": steps.astype(np.float64), "coords": coords, "diverged_at": div,
                  "ntk_constant": ntp_kernel_constant(spec.depth), "lambda_max": lam_max,
                  "lr_max_stable": 2.0 / (ntp_kernel_constant(spec.depth) * lam_max),
                  "theory": "NTP kernel limit K = lr (L+2) I (deep_linear.md §3)"}


def sp_limit(spec: DeepLinearSpec, times):
    """SP at fixed η > 0: the infinite-width limit diverges at the first step (deep_linear.md §3).

    The loss at t = 0 is the Gaussian-process value (as for NTP); every later value is NaN and
    ``diverged_at`` = 1 for every η.  ``sp_lr_max_at_width`` records the finite-width kernel stability
    bound 2/((1 + (L+1)n)λ_max) at the spec's width: SP's usable η shrinks like 1/n.
    """
    from hidyn.solvers.closed_form.deep_linear_ntk import kernel_gd, sp_lr_max

    _check_spec(spec, "sp_limit", "sp")
    steps = _steps(times)
    S_hat, c_hat, yy, w_star = spec.moments()
    lrs = spec.lrs
    out = kernel_gd(S_hat, c_hat, yy, w_star, np.zeros(lrs.size), steps[:1])
    train = np.full((steps.size, lrs.size), np.nan)
    test = np.full((steps.size, lrs.size), np.nan)
    if steps[0] == 0:
        train[0], test[0] = out["train_loss"][0], out["test_loss"][0]
    div = np.ones(lrs.size)
    lam_max = float(np.linalg.eigvalsh(S_hat)[-1])
    warnings.warn("parametrization='sp' at fixed lr: the tangent kernel grows like lr·(L+1)·width, so the "
                  "infinite-width limit of GD diverges at the first step for every lr > 0 (deep_linear.md §3); "
                  "losses after t = 0 are NaN.  At finite width the stable lr is about "
                  f"{sp_lr_max(spec.width, spec.depth, lam_max):.3g} (width {spec.width}) and shrinks like 1/width.",
                  RuntimeWarning, stacklevel=3)
    data = {"train_loss": (("time", "lr"), train), "test_loss": (("time", "lr"), test)}
    return data, {"time": steps.astype(np.float64), "coords": {"lr": lrs}, "diverged_at": div,
                  "sp_lr_max_at_width": float(sp_lr_max(spec.width, spec.depth, lam_max)),
                  "theory": "SP fixed-lr limit: diverges at step 1 (deep_linear.md §3)"}


METHODS = {"dmft": dmft, "ntk": ntk, "sp_limit": sp_limit}


def default_variables(spec: DeepLinearSpec):
    """μP: the losses and the weight changes; NTP: the two expected losses.

    ``alignment`` is returned by both sides but not compared by default: it is the direction of β, and
    early on (small η·t) a finite-width run's β is dominated by its random O(√(d/n)) initial part, so
    the seed mean of the cosine is biased by O(1) at moderate widths (measured: 0.66 at n = 128, t = 1,
    η = 0.1).  Under NTP a run's alignment is not a function of the mean map, and the lazy weight
    changes vanish only like width^(-1/2)."""
    if spec.regime == "mup":
        return ["train_loss", "test_loss", "weight_change"]
    return ["train_loss", "test_loss"]


#: finite-width allowance c·n^(−1/2) of default_tolerance, see there
C_WIDTH = 1.0


def default_tolerance(spec: DeepLinearSpec, sim=None):
    """4·SEM + C_WIDTH·n^(−1/2) + 0.05·|theory| for a seed mean at width n against the n = ∞ theory.

    * z = 4: a handful of seeds (4–8) gives an uncertain SEM (Student t), at many correlated points.
    * The seed mean differs from the limit by a bias of order 1/n (the O(n^{-1/2}) fluctuations of the
      kernels enter the loss quadratically); the seed spread of a single run is O(n^{-1/2}) and is
      covered by the SEM.  Measured (docs/theory/deep_linear.md §7): at n = 256–1024, depth 1–2,
      η ≤ 1, 8 seeds, the largest |mean − theory| is below 0.02 on losses of scale 0.5 and below
      0.04 on weight changes of scale 0.6; C_WIDTH·n^(−1/2) = 0.03–0.06 plus 5 % of the value covers
      that with a ≈ 2× margin at n = 256.  (p = 1/2 although the bias is O(1/n): a deliberate, looser
      allowance at the widths CI affords.)
    """
    from hidyn.validation.tolerance import Tolerance

    return Tolerance(z=4.0, c=C_WIDTH, p=0.5, rtol=0.05)


# the family contract (hidyn/families/_protocol.py, docs/families.md): this module declares itself
FAMILY = Family(
    model="deep_linear",
    spec_class=DeepLinearSpec,
    methods=METHODS,
    auto_method=auto_method,
    theory_needs_init=THEORY_NEEDS_INIT,
    default_variables=default_variables,
    default_tolerance=default_tolerance,
)
