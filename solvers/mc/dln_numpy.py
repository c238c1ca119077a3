"""Reference numpy Monte-Carlo backend for diagonal linear networks (docs/theory/dln.md §2).

The weights are kept as w± (uv: w± = (u ± v)/2; pm: the pm weights), with β = w+² − w−².  In these
coordinates every algorithm of §2.2 is one line:

* GD / SGD:  w± ← w±·(1 ∓ c·η·g), with c = 1 (uv: identical to u ← u − ηvg, v ← v − ηug) or 2 (pm);
* gradient flow, in mirror coordinates (§10 pitfall 1): w+ = w+(0)e^{c·s}, w− = w−(0)e^{−c·s} with
  ṡ = −g, integrated by ``solve_ivp`` — exact reparametrisation, not stiff as α → 0.

Gradients (loss L = (1/(2δ))‖y − Xβ‖²):

* full batch: g = (1/δ)Xᵀ(Xβ − y);  minibatch: g = (d/B)X_Bᵀ(X_Bβ − y_B) on B distinct random rows;
* population (``ratio=None``, GD/GF): g = β − β* exactly;
* online SGD (``ratio=None``, SGD): B fresh rows x ~ N(0, I/d) per step.  g depends on the rows only
  through X_Bᵀr, which is drawn *exactly in law* with O(B + d) normals instead of B·d: with
  e = Δβ/‖Δβ‖, a_μ = x_μ·Δβ ~ N(0, ‖Δβ‖²/d), r_μ = a_μ − σξ_μ, and the part of each row orthogonal to e
  independent of a, X_Bᵀr = e·Σ_μ r_μ a_μ/‖Δβ‖ + (‖r‖/√d)(z − (z·e)e) with z ~ N(0, I_d).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.integrate import solve_ivp

from hidyn.models.dln import DLNSpec, initial_pq
from hidyn.observables import dln_observables, dln_train_loss
from hidyn.rng import for_each_seed_range

__all__ = ["DLNNumpyBackend", "draw_teacher", "draw_designs", "draw_minibatch_rows", "minibatch_gradient",
           "online_gradient", "GF_RTOL", "GF_ATOL"]

GF_RTOL = 1e-8
GF_ATOL = 1e-10
_EXP_CLIP = 700.0  # e^{±700} is the float64 range: keeps sinh-like growth finite (pitfall 1)


def draw_teacher(rng: np.random.Generator, d: int, sparsity: float, teacher: str,
                 exact: bool = True) -> np.ndarray:
    """β* of shape (d,): round(ρd) (or Bernoulli(ρ)) nonzeros, ±1 or N(0, 1) (docs/theory/dln.md §2.1)."""
    if exact:
        k = int(round(sparsity * d))
        support = np.zeros(d, dtype=bool)
        support[rng.permutation(d)[:k]] = True
    else:
        support = rng.random(d) < sparsity
    k = int(support.sum())
    vals = rng.choice([-1.0, 1.0], size=k) if teacher == "rademacher" else rng.standard_normal(k)
    out = np.zeros(d)
    out[support] = vals
    return out

def draw_minibatch_rows(rng: np.random.Generator, n: int, batch: int, steps: int) -> np.ndarray:
    """Row indices of ``steps`` SGD steps, shape (steps, batch): B distinct rows of n per step.

    One ``Generator.choice`` per step, so drawing k steps at once consumes the stream exactly as k
    single steps do (the numba backend draws a chunk ahead; the reference draws step by step).
    """
    out = np.empty((steps, batch), dtype=np.int64)
    for k in range(steps):
        out[k] = rng.choice(n, size=batch, replace=False)
    return out


def minibatch_gradient(Xb: np.ndarray, yb: np.ndarray, beta: np.ndarray, d: int) -> np.ndarray:
    """g = (d/B)·X_Bᵀ(X_Bβ − y_B) for one seed; Xb (B, d), yb (B,), beta (d,) → (d,).

    The floating-point order is pinned (pairwise ``np.sum`` over d for each residual, sequential sum
    over the B rows) so that the numba backend reproduces it bit for bit.
    """
    rb = np.sum(Xb * beta, axis=-1) - yb
    return (d / Xb.shape[0]) * np.sum(rb[:, None] * Xb, axis=0)


def online_gradient(delta: np.ndarray, draws: np.ndarray, batch: int, noise: float) -> np.ndarray:
    """Exact-in-law online-SGD gradient (module docstring) of one seed, shape (d,).

    Parameters
    ----------
    delta : ndarray (d,)
        β − β*.
    draws : ndarray (2B + d,)
        Standard normals of one step, in the order [a (B), label noise ξ (B), z (d)], drawn in the
        run's precision.
    batch : int
        B, fresh rows per step.
    noise : float
        Label-noise standard deviation σ.

    With e = δ/‖δ‖ the update of the module docstring, e(r·a)/‖δ‖ + (‖r‖/√d)(z − (z·e)e), is
    evaluated as c_z·z + κδ with c_z = ‖r‖/√d and κ = (r·a − c_z(z·δ))/‖δ‖²: the same vector with no
    per-coordinate division and one pass fewer.  Every reduction is a pairwise ``np.sum`` (the order
    the numba backend reproduces bit for bit).
    """
    d = delta.shape[-1]
    B = batch
    norm2 = np.sum(delta * delta)
    a = draws[:B] * (np.sqrt(norm2) / math.sqrt(d))
    r = a - noise * draws[B:2 * B]
    z = draws[2 * B:]
    c_z = np.sqrt(np.sum(r * r)) / math.sqrt(d)
    kappa = (np.sum(r * a) - c_z * np.sum(z * delta)) / norm2 if norm2 > 0 else 0.0
    return (d / B) * (c_z * z + kappa * delta)


def draw_designs(rngs, beta_star: np.ndarray, noise: float, X: np.ndarray, y: np.ndarray) -> None:
    """Fill X[i] (n, d) with N(0, 1/d) entries and y[i] = X[i]β*[i] + σξ from seed i's Generator.

    Parameters
    ----------
    rngs : list of numpy.random.Generator, one per seed (each used by one thread only)
    beta_star : ndarray (S, d), float64
    noise : float
        Label-noise standard deviation σ.
    X : ndarray (S, n, d), C-contiguous, float64 or float32 — out
    y : ndarray (S, n), same dtype as X — out

    Seed i draws its n·d design normals and then its n label-noise normals, so the values are those
    of a serial loop over the seeds, whatever the number of threads; the seeds run on the draw
    threads of :func:`hidyn.rng.for_each_seed_range` (numpy releases the GIL while filling and in the
    matrix–vector product), so drawing the designs — the largest arrays of the run — uses all cores.
    """
    d = X.shape[-1]
    scale = math.sqrt(d)

    def draw(lo, hi):
        for i in range(lo, hi):
            r = rngs[i]
            if X.dtype == np.float64:
                # in place, no n·d temporary per thread: the same float64 normals divided by √d
                r.standard_normal(out=X[i])
                np.divide(X[i], scale, out=X[i])
            else:
                # float64 normals rounded to X's dtype after the division, as the draw always was
                X[i] = r.standard_normal(X.shape[1:]) / scale
            y[i] = X[i] @ beta_star[i] + noise * r.standard_normal(X.shape[1])

    for_each_seed_range(draw, len(rngs))


class DLNNumpyBackend:
    """Seeds-vectorised numpy DLN simulator; see the module docstring for the update rules."""

    name = "numpy"
    variables = {k: () for k in ("train_loss", "test_loss", "overlap", "norm1", "norm2", "tpr", "fpr")}

    def __init__(self, spec: DLNSpec, precision: str = "float64"):
        self.spec = spec
        self.dtype = np.dtype(precision)
        self.continuous = spec.algorithm == "gf"
        self.time_per_step = None if self.continuous else spec.lr
        if spec.algorithm == "sgd" and spec.ratio is None and spec.batch_size is None:
            raise ValueError("batch_size is required for online SGD (ratio=None, algorithm='sgd'): "
                             "an integer ≥ 1 (rows per step)")

    # -- contract ---------------------------------------------------------------------------------
    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        per_seed = 8 * s.d * 8
        if s.ratio is not None:
            per_seed += s.n * s.d * self.dtype.itemsize + 3 * s.n * 8
        return n_seeds * per_seed

    def init(self, seed_sequences):
        s = self.spec
        rngs = [np.random.Generator(np.random.PCG64(ss)) for ss in seed_sequences]
        beta_star = np.stack([draw_teacher(r, s.d, s.sparsity, s.teacher, s.exact_sparsity) for r in rngs])
        state = {"rngs": rngs, "beta_star": beta_star.astype(self.dtype), "t": 0.0, "r": None}
        if s.ratio is not None:
            X = np.empty((len(rngs), s.n, s.d), dtype=self.dtype)
            y = np.empty((len(rngs), s.n), dtype=self.dtype)
            draw_designs(rngs, beta_star, s.noise, X, y)
            state.update(X=X, y=y)
        p0, q0 = initial_pq(s)
        shape = beta_star.shape
        state["wp0"] = np.full(shape, math.sqrt(p0), dtype=self.dtype)
        state["wm0"] = np.full(shape, math.sqrt(q0), dtype=self.dtype)
        if self.continuous:
            state["s"] = np.zeros(shape)
        else:
            state["wp"] = state["wp0"].copy()
            state["wm"] = state["wm0"].copy()
        return state

    def advance(self, state, n):
        if self.continuous:
            return self._flow(state, float(n))
        s = self.spec
        c = s.clock
        for _ in range(int(n)):
            beta = state["wp"] ** 2 - state["wm"] ** 2
            if s.algorithm == "gd":
                g = self._full_gradient(state, beta)
            elif s.ratio is None:
                g = self._online_gradient(state, beta)
            else:
                g = self._minibatch_gradient(state, beta)
            step = (c * s.lr) * g
            state["wp"] *= 1.0 - step
            state["wm"] *= 1.0 + step
            state["r"] = None
        return state

    def observe(self, state):
        beta = self._beta(state)
        obs = dln_observables(beta, state["beta_star"], self.spec.noise)
        if self.spec.ratio is None:
            obs["train_loss"] = obs["test_loss"].copy()
        else:
            obs["train_loss"] = dln_train_loss(self._residual(state, beta))
        return {k: np.asarray(obs[k], dtype=np.float64) for k in self.variables}

    #: weights recorded by ``simulate(..., record_weights=True)``: name -> extra dims after (seed, time)
    weight_variables = {"beta": ("i",)}

    def weights(self, state):
        """β (n_seeds, d), float64: the network's effective weights β = u⊙v = w+² − w−²."""
        return {"beta": np.asarray(self._beta(state), dtype=np.float64)}

    def attrs(self, state):
        out = {"teacher_norm2": np.mean(state["beta_star"] ** 2, axis=-1).astype(np.float64)}
        if self.continuous:
            out.update(gf_integrator="DOP853 in mirror coordinates", gf_rtol=GF_RTOL, gf_atol=GF_ATOL)
        return out

    # -- helpers ----------------------------------------------------------------------------------
    def _beta(self, state):
        if self.continuous:
            cs = np.clip(self.spec.clock * state["s"], -_EXP_CLIP / 2, _EXP_CLIP / 2)
            return (state["wp0"] ** 2) * np.exp(2 * cs) - (state["wm0"] ** 2) * np.exp(-2 * cs)
        return state["wp"] ** 2 - state["wm"] ** 2

    def _residual(self, state, beta):
        """r = Xβ − y, cached until the weights change (GD reuses the one computed for a save)."""
        if state["r"] is None:
            state["r"] = np.matmul(state["X"], beta[..., None])[..., 0] - state["y"]
        return state["r"]

    def _full_gradient(self, state, beta):
        if self.spec.ratio is None:
            return beta - state["beta_star"]
        r = self._residual(state, beta)
        return np.matmul(r[:, None, :], state["X"])[:, 0, :] / self.spec.ratio

    def _minibatch_gradient(self, state, beta):
        s = self.spec
        g = np.empty_like(beta)
        for i, rng in enumerate(state["rngs"]):
            rows = draw_minibatch_rows(rng, s.n, s.batch, 1)[0]
            g[i] = minibatch_gradient(state["X"][i, rows], state["y"][i, rows], beta[i], s.d)
        return g

    def _online_gradient(self, state, beta):
        s = self.spec
        B, d = s.batch, s.d
        delta = beta - state["beta_star"]
        g = np.empty_like(beta)
        for i, rng in enumerate(state["rngs"]):
            # normals in the run's precision (float32 runs draw float32 normals, twice as fast)
            g[i] = online_gradient(delta[i], rng.standard_normal(2 * B + d, dtype=self.dtype), B, s.noise)
        return g

    def _data_gradient(self, state, beta):
        """g = Xᵀ(Xβ − y)/δ for every seed at once (the gradient-flow right-hand side)."""
        r = np.matmul(state["X"], beta[..., None].astype(self.dtype))[..., 0] - state["y"]
        return np.matmul(r[:, None, :], state["X"])[:, 0, :] / self.spec.ratio

    def _flow(self, state, duration):
        s = self.spec
        shape = state["s"].shape
        p0 = state["wp0"].astype(np.float64) ** 2
        q0 = state["wm0"].astype(np.float64) ** 2
        c = s.clock

        def rhs(_t, flat):
            sv = np.clip(c * flat.reshape(shape), -_EXP_CLIP / 2, _EXP_CLIP / 2)
            beta = p0 * np.exp(2 * sv) - q0 * np.exp(-2 * sv)
            g = beta - state["beta_star"] if s.ratio is None else self._data_gradient(state, beta)
            return -np.asarray(g, dtype=np.float64).ravel()

        sol = solve_ivp(rhs, (state["t"], state["t"] + duration), state["s"].ravel(), method="DOP853",
                        rtol=GF_RTOL, atol=GF_ATOL)
        if sol.status < 0:
            raise RuntimeError(f"gradient-flow integration failed at t = {sol.t[-1]:.6g}: {sol.message}")
        state["s"] = sol.y[:, -1].reshape(shape)
        state["t"] += duration
        state["nfev"] = state.get("nfev", 0) + sol.nfev
        state["r"] = None
        return state
