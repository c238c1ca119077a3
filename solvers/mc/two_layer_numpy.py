"""Reference numpy Monte-Carlo backend for teacher–student online SGD (docs/theory/teacher_student.md §1).

Vectorised over seeds: the weights of all seeds are one array (S, K, d).  Fresh inputs are drawn per
seed (each seed owns its Generator, so a seed's stream does not depend on the other seeds) in blocks of
``block`` steps, then the steps run sequentially — SGD is a sequential map.
"""
from __future__ import annotations

import math

import numpy as np

from hidyn import observables
from hidyn.models.two_layer import TwoLayerSpec
from hidyn.rng import fill_standard_normal

__all__ = ["TwoLayerNumpyBackend", "draw_weights"]


def _sqrt_psd(S):
    """Symmetric square root of a PSD matrix (eigen, robust to singular S)."""
    lam, U = np.linalg.eigh(S)
    return (U * np.sqrt(np.clip(lam, 0.0, None))) @ U.T


def draw_weights(rng: np.random.Generator, spec: TwoLayerSpec):
    """Teacher B (M, d) with B Bᵀ/d = T exactly, and student W (K, d).

    Random start: W_ki iid N(0, init_scale²).  Explicit ``init``: orthonormalise K + M Gaussian
    directions (QR), E = √d·Qᵀ so E Eᵀ/d = I, B = L_T E_B and W = R T⁺ B + L_S E_S with
    L_S L_Sᵀ = Q − R T⁺ Rᵀ (docs/theory/teacher_student.md, "Drawing the initial condition").
    """
    K, M, d = spec.K, spec.M, spec.d
    T = np.asarray(spec.T)
    if spec.init is None:
        if d >= M:
            q, _ = np.linalg.qr(rng.standard_normal((d, M)))
            B = _sqrt_psd(T) @ (math.sqrt(d) * q.T)
        else:  # fewer dimensions than teacher units: T cannot be held exactly; iid teacher
            B = rng.standard_normal((M, d))
        W = spec.init_scale * rng.standard_normal((K, d))
        return B, W
    q, _ = np.linalg.qr(rng.standard_normal((d, K + M)))
    E = math.sqrt(d) * q.T
    B = _sqrt_psd(T) @ E[:M]
    Q, R = spec.init["Q"], spec.init["R"]
    Tinv = np.linalg.pinv(T)
    schur = Q - R @ Tinv @ R.T
    W = R @ Tinv @ B + _sqrt_psd(0.5 * (schur + schur.T)) @ E[M:]
    return B, W


class TwoLayerNumpyBackend:
    """Seeds-vectorised numpy simulator of the §1 update rules."""

    name = "numpy"
    variables = {"test_loss": (), "train_loss": (), "Q": ("k", "k_"), "R": ("k", "m"), "v": ("k",)}
    block = 256

    def __init__(self, spec: TwoLayerSpec, precision: str = "float64"):
        self.spec = spec
        self.dtype = np.dtype(precision)
        self.time_per_step = 1.0 / spec.d
        self.act = spec.act

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        return n_seeds * self.dtype.itemsize * s.d * (2 * (s.K + s.M) + self.block * s.batch_size)

    def init(self, seed_sequences):
        rngs = [np.random.Generator(np.random.PCG64(ss)) for ss in seed_sequences]
        Bs, Ws = zip(*(draw_weights(r, self.spec) for r in rngs))
        S = len(rngs)
        return {"rngs": rngs, "B": np.stack(Bs).astype(self.dtype), "W": np.stack(Ws).astype(self.dtype),
                "v": np.tile(np.asarray(self.spec.v0, dtype=self.dtype), (S, 1)),
                "A": np.asarray(self.spec.A, dtype=self.dtype), "buffer": None, "used": 0}

    def _draw_block(self, state):
        """Next block of every seed: its ``block`` inputs, then (σ > 0) its ``block`` label noises.

        Inputs and noise come in blocks of fixed size from each seed's own Generator, so a seed's
        stream — and its trajectory — does not depend on the save times or on the other seeds.
        """
        s = self.spec
        state["buffer"] = np.empty((len(state["rngs"]), self.block, s.batch_size, s.d), dtype=self.dtype)
        fill_standard_normal(state["rngs"], state["buffer"], self.dtype)     # seeds draw on all cores
        if s.noise == 0:
            state["noise_buffer"] = np.zeros((len(state["rngs"]), self.block, s.batch_size), dtype=self.dtype)
        else:
            state["noise_buffer"] = np.stack([r.standard_normal((self.block, s.batch_size), dtype=self.dtype)
                                              for r in state["rngs"]]) * s.noise
        state["used"] = 0

    def _inputs(self, state, nb):
        """Next ``nb`` steps' inputs (S, nb, batch, d) and scaled label noise σζ (S, nb, batch)."""
        xs, zs = [], []
        while nb > 0:
            if state["buffer"] is None or state["used"] == state["buffer"].shape[1]:
                self._draw_block(state)
            take = min(nb, state["buffer"].shape[1] - state["used"])
            xs.append(state["buffer"][:, state["used"]:state["used"] + take])
            zs.append(state["noise_buffer"][:, state["used"]:state["used"] + take])
            state["used"] += take
            nb -= take
        if len(xs) == 1:
            return xs[0], zs[0]
        return np.concatenate(xs, axis=1), np.concatenate(zs, axis=1)

    def advance(self, state, n):
        # Every contraction is an ``np.sum`` of products (pairwise summation over d, K, M; sequential
        # over the minibatch) rather than einsum, whose SIMD kernels leave the order of additions open:
        # this pins the floating-point order, so the numba backend reproduces it bit for bit.
        s = self.spec
        g, dg = self.act.g, self.act.dg
        inv_sqrt_d = 1.0 / math.sqrt(s.d)
        W, B, v, A = state["W"], state["B"], state["v"], state["A"]
        done = 0
        while done < n:
            nb = min(n - done, self.block)
            X, zeta = self._inputs(state, nb)      # (S, nb, batch, d), (S, nb, batch)
            for j in range(nb):
                x = X[:, j]                                                           # (S, batch, d)
                nu = np.sum(x[:, :, None, :] * B[:, None], axis=-1) * inv_sqrt_d      # (S, batch, M)
                lam = np.sum(x[:, :, None, :] * W[:, None], axis=-1) * inv_sqrt_d     # (S, batch, K)
                y = np.sum(g(nu) * A, axis=-1) + zeta[:, j]
                gl = g(lam)
                delta = y - np.sum(gl * v[:, None, :], axis=-1)
                coef = (dg(lam) * delta[..., None]) * v[:, None, :]                   # (S, batch, K)
                W += (s.lr * inv_sqrt_d / s.batch_size) * np.sum(coef[..., None] * x[:, :, None, :], axis=1)
                if s.train_second_layer:
                    v += (s.lr_second / (s.d * s.batch_size)) * np.sum(gl * delta[..., None], axis=1)
            done += nb
        return state

    def observe(self, state):
        d = self.spec.d
        W, B = state["W"].astype(np.float64), state["B"].astype(np.float64)
        Q = np.einsum("skd,sld->skl", W, W) / d
        R = np.einsum("skd,smd->skm", W, B) / d
        T = np.einsum("smd,snd->smn", B, B) / d
        v = state["v"].astype(np.float64)
        test = observables.two_layer_test_loss(Q, R, T, v, np.asarray(self.spec.A), self.act)
        return {"test_loss": test, "train_loss": observables.two_layer_train_loss(test, self.spec.noise),
                "Q": Q, "R": R, "v": v}

    #: weights recorded by ``simulate(..., record_weights=True)``: name -> extra dims after (seed, time)
    weight_variables = {"W": ("k", "i")}

    def weights(self, state):
        """First-layer weights W (n_seeds, K, d), float64 (``v`` is recorded anyway)."""
        return {"W": np.asarray(state["W"], dtype=np.float64)}

    def attrs(self, state):
        return {}
