"""Causal two-time grid utilities shared by hidyn's discrete-time DMFT solvers.

A discrete-time DMFT (docs/theory/dln.md §5; Gerbelot et al., arXiv:2210.06591) lives on a grid k = 0..T and
couples a single-coordinate ("d-side") process to a linear single-sample ("n-side") process through
two-time kernels.  Because every kernel is *causal*, the equations can be solved in one forward pass
over k (docs/theory/dln.md §5.2): at step k only row k of each kernel is new, and it depends on rows < k only.
This module owns the parts of that pass that do not depend on the model family:

* :class:`CausalKernels` -- storage of a symmetric correlation C(k, l) and a strictly lower-triangular
  response R(k, j), filled row by row, with the structure of docs/theory/dln.md §10 pitfall 8 enforced.
* :func:`resolvent_row` and :class:`ResidualKernels` -- the n-side algebra of docs/theory/dln.md §5.1:
  M = (I + R_β/δ)^{-1} by forward substitution and C_r = M (C_Δ + σ² 11ᵀ) Mᵀ, one row at a time.
* :class:`IncrementalCholesky` -- row-by-row Cholesky factor of a growing covariance with a *relative*
  pivot cutoff (docs/theory/dln.md §10 pitfall 5).
* :class:`CausalGaussianSampler` -- turns white noise fixed per sample into a Gaussian process
  ζ^k = Σ_{j≤k} L[k, j] z_j whose covariance is revealed one row at a time.
* :class:`CausalTangentHistory` -- per-sample storage of forward-mode tangents ∂x^l/∂h^j (j < l) in a
  blocked lower-triangular layout, with the memory contraction Σ_l c_l ∂x^l/∂h^j needed by the
  response equations (docs/theory/dln.md §5.2 step 2).

Conventions: arrays of samples are laid out with the sample index *last* (shape (..., K)), so that a
sum over past times is one matrix-vector product.  Kernels are float64.

References
----------
C. Gerbelot, E. Troiani, F. Mignacco, F. Krzakala, L. Zdeborová, "Rigorous dynamical mean field
theory for stochastic gradient descent methods", arXiv:2210.06591.
M. Celentano, C. Cheng, A. Montanari, "The high-dimensional asymptotics of first order methods with
random data", arXiv:2112.07572.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import lstsq, solve_triangular

__all__ = [
    "CausalKernels",
    "resolvent_row",
    "sandwich_row",
    "ResidualKernels",
    "residual_kernels",
    "IncrementalCholesky",
    "CausalGaussianSampler",
    "CausalTangentHistory",
    "tangent_history_nbytes",
    "interpolate_curves",
    "DEFAULT_PIVOT_RTOL",
]

#: Default relative pivot cutoff of the incremental Cholesky (docs/theory/dln.md §10 pitfall 5: results are
#: independent of the value in 1e-8..1e-4, while 1e-12 lets rounding errors grow).
DEFAULT_PIVOT_RTOL = 1e-8


def _check_row(name: str, row, expected: int) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64)
    if row.shape != (expected,):
        raise ValueError(f"{name} must have shape ({expected},), got {row.shape}")
    return row


class CausalKernels:
    """Correlation C(k, l) (symmetric) and response R(k, j) (strictly lower) on a time grid.

    Rows are filled in increasing k.  ``set_C_row(k, row)`` writes C[k, :k+1] and mirrors it into
    column k, so C stays exactly symmetric; ``set_R_row(k, row)`` writes R[k, :k] and R[k, k:] stays 0
    (a response to a force applied at j can only appear at times k > j: docs/theory/dln.md §5.1, §10 pitfall 8).

    Parameters
    ----------
    n_times : int
        Number of grid points T + 1.

    Attributes
    ----------
    C : ndarray, shape (n_times, n_times)
        Symmetric correlation; entries of rows not yet filled are 0.
    R : ndarray, shape (n_times, n_times)
        Strictly lower-triangular response.
    n_filled : int
        Number of rows k for which both C and R were set (rows 0..n_filled-1).
    """

    def __init__(self, n_times: int):
        n_times = int(n_times)
        if n_times < 1:
            raise ValueError(f"n_times must be >= 1, got {n_times}")
        self.n_times = n_times
        self.C = np.zeros((n_times, n_times))
        self.R = np.zeros((n_times, n_times))
        self._c_rows = np.zeros(n_times, dtype=bool)
        self._r_rows = np.zeros(n_times, dtype=bool)

    @property
    def n_filled(self) -> int:
        done = self._c_rows & self._r_rows
        return int(np.argmin(done)) if not done.all() else self.n_times

    def _check_k(self, k: int, filled: np.ndarray, what: str) -> int:
        k = int(k)
        if not 0 <= k < self.n_times:
            raise ValueError(f"row k must be in [0, {self.n_times - 1}], got {k}")
        if k > 0 and not filled[k - 1]:
            # Causality of the one-pass scheme: row k may only be computed from rows < k.
            raise ValueError(f"{what} row {k} set before row {k - 1}")
        return k

    def set_C_row(self, k: int, row) -> None:
        """Set C[k, l] = C[l, k] = row[l] for l = 0..k.

        Parameters
        ----------
        k : int
        row : array_like, shape (k + 1,)
        """
        k = self._check_k(k, self._c_rows, "C")
        row = _check_row("C row", row, k + 1)
        self.C[k, : k + 1] = row
        self.C[: k + 1, k] = row
        self._c_rows[k] = True

    def set_R_row(self, k: int, row) -> None:
        """Set R[k, j] = row[j] for j = 0..k-1; R[k, j >= k] stays exactly 0.

        Parameters
        ----------
        k : int
        row : array_like, shape (k,)
        """
        k = self._check_k(k, self._r_rows, "R")
        row = _check_row("R row", row, k)
        self.R[k, :k] = row
        self.R[k, k:] = 0.0
        self._r_rows[k] = True

    def check_causal(self) -> None:
        """Raise ``AssertionError`` if C is not exactly symmetric or R is non-zero on/above the diagonal."""
        if not np.array_equal(self.C, self.C.T):
            raise AssertionError("C is not symmetric")
        if np.any(np.triu(self.R) != 0):
            raise AssertionError("R has non-zero entries on or above the diagonal (acausal)")


def resolvent_row(R_row, M_prev, ratio: float) -> np.ndarray:
    """Row k of M = (I + R/δ)^{-1} by forward substitution (docs/theory/dln.md §5.1, n-side).

    Because R is strictly lower-triangular, M is unit lower-triangular and
    M[k, :k] = -(1/δ) Σ_{m<k} R[k, m] M[m, :k]  (from (I + R/δ) M = I), which needs rows < k of M only.

    Parameters
    ----------
    R_row : array_like, shape (k,)
        R[k, :k].
    M_prev : ndarray, shape (>= k, >= k)
        Array whose leading k x k block holds rows 0..k-1 of M.
    ratio : float
        δ = n/d > 0.

    Returns
    -------
    ndarray, shape (k + 1,)
        M[k, :k+1] (last entry 1).
    """
    R_row = np.asarray(R_row, dtype=np.float64)
    k = R_row.shape[0]
    out = np.empty(k + 1)
    if k:
        out[:k] = -(R_row @ M_prev[:k, :k]) / ratio
    out[k] = 1.0
    return out


def sandwich_row(M, S, k: int) -> np.ndarray:
    """Row k of M S Mᵀ for lower-triangular M, using rows 0..k of M and the leading block of S.

    Parameters
    ----------
    M : ndarray, shape (>= k+1, >= k+1)
        Lower-triangular (rows 0..k valid).
    S : ndarray, shape (>= k+1, >= k+1)
        Symmetric (leading (k+1) x (k+1) block valid).
    k : int

    Returns
    -------
    ndarray, shape (k + 1,)
        (M S Mᵀ)[k, l] for l = 0..k.
    """
    w = M[k, : k + 1] @ S[: k + 1, : k + 1]  # (M S)[k, b], b <= k
    return M[: k + 1, : k + 1] @ w  # Σ_b (M S)[k, b] M[l, b]


class ResidualKernels:
    """n-side kernels of docs/theory/dln.md §5.1: M = (I + R_β/δ)^{-1} and C_r = M (C_Δ + σ² 11ᵀ) Mᵀ.

    The single-sample residual is r = M (ω − σ ξ 1) with ω ~ GP(0, C_Δ), ξ ~ N(0, 1); M is the
    response of r to its own input and C_r its covariance.  Rows are computed causally.

    Parameters
    ----------
    n_times : int
        T + 1.
    ratio : float
        δ = n/d > 0.
    noise : float
        Label-noise standard deviation σ >= 0.

    Attributes
    ----------
    M : ndarray, shape (n_times, n_times)
        Unit lower-triangular residual response.
    C_r : ndarray, shape (n_times, n_times)
        Symmetric residual covariance; C_r[k, k] is the training error E_tr(k) of docs/theory/dln.md §5.1.
    """

    def __init__(self, n_times: int, ratio: float, noise: float):
        if not ratio > 0:
            raise ValueError(f"ratio must be > 0, got {ratio}")
        if not noise >= 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.n_times = int(n_times)
        self.ratio = float(ratio)
        self.noise = float(noise)
        self.M = np.zeros((self.n_times, self.n_times))
        self.C_r = np.zeros((self.n_times, self.n_times))
        self._S = np.zeros((self.n_times, self.n_times))  # C_Δ + σ² 11ᵀ
        self.n_filled = 0

    def update(self, k: int, C_delta_row, R_beta_row) -> np.ndarray:
        """Compute row k of M and C_r from row k of C_Δ (length k+1) and of R_β (length k).

        Returns
        -------
        ndarray, shape (k + 1,)
            C_r[k, :k+1].
        """
        k = int(k)
        if k != self.n_filled:
            raise ValueError(f"rows must be filled in order: expected k = {self.n_filled}, got {k}")
        c = _check_row("C_delta row", C_delta_row, k + 1) + self.noise**2
        self._S[k, : k + 1] = c
        self._S[: k + 1, k] = c
        self.M[k, : k + 1] = resolvent_row(_check_row("R_beta row", R_beta_row, k), self.M, self.ratio)
        row = sandwich_row(self.M, self._S, k)
        self.C_r[k, : k + 1] = row
        self.C_r[: k + 1, k] = row
        self.n_filled = k + 1
        return row


def residual_kernels(C_delta, R_beta, ratio: float, noise: float):
    """Whole-matrix version of :class:`ResidualKernels` (used for jackknife error bars).

    Parameters
    ----------
    C_delta : ndarray, shape (n, n)
    R_beta : ndarray, shape (n, n), strictly lower-triangular
    ratio, noise : float

    Returns
    -------
    M, C_r : ndarray, shape (n, n)
    """
    n = C_delta.shape[0]
    A = np.eye(n) + np.tril(R_beta, -1) / ratio
    M = solve_triangular(A, np.eye(n), lower=True, unit_diagonal=True)
    C_r = M @ (C_delta + noise**2) @ M.T
    return M, 0.5 * (C_r + C_r.T)


class IncrementalCholesky:
    """Row-by-row Cholesky factor Q ≈ L Lᵀ of a growing PSD matrix with a relative pivot cutoff.

    Row k regresses the new coordinate on the kept pivots: L[k, A] = x solves L[:k, A] x = Q[:k, k]
    (A: the kept pivots; columns of cut pivots are identically 0).  The relative conditional variance
    v_k/Q[k, k] = 1 − ‖x‖²/Q[k, k] decides the pivot: it is kept, L[k, k] = √v_k, only if it exceeds
    ``pivot_rtol``; otherwise L[k, k] = 0, the coordinate is replaced by its conditional mean given
    the past, and column k stays 0 in every later row.  The cutoff is relative to the marginal variance
    Q[k, k], so it does not depend on the scale of Q (docs/theory/dln.md §10 pitfall 5: the DMFT's C_r/δ loses ten
    decades within ~15 modes; an absolute or tiny cutoff turns rounding residues into pivots).

    Numerics: for an exact PSD matrix the system is consistent and the square triangular sub-system
    on the rows A gives x.  In floating point that forward substitution amplifies rounding
    multiplicatively along chains of small kept pivots (on a smooth kernel the factor's rows reach
    norms 3-20x √Q[k, k] at rtol = 1e-8).  Here x is instead the least-squares solution over ALL
    previous rows (rows weighted by Q[j, j]^{-1/2}, i.e. in correlation units), whose conditioning is
    that of the kept modes over the whole past rather than a product of pivots.  It coincides with the
    triangular solution in exact arithmetic and costs O(k · rank²) per row.

    Errors: every dropped pivot removes a conditional variance <= pivot_rtol · Q[k, k] from the
    diagonal; covariances with a dropped component are off by at most √(pivot_rtol) times the
    standard deviations involved.

    Parameters
    ----------
    n : int
        Maximal number of rows.
    pivot_rtol : float, optional
        Relative cutoff in [0, 1); default 1e-8.

    Attributes
    ----------
    L : ndarray, shape (n, n)
        Lower-triangular factor (rows 0..n_rows-1 valid).
    cut : ndarray of bool, shape (n,)
        True where a pivot was cut.
    n_rows : int
    """

    def __init__(self, n: int, pivot_rtol: float = DEFAULT_PIVOT_RTOL):
        if not 0.0 <= pivot_rtol < 1.0:
            raise ValueError(f"pivot_rtol must be in [0, 1), got {pivot_rtol}")
        self.n = int(n)
        self.pivot_rtol = float(pivot_rtol)
        self.L = np.zeros((self.n, self.n))
        self.cut = np.zeros(self.n, dtype=bool)
        self.n_rows = 0
        self._w = np.zeros(self.n)  # row weights Q[j, j]^{-1/2} (0 for zero-variance rows)

    @property
    def rank(self) -> int:
        """Number of pivots kept so far."""
        return int(self.n_rows - self.cut[: self.n_rows].sum())

    def add_row(self, q_row) -> np.ndarray:
        """Append row k = n_rows, given Q[k, :k+1]; return L[k, :k+1].

        Parameters
        ----------
        q_row : array_like, shape (k + 1,)
        """
        k = self.n_rows
        if k >= self.n:
            raise ValueError(f"factor already has its {self.n} rows")
        q = _check_row("q_row", q_row, k + 1)
        row = np.zeros(k + 1)
        self.n_rows = k + 1
        if not q[k] > 0:  # zero (or invalid) variance: a PSD matrix has a zero row there
            self.cut[k] = True
            return row
        self._w[k] = 1.0 / np.sqrt(q[k])
        active = np.flatnonzero(~self.cut[:k])
        if active.size:
            w = self._w[:k]
            A = self.L[:k][:, active] * w[:, None]
            row[active] = lstsq(A, q[:k] * w, lapack_driver="gelsd", check_finite=False)[0]
        var = q[k] - row[:k] @ row[:k]
        if var > self.pivot_rtol * q[k]:
            row[k] = np.sqrt(var)
        else:
            self.cut[k] = True
            if var < 0:
                # rounding (O(pivot_rtol) here) made the conditional mean's variance exceed the
                # total: shrink it onto the exact variance instead of keeping an impossible row
                row[:k] *= np.sqrt(q[k] / (q[k] - var))
        self.L[k, : k + 1] = row
        return row


class CausalGaussianSampler:
    """Causal sampler of a centred Gaussian process from white noise fixed per sample.

    With z_j iid N(0, 1) per sample (drawn once), ζ^k = Σ_{j≤k} L[k, j] z_j where L is the
    incremental Cholesky factor of the covariance Q revealed row by row.  ζ^k therefore depends only
    on z_0..z_k and on Q[:k+1, :k+1] (docs/theory/dln.md §5.2 step 4).

    Parameters
    ----------
    white_noise : ndarray, shape (n_times, K)
        z[j, i] for grid point j and sample i.
    pivot_rtol : float, optional
        Relative pivot cutoff of :class:`IncrementalCholesky`.

    Attributes
    ----------
    chol : IncrementalCholesky
    """

    def __init__(self, white_noise, pivot_rtol: float = DEFAULT_PIVOT_RTOL):
        z = np.asarray(white_noise)
        if z.ndim != 2:
            raise ValueError(f"white_noise must have shape (n_times, K), got {z.shape}")
        self.z = z
        self.chol = IncrementalCholesky(z.shape[0], pivot_rtol)

    def next(self, q_row) -> np.ndarray:
        """Extend the covariance by Q[k, :k+1] (k = rows so far) and return ζ^k, shape (K,)."""
        k = self.chol.n_rows
        row = self.chol.add_row(q_row)
        return row @ self.z[: k + 1]


def _block_edges(n_rows: int, block: int) -> list[tuple[int, int]]:
    # Rows 1..n_rows-1 carry tangents (row 0 has no earlier kick), grouped in blocks of `block` rows.
    return [(a, min(a + block, n_rows)) for a in range(1, n_rows, block)]


def tangent_history_nbytes(n_times: int, n_samples: int, itemsize: int, block: int = 16) -> int:
    """Bytes held by a :class:`CausalTangentHistory` with these sizes (for memory checks).

    Parameters
    ----------
    n_times : int
        T + 1.
    n_samples : int
        K.
    itemsize : int
        4 (float32) or 8 (float64).
    block : int
        Rows per storage block.
    """
    return sum((b - a) * (b - 1) for a, b in _block_edges(n_times, block)) * n_samples * itemsize


class CausalTangentHistory:
    """Per-sample forward-mode tangents D[l, j, i] = ∂x_i^l/∂h^j, j < l, with a memory contraction.

    Storage is lower-triangular in blocks of ``block`` rows: the block holding rows l ∈ [a, b) is one
    contiguous array of shape (b − a, b − 1, K), since row l only has columns j < l <= b − 1.  Total
    memory is ≈ K T²/2 (1 + block/T) items, half of the square layout, and the memory contraction
    Σ_l c_l D[l, j] is one matrix-vector product per block.

    Parameters
    ----------
    n_times : int
        T + 1; rows l = 1..T are stored (row 0 has no tangents).
    n_samples : int
        K.
    dtype : numpy dtype, optional
        float32 halves memory and time (docs/theory/dln.md §10 pitfall 7: float64 gives the same curves to 1e-5).
    block : int, optional
        Rows per storage block.
    """

    def __init__(self, n_times: int, n_samples: int, dtype=np.float64, block: int = 16):
        self.n_times = int(n_times)
        self.n_samples = int(n_samples)
        self.dtype = np.dtype(dtype)
        self.block = int(block)
        self._edges = _block_edges(self.n_times, self.block)
        self._blocks = [np.zeros((b - a, b - 1, self.n_samples), dtype=self.dtype) for a, b in self._edges]
        self.n_rows = 1  # row 0 is implicitly zero

    @property
    def nbytes(self) -> int:
        return sum(blk.nbytes for blk in self._blocks)

    def _locate(self, l: int) -> tuple[int, int]:
        bi = (l - 1) // self.block
        return bi, l - self._edges[bi][0]

    def append(self, rows) -> None:
        """Store row l = n_rows: rows[j, i] = ∂x_i^l/∂h^j for j < l.

        Parameters
        ----------
        rows : array_like, shape (l, K)
        """
        l = self.n_rows
        if l >= self.n_times:
            raise ValueError(f"history already holds its {self.n_times} rows")
        rows = np.asarray(rows)
        if rows.shape != (l, self.n_samples):
            raise ValueError(f"rows must have shape ({l}, {self.n_samples}), got {rows.shape}")
        bi, r = self._locate(l)
        self._blocks[bi][r, :l] = rows
        self.n_rows = l + 1

    def row(self, l: int) -> np.ndarray:
        """View of the stored row l, shape (l, K)."""
        if not 1 <= l < self.n_rows:
            raise ValueError(f"row {l} not stored (rows 1..{self.n_rows - 1})")
        bi, r = self._locate(l)
        return self._blocks[bi][r, :l]

    def contract(self, weights, out=None) -> np.ndarray:
        """Σ_{l=j+1}^{k} weights[l] · D[l, j, :] for j = 0..k-1, with k = n_rows − 1.

        This is the memory term of the response equations, e.g. δg^k_j = Σ_l M[k, l] δβ^l_j
        (docs/theory/dln.md §5.2 step 2).  Entries D[l, j] with j >= l are stored as exact zeros, so each block is
        contracted as a dense matrix-vector product.

        Parameters
        ----------
        weights : array_like, shape (k + 1,)
            weights[0] is ignored (row 0 has no tangents).
        out : ndarray, shape (>= k, K), optional
            Destination (its first k rows are overwritten).

        Returns
        -------
        ndarray, shape (k, K), dtype of the history
        """
        k = self.n_rows - 1
        w = np.asarray(weights, dtype=self.dtype)
        if w.shape != (k + 1,):
            raise ValueError(f"weights must have shape ({k + 1},), got {w.shape}")
        if out is None:
            out = np.zeros((k, self.n_samples), dtype=self.dtype)
        else:
            out = out[:k]
            out[...] = 0
        for (a, b), blk in zip(self._edges, self._blocks):
            if a > k:
                break
            hi = min(b, k + 1)  # rows a..hi-1 are filled
            ncol = min(b - 1, k)
            sub = blk[: hi - a, :ncol, :].reshape(hi - a, ncol * self.n_samples)
            out[:ncol] += (w[a:hi] @ sub).reshape(ncol, self.n_samples)
        return out


def interpolate_curves(grid, values, times):
    """Interpolate curves sampled on a time grid onto arbitrary times, with an error estimate.

    The interpolant is the not-a-knot cubic spline in t (error O(h⁴·f⁽⁴⁾) for a smooth curve, h the
    grid step).  Its error is estimated by the distance to the monotone piecewise-cubic (PCHIP)
    interpolant of the same points, whose error is O(h³): that distance is dominated by the PCHIP
    error and so over-estimates the spline's.  As the distance crosses zero inside an interval, the
    estimate at t is twice its maximum over the grid interval holding t, shaped by 4s(1 − s) (s the
    position of t in the interval: the error vanishes at the nodes); the factor 2 comes from a
    measurement on exact curves, see the code.  Both interpolants pass through the
    grid values, so at a requested time that is a grid point the value is the grid value (to rounding)
    and the estimate is 0.
    Linear interpolation, by contrast, errs by h²·f''/8, which near t = 0 of a gradient-flow curve
    exceeds the statistical error of a Monte-Carlo mean (issue #17).

    Parameters
    ----------
    grid : array_like, shape (T,)
        Increasing grid times (T ≥ 3), in the family's time unit.
    values : array_like, shape (T, ...)
        Curves on the grid; the first axis is time.
    times : array_like, shape (n,)
        Requested times inside [grid[0], grid[-1]].

    Returns
    -------
    interp : ndarray, shape (n, ...)
        Spline values at ``times``.
    error : ndarray, shape (n, ...)
        2·4s(1 − s)·max of |spline − PCHIP| over t's grid interval (0 on grid points): a
        conservative estimate of the spline's interpolation error.
    """
    from scipy.interpolate import CubicSpline, PchipInterpolator

    grid = np.asarray(grid, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 3 or np.any(np.diff(grid) <= 0):
        # two points admit only the chord, whose error nothing here could estimate
        raise ValueError(f"grid of size {grid.size} is invalid: must be an increasing 1-D array of at "
                         f"least 3 times")
    span = grid[-1] - grid[0]
    if np.any(times < grid[0] - 1e-12 * span) or np.any(times > grid[-1] + 1e-12 * span):
        raise ValueError(f"times outside the grid [{grid[0]:g}, {grid[-1]:g}] cannot be interpolated")
    times = np.clip(times, grid[0], grid[-1])
    spline = CubicSpline(grid, values, axis=0, bc_type="not-a-knot")
    pchip = PchipInterpolator(grid, values, axis=0)
    # |spline − pchip| crosses zero inside an interval while the true error need not: take its maximum
    # over the interval holding t (9 points) as the estimate, 0 at grid points (both are exact there)
    j = np.clip(np.searchsorted(grid, times, side="right") - 1, 0, grid.size - 2)
    frac = np.linspace(0.0, 1.0, 9)
    probe = grid[j, None] + frac[None, :] * (grid[j + 1] - grid[j])[:, None]          # (n, 9)
    gap = np.abs(spline(probe.ravel()) - pchip(probe.ravel())).reshape(probe.shape + values.shape[1:])
    # The error of an interpolant vanishes at the nodes: shape the interval maximum by 4s(1 − s), s the
    # position of t in its interval (≥ the linear growth of the error away from a node, up to the
    # factor below).  ×2: on the gradient-flow closed form of docs/theory/dln.md §3 (α ∈ {0.5, 0.1, 0.02},
    # h ∈ {0.1, 0.2}, 157 log- and linearly spaced times) the true spline error reached at most 1.13×
    # the unshaped interval maximum and 0.6× the shaped estimate (tests/unit/test_theory_times.py).
    s = (times - grid[j]) / (grid[j + 1] - grid[j])
    shape = (4.0 * s * (1.0 - s)).reshape((-1,) + (1,) * (values.ndim - 1))
    error = 2.0 * gap.max(axis=1) * shape
    tol = 1e-12 * max(span, 1.0)
    on_grid = (np.abs(times - grid[j]) <= tol) | (np.abs(times - grid[j + 1]) <= tol)
    error[on_grid] = 0.0
    return spline(times), error
