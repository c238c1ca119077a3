"""Reference numpy Monte-Carlo of a finite-width deep linear network (deep_linear.md §1–§3, §6).

One run covers S seeds × R learning rates.  Every seed draws its initial weights once; all learning
rates of the grid start from them (common random numbers: the loss-vs-η curve of one seed is smooth,
so its argmin is well defined).  A step's gradient of every layer is rank one (eq. 3.2), so a hidden
layer is stored as its shared initial matrix W_ℓ(0) (S, n, n) plus the accumulated update as two
factors (S, R, n, k) — a step costs one batched matrix product per layer through W_ℓ(0) and O(n k) for
the factors.  When k reaches n/2 the update is stored densely instead (S, R, n, n).
"""
from __future__ import annotations

import math

import numpy as np

from hidyn.models.deep_linear import DeepLinearSpec

__all__ = ["DeepLinearNumpyBackend", "weight_seed_sequence", "batch_seed_sequence"]


def weight_seed_sequence(ss: np.random.SeedSequence) -> np.random.SeedSequence:
    """Stream of a seed's initial weights (independent of the algorithm, so GD and SGD share inits)."""
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (0,))


def batch_seed_sequence(ss: np.random.SeedSequence) -> np.random.SeedSequence:
    """Stream of a seed's SGD minibatch indices."""
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (1,))


def draw_init(ss: np.random.SeedSequence, spec: DeepLinearSpec):
    """Initial effective weights of one seed (float64): W0 (n, d), [W_1..W_L] (n, n), v (n,)."""
    rng = np.random.Generator(np.random.PCG64(weight_seed_sequence(ss)))
    n, d = spec.width, spec.d_in
    std = spec.init_std()
    W0 = std[0] * rng.standard_normal((n, d))
    hidden = [std[ell] * rng.standard_normal((n, n)) for ell in range(1, spec.depth + 1)]
    v = std[-1] * rng.standard_normal(n)
    return W0, hidden, v


def _top_eigenvalue(M):
    """Largest eigenvalue of a stack of symmetric PSD matrices; NaN where a member is not finite
    (a diverged run: its weights overflowed)."""
    finite = np.all(np.isfinite(M), axis=(-1, -2))
    out = np.full(M.shape[:-2], np.nan)
    if finite.any():
        out[finite] = np.clip(np.linalg.eigvalsh(M[finite])[..., -1], 0.0, None)
    return out


def _spectral_norm_lowrank(P, Q):
    """‖P Qᵀ‖₂ for stacks P, Q (..., n, k): λ_max(R_P QᵀQ R_Pᵀ)^{1/2} with P = Q_P R_P."""
    if P.shape[-1] == 0:
        return np.zeros(P.shape[:-2])
    P = np.where(np.isfinite(P), P, np.nan)
    finite = np.all(np.isfinite(P), axis=(-1, -2))
    R = np.full(P.shape[:-2] + (P.shape[-1], P.shape[-1]), np.nan)
    if finite.any():
        R[finite] = np.linalg.qr(P[finite], mode="r")
    M = R @ np.swapaxes(Q, -1, -2) @ Q @ np.swapaxes(R, -1, -2)
    return np.sqrt(_top_eigenvalue(M))


def _spectral_norm_dense(D):
    """‖D‖₂ of a stack (..., m, k) via the smaller Gram matrix."""
    G = np.swapaxes(D, -1, -2) @ D if D.shape[-1] <= D.shape[-2] else D @ np.swapaxes(D, -1, -2)
    return np.sqrt(_top_eigenvalue(G))


class DeepLinearGridBackend:
    """What every deep-linear backend shares: the seeds × learning-rates layout (``unit_shape = (R,)``,
    dims ``lr`` and ``layer``), the fixed training set drawn from ``data_seed`` and its moments, and the
    scale of the initial weights that ``weight_change`` divides by."""

    def _setup_grid(self, spec: DeepLinearSpec) -> None:
        self.spec = spec
        self.time_per_step = 1.0
        self.variables = {"train_loss": ("lr",), "test_loss": ("lr",), "alignment": ("lr",),
                          "weight_change": ("lr", "layer")}
        self.unit_shape = (spec.lrs.size,)
        self.coords = {"lr": spec.lrs.copy(), "layer": np.arange(spec.n_layers)}
        S_hat, c_hat, _, w_star = spec.moments()
        X, y, _ = spec.dataset()
        self.Xh = X / math.sqrt(spec.d_in)                       # (P, d), x̂ = x/√d
        self.y = y
        self.S_hat, self.c_hat, self.w_star = S_hat, c_hat, w_star
        # leading n → ∞ term of ‖W_ℓ(0)‖₂ (Bai–Yin): s√n for the input (fan-in d fixed) and readout
        # (fan-out 1), 2s√n for the n × n hidden layers (deep_linear.md §1, weight_change)
        self.norm0 = spec.init_std() * math.sqrt(spec.width) * np.array([1.0] + [2.0] * spec.depth + [1.0])

    def _grid_attrs(self) -> dict:
        s = self.spec
        p, q = s.exponents
        return {"init_variance_exponent": p, "lr_exponent": q, "regime": s.regime or "custom", "lr_grid": s.lrs}


class DeepLinearNumpyBackend(DeepLinearGridBackend):
    """Seeds × learning-rates vectorised GD / minibatch SGD of f(x) = vᵀW_L⋯W_0 x/√d.

    Observables: ``train_loss`` (S, R), ``test_loss`` (S, R), ``alignment`` (S, R) and
    ``weight_change`` (S, R, L + 2) (deep_linear.md §1).  ``unit_shape = (R,)``: the driver detects and
    records divergence per (seed, learning rate), the rest of the grid runs on.
    """

    name = "numpy"

    def __init__(self, spec: DeepLinearSpec, precision: str = "float64"):
        self._setup_grid(spec)
        self.dtype = np.dtype(precision)
        self.eta = spec.layer_lrs()                              # (R, L+2)

    # ------------------------------------------------------------------ memory
    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        n, d, L, R = s.width, s.d_in, s.depth, s.lrs.size
        cap = min(64, max(1, n // 2))
        per_seed = L * n * n + n * d + n + R * (2 * n * d + 2 * n + 2 * L * n * cap + 4 * (L + 2) * n)
        return int(self.dtype.itemsize * n_seeds * per_seed)

    # ------------------------------------------------------------------ state
    def init(self, seed_sequences):
        s = self.spec
        R, n = s.lrs.size, s.width
        inits = [draw_init(ss, s) for ss in seed_sequences]
        W0 = np.stack([w[0] for w in inits]).astype(self.dtype)                          # (S, n, d)
        hidden0 = [np.stack([w[1][ell] for w in inits]).astype(self.dtype) for ell in range(s.depth)]
        v0 = np.stack([w[2] for w in inits]).astype(self.dtype)                          # (S, n)
        S = len(seed_sequences)
        cap = min(16, max(1, n // 2))
        state = {
            "W0_init": W0, "v_init": v0, "hidden_init": hidden0,
            "W0": np.repeat(W0[:, None], R, axis=1),                                     # (S, R, n, d)
            "v": np.repeat(v0[:, None], R, axis=1),                                      # (S, R, n)
            # accumulated hidden updates: factors P Qᵀ (rank k) or a dense matrix
            "P": [np.zeros((S, R, n, cap), self.dtype) for _ in range(s.depth)],
            "Q": [np.zeros((S, R, n, cap), self.dtype) for _ in range(s.depth)],
            "dense": [None] * s.depth,
            "k": 0,
            "rngs": [np.random.Generator(np.random.PCG64(batch_seed_sequence(ss))) for ss in seed_sequences],
        }
        return state

    # ------------------------------------------------------------------ products
    def _apply(self, state, ell, x):
        """W_ℓ x for hidden layer ℓ ∈ 1..L, x (S, R, n)."""
        i = ell - 1
        y = np.swapaxes(state["hidden_init"][i] @ np.swapaxes(x, 1, 2), 1, 2)
        if state["dense"][i] is not None:
            return y + (state["dense"][i] @ x[..., None])[..., 0]
        k = state["k"]
        if k:
            P, Q = state["P"][i][..., :k], state["Q"][i][..., :k]
            y = y + (P @ (x[..., None, :] @ Q)[..., 0, :, None])[..., 0]
        return y

    def _apply_t(self, state, ell, x):
        """W_ℓᵀ x for hidden layer ℓ ∈ 1..L, x (S, R, n)."""
        i = ell - 1
        y = x @ state["hidden_init"][i]          # (S, R, n) @ (S, n, n): row vectors times W(0)
        if state["dense"][i] is not None:
            return y + (x[..., None, :] @ state["dense"][i])[..., 0, :]
        k = state["k"]
        if k:
            P, Q = state["P"][i][..., :k], state["Q"][i][..., :k]
            y = y + (Q @ (x[..., None, :] @ P)[..., 0, :, None])[..., 0]
        return y

    def _backward(self, state):
        """g_ℓ = W_{ℓ+1}ᵀ⋯W_Lᵀ v for ℓ = 0..L (list) and β = W_0ᵀ g_0 (S, R, d)."""
        L = self.spec.depth
        gs = [None] * (L + 1)
        g = state["v"]
        gs[L] = g
        for ell in range(L, 0, -1):
            g = self._apply_t(state, ell, g)
            gs[ell - 1] = g
        beta = (g[..., None, :] @ state["W0"])[..., 0, :]
        return gs, beta

    def _grad_beta(self, state, beta):
        """e = ∇_β L (S, R, d): full batch (eq. 3.1) or one minibatch per seed."""
        s = self.spec
        if s.algorithm == "gd":
            return beta @ self.S_hat.astype(self.dtype) - self.c_hat.astype(self.dtype)
        idx = np.stack([r.choice(s.n_samples, size=s.batch_size, replace=False) for r in state["rngs"]])
        Xb = self.Xh[idx].astype(self.dtype)                         # (S, B, d)
        yb = self.y[idx].astype(self.dtype)                          # (S, B)
        resid = beta @ np.swapaxes(Xb, 1, 2) - yb[:, None, :]        # (S, R, B)
        return resid @ Xb / s.batch_size

    def _grow(self, state):
        """Make room for one more factor column, or switch to dense updates at rank n/2."""
        n = self.spec.width
        k = state["k"]
        if not self.spec.depth or state["dense"][0] is not None:
            return
        if k + 1 > n // 2:
            for i in range(self.spec.depth):
                P, Q = state["P"][i][..., :k], state["Q"][i][..., :k]
                state["dense"][i] = P @ np.swapaxes(Q, -1, -2)
                state["P"][i] = state["Q"][i] = None
            return
        cap = state["P"][0].shape[-1]
        if k + 1 > cap:
            new = min(2 * cap, n)
            for i in range(self.spec.depth):
                for key in ("P", "Q"):
                    old = state[key][i]
                    grown = np.zeros(old.shape[:-1] + (new,), self.dtype)
                    grown[..., :cap] = old
                    state[key][i] = grown

    def advance(self, state, n_steps):
        s = self.spec
        L = s.depth
        eta = self.eta.astype(self.dtype)                            # (R, L+2)
        for _ in range(int(n_steps)):
            gs, beta = self._backward(state)
            e = self._grad_beta(state, beta)                         # (S, R, d)
            hs = [e]                                                 # h_{-1} = e, h_ℓ = W_ℓ h_{ℓ-1}
            hs.append((state["W0"] @ e[..., None])[..., 0])
            for ell in range(1, L + 1):
                hs.append(self._apply(state, ell, hs[-1]))
            # rank-one updates of eq. (3.2), all from the weights before the step
            state["W0"] -= eta[None, :, 0, None, None] * gs[0][..., :, None] * e[..., None, :]
            self._grow(state)
            for ell in range(1, L + 1):
                i = ell - 1
                p = -eta[None, :, ell, None] * gs[ell]
                q = hs[ell]                                          # h_{ℓ-1} sits at index ℓ of hs
                if state["dense"][i] is not None:
                    state["dense"][i] += p[..., :, None] * q[..., None, :]
                else:
                    state["P"][i][..., state["k"]] = p
                    state["Q"][i][..., state["k"]] = q
            state["v"] -= eta[None, :, L + 1, None] * hs[L + 1]
            state["k"] += 1
        return state

    # ------------------------------------------------------------------ observables
    def observe(self, state):
        s = self.spec
        _, beta = self._backward(state)
        beta = beta.astype(np.float64)
        resid = beta @ self.Xh.T - self.y                            # (S, R, P)
        train = 0.5 * np.mean(resid ** 2, axis=-1)
        w_eff = beta / math.sqrt(s.d_in)
        test = 0.5 * np.sum((w_eff - self.w_star) ** 2, axis=-1)
        norm = np.linalg.norm(w_eff, axis=-1)
        align = np.where(norm > 0, (w_eff @ self.w_star) / np.where(norm > 0, norm, 1.0), 0.0)
        S, R = beta.shape[:2]
        wc = np.zeros((S, R, s.n_layers))
        wc[..., 0] = _spectral_norm_dense((state["W0"] - state["W0_init"][:, None]).astype(np.float64))
        for i in range(s.depth):
            if state["dense"][i] is not None:
                wc[..., i + 1] = _spectral_norm_dense(state["dense"][i].astype(np.float64))
            else:
                k = state["k"]
                wc[..., i + 1] = _spectral_norm_lowrank(state["P"][i][..., :k].astype(np.float64),
                                                        state["Q"][i][..., :k].astype(np.float64))
        wc[..., -1] = np.linalg.norm((state["v"] - state["v_init"][:, None]).astype(np.float64), axis=-1)
        wc /= self.norm0
        return {"train_loss": train, "test_loss": test, "alignment": align, "weight_change": wc}

    def attrs(self, state):
        return self._grid_attrs()
