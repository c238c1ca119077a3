"""DMFT effective process of diagonal linear networks trained by gradient descent (docs/theory/dln.md §5).

In the proportional limit n, d → ∞ with δ = n/d fixed, GD on a DLN (β = u ⊙ v or β = w+² − w−²) with a
Gaussian design reduces to a single-coordinate process driven by a Gaussian field and a memory term,

    g^k = ζ^k + Σ_{l≤k} M[k, l] Δβ^l,      ζ ~ GP(0, C_r/δ),        (docs/theory/dln.md §5.1, d-side)
    M = (I + R_β/δ)^{-1},  C_r = M (C_Δ + σ² 11ᵀ) Mᵀ,                  (n-side)
    C_Δ[k, l] = E Δβ^k Δβ^l,  R_β[k, j] = E ∂β^k/∂h^j,                  (closure)

with Δβ = β − β*.  :func:`solve` integrates it in ONE causal forward pass over the GD steps
(docs/theory/dln.md §5.2): at step k, the K single-site samples give row k of C_Δ and (through per-sample
forward-mode tangents that include the memory term) row k of R_β; the n-side algebra then gives row k
of M and C_r, an incremental Cholesky turns fixed white noise into ζ^k, and every sample takes its GD
step.  No fixed-point iteration is needed.  Monte-Carlo error bars come either from a second pass of
independent smaller closures (default; includes the error fed back through the estimated kernels)
or from a jackknife over sample batches of the main closure (free, conditional on the kernels).

Conventions are those of docs/theory/dln.md §2: X_{μi} ~ N(0, 1/d), loss L = ‖y − Xβ‖²/(2δ), time t = η k
(pm parametrisation: pm clock, twice as fast as uv, not converted), `train_loss` E_tr = C_r[k, k] and
`test_loss` E_te = C_Δ[k, k] + σ², both without ½ and with the label noise σ² included.

References
----------
S. Nishiyama, M. Imaizumi, "Precise Dynamics of Diagonal Linear Networks: A Unifying Analysis by
Dynamical Mean-Field Theory", arXiv:2510.01930.
C. Gerbelot, E. Troiani, F. Mignacco, F. Krzakala, L. Zdeborová, arXiv:2210.06591 (discrete-time DMFT).
S. Pesme, N. Flammarion, arXiv:2304.00488 (the `pesme` initialisation).
"""
from __future__ import annotations

import math
import time as _time
import warnings

import numpy as np

from hidyn.solvers.dmft.grid import (
    DEFAULT_PIVOT_RTOL,
    CausalGaussianSampler,
    CausalKernels,
    CausalTangentHistory,
    ResidualKernels,
    residual_kernels,
    tangent_history_nbytes,
)

__all__ = [
    "solve",
    "solve_gradient_flow",
    "richardson",
    "estimate_memory",
    "gd_stability_bound",
    "initial_state",
    "sample_teacher",
    "SingleSiteEnsemble",
    "single_site_trajectory",
    "TEACHERS",
    "INITS",
    "ERROR_METHODS",
    "PARAMETRIZATIONS",
    "SUPPORT_THRESHOLD",
]

TEACHERS = ("rademacher", "gauss")
INITS = ("pesme", "pm", "balanced")
PARAMETRIZATIONS = ("uv", "pm")
TANGENT_DTYPES = ("float32", "float64")
ERROR_METHODS = ("replicas", "jackknife")
#: Absolute threshold on |β| used by `tpr` and `fpr` (docs/theory/dln.md §2.2).
SUPPORT_THRESHOLD = 0.5
_BLOCK = 16  # rows per block of the tangent history (grid.CausalTangentHistory)

_SCALARS = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")


# ----------------------------------------------------------------------------------------------------
# model pieces
# ----------------------------------------------------------------------------------------------------
def initial_state(init: str, parametrization: str, init_scale: float) -> tuple[float, float]:
    """Initial weights (same for every coordinate) of docs/theory/dln.md §2.2.

    Parameters
    ----------
    init : {"pesme", "pm", "balanced"}
    parametrization : {"uv", "pm"}
    init_scale : float
        α > 0.

    Returns
    -------
    (a0, b0) : tuple of float
        (u₀, v₀) for "uv"; (w+(0), w−(0)) for "pm".  Either way β₀ = u₀v₀ and Δ = u₀² − v₀²
        take the same values: pesme β₀ = 0, Δ = 2α²; pm β₀ = 0, Δ = 4α²; balanced β₀ = α², Δ = 0.
    """
    a = float(init_scale)
    uv = {"pesme": (math.sqrt(2.0) * a, 0.0), "pm": (2.0 * a, 0.0), "balanced": (a, a)}[init]
    if parametrization == "uv":
        return uv
    u, v = uv  # u = w+ + w−, v = w+ − w− (docs/theory/dln.md §2.2)
    return 0.5 * (u + v), 0.5 * (u - v)


def _beta_of(a, b, parametrization):
    return a * b if parametrization == "uv" else a * a - b * b


def sample_teacher(rng: np.random.Generator, teacher: str, sparsity: float, n_batches: int,
                   batch_size: int) -> np.ndarray:
    """Teacher coordinates β* for the DMFT samples, stratified per batch (docs/theory/dln.md §2.1).

    Each batch holds exactly ⌊ρ K_b⌋ or ⌈ρ K_b⌉ non-zeros (randomised rounding keeps the expected
    fraction exactly ρ), mirroring the exact-ρ finite-d teacher, which removes the binomial noise of
    the support size from the kernels.  Rademacher signs are split evenly within each batch.

    Parameters
    ----------
    rng : numpy.random.Generator
    teacher : {"rademacher", "gauss"}
        Non-zero values ±1 or N(0, 1) (amplitude A = 1).
    sparsity : float
        ρ ∈ [0, 1].
    n_batches, batch_size : int

    Returns
    -------
    ndarray, shape (n_batches * batch_size,)
    """
    out = np.zeros((n_batches, batch_size))
    for b in range(n_batches):
        target = sparsity * batch_size
        n_nz = int(math.floor(target))
        if rng.random() < target - n_nz:
            n_nz += 1
        idx = rng.choice(batch_size, size=n_nz, replace=False)
        if teacher == "rademacher":
            # equal numbers of +1 and −1 (a coin decides the odd one): E β* = 0 exactly, which the
            # sign-frozen `balanced` init is sensitive to (E_te(0) = ρ + α⁴ − 2α² E β* + σ²)
            n_plus = n_nz // 2 + (int(rng.random() < 0.5) if n_nz % 2 else 0)
            signs = np.concatenate([np.ones(n_plus), -np.ones(n_nz - n_plus)])
            out[b, idx] = rng.permutation(signs)
        else:
            out[b, idx] = rng.standard_normal(n_nz)
    return out.reshape(-1)


def gd_stability_bound(ratio: float, beta_max: float, Delta: float, parametrization: str = "uv") -> float:
    """Largest stable GD step of docs/theory/dln.md §3 / §10 pitfall 4.

    η_max = 2 / (c · √(Δ² + 4 β_max²) · (1 + δ^{-1/2})²), with c = 1 for "uv" and c = 2 for "pm"
    (the pm step 2η moves β at twice the uv rate).  √(Δ² + 4β²) = u² + v² is the curvature factor of
    the mirror flow and (1 + δ^{-1/2})² the top of the Marchenko–Pastur spectrum of XᵀX/δ.

    Parameters
    ----------
    ratio : float
        δ.
    beta_max : float
        Largest |β| expected along the trajectory (|β*| max for a converging run).
    Delta : float
        u₀² − v₀².
    parametrization : {"uv", "pm"}

    Returns
    -------
    float
    """
    c = 1.0 if parametrization == "uv" else 2.0
    curv = math.sqrt(Delta**2 + 4.0 * beta_max**2)
    lam = (1.0 + ratio**-0.5) ** 2
    return math.inf if curv == 0 else 2.0 / (c * curv * lam)


# ----------------------------------------------------------------------------------------------------
# single-site process
# ----------------------------------------------------------------------------------------------------
class SingleSiteEnsemble:
    """K single-coordinate GD trajectories with forward-mode response tangents (docs/theory/dln.md §5.1–5.2).

    State (a, b) is (u, v) for ``"uv"`` and (w+, w−) for ``"pm"``.  The force h enters as
    g → g − h.  For every earlier kick time j the ensemble carries the tangents ∂(a, b)^k/∂h^j and
    stores ∂β^l/∂h^j for all l (the response history), because the field's memory term makes the
    tangent of g^k depend on the whole past:  δg^k = Σ_{l≤k} M[k, l] δβ^l  (ζ is independent of h).

    The samples may be split into ``n_groups`` contiguous groups of equal size, each driven by its own
    memory kernel M (independent DMFT closures run in one vectorised pass).

    Usage per step k: read :attr:`beta`; call :meth:`record_tangents` (returns ∂β^k/∂h^j, j < k);
    then :meth:`step` with the field g^k and row k of M (one row per group).

    Parameters
    ----------
    beta_star : ndarray, shape (K,)
        Teacher coordinate of each sample.
    a0, b0 : float
        Initial weights from :func:`initial_state`.
    n_steps : int
        T; tangents are stored for k = 1..T.
    lr : float
        η.
    parametrization : {"uv", "pm"}
    tangent_dtype : {"float32", "float64"}
    n_groups : int, optional
        Number of sample groups with separate memory kernels (K must be a multiple).
    """

    def __init__(self, beta_star, a0: float, b0: float, n_steps: int, lr: float,
                 parametrization: str = "uv", tangent_dtype: str = "float64", n_groups: int = 1):
        self.beta_star = np.asarray(beta_star, dtype=np.float64)
        K = self.beta_star.shape[0]
        if n_groups < 1 or K % n_groups:
            raise ValueError(f"n_groups ({n_groups}) must divide the number of samples ({K})")
        self.K, self.T, self.lr = K, int(n_steps), float(lr)
        self.G, self.Kg = int(n_groups), K // int(n_groups)
        self.parametrization = parametrization
        self.tdtype = np.dtype(tangent_dtype)
        self.a = np.full(K, float(a0))
        self.b = np.full(K, float(b0))
        T = max(self.T, 1)
        self.dA = np.zeros((T, K), dtype=self.tdtype)  # ∂a^k/∂h^j, row j (rows < k valid)
        self.dB = np.zeros((T, K), dtype=self.tdtype)
        self._dG = np.zeros((T, K), dtype=self.tdtype)
        self._t1 = np.zeros((T, K), dtype=self.tdtype)
        self._t2 = np.zeros((T, K), dtype=self.tdtype)
        self.histories = [CausalTangentHistory(self.T + 1, self.Kg, self.tdtype, block=_BLOCK)
                          for _ in range(self.G)]
        self.k = 0

    def _group(self, g: int) -> slice:
        return slice(g * self.Kg, (g + 1) * self.Kg)

    @property
    def beta(self) -> np.ndarray:
        """β^k, shape (K,)."""
        return _beta_of(self.a, self.b, self.parametrization)

    def record_tangents(self) -> np.ndarray:
        """Compute, store and return ∂β^k/∂h^j for j < k, shape (k, K) (k = current step).

        Must be called exactly once per step, before :meth:`step`.  The returned array is a work
        buffer, valid until the next :meth:`step`.
        """
        k = self.k
        if self.histories[0].n_rows != max(k, 1):
            raise RuntimeError("record_tangents must be called once per step, before step()")
        if k == 0:
            return np.zeros((0, self.K), dtype=self.tdtype)
        a = self.a.astype(self.tdtype)
        b = self.b.astype(self.tdtype)
        out = self._t1[:k]
        if self.parametrization == "uv":  # δβ = v δu + u δv
            np.multiply(self.dA[:k], b, out=out)
            out += self.dB[:k] * a
        else:  # δβ = 2 (w+ δw+ − w− δw−)
            np.multiply(self.dA[:k], 2 * a, out=out)
            out -= self.dB[:k] * (2 * b)
        for g, hist in enumerate(self.histories):
            hist.append(out[:, self._group(g)])
        return out

    def step(self, g, M_rows) -> None:
        """GD step k → k+1 of states and tangents given the field g^k and row k of M.

        Parameters
        ----------
        g : ndarray, shape (K,)
            g^k = ζ^k + Σ_l M[k, l] Δβ^l for each sample.
        M_rows : ndarray, shape (k + 1,) or (n_groups, k + 1)
            M[k, :k+1] of each group's closure.
        """
        k, eta = self.k, self.lr
        if k >= self.T:
            raise RuntimeError(f"all {self.T} steps done")
        if k > 0 and self.histories[0].n_rows != k + 1:
            raise RuntimeError("call record_tangents() before step()")
        M_rows = np.atleast_2d(np.asarray(M_rows, dtype=np.float64))
        if M_rows.shape != (self.G, k + 1):
            raise ValueError(f"M_rows must have shape ({self.G}, {k + 1}), got {M_rows.shape}")
        a, b = self.a, self.b
        td = self.tdtype
        g32, a32, b32 = g.astype(td), a.astype(td), b.astype(td)
        if k > 0:
            dA, dB = self.dA[:k], self.dB[:k]
            # Memory term of the tangent (docs/theory/dln.md §5.2 step 2): δg^k_j = Σ_{l=j+1}^{k} M[k,l] δβ^l_j.
            dG = self._dG[:k]
            for gi, hist in enumerate(self.histories):
                hist.contract(M_rows[gi], out=dG[:, self._group(gi)])
            t1, t2 = self._t1[:k], self._t2[:k]
            if self.parametrization == "uv":
                # δu' = δu − η(δv g + v δg),  δv' = δv − η(δu g + u δg)   (simultaneous update)
                np.multiply(dB, g32, out=t1)
                t1 += dG * b32
                np.multiply(dA, g32, out=t2)
                t2 += dG * a32
                t1 *= td.type(eta)
                t2 *= td.type(eta)
                dA -= t1
                dB -= t2
            else:
                # δw+' = δw+ (1 − 2ηg) − 2η w+ δg,  δw−' = δw− (1 + 2ηg) + 2η w− δg
                dA *= (1 - 2 * eta * g).astype(td)
                np.multiply(dG, (2 * eta * a).astype(td), out=t1)
                dA -= t1
                dB *= (1 + 2 * eta * g).astype(td)
                np.multiply(dG, (2 * eta * b).astype(td), out=t2)
                dB += t2
        # Kick at j = k: the force enters as g − h and acts on the k → k+1 update only.
        if self.parametrization == "uv":
            self.dA[k] = eta * b
            self.dB[k] = eta * a
            a_new = a - eta * b * g
            b_new = b - eta * a * g
        else:
            self.dA[k] = 2 * eta * a
            self.dB[k] = -2 * eta * b
            a_new = a * (1 - 2 * eta * g)
            b_new = b * (1 + 2 * eta * g)
        self.a, self.b = a_new, b_new
        self.k = k + 1


def single_site_trajectory(beta_star, a0: float, b0: float, zeta, M, lr: float,
                           parametrization: str = "uv", h=None) -> np.ndarray:
    """β paths of the single-site process for GIVEN field noise ζ and memory M (no closure).

    Reference implementation of the d-side of docs/theory/dln.md §5.1, used to check the tangents by finite
    differences: g^k = ζ^k + Σ_{l≤k} M[k, l] (β^l − β*) − h^k.

    Parameters
    ----------
    beta_star : ndarray, shape (K,)
    a0, b0 : float
    zeta : ndarray, shape (T + 1, K)
    M : ndarray, shape (T + 1, T + 1), lower-triangular
    lr : float
    parametrization : {"uv", "pm"}
    h : ndarray, shape (T + 1,), optional
        External force (same for every sample).

    Returns
    -------
    ndarray, shape (T + 1, K)
    """
    zeta = np.asarray(zeta, dtype=np.float64)
    n, K = zeta.shape
    h = np.zeros(n) if h is None else np.asarray(h, dtype=np.float64)
    a, b = np.full(K, float(a0)), np.full(K, float(b0))
    beta = np.empty((n, K))
    for k in range(n):
        beta[k] = _beta_of(a, b, parametrization)
        if k == n - 1:
            break
        g = zeta[k] + M[k, : k + 1] @ (beta[: k + 1] - beta_star) - h[k]
        if parametrization == "uv":
            a, b = a - lr * b * g, b - lr * a * g
        else:
            a, b = a * (1 - 2 * lr * g), b * (1 + 2 * lr * g)
    return beta


# ----------------------------------------------------------------------------------------------------
# validation and memory
# ----------------------------------------------------------------------------------------------------
def estimate_memory(n_samples: int, n_steps: int, tangent_dtype: str = "float32", n_batches: int = 8) -> dict:
    """Bytes :func:`solve` allocates (docs/theory/dln.md §10 pitfall 7: O(K T²) for the response tangents).

    Parameters
    ----------
    n_samples, n_steps, n_batches : int
        K, T and the number of error batches.
    tangent_dtype : {"float32", "float64"}

    Returns
    -------
    dict
        ``tangent_history`` (K ∂β^l/∂h^j, j < l), ``tangent_state`` (∂(a, b)/∂h^j and three work
        arrays of shape (T, K)), ``samples`` (Δβ history and white noise, float64 (T+1, K)),
        ``kernels`` (per-batch C_Δ and R_β plus C_Δ, R_β, M, C_r, L per closure, (T+1)² float64
        each) and ``total``.  The replica pass of ``error_method="replicas"`` runs after the main
        pass with the same total K, so the peak is the same.
    """
    it = np.dtype(tangent_dtype).itemsize
    n = n_steps + 1
    out = {
        "tangent_history": tangent_history_nbytes(n, n_samples, it, _BLOCK),
        "tangent_state": 5 * max(n_steps, 1) * n_samples * it,
        "samples": 2 * n * n_samples * 8 + 12 * n_samples * 8,
        "kernels": (8 * n_batches + 8) * n * n * 8,
    }
    out["total"] = sum(out.values())
    return out


def _validate(ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps,
              n_samples, n_batches, tangent_dtype, memory_budget_gb, pivot_rtol):
    def finite(name, x):
        is_real = isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)
        if not is_real or not math.isfinite(x):
            raise ValueError(f"{name} must be a finite real number, got {x!r}")

    finite("ratio", ratio)
    if ratio <= 0:
        raise ValueError(f"ratio (δ = n/d) must be > 0, got {ratio}")
    finite("sparsity", sparsity)
    if not 0 <= sparsity <= 1:
        raise ValueError(f"sparsity (ρ) must be in [0, 1], got {sparsity}")
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {TEACHERS}, got {teacher!r}")
    finite("noise", noise)
    if noise < 0:
        raise ValueError(f"noise (label-noise standard deviation σ) must be >= 0, got {noise}")
    finite("init_scale", init_scale)
    if init_scale <= 0:
        raise ValueError(f"init_scale (α) must be > 0, got {init_scale}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    finite("lr", lr)
    if lr <= 0:
        raise ValueError(f"lr (GD step η) must be > 0, got {lr}")
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
    if not isinstance(n_batches, (int, np.integer)) or n_batches < 2:
        raise ValueError(f"n_batches must be an integer >= 2, got {n_batches!r}")
    if not isinstance(n_samples, (int, np.integer)) or n_samples < 2 * n_batches:
        raise ValueError(f"n_samples must be an integer >= 2 * n_batches = {2 * n_batches}, "
                         f"got {n_samples!r}")
    if n_samples % n_batches:
        lo = n_samples - n_samples % n_batches
        raise ValueError(f"n_samples={n_samples!r} is invalid: must be a multiple of n_batches={n_batches} "
                         f"(the samples are split into n_batches groups), e.g. {max(lo, 2 * n_batches)} or "
                         f"{lo + n_batches}")
    if tangent_dtype not in TANGENT_DTYPES:
        raise ValueError(f"tangent_dtype must be one of {TANGENT_DTYPES}, got {tangent_dtype!r}")
    finite("memory_budget_gb", memory_budget_gb)
    if memory_budget_gb <= 0:
        raise ValueError(f"memory_budget_gb must be > 0, got {memory_budget_gb}")
    finite("pivot_rtol", pivot_rtol)
    if not 0 <= pivot_rtol < 1:
        raise ValueError(f"pivot_rtol must be in [0, 1), got {pivot_rtol}")


def _check_memory(n_samples, n_steps, tangent_dtype, n_batches, memory_budget_gb) -> int:
    est = estimate_memory(n_samples, n_steps, tangent_dtype, n_batches)["total"]
    budget = memory_budget_gb * 1e9
    if est > budget:
        # K T²/2 tangents dominate: the largest K that fits scales like budget / T².
        per_sample = est / n_samples
        k_fit = int(budget / per_sample)
        raise ValueError(
            f"DMFT solve needs about {est / 1e9:.2f} GB (n_samples={n_samples}, n_steps={n_steps}, "
            f"tangent_dtype={tangent_dtype}), above memory_budget_gb={memory_budget_gb:g}. To fit: lower "
            f"n_samples (at most ~{k_fit} at this n_steps), or reach the same time with fewer steps "
            f"(larger lr; memory grows like n_steps²), use tangent_dtype='float32', or raise "
            f"memory_budget_gb.")
    return int(est)


# ----------------------------------------------------------------------------------------------------
# solver
# ----------------------------------------------------------------------------------------------------
def _one_pass(beta_star, z, *, n_groups, n_batches, a0, b0, ratio, noise, lr, n_steps, parametrization,
              tangent_dtype, pivot_rtol, eta_max, progress, desc):
    """One causal forward pass (docs/theory/dln.md §5.2) of ``n_groups`` independent closures.

    The K samples are split into n_groups contiguous groups (one DMFT closure each: its own C_Δ, R_β,
    M, C_r and ζ) and into n_batches contiguous batches (n_batches a multiple of n_groups) over which
    per-batch kernels and sums are kept for error bars.

    Returns
    -------
    dict with C, R, M, C_r (G, n, n); Cb, Rb (B, n, n) per-batch C_Δ and R_β; sums[key] (B, n) for
    overlap, norm1, norm2, tp, fp; n_supp (B,); ranks (G,); diverged_at (int, -1 if none).
    """
    K, G, B, T = beta_star.shape[0], n_groups, n_batches, n_steps
    n, Kb, Kg, bpg = T + 1, K // B, K // G, B // G
    ens = SingleSiteEnsemble(beta_star, a0, b0, T, lr, parametrization, tangent_dtype, n_groups=G)
    grp = [slice(g * Kg, (g + 1) * Kg) for g in range(G)]
    bat = [slice(g * bpg, (g + 1) * bpg) for g in range(G)]
    samplers = [CausalGaussianSampler(z[:, grp[g]], pivot_rtol) for g in range(G)]
    kerns = [CausalKernels(n) for _ in range(G)]
    resid = [ResidualKernels(n, ratio, noise) for _ in range(G)]
    dbeta = np.zeros((n, K))  # Δβ^l history: C_Δ rows and the memory term of g
    Cb = np.zeros((B, n, n))
    Rb = np.zeros((B, n, n))
    sums = {key: np.full((B, n), np.nan) for key in ("overlap", "norm1", "norm2", "tp", "fp")}
    supp = (beta_star != 0).reshape(B, Kb)
    bs = beta_star.reshape(B, Kb)
    diverged_at = -1

    steps = range(n)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=desc, total=n)
    for k in steps:
        beta = ens.beta
        if not np.all(np.isfinite(beta)):
            diverged_at = k
            break
        dbeta[k] = beta - beta_star
        # step 1: row k of C_Δ, per batch (equal batch sizes, so a group's row is the batch mean)
        hist_b = dbeta[: k + 1].reshape(k + 1, B, Kb).transpose(1, 0, 2)  # (B, k+1, Kb)
        cb = np.matmul(hist_b, dbeta[k].reshape(B, Kb, 1))[..., 0] / Kb  # (B, k+1)
        Cb[:, k, : k + 1] = cb
        Cb[:, : k + 1, k] = cb
        # step 2: per-sample tangents ∂β^k/∂h^j (their memory term was propagated in ens.step);
        # R_β comes from the SAME samples as C_Δ (docs/theory/dln.md §10 pitfall 6)
        tang = ens.record_tangents()  # (k, K)
        rb = tang.reshape(k, B, Kb).mean(axis=2, dtype=np.float64)  # (k, B)
        if not (np.all(np.isfinite(rb)) and np.all(np.isfinite(cb))):  # tangents overflow first
            diverged_at = k
            break
        Rb[:, k, :k] = rb.T
        cr_rows = []
        for g in range(G):
            kerns[g].set_C_row(k, cb[bat[g]].mean(axis=0))
            kerns[g].set_R_row(k, rb[:, bat[g]].mean(axis=1))
            # step 3: rows k of M = (I + R_β/δ)^{-1} and C_r = M (C_Δ + σ²) Mᵀ
            cr_rows.append(resid[g].update(k, kerns[g].C[k, : k + 1], kerns[g].R[k, :k]))
        # separable observables of the single site (docs/theory/dln.md §2.2)
        bb = beta.reshape(B, Kb)
        sums["overlap"][:, k] = (bb * bs).sum(axis=1)
        sums["norm1"][:, k] = np.abs(bb).sum(axis=1)
        sums["norm2"][:, k] = (bb * bb).sum(axis=1)
        big = np.abs(bb) > SUPPORT_THRESHOLD
        sums["tp"][:, k] = (big & supp).sum(axis=1)
        sums["fp"][:, k] = (big & ~supp).sum(axis=1)
        if k == T:
            continue  # (not break: lets a progress bar reach its end)
        field = np.empty(K)
        for g in range(G):
            # step 4: ζ^k from row k of the incremental Cholesky of C_r/δ (relative pivot cutoff)
            zeta = samplers[g].next(cr_rows[g] / ratio)
            # step 5: g^k = ζ^k + Σ_{l≤k} M[k,l] Δβ^l (M[k,k] = 1: instantaneous term)
            field[grp[g]] = zeta + resid[g].M[k, : k + 1] @ dbeta[: k + 1, grp[g]]
        ens.step(field, np.stack([resid[g].M[k, : k + 1] for g in range(G)]))

    if diverged_at >= 0:
        warnings.warn(f"DMFT trajectories or responses diverged at step {diverged_at} "
                      f"(t = {lr * diverged_at:g}); outputs are NaN from there on. Lower lr (stability "
                      f"bound {eta_max:.4g}).", RuntimeWarning, stacklevel=3)
    return {
        "C": np.stack([kr.C for kr in kerns]), "R": np.stack([kr.R for kr in kerns]),
        "M": np.stack([r.M for r in resid]), "C_r": np.stack([r.C_r for r in resid]),
        "Cb": Cb, "Rb": Rb, "sums": sums, "n_supp": supp.sum(axis=1).astype(float),
        "ranks": [s.chol.rank for s in samplers], "diverged_at": diverged_at, "Kb": Kb,
    }


def _group_curves(p: dict, noise: float, n_groups: int) -> dict:
    """Scalar curves of each closure of a pass, shape (n_groups, n)."""
    B = p["Cb"].shape[0]
    bpg = B // n_groups
    out = {"train_loss": np.diagonal(p["C_r"], axis1=1, axis2=2).copy(),
           "test_loss": np.diagonal(p["C"], axis1=1, axis2=2) + noise**2}
    grp = {key: v.reshape(n_groups, bpg, -1).sum(axis=1) for key, v in p["sums"].items()}
    n_s = p["n_supp"].reshape(n_groups, bpg).sum(axis=1)[:, None]
    Kg = bpg * p["Kb"]
    for key in ("overlap", "norm1", "norm2"):
        out[key] = grp[key] / Kg
    with np.errstate(invalid="ignore", divide="ignore"):
        out["tpr"] = np.where(n_s > 0, grp["tp"] / np.maximum(n_s, 1), np.nan)
        out["fpr"] = np.where(n_s < Kg, grp["fp"] / np.maximum(Kg - n_s, 1), np.nan)
    return out


def _jackknife_sems(p: dict, ratio: float, noise: float) -> dict:
    """Jackknife (leave one batch out) standard errors of a single-closure pass.

    Every sample of the closure is driven by the same estimated field statistics, so this measures
    the sampling error of the averages at fixed ζ/M statistics only.
    """
    B, n = p["Cb"].shape[:2]
    Kb = p["Kb"]
    kmax = n if p["diverged_at"] < 0 else p["diverged_at"]
    Csum, Rsum = p["Cb"].sum(axis=0), p["Rb"].sum(axis=0)
    tot = {key: v.sum(axis=0) for key, v in p["sums"].items()}
    ns_tot = p["n_supp"].sum()
    loo = {key: np.full((B, n), np.nan) for key in _SCALARS}
    for i in range(B):
        C_i = (Csum - p["Cb"][i]) / (B - 1)
        R_i = (Rsum - p["Rb"][i]) / (B - 1)
        loo["train_loss"][i, :kmax] = np.diag(residual_kernels(C_i[:kmax, :kmax], R_i[:kmax, :kmax],
                                                               ratio, noise)[1])
        loo["test_loss"][i] = np.diag(C_i) + noise**2
        for key in ("overlap", "norm1", "norm2"):
            loo[key][i] = (tot[key] - p["sums"][key][i]) / ((B - 1) * Kb)
        with np.errstate(invalid="ignore", divide="ignore"):
            loo["tpr"][i] = (tot["tp"] - p["sums"]["tp"][i]) / (ns_tot - p["n_supp"][i])
            loo["fpr"][i] = (tot["fp"] - p["sums"]["fp"][i]) / ((B - 1) * Kb - (ns_tot - p["n_supp"][i]))
    sems = {}
    for key in _SCALARS:
        dev = loo[key] - loo[key].mean(axis=0)
        sems[key] = np.sqrt((B - 1) / B * np.sum(dev**2, axis=0))
    # For linear statistics the jackknife equals the standard error of the batch means.
    sems["C_delta"] = p["Cb"].std(axis=0, ddof=1) / math.sqrt(B)
    sems["R_beta"] = p["Rb"].std(axis=0, ddof=1) / math.sqrt(B)
    return sems


def solve(*, ratio: float, sparsity: float, teacher: str = "rademacher", noise: float = 0.0,
          init_scale: float, init: str = "pesme", parametrization: str = "uv", lr: float, n_steps: int,
          n_samples: int = 16000, seed=0, n_batches: int = 8, tangent_dtype: str = "float32",
          memory_budget_gb: float = 4.0, pivot_rtol: float = DEFAULT_PIVOT_RTOL,
          error_method: str = "replicas", progress: bool = False) -> dict:
    """Solve the discrete-time DMFT of GD on a DLN in one causal forward pass (docs/theory/dln.md §5.2).

    Parameters
    ----------
    ratio : float
        δ = n/d > 0.
    sparsity : float
        ρ ∈ [0, 1], fraction of non-zero teacher coordinates.
    teacher : {"rademacher", "gauss"}
        Law of the non-zero teacher coordinates (±1 or N(0, 1)).
    noise : float
        Label-noise standard deviation σ >= 0.
    init_scale : float
        α > 0.
    init : {"pesme", "pm", "balanced"}
        Initialisation of docs/theory/dln.md §2.2.
    parametrization : {"uv", "pm"}
        β = u ⊙ v or β = w+² − w−² (pm clock: time runs twice as fast as uv, not converted).
    lr : float
        GD step η > 0; the output grid is t_k = η k.  A RuntimeWarning is issued above the stability
        bound of :func:`gd_stability_bound` (evaluated with the largest sampled |β*|).
    n_steps : int
        T >= 1.
    n_samples : int
        K single-site samples of the main closure (shared by C_Δ and R_β, docs/theory/dln.md §10 pitfall 6); a
        multiple of n_batches.
    seed : int or numpy.random.SeedSequence
        Seeds teacher samples and white noise.
    n_batches : int
        Number of batches / replicas for the standard errors (>= 2).
    tangent_dtype : {"float32", "float64"}
        Precision of the response tangents (trajectories and kernels are always float64).
    memory_budget_gb : float
        Refuse (ValueError) if :func:`estimate_memory` exceeds it.
    pivot_rtol : float
        Relative pivot cutoff of the incremental Cholesky of C_r/δ (docs/theory/dln.md §10 pitfall 5).
    error_method : {"replicas", "jackknife"}
        How the ``_sem`` outputs are estimated.  ``"replicas"`` (default) runs a second pass of
        n_batches *independent* closures of K/n_batches samples each and reports their standard
        deviation / √n_batches; since the Monte-Carlo error of a closure scales like K^{-1/2}, this
        estimates the error of the K-sample solve including the error that feeds back through the
        estimated kernels into ζ and M.  Costs twice the time (same peak memory).
        ``"jackknife"`` leaves one batch of the main closure out at a time: free, but it only sees
        the sampling error at fixed field statistics and underestimates late-time errors (measured
        2-4x on E_tr at t = 10, δ ∈ {0.5, 2}).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``time`` (T+1,) t = η k;
        ``train_loss`` (T+1,) E_tr = C_r[k, k];  ``test_loss`` (T+1,) E_te = C_Δ[k, k] + σ²;
        ``overlap``, ``norm1``, ``norm2`` (T+1,) E β*β, E|β|, E β²;
        ``tpr``, ``fpr`` (T+1,) P(|β| > 0.5 | β* ≠ 0), P(|β| > 0.5 | β* = 0) (NaN if undefined);
        ``C_delta``, ``R_beta``, ``M``, ``C_r`` (T+1, T+1) kernels of docs/theory/dln.md §5.1 (M unit
        lower-triangular, R_β strictly lower-triangular);
        ``<name>_sem`` for each scalar curve and for ``C_delta`` and ``R_beta`` (see error_method);
        ``info`` dict (netCDF-safe): parameters, n_samples, n_steps, lr, pivot_rtol,
        memory_estimate_bytes, n_pivots_kept, gd_stability_bound, error_method, wall_time_s,
        diverged_at_step (-1 if none).  After a divergence every output is NaN from that step on.
    """
    t_start = _time.perf_counter()
    _validate(ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps,
              n_samples, n_batches, tangent_dtype, memory_budget_gb, pivot_rtol)
    if error_method not in ERROR_METHODS:
        raise ValueError(f"error_method must be one of {ERROR_METHODS}, got {error_method!r}")
    mem_est = _check_memory(n_samples, n_steps, tangent_dtype, n_batches, memory_budget_gb)

    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in ss.spawn(4)]
    K, T, nb = int(n_samples), int(n_steps), int(n_batches)
    n = T + 1
    a0, b0 = initial_state(init, parametrization, init_scale)
    Delta = a0**2 - b0**2 if parametrization == "uv" else 4 * a0 * b0  # u² − v², u = w+ + w−, v = w+ − w−
    beta0 = float(_beta_of(a0, b0, parametrization))
    beta_star = sample_teacher(rngs[0], teacher, sparsity, nb, K // nb)
    beta_max = max(float(np.max(np.abs(beta_star))), abs(beta0))
    eta_max = gd_stability_bound(ratio, beta_max, Delta, parametrization)
    if lr >= eta_max:
        warnings.warn(
            f"lr={lr:g} exceeds the GD stability bound η < 2/(c·√(Δ²+4β_max²)·(1+δ^(-1/2))²) = "
            f"{eta_max:.4g} (docs/theory/dln.md §10 pitfall 4; δ={ratio:g}, β_max={beta_max:.3g}, Δ={Delta:.3g}, "
            f"c={1 if parametrization == 'uv' else 2}); GD may oscillate or diverge and its implicit bias "
            f"differs from gradient flow.", RuntimeWarning, stacklevel=2)
    common = dict(a0=a0, b0=b0, ratio=ratio, noise=noise, lr=lr, n_steps=T, parametrization=parametrization,
                  tangent_dtype=tangent_dtype, pivot_rtol=pivot_rtol, eta_max=eta_max, progress=progress)

    # white noise fixed per sample (docs/theory/dln.md §5.2 step 4)
    # overflow in a diverging run is detected and reported by _one_pass itself
    with np.errstate(over="ignore", invalid="ignore"):
        main = _one_pass(beta_star, rngs[1].standard_normal((n, K)), n_groups=1, n_batches=nb,
                         desc="DMFT (dln)", **common)
    kmax = n if main["diverged_at"] < 0 else main["diverged_at"]
    out = {"time": lr * np.arange(n)}
    out.update({key: v[0] for key, v in _group_curves(main, noise, 1).items()})
    out["C_delta"], out["R_beta"] = main["C"][0], main["R"][0]
    out["M"], out["C_r"] = main["M"][0], main["C_r"][0]

    if error_method == "jackknife":
        sems = _jackknife_sems(main, ratio, noise)
    else:
        rep_star = sample_teacher(rngs[2], teacher, sparsity, nb, K // nb)
        with np.errstate(over="ignore", invalid="ignore"):
            rep = _one_pass(rep_star, rngs[3].standard_normal((n, K)), n_groups=nb, n_batches=nb,
                            desc="DMFT (dln) replicas", **common)
        curves = _group_curves(rep, noise, nb)
        sems = {key: curves[key].std(axis=0, ddof=1) / math.sqrt(nb) for key in _SCALARS}
        sems["C_delta"] = rep["C"].std(axis=0, ddof=1) / math.sqrt(nb)
        sems["R_beta"] = rep["R"].std(axis=0, ddof=1) / math.sqrt(nb)
        if rep["diverged_at"] >= 0:
            kmax = min(kmax, rep["diverged_at"])
    for key, val in sems.items():
        out[f"{key}_sem"] = val

    mask_after_divergence(out, kmax)

    out["info"] = solve_info(
        ratio=ratio, sparsity=sparsity, teacher=teacher, noise=noise, init_scale=init_scale, init=init,
        parametrization=parametrization, lr=lr, n_steps=T, n_samples=K, n_batches=nb, seed=ss.entropy,
        tangent_dtype=tangent_dtype, pivot_rtol=pivot_rtol, n_pivots_kept=main["ranks"][0],
        memory_estimate_bytes=mem_est, memory_budget_gb=memory_budget_gb, gd_stability_bound=eta_max,
        error_method=error_method, diverged_at_step=-1 if kmax == n else kmax,
        wall_time_s=_time.perf_counter() - t_start)
    return out


# ----------------------------------------------------------------------------------------------------
# gradient flow by Richardson extrapolation
# ----------------------------------------------------------------------------------------------------
def richardson(f_eta, f_eta_half):
    """First-order Richardson extrapolation 2 f(η/2) − f(η) on the coarse grid (docs/theory/dln.md §5.2).

    GD differs from GF by O(η) at fixed t (docs/theory/dln.md §3 "GD"), so the combination cancels the leading
    error.  ``f_eta_half`` may be given on the fine grid (length 2T+1 along each axis), in which case
    every second point is taken.

    Parameters
    ----------
    f_eta : ndarray, shape (T+1,) or (T+1, T+1)
    f_eta_half : ndarray, shape like f_eta or (2T+1,) / (2T+1, 2T+1)

    Returns
    -------
    ndarray, shape of f_eta
    """
    f_eta = np.asarray(f_eta, dtype=np.float64)
    f_half = np.asarray(f_eta_half, dtype=np.float64)
    if f_half.shape != f_eta.shape:
        f_half = f_half[tuple(slice(None, None, 2) for _ in range(f_half.ndim))]
    if f_half.shape != f_eta.shape:
        raise ValueError(f"shapes {f_eta.shape} and {f_eta_half.shape} are not on a common grid")
    return 2.0 * f_half - f_eta


def solve_info(*, ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps, n_samples,
               n_batches, seed, tangent_dtype, pivot_rtol, n_pivots_kept, memory_estimate_bytes,
               memory_budget_gb, gd_stability_bound, error_method, diverged_at_step, wall_time_s) -> dict:
    """The netCDF-safe ``info`` dict of a DMFT solve (shared by the numpy and JAX engines)."""
    return {
        "method": "dmft_one_pass", "algorithm": "gd",
        "ratio": float(ratio), "sparsity": float(sparsity), "teacher": teacher, "noise": float(noise),
        "init_scale": float(init_scale), "init": init, "parametrization": parametrization,
        "lr": float(lr), "n_steps": int(n_steps), "n_samples": int(n_samples), "n_batches": int(n_batches),
        "seed": str(seed), "tangent_dtype": tangent_dtype, "pivot_rtol": float(pivot_rtol),
        "n_pivots_kept": int(n_pivots_kept), "memory_estimate_bytes": memory_estimate_bytes,
        "memory_budget_gb": float(memory_budget_gb), "gd_stability_bound": float(gd_stability_bound),
        "error_method": error_method, "diverged_at_step": int(diverged_at_step),
        "wall_time_s": float(wall_time_s),
    }


def mask_after_divergence(out: dict, kmax: int) -> None:
    """Set every curve and kernel entry from step ``kmax`` (the first non-finite one) on to NaN, in place.

    Shared by the numpy and JAX engines; ``kmax`` equal to the grid length means no divergence.
    """
    n = out["train_loss"].shape[0]
    if kmax >= n:
        return
    for key in _SCALARS:
        out[key][kmax:] = np.nan
        out[f"{key}_sem"][kmax:] = np.nan
    for key in ("C_delta", "R_beta", "M", "C_r", "C_delta_sem", "R_beta_sem"):
        out[key][kmax:, :] = np.nan
        out[key][:, kmax:] = np.nan


def solve_gradient_flow(*, lr: float, n_steps: int, seed=0, **kwargs) -> dict:
    """Gradient-flow DMFT curves by Richardson extrapolation of two GD solves (steps η and η/2).

    Runs :func:`solve` with (η/2, 2T) and (η, T) on independent seeds and returns 2 f(η/2) − f(η) on
    the grid t_k = η k, k = 0..T.  The η/2 solve needs 4× the memory and 8× the time of the η solve;
    it runs first, so a memory refusal (stated for n_steps = 2T) comes before any work.
    The response is extrapolated as a density: R(t, s) ≈ R_β/η, and ``R_beta`` is returned as
    η·[2 R_{η/2}(t, s)/(η/2) − R_η(t, s)/η] so it keeps the units of the coarse grid; M − I likewise.

    Parameters
    ----------
    lr : float
        Coarse step η.
    n_steps : int
        T (coarse grid).
    seed : int
        Spawns the seeds of the two solves.
    **kwargs
        Every other keyword of :func:`solve`.

    Returns
    -------
    dict
        The keys of :func:`solve` (extrapolated; ``_sem`` combined as √(4 s_{η/2}² + s_η²), for
        ``R_beta_sem`` √(16 s_{η/2}² + s_η²)).  ``info`` (netCDF-safe, flat) holds both solves' info
        under the prefixes ``coarse_`` and ``fine_``, the model parameters, ``lr`` = η,
        ``n_steps`` = T, the summed ``wall_time_s`` and ``method = "dmft_richardson"``.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s1, s2 = ss.spawn(2)
    fine = solve(lr=lr / 2, n_steps=2 * n_steps, seed=s2, **kwargs)
    coarse = solve(lr=lr, n_steps=n_steps, seed=s1, **kwargs)
    out = {"time": coarse["time"]}
    for key in _SCALARS + ("C_delta", "C_r"):
        out[key] = richardson(coarse[key], fine[key])
    # R_β and M − I are O(step) kernels: extrapolate their densities (ratio η/(η/2) = 2).
    out["R_beta"] = richardson(coarse["R_beta"], 2.0 * fine["R_beta"])
    eye_c, eye_f = np.eye(n_steps + 1), np.eye(2 * n_steps + 1)
    out["M"] = eye_c + richardson(coarse["M"] - eye_c, 2.0 * (fine["M"] - eye_f))
    for key in _SCALARS + ("C_delta",):
        sf = fine[f"{key}_sem"][tuple(slice(None, None, 2) for _ in range(fine[f"{key}_sem"].ndim))]
        out[f"{key}_sem"] = np.sqrt(4 * sf**2 + coarse[f"{key}_sem"] ** 2)
    rf = fine["R_beta_sem"][::2, ::2]
    out["R_beta_sem"] = np.sqrt(16 * rf**2 + coarse["R_beta_sem"] ** 2)
    info = {"method": "dmft_richardson"}
    for tag, sol in (("coarse", coarse), ("fine", fine)):
        for key, val in sol["info"].items():
            info[f"{tag}_{key}"] = val
    for key in ("ratio", "sparsity", "teacher", "noise", "init_scale", "init", "parametrization"):
        info[key] = coarse["info"][key]
    info["lr"] = float(lr)
    info["n_steps"] = int(n_steps)
    info["wall_time_s"] = coarse["info"]["wall_time_s"] + fine["info"]["wall_time_s"]
    out["info"] = info
    return out
