"""Reference numpy Monte-Carlo of low-rank matrix sensing (matrix_sensing.md §1, §6).

Vectorised over seeds: the factors of all seeds are one array (S, n, k) (asymmetric: F and G).

* population (``ratio=None``): GD / GF on ¼‖XXᵀ − M*‖²_F with the exact gradient (P − M*)X; gradient
  flow is integrated by ``solve_ivp`` (DOP853, rtol 1e-10) on X itself — an integrator independent of the closed
  form it is validated against; online SGD draws B fresh Gaussian measurements per step.
* finite m = round(ratio·n²): the measurement operator is applied as A·vec(P) and Aᵀr with A the
  (m, n²) matrix of one seed.  A is stored when all seeds' copies fit in :data:`MAX_STORED_BYTES`;
  otherwise it is regenerated every step in chunks of :data:`CHUNK_ROWS` rows, chunk c from its own
  stream ``measurement_stream(ss, c)`` — the same numbers either way, so storage is an optimisation,
  not a change of law.  Minibatch SGD needs the stored A.
"""
from __future__ import annotations

import math

import numpy as np

from hidyn.models.matrix_sensing import (
    MatrixSensingSpec,
    draw_init,
    ground_truth_basis,
    measurement_stream,
    step_stream,
)

__all__ = ["MatrixSensingNumpyBackend", "MAX_STORED_BYTES", "CHUNK_ROWS", "measurement_chunk"]

#: store the measurement matrices of all seeds when they take at most this many bytes
MAX_STORED_BYTES = 1 << 30
#: rows (measurements) per generated chunk
CHUNK_ROWS = 512


def measurement_chunk(spec: MatrixSensingSpec, ss, c: int, Mvec: np.ndarray):
    """Chunk c of one seed's measurements: A (rows, n²) with iid N(0, 1) entries and y = A·vec(M*) + σξ."""
    m, n2 = spec.m, spec.d ** 2
    rows = min(CHUNK_ROWS, m - c * CHUNK_ROWS)
    g = measurement_stream(ss, c)
    A = g.standard_normal((rows, n2))
    xi = g.standard_normal(rows)
    return A, A @ Mvec + spec.noise * xi


class MatrixSensingNumpyBackend:
    """Seeds-vectorised numpy simulator of GF, GD and SGD on matrix sensing."""

    name = "numpy"

    def __init__(self, spec: MatrixSensingSpec, precision: str = "float64"):
        if precision != "float64":
            raise NotImplementedError(f"precision={precision!r}: the numpy matrix-sensing backend runs in float64 "
                                      f"only (the plateaus at small init_scale need the range); use "
                                      f"backend='jax' for float32")
        self.spec = spec
        self.dtype = np.dtype(precision)
        self.variables = {"train_loss": (), "test_loss": (), "eigenvalues": ("rank_index",),
                          "alignment": ("rank_index",)}
        self.time_per_step = None if spec.algorithm == "gf" else spec.lr
        self.M = spec.ground_truth_matrix()
        lam, U, _ = ground_truth_basis(spec)
        self.U_signal = U[:, :spec.rank]
        self.asym = spec.parametrization == "asymmetric"
        if spec.algorithm == "sgd":
            _ = spec.batch   # raises a ValueError for online SGD without batch_size

    # --- sizes ------------------------------------------------------------------------------------------
    def _stored_bytes(self, n_seeds: int) -> int:
        s = self.spec
        return 0 if s.ratio is None else n_seeds * s.m * (s.d ** 2 + 1) * 8

    def store(self, n_seeds: int) -> bool:
        return self.spec.ratio is not None and self._stored_bytes(n_seeds) <= MAX_STORED_BYTES

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        state = n_seeds * 8 * (4 * s.d * s.k + 3 * s.d ** 2)
        if s.ratio is None:
            return state + (n_seeds * s.batch * s.d ** 2 * 8 if s.algorithm == "sgd" else 0)
        return state + (self._stored_bytes(n_seeds) if self.store(n_seeds) else n_seeds * CHUNK_ROWS * s.d ** 2 * 8)

    # --- contract ---------------------------------------------------------------------------------------
    def init(self, seed_sequences):
        s = self.spec
        S = len(seed_sequences)
        if s.algorithm == "sgd" and s.ratio is not None and not self.store(S):
            raise MemoryError(f"minibatch SGD needs the {s.m} measurement matrices of every seed in memory "
                              f"({self._stored_bytes(S) / 2**30:.2f} GiB > MAX_STORED_BYTES = "
                              f"{MAX_STORED_BYTES / 2**30:.2f} GiB); use fewer seeds, a smaller ratio or d, or GD")
        X0 = np.stack([draw_init(s, ss) for ss in seed_sequences])          # (S, n, k) or (S, 2, n, k)
        state = {"ss": list(seed_sequences), "rngs": [step_stream(ss) for ss in seed_sequences], "steps": 0}
        if self.asym:
            state["F"], state["G"] = X0[:, 0].copy(), X0[:, 1].copy()
        else:
            state["X"] = X0
        if s.ratio is not None:
            self.n_chunks = math.ceil(s.m / CHUNK_ROWS)
            self.Mvec = self.M.ravel()
            if self.store(S):
                As, ys = [], []
                for ss in seed_sequences:
                    parts = [measurement_chunk(s, ss, c, self.Mvec) for c in range(self.n_chunks)]
                    As.append(np.concatenate([p[0] for p in parts]))
                    ys.append(np.concatenate([p[1] for p in parts]))
                state["A"], state["y"] = np.stack(As), np.stack(ys)
        return state

    def _P(self, state):
        if self.asym:
            return state["F"] @ np.swapaxes(state["G"], -1, -2)
        return state["X"] @ np.swapaxes(state["X"], -1, -2)

    def _residual_grad(self, state, P):
        """H = (1/m)Σ r_i A_i (S, n, n) and the training loss (1/m)Σ r_i² (S,) over all m measurements."""
        s = self.spec
        S, n = P.shape[0], s.d
        Pv = P.reshape(S, n * n)
        if "A" in state:
            # batched BLAS matrix-vector products (einsum would not use BLAS here)
            r = (state["A"] @ Pv[:, :, None])[:, :, 0] - state["y"]
            H = (r[:, None, :] @ state["A"])[:, 0]
            return H.reshape(S, n, n) / s.m, np.mean(r * r, axis=1)
        H = np.zeros((S, n * n))
        sq = np.zeros(S)
        for i, ss in enumerate(state["ss"]):
            for c in range(self.n_chunks):
                A, y = measurement_chunk(s, ss, c, self.Mvec)
                r = A @ Pv[i] - y
                H[i] += r @ A
                sq[i] += r @ r
        return H.reshape(S, n, n) / s.m, sq / s.m

    def _online_grad(self, state, P):
        """H from B fresh measurements per seed (online SGD, ratio=None)."""
        s = self.spec
        S, n, B = P.shape[0], s.d, s.batch
        Pv = P.reshape(S, n * n)
        H = np.empty((S, n * n))
        Mv = self.M.ravel()
        for i, g in enumerate(state["rngs"]):
            A = g.standard_normal((B, n * n))
            r = A @ (Pv[i] - Mv) - s.noise * g.standard_normal(B)
            H[i] = r @ A / B
        return H.reshape(S, n, n)

    def _minibatch_grad(self, state, P):
        s = self.spec
        S, n, B = P.shape[0], s.d, s.batch
        Pv = P.reshape(S, n * n)
        H = np.empty((S, n * n))
        for i, g in enumerate(state["rngs"]):
            idx = g.choice(s.m, size=B, replace=False)
            A = state["A"][i, idx]
            r = A @ Pv[i] - state["y"][i, idx]
            H[i] = r @ A / B
        return H.reshape(S, n, n)

    def _H(self, state, P):
        """Matrix H with gradient (symmetric) ½(H + Hᵀ)X, (asymmetric) ∇_F = H G, ∇_G = Hᵀ F (§1)."""
        s = self.spec
        if s.ratio is None:
            if s.algorithm == "sgd":
                return self._online_grad(state, P)
            return P - self.M
        if s.algorithm == "sgd":
            return self._minibatch_grad(state, P)
        return self._residual_grad(state, P)[0]

    def _step(self, state, eta):
        P = self._P(state)
        H = self._H(state, P)
        if self.asym:
            F, G = state["F"], state["G"]
            state["F"], state["G"] = F - eta * (H @ G), G - eta * (np.swapaxes(H, -1, -2) @ F)
        else:
            X = state["X"]
            state["X"] = X - eta * (0.5 * (H + np.swapaxes(H, -1, -2)) @ X)

    def _flow(self, state, duration):
        """Gradient flow over ``duration`` by DOP853 on the factors (one system for all seeds)."""
        from scipy.integrate import solve_ivp

        keys = ("F", "G") if self.asym else ("X",)
        shapes = [state[k].shape for k in keys]
        sizes = [state[k].size for k in keys]
        z0 = np.concatenate([state[k].ravel() for k in keys])

        def rhs(_, z):
            parts, o = {}, 0
            for key, shp, size in zip(keys, shapes, sizes):
                parts[key] = z[o:o + size].reshape(shp)
                o += size
            sub = dict(state, **parts)
            P = self._P(sub)
            H = self._H(sub, P)
            if self.asym:
                return np.concatenate([-(H @ parts["G"]).ravel(), -(np.swapaxes(H, -1, -2) @ parts["F"]).ravel()])
            return -(0.5 * (H + np.swapaxes(H, -1, -2)) @ parts["X"]).ravel()

        scale = max(float(np.abs(z0).max()), 1e-300)
        sol = solve_ivp(rhs, (0.0, float(duration)), z0, method="DOP853", rtol=1e-10, atol=1e-12 * scale)
        if sol.status != 0:
            raise RuntimeError(f"gradient-flow integration failed: {sol.message}")
        z, o = sol.y[:, -1], 0
        for key, shp, size in zip(keys, shapes, sizes):
            state[key] = z[o:o + size].reshape(shp)
            o += size

    def advance(self, state, n):
        if self.time_per_step is None:
            self._flow(state, n)
            return state
        for _ in range(int(n)):
            self._step(state, self.spec.lr)
        state["steps"] += int(n)
        return state

    def observe(self, state):
        s = self.spec
        P = self._P(state)
        D = P - self.M
        test = np.sum(D * D, axis=(1, 2))
        if s.ratio is None:
            train = test + s.noise ** 2
        else:
            train = self._residual_grad(state, P)[1]
        width = min(s.d, s.k)
        if self.asym:
            Uv, sv, _ = np.linalg.svd(P)
            ev, vecs = sv[:, :width], Uv[:, :, :width]
        else:
            lam, V = np.linalg.eigh(P)
            ev, vecs = lam[:, ::-1][:, :width], V[:, :, ::-1][:, :, :width]
        align = np.sum((np.swapaxes(self.U_signal, 0, 1) @ vecs) ** 2, axis=1)
        return {"train_loss": train, "test_loss": test, "eigenvalues": ev, "alignment": align}

    def attrs(self, state):
        s = self.spec
        out = {"test_loss_definition": "|P - M*|_F^2 (no 1/4, no noise)",
               "train_loss_definition": ("(1/m) sum_i (<A_i, P> - y_i)^2 (no 1/4, noise included)"
                                         if s.ratio is not None
                                         else "|P - M*|_F^2 + noise^2 (population, no 1/4)")}
        if s.ratio is not None:
            out["n_measurements"] = int(s.m)
            out["measurements_stored"] = int("A" in state)
        return out
