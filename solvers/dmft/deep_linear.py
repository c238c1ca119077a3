"""μP infinite-width limit of a deep linear network trained by discrete-time GD (deep_linear.md §4).

Per layer ℓ = 0..L the single-site fields a_ℓ(t) ∈ R^{1×d} and g_ℓ(t) ∈ R obey the linear causal
recursion (4.4) driven by Gaussian sources u_ℓ(s) (covariance H_{ℓ-1}) and ξ_ℓ(s) (covariance G_{ℓ+1}).
Every field is stored as its exact coefficient vector over its layer's sources, so the responses of
(4.5) are coefficients and the kernels are quadratic forms with the source covariance: no sampling.

Source layout of a layer: time block s holds u(s) (d entries) then ξ(s) (1 entry); N = (T+1)(d+1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["solve_mup", "two_layer_recursion"]

#: a loss that grows by this factor over its initial value (or turns non-finite) has diverged;
#: the same threshold as the Monte-Carlo driver (solvers/mc/driver.py)
BLOWUP_FACTOR = 1e8


def _top_eig_product(G, E):
    """λ_max(G E) for symmetric PSD G, E (T, T): λ_max(E^{1/2} G E^{1/2})."""
    if G.shape[0] == 0:
        return 0.0
    lam, U = np.linalg.eigh(0.5 * (E + E.T))
    root = (U * np.sqrt(np.clip(lam, 0.0, None))) @ U.T
    return float(max(np.linalg.eigvalsh(root @ G @ root)[-1], 0.0))


def solve_mup(S_hat, c_hat, yy, w_star, depth: int, lr: float, steps: int, *, X_hat=None,
              return_kernels: bool = False):
    """Solve the μP limit (deep_linear.md eq. 4.3–4.5) for ``steps`` GD steps at one learning rate.

    Parameters
    ----------
    S_hat : ndarray (d, d)
        X̂ᵀX̂/P with x̂ = x/√d.
    c_hat : ndarray (d,)
        X̂ᵀy/P.
    yy : float
        yᵀy/P.
    w_star : ndarray (d,)
        Teacher in raw-input coordinates.
    depth : int ≥ 0
        Number L of hidden-to-hidden layers.
    lr : float > 0
        Base learning rate η (layer rates ηn, η, η/n: deep_linear.md §2).
    steps : int ≥ 0
        Number T of GD steps.
    X_hat : ndarray (P, d), optional
        Training inputs x̂, to return the outputs f(x_μ).
    return_kernels : bool
        Also return the two-time kernels H (L+1, T+1, T+1, d, d) and G (L+1, T+1, T+1).

    Returns
    -------
    dict with, per step t = 0..T: ``train_loss`` (T+1,), ``test_loss`` (T+1,), ``alignment`` (T+1,),
    ``end_to_end`` (T+1, d) = β(t)/√d, ``weight_change`` (T+1, L+2), ``feature_kernel`` (T+1, L+1, d, d)
    = H_ℓ(t, t), ``gradient_kernel`` (T+1, L+1) = G_ℓ(t, t), ``train_output`` (T+1, P) if ``X_hat`` is
    given, and ``diverged_at`` (−1, or the first step whose loss blew up; later values are NaN).
    """
    S_hat = np.asarray(S_hat, dtype=np.float64)
    c_hat = np.asarray(c_hat, dtype=np.float64)
    d = S_hat.shape[0]
    L = int(depth)
    T = int(steps)
    eta = float(lr)
    B = d + 1
    N = (T + 1) * B
    n_layers = L + 1                                   # layers with fields: input + hidden
    # source covariances, filled causally; layer 0's u and layer L's ξ are constant in time
    C = np.zeros((n_layers, N, N))
    for s in range(T + 1):
        for s2 in range(T + 1):
            C[0, s * B:s * B + d, s2 * B:s2 * B + d] = np.eye(d)
            C[L, s * B + d, s2 * B + d] = 1.0
    Ca = np.zeros((n_layers, T + 1, N, d))             # a_ℓ(t) = σ · Ca[ℓ, t]
    Cg = np.zeros((n_layers, T + 1, N))                # g_ℓ(t) = σ · Cg[ℓ, t]
    H = np.zeros((n_layers, T + 1, T + 1, d, d))       # H_ℓ(s, t)
    G = np.zeros((n_layers, T + 1, T + 1))             # G_ℓ(s, t)
    beta = np.zeros((T + 1, d))
    e = np.zeros((T + 1, d))
    out = {k: np.full((T + 1,), np.nan) for k in ("train_loss", "test_loss", "alignment")}
    out["end_to_end"] = np.full((T + 1, d), np.nan)
    out["weight_change"] = np.full((T + 1, L + 2), np.nan)
    out["feature_kernel"] = np.full((T + 1, n_layers, d, d), np.nan)
    out["gradient_kernel"] = np.full((T + 1, n_layers), np.nan)
    if X_hat is not None:
        out["train_output"] = np.full((T + 1, X_hat.shape[0]), np.nan)
    diverged_at = -1
    loss0 = None
    sq_d = np.sqrt(d)

    def Hprev(ell, s, t):
        return np.eye(d) if ell == 0 else H[ell - 1, s, t]

    def Gnext(ell, s, t):
        return 1.0 if ell == L else G[ell + 1, s, t]

    for t in range(T + 1):
        n = (t + 1) * B                                # sources reachable by time t
        # ---- forward: a_ℓ(t), ℓ = 0..L (eq. 4.4, left)
        for ell in range(n_layers):
            if ell > 0:                                # u_ℓ covariance: H_{ℓ-1}(s, t)
                for s in range(t + 1):
                    C[ell, s * B:s * B + d, t * B:t * B + d] = H[ell - 1, s, t]
                    C[ell, t * B:t * B + d, s * B:s * B + d] = H[ell - 1, s, t].T
            coef = np.zeros((n, d))
            coef[t * B:t * B + d] = np.eye(d)
            for s in range(t):
                # B_ℓ(t,s) = ∂a_{ℓ-1}(t)/∂ξ_{ℓ-1}(s) − η e(s)ᵀ H_{ℓ-1}(s,t)   (eq. 4.5)
                Bts = -eta * e[s] @ Hprev(ell, s, t)
                if ell > 0:
                    Bts = Bts + Ca[ell - 1, t, s * B + d]
                coef += np.outer(Cg[ell, s, :n], Bts)
            Ca[ell, t, :n] = coef
            Y = C[ell, :n, :n] @ coef
            for s in range(t + 1):
                H[ell, s, t] = Ca[ell, s, :n].T @ Y
                H[ell, t, s] = H[ell, s, t].T
        # ---- readout field g_L(t), the output map β(t) and the loss gradient e(t)
        for ell in range(L, -1, -1):
            if ell < L:                                # ξ_ℓ covariance: G_{ℓ+1}(s, t)
                for s in range(t + 1):
                    C[ell, s * B + d, t * B + d] = C[ell, t * B + d, s * B + d] = G[ell + 1, s, t]
            coef = np.zeros(n)
            coef[t * B + d] = 1.0
            for s in range(t):
                # D_ℓ(t,s) = ∂g_{ℓ+1}(t)/∂u_{ℓ+1}(s) − η e(s) G_{ℓ+1}(s,t)   (eq. 4.5)
                Dts = -eta * e[s] * Gnext(ell, s, t)
                if ell < L:
                    Dts = Dts + Cg[ell + 1, t, s * B:s * B + d]
                coef += Ca[ell, s, :n] @ Dts
            Cg[ell, t, :n] = coef
            Y = C[ell, :n, :n] @ coef
            for s in range(t + 1):
                G[ell, s, t] = G[ell, t, s] = Cg[ell, s, :n] @ Y
            if ell == L:
                beta[t] = Ca[L, t, :n].T @ Y           # β(t) = E[a_L(t)ᵀ g_L(t)]
                e[t] = S_hat @ beta[t] - c_hat
        # ---- observables at t
        b = beta[t]
        train = 0.5 * (b @ S_hat @ b - 2.0 * b @ c_hat + yy)
        if loss0 is None:
            loss0 = abs(train)
        if not np.isfinite(train) or abs(train) > BLOWUP_FACTOR * (loss0 + 1.0) \
                or not np.all(np.isfinite(beta[t])):
            diverged_at = t
            break
        w_eff = b / sq_d
        out["train_loss"][t] = train
        out["test_loss"][t] = 0.5 * float(np.sum((w_eff - w_star) ** 2))
        nb = np.linalg.norm(w_eff)
        out["alignment"][t] = float(w_eff @ w_star / nb) if nb > 0 else 0.0
        out["end_to_end"][t] = w_eff
        if X_hat is not None:
            out["train_output"][t] = X_hat @ b
        for ell in range(n_layers):
            out["feature_kernel"][t, ell] = H[ell, t, t]
            out["gradient_kernel"][t, ell] = G[ell, t, t]
        # weight changes after t steps (deep_linear.md §4, "Weight changes in the limit")
        wc = np.zeros(L + 2)
        if t > 0:
            E_in = e[:t] @ e[:t].T
            wc[0] = eta * np.sqrt(_top_eig_product(G[0, :t, :t], E_in))
            for ell in range(1, L + 1):
                E = np.einsum("si,stij,tj->st", e[:t], H[ell - 1, :t, :t], e[:t])
                wc[ell] = 0.5 * eta * np.sqrt(_top_eig_product(G[ell, :t, :t], E))
            wc[L + 1] = eta * np.sqrt(max(float(np.einsum("si,stij,tj->", e[:t], H[L, :t, :t], e[:t])), 0.0))
        out["weight_change"][t] = wc
    out["diverged_at"] = diverged_at
    if return_kernels:
        out["H"], out["G"] = H, G
    return out


def two_layer_recursion(S_hat, c_hat, lr: float, steps: int):
    """The depth-0 μP limit written independently (deep_linear.md §4, "Depth 0"): β(t), shape (T+1, d).

    a(t) = w₀P_t + v̂₀q_tᵀ, g(t) = w₀r_t + v̂₀s_t with w₀ ~ N(0, I_d), v̂₀ ~ N(0, 1):
    P_{t+1} = P_t − η r_t e_tᵀ, q_{t+1} = q_t − η s_t e_t, r_{t+1} = r_t − η P_t e_t,
    s_{t+1} = s_t − η q_tᵀ e_t, β_t = P_tᵀ r_t + q_t s_t, e_t = Σ̂β_t − ĉ.
    """
    d = S_hat.shape[0]
    P, q, r, s = np.eye(d), np.zeros(d), np.zeros(d), 1.0
    out = np.zeros((steps + 1, d))
    for t in range(steps + 1):
        beta = P.T @ r + q * s
        out[t] = beta
        e = S_hat @ beta - c_hat
        P, q, r, s = P - lr * np.outer(r, e), q - lr * s * e, r - lr * P @ e, s - lr * q @ e
    return out
