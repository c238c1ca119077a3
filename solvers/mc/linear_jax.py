"""JAX Monte-Carlo backend of the linear family (docs/theory/linear.md §1), for GPUs.

Same dynamics as the numpy reference (:mod:`hidyn.solvers.mc.linear_numpy`): online SGD with the batch's
effect drawn exactly in law from 2B + d normals per step, full-batch GD and multi-pass SGD on a fixed set;
Σ never formed.  Design as in :mod:`hidyn.solvers.mc.jax_backend`: seeds are a ``vmap`` axis with keys
from :func:`~hidyn.solvers.mc.jax_backend.seed_keys`; the random numbers of step t come from
``fold_in(seed_key, t)`` (t the global step), so trajectories do not depend on the driver's chunking; the
training set from ``fold_in(seed_key, 2³¹ − 1)``.  The teacher and initial weights are drawn by the numpy
reference's per-seed Generators, so both backends start from the same w*, w₀; later randomness differs, and
agreement with numpy is in distribution (tested against the exact recursion).  Float64 inside a scoped
``jax.enable_x64``; the per-chunk learning rates are a traced array padded to a power of two (a handful of
compilations per run, whatever the schedule).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hidyn.models.linear import LinearSpec, eigenvalues, lr_values
from hidyn.solvers.mc.jax_backend import _dtype, _scope, seed_keys
from hidyn.solvers.mc.linear_numpy import draw_teacher_and_init

__all__ = ["LinearJaxBackend"]

_DATA_STREAM = 2 ** 31 - 1


@functools.lru_cache(maxsize=32)
def _build(algorithm: str, batch: int, d: int, n_rows: int, dtype_name: str):
    dtype = jnp.dtype(dtype_name)

    def one_seed(w, w_star, key, X, y, lrs, t0, n, sqrt_lam, noise):
        def online(t, w):
            draws = jax.random.normal(jax.random.fold_in(key, t), (2 * batch + d,), dtype)
            u = (w - w_star) * sqrt_lam
            norm = jnp.sqrt(jnp.dot(u, u))
            a, xi, z = draws[:batch], draws[batch:2 * batch], draws[2 * batch:]
            r = norm * a - noise * xi
            rnorm = jnp.sqrt(jnp.dot(r, r))
            uh = u / jnp.where(norm > 0, norm, 1.0)
            direction = uh * (jnp.dot(r, a) - rnorm * jnp.dot(z, uh)) + rnorm * z
            return w - (lrs[t - t0] / batch) * sqrt_lam * direction

        def gd(t, w):
            r = X @ w - y
            return w - lrs[t - t0] * (X.T @ r) / n_rows

        def multipass(t, w):
            idx = jax.random.randint(jax.random.fold_in(key, t), (batch,), 0, n_rows)
            Xb, yb = X[idx], y[idx]
            return w - (lrs[t - t0] / batch) * (Xb.T @ (Xb @ w - yb))

        body = {"sgd": online, "gd": gd, "multipass_sgd": multipass}[algorithm]
        return lax.fori_loop(t0, t0 + n, body, w)

    in_axes = (0, 0, 0, 0, 0, None, None, None, None, None)
    return jax.jit(jax.vmap(one_seed, in_axes=in_axes))


class LinearJaxBackend:
    """Seeds-vmapped JAX simulator of :class:`~hidyn.models.LinearSpec` (module docstring)."""

    name = "jax"

    def __init__(self, spec: LinearSpec, precision: str = "float64"):
        self.spec = spec
        self.precision = precision
        self.dtype = _dtype(precision)
        self.time_per_step = spec.time_per_step
        self.lam = eigenvalues(spec)
        self.variables = {"test_loss": (), "samples_seen": ()}
        if spec.algorithm != "sgd":
            self.variables["train_loss"] = ()
        if spec.per_mode:
            self.variables["mode_error"] = ("mode",)

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        per_seed = 8 * s.d * 8 + (s.n * s.d * 8 + 4 * s.n * 8 if s.n is not None else 0)
        return n_seeds * per_seed

    def init(self, seed_sequences):
        s = self.spec
        rngs = [np.random.Generator(np.random.PCG64(ss)) for ss in seed_sequences]
        pairs = [draw_teacher_and_init(s, r) for r in rngs]
        with _scope(self.precision):
            keys = seed_keys(seed_sequences)
            state = {"w_star": jnp.asarray(np.stack([p[0] for p in pairs]), self.dtype),
                     "w": jnp.asarray(np.stack([p[1] for p in pairs]), self.dtype), "keys": keys, "k": 0,
                     "sqrt_lam": jnp.asarray(np.sqrt(self.lam), self.dtype)}
            if s.n is not None:
                def data(key, w_star):
                    k1, k2 = jax.random.split(jax.random.fold_in(key, _DATA_STREAM))
                    X = jax.random.normal(k1, (s.n, s.d), self.dtype) * state["sqrt_lam"]
                    return X, X @ w_star + s.noise * jax.random.normal(k2, (s.n,), self.dtype)

                state["X"], state["y"] = jax.vmap(data)(keys, state["w_star"])
            else:
                state["X"] = jnp.zeros((len(rngs), 1, 1), self.dtype)
                state["y"] = jnp.zeros((len(rngs), 1), self.dtype)
        return state

    def advance(self, state, n):
        s = self.spec
        n = int(n)
        k = state["k"]
        lrs = lr_values(s, k + n)[k:]
        padded = np.zeros(1 << max(0, (n - 1).bit_length()))
        padded[:n] = lrs
        fn = _build(s.algorithm, s.batch_size, s.d, s.n or 0, str(np.dtype(self.precision)))
        with _scope(self.precision):
            state["w"] = fn(state["w"], state["w_star"], state["keys"], state["X"], state["y"],
                            jnp.asarray(padded, self.dtype), jnp.int32(k), jnp.int32(n), state["sqrt_lam"],
                            jnp.asarray(s.noise, self.dtype))
        state["k"] = k + n
        return state

    def observe(self, state):
        s = self.spec
        with _scope(self.precision):
            e = np.asarray(state["w"] - state["w_star"], dtype=np.float64)
            if s.algorithm != "sgd":
                r = np.asarray(jnp.einsum("snd,sd->sn", state["X"], state["w"]) - state["y"], dtype=np.float64)
        modes = e * e
        per_step = s.batch_size if s.algorithm != "gd" else s.n
        out = {"test_loss": modes @ self.lam + s.noise ** 2,
               "samples_seen": np.full(e.shape[0], float(state["k"] * per_step))}
        if s.algorithm != "sgd":
            out["train_loss"] = np.mean(r ** 2, axis=-1)
        if s.per_mode:
            out["mode_error"] = modes
        return out

    def attrs(self, state):
        return {"online_draw": "exact in law, 2B + d normals per step (jax.random)"
                if self.spec.algorithm == "sgd" else ""}
