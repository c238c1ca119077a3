"""numba Monte-Carlo backends: teacher–student, single-index and DLN (every algorithm).

Three backends follow the contract of :mod:`hidyn.solvers.mc.driver`:

* :class:`TwoLayerNumbaBackend` – teacher–student online SGD (docs/theory/teacher_student.md §1).  It inherits the
  initial condition, the input/noise streams and the observables of
  :class:`~hidyn.solvers.mc.two_layer_numpy.TwoLayerNumpyBackend`: every seed draws its inputs from its
  own numpy Generator in blocks of ``block`` = 256 steps and its label noise after them, in exactly the
  reference's order, and only the sequential SGD map runs in numba (``prange`` over seeds).
* :class:`DLNNumbaBackend` – diagonal linear networks (docs/theory/dln.md §2.2).  Full-batch GD (and the gradient
  of gradient flow) use a *fused* gradient: each row x_μ of X is read once per step, r_μ = x_μ·β − y_μ
  and g += r_μ x_μ while the row is in L1, instead of the two passes Xβ then Xᵀr.  X is the largest
  array of the run and GD is bound by the memory traffic of reading it, so one pass is up to twice as
  fast; the same kernel batches several weight vectors sharing one X (``G`` columns) into one pass.
  Online and minibatch SGD run one seed per thread: the thread draws a chunk of its seed's stream and
  a serial kernel steps through it in the reference's order (bitwise equal in float64).
* :class:`SingleIndexNumbaBackend` – spiked single-index online SGD (docs/theory/single_index.md §1) on the numpy
  reference's input blocks (inherited ``_new_block``, drawn on all cores), with the reference's
  scaled-weights step w = αV, its resync schedule and escape bookkeeping in one ``nogil`` kernel run
  on the draw threads over seed ranges (not a numba ``prange``: an OpenMP region would leave its
  workers spinning on the cores the Generator calls need).  Every reduction follows the reference's
  order, so float64 runs equal the reference bit for bit.

Why inherit from the numpy references: the initial condition, the random streams and the observables
are then the reference's by construction (one place to change them), and a numba run can be checked
against a numpy run seed by seed instead of only in distribution.

Order of floating-point operations (two-layer)
----------------------------------------------
The kernel fixes the order of every operation so that it can be reproduced exactly by numpy:

* a dot product over d is numpy's *pairwise* summation of the elementwise products, i.e. exactly
  ``np.sum(a * b, axis=-1)`` on contiguous rows (8 accumulators on leaves of ≤ 128 terms, halves split
  at multiples of 8; :func:`pairwise_sum` reproduces numpy's ``pairwise_sum`` of
  ``numpy/_core/src/umath/loops_utils.h.src``);
* sums over the K student or M teacher units are pairwise sums of the products as well (sequential for
  fewer than 8 terms); sums over the B samples of a minibatch are sequential in the sample index;
* per step: ν = pw(x·B)·d^{-1/2}, λ = pw(x·W)·d^{-1/2}, y = pw(g(ν)A) + σζ, Δ = y − pw(g(λ)v),
  c = (g'(λ)Δ)v, W += (η d^{-1/2}/B)·Σ_p c_p x_p, v += (η_v/(dB))·Σ_p g(λ_p)Δ_p.

With this order the trajectories equal those of a numpy implementation written with ``np.sum`` of
products (tests/backends/test_numba_backend.py holds one, proposed as the reference's order) bit for bit
in float64 whenever the activation itself is evaluated identically by numba and numpy
(:func:`activation_is_bitwise`: linear, ReLU, quadratic, the Hermite polynomials and the sigmoid on
glibc).  erf, tanh and the Gaussian in erf' use numpy's SIMD / scipy's own implementations, which
differ from libm by an ulp on some inputs; those runs agree to rounding, not bitwise.  The current
reference contracts with ``einsum``, whose SIMD order is platform-dependent, so it agrees with this
backend to ~1e-15 relative per step.

Precision: float32 runs do every operation of the step in float32 (the scalars η/√d etc. are rounded to
float32 first, as numpy does for Python scalars); m, Q, R and the losses are measured in float64.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, uint64

from hidyn.rng import draw_threads, fill_standard_normal, for_each_seed, for_each_seed_range, set_draw_threads  # noqa: F401
from hidyn.solvers.mc.dln_numpy import DLNNumpyBackend, draw_minibatch_rows
from hidyn.solvers.mc.two_layer_numpy import TwoLayerNumpyBackend

__all__ = ["TwoLayerNumbaBackend", "DLNNumbaBackend", "SingleIndexNumbaBackend", "pairwise_sum",
           "pairwise_dot", "pairwise_program", "ACTIVATION_CODES", "activation_is_bitwise", "dln_gd_fused",
           "dln_gd_fused_observed", "dln_fused_gradient",
           "set_draw_threads"]

# --------------------------------------------------------------------------------------------------
# numpy's pairwise summation, reproduced exactly
# --------------------------------------------------------------------------------------------------
_PW_BLOCK = 128  # numpy's PW_BLOCKSIZE
one_u = np.uint64(1)


@njit(cache=True, nogil=True)
def _leaf_dot(a, b, lo, n):
    """Σ a[lo+i]·b[lo+i], i < n ≤ 128, in the order of a leaf of numpy's pairwise_sum.

    Below 8 terms numpy adds sequentially onto −0.0, the exact additive identity, so starting from
    the first term is the same; from 8 terms on it keeps 8 interleaved accumulators, combines them as
    ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)) and adds the < 8 remaining terms in order.
    Indices are unsigned so that numba emits no negative-index wraparound test per load (2× faster).
    """
    j = uint64(lo)
    end = j + uint64(n)
    if n < 8:
        res = a[j] * b[j]
        j += one_u
        while j < end:
            res += a[j] * b[j]
            j += one_u
        return res
    r0 = a[j] * b[j]
    r1 = a[j + uint64(1)] * b[j + uint64(1)]
    r2 = a[j + uint64(2)] * b[j + uint64(2)]
    r3 = a[j + uint64(3)] * b[j + uint64(3)]
    r4 = a[j + uint64(4)] * b[j + uint64(4)]
    r5 = a[j + uint64(5)] * b[j + uint64(5)]
    r6 = a[j + uint64(6)] * b[j + uint64(6)]
    r7 = a[j + uint64(7)] * b[j + uint64(7)]
    stop = j + uint64(n - n % 8)
    j += uint64(8)
    while j < stop:
        r0 += a[j] * b[j]
        r1 += a[j + uint64(1)] * b[j + uint64(1)]
        r2 += a[j + uint64(2)] * b[j + uint64(2)]
        r3 += a[j + uint64(3)] * b[j + uint64(3)]
        r4 += a[j + uint64(4)] * b[j + uint64(4)]
        r5 += a[j + uint64(5)] * b[j + uint64(5)]
        r6 += a[j + uint64(6)] * b[j + uint64(6)]
        r7 += a[j + uint64(7)] * b[j + uint64(7)]
        j += uint64(8)
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while j < end:
        res += a[j] * b[j]
        j += one_u
    return res


def pairwise_program(n: int) -> np.ndarray:
    """numpy's pairwise-summation tree over n terms as a post-order program, shape (n_ops, 2) int64.

    Rows ``(lo, m)`` with lo ≥ 0 push the leaf sum of terms lo … lo + m − 1 (m ≤ 128); rows ``(−1, 0)``
    pop the right and left partial sums and push left + right.  numpy splits a range of more than 128
    terms at n2 = n//2 rounded down to a multiple of 8 (``pairwise_sum`` in
    numpy/_core/src/umath/loops_utils.h.src).  The kernels run this program with an explicit stack:
    numba cannot reload cached recursive functions reliably.
    """
    if n < 1:
        raise ValueError(f"a pairwise sum needs at least one term, got n={n}")
    ops: list[tuple[int, int]] = []
    todo = [(0, n, False)]
    while todo:                                    # iterative post-order traversal
        lo, m, expanded = todo.pop()
        if m <= _PW_BLOCK:
            ops.append((lo, m))
        elif expanded:
            ops.append((-1, 0))
        else:
            m2 = m // 2
            m2 -= m2 % 8
            todo.append((lo, m, True))
            todo.append((lo + m2, m - m2, False))
            todo.append((lo, m2, False))
    return np.asarray(ops, dtype=np.int64).reshape(-1, 2)


def _stack_size(program: np.ndarray) -> int:
    depth = top = 0
    for lo, _ in program:
        top = top + 1 if lo >= 0 else top - 1
        depth = max(depth, top)
    return depth


@njit(cache=True, nogil=True)
def _pw_dot(a, b, program, stack):
    """``np.sum(a * b)`` bit for bit, running :func:`pairwise_program`'s program; ``stack`` is scratch
    of the operands' dtype (storing rounds nothing: the values already have that dtype)."""
    if program.shape[0] == 1:
        return _leaf_dot(a, b, program[0, 0], program[0, 1])
    top = 0
    for i in range(program.shape[0]):
        lo = program[i, 0]
        if lo >= 0:
            stack[top] = _leaf_dot(a, b, lo, program[i, 1])
            top += 1
        else:
            top -= 1
            stack[top - 1] = stack[top - 1] + stack[top]
    return stack[0]


def pairwise_dot(a, b):
    """``np.sum(a * b)`` for 1-D contiguous a, b of one float dtype, bit for bit (numpy ≥ 1.9)."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b, dtype=a.dtype)
    prog = pairwise_program(a.shape[0])
    return _pw_dot(a, b, prog, np.empty(max(_stack_size(prog), 1), dtype=a.dtype))


def pairwise_sum(a):
    """``np.sum(a)`` for a 1-D contiguous float array, bit for bit (x·1 is exact: the same tree)."""
    a = np.ascontiguousarray(a)
    return pairwise_dot(a, np.ones_like(a))


# --------------------------------------------------------------------------------------------------
# activations (the formulas of hidyn.activations, evaluated by numba in the same order)
# --------------------------------------------------------------------------------------------------
#: registry name → integer code understood by the kernels
ACTIVATION_CODES = {"linear": 0, "relu": 1, "quadratic": 2, "erf": 3, "tanh": 4, "sigmoid": 5,
                    "he1": 6, "he2": 7, "he3": 8, "he4": 9}

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT = (1.0, 1.0 / math.sqrt(2.0), 1.0 / math.sqrt(6.0), 1.0 / math.sqrt(24.0))  # 1/√(k!), k=1..4


@njit(cache=True, nogil=True)
def _hermite_norm(k, x):
    """He_k(x) by scipy's backward recurrence (y ← x·y₂ − j·y₃, j = k … 2), k ≥ 1."""
    if k == 1:
        return x
    y3 = x - x
    y2 = (x - x) + 1
    for j in range(k, 1, -1):
        y1 = x * y2 - j * y3
        y3 = y2
        y2 = y1
    return x * y2 - y3


@njit(cache=True, nogil=True)
def _act(code, x):
    """g(x) for the activation ``code`` (see :data:`ACTIVATION_CODES`); dtype of x preserved."""
    if code == 0:
        return x
    if code == 1:
        return x if x > 0 else x - x      # +0.0 like np.maximum(x, 0.0)
    if code == 2:
        return x * x
    if code == 3:
        return math.erf(x / _SQRT2)
    if code == 4:
        return math.tanh(x)
    if code == 5:
        return 1.0 / (1.0 + math.exp(-x))
    k = code - 5
    return _INV_SQRT[k - 1] * _hermite_norm(k, x)


@njit(cache=True, nogil=True)
def _dact(code, x):
    """g'(x) for the activation ``code``."""
    if code == 0:
        return (x - x) + 1
    if code == 1:
        return (x - x) + 1 if x > 0 else x - x
    if code == 2:
        return 2.0 * x
    if code == 3:
        return _SQRT_2_OVER_PI * math.exp((-0.5 * x) * x)
    if code == 4:
        c = math.cosh(x)
        return 1.0 / (c * c)
    if code == 5:
        s = 1.0 / (1.0 + math.exp(-x))
        return s * (1.0 - s)
    k = code - 5
    if k == 1:
        return (x - x) + 1
    return _INV_SQRT[k - 1] * k * _hermite_norm(k - 1, x)


@njit(cache=True)
def _act_array(code, x, derivative):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _dact(code, x[i]) if derivative else _act(code, x[i])
    return out


def activation_is_bitwise(name: str, n: int = 20001) -> bool:
    """Whether numba evaluates g and g' of activation ``name`` bit for bit like hidyn.activations here.

    Compares both on a grid of float64 values in [−8, 8] (and their ± subnormal-free perturbations).
    Arithmetic activations always agree; erf / tanh (and the exp in erf′) go through numpy's SIMD or
    scipy's own routines, which may differ from libm in the last bit, depending on the platform.
    """
    from hidyn.activations import get_activation

    if name not in ACTIVATION_CODES:
        return False
    act = get_activation(name)
    x = np.concatenate([np.linspace(-8.0, 8.0, n), np.random.default_rng(0).standard_normal(n) * 3])
    code = ACTIVATION_CODES[name]
    return bool(np.array_equal(_act_array(code, x, False), np.asarray(act.g(x), dtype=np.float64))
                and np.array_equal(_act_array(code, x, True), np.asarray(act.dg(x), dtype=np.float64)))


# --------------------------------------------------------------------------------------------------
# teacher–student online SGD kernel
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _two_layer_steps(X, x_off, zeta, z_off, n_steps, W, B, v, A, code, inv_sqrt_d, c_w, c_v,
                     train_second, prog_d, prog_k, prog_m, stack_size):
    """Advance every seed by ``n_steps`` SGD steps (docs/theory/teacher_student.md §1), in place.

    Parameters
    ----------
    X : ndarray (S, n_block, P, d)
        Input buffer; steps use X[:, x_off + j], j < n_steps.
    zeta : ndarray (S, n_noise, P)
        Scaled label noise σζ; steps use zeta[:, z_off + j].
    W (S, K, d), B (S, M, d), v (S, K), A (M,) : ndarrays of one float dtype
    code : int
        Activation code (:data:`ACTIVATION_CODES`).
    inv_sqrt_d, c_w, c_v : scalars of the arrays' dtype
        d^{-1/2}, η d^{-1/2}/P and η_v/(dP), already rounded to the dtype.
    train_second : bool
    prog_d, prog_k, prog_m : ndarray (n_ops, 2) int64
        :func:`pairwise_program` of d, K and M terms.
    stack_size : int
        Scratch depth for the largest of the three programs.
    """
    S, K, d = W.shape
    M = B.shape[1]
    P = X.shape[2]
    for s in range(S):
        Ws, Bs, vs = W[s], B[s], v[s]
        # scratch in the run's dtype: storing an activation value rounds it to the dtype once, as
        # numpy's float32 arrays do, before it enters the next product
        gl = np.empty((P, K), dtype=W.dtype)
        dl = np.empty((P, K), dtype=W.dtype)
        coef = np.empty((P, K), dtype=W.dtype)
        delta = np.empty(P, dtype=W.dtype)
        prod_m = np.empty(M, dtype=W.dtype)
        prod_k = np.empty(K, dtype=W.dtype)
        ones_k = np.ones(K, dtype=W.dtype)
        ones_m = np.ones(M, dtype=W.dtype)
        stack = np.empty(stack_size, dtype=W.dtype)
        for j in range(n_steps):
            xs = X[s, x_off + j]
            for p in range(P):
                x = xs[p]
                for m in range(M):
                    prod_m[m] = _act(code, _pw_dot(x, Bs[m], prog_d, stack) * inv_sqrt_d)   # g(ν_m)
                    prod_m[m] = prod_m[m] * A[m]
                y = _pw_dot(prod_m, ones_m, prog_m, stack) + zeta[s, z_off + j, p]
                for k in range(K):
                    lk = _pw_dot(x, Ws[k], prog_d, stack) * inv_sqrt_d           # λ_k
                    gl[p, k] = _act(code, lk)
                    dl[p, k] = _dact(code, lk)
                    prod_k[k] = gl[p, k] * vs[k]
                delta[p] = y - _pw_dot(prod_k, ones_k, prog_k, stack)
                for k in range(K):
                    coef[p, k] = (dl[p, k] * delta[p]) * vs[k]
            for k in range(K):
                wk = Ws[k]
                if P == 1:
                    ck = coef[0, k]
                    x0 = xs[0]
                    for i in range(d):
                        wk[i] += c_w * (ck * x0[i])
                else:
                    for i in range(d):
                        acc = coef[0, k] * xs[0, i]
                        for p in range(1, P):
                            acc += coef[p, k] * xs[p, i]
                        wk[i] += c_w * acc
            if train_second:
                for k in range(K):
                    acc = gl[0, k] * delta[0]
                    for p in range(1, P):
                        acc += gl[p, k] * delta[p]
                    vs[k] += c_v * acc


class TwoLayerNumbaBackend(TwoLayerNumpyBackend):
    """Teacher–student online SGD in numba, on the numpy reference's random streams.

    Same initial weights, inputs, noise and observables as
    :class:`~hidyn.solvers.mc.two_layer_numpy.TwoLayerNumpyBackend` (the draws are made by the same
    Generators in the same order and block structure); the sequential SGD map runs in a ``nogil``
    numba kernel with a fixed order of operations (module docstring).  The draw threads take
    contiguous ranges of seeds; each draws a seed's block of inputs and noise and runs that seed's
    steps right away, so the block is read back from the core's caches, not from memory.

    Parameters
    ----------
    spec : TwoLayerSpec
        A named activation is required (custom Python callables cannot run in numba).
    precision : {"float64", "float32"}
    """

    name = "numba"

    def __init__(self, spec, precision: str = "float64"):
        super().__init__(spec, precision)
        reason = self.unsupported_reason(spec)
        if reason:
            raise NotImplementedError(reason)
        self.code = ACTIVATION_CODES[self.act.name]
        self.programs = tuple(pairwise_program(n) for n in (spec.d, spec.K, spec.M))
        self.stack_size = max(max(_stack_size(p) for p in self.programs), 1)

    @classmethod
    def unsupported_reason(cls, spec) -> str | None:
        """Why this backend cannot run ``spec`` (None when it can); ``backend="auto"`` skips it then."""
        from hidyn.activations import get_activation

        name = get_activation(spec.activation).name
        if name not in ACTIVATION_CODES:
            return (f"the numba backend needs a named activation ({', '.join(ACTIVATION_CODES)}); "
                    f"a custom activation ({name!r}) runs only with backend='numpy'")
        return None

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        # one input block and one noise block per seed, plus the weights
        return n_seeds * self.dtype.itemsize * ((s.d + 1) * (s.K + s.M) + self.block * s.batch_size * (s.d + 1))

    def init(self, seed_sequences):
        state = super().init(seed_sequences)
        S, s = len(state["rngs"]), self.spec
        state["buffer"] = np.empty((S, self.block, s.batch_size, s.d), dtype=self.dtype)
        state["noise_buffer"] = np.zeros((S, self.block, s.batch_size), dtype=self.dtype)
        state["used"] = self.block                      # no block drawn yet
        return state

    def _draw_seed_block(self, state, i):
        """Seed i's next block: its inputs, then its label noise, exactly as the reference draws them."""
        s, rng = self.spec, state["rngs"][i]
        rng.standard_normal(out=state["buffer"][i], dtype=self.dtype)
        if s.noise != 0:
            state["noise_buffer"][i] = rng.standard_normal((self.block, s.batch_size), dtype=self.dtype) * s.noise

    def advance(self, state, n):
        s = self.spec
        dt = self.dtype.type
        inv_sqrt_d = 1.0 / math.sqrt(s.d)
        c_w = dt(s.lr * inv_sqrt_d / s.batch_size)          # numpy rounds Python scalars to the dtype
        c_v = dt(s.lr_second / (s.d * s.batch_size))
        inv = dt(inv_sqrt_d)
        buf, noise, W, B, v = (state[k] for k in ("buffer", "noise_buffer", "W", "B", "v"))
        done = 0
        while done < n:
            fresh = state["used"] == self.block
            off = 0 if fresh else state["used"]
            take = min(n - done, self.block - off)

            def run(lo, hi, fresh=fresh, off=off, take=take):
                # seed by seed: draw the seed's block (if a new one starts) and run its steps while
                # the block is still in this core's caches
                for i in range(lo, hi):
                    if fresh:
                        self._draw_seed_block(state, i)
                    _two_layer_steps(buf[i:i + 1], off, noise[i:i + 1], off, take, W[i:i + 1], B[i:i + 1],
                                     v[i:i + 1], state["A"], self.code, inv, c_w, c_v,
                                     bool(s.train_second_layer), *self.programs, self.stack_size)

            for_each_seed_range(run, len(W))
            state["used"] = off + take
            done += take
        return state

    def attrs(self, state):
        return {"threads": int(draw_threads())}


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


# --------------------------------------------------------------------------------------------------
# DLN full-batch GD with a fused gradient
# --------------------------------------------------------------------------------------------------
#: reassociation (SIMD dot products) and FMA contraction, but NaN/inf stay IEEE so divergence is seen
_FAST = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FAST, nogil=True)
def _fused_rows(X, y, beta, part, res, lo, hi):
    """part[g] += Σ_{lo ≤ μ < hi} (x_μ·β_g − y_{g,μ}) x_μ for every column g, reading each row once.

    X (n, d), y (G, n), beta (G, d), part (G, d), res (G, n).  The residuals r_{g,μ} = x_μ·β_g − y_{g,μ}
    are also written to res[g, μ] (n stores per pass, free next to the n·d loads of X): the train
    loss of β is then known without reading X again.  Rows go in blocks of 4: 4 residuals share each
    load of β, and the partial gradient is read and written once per 4 rows (it would otherwise cost
    twice the traffic of X itself).
    """
    G, d = beta.shape
    mu = lo
    while mu + 4 <= hi:
        x0 = X[mu]
        x1 = X[mu + 1]
        x2 = X[mu + 2]
        x3 = X[mu + 3]
        for g in range(G):
            bg = beta[g]
            a0 = -y[g, mu]
            a1 = -y[g, mu + 1]
            a2 = -y[g, mu + 2]
            a3 = -y[g, mu + 3]
            for i in range(d):
                b = bg[i]
                a0 += x0[i] * b
                a1 += x1[i] * b
                a2 += x2[i] * b
                a3 += x3[i] * b
            res[g, mu] = a0
            res[g, mu + 1] = a1
            res[g, mu + 2] = a2
            res[g, mu + 3] = a3
            pg = part[g]
            for i in range(d):
                pg[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i]
        mu += 4
    while mu < hi:
        x = X[mu]
        for g in range(G):
            bg = beta[g]
            acc = -y[g, mu]
            for i in range(d):
                acc += x[i] * bg[i]
            res[g, mu] = acc
            pg = part[g]
            for i in range(d):
                pg[i] += acc * x[i]
        mu += 1


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def _fused_partials(X, y, beta, partial, res):
    """partial[s, c] ← chunk c's share of Xᵀ(Xβ − y) for design s (one job per (s, c), in parallel);
    res (S, G, n) ← the residuals Xβ − y of the same pass."""
    S, n, _ = X.shape
    n_chunks = partial.shape[1]
    rows = (n + n_chunks - 1) // n_chunks
    for job in prange(S * n_chunks):
        s = job // n_chunks
        c = job % n_chunks
        part = partial[s, c]
        part[:] = 0
        lo = c * rows
        _fused_rows(X[s], y[s], beta[s], part, res[s], lo, min(n, lo + rows))


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def dln_gd_fused(X, y, wp, wm, n_steps, c_lr, inv_ratio, n_chunks):
    """``n_steps`` full-batch GD steps of diagonal linear networks, reading each row of X once per step.

    Parameters
    ----------
    X : ndarray (S, n, d)
        One design per group of weight vectors.
    y : ndarray (S, G, n)
        Labels of the G weight vectors sharing X[s].
    wp, wm : ndarray (S, G, d)
        w± (dln_numpy.py): β = w+² − w−²; updated in place, w± ← w±(1 ∓ c·η·g).
    n_steps : int
    c_lr : float
        c·η (c = 1 for uv, 2 for pm).
    inv_ratio : float
        1/δ: g = Xᵀ(Xβ − y)/δ.
    n_chunks : int
        Row chunks per design, each accumulated by one thread into a private partial gradient (use
        1 when S is at least the number of threads, more when few designs are shared by many seeds).

    Notes
    -----
    Per step and row μ: r_g = x_μ·β_g − y_{g,μ} for all g (one pass over x_μ), then g_g += r_g x_μ
    while x_μ is still in L1: X is read from memory once instead of twice.  ``fastmath`` lets LLVM
    reassociate the dot products into SIMD lanes, so sums are not bitwise those of numpy (BLAS does
    not promise an order either).
    """
    S, n, d = X.shape
    G = wp.shape[1]
    beta = np.empty((S, G, d), dtype=wp.dtype)
    partial = np.zeros((S, n_chunks, G, d), dtype=wp.dtype)
    res = np.empty((S, G, n), dtype=wp.dtype)
    for _ in range(n_steps):
        for s in prange(S):
            for g in range(G):
                for i in range(d):
                    beta[s, g, i] = wp[s, g, i] * wp[s, g, i] - wm[s, g, i] * wm[s, g, i]
        _fused_partials(X, y, beta, partial, res)
        for s in prange(S):
            for g in range(G):
                for i in range(d):
                    grad = partial[s, 0, g, i]
                    for c in range(1, n_chunks):
                        grad += partial[s, c, g, i]
                    step = c_lr * (grad * inv_ratio)
                    wp[s, g, i] *= 1.0 - step
                    wm[s, g, i] *= 1.0 + step


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def dln_gd_fused_observed(X, y, wp, wm, n_steps, c_lr, inv_ratio, grad, res, have_grad):
    """:func:`dln_gd_fused` (one row chunk per design) that also leaves the residual of the final β.

    The pass that forms the gradient at β reads every row of X and so yields r = Xβ − y for free; but
    the gradient step comes after that pass, so the residual of the weights *after* ``n_steps`` steps
    would only appear in the next call's first pass.  This kernel runs that pass at the end of the
    call instead, keeps its gradient in ``grad`` and uses it, with ``have_grad`` true, as the first
    step of the next call: a run of k steps with s saves costs k + 1 passes over X, not k + s.

    Parameters
    ----------
    X : ndarray (S, n, d)
    y : ndarray (S, G, n)
    wp, wm : ndarray (S, G, d)
        w±, updated in place as by :func:`dln_gd_fused`.
    n_steps : int
    c_lr, inv_ratio : float
        c·η and 1/δ.
    grad : ndarray (S, G, d)
        In: Xᵀ(Xβ − y) at the current β when ``have_grad`` (not yet divided by δ); out: the same at the
        final β.
    res : ndarray (S, G, n)
        Out: Xβ − y at the final β (the residual the train loss needs).
    have_grad : bool
        Whether ``grad`` already holds the gradient at the current weights (the previous call's).

    Notes
    -----
    With one row chunk ``grad`` is exactly the single partial sum :func:`dln_gd_fused` forms, and the
    step uses it through the same expression, so trajectories are those of :func:`dln_gd_fused` with
    ``n_chunks=1``; the residuals are the pass's dot products (SIMD order, not BLAS's): equal to a
    numpy matmul to rounding.
    """
    S, n, d = X.shape
    G = wp.shape[1]
    beta = np.empty((S, G, d), dtype=wp.dtype)
    partial = np.zeros((S, 1, G, d), dtype=wp.dtype)
    for k in range(n_steps + 1):
        if k > 0 or not have_grad:
            for s in prange(S):
                for g in range(G):
                    for i in range(d):
                        beta[s, g, i] = wp[s, g, i] * wp[s, g, i] - wm[s, g, i] * wm[s, g, i]
            _fused_partials(X, y, beta, partial, res)
            for s in prange(S):
                for g in range(G):
                    for i in range(d):
                        grad[s, g, i] = partial[s, 0, g, i]
        if k == n_steps:
            break
        for s in prange(S):
            for g in range(G):
                for i in range(d):
                    step = c_lr * (grad[s, g, i] * inv_ratio)
                    wp[s, g, i] *= 1.0 - step
                    wm[s, g, i] *= 1.0 + step


def dln_fused_gradient(X, y, beta, inv_ratio, n_chunks=1):
    """Xᵀ(Xβ − y)/δ with each row of X read once: X (S, n, d), y (S, G, n), beta (S, G, d) → (S, G, d)."""
    S, G, d = beta.shape
    partial = np.empty((S, n_chunks, G, d), dtype=beta.dtype)
    res = np.empty(y.shape, dtype=beta.dtype)
    _fused_partials(X, y, np.ascontiguousarray(beta), partial, res)
    return partial.sum(axis=1) * inv_ratio


@njit(cache=True, parallel=True, fastmath=_FAST, nogil=True)
def _dln_population_gd(wp, wm, beta_star, n_steps, c_lr):
    """Population GD (g = β − β*, docs/theory/dln.md §2.2), in place; trivially memory-light."""
    S, d = wp.shape
    for s in prange(S):
        for _ in range(n_steps):
            for i in range(d):
                step = c_lr * (wp[s, i] * wp[s, i] - wm[s, i] * wm[s, i] - beta_star[s, i])
                wp[s, i] *= 1.0 - step
                wm[s, i] *= 1.0 + step


@njit(cache=True, nogil=True)
def _dln_online_steps(draws, wp, wm, beta_star, batch, noise, c_lr, prog_d, prog_b, stack):
    """Online SGD of one seed (dln_numpy.online_gradient, in its order of operations), in place.

    draws (n_steps, 2B + d): each step's normals [a (B), ξ (B), z (d)] in the working dtype (like wp, wm,
    beta_star (d,)); prog_d / prog_b: :func:`pairwise_program` of d and B terms; stack: float64
    scratch.  Per step: one pass for ‖δ‖², one for z·δ, and one that updates w± and forms the next δ.
    """
    n_steps = draws.shape[0]
    d = wp.shape[0]
    B = batch
    sqrt_d = math.sqrt(d)
    coef = d / B
    delta = np.empty(d, dtype=wp.dtype)
    a = np.empty(B)
    r = np.empty(B)
    for i in range(d):
        delta[i] = (wp[i] * wp[i] - wm[i] * wm[i]) - beta_star[i]
    for k in range(n_steps):
        row = draws[k]
        z = row[2 * B:]
        norm2 = _pw_dot(delta, delta, prog_d, stack)
        scale = math.sqrt(norm2) / sqrt_d
        for j in range(B):
            a[j] = row[j] * scale
            r[j] = a[j] - noise * row[B + j]
        c_z = math.sqrt(_pw_dot(r, r, prog_b, stack)) / sqrt_d
        kappa = 0.0
        if norm2 > 0:
            kappa = (_pw_dot(r, a, prog_b, stack) - c_z * _pw_dot(z, delta, prog_d, stack)) / norm2
        for i in range(d):
            step = c_lr * (coef * (c_z * z[i] + kappa * delta[i]))
            p = wp[i] * (1.0 - step)
            q = wm[i] * (1.0 + step)
            wp[i] = p
            wm[i] = q
            delta[i] = (p * p - q * q) - beta_star[i]   # the next step's δ, in the same pass


@njit(cache=True, nogil=True)
def _dln_minibatch_steps(rows, X, y, wp, wm, c_lr, prog_d, stack):
    """Minibatch SGD of one seed (dln_numpy.minibatch_gradient, in its order of operations), in place.

    rows (n_steps, B) int64; X (n, d), y (n,), wp, wm (d,) of one dtype.
    """
    n_steps, B = rows.shape
    d = wp.shape[0]
    coef = d / B
    beta = np.empty(d, dtype=wp.dtype)
    rb = np.empty(B, dtype=wp.dtype)
    g = np.empty(d, dtype=wp.dtype)
    for k in range(n_steps):
        for i in range(d):
            beta[i] = wp[i] * wp[i] - wm[i] * wm[i]
        for j in range(B):
            mu = rows[k, j]
            rb[j] = _pw_dot(X[mu], beta, prog_d, stack) - y[mu]
        x0 = X[rows[k, 0]]
        for i in range(d):
            g[i] = rb[0] * x0[i]
        for j in range(1, B):
            xj = X[rows[k, j]]
            rj = rb[j]
            for i in range(d):
                g[i] += rj * xj[i]
        for i in range(d):
            step = c_lr * (coef * g[i])
            wp[i] *= 1.0 - step
            wm[i] *= 1.0 + step


class DLNNumbaBackend(DLNNumpyBackend):
    """Diagonal linear networks in numba: every algorithm of docs/theory/dln.md §2.2.

    Initial condition, teacher, data, random streams and observables are those of
    :class:`~hidyn.solvers.mc.dln_numpy.DLNNumpyBackend` (same Generators, same draws):

    * GD: the fused one-pass gradient (:func:`dln_gd_fused_observed`); agrees with numpy to rounding
      (BLAS and the SIMD sums do not share an order).  Each ``advance`` ends with the pass at the new
      weights: ``observe``'s train loss uses its residual (``state["r"]``, no second read of X per
      save) and the next ``advance`` takes its gradient as the first step;
    * gradient flow: the reference's DOP853 in mirror coordinates with the fused gradient as the
      right-hand side (the same integrator, so the same step sizes up to rounding);
    * online and minibatch SGD: the draw threads (:func:`hidyn.rng.for_each_seed`, a contiguous range
      of seeds each) draw a chunk of each seed's normals (or row indices) from its Generator, exactly
      the stream the reference draws step by step, and a
      serial ``nogil`` kernel runs the chunk in the reference's pinned order of operations, so float64
      trajectories equal the reference's **bit for bit**.  Drawing and stepping of different seeds
      overlap on all cores; no input buffer outlives a chunk.
    """

    name = "numba"
    #: steps per drawn chunk of online-SGD normals are chosen so a chunk holds about this many floats
    chunk_floats = 1 << 18

    @classmethod
    def unsupported_reason(cls, spec) -> str | None:
        """Why this backend cannot run ``spec`` (None when it can); ``backend="auto"`` skips it then."""
        return None

    def init(self, seed_sequences):
        state = super().init(seed_sequences)
        if self.spec.ratio is not None:
            state["y3"] = np.ascontiguousarray(state["y"][:, None, :])
            if self.spec.algorithm == "gd":
                # the GD kernel's last pass (dln_gd_fused_observed): gradient and residual at the
                # current weights; the gradient is valid only after the first advance
                n_seeds = state["y"].shape[0]
                state["gd_grad"] = np.zeros((n_seeds, 1, self.spec.d), dtype=self.dtype)
                state["gd_res"] = np.zeros((n_seeds, 1, self.spec.n), dtype=self.dtype)
                state["gd_grad_at"] = None     # (w+, w−) at which gd_grad was formed
        s = self.spec
        self._prog_d = pairwise_program(s.d)
        self._prog_b = pairwise_program(s.batch) if s.algorithm == "sgd" else self._prog_d
        self._stack = max(_stack_size(self._prog_d), _stack_size(self._prog_b), 1)
        return state

    def advance(self, state, n):
        s = self.spec
        if self.continuous:
            return self._flow(state, float(n))
        c_lr = s.clock * s.lr
        n = int(n)
        if s.algorithm == "sgd" and s.ratio is None:
            self._online(state, n, c_lr)
        elif s.algorithm == "sgd":
            self._minibatch(state, n, c_lr)
        elif s.ratio is None:
            _dln_population_gd(state["wp"], state["wm"], state["beta_star"], n, c_lr)
        else:
            # one row chunk per design: each seed's sums then never depend on the number of seeds or
            # threads (seed i of a run equals the same seed run alone, bit for bit)
            wp, wm = state["wp"][:, None, :], state["wm"][:, None, :]   # views: updated in place
            # the kernel ends with the pass at the new weights: its residual is what observe needs
            # (no second read of X per save), its gradient is the next call's first step
            # the cached gradient is used only if the weights are still those it was formed at (a
            # caller may have reset or stepped them in place, e.g. with the numpy backend): 2·S·d
            # compares per call, nothing next to one pass over X
            valid = (state["gd_grad_at"] is not None and np.array_equal(state["gd_grad_at"][0], state["wp"])
                     and np.array_equal(state["gd_grad_at"][1], state["wm"]))
            dln_gd_fused_observed(state["X"], state["y3"], wp, wm, n, c_lr, 1.0 / s.ratio, state["gd_grad"],
                                  state["gd_res"], valid)
            state["gd_grad_at"] = (state["wp"].copy(), state["wm"].copy())
            state["r"] = state["gd_res"][:, 0, :]
            return state
        state["r"] = None
        return state

    def _online(self, state, n, c_lr):
        s = self.spec
        width = 2 * s.batch + s.d
        per_chunk = max(1, min(n, self.chunk_floats // width))
        dt = self.dtype

        def one(i):
            rng = state["rngs"][i]
            buf = np.empty((per_chunk, width), dtype=dt)
            stack = np.empty(self._stack)
            left = n
            while left:
                k = min(per_chunk, left)
                rng.standard_normal(out=buf[:k], dtype=dt)
                _dln_online_steps(buf[:k], state["wp"][i], state["wm"][i], state["beta_star"][i], s.batch,
                                  float(s.noise), c_lr, self._prog_d, self._prog_b, stack)
                left -= k

        for_each_seed(one, len(state["rngs"]))

    def _minibatch(self, state, n, c_lr):
        s = self.spec
        dt = self.dtype

        def one(i):
            rows = draw_minibatch_rows(state["rngs"][i], s.n, s.batch, n)
            _dln_minibatch_steps(rows, state["X"][i], state["y"][i], state["wp"][i], state["wm"][i], c_lr,
                                 self._prog_d, np.empty(self._stack, dtype=dt))

        for_each_seed(one, len(state["rngs"]))

    def _data_gradient(self, state, beta):
        g = dln_fused_gradient(state["X"], state["y3"], beta.astype(self.dtype)[:, None, :], 1.0 / self.spec.ratio)
        return g[:, 0, :]

    def attrs(self, state):
        out = super().attrs(state)
        out["numba_threads"] = int(_numba_threads())
        if self.spec.algorithm in ("gd", "gf") and self.spec.ratio is not None:
            out["gd_gradient"] = "fused one-pass X^T(X beta - y)"
        return out


# --------------------------------------------------------------------------------------------------
# spiked single-index online SGD (docs/theory/single_index.md §1)
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _student(code, power, dpower, x, derivative):
    """σ(x) or σ'(x) in float64: a registry activation (``code`` ≥ 0) or a polynomial (code −1, power
    coefficients ascending, evaluated by Horner's rule as numpy.polynomial.polyval does)."""
    if code >= 0:
        return _dact(code, x) if derivative else _act(code, x)
    p = dpower if derivative else power
    acc = p[p.shape[0] - 1] + 0.0 * x
    for i in range(p.shape[0] - 2, -1, -1):
        acc = p[i] + acc * x
    return acc


@njit(cache=True, nogil=True)
def _single_index_steps(X, xx, xx_mode, nu, mu, y, off, n_steps, V, alpha, m, s, q, hit, step0,
                        code, power, dpower, square, h, wn, kappa, c, sc, geo, resync, level,
                        prog_d, prog_b, stack_w, stack64, i0, i1):
    """Advance every seed by ``n_steps`` steps of the scaled-weights SGD of single_index_numpy.py.

    Parameters
    ----------
    X : ndarray (S, n_block, n_b, d)
        Spiked inputs of the current block (drawn by the reference's ``_new_block``).
    xx, nu, mu, y : ndarray (S, n_block, n_b), float64
        ‖x‖² (read only if ``xx_mode`` is 1), ν = x₀, μ = ⟨u, x⟩ and the labels of the block.
    xx_mode : int
        Where the retraction's ‖x‖² comes from (n_b = 1 only): 0 not needed (plain geometry), 1 the
        ``xx`` array, 2 computed here in the same pass as ⟨V, x⟩ (saves a pass over the block).
    off : int
        First step of the block to use.
    V (S, d), alpha, m, s, q (S,) : the state w = αV and its tracked overlaps, updated in place.
    hit : ndarray (S,) int64
        First step with |m| ≥ ``level`` (−1: not yet), updated in place.
    step0 : int
        Global step count before the first step (resync schedule and escape bookkeeping).
    code, power, dpower : the student σ (see :func:`_student`).
    square : bool
        Square loss (F = (y − σ(λ))σ'(λ)) or correlation (F = yσ'(λ)).
    h : float
        η/d.
    wn : bool
        ``wn_sigma`` geometry (D = x − λΣw).
    kappa, c, sc : floats
        κ and u = c e₀ + √(1−c²) e₁.
    geo : int
        Retraction: 0 none (plain), 1 ‖w‖ (sphere), 2 ‖w‖_Σ (sigma_sphere, wn_sigma).
    resync : int
        Fold α into V and re-measure (m, s, q) at every step count that is a multiple of it.
    level : float
        Escape level of |m| (t_{1/2}: 1/2).
    prog_d, prog_b : ndarray (n_ops, 2) int64
        :func:`pairwise_program` of d and of n_b terms.
    stack_w, stack64 : ndarray
        Pairwise scratch of the weights' dtype and of float64 (one pair per concurrent call).
    i0, i1 : int
        Seeds i0 … i1 − 1 are advanced (calls on disjoint ranges may run concurrently: ``nogil``).

    Notes
    -----
    Every reduction is in the reference's order: ⟨V, x⟩, ‖x‖², ‖Y‖² and ‖V‖² are numpy's pairwise sums
    over d (:func:`_pw_dot`), Σ_i b_i λ_i, Σ_i b_i ν_i, Σ_i b_i μ_i pairwise over the batch, and
    Y = Σ_i b_i x_i sequential in i, so float64 trajectories equal the reference's bit for bit.
    """
    S, d = V.shape
    nb = X.shape[2]
    for i in range(i0, i1):
        Vi = V[i]
        lam = np.empty(nb)
        b = np.empty(nb)
        Y = np.empty(d, dtype=V.dtype)
        cast = np.empty(1, dtype=V.dtype)       # rounds a float64 coefficient to the weights' dtype
        for j in range(n_steps):
            step = step0 + j
            if step % resync == 0:
                # fold α into V (no under/overflow of α) and measure (m, s, q) from the weights
                if alpha[i] != 1.0:
                    cast[0] = alpha[i]
                    for k in range(d):
                        Vi[k] *= cast[0]
                    alpha[i] = 1.0
                acc = float(_pw_dot(Vi, Vi, prog_d, stack_w))
                m[i] = float(Vi[0])
                s[i] = c * float(Vi[0]) + sc * float(Vi[1])
                q[i] = acc
            jj = off + j
            xx_inline = 0.0
            for p in range(nb):
                xp = X[i, jj, p]
                if xx_mode == 2:
                    xx_inline = float(_pw_dot(xp, xp, prog_d, stack_w))
                lp = alpha[i] * float(_pw_dot(Vi, xp, prog_d, stack_w))           # λ = α⟨V, x⟩
                lam[p] = lp
                ds = _student(code, power, dpower, lp, True)
                F = (y[i, jj, p] - _student(code, power, dpower, lp, False)) * ds if square \
                    else y[i, jj, p] * ds
                b[p] = (h / nb) * F
            bl = _pw_dot(b, lam, prog_b, stack64)
            bnu = _pw_dot(b, nu[i, jj], prog_b, stack64)
            bmu = _pw_dot(b, mu[i, jj], prog_b, stack64)
            if wn:
                a = 1.0 - bl
                e = -bl * kappa * s[i]
            else:
                a = 1.0
                e = 0.0
            track_q = True
            yy = 0.0
            if nb == 1:
                if xx_mode == 1:
                    yy = b[0] * b[0] * xx[i, jj, 0]
                elif xx_mode == 2:
                    yy = b[0] * b[0] * xx_inline
                else:
                    track_q = False      # plain: nothing needs q between measurements
            else:
                for k in range(d):
                    accy = b[0] * float(X[i, jj, 0, k])
                    for p in range(1, nb):
                        accy += b[p] * float(X[i, jj, p, k])
                    cast[0] = accy
                    Y[k] = cast[0]
                yy = float(_pw_dot(Y, Y, prog_d, stack_w))
            m1 = a * m[i] + bnu + e * c
            s1 = a * s[i] + bmu + e
            if track_q:
                q1 = a * a * q[i] + 2.0 * a * bl + yy + 2.0 * a * e * s[i] + 2.0 * e * bmu + e * e
                if geo == 0:
                    N2 = 1.0
                elif geo == 1:
                    N2 = q1
                else:
                    N2 = q1 + kappa * s1 * s1
            else:
                q1 = q[i]
                N2 = 1.0
            N = math.sqrt(N2)
            if abs(a) >= 0.5:
                scale = 1.0 / (alpha[i] * a)
                if nb == 1:
                    cast[0] = b[0] * scale
                    coef = cast[0]
                    for k in range(d):
                        Vi[k] += X[i, jj, 0, k] * coef
                else:
                    cast[0] = scale
                    coef = cast[0]
                    for k in range(d):
                        Vi[k] += coef * Y[k]
                if wn:
                    eu = e * scale
                    cast[0] = eu * c
                    Vi[0] += cast[0]
                    cast[0] = eu * sc
                    Vi[1] += cast[0]
                alpha[i] *= a / N
            else:
                # rare huge wn_sigma step (|a| < 1/2): update the weights explicitly, no division by a
                cast[0] = alpha[i] * a
                fa = cast[0]
                for k in range(d):
                    if nb == 1:
                        cast[0] = b[0]
                        Vi[k] = Vi[k] * fa + cast[0] * X[i, jj, 0, k]
                    else:
                        Vi[k] = Vi[k] * fa + Y[k]
                cast[0] = e * c
                Vi[0] += cast[0]
                cast[0] = e * sc
                Vi[1] += cast[0]
                alpha[i] = 1.0 / N
            m[i] = m1 / N
            s[i] = s1 / N
            q[i] = q1 / N2
            if hit[i] < 0 and abs(m[i]) >= level:
                hit[i] = step + 1


def _student_code(spec):
    """(code, power, dpower) of the spec's student σ for :func:`_student`, or None if numba cannot
    evaluate it (a custom callable)."""
    link = spec.student
    if link.power is not None:
        power = np.array(link.power, dtype=np.float64)   # a writable copy: one numba signature
        dpower = np.polynomial.polynomial.polyder(power) if power.size > 1 else np.zeros(1)
        return -1, power, np.asarray(dpower, dtype=np.float64)
    name = link.activation.name
    if name in ACTIVATION_CODES:
        return ACTIVATION_CODES[name], np.zeros(1), np.zeros(1)
    return None


def _single_index_base():
    from hidyn.solvers.mc.single_index_numpy import SingleIndexNumpyBackend

    return SingleIndexNumpyBackend


class SingleIndexNumbaBackend(_single_index_base()):
    """Spiked single-index online SGD in numba, on the numpy reference's random streams.

    Inherits initial weights, input blocks (spike, ν, μ, labels, ‖x‖²), resync schedule, observables and
    escape bookkeeping from :class:`~hidyn.solvers.mc.single_index_numpy.SingleIndexNumpyBackend`; the
    sequential scaled-weights step (w = αV, note §1–§2) runs in :func:`_single_index_steps`.  The target
    link may be anything the reference accepts (labels are made in numpy); the
    student σ must be a registry activation or a polynomial.

    Float64 runs equal the reference's bit for bit (weights, overlaps, escape steps): both take every
    sum over d in numpy's pairwise order and decide the rare explicit ``wn_sigma`` update
    (|1 − Σbλ| < 1/2) seed by seed.
    """

    name = "numba"

    def __init__(self, spec, precision: str = "float64"):
        super().__init__(spec, precision)
        reason = self.unsupported_reason(spec)
        if reason:
            raise NotImplementedError(reason)
        self.code, self.power, self.dpower = _student_code(spec)
        self._prog_d = pairwise_program(spec.d)
        self._prog_b = pairwise_program(spec.batch_size)
        self._stack = max(_stack_size(self._prog_d), _stack_size(self._prog_b), 1)

    #: the kernel takes ‖x‖² in the pass that forms ⟨V, x⟩ instead of a separate pass over the block
    norms_in_block = False

    @classmethod
    def unsupported_reason(cls, spec) -> str | None:
        """Why this backend cannot run ``spec`` (None when it can)."""
        if _student_code(spec) is None:
            return (f"the numba backend needs a registry or polynomial student activation; "
                    f"activation={spec.student.name!r} runs only with backend='numpy'")
        return None

    def advance(self, state, n):
        from hidyn.solvers.mc.single_index_numpy import ESCAPE_LEVEL

        spec = self.spec
        geo = {"plain": 0, "sphere": 1}.get(spec.geometry, 2)
        done = 0
        while done < n:
            if state["block"] is None or state["used"] == state["B"]:
                self._new_block(state)
            take = min(n - done, state["B"] - state["used"])
            blk = state["block"]
            xx_mode = 2 if self._needs_norms() else 0

            def run(lo, hi, blk=blk, take=take, used=state["used"], step=state["step"]):
                _single_index_steps(blk["X"], blk["nu"], xx_mode, blk["nu"], blk["mu"], blk["y"], used, take,
                                    state["V"], state["alpha"], state["m"], state["s"], state["q"],
                                    state["hit"], step, self.code, self.power, self.dpower,
                                    self.square, self.h, self.wn, self.kappa, self.c, self.sc, geo,
                                    self.resync_steps, ESCAPE_LEVEL, self._prog_d, self._prog_b,
                                    np.empty(self._stack, dtype=self.dtype), np.empty(self._stack), lo, hi)

            for_each_seed_range(run, len(state["V"]))      # seeds on the draw threads (nogil kernel)
            state["used"] += take
            state["step"] += take
            done += take
        return state

    def attrs(self, state):
        out = super().attrs(state)
        out["numba_threads"] = int(_numba_threads())
        return out
