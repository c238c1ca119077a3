"""Theory of the linear family (docs/theory/linear.md).

* :func:`sgd_recursion` – the exact data-averaged mode recursion of online SGD (note §2, eq. 2.5), any d,
  B and schedule, O(d) per step in a compiled (numba) loop;
* :func:`volterra_loss` – the same loss from the renewal (Volterra) form (note §4, eq. 4.1), constant η;
* :func:`gd_marchenko_pastur` – full-batch GD train/test curves for isotropic Σ in the proportional
  regime as one-dimensional Marchenko–Pastur integrals (note §6, eqs. 6.2–6.3);
* :func:`power_law_exponents` (note §5, eq. 5.1) and :func:`compute_optimal_batch` (note §5).

Solvers take arrays, do no I/O and no plotting.
"""
from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["sgd_recursion", "volterra_loss", "gd_marchenko_pastur", "mp_quadrature", "power_law_exponents",
           "compute_optimal_batch", "random_features_reduction", "gd_deterministic_equivalent",
           "gd_spectral_edge", "BLOWUP_FACTOR"]

#: the recursion stops (and reports the step) once the loss exceeds this factor times its start
BLOWUP_FACTOR = 1e8

def _kernel():
    """The compiled recursion loop (numba is imported on first use only, from its own module)."""
    from hidyn.solvers.closed_form._linear_numba import recursion_kernel

    return recursion_kernel


def sgd_recursion(lam, v0, lrs, batch: int, noise: float, save_steps, *, per_mode: bool = False):
    """Exact expected test loss (and mode errors) of online SGD, linear.md eq. (2.5).

    v_k ← (1 − 2ηλ_k + η²(1 + 1/B)λ_k²) v_k + (η²λ_k/B)·(Σ_j λ_j v_j + σ²), exact at any d.

    Parameters
    ----------
    lam : array_like (d,)
        Eigenvalues λ of Σ (≥ 0).
    v0 : array_like (d,)
        Initial mode errors E(w₀ − w*)_k².
    lrs : array_like (K,)
        Per-step learning rates η_0 … η_{K−1}, K ≥ max(save_steps).
    batch : int
        B.
    noise : float
        σ (label-noise standard deviation).
    save_steps : array_like of int (n_save,)
        Sorted step counts at which to record.
    per_mode : bool
        Also return the mode errors at the save steps.

    Returns
    -------
    dict
        ``test_loss`` (n_save,), ``mode_error`` (n_save, d) if ``per_mode``, ``diverged_at_step``
        (−1: none; else the first step whose loss exceeded ``BLOWUP_FACTOR``·(L₀ + 1) or was non-finite;
        later entries are NaN).
    """
    lam = np.ascontiguousarray(lam, dtype=np.float64)
    v = np.array(v0, dtype=np.float64)
    steps = np.ascontiguousarray(save_steps, dtype=np.int64)
    if steps.ndim != 1 or steps.size == 0 or np.any(np.diff(steps) < 0) or steps[0] < 0:
        raise ValueError("save_steps must be a non-empty sorted 1-D array of step counts ≥ 0")
    lrs = np.ascontiguousarray(lrs, dtype=np.float64)
    if lrs.size < steps[-1]:
        raise ValueError(f"lrs has {lrs.size} values, which is invalid: must cover the {int(steps[-1])} steps run")
    out = np.full(steps.size, np.nan)
    modes = np.full((steps.size if per_mode else 1, lam.size), np.nan)
    div = _kernel()(lam, v, lrs, 1.0 / batch, float(noise) ** 2, steps, out, modes, per_mode, BLOWUP_FACTOR)
    res = {"test_loss": out, "diverged_at_step": int(div)}
    if per_mode:
        res["mode_error"] = modes
    return res


def volterra_loss(lam, v0, lr: float, batch: int, noise: float, steps: int) -> np.ndarray:
    """Expected loss L_0 … L_steps from the renewal form, linear.md eq. (4.1), constant η.

    L_t = F_t + Σ_{s<t} K_{t−1−s} L_s with F_t = σ² + Σ_k λ_k a_k^t v_k(0), K_τ = (η²/B)Σ_k λ_k² a_k^τ,
    a_k = 1 − 2ηλ_k + η²(1 + 1/B)λ_k².  O(steps·d + steps²); an independent check of the recursion
    and the form used for the asymptotics of §5.

    Returns
    -------
    ndarray (steps + 1,)
    """
    lam = np.asarray(lam, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    a = 1.0 - 2.0 * lr * lam + lr * lr * (1.0 + 1.0 / batch) * lam * lam
    F = np.empty(steps + 1)
    K = np.empty(steps + 1)
    p = np.ones_like(lam)
    for t in range(steps + 1):
        F[t] = noise ** 2 + np.dot(lam * p, v0)
        K[t] = lr * lr / batch * np.dot(lam * lam, p)
        p = p * a
    L = np.empty(steps + 1)
    for t in range(steps + 1):
        L[t] = F[t] + (np.dot(K[t - 1::-1], L[:t]) if t > 0 else 0.0)
    return L


@functools.lru_cache(maxsize=8)
def _legendre(n: int):
    """Gauss–Legendre nodes on [−1, 1] (scipy's O(n) asymptotic construction; numpy's leggauss is O(n³))."""
    from scipy.special import roots_legendre

    t, w = roots_legendre(n)
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


def mp_quadrature(gamma: float, n_nodes: int = 2000):
    """Nodes x and weights of the continuous part of the Marchenko–Pastur law μ_γ (linear.md §6).

    x = m + r cos θ on θ ∈ (0, π) (m = 1 + γ, r = 2√γ) with Gauss–Legendre nodes; the weights carry the
    density, r² sin²θ/(2πγx) dθ, and sum to min(1, 1/γ) (the atom 1 − 1/γ at 0 is not included).
    """
    t, w = _legendre(int(n_nodes))
    theta = 0.5 * math.pi * (t + 1.0)
    w = 0.5 * math.pi * w
    m, r = 1.0 + gamma, 2.0 * math.sqrt(gamma)
    x = m + r * np.cos(theta)
    weights = w * r * r * np.sin(theta) ** 2 / (2.0 * math.pi * gamma * x)
    return x, weights


def gd_marchenko_pastur(ratio: float, lr: float, steps, *, e0_norm2: float = 1.0, noise: float = 0.0,
                        n_nodes: int = 2000) -> dict:
    """Full-batch GD train and test loss for Σ = I, d, n → ∞ with n/d = ratio (linear.md eqs. 6.2–6.3).

    Parameters
    ----------
    ratio : float
        n/d > 0 (γ = d/n = 1/ratio).
    lr : float
        η (constant), time t = η·k.
    steps : array_like of int (n_save,)
        Step counts k.
    e0_norm2 : float
        ‖w₀ − w*‖² = ‖w*‖² + init_scale² (isotropic direction).
    noise : float
        σ.
    n_nodes : int
        Gauss–Legendre nodes (2000 gives < 1e-10 relative error for ηk ≤ 1e4; tested against quad).

    Returns
    -------
    dict with ``test_loss``, ``train_loss`` (n_save,)
    """
    gamma = 1.0 / ratio
    x, wt = mp_quadrature(gamma, n_nodes)
    k = np.asarray(steps, dtype=np.float64)[:, None]
    base = 1.0 - lr * x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        small = base > 0
        logb = np.log(np.where(small, base, 1.0))
        q = np.where(small, np.exp(k * logb), np.power(base, k))               # (1 − ηx)^k
        h = np.where(small, -np.expm1(k * logb), 1.0 - np.power(base, k))      # 1 − (1 − ηx)^k
    q2 = q * q
    atom = max(0.0, 1.0 - ratio)               # mass 1 − 1/γ of μ_γ at 0 (γ > 1)
    cont = min(1.0, ratio)                     # mass of the continuous part
    bias = e0_norm2 * (q2 @ wt + atom)
    var = noise ** 2 * gamma * ((h * h / x) @ wt)
    test = noise ** 2 + bias + var
    train = e0_norm2 * ((x * q2) @ wt) + noise ** 2 * ((1.0 - min(1.0, gamma)) + min(1.0, gamma) * (q2 @ wt) / cont)
    return {"test_loss": test, "train_loss": train}


def power_law_exponents(a: float, b: float) -> dict:
    """Decay exponents of L_t − σ² for online SGD with λ_k = k^(−a), λ_k w*_k² = k^(−b), d → ∞ (eq. 5.1).

    Returns
    -------
    dict
        ``bias`` = (b − 1)/a, ``noise`` = 2 − 1/a (the SGD-noise term, present when the loss is summable,
        bias > 1), ``dominant`` = the smaller of those present.
    """
    if not (a > 1.0 and b > 1.0):
        raise ValueError(f"a={a!r}, b={b!r} are invalid: the power-law exponents need a > 1 (tr Σ finite) and "
                         f"b > 1 (finite signal)")
    bias = (b - 1.0) / a
    noise = 2.0 - 1.0 / a
    return {"bias": bias, "noise": noise, "dominant": min(bias, noise) if bias > 1.0 else bias}


def compute_optimal_batch(lam, v0, samples: int, batch_sizes, *, noise: float = 0.0) -> dict:
    """Best batch size at a fixed budget of samples N = k·B, each B at its best constant η (note §5).

    For each B, η is chosen in (0, η_max(B)) by ``scipy.optimize.minimize_scalar`` (bounded) on the
    log of the final loss of the exact recursion after ⌊N/B⌋ steps.

    Returns
    -------
    dict
        ``batch_sizes`` (n,), ``best_lr`` (n,), ``final_loss`` (n,), ``lr_max`` (n,), ``optimal_batch``.
    """
    from scipy.optimize import minimize_scalar

    from hidyn.models.linear import sgd_stability_bound

    lam = np.asarray(lam, dtype=np.float64)
    Bs = np.asarray(batch_sizes, dtype=np.int64)
    best, loss, bound = [], [], []
    for B in Bs:
        k = max(int(samples // B), 1)
        top = sgd_stability_bound(lam, int(B))

        def f(log_eta, B=B, k=k):
            eta = math.exp(log_eta)
            out = sgd_recursion(lam, v0, np.full(k, eta), int(B), noise, [k])["test_loss"][0]
            return math.log(out) if np.isfinite(out) else 1e3

        res = minimize_scalar(f, bounds=(math.log(top) - 8.0, math.log(top * 0.999)), method="bounded",
                              options={"xatol": 1e-4})
        best.append(math.exp(res.x))
        loss.append(math.exp(res.fun))
        bound.append(top)
    loss = np.array(loss)
    return {"batch_sizes": Bs, "best_lr": np.array(best), "final_loss": loss, "lr_max": np.array(bound),
            "optimal_batch": int(Bs[int(np.argmin(loss))])}


def random_features_reduction(W, x_eigenvalues, target, noise: float = 0.0) -> dict:
    """Map linear random features on Gaussian data exactly onto the linear family (linear.md §11).

    Model: x ~ N(0, diag(x_eigenvalues)) in R^v, features φ = Wᵀx ∈ R^d (W of shape (v, d)), target
    y = ⟨target, x⟩ + σξ, predictor ⟨θ, φ⟩ trained by SGD from θ = 0.  Because (φ, y) are jointly
    Gaussian, y = ⟨θ*, φ⟩ + ε with θ* = K⁺WᵀD·target (K = WᵀDW) and ε ~ N(0, σ² + L*) *independent* of φ,
    L* = targetᵀD·target − θ*ᵀKθ* the approximation error.  In the eigenbasis K = U diag(λ) Uᵀ, SGD on the
    random-features model is therefore SGD on the linear model with spectrum λ, teacher Uᵀθ* and label noise
    √(σ² + L*), in law and at every (v, d); its test loss E(y − ⟨θ, φ⟩)² is the linear family's test_loss.

    Returns
    -------
    dict
        ``spectrum`` (d,), ``teacher`` (d,), ``noise`` (effective), ``approximation_error`` L*.
    """
    W = np.asarray(W, dtype=np.float64)
    D = np.asarray(x_eigenvalues, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    K = W.T @ (D[:, None] * W)
    lam, U = np.linalg.eigh(K)
    lam = np.clip(lam, 0.0, None)
    order = np.argsort(lam)[::-1]
    lam, U = lam[order], U[:, order]
    c = U.T @ (W.T @ (D * b))                      # = Λ θ̃*
    keep = lam > lam.max() * 1e-13
    theta = np.where(keep, c / np.where(keep, lam, 1.0), 0.0)
    approx = float(b @ (D * b) - np.sum(lam * theta ** 2))
    approx = max(approx, 0.0)
    return {"spectrum": lam, "teacher": theta, "noise": math.sqrt(noise ** 2 + approx),
            "approximation_error": approx}


def _companion_stieltjes(z, lam, gamma: float, *, tol: float = 1e-13, max_iter: int = 4000):
    """Stieltjes transform m̃(z) of the deterministic equivalent of G = XXᵀ/n (linear.md §6.1).

    Solves Silverstein's equation m̃ = −1/(z − (γ/d) Σ_j λ_j/(1 + λ_j m̃)) for every z (shape (N,), no z on
    the real axis) by the fixed-point iteration (a holomorphic self-map of the upper half plane, so it
    converges to the Stieltjes branch), finished by Newton steps; the lower half plane by conjugation.

    Returns
    -------
    ndarray (N,) complex
    """
    z = np.asarray(z, dtype=np.complex128)
    upper = z.imag >= 0
    zu = np.where(upper, z, np.conj(z))
    lam = np.asarray(lam, dtype=np.float64)
    c = gamma / lam.size                                     # (1/n) = γ/d

    def resid(m):
        t = lam[None, :] / (1.0 + lam[None, :] * m[:, None])
        s1 = c * t.sum(axis=1)
        s2 = c * (t * t).sum(axis=1)
        return 1.0 + m * (zu - s1), zu - s1 + m * s2

    m = -1.0 / zu
    for _ in range(max_iter):
        m_new = -1.0 / (zu - c * (lam[None, :] / (1.0 + lam[None, :] * m[:, None])).sum(axis=1))
        done = np.max(np.abs(m_new - m) / np.abs(m_new)) < 1e-6
        m = m_new
        if done:
            break
    for _ in range(50):
        f, df = resid(m)
        step = f / df
        m = m - step
        if np.max(np.abs(step) / np.abs(m)) < tol:
            break
    f, _ = resid(m)
    if not (np.all(np.isfinite(m)) and np.max(np.abs(f)) < 1e-9 and np.all(m.imag >= -1e-12 * np.abs(m))):
        raise RuntimeError("the Silverstein equation did not converge on the contour (linear.md §6.1); "
                           f"largest residual {np.max(np.abs(f)):.3g}")
    return np.where(upper, m, np.conj(m))


def gd_spectral_edge(lam, ratio: float) -> float:
    """Right edge x₊ of the limiting spectrum of Σ̂ = XᵀX/n for Σ = diag(lam), n/d = ratio (linear.md §6.3).

    On the real interval m ∈ (−1/λ_max, 0) the inverse of the companion Stieltjes transform,
    x(m) = −1/m + (γ/d)Σ_j λ_j/(1 + λ_j m), is convex and tends to +∞ at both ends; its minimum is x₊
    (Silverstein & Choi).  Isotropic check: x₊ = λ(1 + √γ)².
    """
    from scipy.optimize import minimize_scalar

    lam = np.asarray(lam, dtype=np.float64)
    top = float(lam.max())
    c = 1.0 / (ratio * lam.size)

    def x(u):                      # m = −u/λ_max, u ∈ (0, 1)
        m = -u / top
        return -1.0 / m + c * np.sum(lam / (1.0 + lam * m))

    res = minimize_scalar(x, bounds=(1e-12, 1.0 - 1e-12), method="bounded", options={"xatol": 1e-13})
    # convex: the bounded search can only stop near its optimum; never return less than the top eigenvalue
    # of Σ's own (a valid lower bound would not enclose the support)
    return float(max(res.fun, top))


def gd_deterministic_equivalent(lam, v0, ratio: float, lr: float, steps, *, noise: float = 0.0,
                                amplification: float = 100.0, digits: float = 20.0, max_nodes: int = 8000) -> dict:
    """Full-batch GD train and test loss for a general spectrum, proportional regime (linear.md §6.1–6.3).

    The loss is written as contour integrals of the deterministic equivalent of the resolvent of
    Σ̂ = XᵀX/n: with m̃(z) the companion Stieltjes transform (Silverstein's equation), κ = 1/m̃ and
    p_j = 1/(1 + λ_j m̃),

    * test bias   (1/2πi)²∮∮ g(z₁)g(z₂) F(z₁, z₂), F = −(κ₁P₂ − κ₂P₁)/(z₁z₂(z₁ − z₂)), P = Σ_j v_j λ_j p_j,
    * test variance (σ²/n)(1/2πi)∮ (1 − g)²/z · Σ_j λ_j p_j/z,
    * train      (1/2πi)∮ g² Σ_j v_j p_j + σ²[(1/n)(1/2πi)∮ g² Σ_j p_j/z + 1 − γ],

    g(z) = (1 − ηz)^k, on Joukowski ellipses around [0, x₊] (x₊ the right edge of the limiting spectrum of
    Σ̂, :func:`gd_spectral_edge`; trapezoidal rule, geometric convergence).  Each step count gets the
    widest ellipse on which |g|² grows by at most ``amplification`` (so at most log10(amplification) digits
    cancel); nodes ≈ ``digits``·ln10/ln ρ.

    Parameters
    ----------
    lam : array_like (d,)
        Eigenvalues of Σ (≥ 0, not all 0).
    v0 : array_like (d,)
        E(w₀ − w*)_k² per mode (the deterministic equivalent is diagonal in Σ's eigenbasis, so only these
        enter).
    ratio : float
        n/d > 0 (γ = d/n = 1/ratio).
    lr : float
        η (constant); time t = η·k.
    steps : array_like of int (n_save,)
        Step counts k ≥ 0.
    noise : float
        σ.

    Accuracy: ~1e-8 relative, ~1e-10 absolute (relative to the initial loss) against the Marchenko–Pastur
    integrals for isotropic Σ, up to k = 20000 (tests/unit/test_linear.py).

    Returns
    -------
    dict with ``test_loss`` and ``train_loss`` (n_save,), ``nodes`` (contour nodes used per save, for
    diagnostics).
    """
    lam = np.asarray(lam, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0 or np.any(lam < 0) or not np.any(lam > 0):
        raise ValueError("lam is invalid: must be a non-empty 1-D array of eigenvalues ≥ 0, not all 0")
    if v0.shape != lam.shape:
        raise ValueError(f"v0 of shape {v0.shape} is invalid: must have the shape of lam, {lam.shape}")
    if not ratio > 0:
        raise ValueError(f"ratio={ratio!r} is invalid: must be > 0")
    if not lr > 0:
        raise ValueError(f"lr={lr!r} is invalid: must be > 0")
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or np.any(steps < 0):
        raise ValueError("steps is invalid: must be a 1-D array of step counts ≥ 0")
    gamma = 1.0 / ratio
    c = gamma / lam.size
    edge = gd_spectral_edge(lam, ratio)
    if lr * edge >= 2.0:
        raise ValueError(f"lr={lr!r} is invalid: GD diverges, must be < 2/x₊ = {2.0 / edge:.6g} (x₊ = {edge:.6g}, "
                         f"the top of the limiting spectrum of Σ̂, linear.md §6.3)")
    half = 0.5 * edge * (1.0 + 1e-9)                                 # support ⊂ [0, 2·half]

    def ellipse(rho, N):
        th = 2.0 * math.pi * (np.arange(N) + 0.5) / N            # no node on the real axis
        w = rho * np.exp(1j * th)
        z = half + 0.5 * half * (w + 1.0 / w)
        wt = 0.5 * half * (w - 1.0 / w) / N                      # (1/2πi) dz/dθ · 2π/N
        return z, wt

    def log_growth(rho, k):
        z, _ = ellipse(rho, 256)
        return 2.0 * k * float(np.max(np.log(np.abs(1.0 - lr * z))))

    # the ladder of ellipses, widest first; each k uses the widest one with |g|² ≤ amplification
    rhos = 1.0 + 0.5 * 2.0 ** (-0.5 * np.arange(40))
    level = np.empty(steps.size, dtype=np.int64)
    for i, k in enumerate(steps):
        ok = [j for j, r in enumerate(rhos) if log_growth(r, int(k)) <= math.log(amplification)]
        if not ok:
            raise ValueError(f"steps={int(k)} is invalid for the contour evaluation: the GD filter (1 − ηx)^k "
                             f"cannot be integrated to {digits:g} digits within {max_nodes} nodes at lr={lr:g}")
        level[i] = ok[0]
    test = np.empty(steps.size)
    train = np.empty(steps.size)
    nodes = np.empty(steps.size, dtype=np.int64)
    for lev in np.unique(level):
        rho = float(rhos[lev])
        N = int(math.ceil(digits * math.log(10.0) / math.log(rho)))
        N += N % 2
        if N > max_nodes:
            raise ValueError(f"steps={int(steps[level == lev].max())} is invalid for the contour evaluation: it "
                             f"needs {N} > max_nodes={max_nodes} nodes (lr={lr:g}); pass a larger max_nodes")
        z, wt = ellipse(rho, N)
        m = _companion_stieltjes(z, lam, gamma)
        p = 1.0 / (1.0 + lam[None, :] * m[:, None])              # (N, d)
        kappa = 1.0 / m
        P = p @ (v0 * lam)
        Q = p @ v0
        T0 = c * p.sum(axis=1)
        T1 = c * (p @ lam)
        # F(z_a, z_b); its diagonal is the limit −(κ'P − κP')/z², κ' = −1/(1 − D), D = (1/n)Σ λ²p²/κ²
        D = c * ((lam[None, :] * p) ** 2).sum(axis=1) / kappa ** 2
        dk = -1.0 / (1.0 - D)
        dP = ((p * p) @ (v0 * lam * lam)) * dk / kappa ** 2
        za, zb = z[:, None], z[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            F = -(kappa[:, None] * P[None, :] - kappa[None, :] * P[:, None]) / (za * zb * (za - zb))
        F[np.diag_indices(N)] = -(dk * P - kappa * dP) / z ** 2
        sel = np.flatnonzero(level == lev)
        k = steps[sel].astype(np.float64)[:, None]
        logb = np.log1p(-lr * z)[None, :]
        g = np.exp(k * logb)                                     # (n_sel, N)
        one_minus_g = -np.expm1(k * logb)
        gw = g * wt[None, :]
        bias = np.einsum("sa,ab,sb->s", gw, F, gw)
        var = noise ** 2 * ((one_minus_g ** 2 / z[None, :]) * wt[None, :]) @ (T1 / z)
        tr_bias = (g * g * wt[None, :]) @ Q
        tr_noise = noise ** 2 * (((g * g * wt[None, :]) @ (T0 / z)) + 1.0 - gamma)
        test[sel] = noise ** 2 + bias.real + var.real
        # the contour sums are accurate to ~1e-10 of the initial loss in absolute terms (cancellation of
        # up to `amplification`); a train loss interpolated to 0 (n < d) may come out as −1e-11: clip at 0
        train[sel] = np.maximum(tr_bias.real + tr_noise.real, 0.0)
        nodes[sel] = N
    return {"test_loss": test, "train_loss": train, "nodes": nodes}
