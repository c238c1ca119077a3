"""Order-parameter ODEs of online SGD in teacher–student two-layer networks (d → ∞).

Implements docs/theory/teacher_student.md §3 (Saad & Solla 1995; Goldt et al. 2019) in the canonical convention of
§1: student ŷ = Σ_k v_k g(W_k·x/√d), teacher y = Σ_n A_n g(B_n·x/√d) + σζ, first-layer step
W_k += (η/√d) v_k g'(λ_k) Δ x, second-layer step v_k += (η_v/d) g(λ_k) Δ, time t = steps/d.

The state is (Q, R, v) with Q = WWᵀ/d (K×K), R = WBᵀ/d (K×M); T = BBᵀ/d and A are constant.
Only the upper triangle of Q is integrated, so Q stays exactly symmetric.  Gaussian averages come from
:mod:`hidyn.gaussian` (closed forms for erf, linear, ReLU; quadrature otherwise).

Phenomenology helpers reproduce §6: the η → 0 symmetric-plateau error (§6.1), the finite-η plateau
fixed point and its escape rate λ₊, the escape time of a trajectory, and the noise floor (§6.2).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from hidyn.activations import get_activation
from hidyn.admissibility import Q_RUNAWAY, two_layer_margin, two_layer_scale
from hidyn.gaussian import check_covariance, two_layer_averages
from hidyn.observables import two_layer_test_loss, two_layer_train_loss
from hidyn.solvers.ode.integrate import integrate

__all__ = [
    "drift",
    "solve",
    "symmetric_plateau_error",
    "plateau_fixed_point",
    "escape_time",
    "noise_floor",
]


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _check_real(x, name, *, low=None, low_open=False):
    try:
        val = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if isinstance(x, bool) or not math.isfinite(val):
        raise ValueError(f"{name} must be a finite real number, got {x!r}")
    if low is not None and (val <= low if low_open else val < low):
        rng = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {rng}, got {x!r}")
    return val


def _check_rates(lr, lr_second, train_second_layer, noise, batch_size):
    lr = _check_real(lr, "lr (first-layer learning rate η)", low=0.0, low_open=True)
    lr_second = _check_real(lr_second, "lr_second (second-layer learning rate η_v)", low=0.0)
    noise = _check_real(noise, "noise (output-noise standard deviation σ)", low=0.0)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return lr, lr_second, bool(train_second_layer), noise, int(batch_size)


def _check_overlaps(Q, R, T, v, A):
    """Shapes (Q (K,K), R (K,M), T (M,M), v (K,), A (M,)) and a PSD Ω; returns float64 copies and Ω."""
    R = np.array(R, dtype=np.float64)
    if R.ndim != 2 or 0 in R.shape:
        raise ValueError(f"R must have shape (K, M) with K, M >= 1, got {R.shape}")
    K, M = R.shape
    Q = np.array(Q, dtype=np.float64)
    T = np.array(T, dtype=np.float64)
    v = np.array(v, dtype=np.float64)
    A = np.array(A, dtype=np.float64)
    if Q.shape != (K, K):
        raise ValueError(f"Q must have shape (K, K) = ({K}, {K}) to match R of shape {R.shape}, got {Q.shape}")
    if T.shape != (M, M):
        raise ValueError(f"T must have shape (M, M) = ({M}, {M}) to match R of shape {R.shape}, got {T.shape}")
    if v.shape != (K,):
        raise ValueError(f"v must have shape (K,) = ({K},), got {v.shape}")
    if A.shape != (M,):
        raise ValueError(f"A must have shape (M,) = ({M},), got {A.shape}")
    for name, arr in (("v", v), ("A", A)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} has non-finite entries")
    omega = _omega(Q, R, T)
    check_covariance(omega, "Omega = [[Q, R], [R^T, T]]")
    return 0.5 * (Q + Q.T), R, 0.5 * (T + T.T), v, A, omega


def _omega(Q, R, T, out=None):
    K, M = R.shape[-2:]
    if out is None:
        out = np.empty(R.shape[:-2] + (K + M, K + M))
    out[..., :K, :K] = Q
    out[..., :K, K:] = R
    out[..., K:, :K] = np.swapaxes(R, -1, -2)
    out[..., K:, K:] = T
    return out


# ----------------------------------------------------------------------------------------------
# the ODE right-hand side (note §3)
# ----------------------------------------------------------------------------------------------
def _drift_core(omega, v, A, K, act, lr, lr_second, train, noise, batch_size, n_nodes=None, c=None):
    """(dQ/dt, dR/dt, dv/dt) from Ω without validation (the ODE hot path); dv is None if frozen."""
    av = two_layer_averages(act, omega, K, need_i4=True, n_nodes=n_nodes, check=False,
                            need_i2=train, need_j2=noise > 0.0)
    if c is None:
        c = np.concatenate((v, -A))                  # Δ = −Σ_a c_a g(u_a) + σζ   (§2)
    s3 = av["I3"] @ c                                # S3(i, b) = Σ_a c_a I3(i, b, a)   (K, L)
    vs = v[:, None] * s3[:, :K]
    # dQ_ik = −η v_i S3(i,k) − η v_k S3(k,i) + (η²/B) v_i v_k [Σ_ab c_a c_b I4(i,k,a,b) + σ² J2(i,k)]
    quad = av["I4"] @ c @ c
    if noise > 0.0:
        quad = quad + (noise * noise) * av["J2"]
    dQ = (lr * lr / batch_size) * (v[:, None] * v) * quad - lr * (vs + vs.T)
    # dR_in = −η v_i S3(i, K+n)
    dR = (-lr * v)[:, None] * s3[:, K:]
    # dv_i = −η_v Σ_a c_a I2(i, a)   (only when the second layer is trained)
    dv = -lr_second * (av["I2"][:K] @ c) if train else None
    return dQ, dR, dv


def drift(Q, R, v, T, A, activation, *, lr, lr_second=0.0, train_second_layer=False, noise=0.0,
          batch_size=1, n_nodes=None):
    """Right-hand side of the order-parameter ODEs (docs/theory/teacher_student.md §3), per unit time t = steps/d.

    Parameters
    ----------
    Q : array_like, shape (K, K)
        Student–student overlaps (symmetric).
    R : array_like, shape (K, M)
        Student–teacher overlaps.
    v : array_like, shape (K,)
        Student second-layer weights.
    T : array_like, shape (M, M)
        Teacher–teacher overlaps (constant).
    A : array_like, shape (M,)
        Teacher second-layer weights (constant).
    activation : str, Activation or tuple
        g, shared by teacher and student.
    lr : float
        First-layer learning rate η > 0 (raw step (η/√d) for W).
    lr_second : float
        Second-layer learning rate η_v ≥ 0 (raw step η_v/d for v); used only if ``train_second_layer``.
    train_second_layer : bool
        If False, dv/dt = 0.
    noise : float
        Output-noise standard deviation σ ≥ 0; enters only through (η²/B) σ² J2 in dQ (pitfall 2).
    batch_size : int
        Mini-batch size B ≥ 1; divides the η² term of dQ only.
    n_nodes : int, optional
        Quadrature nodes per axis for activations without closed forms.

    Returns
    -------
    dQ : ndarray, shape (K, K)
        dQ/dt, symmetric; includes the (η²/B) I4 term (pitfall 1).
    dR : ndarray, shape (K, M)
    dv : ndarray, shape (K,)

    Raises
    ------
    ValueError
        Bad shapes, a non-PSD Ω = [[Q, R], [Rᵀ, T]], lr ≤ 0 or non-finite, lr_second < 0, noise < 0,
        batch_size < 1.
    """
    act = get_activation(activation)
    lr, lr_second, train, noise, batch_size = _check_rates(lr, lr_second, train_second_layer, noise,
                                                           batch_size)
    Q, R, T, v, A, omega = _check_overlaps(Q, R, T, v, A)
    K, M = R.shape
    if act.name == "erf":
        # the compiled right-hand side: O((K+M)²) memory instead of the K²(K+M)² I4 tensor
        sys_ = _System(T, v, A, K, M, act, lr, lr_second, train, noise, batch_size, variables="overlaps")
        out = sys_.rhs(0.0, sys_.pack(Q, R, v))
        dQ = np.empty((K, K))
        dQ[sys_.iu] = out[:sys_.nq]
        dQ[sys_.iu[1], sys_.iu[0]] = out[:sys_.nq]
        dR = out[sys_.nq:sys_.nq + sys_.nr].reshape(K, M).copy()
        dv = out[sys_.nq + sys_.nr:].copy() if train else None
    else:
        dQ, dR, dv = _drift_core(omega, v, A, K, act, lr, lr_second, train, noise, batch_size, n_nodes)
    return dQ, dR, (np.zeros_like(v) if dv is None else dv)


# ----------------------------------------------------------------------------------------------
# integration
# ----------------------------------------------------------------------------------------------
#: from this many I4 terms K²(K+M)² on (≈ 1e6 arcsines, ~10 ms) the compiled erf contraction runs on
#: numba's thread pool; below it a parallel region's start-up and, on a loaded machine, waiting for a
#: descheduled thread cost more than they save (measured: K = 15 at 2e5 terms ran ~40× slower threaded
#: than the serial estimate under a load average of 12 on 2 cores)
_PARALLEL_TERMS = 4_000_000


def _erf_rhs(sys_):
    """The compiled flat-state erf right-hand side of ``sys_`` (solvers/ode/_erf_kernels.py), imported
    lazily (``import hidyn`` must not import numba).  Returns ``f(y, out)``."""
    from hidyn.solvers.ode import _erf_kernels as ek

    K, M = sys_.K, sys_.M
    L = K + M
    kern = ek.rhs_serial if K * K * L * L < _PARALLEL_TERMS else ek.rhs_parallel
    schur = sys_.variables == "schur"
    ints = np.array([K, M, int(schur), int(bool(sys_.train))], dtype=np.int64)
    floats = np.array([sys_.lr, sys_.lr_second, sys_.noise, sys_.batch_size], dtype=np.float64)
    iu = np.ascontiguousarray(np.stack(sys_.iu).astype(np.int64))
    tmat = np.asarray(sys_.T, dtype=np.float64)
    tt = np.ascontiguousarray(np.stack([tmat, sys_.tinv if schur else np.zeros((M, M))]))
    va = np.concatenate([np.asarray(sys_.v0, dtype=np.float64), np.asarray(sys_.A, dtype=np.float64)])
    args = (ints, floats, iu, tt, va)

    def run(y, out):
        kern(y, out, *args)
    return run


def _t_inverse(T):
    """T⁻¹ if T is safely invertible (condition number < 1e10), else None (no Schur variables)."""
    try:
        cond = np.linalg.cond(T)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(cond) or cond > 1e10:
        return None
    tinv = np.linalg.inv(T)
    return 0.5 * (tinv + tinv.T)


class _System:
    """Flat-state packing and the RHS closure.

    The state is (upper triangle of X, R, v if trained) where X is either Q (``variables="overlaps"``)
    or the Schur complement S = Q − R T⁻¹ Rᵀ of T in Ω (``variables="schur"``).  Ω = [[Q, R], [Rᵀ, T]]
    is PSD iff S is (T ≻ 0), and S obeys dS/dt = D S + S Dᵀ + (η²/B) N with N ⪰ 0 (the Stein form of
    §3: the first-order drift of each student is a combination of field vectors, the η² term a Gram
    matrix), so the small eigenvalues of S decay *in proportion to themselves*.  Integrating S makes the
    solver's error control act on S directly (absolute error ~atol) instead of on Q and R separately,
    whose cancellation Q − R T⁻¹ Rᵀ carries an absolute error ~rtol·|Q|: near convergence to the teacher
    (S → 0, the boundary of the cone) the overlap variables leave the PSD cone (issue #17: ReLU,
    Q − R² = −3e−7 at K = 1), the Schur variables do not (beyond ~atol, clipped and recorded in
    :func:`solve`).
    """

    def __init__(self, T, v0, A, K, M, act, lr, lr_second, train, noise, batch_size, n_nodes=None,
                 variables="overlaps", compiled=True):
        self.T, self.v0, self.A, self.K, self.M = T, v0, A, K, M
        self.act, self.lr, self.lr_second, self.train = act, lr, lr_second, train
        self.noise, self.batch_size, self.n_nodes = noise, batch_size, n_nodes
        self.iu = np.triu_indices(K)
        self.nq = self.iu[0].size
        self.nr = K * M
        # Ω = z[omega_idx] with z = (Q[iu], R.ravel(), T.ravel()): one gather per RHS call
        pos_q = np.empty((K, K), dtype=np.intp)
        pos_q[self.iu] = np.arange(self.nq)
        pos_q[self.iu[1], self.iu[0]] = np.arange(self.nq)
        pos_r = self.nq + np.arange(self.nr).reshape(K, M)
        pos_t = self.nq + self.nr + np.arange(M * M).reshape(M, M)
        self.omega_idx = np.block([[pos_q, pos_r], [pos_r.T, pos_t]])
        self.t_flat = np.asarray(T, dtype=np.float64).ravel()
        self.iu_flat = self.iu[0] * K + self.iu[1]
        self.n_state = self.nq + self.nr + (K if train else 0)
        self.c_frozen = None if train else np.concatenate((v0, -A))  # constant when v is frozen
        if variables not in ("overlaps", "schur"):
            raise ValueError(f"variables={variables!r} is invalid: must be 'overlaps' or 'schur'")
        self.tinv = _t_inverse(np.asarray(T, dtype=np.float64))
        if variables == "schur" and self.tinv is None:
            variables = "overlaps"  # singular T: the Schur complement is undefined
        self.variables = variables
        # erf: the compiled right-hand side (same formulas, contracted on the fly); compiled=False keeps
        # the generic vectorised path (the reference the compiled one is tested against)
        self.fast = _erf_rhs(self) if compiled and getattr(act, "name", None) == "erf" else None

    # -- change of variables ------------------------------------------------------------------
    def _rtr(self, R):
        """R T⁻¹ Rᵀ for R of shape (..., K, M)."""
        return R @ self.tinv @ np.swapaxes(R, -1, -2)

    def pack(self, Q, R, v):
        Q = np.asarray(Q, dtype=np.float64)
        R = np.asarray(R, dtype=np.float64)
        X = Q - self._rtr(R) if self.variables == "schur" else Q
        parts = [X[self.iu], R.ravel()]
        if self.train:
            parts.append(np.zeros(self.K) if v is None else v)
        return np.concatenate(parts)

    def unpack(self, y, *, project=False, return_schur=False):
        """y (..., n_state) -> Q (..., K, K), R (..., K, M), v (..., K).

        With ``project`` (T invertible) negative eigenvalues of S = Q − R T⁻¹ Rᵀ are clipped to 0 and
        ``(n_clipped, min_eigenvalue)`` is returned as a fourth item: n_clipped counts the rows whose S
        had an eigenvalue < 0, min_eigenvalue is the most negative one (0.0 if none).
        """
        K, M = self.K, self.M
        lead = y.shape[:-1]
        X = np.empty(lead + (K, K))
        X[..., self.iu[0], self.iu[1]] = y[..., :self.nq]
        X[..., self.iu[1], self.iu[0]] = y[..., :self.nq]
        R = y[..., self.nq:self.nq + self.nr].reshape(lead + (K, M))
        if self.train:
            v = y[..., self.nq + self.nr:]
        else:
            v = np.broadcast_to(self.v0, lead + (K,)).copy()
        n_clip, lam_min = 0, 0.0
        if self.variables == "schur":
            S = X
            Q = S + self._rtr(R)
            Q = 0.5 * (Q + np.swapaxes(Q, -1, -2))
        else:
            Q = X
            S = Q - self._rtr(R) if (project and self.tinv is not None) else None
        if project and S is not None:
            ok = np.all(np.isfinite(S), axis=(-1, -2))
            lam, vec = np.linalg.eigh(np.where(ok[..., None, None], S, 0.0))
            neg = ok & (lam[..., 0] < 0.0)
            n_clip = int(np.count_nonzero(neg))
            if n_clip:
                lam_min = float(np.min(lam[..., 0][neg]))
                fixed = (vec * np.maximum(lam, 0.0)[..., None, :]) @ np.swapaxes(vec, -1, -2)
                Qp = fixed + self._rtr(R)
                Q = np.where(neg[..., None, None], 0.5 * (Qp + np.swapaxes(Qp, -1, -2)), Q)
        if project and return_schur:
            S_proj = None
            if S is not None:
                S_proj = S if not n_clip else np.where(neg[..., None, None], fixed, S)
            return Q, R, v, (n_clip, lam_min), S_proj
        if project:
            return Q, R, v, (n_clip, lam_min)
        return Q, R, v

    # -- right-hand side ----------------------------------------------------------------------
    def _drift(self, om, v):
        c = self.c_frozen if self.c_frozen is not None else np.concatenate((v, -self.A))
        return _drift_core(om, v, self.A, self.K, self.act, self.lr, self.lr_second, self.train,
                           self.noise, self.batch_size, self.n_nodes, c=c)

    def rhs(self, t, y):
        if self.fast is not None:
            # non-finite states (after a blow-up) propagate NaN, which integrate() detects
            out = np.empty(self.n_state)
            self.fast(np.ascontiguousarray(y, dtype=np.float64), out)
            return out
        nq, nqr = self.nq, self.nq + self.nr
        v = y[nqr:] if self.train else self.v0
        if self.variables == "schur":
            R = y[nq:nqr].reshape(self.K, self.M)
            rt = R @ self.tinv                              # R T⁻¹  (K, M)
            q_up = y[:nq] + (rt @ R.T)[self.iu]
            om = np.concatenate((q_up, y[nq:nqr], self.t_flat))[self.omega_idx]
            dQ, dR, dv = self._drift(om, v)
            # dS = dQ − dR T⁻¹ Rᵀ − R T⁻¹ dRᵀ
            cross = dR @ rt.T
            dX = dQ - cross - cross.T
        else:
            om = np.concatenate((y[:nqr], self.t_flat))[self.omega_idx]
            dX, dR, dv = self._drift(om, v)
        out = np.empty(self.n_state)
        out[:nq] = dX.ravel()[self.iu_flat]
        out[nq:nqr] = dR.ravel()
        if self.train:
            out[nqr:] = dv
        return out


def _relu_test_loss_schur(S, R, T, v, A):
    """ReLU ε_g (note §5, §4.3) from the Schur complement S, R, T without cancellation, shape (n_t,).

    Every field gets explicit coordinates: teacher n the row n of the Cholesky factor G of T, student i
    (R G⁻ᵀ, Z)_i with S = Z Zᵀ, so Ω = X Xᵀ.  The arc-cosine kernel E[relu(u_a) relu(u_b)] =
    [√D_ab + (π − θ_ab) C_ab]/(2π) needs the Gram determinant D_ab = C_aa C_bb − C_ab² and θ_ab; here
    D_ab = |x_a|² |x_b − (C_ab/|x_a|²) x_a|² (a residual, no cancellation of O(1) terms) and
    θ_ab = atan2(√D_ab, C_ab), accurate for nearly parallel fields where arccos(ρ) is not.
    """
    n_t, K, M = R.shape
    out = np.full(n_t, np.nan)
    ok = np.all(np.isfinite(S), axis=(-1, -2)) & np.all(np.isfinite(R), axis=(-1, -2)) & \
        np.all(np.isfinite(v), axis=-1)
    if not ok.any():
        return out
    Sg, Rg, vg = S[ok], R[ok], v[ok]
    G = np.linalg.cholesky(T)
    P = np.linalg.solve(G, np.swapaxes(Rg, -1, -2))            # G⁻¹ Rᵀ: (n, M, K)
    lam, vec = np.linalg.eigh(Sg)
    Z = vec * np.sqrt(np.maximum(lam, 0.0))[..., None, :]        # S = Z Zᵀ (S already projected)
    n = Sg.shape[0]
    X = np.zeros((n, K + M, M + K))
    X[:, :K, :M] = np.swapaxes(P, -1, -2)
    X[:, :K, M:] = Z
    X[:, K:, :M] = G
    C = X @ np.swapaxes(X, -1, -2)                                # Ω, (n, L, L)
    nrm = np.einsum("nai,nai->na", X, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where(nrm[:, :, None] > 0, C / np.where(nrm[:, :, None] > 0, nrm[:, :, None], 1.0), 0.0)
    resid = X[:, None, :, :] - alpha[..., None] * X[:, :, None, :]   # x_b − α_ab x_a: (n, a, b, D)
    D = nrm[:, :, None] * np.einsum("nabi,nabi->nab", resid, resid)
    D = 0.5 * (D + np.swapaxes(D, -1, -2))
    sq = np.sqrt(D)
    i2 = (sq + (math.pi - np.arctan2(sq, C)) * C) / (2.0 * math.pi)
    c = np.concatenate([vg, np.broadcast_to(-A, (n, M))], axis=-1)
    out[ok] = 0.5 * np.einsum("na,nab,nb->n", c, i2, c)
    return out


def solve(Q0, R0, T, v0, A, activation, times, *, lr, lr_second=0.0, train_second_layer=False,
          noise=0.0, batch_size=1, method="DOP853", rtol=1e-10, atol=1e-12, n_nodes=None,
          variables="auto") -> dict:
    """Integrate the two-layer order-parameter ODEs (docs/theory/teacher_student.md §3) and evaluate ε_g (§5).

    Parameters
    ----------
    Q0 : array_like, shape (K, K)
        Initial student–student overlaps.
    R0 : array_like, shape (K, M)
        Initial student–teacher overlaps.  Start from a simulation's *measured* overlaps when
        comparing with it (pitfall 7): exactly symmetric overlaps never leave the plateau.
    T : array_like, shape (M, M)
        Teacher–teacher overlaps (constant).
    v0 : array_like, shape (K,)
        Initial student second-layer weights (constant unless ``train_second_layer``).
    A : array_like, shape (M,)
        Teacher second-layer weights.
    activation : str, Activation or tuple
        g, shared by teacher and student.
    times : array_like, shape (n_t,)
        Non-decreasing save times in units of t = steps/d; integration starts at ``times[0]``.
    lr, lr_second, train_second_layer, noise, batch_size
        As in :func:`drift`.
    method : str
        :func:`scipy.integrate.solve_ivp` method (DOP853 by default; LSODA/Radau for stiff cases).
    rtol, atol : float
        Tolerances; the plateau escape amplifies small errors exponentially, keep rtol ≤ 1e-9 and
        atol ≤ 1e-12 (note §7).
    n_nodes : int, optional
        Quadrature nodes for activations without closed forms.
    variables : {"auto", "schur", "overlaps"}
        Integrated variables: ``"schur"`` integrates the Schur complement S = Q − R T⁻¹ Rᵀ with R (and
        v), which keeps Ω = [[Q, R], [Rᵀ, T]] in the PSD cone up to ~atol (see :class:`_System`);
        ``"overlaps"`` integrates Q itself.  ``"auto"`` (default) chooses ``"schur"`` unless T is
        singular (condition number > 1e10).  At the save times a negative eigenvalue of S (round-off
        or ~atol) is clipped to 0 and recorded (``psd_clipped``, ``psd_min_eigenvalue``).

    Returns
    -------
    dict
        ``time`` (n_t,), ``Q`` (n_t, K, K), ``R`` (n_t, K, M), ``v`` (n_t, K), ``test_loss`` (n_t,)
        = ε_g without noise, ``train_loss`` (n_t,) = ε_g + σ²/2, and ``info``: netCDF-safe attributes
        (solver, rtol, atol, nfev, status, message, diverged_at (−1 if none), model, activation, lr,
        lr_second, train_second_layer (0/1), noise, batch_size, K, M, variables, psd_clipped (number of
        save times whose S had a negative eigenvalue, clipped to 0), psd_min_eigenvalue (the most
        negative one before clipping, 0.0 if none), test_loss_clipped (number of save times whose ε_g,
        evaluated from the projected overlaps, was negative by round-off and set to 0) and
        test_loss_min_raw (the most negative such value, 0.0 if none)).  After a divergence (a
        RuntimeWarning is issued) the remaining rows are NaN.

    Raises
    ------
    ValueError
        Invalid overlaps, rates or times (see :func:`drift`).
    """
    act = get_activation(activation)
    lr, lr_second, train, noise, batch_size = _check_rates(lr, lr_second, train_second_layer, noise,
                                                           batch_size)
    Q0, R0, T, v0, A, _ = _check_overlaps(Q0, R0, T, v0, A)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"times must be a non-empty 1-D array of finite values, got shape {times.shape}")
    if np.any(np.diff(times) < 0):
        raise ValueError("times must be non-decreasing")
    rtol = _check_real(rtol, "rtol", low=0.0, low_open=True)
    atol = _check_real(atol, "atol", low=0.0, low_open=True)
    if variables not in ("auto", "schur", "overlaps"):
        raise ValueError(f"variables={variables!r} is invalid: must be 'auto', 'schur' or 'overlaps'")
    K, M = R0.shape
    sys_ = _System(T, v0, A, K, M, act, lr, lr_second, train, noise, batch_size, n_nodes,
                   variables="overlaps" if variables == "overlaps" else "schur")
    if variables == "schur" and sys_.variables != "schur":
        raise ValueError("variables='schur' needs an invertible T (condition number <= 1e10)")
    # the flow of Gram matrices keeps Ω = [[Q, R], [Rᵀ, T]] PSD and, below the stability limit, the
    # norms Q_kk bounded; leaving either set (beyond the round-off allowance PSD_RTOL, far above the
    # integrator's own PSD-cone excursions of ~1e-9) is a divergence (hidyn.admissibility, issue #12)
    scale = two_layer_scale(T, Q0)

    def psd_margin(y):
        Q, R, _ = sys_.unpack(y)
        return two_layer_margin(Q, R, T, scale)[0]

    def runaway_margin(y):
        Q, R, _ = sys_.unpack(y)
        return two_layer_margin(Q, R, T, scale)[1]

    admissible = {"overlap matrix [[Q, R], [R^T, T]] not positive semi-definite": psd_margin,
                  f"student norm max Q_kk > {Q_RUNAWAY:g} x its scale {scale:g} (weights running away; "
                  f"lr beyond stability)": runaway_margin}
    res = integrate(sys_.rhs, sys_.pack(Q0, R0, v0), times, method=method, rtol=rtol, atol=atol,
                    name=f"two_layer ODE (K={K}, M={M}, {act.name}, lr={lr:g})", admissible=admissible)
    Q, R, v, (n_clip, lam_min), S = sys_.unpack(res.y, project=True, return_schur=True)
    bad = ~np.all(np.isfinite(res.y), axis=1)
    v[bad] = np.nan
    if act.name == "relu" and sys_.variables == "schur":
        # from the integrated S, not from Q − R T⁻¹ Rᵀ: ReLU's I2 has √(Gram determinant) terms that turn
        # the round-off of that difference into ~1e-9 errors of ε_g near the teacher
        test = _relu_test_loss_schur(S, R, T, v, A)
    else:
        test = np.atleast_1d(two_layer_test_loss(Q, R, T, v, A, act, check=False))
    # ε_g = ½E[(ŷ − y)²] ≥ 0 on the PSD cone; a difference of O(1) closed-form terms can still round
    # to a tiny negative number at the teacher: clip and record (never report a negative ε_g)
    neg = test < 0.0
    n_neg = int(np.count_nonzero(neg))
    eg_min = float(np.min(test[neg])) if n_neg else 0.0
    test = np.where(neg, 0.0, test)
    info = dict(res.info)
    info.update(model="two_layer", theory="ode", activation=str(act.name), lr=lr, lr_second=lr_second,
                train_second_layer=int(train), noise=noise, batch_size=batch_size, K=int(K), M=int(M),
                variables=sys_.variables, psd_clipped=n_clip, psd_min_eigenvalue=lam_min,
                test_loss_clipped=n_neg, test_loss_min_raw=eg_min)
    return {"time": res.t, "Q": Q, "R": R, "v": v, "test_loss": test,
            "train_loss": np.atleast_1d(two_layer_train_loss(test, noise)), "info": info}


# ----------------------------------------------------------------------------------------------
# phenomenology (note §6)
# ----------------------------------------------------------------------------------------------
def _check_K(K, name="K"):
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {K!r}")
    return int(K)


def symmetric_plateau_error(K) -> float:
    """ε_g on the symmetric plateau in the η → 0 limit (note §6.1; K = M, T = I, v = A = 1, erf).

    ε_sym = (K/π) [π/6 − K arcsin(1/(2K))], reached at Q_ii = Q_ik = 1/(2K−1), R_in = 1/√(K(2K−1)).

    Parameters
    ----------
    K : int
        Number of students = number of teachers, ≥ 1 (K = 1 has no plateau: ε_sym = 0).

    Returns
    -------
    float
    """
    K = _check_K(K)
    return (K / math.pi) * (math.pi / 6.0 - K * math.asin(1.0 / (2.0 * K)))


def plateau_fixed_point(K, lr, *, activation="erf", noise=0.0, batch_size=1) -> dict:
    """The finite-η symmetric plateau: fixed point on the identical-student manifold and its escape rate.

    Setting: K = M, T = I, v = A = 1, first layer trained (note §6.1).  On the manifold
    Q = q·11ᵀ, R = r·11ᵀ (every student identical, same overlap with every teacher) the ODE reduces to
    (dQ_11, dR_11) = 0, solved with :func:`scipy.optimize.root` from the η → 0 point
    q = 1/(2K−1), r = 1/√(K(2K−1)).  λ₊ is the largest real part of the eigenvalues of the Jacobian of
    the full (upper-triangle Q, R) ODE there, by central finite differences.

    Parameters
    ----------
    K : int
        Students = teachers, ≥ 2.
    lr : float
        η > 0.
    activation : str, Activation or tuple
        Default ``"erf"`` (the setting of the note's table).
    noise : float
        σ ≥ 0.
    batch_size : int
        B ≥ 1.

    Returns
    -------
    dict
        ``q``, ``r``, ``test_loss`` (ε_g at the fixed point), ``lambda_plus`` (1/time units) and
        ``eigenvalues`` (all Jacobian eigenvalues, complex, sorted by decreasing real part).

    Raises
    ------
    ValueError
        Bad arguments.
    RuntimeError
        The root finder did not converge.
    """
    K = _check_K(K)
    if K < 2:
        raise ValueError(f"K must be >= 2 for a symmetric plateau, got {K}")
    act = get_activation(activation)
    lr, _, _, noise, batch_size = _check_rates(lr, 0.0, False, noise, batch_size)
    T, A, v = np.eye(K), np.ones(K), np.ones(K)
    ones = np.ones((K, K))
    sys_ = _System(T, v, A, K, K, act, lr, 0.0, False, noise, batch_size)

    def reduced(x):
        y = sys_.pack(x[0] * ones, x[1] * ones, v)
        Q, R, _ = sys_.unpack(sys_.rhs(0.0, y))
        return [Q[0, 0], R[0, 0]]

    x0 = [1.0 / (2 * K - 1), 1.0 / math.sqrt(K * (2 * K - 1))]
    sol = optimize.root(reduced, x0, method="hybr", options={"xtol": 1e-13})
    # hybr may report "no further improvement" at the round-off floor: judge by the residual
    if not np.all(np.isfinite(sol.x)) or np.max(np.abs(reduced(sol.x))) > 1e-12 * max(1.0, lr * lr):
        raise RuntimeError(f"plateau_fixed_point: root finding failed for K={K}, lr={lr}: {sol.message}")
    q, r = (float(x) for x in sol.x)
    y0 = sys_.pack(q * ones, r * ones, v)
    n = y0.size
    jac = np.empty((n, n))
    for j in range(n):  # O(K²) RHS calls, outside any hot path
        h = 1e-6 * max(1.0, abs(y0[j]))
        e = np.zeros(n)
        e[j] = h
        jac[:, j] = (sys_.rhs(0.0, y0 + e) - sys_.rhs(0.0, y0 - e)) / (2.0 * h)
    eig = np.linalg.eigvals(jac)
    eig = eig[np.argsort(-eig.real)]
    test = float(two_layer_test_loss(q * ones, r * ones, T, v, A, act))
    return {"q": q, "r": r, "test_loss": test, "lambda_plus": float(eig[0].real), "eigenvalues": eig}


def escape_time(times, test_loss, plateau) -> float:
    """First time at which ε_g drops below half the plateau value (note §6.1 definition of t_exit).

    Linear interpolation between the two save times that bracket the crossing.

    Parameters
    ----------
    times : array_like, shape (n_t,)
        Increasing times.
    test_loss : array_like, shape (n_t,)
        ε_g(t); NaN entries (after a divergence) never count as a crossing.
    plateau : float
        Plateau error ε_sym > 0 (e.g. from :func:`plateau_fixed_point` or :func:`symmetric_plateau_error`).

    Returns
    -------
    float
        t_exit, ``times[0]`` if ε_g starts below the threshold, NaN if it never drops below it.
    """
    times = np.asarray(times, dtype=np.float64)
    eps = np.asarray(test_loss, dtype=np.float64)
    if times.ndim != 1 or eps.shape != times.shape:
        raise ValueError(f"times and test_loss must be 1-D of equal length, got {times.shape} and {eps.shape}")
    plateau = _check_real(plateau, "plateau", low=0.0, low_open=True)
    thr = 0.5 * plateau
    below = np.flatnonzero(eps < thr)
    if below.size == 0:
        return float("nan")
    j = int(below[0])
    if j == 0:
        return float(times[0])
    t0, t1, e0, e1 = times[j - 1], times[j], eps[j - 1], eps[j]
    if not np.isfinite(e0) or e0 == e1:
        return float(t1)
    return float(t0 + (thr - e0) * (t1 - t0) / (e1 - e0))


def noise_floor(lr, noise, A, T) -> float:
    """Leading-order asymptotic ε_g with output noise, erf activation (note §6.2).

    ε_g* = (η σ² / 2π) Σ_n A_n² / √(1 + 2 T_nn) + O(η²)  (student at the teacher, K = M, first layer
    trained; = η σ² K /(2√3 π) for T = I, A = 1).

    Parameters
    ----------
    lr : float
        η > 0.
    noise : float
        σ ≥ 0.
    A : array_like, shape (M,)
        Teacher second-layer weights.
    T : array_like, shape (M, M)
        Teacher overlaps (only the diagonal enters).

    Returns
    -------
    float
    """
    lr, _, _, noise, _ = _check_rates(lr, 0.0, False, noise, 1)
    A = np.asarray(A, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    if A.ndim != 1 or T.shape != (A.size, A.size):
        raise ValueError(f"A must have shape (M,) and T shape (M, M), got {A.shape} and {T.shape}")
    tdiag = np.diagonal(T)
    if np.any(tdiag < 0) or not np.all(np.isfinite(tdiag)) or not np.all(np.isfinite(A)):
        raise ValueError("T must have a finite non-negative diagonal and A finite entries")
    return float(lr * noise * noise / (2.0 * math.pi) * np.sum(A * A / np.sqrt(1.0 + 2.0 * tdiag)))
