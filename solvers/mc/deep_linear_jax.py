"""JAX Monte-Carlo of a finite-width deep linear network: the GPU path (deep_linear.md §6).

The same algorithm as :mod:`hidyn.solvers.mc.deep_linear_numpy` — S seeds × R learning rates in one
batch, shared initial matrices W_ℓ(0) (S, n, n), the accumulated rank-one updates as factors
(S, R, n, cap) — written as one jitted step:

* the step is compiled once per (shapes, capacity, algorithm, dtype); the learning rates, data and
  step index are traced arguments, so a new learning-rate grid reuses the compiled code;
* factor columns are written with ``lax.dynamic_update_slice`` at the traced step index; columns past
  the current rank are zero and contribute nothing, so the capacity only needs to grow (doubling, a new
  compilation per size) — and at rank n/2 the update is stored densely, as in the numpy reference;
* float64 inside a scoped ``jax.enable_x64(True)`` (the global flag is never changed), or float32 with
  ``precision="float32"`` for width sweeps on a GPU;
* the initial weights are drawn on the host by the numpy reference's :func:`draw_init` (one matrix at a
  time, cast to the run's precision and moved to the device), so both backends start from the same
  weights and agree to rounding; SGD minibatches come from the same per-seed numpy streams.

``observe`` transfers β (S, R, d) and small Gram matrices only; the spectral norms of the weight
changes are evaluated on the host from them.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from hidyn.models.deep_linear import DeepLinearSpec
from hidyn.solvers.mc.deep_linear_numpy import DeepLinearGridBackend, batch_seed_sequence, draw_init

__all__ = ["DeepLinearJaxBackend"]


def _scope(precision: str):
    import jax

    return jax.enable_x64(precision == "float64")


def _top_eig(M):
    finite = np.all(np.isfinite(M), axis=(-1, -2))
    out = np.full(M.shape[:-2], np.nan)
    if finite.any():
        out[finite] = np.clip(np.linalg.eigvalsh(M[finite])[..., -1], 0.0, None)
    return out


def _lowrank_norm_from_grams(GP, GQ):
    """‖P Qᵀ‖₂ from GP = PᵀP, GQ = QᵀQ: λ_max(GQ^{1/2} GP GQ^{1/2})^{1/2}."""
    finite = np.all(np.isfinite(GP), axis=(-1, -2)) & np.all(np.isfinite(GQ), axis=(-1, -2))
    out = np.full(GP.shape[:-2], np.nan)
    if finite.any():
        lam, U = np.linalg.eigh(GQ[finite])
        root = (U * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]) @ np.swapaxes(U, -1, -2)
        out[finite] = np.sqrt(_top_eig(root @ GP[finite] @ root))
    return out


@functools.cache
def _step_fn(depth: int, dense: bool, sgd: bool):
    """The jitted GD/SGD step (deep_linear.md eq. 3.2), cached per structure."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def apply(W0h, Pk, Qk, D, x):                  # W_ℓ x, x (S, R, n)
        y = jnp.swapaxes(W0h @ jnp.swapaxes(x, 1, 2), 1, 2)
        if dense:
            return y + jnp.einsum("srij,srj->sri", D, x)
        return y + jnp.einsum("srnk,srk->srn", Pk, jnp.einsum("srnk,srn->srk", Qk, x))

    def apply_t(W0h, Pk, Qk, D, x):                # W_ℓᵀ x
        y = x @ W0h
        if dense:
            return y + jnp.einsum("srij,sri->srj", D, x)
        return y + jnp.einsum("srnk,srk->srn", Qk, jnp.einsum("srnk,srn->srk", Pk, x))

    def backward(state, hidden0):
        g = state["v"]
        gs = [g]
        for ell in range(depth, 0, -1):
            i = ell - 1
            g = apply_t(hidden0[i], state["P"][i], state["Q"][i], state["D"][i], g)
            gs.append(g)
        gs = gs[::-1]                                # gs[ℓ] = g_ℓ
        beta = jnp.einsum("srn,srnd->srd", gs[0], state["W0"])
        return gs, beta

    def step(state, hidden0, k, eta, S_hat, c_hat, Xb, yb):
        gs, beta = backward(state, hidden0)
        if sgd:
            resid = jnp.einsum("srd,sbd->srb", beta, Xb) - yb[:, None, :]
            e = jnp.einsum("srb,sbd->srd", resid, Xb) / Xb.shape[1]
        else:
            e = beta @ S_hat - c_hat
        hs = [e, jnp.einsum("srnd,srd->srn", state["W0"], e)]
        for ell in range(1, depth + 1):
            i = ell - 1
            hs.append(apply(hidden0[i], state["P"][i], state["Q"][i], state["D"][i], hs[-1]))
        new = dict(state)
        new["W0"] = state["W0"] - eta[None, :, 0, None, None] * gs[0][..., :, None] * e[..., None, :]
        P, Q, D = list(state["P"]), list(state["Q"]), list(state["D"])
        for ell in range(1, depth + 1):
            i = ell - 1
            p = -eta[None, :, ell, None] * gs[ell]
            q = hs[ell]
            if dense:
                D[i] = D[i] + p[..., :, None] * q[..., None, :]
            else:
                P[i] = lax.dynamic_update_slice_in_dim(P[i], p[..., None], k, axis=3)
                Q[i] = lax.dynamic_update_slice_in_dim(Q[i], q[..., None], k, axis=3)
        new["P"], new["Q"], new["D"] = tuple(P), tuple(Q), tuple(D)
        new["v"] = state["v"] - eta[None, :, depth + 1, None] * hs[depth + 1]
        return new

    def observe(state, hidden0, W0_init, v_init):
        _, beta = backward(state, hidden0)
        dW0 = state["W0"] - W0_init[:, None]
        gram0 = jnp.einsum("srni,srnj->srij", dW0, dW0)
        if dense:
            grams = tuple(jnp.einsum("srni,srnj->srij", D, D) for D in state["D"])
        else:
            grams = tuple((jnp.einsum("srnk,srnl->srkl", P, P), jnp.einsum("srnk,srnl->srkl", Q, Q))
                          for P, Q in zip(state["P"], state["Q"]))
        dv = jnp.sqrt(jnp.sum((state["v"] - v_init[:, None]) ** 2, axis=-1))
        return beta, gram0, grams, dv

    return jax.jit(step), jax.jit(observe)


class DeepLinearJaxBackend(DeepLinearGridBackend):
    """Seeds × learning-rates vectorised GD / minibatch SGD in JAX (CPU or GPU); see the module docstring.

    Observables and dims as :class:`~hidyn.solvers.mc.deep_linear_numpy.DeepLinearNumpyBackend`.
    """

    name = "jax"

    def __init__(self, spec: DeepLinearSpec, precision: str = "float64"):
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision={precision!r} is invalid: must be 'float64' or 'float32'")
        self._setup_grid(spec)
        self.precision = precision
        self.np_dtype = np.dtype(precision)

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        n, d, L, R = s.width, s.d_in, s.depth, s.lrs.size
        cap = min(64, max(1, n // 2))
        per_seed = L * n * n + n * d + n + R * (2 * n * d + 2 * n + 2 * L * n * cap)
        return int(self.np_dtype.itemsize * n_seeds * per_seed)

    def init(self, seed_sequences):
        import jax.numpy as jnp

        s = self.spec
        S, R, n = len(seed_sequences), s.lrs.size, s.width
        with _scope(self.precision):
            W0, v0, hidden = [], [], [[] for _ in range(s.depth)]
            for ss in seed_sequences:
                w0, hid, v = draw_init(ss, s)
                W0.append(w0.astype(self.np_dtype))
                v0.append(v.astype(self.np_dtype))
                for i, W in enumerate(hid):
                    hidden[i].append(jnp.asarray(W, dtype=self.np_dtype))   # one matrix on the host at a time
            W0 = jnp.asarray(np.stack(W0))
            v0 = jnp.asarray(np.stack(v0))
            cap = min(16, max(1, n // 2))
            zeros = jnp.zeros((S, R, n, cap), dtype=self.np_dtype)
            state = {"W0": jnp.repeat(W0[:, None], R, axis=1), "v": jnp.repeat(v0[:, None], R, axis=1),
                     "P": tuple(zeros for _ in range(s.depth)), "Q": tuple(zeros for _ in range(s.depth)),
                     "D": tuple(None for _ in range(s.depth))}
            hidden0 = tuple(jnp.stack(h) for h in hidden)
            return {"dev": state, "hidden0": hidden0, "W0_init": W0, "v_init": v0, "k": 0, "dense": False,
                    "eta": jnp.asarray(s.layer_lrs(), dtype=self.np_dtype),
                    "S_hat": jnp.asarray(self.S_hat, dtype=self.np_dtype),
                    "c_hat": jnp.asarray(self.c_hat, dtype=self.np_dtype),
                    "rngs": [np.random.Generator(np.random.PCG64(batch_seed_sequence(ss)))
                             for ss in seed_sequences]}

    def _grow(self, st):
        import jax.numpy as jnp

        s = self.spec
        n = s.width
        k = st["k"]
        dev = st["dev"]
        if not s.depth or st["dense"]:
            return
        if k + 1 > n // 2:
            dev["D"] = tuple(jnp.einsum("srnk,srmk->srnm", P[..., :k], Q[..., :k])
                             for P, Q in zip(dev["P"], dev["Q"]))
            shape = dev["P"][0].shape[:3] + (1,)
            dev["P"] = dev["Q"] = tuple(jnp.zeros(shape, self.np_dtype) for _ in range(s.depth))
            st["dense"] = True
            return
        cap = dev["P"][0].shape[-1]
        if k + 1 > cap:
            pad = min(2 * cap, n) - cap
            widen = lambda a: jnp.pad(a, ((0, 0), (0, 0), (0, 0), (0, pad)))   # noqa: E731
            dev["P"] = tuple(widen(a) for a in dev["P"])
            dev["Q"] = tuple(widen(a) for a in dev["Q"])

    def advance(self, st, n_steps):
        import jax.numpy as jnp

        s = self.spec
        sgd = s.algorithm == "sgd"
        with _scope(self.precision):
            for _ in range(int(n_steps)):
                self._grow(st)
                step, _ = _step_fn(s.depth, st["dense"], sgd)
                if sgd:
                    idx = np.stack([r.choice(s.n_samples, size=s.batch_size, replace=False) for r in st["rngs"]])
                    Xb = jnp.asarray(self.Xh[idx], dtype=self.np_dtype)
                    yb = jnp.asarray(self.y[idx], dtype=self.np_dtype)
                else:
                    Xb = yb = None
                st["dev"] = step(st["dev"], st["hidden0"], st["k"], st["eta"], st["S_hat"], st["c_hat"], Xb, yb)
                st["k"] += 1
        return st

    def observe(self, st):
        s = self.spec
        with _scope(self.precision):
            _, obs = _step_fn(s.depth, st["dense"], s.algorithm == "sgd")
            beta, gram0, grams, dv = obs(st["dev"], st["hidden0"], st["W0_init"], st["v_init"])
            beta = np.asarray(beta, dtype=np.float64)
            gram0 = np.asarray(gram0, dtype=np.float64)
            dv = np.asarray(dv, dtype=np.float64)
            if st["dense"]:
                grams = [np.asarray(g, dtype=np.float64) for g in grams]
            else:
                grams = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) for a, b in grams]
        resid = beta @ self.Xh.T - self.y
        train = 0.5 * np.mean(resid ** 2, axis=-1)
        w_eff = beta / math.sqrt(s.d_in)
        test = 0.5 * np.sum((w_eff - self.w_star) ** 2, axis=-1)
        norm = np.linalg.norm(w_eff, axis=-1)
        align = np.where(norm > 0, (w_eff @ self.w_star) / np.where(norm > 0, norm, 1.0), 0.0)
        S, R = beta.shape[:2]
        wc = np.zeros((S, R, s.n_layers))
        wc[..., 0] = np.sqrt(_top_eig(gram0))
        for i, g in enumerate(grams):
            wc[..., i + 1] = np.sqrt(_top_eig(g)) if st["dense"] else _lowrank_norm_from_grams(*g)
        wc[..., -1] = dv
        wc /= self.norm0
        return {"train_loss": train, "test_loss": test, "alignment": align, "weight_change": wc}

    def attrs(self, st):
        platforms = sorted({dev.platform for dev in st["dev"]["W0"].devices()})
        return {**self._grid_attrs(), "jax_device": ",".join(platforms)}
