"""DMFT effective process of diagonal linear networks trained by gradient descent (dln.md §5).

In the proportional limit n, d → ∞ with δ = n/d fixed, GD on a DLN (β = u ⊙ v or β = w+² − w−²) with a
Gaussian design reduces to a single-coordinate process driven by a Gaussian field and a memory term,

    g^k = ζ^k + Σ_{l≤k} M[k, l] Δβ^l,      ζ ~ GP(0, C_r/δ),        (dln.md §5.1, d-side)
    M = (I + R_β/δ)^{-1},  C_r = M (C_Δ + σ² 11ᵀ) Mᵀ,                  (n-side)
    C_Δ[k, l] = E Δβ^k Δβ^l,  R_β[k, j] = E ∂β^k/∂h^j,                  (closure)

with Δβ = β − β*.  :func:`solve` integrates it in ONE causal forward pass over the GD steps
(dln.md §5.2): at step k, the K single-site samples give row k of C_Δ and (through per-sample
forward-mode tangents that include the memory term) row k of R_β; the n-side algebra then gives row k
of M and C_r, an incremental Cholesky turns fixed white noise into ζ^k, and every sample takes its GD
step.  No fixed-point iteration is needed.

Conventions are those of dln.md §2: X_{μi} ~ N(0, 1/d), loss L = ‖y − Xβ‖²/(2δ), time t = η k
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
    "PARAMETRIZATIONS",
    "SUPPORT_THRESHOLD",
]

TEACHERS = ("rademacher", "gauss")
INITS = ("pesme", "pm", "balanced")
PARAMETRIZATIONS = ("uv", "pm")
TANGENT_DTYPES = ("float32", "float64")
#: Absolute threshold on |β| used by `tpr` and `fpr` (dln.md §2.2).
SUPPORT_THRESHOLD = 0.5
_BLOCK = 16  # rows per block of the tangent history (grid.CausalTangentHistory)

_SCALARS = ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")


# ----------------------------------------------------------------------------------------------------
# model pieces
# ----------------------------------------------------------------------------------------------------
def initial_state(init: str, parametrization: str, init_scale: float) -> tuple[float, float]:
    """Initial weights (same for every coordinate) of dln.md §2.2.

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
    u, v = uv  # u = w+ + w−, v = w+ − w− (dln.md §2.2)
    return 0.5 * (u + v), 0.5 * (u - v)


def _beta_of(a, b, parametrization):
    return a * b if parametrization == "uv" else a * a - b * b


def sample_teacher(rng: np.random.Generator, teacher: str, sparsity: float, n_batches: int,
                   batch_size: int) -> np.ndarray:
    """Teacher coordinates β* for the DMFT samples, stratified per batch (dln.md §2.1).

    Each batch holds exactly ⌊ρ K_b⌋ or ⌈ρ K_b⌉ non-zeros (randomised rounding keeps the expected
    fraction exactly ρ), mirroring the exact-ρ finite-d teacher, which removes the binomial noise of
    the support size from the kernels.

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
            out[b, idx] = rng.choice(np.array([-1.0, 1.0]), size=n_nz)
        else:
            out[b, idx] = rng.standard_normal(n_nz)
    return out.reshape(-1)


def gd_stability_bound(ratio: float, beta_max: float, Delta: float, parametrization: str = "uv") -> float:
    """Largest stable GD step of dln.md §3 / §10 pitfall 4.

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
    """K single-coordinate GD trajectories with forward-mode response tangents (dln.md §5.1–5.2).

    State (a, b) is (u, v) for ``"uv"`` and (w+, w−) for ``"pm"``.  The force h enters as
    g → g − h.  For every earlier kick time j the ensemble carries the tangents ∂(a, b)^k/∂h^j and
    stores ∂β^l/∂h^j for all l (the response history), because the field's memory term makes the
    tangent of g^k depend on the whole past:  δg^k = Σ_{l≤k} M[k, l] δβ^l  (ζ is independent of h).

    Usage per step k: read :attr:`beta`; call :meth:`record_tangents` (returns ∂β^k/∂h^j, j < k);
    then :meth:`step` with the field g^k and row k of M.

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
    """

    def __init__(self, beta_star, a0: float, b0: float, n_steps: int, lr: float,
                 parametrization: str = "uv", tangent_dtype: str = "float64"):
        self.beta_star = np.asarray(beta_star, dtype=np.float64)
        K = self.beta_star.shape[0]
        self.K, self.T, self.lr = K, int(n_steps), float(lr)
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
        self.history = CausalTangentHistory(self.T + 1, K, self.tdtype, block=_BLOCK)
        self.k = 0

    @property
    def beta(self) -> np.ndarray:
        """β^k, shape (K,)."""
        return _beta_of(self.a, self.b, self.parametrization)

    def record_tangents(self) -> np.ndarray:
        """Compute, store and return ∂β^k/∂h^j for j < k, shape (k, K) (k = current step >= 1)."""
        k = self.k
        if k == 0:
            return np.zeros((0, self.K), dtype=self.tdtype)
        if self.history.n_rows != k:
            raise RuntimeError("record_tangents must be called once per step, before step()")
        a = self.a.astype(self.tdtype)
        b = self.b.astype(self.tdtype)
        out = self._t1[:k]
        if self.parametrization == "uv":  # δβ = v δu + u δv
            np.multiply(self.dA[:k], b, out=out)
            out += self.dB[:k] * a
        else:  # δβ = 2 (w+ δw+ − w− δw−)
            np.multiply(self.dA[:k], 2 * a, out=out)
            out -= self.dB[:k] * (2 * b)
        self.history.append(out)
        return self.history.row(k)

    def step(self, g, M_row) -> None:
        """GD step k → k+1 of states and tangents given the field g^k and M[k, :k+1].

        Parameters
        ----------
        g : ndarray, shape (K,)
            g^k = ζ^k + Σ_l M[k, l] Δβ^l for each sample.
        M_row : ndarray, shape (k + 1,)
        """
        k, eta = self.k, self.lr
        if k >= self.T:
            raise RuntimeError(f"all {self.T} steps done")
        if self.history.n_rows != k + 1 and k > 0:
            raise RuntimeError("call record_tangents() before step()")
        a, b = self.a, self.b
        td = self.tdtype
        g32, a32, b32 = g.astype(td), a.astype(td), b.astype(td)
        if k > 0:
            dA, dB = self.dA[:k], self.dB[:k]
            # Memory term of the tangent (dln.md §5.2 step 2): δg^k_j = Σ_{l=j+1}^{k} M[k,l] δβ^l_j.
            dG = self.history.contract(M_row, out=self._dG)
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
        # Kick at j = k: the force enters as g − h, it acts on the k → k+1 update only.
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

    Reference implementation of the d-side of dln.md §5.1, used to check the tangents by finite
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
    """Bytes :func:`solve` allocates (dln.md §10 pitfall 7: O(K T²) for the response tangents).

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
        ``kernels`` (per-batch C_Δ and R_β plus M, C_r, L, (T+1)² float64 each) and ``total``.
    """
    it = np.dtype(tangent_dtype).itemsize
    n = n_steps + 1
    out = {
        "tangent_history": tangent_history_nbytes(n, n_samples, it, _BLOCK),
        "tangent_state": 5 * max(n_steps, 1) * n_samples * it,
        "samples": 2 * n * n_samples * 8 + 12 * n_samples * 8,
        "kernels": (2 * n_batches + 8) * n * n * 8,
    }
    out["total"] = sum(out.values())
    return out


def _validate(ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps,
              n_samples, n_batches, tangent_dtype, memory_budget_gb, pivot_rtol):
    def finite(name, x):
        if not isinstance(x, (int, float, np.integer, np.floating)) or isinstance(x, bool) or not math.isfinite(x):
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
        raise ValueError(f"n_samples must be an integer >= 2 * n_batches = {2 * n_batches}, got {n_samples!r}")
    if n_samples % n_batches:
        raise ValueError(f"n_samples ({n_samples}) must be a multiple of n_batches ({n_batches})")
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
def _jackknife(estimates, full=None) -> np.ndarray:
    """Jackknife standard error from leave-one-batch-out estimates, shape (n_batches, ...)."""
    nb = estimates.shape[0]
    dev = estimates - estimates.mean(axis=0)
    return np.sqrt((nb - 1) / nb * np.sum(dev**2, axis=0))


def solve(*, ratio: float, sparsity: float, teacher: str = "rademacher", noise: float = 0.0,
          init_scale: float, init: str = "pesme", parametrization: str = "uv", lr: float, n_steps: int,
          n_samples: int = 16000, seed=0, n_batches: int = 8, tangent_dtype: str = "float32",
          memory_budget_gb: float = 4.0, pivot_rtol: float = DEFAULT_PIVOT_RTOL,
          progress: bool = False) -> dict:
    """Solve the discrete-time DMFT of GD on a DLN in one causal forward pass (dln.md §5.2).

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
        Initialisation of dln.md §2.2.
    parametrization : {"uv", "pm"}
        β = u ⊙ v or β = w+² − w−² (pm clock: time runs twice as fast as uv, not converted).
    lr : float
        GD step η > 0; the output grid is t_k = η k.  A RuntimeWarning is issued above the stability
        bound of :func:`gd_stability_bound`.
    n_steps : int
        T >= 1.
    n_samples : int
        K single-site samples (shared by C_Δ and R_β, dln.md §10 pitfall 6); a multiple of n_batches.
    seed : int or numpy.random.SeedSequence
        Seeds teacher samples and white noise.
    n_batches : int
        Number of sample batches for the jackknife standard errors (>= 2).
    tangent_dtype : {"float32", "float64"}
        Precision of the response tangents (the trajectories and kernels are always float64).
    memory_budget_gb : float
        Refuse (ValueError) if :func:`estimate_memory` exceeds it.
    pivot_rtol : float
        Relative pivot cutoff of the incremental Cholesky of C_r/δ (dln.md §10 pitfall 5).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``time`` (T+1,) t = η k;
        ``train_loss`` (T+1,) E_tr = C_r[k, k];  ``test_loss`` (T+1,) E_te = C_Δ[k, k] + σ²;
        ``overlap``, ``norm1``, ``norm2`` (T+1,) E β*β, E|β|, E β²;
        ``tpr``, ``fpr`` (T+1,) P(|β| > 0.5 | β* ≠ 0), P(|β| > 0.5 | β* = 0) (NaN if undefined);
        ``C_delta``, ``R_beta``, ``M``, ``C_r`` (T+1, T+1) kernels of dln.md §5.1;
        ``<name>_sem`` for each scalar curve and for ``C_delta``, ``R_beta``: jackknife standard errors
        over the n_batches sample batches.  They measure the sampling error of the averages at fixed
        field statistics; the error that feeds back through the estimated kernels into ζ and M is
        not included (estimate it from independent seeds);
        ``info`` dict (netCDF-safe): parameters, n_samples, n_steps, lr, pivot_rtol,
        memory_estimate_bytes, n_pivots_kept, gd_stability_bound, wall_time_s, diverged_at_step (-1).
    """
    t_start = _time.perf_counter()
    _validate(ratio, sparsity, teacher, noise, init_scale, init, parametrization, lr, n_steps,
              n_samples, n_batches, tangent_dtype, memory_budget_gb, pivot_rtol)
    mem_est = _check_memory(n_samples, n_steps, tangent_dtype, n_batches, memory_budget_gb)

    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng_teacher, rng_noise = (np.random.default_rng(s) for s in ss.spawn(2))
    K, T, nb = int(n_samples), int(n_steps), int(n_batches)
    Kb, n = K // nb, T + 1
    beta_star = sample_teacher(rng_teacher, teacher, sparsity, nb, Kb)
    a0, b0 = initial_state(init, parametrization, init_scale)
    if parametrization == "uv":
        Delta = a0**2 - b0**2
    else:
        Delta = 4 * a0 * b0  # u² − v² with u = w+ + w−, v = w+ − w−
    beta0 = float(_beta_of(a0, b0, parametrization))
    beta_max = max(float(np.max(np.abs(beta_star))) if K else 0.0, abs(beta0))
    eta_max = gd_stability_bound(ratio, beta_max, Delta, parametrization)
    if lr >= eta_max:
        warnings.warn(
            f"lr={lr:g} exceeds the GD stability bound η < 2/(c·√(Δ²+4β_max²)·(1+δ^(-1/2))²) = "
            f"{eta_max:.4g} (dln.md §10 pitfall 4; δ={ratio:g}, β_max={beta_max:.3g}, Δ={Delta:.3g}, "
            f"c={1 if parametrization == 'uv' else 2}); GD may oscillate or diverge and its implicit bias "
            f"differs from gradient flow.", RuntimeWarning, stacklevel=2)

    ens = SingleSiteEnsemble(beta_star, a0, b0, T, lr, parametrization, tangent_dtype)
    z = rng_noise.standard_normal((n, K))  # white noise fixed per sample (dln.md §5.2 step 4)
    sampler = CausalGaussianSampler(z, pivot_rtol)
    kern = CausalKernels(n)
    res = ResidualKernels(n, ratio, noise)
    dbeta = np.zeros((n, K))  # Δβ^l history, used by C_Δ and the memory term of g
    Cb = np.zeros((nb, n, n))  # per-batch C_Δ and R_β (error bars)
    Rb = np.zeros((nb, n, n))
    sums = {key: np.full((nb, n), np.nan) for key in ("overlap", "norm1", "norm2", "tp", "fp")}
    supp = (beta_star != 0).reshape(nb, Kb)
    n_supp = supp.sum(axis=1).astype(float)
    diverged_at = -1

    steps = range(n)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="DMFT (dln)", total=n)
    for k in steps:
        beta = ens.beta
        if not np.all(np.isfinite(beta)):
            diverged_at = k
            warnings.warn(f"DMFT trajectories diverged at step {k} (t = {lr * k:g}); later times are NaN. "
                          f"Lower lr (stability bound {eta_max:.4g}).", RuntimeWarning, stacklevel=2)
            break
        dbeta[k] = beta - beta_star
        # --- step 1: row k of C_Δ (per batch, then averaged: equal batch sizes) -------------------
        hist_b = dbeta[: k + 1].reshape(k + 1, nb, Kb).transpose(1, 0, 2)  # (nb, k+1, Kb)
        cb = np.matmul(hist_b, dbeta[k].reshape(nb, Kb, 1))[..., 0] / Kb  # (nb, k+1)
        Cb[:, k, : k + 1] = cb
        Cb[:, : k + 1, k] = cb
        kern.set_C_row(k, cb.mean(axis=0))
        # --- step 2: tangents ∂β^k/∂h^j (memory term included in ens.step) and row k of R_β -------
        tang = ens.record_tangents()  # (k, K)
        rb = tang.reshape(k, nb, Kb).mean(axis=2, dtype=np.float64)  # (k, nb)
        Rb[:, k, :k] = rb.T
        kern.set_R_row(k, rb.mean(axis=1))
        # --- step 3: rows k of M and C_r --------------------------------------------------------------
        cr_row = res.update(k, kern.C[k, : k + 1], kern.R[k, :k])
        # observables of the single site
        bb = beta.reshape(nb, Kb)
        bs = beta_star.reshape(nb, Kb)
        sums["overlap"][:, k] = (bb * bs).sum(axis=1)
        sums["norm1"][:, k] = np.abs(bb).sum(axis=1)
        sums["norm2"][:, k] = (bb * bb).sum(axis=1)
        big = np.abs(bb) > SUPPORT_THRESHOLD
        sums["tp"][:, k] = (big & supp).sum(axis=1)
        sums["fp"][:, k] = (big & ~supp).sum(axis=1)
        if k == T:
            break
        # --- step 4: ζ^k from row k of the Cholesky factor of C_r/δ ----------------------------------
        zeta = sampler.next(cr_row / ratio)
        # --- step 5: field g^k = ζ^k + Σ_l M[k,l] Δβ^l and GD step -----------------------------------
        g = zeta + res.M[k, : k + 1] @ dbeta[: k + 1]
        ens.step(g, res.M[k, : k + 1])

    # ---------------------------------------------------------------------------------------------
    # outputs and jackknife errors (leave one batch out; equal batch sizes)
    # ---------------------------------------------------------------------------------------------
    kmax = n if diverged_at < 0 else diverged_at
    C_delta, R_beta = kern.C.copy(), kern.R.copy()
    M, C_r = res.M.copy(), res.C_r.copy()
    if kmax < n:
        for arr in (C_delta, R_beta, M, C_r):
            arr[kmax:, :] = np.nan
            arr[:, kmax:] = np.nan
    out = {"time": lr * np.arange(n)}
    sig2 = noise**2
    out["train_loss"] = np.diag(C_r).copy()
    out["test_loss"] = np.diag(C_delta) + sig2
    tot = {key: v.sum(axis=0) for key, v in sums.items()}
    out["overlap"] = tot["overlap"] / K
    out["norm1"] = tot["norm1"] / K
    out["norm2"] = tot["norm2"] / K
    with np.errstate(invalid="ignore", divide="ignore"):
        out["tpr"] = tot["tp"] / n_supp.sum() if n_supp.sum() > 0 else np.full(n, np.nan)
        out["fpr"] = tot["fp"] / (K - n_supp.sum()) if n_supp.sum() < K else np.full(n, np.nan)

    Csum, Rsum = Cb.sum(axis=0), Rb.sum(axis=0)
    loo = {key: np.empty((nb, n)) for key in _SCALARS}
    for i in range(nb):
        C_i = (Csum - Cb[i]) / (nb - 1)
        R_i = (Rsum - Rb[i]) / (nb - 1)
        if kmax == n:
            loo["train_loss"][i] = np.diag(residual_kernels(C_i, R_i, ratio, noise)[1])
        else:
            loo["train_loss"][i] = np.nan
            loo["train_loss"][i, :kmax] = np.diag(
                residual_kernels(C_i[:kmax, :kmax], R_i[:kmax, :kmax], ratio, noise)[1])
        loo["test_loss"][i] = np.diag(C_i) + sig2
        for key in ("overlap", "norm1", "norm2"):
            loo[key][i] = (tot[key] - sums[key][i]) / (K - Kb)
        with np.errstate(invalid="ignore", divide="ignore"):
            loo["tpr"][i] = (tot["tp"] - sums["tp"][i]) / (n_supp.sum() - n_supp[i])
            loo["fpr"][i] = (tot["fp"] - sums["fp"][i]) / ((K - n_supp.sum()) - (Kb - n_supp[i]))
    for key in _SCALARS:
        out[f"{key}_sem"] = _jackknife(loo[key])
        out[key][kmax:] = np.nan
        out[f"{key}_sem"][kmax:] = np.nan
    out["C_delta"], out["R_beta"], out["M"], out["C_r"] = C_delta, R_beta, M, C_r
    # For linear statistics the jackknife equals the standard error of the batch means.
    out["C_delta_sem"] = Cb.std(axis=0, ddof=1) / math.sqrt(nb)
    out["R_beta_sem"] = Rb.std(axis=0, ddof=1) / math.sqrt(nb)

    out["info"] = {
        "method": "dmft_one_pass",
        "algorithm": "gd",
        "ratio": float(ratio), "sparsity": float(sparsity), "teacher": teacher, "noise": float(noise),
        "init_scale": float(init_scale), "init": init, "parametrization": parametrization,
        "lr": float(lr), "n_steps": T, "n_samples": K, "n_batches": nb,
        "seed": str(ss.entropy), "tangent_dtype": tangent_dtype, "pivot_rtol": float(pivot_rtol),
        "n_pivots_kept": int(sampler.chol.rank), "memory_estimate_bytes": mem_est,
        "memory_budget_gb": float(memory_budget_gb), "gd_stability_bound": float(eta_max),
        "diverged_at_step": int(diverged_at), "wall_time_s": float(_time.perf_counter() - t_start),
    }
    return out


# ----------------------------------------------------------------------------------------------------
# gradient flow by Richardson extrapolation
# ----------------------------------------------------------------------------------------------------
def richardson(f_eta, f_eta_half):
    """First-order Richardson extrapolation 2 f(η/2) − f(η) on the coarse grid (dln.md §5.2).

    GD differs from GF by O(η) at fixed t (dln.md §3 "GD"), so the combination cancels the leading
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


def solve_gradient_flow(*, lr: float, n_steps: int, seed=0, **kwargs) -> dict:
    """Gradient-flow DMFT curves by Richardson extrapolation of two GD solves (steps η and η/2).

    Runs :func:`solve` with (η, T) and (η/2, 2T) on independent seeds and returns 2 f(η/2) − f(η) on
    the grid t_k = η k, k = 0..T.  The η/2 solve needs 4× the memory and 8× the time of the η solve.
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
        The keys of :func:`solve` (extrapolated; ``_sem`` combined as √(4 s_{η/2}² + s_η²)), with
        ``info`` holding both solves' info as ``info["coarse"]`` / ``info["fine"]`` flattened with
        prefixes ``coarse_`` / ``fine_`` (netCDF-safe) and ``method = "dmft_richardson"``.
    """
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    s1, s2 = ss.spawn(2)
    coarse = solve(lr=lr, n_steps=n_steps, seed=s1, **kwargs)
    fine = solve(lr=lr / 2, n_steps=2 * n_steps, seed=s2, **kwargs)
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
