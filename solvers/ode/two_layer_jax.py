"""JAX/diffrax engine for the two-layer order-parameter ODEs (docs/theory/teacher_student.md §3), erf activation.

The same equations as :mod:`hidyn.solvers.ode.two_layer` (same Schur-complement state variables
S = Q − R T⁻¹ Rᵀ, R, v; same closed forms of §4.1 with the I4 term contracted through the tilted
covariance, see :mod:`hidyn.solvers.ode._erf_kernels`), written in ``jax.numpy`` and integrated with
``diffrax`` (Dopri8, the 8th-order Dormand–Prince pair of scipy's DOP853, PID step control).  What this
engine adds over the scipy one:

* :func:`solve_batch` — ``vmap`` over a sweep of learning rates and/or initial overlaps (one compiled
  solve for the whole batch; on a GPU the batch runs in parallel);
* :func:`grad_test_loss` — ε_g at a final time and its gradient with respect to η and the initial
  overlaps Q0, R0 by reverse-mode autodiff through the solver (diffrax's checkpointed adjoint);
* device placement: the arrays live on JAX's default device (a GPU when one is visible).

Float64 is switched on with the scoped ``jax.enable_x64(True)`` inside every public function; the
global JAX configuration is never touched.  Only erf (g = erf(x/√2)) is implemented: the other
activations use ReLU's Plackett path integral or Gauss–Hermite tensor quadrature, which exist only in
the numpy engine (``NotImplementedError`` says so).
"""
from __future__ import annotations

import functools
import math
import warnings

import numpy as np

__all__ = ["available", "solve", "solve_batch", "grad_test_loss"]

_BLOWUP = 1e8
#: up to this many I4 terms K²(K+M)² the contraction is one vmapped expression, beyond it a lax.map
_VMAP_TERMS = 4_000_000


def available() -> bool:
    """True if jax and diffrax can be imported (the engine's only extra dependencies)."""
    try:
        import diffrax  # noqa: F401
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _import():
    try:
        import diffrax
        import jax
    except ImportError as exc:  # pragma: no cover - exercised only without jax
        raise ImportError("engine='jax' needs jax and diffrax: pip install 'hidyn[jax]'") from exc
    return jax, diffrax


def _check_activation(activation):
    from hidyn.activations import get_activation

    act = get_activation(activation)
    if act.name != "erf":
        raise NotImplementedError(
            f"the JAX engine of the two-layer ODE implements the erf closed forms only (docs/theory/teacher_student.md "
            f"§4.1); activation={act.name!r} needs ReLU's Plackett integral or Gauss–Hermite quadrature, "
            f"which exist in the scipy engine (engine='scipy')")
    return act


# ------------------------------------------------------------------------------------------------
# right-hand side (jax.numpy), same formulas as _erf_kernels
# ------------------------------------------------------------------------------------------------
def _omega(jnp, S, R, T, tinv):
    rt = R @ tinv
    Q = S + rt @ R.T
    Q = 0.5 * (Q + Q.T)
    top = jnp.concatenate([Q, R], axis=1)
    bot = jnp.concatenate([R.T, T], axis=1)
    return jnp.concatenate([top, bot], axis=0), rt


def _drift(jnp, jax, state, p):
    """d(S, R, v)/dt for erf; ``p`` holds lr, lr_second, noise, batch_size, T, tinv, A, train (static)."""
    S, R, v = state
    K = S.shape[0]
    om, rt = _omega(jnp, S, R, p["T"], p["tinv"])
    c = jnp.concatenate([v, -p["A"]])
    d = 1.0 + jnp.diagonal(om)
    two_pi = 2.0 / math.pi
    # S3(i, b) = Σ_c c_c I3(i, b, c) = d_i (W Ω)_ib − Ω_ib Σ_c W_ic Ω_ic   (_erf_kernels docstring)
    di = d[:K]
    oi = om[:K]
    W = two_pi * c[None, :] / (di[:, None] * jnp.sqrt(di[:, None] * d[None, :] - oi * oi))
    s3 = di[:, None] * (W @ om) - oi * jnp.sum(W * oi, axis=1)[:, None]

    def asin(x):
        return jnp.arcsin(jnp.clip(x, -1.0, 1.0))

    def quad_pair(i, k):
        # Σ_ab c_a c_b I4(i, k, a, b) through the Gaussian tilt by g'(u_i) g'(u_k)
        m11, m22, m12 = 1.0 + om[i, i], 1.0 + om[k, k], om[i, k]
        det = m11 * m22 - m12 * m12
        x, y = om[:, i], om[:, k]
        pv = (m22 * x - m12 * y) / det
        qv = (m11 * y - m12 * x) / det
        ct = om - jnp.outer(x, pv) - jnp.outer(y, qv)
        r = 1.0 / jnp.sqrt(1.0 + jnp.diagonal(ct))
        return (4.0 / math.pi ** 2) / jnp.sqrt(det) * (c @ asin(ct * jnp.outer(r, r)) @ c)

    idx = jnp.arange(K)
    L = om.shape[0]
    row = jax.vmap(quad_pair, in_axes=(None, 0))
    if K * K * L * L <= _VMAP_TERMS:
        quad = jax.vmap(row, in_axes=(0, None))(idx, idx)      # small: one batched expression
    else:
        quad = jax.lax.map(lambda i: row(i, idx), idx)         # large: K (K+M)² floats live per step
    quad = 0.5 * (quad + quad.T)
    dq = di[:, None] * di[None, :] - om[:K, :K] ** 2
    j2 = two_pi / jnp.sqrt(dq)
    eta2 = p["lr"] ** 2 / p["batch_size"]
    vs = v[:, None] * s3[:, :K]
    dQ = eta2 * jnp.outer(v, v) * (quad + p["noise"] ** 2 * j2) - p["lr"] * (vs + vs.T)
    dR = -p["lr"] * v[:, None] * s3[:, K:]
    cross = dR @ rt.T
    dS = dQ - cross - cross.T
    if p["train"]:
        i2 = two_pi * asin(oi / jnp.sqrt(di[:, None] * d[None, :]))
        dv = -p["lr_second"] * (i2 @ c)
    else:
        dv = jnp.zeros_like(v)
    return (0.5 * (dS + dS.T), dR, dv)


def _test_loss(jnp, S, R, v, T, tinv, A):
    """ε_g = ½E[(ŷ − y)²] for erf (note §5): (1/π) Σ_ab c_a c_b arcsin(Ω_ab/√((1+Ω_aa)(1+Ω_bb)))."""
    om, _ = _omega(jnp, S, R, T, tinv)
    d = 1.0 + jnp.diagonal(om)
    c = jnp.concatenate([v, -A])
    i2 = jnp.arcsin(jnp.clip(om / jnp.sqrt(d[:, None] * d[None, :]), -1.0, 1.0))
    return (c @ i2 @ c) / math.pi


# ------------------------------------------------------------------------------------------------
# input checking (shared with the scipy engine)
# ------------------------------------------------------------------------------------------------
def _prepare(Q0, R0, T, v0, A, activation, times, lr, lr_second, train_second_layer, noise, batch_size,
             rtol, atol):
    from hidyn.solvers.ode import two_layer as TL

    _check_activation(activation)
    lr_, lr_second, train, noise, batch_size = TL._check_rates(lr, lr_second, train_second_layer, noise,
                                                               batch_size)
    Q0, R0, T, v0, A, _ = TL._check_overlaps(Q0, R0, T, v0, A)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"times must be a non-empty 1-D array of finite values, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("times must be non-decreasing")
    rtol = TL._check_real(rtol, "rtol", low=0.0, low_open=True)
    atol = TL._check_real(atol, "atol", low=0.0, low_open=True)
    tinv = TL._t_inverse(T)
    if tinv is None:
        raise ValueError("the JAX engine integrates S = Q − R T⁻¹ Rᵀ and needs an invertible T "
                         "(condition number <= 1e10); use engine='scipy' with variables='overlaps'")
    return Q0, R0, T, v0, A, times, lr_, lr_second, train, noise, batch_size, rtol, atol, tinv


@functools.lru_cache(maxsize=32)
def _compiled(K, M, train, n_times, rtol, atol, max_steps, batched):
    """jit-compiled solve, cached on everything static, so a sweep or repeated call compiles once.

    Returns f(ts, lr, S0, R0, v0, T, tinv, A, lr_second, noise, batch_size) -> ((S, R, v) at ts, result);
    with ``batched`` it is vmapped over (lr, S0, R0, v0).  Called inside ``jax.enable_x64(True)``.
    """
    jax, diffrax = _import()
    import jax.numpy as jnp

    def f(t, y, args):
        lr, T, tinv, A, lr_second, noise, batch_size = args
        p = {"lr": lr, "T": T, "tinv": tinv, "A": A, "lr_second": lr_second, "noise": noise,
             "batch_size": batch_size, "train": train}
        return _drift(jnp, jax, y, p)

    term = diffrax.ODETerm(f)

    def run(ts, lr, S0, R0, v0, T, tinv, A, lr_second, noise, batch_size):
        if n_times == 1:
            return (S0[None], R0[None], v0[None]), jnp.asarray(0)
        sol = diffrax.diffeqsolve(
            term, diffrax.Dopri8(), t0=ts[0], t1=ts[-1], dt0=None, y0=(S0, R0, v0),
            args=(lr, T, tinv, A, lr_second, noise, batch_size), saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
            throw=False)
        return sol.ys, sol.result._value

    if batched:
        run = jax.vmap(run, in_axes=(None, 0, 0, 0, 0, None, None, None, None, None, None))
    return jax.jit(run)


def _finish(ys, times, where, T, tinv, v0, A, train, info_base, result):
    """Host-side: Q from S (clipped to the PSD cone, recorded), ε_g, divergence rows → NaN.

    Members that diffrax stopped early (``result`` ≠ 0, warned about by the caller) get NaN rows from the
    first unreached save time on, without being reported as diverged.
    """
    from hidyn.observables import two_layer_test_loss, two_layer_train_loss

    S, R, v = (np.asarray(x)[:, where] for x in ys)          # (n, n_t, ...): expand repeated times
    lead = S.shape[:-3]
    y = np.concatenate([S.reshape(S.shape[:-2] + (-1,)), R.reshape(R.shape[:-2] + (-1,)), v], axis=-1)
    finite = np.all(np.isfinite(y) & (np.abs(y) <= _BLOWUP), axis=-1)        # (..., n_t)
    bad_rows = ~np.all(finite, axis=-1)
    first_bad = np.where(bad_rows, np.argmin(finite, axis=-1), -1)
    diverged = bad_rows & (np.asarray(result).reshape(bad_rows.shape) == 0)
    S, R, v = S.copy(), R.copy(), v.copy()
    if not train:
        v[...] = v0[..., None, :] if v0.ndim > 1 else v0
    with np.errstate(invalid="ignore", over="ignore"):
        rtr = R @ tinv @ np.swapaxes(R, -1, -2)
    ok = np.all(np.isfinite(S), axis=(-1, -2)) & np.all(np.isfinite(rtr), axis=(-1, -2))
    lam, vec = np.linalg.eigh(np.where(ok[..., None, None], S, 0.0))
    neg = ok & (lam[..., 0] < 0.0)
    n_clip = int(np.count_nonzero(neg))
    lam_min = float(np.min(lam[..., 0][neg])) if n_clip else 0.0
    Sp = np.where(neg[..., None, None], (vec * np.maximum(lam, 0.0)[..., None, :]) @ np.swapaxes(vec, -1, -2), S)
    with np.errstate(invalid="ignore", over="ignore"):
        Q = Sp + rtr
    Q = 0.5 * (Q + np.swapaxes(Q, -1, -2))
    for idx in np.ndindex(*lead):
        if bad_rows[idx]:
            j = first_bad[idx]
            Q[idx][j:] = np.nan
            R[idx][j:] = np.nan
            v[idx][j:] = np.nan
    test = np.asarray(two_layer_test_loss(Q, R, T, v, A, "erf", check=False), dtype=np.float64)
    negl = test < 0.0
    n_neg = int(np.count_nonzero(negl))
    eg_min = float(np.min(test[negl])) if n_neg else 0.0
    test = np.where(negl, 0.0, test)
    # recorded in the caller's info dict (the clips must be visible in the result's attrs)
    info_base.update(variables="schur", psd_clipped=n_clip, psd_min_eigenvalue=lam_min,
                     test_loss_clipped=n_neg, test_loss_min_raw=eg_min)
    div_times = np.where(diverged, times[np.maximum(first_bad, 0)], -1.0)
    if np.any(diverged):
        warnings.warn(f"two_layer ODE (jax) diverged (|state| > {_BLOWUP:g} or non-finite) by t = "
                      f"{float(np.max(div_times)):.6g}; values from the first such save time on are NaN. "
                      f"Lower the learning rate.", RuntimeWarning, stacklevel=3)
    return Q, R, v, test, two_layer_train_loss(test, info_base["noise"]), div_times


def solve(Q0, R0, T, v0, A, activation, times, *, lr, lr_second=0.0, train_second_layer=False, noise=0.0,
          batch_size=1, rtol=1e-10, atol=1e-12, max_steps=200_000) -> dict:
    """Integrate the two-layer ODEs with diffrax (erf); same arguments and result as the scipy engine.

    Parameters
    ----------
    Q0, R0, T, v0, A, activation, times, lr, lr_second, train_second_layer, noise, batch_size, rtol, atol
        As in :func:`hidyn.solvers.ode.two_layer.solve` (activation must be ``"erf"``).
    max_steps : int
        diffrax step limit (reverse-mode memory grows with it through the checkpointed adjoint).

    Returns
    -------
    dict
        ``time``, ``Q``, ``R``, ``v``, ``test_loss``, ``train_loss`` and ``info`` as the scipy engine
        (``solver`` = ``"diffrax.Dopri8"``, ``engine`` = ``"jax"``, ``nfev`` = −1: diffrax does not count
        evaluations; ``status`` the diffrax result code, 0 = success).  A divergence (state beyond 1e8 or
        non-finite at a save time) is warned about and the rows from that save time on are NaN;
        ``diverged_at`` is that save time (the scipy engine reports the solver's own stopping time).

    Raises
    ------
    NotImplementedError
        ``activation`` is not erf.
    ValueError
        Invalid overlaps, rates, times, or a singular T.
    """
    return _solve_any(Q0, R0, T, v0, A, activation, times, lr=lr, lr_second=lr_second,
                      train_second_layer=train_second_layer, noise=noise, batch_size=batch_size, rtol=rtol,
                      atol=atol, max_steps=max_steps, batched=False)


def solve_batch(Q0, R0, T, v0, A, activation, times, *, lr, lr_second=0.0, train_second_layer=False,
                noise=0.0, batch_size=1, rtol=1e-10, atol=1e-12, max_steps=200_000) -> dict:
    """One ``vmap``-ed diffrax solve over a batch of learning rates and/or initial conditions (erf).

    Parameters
    ----------
    Q0 : array_like, shape (K, K) or (n, K, K)
    R0 : array_like, shape (K, M) or (n, K, M)
    v0 : array_like, shape (K,) or (n, K)
    lr : float or array_like, shape (n,)
        Anything with a leading batch axis is swept; the rest is shared.  At least one of them must be
        batched, and all batched ones must have the same n.
    T, A, activation, times, lr_second, train_second_layer, noise, batch_size, rtol, atol, max_steps
        As in :func:`solve` (shared by the whole batch).

    Returns
    -------
    dict
        As :func:`solve`, each array with a leading axis of length n (``test_loss`` (n, n_t), ``Q``
        (n, n_t, K, K), …), ``lr`` (n,) and ``info`` with ``diverged_at`` as an (n,) array.

    Notes
    -----
    The step size is adapted for the batch as a whole (vmap of an adaptive solver steps every member
    with the same accept/reject sequence, governed by the largest error); each member is therefore at
    least as accurate as a single solve at the same tolerances.
    """
    return _solve_any(Q0, R0, T, v0, A, activation, times, lr=lr, lr_second=lr_second,
                      train_second_layer=train_second_layer, noise=noise, batch_size=batch_size, rtol=rtol,
                      atol=atol, max_steps=max_steps, batched=True)


def _solve_any(Q0, R0, T, v0, A, activation, times, *, lr, lr_second, train_second_layer, noise, batch_size,
               rtol, atol, max_steps, batched):
    jax, diffrax = _import()
    if batched:
        Q0a, R0a, v0a = (np.asarray(x, dtype=np.float64) for x in (Q0, R0, v0))
        lra = np.asarray(lr, dtype=np.float64)
        sizes = {x.shape[0] for x, nd in ((Q0a, 3), (R0a, 3), (v0a, 2), (lra, 1)) if x.ndim == nd}
        if not sizes:
            raise ValueError("solve_batch needs at least one batched input: lr of shape (n,), Q0 (n, K, K), "
                             "R0 (n, K, M) or v0 (n, K)")
        if len(sizes) > 1:
            raise ValueError(f"batched inputs must share their leading length, got lengths {sorted(sizes)}")
        n = sizes.pop()
        Q0a = np.broadcast_to(Q0a, (n,) + Q0a.shape[-2:]) if Q0a.ndim == 2 else Q0a
        R0a = np.broadcast_to(R0a, (n,) + R0a.shape[-2:]) if R0a.ndim == 2 else R0a
        v0a = np.broadcast_to(v0a, (n,) + v0a.shape[-1:]) if v0a.ndim == 1 else v0a
        lra = np.broadcast_to(lra, (n,)) if lra.ndim == 0 else lra
        members = [_prepare(Q0a[j], R0a[j], T, v0a[j], A, activation, times, lra[j], lr_second,
                            train_second_layer, noise, batch_size, rtol, atol) for j in range(n)]
    else:
        members = [_prepare(Q0, R0, T, v0, A, activation, times, lr, lr_second, train_second_layer, noise,
                            batch_size, rtol, atol)]
    (_, _, T, _, A, times, _, lr_second, train, noise, batch_size, rtol, atol, tinv) = members[0]
    Q0s = np.stack([m[0] for m in members])
    R0s = np.stack([m[1] for m in members])
    v0s = np.stack([m[3] for m in members])
    lrs = np.array([m[6] for m in members])
    S0s = Q0s - R0s @ tinv @ np.swapaxes(R0s, -1, -2)
    t_unique, where = np.unique(times, return_inverse=True)
    with jax.enable_x64(True):
        import jax.numpy as jnp

        fn = _compiled(int(R0s.shape[-2]), int(R0s.shape[-1]), bool(train), int(t_unique.size), float(rtol),
                       float(atol), int(max_steps), bool(batched))
        args = (jnp.asarray(lrs), jnp.asarray(S0s), jnp.asarray(R0s), jnp.asarray(v0s))
        if not batched:
            args = tuple(a[0] for a in args)
        ys, result = fn(jnp.asarray(t_unique), *args, jnp.asarray(T), jnp.asarray(tinv), jnp.asarray(A),
                        jnp.asarray(lr_second), jnp.asarray(noise), jnp.asarray(float(batch_size)))
        ys = tuple(np.asarray(x) for x in ys)
        result = np.asarray(result)
    if not batched:
        ys = tuple(x[None] for x in ys)
        result = result[None]
    if np.any(result != 0):
        warnings.warn(f"two_layer ODE (jax): diffrax stopped before the last save time (result codes "
                      f"{sorted(set(result.ravel().tolist()))}; e.g. max_steps={max_steps} reached or a step "
                      f"size underflow); the unreached rows are NaN", RuntimeWarning, stacklevel=3)
    K, M = R0s.shape[-2:]
    info = {"solver": "diffrax.Dopri8", "engine": "jax", "rtol": float(rtol), "atol": float(atol), "nfev": -1,
            "status": int(np.max(result)), "message": "diffrax result code (0 = successful)",
            "model": "two_layer", "theory": "ode", "activation": "erf", "lr_second": lr_second,
            "train_second_layer": int(train), "noise": noise, "batch_size": batch_size, "K": int(K), "M": int(M)}
    Q, R, v, test, train_loss, div = _finish(ys, times, where, T, tinv, v0s, A, train, info, result)
    info = dict(info)
    if batched:
        info.update(diverged_at=div)
        return {"time": times.copy(), "lr": lrs, "Q": Q, "R": R, "v": v, "test_loss": test,
                "train_loss": train_loss, "info": info}
    info.update(lr=float(lrs[0]), diverged_at=float(div[0]))
    return {"time": times.copy(), "Q": Q[0], "R": R[0], "v": v[0], "test_loss": test[0],
            "train_loss": train_loss[0], "info": info}


@functools.lru_cache(maxsize=16)
def _compiled_grad(K, M, train, rtol, atol, max_steps):
    """jit(value_and_grad) of ε_g(t_final) with respect to (η, Q0, R0); cached on the static arguments."""
    jax, diffrax = _import()
    import jax.numpy as jnp

    def f(t, y, args):
        lr, T, tinv, A, lr_second, noise, batch_size = args
        p = {"lr": lr, "T": T, "tinv": tinv, "A": A, "lr_second": lr_second, "noise": noise,
             "batch_size": batch_size, "train": train}
        return _drift(jnp, jax, y, p)

    term = diffrax.ODETerm(f)

    def loss(lr, Q0, R0, t_final, v0, T, tinv, A, lr_second, noise, batch_size):
        Qs = 0.5 * (Q0 + Q0.T)
        S0 = Qs - R0 @ tinv @ R0.T
        sol = diffrax.diffeqsolve(term, diffrax.Dopri8(), t0=0.0, t1=t_final, dt0=None, y0=(S0, R0, v0),
                                  args=(lr, T, tinv, A, lr_second, noise, batch_size),
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  max_steps=max_steps)
        S, R, v = (x[-1] for x in sol.ys)
        return _test_loss(jnp, S, R, v, T, tinv, A)

    vg = jax.value_and_grad(loss, argnums=(0, 1, 2))

    def run(t_final, lr, Q0, R0, v0, T, tinv, A, lr_second, noise, batch_size):
        return vg(lr, Q0, R0, t_final, v0, T, tinv, A, lr_second, noise, batch_size)
    return jax.jit(run)


def grad_test_loss(Q0, R0, T, v0, A, activation, t_final, *, lr, lr_second=0.0, train_second_layer=False,
                   noise=0.0, batch_size=1, rtol=1e-10, atol=1e-12, max_steps=50_000) -> dict:
    """ε_g(t_final) and its gradient with respect to η, Q0 and R0 by autodiff through the solver (erf).

    Parameters
    ----------
    Q0, R0, T, v0, A, activation, lr, lr_second, train_second_layer, noise, batch_size, rtol, atol
        As in :func:`solve`.
    t_final : float
        Final time (> 0); the solve runs on [0, t_final].
    max_steps : int
        diffrax step limit; the reverse pass stores O(max_steps) checkpoints' worth of state.

    Returns
    -------
    dict
        ``test_loss`` (float, ε_g(t_final)), ``d_lr`` (float, ∂ε_g/∂η), ``d_Q0`` (K, K) and ``d_R0``
        (K, M): derivatives with respect to each entry of Q0 and R0 with the entries treated as
        independent and Q0 entering only through its symmetric part — so a symmetric perturbation
        Q0 + h (e_ik + e_ki) changes ε_g by h (d_Q0[i, k] + d_Q0[k, i]).
    """
    jax, diffrax = _import()
    (Q0, R0, T, v0, A, _, lr_, lr_second, train, noise, batch_size, rtol, atol, tinv) = _prepare(
        Q0, R0, T, v0, A, activation, [0.0, t_final], lr, lr_second, train_second_layer, noise, batch_size,
        rtol, atol)
    t_final = float(t_final)
    if not t_final > 0.0:
        raise ValueError(f"t_final={t_final!r} is invalid: must be > 0")
    with jax.enable_x64(True):
        import jax.numpy as jnp

        fn = _compiled_grad(int(R0.shape[0]), int(R0.shape[1]), bool(train), float(rtol), float(atol),
                            int(max_steps))
        val, grads = fn(jnp.asarray(t_final), jnp.asarray(lr_), jnp.asarray(Q0), jnp.asarray(R0),
                        jnp.asarray(v0), jnp.asarray(T), jnp.asarray(tinv), jnp.asarray(A),
                        jnp.asarray(lr_second), jnp.asarray(noise), jnp.asarray(float(batch_size)))
        out = {"test_loss": float(val), "d_lr": float(grads[0]), "d_Q0": np.asarray(grads[1]),
               "d_R0": np.asarray(grads[2])}
    return out
