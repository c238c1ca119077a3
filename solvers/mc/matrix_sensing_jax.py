"""JAX Monte-Carlo of low-rank matrix sensing (matrix_sensing.md §1): GD and SGD, vmapped over seeds.

Same design as :mod:`hidyn.solvers.mc.jax_backend` (its :func:`seed_keys`, chunk loop and scoped
precision): every chunk runs in one jitted ``fori_loop``/``lax.scan`` with the chunk length traced, the
random numbers of step t come from ``fold_in(seed_key, t)``, float64 inside a scoped ``jax.enable_x64``.

The initial factors and (finite m) the measurement matrices are drawn exactly as by the numpy reference
(:func:`~hidyn.models.matrix_sensing.draw_init`, :func:`~hidyn.solvers.mc.matrix_sensing_numpy.measurement_chunk`)
and moved to the device, so population and finite-m **GD are the numpy backend's trajectories** up to
rounding; minibatch indices and online measurements come from ``jax.random`` (agreement in law).
Gradient flow is not offered here (``unsupported_reason``): it runs with ``backend="numpy"``.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from hidyn.models.matrix_sensing import MatrixSensingSpec, draw_init, ground_truth_basis
from hidyn.solvers.mc.jax_backend import TRACE_COUNTS, _chunk_loop, _dtype, _scope, seed_keys
from hidyn.solvers.mc.matrix_sensing_numpy import CHUNK_ROWS, MAX_STORED_BYTES, measurement_chunk

__all__ = ["MatrixSensingJaxBackend"]


@functools.cache
def _advance(mode: str, asym: bool, batch: int):
    """Jitted chunk of ``n`` steps; ``mode`` in {"population", "finite", "minibatch", "online"}."""
    TRACE_COUNTS["matrix_sensing_advance"] += 1

    def H_of(P, A, y, M, key, t, noise):
        n = P.shape[0]
        if mode == "population":
            return P - M
        Pv = P.reshape(-1)
        if mode == "finite":
            r = A @ Pv - y
            return (r @ A).reshape(n, n) / A.shape[0]
        kt = jax.random.fold_in(key, t)
        if mode == "minibatch":
            idx = jax.random.choice(kt, A.shape[0], (batch,), replace=False)
            Ab = A[idx]
            r = Ab @ Pv - y[idx]
        else:                                            # online: fresh Gaussian measurements
            ka, kn = jax.random.split(kt)
            Ab = jax.random.normal(ka, (batch, n * n), dtype=P.dtype)
            r = Ab @ (Pv - M.reshape(-1)) - noise * jax.random.normal(kn, (batch,), dtype=P.dtype)
        return (r @ Ab).reshape(n, n) / batch

    def one(F, G, A, y, M, key, t0, n, hyper):
        lr, noise = hyper

        def step(carry, t):
            F, G = carry
            if asym:
                P = F @ G.T
                H = H_of(P, A, y, M, key, t, noise)
                return F - lr * (H @ G), G - lr * (H.T @ F)
            P = F @ F.T
            H = H_of(P, A, y, M, key, t, noise)
            X = F - lr * (0.5 * (H + H.T) @ F)
            return X, X

        return _chunk_loop(step, (F, G), t0, n)

    in_axes = (0, 0, 0 if mode in ("finite", "minibatch") else None, 0 if mode in ("finite", "minibatch") else None,
               None, 0, None, None, None)
    return jax.jit(jax.vmap(one, in_axes=in_axes))


@functools.cache
def _train_loss():
    def one(P, A, y):
        r = A @ P.reshape(-1) - y
        return jnp.mean(r * r)

    return jax.jit(jax.vmap(one))


class MatrixSensingJaxBackend:
    """GD and SGD on matrix sensing in JAX (see the module docstring)."""

    name = "jax"

    def __init__(self, spec: MatrixSensingSpec, precision: str = "float64"):
        reason = self.unsupported_reason(spec)
        if reason:
            raise NotImplementedError(reason)
        self.spec = spec
        self.precision = precision
        self.dtype = _dtype(precision)
        self.time_per_step = spec.lr
        self.variables = {"train_loss": (), "test_loss": (), "eigenvalues": ("rank_index",),
                          "alignment": ("rank_index",)}
        self.asym = spec.parametrization == "asymmetric"
        self.M = spec.ground_truth_matrix()
        self.U_signal = ground_truth_basis(spec)[1][:, :spec.rank]
        if spec.ratio is None:
            self.mode = "online" if spec.algorithm == "sgd" else "population"
        else:
            self.mode = "minibatch" if spec.algorithm == "sgd" and spec.batch < spec.m else "finite"

    @classmethod
    def unsupported_reason(cls, spec) -> str | None:
        if spec.algorithm == "gf":
            return "gradient flow of matrix sensing runs with backend='numpy' (DOP853); the jax backend does GD and SGD"
        if spec.ratio is not None and spec.m * (spec.d ** 2 + 1) * 8 > MAX_STORED_BYTES:
            return (f"the jax backend keeps the m = {spec.m} measurement matrices on the device and they exceed "
                    f"{MAX_STORED_BYTES / 2**30:.1f} GiB per seed; use backend='numpy' (chunked regeneration)")
        return None

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        item = 8 if self.precision == "float64" else 4
        meas = 0 if s.ratio is None else s.m * (s.d ** 2 + 1)
        online = s.batch * s.d ** 2 if (s.ratio is None and s.algorithm == "sgd") else 0
        return n_seeds * item * (4 * s.d * s.k + 3 * s.d ** 2 + meas + online)

    def init(self, seed_sequences):
        s = self.spec
        X0 = np.stack([draw_init(s, ss) for ss in seed_sequences])
        npdt = np.dtype(self.precision)
        F0, G0 = (X0[:, 0], X0[:, 1]) if self.asym else (X0, X0)
        state = {"t": 0}
        with _scope(self.precision):
            state.update(F=jnp.asarray(F0.astype(npdt)), G=jnp.asarray(G0.astype(npdt)),
                         keys=seed_keys(seed_sequences), M=jnp.asarray(self.M.astype(npdt)))
            if s.ratio is not None:
                Mvec = self.M.ravel()
                As, ys = [], []
                for ss in seed_sequences:
                    parts = [measurement_chunk(s, ss, c, Mvec) for c in range(math.ceil(s.m / CHUNK_ROWS))]
                    As.append(np.concatenate([p[0] for p in parts]))
                    ys.append(np.concatenate([p[1] for p in parts]))
                state["A"] = jnp.asarray(np.stack(As).astype(npdt))
                state["y"] = jnp.asarray(np.stack(ys).astype(npdt))
            else:
                state["A"] = state["y"] = jnp.zeros((), dtype=self.dtype)
        return state

    def advance(self, state, n):
        s = self.spec
        fn = _advance(self.mode, self.asym, s.batch if s.algorithm == "sgd" else 0)
        with _scope(self.precision):
            hyper = (jnp.asarray(s.lr, dtype=self.dtype), jnp.asarray(s.noise, dtype=self.dtype))
            F, G = fn(state["F"], state["G"], state["A"], state["y"], state["M"], state["keys"],
                      jnp.int32(state["t"]), jnp.int32(n), hyper)
        state.update(F=F, G=G, t=state["t"] + int(n))
        return state

    def observe(self, state):
        s = self.spec
        with _scope(self.precision):
            F = np.asarray(state["F"], dtype=np.float64)
            G = np.asarray(state["G"], dtype=np.float64)
            P_dev = state["F"] @ jnp.swapaxes(state["G"], -1, -2)
            train = (None if s.ratio is None
                     else np.asarray(_train_loss()(P_dev, state["A"], state["y"]), dtype=np.float64))
        P = F @ np.swapaxes(G, -1, -2)
        D = P - self.M
        test = np.sum(D * D, axis=(1, 2))
        if train is None:
            train = test + s.noise ** 2
        width = min(s.d, s.k)
        if self.asym:
            Uv, sv, _ = np.linalg.svd(P)
            ev, vecs = sv[:, :width], Uv[:, :, :width]
        else:
            lam, V = np.linalg.eigh(0.5 * (P + np.swapaxes(P, -1, -2)))
            ev, vecs = lam[:, ::-1][:, :width], V[:, :, ::-1][:, :, :width]
        align = np.sum((self.U_signal.T @ vecs) ** 2, axis=1)
        return {"train_loss": train, "test_loss": test, "eigenvalues": ev, "alignment": align}

    def attrs(self, state):
        out = {"jax_version": jax.__version__, "jax_device": str(jax.devices()[0].platform),
               "test_loss_definition": "|P - M*|_F^2 (no 1/4, no noise)"}
        if self.spec.ratio is not None:
            out["n_measurements"] = int(self.spec.m)
        return out
