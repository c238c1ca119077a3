"""Gaussian expectations for the teacher–student (two-layer) theory.

Everything in the d → ∞ theory of soft committee machines is an average over the jointly Gaussian
fields u = (λ_1..λ_K, ν_1..ν_M) ~ N(0, Ω) with Ω = [[Q, R], [Rᵀ, T]] (docs/theory/teacher_student.md §2).
This module provides

* :func:`expect` — E[f(u)] for u ~ N(0, C), n ≤ 4, by tensor-product Gauss–Hermite quadrature after an
  *eigen* square root of C (C is singular whenever field indices repeat; note §4.4, pitfall 9);
* :func:`two_layer_averages` — the tensors I2, J2, I3, I4 of note §3 for one activation, with
  closed forms for ``erf`` (§4.1) and ``linear`` (§4.2), closed forms for ReLU I2/J2/I3 and a
  deterministic 1-D path integral (Plackett/Price identity, §4.3) for ReLU I4, and Gauss–Hermite
  quadrature for every other activation (Stein's lemma reduces I3 to 2-D integrals);
* :func:`two_layer_i2` — I2 alone (the generalisation error needs only I2, §5);
* :func:`orthant_probability` — P(u > 0) for n ≤ 4 fields (closed form for n ≤ 3, Plackett's 1-D
  integral for n = 4).

Only numpy and scipy are imported at module level (this module is imported by
:mod:`hidyn.observables`).  Activations are duck-typed: any object with ``name``, ``g``, ``dg`` and
``d2g`` attributes (a :class:`hidyn.activations.Activation`) is accepted; a name or a tuple of
callables is resolved lazily through :func:`hidyn.activations.get_activation`.

Conventions
-----------
All arrays are float64.  Covariances may carry leading batch dimensions ``(..., n, n)``; every
function is vectorised over them.  Index order of the tensors (note §3):

* ``I2[a, b] = E[g(u_a) g(u_b)]``, shape (..., L, L);
* ``J2[i, k] = E[g'(u_i) g'(u_k)]``, shape (..., K, K) — students only;
* ``I3[i, b, c] = E[g'(u_i) u_b g(u_c)]``, shape (..., K, L, L) — first index a student;
* ``I4[i, k, a, b] = E[g'(u_i) g'(u_k) g(u_a) g(u_b)]``, shape (..., K, K, L, L).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

__all__ = [
    "expect",
    "gauss_hermite_rule",
    "check_covariance",
    "two_layer_averages",
    "two_layer_i2",
    "orthant_probability",
    "CLOSED_FORM_ACTIVATIONS",
]

#: Activations whose averages are computed in closed form (ReLU I4: deterministic 1-D quadrature).
CLOSED_FORM_ACTIVATIONS = ("erf", "linear", "relu")

_PI = math.pi
_TWO_PI = 2.0 * math.pi
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_POLYNOMIAL = {"linear", "quadratic", "he1", "he2", "he3", "he4"}
# default Gauss–Hermite nodes per axis for smooth activations, by integral dimension
_DEFAULT_NODES = {1: 128, 2: 64, 3: 32, 4: 20}
_POLY_NODES = 10  # exact for polynomial integrands of degree ≤ 19 per axis (he4: I4 degree 14)
_CHUNK = 1 << 21  # max quadrature points (times batch size) held in memory at once
_PSD_RTOL = 1e-10


# --------------------------------------------------------------------------------------------
# generic tools
# --------------------------------------------------------------------------------------------
def check_covariance(cov, name: str = "cov", *, rtol: float = _PSD_RTOL) -> np.ndarray:
    """Validate a (batch of) covariance matrix and return it as float64.

    Parameters
    ----------
    cov : array_like, shape (..., n, n)
        Candidate covariance(s).
    name : str
        Parameter name used in error messages.
    rtol : float
        Relative tolerance for symmetry and for negative eigenvalues (relative to the largest
        absolute diagonal entry, at least 1).

    Returns
    -------
    ndarray, shape (..., n, n), float64

    Raises
    ------
    ValueError
        Wrong shape, non-finite entries, asymmetry, or a negative eigenvalue (not positive
        semi-definite).
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2] or c.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., n, n) with n >= 1, got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{name} has non-finite entries")
    scale = np.maximum(1.0, np.max(np.abs(np.diagonal(c, axis1=-2, axis2=-1)), axis=-1))
    asym = np.max(np.abs(c - np.swapaxes(c, -1, -2)), axis=(-1, -2))
    if np.any(asym > rtol * scale):
        raise ValueError(f"{name} must be symmetric (max |C - C^T| = {np.max(asym):.3g})")
    lam_min = np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, -1, -2)))[..., 0]
    if np.any(lam_min < -rtol * scale * c.shape[-1]):
        raise ValueError(f"{name} must be positive semi-definite (smallest eigenvalue "
                         f"{np.min(lam_min):.3g} < 0): not a valid covariance of Gaussian fields")
    return c


def _eig_sqrt(cov: np.ndarray) -> np.ndarray:
    """S with S Sᵀ = cov from an eigen-decomposition (valid for singular PSD cov), shape (..., n, n)."""
    lam, vec = np.linalg.eigh(0.5 * (cov + np.swapaxes(cov, -1, -2)))
    return vec * np.sqrt(np.maximum(lam, 0.0))[..., None, :]


@lru_cache(maxsize=64)
def gauss_hermite_rule(n_dim: int, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product Gauss–Hermite rule for the standard normal in ``n_dim`` dimensions.

    Parameters
    ----------
    n_dim : int
        Dimension, 1 to 4.
    n_nodes : int
        Nodes per axis.

    Returns
    -------
    z : ndarray, shape (n_nodes**n_dim, n_dim)
        Nodes (standard-normal coordinates).
    w : ndarray, shape (n_nodes**n_dim,)
        Probability weights (they sum to 1).
    """
    x, w = hermegauss(n_nodes)  # weight exp(-x^2/2); the weights sum to sqrt(2 pi)
    w = w / math.sqrt(_TWO_PI)
    grids = np.meshgrid(*([x] * n_dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * n_dim), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=-1)
    ww = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    z.setflags(write=False)
    ww.setflags(write=False)
    return z, ww


def _check_nodes(n_nodes, name="n_nodes") -> int:
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [1, 200], got {n_nodes!r}")
    if not 1 <= int(n_nodes) <= 200:
        raise ValueError(f"{name} must be an integer in [1, 200], got {n_nodes}")
    return int(n_nodes)


def expect(f, cov, n_nodes: int = 20) -> np.ndarray:
    """E[f(u)] for u ~ N(0, cov) by tensor-product Gauss–Hermite quadrature (note §4.4).

    The square root of ``cov`` is taken from its eigen-decomposition, so singular covariances (repeated
    fields, perfectly correlated fields) are fine.

    Parameters
    ----------
    f : callable
        Called once with ``u`` of shape (..., N, n) — N = n_nodes**n quadrature points, the last axis
        the n field components — and must return an array of shape (..., N) (or broadcastable to it).
    cov : array_like, shape (..., n, n)
        Covariance(s), n = 1 … 4, positive semi-definite.
    n_nodes : int
        Gauss–Hermite nodes per axis (exact for polynomials of degree ≤ 2·n_nodes − 1 per axis).

    Returns
    -------
    ndarray, shape (...)
        The expectation(s).

    Raises
    ------
    ValueError
        ``cov`` not a valid covariance, n outside 1 … 4, or a bad ``n_nodes``.
    """
    c = check_covariance(cov, "cov")
    n = c.shape[-1]
    if n > 4:
        raise ValueError(f"cov must be n x n with 1 <= n <= 4 (tensor-product quadrature), got n = {n}")
    n_nodes = _check_nodes(n_nodes)
    z, w = gauss_hermite_rule(n, n_nodes)
    s = _eig_sqrt(c)
    u = np.einsum("qj,...ij->...qi", z, s)
    vals = np.asarray(f(u), dtype=np.float64)
    vals = np.broadcast_to(vals, u.shape[:-1])
    return vals @ w


def _resolve_activation(activation):
    """Duck-typed activation; names/tuples go through hidyn.activations (imported lazily)."""
    if all(hasattr(activation, a) for a in ("name", "g", "dg", "d2g")):
        return activation
    from hidyn.activations import get_activation  # lazy: keep module imports numpy/scipy only

    return get_activation(activation)


def _check_omega(Omega, K=None):
    om = check_covariance(Omega, "Omega")
    L = om.shape[-1]
    if K is not None:
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or not 1 <= K <= L:
            raise ValueError(f"K (number of students) must be an integer in [1, {L}] for Omega of "
                             f"size {L} x {L}, got {K!r}")
    return om


# --------------------------------------------------------------------------------------------
# index structures (depend only on K, L; built once and cached — no loops in the hot path)
# --------------------------------------------------------------------------------------------
def _collapse_tuples(labels: np.ndarray):
    """Group tuples of field labels by their number of distinct fields.

    Returns a dict ``n -> (rows, uniq, pos)``: ``rows`` (T_n,) indices into ``labels``, ``uniq``
    (T_n, n) the distinct labels in order of appearance, ``pos`` (T_n, p) the position of each factor's
    label in ``uniq``.
    """
    groups: dict[int, list] = {}
    for r, tup in enumerate(labels.tolist()):
        uniq: list[int] = []
        for lab in tup:
            if lab not in uniq:
                uniq.append(lab)
        pos = [uniq.index(lab) for lab in tup]
        groups.setdefault(len(uniq), []).append((r, uniq, pos))
    out = {}
    for n, items in groups.items():
        out[n] = (np.array([it[0] for it in items], dtype=np.intp),
                  np.array([it[1] for it in items], dtype=np.intp).reshape(len(items), n),
                  np.array([it[2] for it in items], dtype=np.intp))
    return out


@lru_cache(maxsize=64)
def _pair_structure(n_first: int, L: int):
    """Pairs (a, c), a < n_first, c < L, grouped by coincidence (a == c → 1-D)."""
    a, c = np.meshgrid(np.arange(n_first), np.arange(L), indexing="ij")
    labels = np.stack([a.ravel(), c.ravel()], axis=-1)
    return labels, _collapse_tuples(labels)


@lru_cache(maxsize=64)
def _sym_pair_structure(L: int):
    """Unordered pairs a <= b of L fields, with the map (L, L) -> pair index."""
    a, b = np.triu_indices(L)
    labels = np.stack([a, b], axis=-1)
    idx = np.empty((L, L), dtype=np.intp)
    idx[a, b] = np.arange(a.size)
    idx[b, a] = np.arange(a.size)
    return labels, idx, _collapse_tuples(labels)


@lru_cache(maxsize=64)
def _triple_structure(K: int, L: int):
    i, b, c = np.meshgrid(np.arange(K), np.arange(L), np.arange(L), indexing="ij")
    labels = np.stack([i.ravel(), b.ravel(), c.ravel()], axis=-1)
    return labels, _collapse_tuples(labels)


@lru_cache(maxsize=64)
def _quad_structure(K: int, L: int):
    """Unique I4 tuples (i <= k students, a <= b fields) and the map (K, K, L, L) -> tuple index."""
    ik = np.array(np.triu_indices(K)).T
    ab = np.array(np.triu_indices(L)).T
    labels = np.concatenate([np.repeat(ik, len(ab), axis=0), np.tile(ab, (len(ik), 1))], axis=1)
    n_ab = len(ab)
    ab_idx = np.empty((L, L), dtype=np.intp)
    ab_idx[ab[:, 0], ab[:, 1]] = np.arange(n_ab)
    ab_idx[ab[:, 1], ab[:, 0]] = np.arange(n_ab)
    ik_idx = np.empty((K, K), dtype=np.intp)
    ik_idx[ik[:, 0], ik[:, 1]] = np.arange(len(ik))
    ik_idx[ik[:, 1], ik[:, 0]] = np.arange(len(ik))
    full = ik_idx[:, :, None, None] * n_ab + ab_idx[None, None, :, :]
    return labels, full, _collapse_tuples(labels)


# --------------------------------------------------------------------------------------------
# Gauss–Hermite averages over tuples of fields (general activations, note §4.4)
# --------------------------------------------------------------------------------------------
def _nodes_for(act, n_dim: int, n_nodes):
    if n_nodes is not None:
        return _check_nodes(n_nodes)
    if act.name in _POLYNOMIAL:
        return _POLY_NODES
    return _DEFAULT_NODES[n_dim]


def _quad_tuples(Omega: np.ndarray, n_rows: int, groups: dict, funcs, act, n_nodes) -> np.ndarray:
    """E[Π_j funcs[j](u_{label_j})] for every tuple, by Gauss–Hermite on the distinct fields.

    ``funcs[j]`` may be None, meaning the identity (a bare field u_b).  Returns (..., n_rows).
    """
    batch = Omega.shape[:-2]
    nb = int(np.prod(batch, dtype=np.int64)) if batch else 1
    out = np.empty(batch + (n_rows,))
    for n, (rows, uniq, pos) in groups.items():
        nn = _nodes_for(act, n, n_nodes)
        z, w = gauss_hermite_rule(n, nn)
        cov = Omega[..., uniq[:, :, None], uniq[:, None, :]]  # (..., T_n, n, n)
        s = _eig_sqrt(cov)
        t_n = rows.size
        chunk = max(1, _CHUNK // (w.size * nb))
        ar = np.arange(t_n)
        for start in range(0, t_n, chunk):
            sl = slice(start, min(t_n, start + chunk))
            prod = None
            for j, f in enumerate(funcs):
                srow = s[..., ar[sl], pos[sl, j], :]  # (..., tc, n): row of S giving field j
                comp = np.einsum("...tl,ql->...tq", srow, z)
                val = comp if f is None else f(comp)
                prod = val if prod is None else prod * val
            out[..., rows[sl]] = prod @ w
    return out


def _quad_i2(act, Omega, n_nodes, g1, g2):
    L = Omega.shape[-1]
    labels, idx, groups = _sym_pair_structure(L)
    vals = _quad_tuples(Omega, labels.shape[0], groups, (g1, g2), act, n_nodes)
    return vals[..., idx]


def _quad_i3(act, Omega, K, n_nodes):
    L = Omega.shape[-1]
    if act.d2g is not None:
        # Stein (note §4.1): I3(i,b,c) = C_ib E[g''(u_i) g(u_c)] + C_bc E[g'(u_i) g'(u_c)]
        labels, groups = _pair_structure(K, L)
        e_ddg = _quad_tuples(Omega, labels.shape[0], groups, (act.d2g, act.g), act, n_nodes)
        e_dd = _quad_tuples(Omega, labels.shape[0], groups, (act.dg, act.dg), act, n_nodes)
        shp = Omega.shape[:-2] + (K, L)
        e_ddg, e_dd = e_ddg.reshape(shp), e_dd.reshape(shp)
        return (Omega[..., :K, :, None] * e_ddg[..., :, None, :]
                + Omega[..., None, :, :] * e_dd[..., :, None, :])
    labels, groups = _triple_structure(K, L)
    vals = _quad_tuples(Omega, labels.shape[0], groups, (act.dg, None, act.g), act, n_nodes)
    return vals.reshape(Omega.shape[:-2] + (K, L, L))


def _quad_i4(act, Omega, K, n_nodes):
    L = Omega.shape[-1]
    labels, full, groups = _quad_structure(K, L)
    vals = _quad_tuples(Omega, labels.shape[0], groups, (act.dg, act.dg, act.g, act.g), act, n_nodes)
    return vals[..., full]


# --------------------------------------------------------------------------------------------
# closed forms: erf (note §4.1) and linear (§4.2)
# --------------------------------------------------------------------------------------------
def _asin(x):
    # pitfall 10: clip round-off to [-1, 1] (minimum/maximum: np.clip is slow on small arrays)
    return np.arcsin(np.minimum(np.maximum(x, -1.0), 1.0))


def _erf_i2(Omega):
    d1 = 1.0 + Omega.diagonal(axis1=-2, axis2=-1)
    return (2.0 / _PI) * _asin(Omega / np.sqrt(d1[..., :, None] * d1[..., None, :]))


def _erf_j2(Omega, K):
    q = Omega[..., :K, :K]
    d1 = 1.0 + q.diagonal(axis1=-2, axis2=-1)
    return (2.0 / _PI) / np.sqrt(d1[..., :, None] * d1[..., None, :] - q * q)


@lru_cache(maxsize=64)
def _erf_gather(K: int, L: int):
    """Gather indices into z = (Ω.ravel(), 1 + diag Ω) for the erf I3 and I4 formulas.

    Flat gathers replace broadcasting (for the small tensors of the ODE the cost is the number of numpy
    calls, not flops).  Rows of idx3: (1+C_ii, 1+C_cc, C_ib, C_ic, C_bc) over (i, b, c);
    rows of idx4: (1+C_ii, 1+C_kk, 1+C_cc, 1+C_dd, C_ik, C_ic, C_id, C_kc, C_kd, C_cd) over (i, k, c, d).
    """
    LL = L * L
    i, b, c = (x.ravel() for x in np.meshgrid(np.arange(K), np.arange(L), np.arange(L), indexing="ij"))
    idx3 = np.stack([LL + i, LL + c, i * L + b, i * L + c, b * L + c])
    i, k, c, d = (x.ravel() for x in np.meshgrid(np.arange(K), np.arange(K), np.arange(L), np.arange(L),
                                                 indexing="ij"))
    idx4 = np.stack([LL + i, LL + k, LL + c, LL + d, i * L + k, i * L + c, i * L + d, k * L + c, k * L + d,
                     c * L + d])
    return idx3, idx4


def _erf_ext(Omega):
    L = Omega.shape[-1]
    flat = Omega.reshape(Omega.shape[:-2] + (L * L,))
    return np.concatenate((flat, 1.0 + flat[..., ::L + 1]), axis=-1)


def _rows(g):
    """Split the gathered (..., n_rows, N) array into its rows (views)."""
    if g.ndim == 2:
        return g
    return [g[..., j, :] for j in range(g.shape[-2])]


def _erf_i3(Omega, K, ext=None):
    """I3(i,b,c) = (2/π)[C_bc(1+C_ii) − C_ib C_ic] / [(1+C_ii)√((1+C_ii)(1+C_cc) − C_ic²)]  (§4.1)."""
    L = Omega.shape[-1]
    idx3, _ = _erf_gather(K, L)
    if ext is None:
        ext = _erf_ext(Omega)
    aa, cc, ab, ac, bc = _rows(ext[..., idx3])
    val = (2.0 / _PI) * (bc * aa - ab * ac) / (aa * np.sqrt(aa * cc - ac * ac))
    return val.reshape(Omega.shape[:-2] + (K, L, L))


def _erf_i4(Omega, K, ext=None):
    """I4(i,k,c,d) for erf (note §4.1): (4/π²) Λ4^{−1/2} arcsin(Λ0/√(Λ1Λ2)), a = i, b = k students."""
    L = Omega.shape[-1]
    _, idx4 = _erf_gather(K, L)
    if ext is None:
        ext = _erf_ext(Omega)
    aa, bb, cc, dd, ab, ac, ad, bc, bd, cd = _rows(ext[..., idx4])
    lam4 = aa * bb - ab * ab
    abac, abad = ab * ac, ab * ad
    lam0 = lam4 * cd - bc * bd * aa - ac * ad * bb + abac * bd + abad * bc
    lam1 = lam4 * cc - bc * bc * aa - ac * ac * bb + 2.0 * abac * bc
    lam2 = lam4 * dd - bd * bd * aa - ad * ad * bb + 2.0 * abad * bd
    val = (4.0 / _PI**2) / np.sqrt(lam4) * _asin(lam0 / np.sqrt(lam1 * lam2))
    return val.reshape(Omega.shape[:-2] + (K, K, L, L))


def _linear_all(Omega, K, need_i4):
    L = Omega.shape[-1]
    batch = Omega.shape[:-2]
    out = {"I2": Omega.copy(),
           "J2": np.ones(batch + (K, K)),
           "I3": np.broadcast_to(Omega[..., None, :, :], batch + (K, L, L)).copy()}
    if need_i4:
        out["I4"] = np.broadcast_to(Omega[..., None, None, :, :], batch + (K, K, L, L)).copy()
    return out


# --------------------------------------------------------------------------------------------
# ReLU (note §4.3)
# --------------------------------------------------------------------------------------------
def _sd(var):
    return np.sqrt(np.maximum(var, 0.0))


def _corr(cab, va, vb):
    """Correlation with a safe 0/0 (zero-variance field → correlation 0), clipped to [-1, 1]."""
    den = _sd(va) * _sd(vb)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0.0, cab / np.where(den > 0.0, den, 1.0), 0.0)
    return np.minimum(np.maximum(r, -1.0), 1.0)


def _arccos_kernel(caa, cbb, cab):
    """E[relu(u_a) relu(u_b)] = [√(C_aa C_bb − C_ab²) + (π − θ) C_ab]/(2π), θ = arccos ρ.

    θ is computed as atan2(√(C_aa C_bb − C_ab²), C_ab): arccos(ρ) turns the rounding of ρ ≈ 1 into an
    O(√eps) ≈ 1e-8 error (on the diagonal a = b, where ρ rounds to 1 − 1e-16, E[relu(u)²] = C/2 came out
    1e-8 off); atan2 of the Gram determinant is exact there and well conditioned for nearly parallel fields.
    """
    root = _sd(caa * cbb - cab * cab)
    theta = np.arctan2(root, cab)
    return (root + (_PI - theta) * cab) / _TWO_PI


def _p2(rho):
    """Bivariate orthant probability P(u_1 > 0, u_2 > 0) = 1/4 + arcsin ρ/(2π)."""
    return 0.25 + _asin(rho) / _TWO_PI


def _relu_i2(Omega):
    d = Omega.diagonal(axis1=-2, axis2=-1)
    return _arccos_kernel(d[..., :, None], d[..., None, :], Omega)


def _relu_j2(Omega, K):
    q = Omega[..., :K, :K]
    d = q.diagonal(axis1=-2, axis2=-1)
    return _p2(_corr(q, d[..., :, None], d[..., None, :]))


def _relu_i3(Omega, K):
    # Stein on u_b: I3(a,b,c) = C_ab E[δ(u_a) relu(u_c)] + C_bc E[Θ(u_a) Θ(u_c)]
    #   E[δ(u_a) relu(u_c)] = √(C_aa C_cc − C_ac²)/(2π C_aa)           (note §4.3)
    d = Omega.diagonal(axis1=-2, axis2=-1)
    caa = d[..., :K, None]
    cac = Omega[..., :K, :]
    ccc = d[..., None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        e_delta = np.where(caa > 0.0, _sd(caa * ccc - cac * cac) / (_TWO_PI * np.where(caa > 0, caa, 1.0)),
                           0.0)
    e_tt = _p2(_corr(cac, caa, ccc))
    return Omega[..., :K, :, None] * e_delta[..., :, None, :] + Omega[..., None, :, :] * e_tt[..., :, None, :]


@lru_cache(maxsize=4)
def _path_rule(n_per_panel: int = 12, log_s_min: int = -10):
    """Quadrature for ∫_0^1 F(t) dt with endpoint singularities ∝ (1−t)^{±1/2} (§4.3 Plackett path).

    Substitution t = 1 − s² (dt = 2s ds) makes square-root endpoint behaviour analytic in s; a graded
    (geometric) mesh of Gauss–Legendre panels in s resolves branch points that sit within 1e-10 of the
    endpoint (nearly singular covariances, e.g. a student almost equal to a teacher).

    Returns t, u = 1 − t (computed without cancellation) and weights, each of shape (J,).
    """
    edges = np.concatenate([[0.0], np.logspace(log_s_min, -1, -log_s_min), [0.35, 1.0]])
    x, w = leggauss(n_per_panel)
    s_all, w_all = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s_all.append(0.5 * (hi - lo) * x + 0.5 * (hi + lo))
        w_all.append(0.5 * (hi - lo) * w)
    s = np.concatenate(s_all)
    ws = np.concatenate(w_all)
    u = s * s
    t = 1.0 - u
    wt = ws * 2.0 * s
    for arr in (t, u, wt):
        arr.setflags(write=False)
    return t, u, wt


class _PathCorr:
    """Correlations r_pq(t) = t ρ_pq of the Plackett path R(t) = (1 − t) I + t R, shape (..., T, J).

    Also provides 1 − r_pq² computed as (1 − t + t(1 − ρ))(1 + tρ) to avoid cancellation as t → 1.
    """

    def __init__(self, rho: dict, t: np.ndarray, u: np.ndarray):
        self.rho = rho
        self.t = t
        self.u = u
        self.rho1 = {k: v[..., None] for k, v in rho.items()}
        self.r = {k: v * t for k, v in self.rho1.items()}

    def get(self, p, q):
        if p == q:
            return 1.0
        return self.r[(p, q) if p < q else (q, p)]

    def rho_of(self, p, q):
        """Target correlation ρ_pq with a trailing axis for the path nodes."""
        if p == q:
            return 1.0
        return self.rho1[(p, q) if p < q else (q, p)]

    def one_minus_sq(self, p, q):
        rho = self.rho_of(p, q)
        t = self.t
        return np.maximum((self.u + t * (1.0 - rho)) * (1.0 + t * rho), 0.0)  # |ρ| ≤ 1: both factors ≥ 0

    def cond1(self, p, fields):
        """Conditional covariance of ``fields`` given u_p = 0: dict (x, y) -> entry."""
        out = {}
        for ii, x in enumerate(fields):
            for y in fields[ii:]:
                if x == y:
                    val = self.one_minus_sq(p, x)
                else:
                    # t ρ_xy − t² ρ_xp ρ_yp written as t(ρ_xy − ρ_xp ρ_yp) + t u ρ_xp ρ_yp: no
                    # cancellation beyond the rounding of the inputs when x, y ≈ ±p
                    rxp, ryp = self.rho_of(x, p), self.rho_of(y, p)
                    val = self.t * (self.rho_of(x, y) - rxp * ryp) + self.t * self.u * rxp * ryp
                out[(x, y)] = out[(y, x)] = val
        return out

    def cond2(self, p, q, fields):
        """Conditional covariance of ``fields`` given u_p = u_q = 0 (explicit 2×2 inverse).

        With w₋ = 1 − tρ_pq and w₊ = 1 + tρ_pq (computed as u + t(1 ∓ ρ_pq), no cancellation) the
        correction t²[ρ_xp ρ_yp − tρ_pq(ρ_xp ρ_yq + ρ_xq ρ_yp) + ρ_xq ρ_yq]/(w₋w₊) equals, for ρ_pq ≥ 0,
        t²(ρ_xp − ρ_xq)(ρ_yp − ρ_yq)/(w₋w₊) + t²(ρ_xp ρ_yq + ρ_xq ρ_yp)/w₊, and for ρ_pq < 0 the same
        with (ρ_xp + ρ_xq)(ρ_yp + ρ_yq) and −(…)/w₋.  This stays accurate when u_p = ±u_q (a student
        equal to another student or to a teacher), where w₋ or w₊ vanishes as t → 1.
        """
        rho_pq = self.rho_of(p, q)
        t, u = self.t, self.u
        wm = u + t * (1.0 - rho_pq)   # 1 − t ρ_pq
        wp = u + t * (1.0 + rho_pq)   # 1 + t ρ_pq
        pos = rho_pq >= 0.0
        sgn = np.where(pos, 1.0, -1.0)
        den = np.maximum(wm * wp, 1e-300)
        w_near = np.maximum(np.where(pos, wp, wm), 1e-300)  # the factor bounded away from 0
        out = {}
        for ii, x in enumerate(fields):
            for y in fields[ii:]:
                xp, xq, yp, yq = self.rho_of(x, p), self.rho_of(x, q), self.rho_of(y, p), self.rho_of(y, q)
                corr = t * t * ((xp - sgn * xq) * (yp - sgn * yq) / den + sgn * (xp * yq + xq * yp) / w_near)
                if x == y:
                    val = np.maximum(1.0 - corr, 0.0)
                else:
                    val = t * self.rho_of(x, y) - corr
                out[(x, y)] = out[(y, x)] = val
        return out

    def phi2_00(self, p, q):
        """Bivariate standard density at the origin, 1/(2π√(1 − r_pq²))."""
        return 1.0 / (_TWO_PI * np.sqrt(np.maximum(self.one_minus_sq(p, q), 1e-300)))


def _pcorr(rab, rac, rbc):
    """Partial correlation of (a, b) given c from correlations."""
    den = np.sqrt(np.maximum((1.0 - rac * rac) * (1.0 - rbc * rbc), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, (rab - rac * rbc) / np.where(den > 0, den, 1.0), 0.0)
    return np.minimum(np.maximum(r, -1.0), 1.0)


def _e_tr(sxx, szz, sxz):
    """E[Θ(u_x) relu(u_z)] for a zero-mean bivariate Gaussian: σ_z (1 + ρ_xz)/(2√(2π))."""
    return _sd(szz) * (1.0 + _corr(sxz, sxx, szz)) * (0.5 * _INV_SQRT_2PI)


def _e_ttr(c, x, y, z):
    """E[Θ(u_x) Θ(u_y) relu(u_z)] for a zero-mean trivariate Gaussian with covariance dict ``c``.

    Stein: Σ_m C_zm φ(0; C_mm) P(other two > 0 | u_m = 0)
         = σ_z/√(2π) [P2(ρ_xy|z) + ρ_zx P2(ρ_yz|x) + ρ_zy P2(ρ_xz|y)].
    """
    rxy = _corr(c[(x, y)], c[(x, x)], c[(y, y)])
    rxz = _corr(c[(x, z)], c[(x, x)], c[(z, z)])
    ryz = _corr(c[(y, z)], c[(y, y)], c[(z, z)])
    return _sd(c[(z, z)]) * _INV_SQRT_2PI * (_p2(_pcorr(rxy, rxz, ryz)) + rxz * _p2(_pcorr(ryz, rxy, rxz))
                                             + ryz * _p2(_pcorr(rxz, rxy, ryz)))


_PAIRS4 = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _plackett_g(pc: _PathCorr):
    """dP4/dt along the path: Σ_{p<q} ρ_pq φ2(0,0; r_pq) P2(ρ_rs|pq)  (Plackett's identity)."""
    g = 0.0
    for p, q in _PAIRS4:
        r_, s_ = (f for f in range(4) if f not in (p, q))
        c = pc.cond2(p, q, (r_, s_))
        g = g + pc.rho[(p, q)][..., None] * pc.phi2_00(p, q) * _p2(_corr(c[(r_, s_)], c[(r_, r_)], c[(s_, s_)]))
    return g


def _rho_dict(corr_fn, n):
    return {(p, q): corr_fn(p, q) for p in range(n) for q in range(p + 1, n)}


def _relu_i4_unit4(rho):
    """E[Θ1 Θ2 relu(u3) relu(u4)] for unit variances and correlations ``rho`` (dict, arrays (..., T)).

    Price's theorem along R(t) = (1 − t)I + tR: d/dt E[h] = Σ_{p<q} ρ_pq E_t[∂_p∂_q h]; the (3,4)
    term is ρ_34 P4(R(t)), and ∫_0^1 P4(R(t)) dt = 1/16 + ∫_0^1 (1 − t) dP4/dt dt (Fubini), so a single
    1-D integral remains.  Fields 0..3 stand for (i, k, a, b).
    """
    t, u, wt = _path_rule()
    pc = _PathCorr(rho, t, u)
    # pair (i,k): δ_i δ_k relu_a relu_b
    c = pc.cond2(0, 1, (2, 3))
    h = rho[(0, 1)][..., None] * pc.phi2_00(0, 1) * _arccos_kernel(c[(2, 2)], c[(3, 3)], c[(2, 3)])
    # pairs (i,a), (i,b), (k,a), (k,b): δ_p Θ_other Θ_q relu_rest
    for p, other in ((0, 1), (1, 0)):
        c = pc.cond1(p, (other, 2, 3))
        h = h + rho[(p, 2)][..., None] * _INV_SQRT_2PI * _e_ttr(c, other, 2, 3)
        h = h + rho[(p, 3)][..., None] * _INV_SQRT_2PI * _e_ttr(c, other, 3, 2)
    # pair (a,b): Θ_i Θ_k Θ_a Θ_b = P4(R(t)), folded in with weight (1 − t) (Fubini)
    integrand = h + rho[(2, 3)][..., None] * (1.0 - t) * _plackett_g(pc)
    return 1.0 / (8.0 * _PI) + rho[(2, 3)] / 16.0 + integrand @ wt


def _relu_i4_unit3_ttq(rho):
    """E[Θ1 Θ2 relu(u3)²] for unit variances (path integral, fields 0, 1, 2)."""
    t, u, wt = _path_rule()
    pc = _PathCorr(rho, t, u)
    c = pc.cond2(0, 1, (2,))
    h = rho[(0, 1)][..., None] * pc.phi2_00(0, 1) * 0.5 * c[(2, 2)]
    for p, other in ((0, 1), (1, 0)):
        c = pc.cond1(p, (other, 2))
        h = h + rho[(p, 2)][..., None] * _INV_SQRT_2PI * 2.0 * _e_tr(c[(other, other)], c[(2, 2)], c[(other, 2)])
    return 0.125 + h @ wt


def _relu_i4_unit3_trr(rho):
    """E[Θ1 relu(u2) relu(u3)] for unit variances (path integral, fields 0, 1, 2)."""
    t, u, wt = _path_rule()
    pc = _PathCorr(rho, t, u)
    c = pc.cond1(0, (1, 2))
    e = 0.5 * _INV_SQRT_2PI * (1.0 + _corr(c[(1, 2)], c[(1, 1)], c[(2, 2)]))
    h = _INV_SQRT_2PI * (rho[(0, 1)][..., None] * _sd(c[(2, 2)]) + rho[(0, 2)][..., None] * _sd(c[(1, 1)])) * e
    p3 = 0.125 + (_asin(pc.get(0, 1)) + _asin(pc.get(0, 2)) + _asin(pc.get(1, 2))) / (4.0 * _PI)
    h = h + rho[(1, 2)][..., None] * p3
    return 1.0 / (4.0 * _PI) + h @ wt


@lru_cache(maxsize=64)
def _relu_i4_structure(K: int, L: int):
    """Classify the unique I4 tuples (i<=k, a<=b) into the ReLU product patterns.

    Θ_i Θ_k relu_a relu_b collapses, on the distinct fields, to one of
    n=4 (Θ,Θ,r,r); n=3 (Θ,Θ,r²) or (Θ,r,r); n=2 (r,r) or (Θ,r²); n=1 r².
    Returns the tuple map and, per pattern, (rows, field index array).
    """
    labels, full, _ = _quad_structure(K, L)
    pats: dict[str, tuple[list, list]] = {k: ([], []) for k in ("4", "3q", "3r", "2r", "2q", "1")}
    for row, (i, k, a, b) in enumerate(labels.tolist()):
        n = len({i, k, a, b})
        if n == 4:
            key, fields = "4", (i, k, a, b)
        elif n == 3 and a == b:
            key, fields = "3q", (i, k, a)
        elif n == 3:
            x = k if i in (a, b) else i
            key, fields = "3r", (x, a, b)
        elif n == 2 and a == b:
            x = k if i == a else i
            key, fields = "2q", (x, a)
        elif n == 2:
            key, fields = "2r", (a, b)
        else:
            key, fields = "1", (a,)
        pats[key][0].append(row)
        pats[key][1].append(fields)
    out = {}
    for key, (rows, fields) in pats.items():
        if rows:
            out[key] = (np.array(rows, dtype=np.intp), np.array(fields, dtype=np.intp))
    return labels.shape[0], full, out


def _relu_i4(Omega, K):
    L = Omega.shape[-1]
    n_rows, full, pats = _relu_i4_structure(K, L)
    d = Omega.diagonal(axis1=-2, axis2=-1)
    out = np.empty(Omega.shape[:-2] + (n_rows,))

    def corr_of(f):
        def fn(p, q):
            return _corr(Omega[..., f[:, p], f[:, q]], d[..., f[:, p]], d[..., f[:, q]])
        return fn

    for key, (rows, f) in pats.items():
        sd = _sd(d[..., f])  # (..., T, n)
        if key == "4":
            val = sd[..., 2] * sd[..., 3] * _relu_i4_unit4(_rho_dict(corr_of(f), 4))
        elif key == "3q":
            val = sd[..., 2] ** 2 * _relu_i4_unit3_ttq(_rho_dict(corr_of(f), 3))
        elif key == "3r":
            val = sd[..., 1] * sd[..., 2] * _relu_i4_unit3_trr(_rho_dict(corr_of(f), 3))
        elif key == "2r":
            val = _arccos_kernel(d[..., f[:, 0]], d[..., f[:, 1]], Omega[..., f[:, 0], f[:, 1]])
        elif key == "2q":
            # E[Θ(u_x) relu(u_a)²] = C_aa [1/4 + arcsin ρ/(2π) + ρ√(1−ρ²)/(2π)]
            rho = _corr(Omega[..., f[:, 0], f[:, 1]], d[..., f[:, 0]], d[..., f[:, 1]])
            val = d[..., f[:, 1]] * (_p2(rho) + rho * np.sqrt(np.maximum(1.0 - rho * rho, 0.0)) / _TWO_PI)
        else:
            val = 0.5 * d[..., f[:, 0]]  # E[relu(u)²] = C/2
        out[..., rows] = val
    return out[..., full]


def orthant_probability(cov) -> np.ndarray:
    """P(u_1 > 0, …, u_n > 0) for u ~ N(0, cov), n = 1 … 4 (vectorised over leading dims).

    n ≤ 3 in closed form; n = 4 by Plackett's identity integrated along R(t) = (1 − t) I + t R with
    the graded quadrature of the ReLU I4 (deterministic, ~1e-12 accurate).

    Parameters
    ----------
    cov : array_like, shape (..., n, n)
        Positive semi-definite covariance(s) with positive diagonal.

    Returns
    -------
    ndarray, shape (...)
    """
    c = check_covariance(cov, "cov")
    n = c.shape[-1]
    if n > 4:
        raise ValueError(f"cov must be n x n with 1 <= n <= 4, got n = {n}")
    d = np.diagonal(c, axis1=-2, axis2=-1)
    if np.any(d <= 0):
        raise ValueError("cov must have a positive diagonal (a zero-variance field has no orthant "
                         "probability in the ReLU sense)")
    rho = _rho_dict(lambda p, q: _corr(c[..., p, q], d[..., p], d[..., q]), n)
    if n == 1:
        return np.full(c.shape[:-2], 0.5)
    if n == 2:
        return _p2(rho[(0, 1)])
    if n == 3:
        return 0.125 + sum(_asin(r) for r in rho.values()) / (4.0 * _PI)
    t, u, wt = _path_rule()
    rho = {k: v[..., None] for k, v in rho.items()}  # T = 1 axis
    pc = _PathCorr(rho, t, u)
    return (1.0 / 16.0 + _plackett_g(pc) @ wt)[..., 0]


# --------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------
def two_layer_i2(activation, Omega, *, n_nodes=None, check: bool = True) -> np.ndarray:
    """I2(a, b) = E[g(u_a) g(u_b)] for u ~ N(0, Ω) (note §3), closed form where available.

    Parameters
    ----------
    activation : Activation, str or tuple
        The activation g (see :func:`hidyn.activations.get_activation`).
    Omega : array_like, shape (..., L, L)
        Field covariance [[Q, R], [Rᵀ, T]].
    n_nodes : int, optional
        Gauss–Hermite nodes per axis for activations without closed form (default 64; 128 when two
        fields coincide).
    check : bool
        Validate Ω (symmetric, PSD).  Internal hot paths pass False.

    Returns
    -------
    ndarray, shape (..., L, L)
    """
    act = _resolve_activation(activation)
    om = _check_omega(Omega) if check else np.asarray(Omega, dtype=np.float64)
    if act.name == "erf":
        return _erf_i2(om)
    if act.name == "linear":
        return om.copy()
    if act.name == "relu":
        return _relu_i2(om)
    return _quad_i2(act, om, n_nodes, act.g, act.g)


def two_layer_averages(activation, Omega, K: int, *, need_i4: bool = True, n_nodes=None,
                       check: bool = True, need_i2: bool = True, need_j2: bool = True) -> dict:
    """The Gaussian averages I2, J2, I3, I4 of the two-layer ODEs (note §3, §4).

    Parameters
    ----------
    activation : Activation, str or tuple
        The activation g, shared by teacher and student.  ``erf`` (g = erf(x/√2)) and ``linear`` use
        the closed forms of §4.1/§4.2; ``relu`` the closed forms of §4.3 for I2, J2, I3 and a
        deterministic 1-D path integral (Price/Plackett identity) for I4 (~1e-10 accurate); anything
        else tensor-product Gauss–Hermite quadrature (Stein's lemma reduces I3 to 2-D integrals when
        g'' is known; I4 is a ≤ 4-D integral, reduced in dimension when fields repeat).
    Omega : array_like, shape (..., L, L)
        Covariance of the fields (λ_1..λ_K, ν_1..ν_M): [[Q, R], [Rᵀ, T]], L = K + M.  Must be
        symmetric positive semi-definite (singular is fine).
    K : int
        Number of students (the first K fields).
    need_i4 : bool
        Compute I4 (needed only by dQ/dt at η > 0).
    n_nodes : int, optional
        Gauss–Hermite nodes per axis for quadrature-based activations (defaults: 128 for 1-D, 64 for
        2-D, 32 for 3-D, 20 for 4-D integrals; 10 for polynomial activations, which is exact).  The
        error of tensor Gauss–Hermite grows with the field variances; measured for tanh against
        56 nodes: Ω diagonal ≈ 0.5 → ≤ 1e-10 (I2, J2, I3), 5e-7 (I4); ≈ 1 → ≤ 5e-7, 3e-5;
        ≈ 2 → ≤ 2e-4, 5e-4.  Pass more nodes for large variances.
    check : bool
        Validate Ω.  Internal hot paths pass False.
    need_i2, need_j2 : bool
        Compute I2 (needed by dv/dt and ε_g) and J2 (needed only with output noise).  The ODE
        right-hand side skips what it does not need.

    Returns
    -------
    dict
        ``I2`` (..., L, L), ``J2`` (..., K, K), ``I3`` (..., K, L, L) and ``I4`` (..., K, K, L, L),
        each present when requested; index conventions in the module docstring.

    Raises
    ------
    ValueError
        Ω not a valid covariance, or K not in [1, L].
    """
    act = _resolve_activation(activation)
    om = _check_omega(Omega, K) if check else np.asarray(Omega, dtype=np.float64)
    name = act.name
    if not check and not np.isfinite(om).all():
        # unchecked callers (an ODE right-hand side after a blow-up) get NaN, not a LinAlgError
        batch, L = om.shape[:-2], om.shape[-1]
        shapes = {"I2": (L, L), "J2": (K, K), "I3": (K, L, L), "I4": (K, K, L, L)}
        want = {"I2": need_i2, "J2": need_j2, "I3": True, "I4": need_i4}
        return {k: np.full(batch + shp, np.nan) for k, shp in shapes.items() if want[k]}
    if name == "linear":
        out = _linear_all(om, K, need_i4)
    elif name == "erf":
        ext = _erf_ext(om)
        out = {"I3": _erf_i3(om, K, ext)}
        if need_i2:
            out["I2"] = _erf_i2(om)
        if need_j2:
            out["J2"] = _erf_j2(om, K)
        if need_i4:
            out["I4"] = _erf_i4(om, K, ext)
    elif name == "relu":
        out = {"I3": _relu_i3(om, K)}
        if need_i2:
            out["I2"] = _relu_i2(om)
        if need_j2:
            out["J2"] = _relu_j2(om, K)
        if need_i4:
            out["I4"] = _relu_i4(om, K)
    else:
        out = {"I3": _quad_i3(act, om, K, n_nodes)}
        if need_i2:
            out["I2"] = _quad_i2(act, om, n_nodes, act.g, act.g)
        if need_j2:
            out["J2"] = _quad_i2(act, om[..., :K, :K], n_nodes, act.dg, act.dg)
        if need_i4:
            out["I4"] = _quad_i4(act, om, K, n_nodes)
    if not need_i2:
        out.pop("I2", None)
    if not need_j2:
        out.pop("J2", None)
    return out
