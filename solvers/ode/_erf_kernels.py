"""Compiled (numba) right-hand side of the two-layer ODEs for g = erf(x/√2) (docs/theory/teacher_student.md §3, §4.1).

Imported lazily by :mod:`hidyn.solvers.ode.two_layer` (numba must not be imported by ``import hidyn``).

Why a separate kernel: the generic path builds the full I4 tensor, K²(K+M)² closed forms from gathered
copies, and then contracts it with the output weights.  Here every contraction is done *while* the
integrals are formed, so memory is O((K+M)²) and nothing of size K²(K+M)² ever exists:

* S3(i, b) = Σ_c c_c I3(i, b, c).  With d_a = 1 + Ω_aa the closed form of §4.1 factorises as
  I3(i, b, c) = w_ic [d_i Ω_bc − Ω_ib Ω_ic] with w_ic = (2/π) / (d_i √(d_i d_c − Ω_ic²)), hence
  S3(i, b) = d_i (W Ω)_ib − Ω_ib Σ_c (W)_ic Ω_ic with W_ic = c_c w_ic: O(K (K+M)²) work.
* quad(i, k) = Σ_ab c_a c_b I4(i, k, a, b) = E[g'(u_i) g'(u_k) Δ²].  For erf, g'(x) = √(2/π) e^{−x²/2},
  so g'(u_i) g'(u_k) is a Gaussian tilt: with P = {i, k}, M_P = I₂ + Ω_PP and the tilted covariance
  C̃ = Ω − Ω_{·P} M_P⁻¹ Ω_{P·},
      I4(i, k, a, b) = (4/π²) det(M_P)^{−1/2} arcsin(C̃_ab / √((1 + C̃_aa)(1 + C̃_bb))),
  which is the Λ-form of §4.1 (Λ4 = det M_P, Λ0 = Λ4 C̃_ab, Λ1 = Λ4 (1 + C̃_aa)).  Per pair (i ≤ k) the
  kernel forms the O(K+M) vectors of the rank-2 update once and then sums the (K+M)(K+M+1)/2 arcsines
  of the upper triangle (a ≤ b, doubling off-diagonal terms): K(K+1)/2 · (K+M)(K+M+1)/2 arcsines in all,
  a quarter of the full tensor, and O(K+M) scratch per pair.

The arcsine count is the bottleneck at large K (benchmarks/two_layer_ode.py); no exact reduction was
found (the argument depends on all four indices and does not separate).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_TWO_OVER_PI = 2.0 / math.pi
_FOUR_OVER_PI2 = 4.0 / math.pi ** 2


@njit(cache=True, nogil=True)
def _asin_clip(x):
    # pitfall 10 of the note: round-off may push |x| a hair above 1
    if x > 1.0:
        x = 1.0
    elif x < -1.0:
        x = -1.0
    return math.asin(x)


@njit(cache=True, nogil=True)
def _quad_pair(omega, c, i, k, p, q, r):
    """Σ_ab c_a c_b I4(i, k, a, b) for one student pair; p, q, r are (L,) scratch arrays."""
    L = omega.shape[0]
    m11 = 1.0 + omega[i, i]
    m22 = 1.0 + omega[k, k]
    m12 = omega[i, k]
    det = m11 * m22 - m12 * m12
    inv_det = 1.0 / det
    for a in range(L):
        x = omega[a, i]
        y = omega[a, k]
        # (p_a, q_a) = M_P⁻¹ (Ω_ai, Ω_ak): the tilted covariance is Ω_ab − (Ω_ai p_b + Ω_ak q_b)
        p[a] = (m22 * x - m12 * y) * inv_det
        q[a] = (m11 * y - m12 * x) * inv_det
        r[a] = 1.0 / math.sqrt(1.0 + omega[a, a] - x * p[a] - y * q[a])
    total = 0.0
    for a in range(L):
        ca = c[a]
        xa = omega[a, i]
        ya = omega[a, k]
        ra = r[a]
        # diagonal a == b: C̃_aa r_a²
        caa = omega[a, a] - xa * p[a] - ya * q[a]
        s = 0.5 * ca * _asin_clip(caa * ra * ra)
        for b in range(a + 1, L):
            ctil = omega[a, b] - xa * p[b] - ya * q[b]
            s += c[b] * _asin_clip(ctil * ra * r[b])
        total += ca * s
    return 2.0 * total * _FOUR_OVER_PI2 / math.sqrt(det)


@njit(cache=True, nogil=True)
def _quad_serial(omega, c, K, out):
    L = omega.shape[0]
    p = np.empty(L)
    q = np.empty(L)
    r = np.empty(L)
    for i in range(K):
        for k in range(i, K):
            val = _quad_pair(omega, c, i, k, p, q, r)
            out[i, k] = val
            out[k, i] = val


@njit(cache=True, nogil=True, parallel=True)
def _quad_parallel(omega, c, K, pairs_i, pairs_k, out):
    L = omega.shape[0]
    n = pairs_i.size
    for t in prange(n):
        p = np.empty(L)
        q = np.empty(L)
        r = np.empty(L)
        i = pairs_i[t]
        k = pairs_k[t]
        val = _quad_pair(omega, c, i, k, p, q, r)
        out[i, k] = val
        out[k, i] = val


@njit(cache=True, nogil=True)
def _s3(omega, c, K, out):
    """S3(i, b) = Σ_c c_c I3(i, b, c), shape (K, L) (module docstring)."""
    L = omega.shape[0]
    wrow = np.empty(L)
    for i in range(K):
        di = 1.0 + omega[i, i]
        diag_sum = 0.0
        for cc in range(L):
            dc = 1.0 + omega[cc, cc]
            oic = omega[i, cc]
            w = c[cc] * _TWO_OVER_PI / (di * math.sqrt(di * dc - oic * oic))
            wrow[cc] = w
            diag_sum += w * oic
        for b in range(L):
            acc = 0.0
            for cc in range(L):
                acc += wrow[cc] * omega[b, cc]
            out[i, b] = di * acc - omega[i, b] * diag_sum


@njit(cache=True, nogil=True)
def finish(omega, c, K, lr, lr_second, train, noise, batch_size, dQ, dR, dv, quad):
    L = omega.shape[0]
    M = L - K
    s3 = np.empty((K, L))
    _s3(omega, c, K, s3)
    eta2 = lr * lr / batch_size
    sig2 = noise * noise
    for i in range(K):
        di = 1.0 + omega[i, i]
        vi = c[i]
        for k in range(K):
            vk = c[k]
            qv = quad[i, k]
            if sig2 > 0.0:
                dk = 1.0 + omega[k, k]
                # J2(i, k) = (2/π) / √(d_i d_k − Ω_ik²)   (§4.1)
                qv += sig2 * _TWO_OVER_PI / math.sqrt(di * dk - omega[i, k] * omega[i, k])
            dQ[i, k] = eta2 * vi * vk * qv - lr * (vi * s3[i, k] + vk * s3[k, i])
        for n in range(M):
            dR[i, n] = -lr * vi * s3[i, K + n]
        if train:
            acc = 0.0
            for a in range(L):
                da = 1.0 + omega[a, a]
                acc += c[a] * _TWO_OVER_PI * _asin_clip(omega[i, a] / math.sqrt(di * da))
            dv[i] = -lr_second * acc


# ------------------------------------------------------------------------------------------------
# the whole flat-state right-hand side (state packing of two_layer._System) in one compiled call:
# at small K the cost of a right-hand side is the number of Python/numpy calls, not the flops
# ------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def build_omega(y, K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, omega, c, rt):
    """Ω (L, L), c = (v, −A) (L,) and, with Schur variables, rt = R T⁻¹ (K, M) from the flat state y.

    y = (upper triangle of X, R row-major, v if trained) with X = Q or S = Q − R T⁻¹ Rᵀ.
    """
    nq = iu0.size
    for n in range(K):
        for m in range(M):
            omega[n, K + m] = y[nq + n * M + m]
            omega[K + m, n] = y[nq + n * M + m]
    for n in range(M):
        for m in range(M):
            omega[K + n, K + m] = tmat[n, m]
    for t in range(nq):
        omega[iu0[t], iu1[t]] = y[t]
    if schur:
        for n in range(K):
            for m in range(M):
                acc = 0.0
                for p in range(M):
                    acc += y[nq + n * M + p] * tinv[p, m]
                rt[n, m] = acc
        for t in range(nq):
            i = iu0[t]
            k = iu1[t]
            acc = 0.0
            for m in range(M):
                acc += rt[i, m] * y[nq + k * M + m]
            omega[i, k] += acc
    for t in range(nq):
        omega[iu1[t], iu0[t]] = omega[iu0[t], iu1[t]]
    for i in range(K):
        c[i] = y[nq + K * M + i] if train else v0[i]
    for m in range(M):
        c[K + m] = -A[m]


@njit(cache=True, nogil=True)
def finish_flat(omega, c, K, M, lr, lr_second, train, noise, batch_size, quad, rt, schur, iu0, iu1, out):
    """dX (packed upper triangle), dR, dv into out; Schur variables: dS = dQ − dR T⁻¹ Rᵀ − R T⁻¹ dRᵀ."""
    dQ = np.empty((K, K))
    dR = np.empty((K, M))
    dv = np.empty(K)
    finish(omega, c, K, lr, lr_second, train, noise, batch_size, dQ, dR, dv, quad)
    nq = iu0.size
    for t in range(nq):
        i = iu0[t]
        k = iu1[t]
        val = dQ[i, k]
        if schur:
            for m in range(M):
                val -= dR[i, m] * rt[k, m] + rt[i, m] * dR[k, m]
        out[t] = val
    for n in range(K):
        for m in range(M):
            out[nq + n * M + m] = dR[n, m]
    if train:
        for i in range(K):
            out[nq + K * M + i] = dv[i]


@njit(cache=True, nogil=True)
def _unpack_args(ints, floats, iu, tt, va):
    K, M = ints[0], ints[1]
    return (K, M, iu[0], iu[1], tt[0], tt[1], ints[2] != 0, ints[3] != 0, va[:K], va[K:], floats[0], floats[1],
            floats[2], floats[3])


@njit(cache=True, nogil=True)
def rhs_serial(y, out, ints, floats, iu, tt, va):
    """The flat-state right-hand side for erf, serial (small K).

    Few arguments on purpose (numba's dispatch costs ~0.3 µs per argument, comparable to the kernel at
    K = 2): ints = (K, M, schur, train), floats = (η, η_v, σ, B), iu (2, K(K+1)/2) the upper-triangle
    indices, tt (2, M, M) = (T, T⁻¹), va = (v0, A).
    """
    K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, lr, lr_second, noise, batch_size = \
        _unpack_args(ints, floats, iu, tt, va)
    L = K + M
    omega, c, rt, quad = np.empty((L, L)), np.empty(L), np.empty((K, M)), np.empty((K, K))
    build_omega(y, K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, omega, c, rt)
    _quad_serial(omega, c, K, quad)
    finish_flat(omega, c, K, M, lr, lr_second, train, noise, batch_size, quad, rt, schur, iu0, iu1, out)


@njit(cache=True, nogil=True)
def _rhs_before(y, ints, floats, iu, tt, va):
    K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, lr, lr_second, noise, batch_size = \
        _unpack_args(ints, floats, iu, tt, va)
    L = K + M
    omega, c, rt = np.empty((L, L)), np.empty(L), np.empty((K, M))
    build_omega(y, K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, omega, c, rt)
    return omega, c, rt


@njit(cache=True, nogil=True)
def _rhs_after(out, ints, floats, iu, tt, va, omega, c, rt, quad):
    K, M, iu0, iu1, tmat, tinv, schur, train, v0, A, lr, lr_second, noise, batch_size = \
        _unpack_args(ints, floats, iu, tt, va)
    finish_flat(omega, c, K, M, lr, lr_second, train, noise, batch_size, quad, rt, schur, iu0, iu1, out)


def rhs_parallel(y, out, ints, floats, iu, tt, va):
    """As :func:`rhs_serial` with the I4 contraction on numba's thread pool (large K).

    A Python function: the threaded kernel keeps its own ``parallel=True`` compilation this way.
    """
    omega, c, rt = _rhs_before(y, ints, floats, iu, tt, va)
    K = int(ints[0])
    quad = np.empty((K, K))
    _quad_parallel(omega, c, K, iu[0], iu[1], quad)
    _rhs_after(out, ints, floats, iu, tt, va, omega, c, rt, quad)
