"""Reference numpy Monte-Carlo backend of the linear family (docs/theory/linear.md §1).

Vectorised over seeds; Σ = diag(λ) is never formed (x = √λ ⊙ z).  Per seed, the stream
``SeedSequence(seed, spawn_key=(i,))`` draws, in order: the teacher (isotropic teacher only), the
initial weights (``init_scale`` only), the training set (fixed-set algorithms), then the steps.

* ``sgd`` (online, fresh samples).  The step −(η/B)Σ_b x_b r_b, r_b = ⟨e, x_b⟩ − σξ_b, e = w − w*,
  depends on the B fresh rows only through Σ_b z_b r_b with r_b = ‖u‖a_b − σξ_b, a_b = ⟨û, z_b⟩,
  u = √λ ⊙ e.  Splitting each z_b into its component a_b along û and an independent standard normal
  in û^⊥, Σ_b z_b r_b has exactly the law of û·Σ_b r_b a_b + ‖r‖·(z − ⟨z, û⟩û) with z ~ N(0, I_d): one
  step costs 2B + d normals instead of B·d (exact in law, not an approximation; the same device as the
  DLN online backend).  Validated against the exact mode recursion (linear.md §2) at every d.
* ``gd``: w ← w − η Xᵀ(Xw − y)/n on X (n × d) drawn once per seed.
* ``multipass_sgd``: B rows drawn uniformly with replacement from the same fixed set per step.
"""
from __future__ import annotations

import math

import numpy as np

from hidyn.models.linear import LinearSpec, eigenvalues, lr_values, teacher_coefficients

__all__ = ["LinearNumpyBackend", "draw_teacher_and_init"]


def draw_teacher_and_init(spec: LinearSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(w*, w₀) of shape (d,) for one seed: the spec's teacher (a uniform unit vector for ``"isotropic"``)
    and w₀ ~ N(0, (s²/d) I) (zero when ``init_scale`` is None or 0)."""
    w_star = teacher_coefficients(spec)
    if w_star is None:
        g = rng.standard_normal(spec.d)
        w_star = g / np.linalg.norm(g)
    s = spec.init_scale or 0.0
    w0 = (s / math.sqrt(spec.d)) * rng.standard_normal(spec.d) if s > 0 else np.zeros(spec.d)
    return w_star, w0


class LinearNumpyBackend:
    """Seeds-vectorised numpy simulator of :class:`~hidyn.models.LinearSpec` (module docstring)."""

    name = "numpy"

    def __init__(self, spec: LinearSpec, precision: str = "float64"):
        self.spec = spec
        self.dtype = np.dtype(precision)
        self.time_per_step = spec.time_per_step
        self.lam = eigenvalues(spec)
        self.sqrt_lam = np.sqrt(self.lam)
        self.variables = {"test_loss": (), "samples_seen": ()}
        if spec.algorithm != "sgd":
            self.variables["train_loss"] = ()
        if spec.per_mode:
            self.variables["mode_error"] = ("mode",)

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        per_seed = 8 * s.d * 8
        if s.n is not None:
            per_seed += s.n * s.d * self.dtype.itemsize + 4 * s.n * 8
        return n_seeds * per_seed

    def init(self, seed_sequences):
        s = self.spec
        rngs = [np.random.Generator(np.random.PCG64(ss)) for ss in seed_sequences]
        pairs = [draw_teacher_and_init(s, r) for r in rngs]
        w_star = np.stack([p[0] for p in pairs])
        w = np.stack([p[1] for p in pairs]).astype(self.dtype)
        state = {"rngs": rngs, "w_star": w_star.astype(self.dtype), "w": w, "k": 0}
        if s.n is not None:
            X = np.empty((len(rngs), s.n, s.d), dtype=self.dtype)
            y = np.empty((len(rngs), s.n), dtype=self.dtype)
            for i, r in enumerate(rngs):
                X[i] = r.standard_normal((s.n, s.d)) * self.sqrt_lam
                y[i] = X[i] @ w_star[i] + s.noise * r.standard_normal(s.n)
            state.update(X=X, y=y)
        return state

    def advance(self, state, n):
        s = self.spec
        n = int(n)
        etas = lr_values(s, state["k"] + n)[state["k"]:]
        if s.algorithm == "sgd":
            self._online_steps(state, etas)
        for eta in (etas if s.algorithm != "sgd" else ()):
            if s.algorithm == "gd":
                r = np.matmul(state["X"], state["w"][..., None])[..., 0] - state["y"]
                g = np.matmul(r[:, None, :], state["X"])[:, 0, :] / s.n
            else:
                g = self._multipass_gradient(state)
            state["w"] = state["w"] - eta * g
        state["k"] += n
        return state

    def observe(self, state):
        s = self.spec
        e = (state["w"] - state["w_star"]).astype(np.float64)
        modes = e * e
        out = {"test_loss": modes @ self.lam + s.noise ** 2,
               "samples_seen": np.full(e.shape[0], float(state["k"] * (s.batch_size if s.algorithm != "gd"
                                                                     else s.n)))}
        if s.algorithm != "sgd":
            r = np.matmul(state["X"], state["w"][..., None])[..., 0] - state["y"]
            out["train_loss"] = np.mean(r.astype(np.float64) ** 2, axis=-1)
        if s.per_mode:
            out["mode_error"] = modes
        return out

    def attrs(self, state):
        return {"teacher_signal": (state["w_star"].astype(np.float64) ** 2 @ self.lam),
                "online_draw": "exact in law, 2B + d normals per step" if self.spec.algorithm == "sgd" else ""}

    # -- gradients (mean over the batch of x_b(⟨w, x_b⟩ − y_b)) ----------------------------------------
    def _online_steps(self, state, etas):
        """Online SGD steps, vectorised over seeds (module docstring).

        Each seed's normals for a chunk of steps are drawn in one call, which consumes its stream
        exactly as one call per step would (numpy fills arrays sequentially), so results do not depend
        on the chunking; chunks are capped at ~32 MiB of normals.
        """
        s = self.spec
        B, d = s.batch_size, s.d
        S = state["w"].shape[0]
        width = 2 * B + d
        chunk = max(1, int((32 << 20) // (8 * S * width)))
        for start in range(0, len(etas), chunk):
            block = etas[start:start + chunk]
            draws = np.stack([rng.standard_normal((len(block), width), dtype=self.dtype)
                              for rng in state["rngs"]], axis=1)             # (steps, S, 2B + d)
            for j, eta in enumerate(block):
                u = (state["w"] - state["w_star"]) * self.sqrt_lam        # (S, d)
                a, xi, z = draws[j, :, :B], draws[j, :, B:2 * B], draws[j, :, 2 * B:]
                # dot products as np.sum of products (numpy's pairwise order, per contiguous row), not
                # einsum (platform-dependent SIMD order): the numba backend reproduces them bit for bit
                norm = np.sqrt(np.sum(u * u, axis=-1))
                r = norm[:, None] * a - s.noise * xi                       # (S, B)
                rnorm = np.sqrt(np.sum(r * r, axis=-1))
                safe = np.where(norm > 0, norm, 1.0)
                uh = u / safe[:, None]                                     # û, 0 where u = 0
                coef = np.sum(r * a, axis=-1) - rnorm * np.sum(z * uh, axis=-1)
                direction = uh * coef[:, None] + rnorm[:, None] * z       # Σ_b z_b r_b in law
                state["w"] = state["w"] - (eta / B) * self.sqrt_lam * direction

    def _multipass_gradient(self, state):
        s = self.spec
        B = s.batch_size
        idx = np.stack([rng.integers(0, s.n, size=B) for rng in state["rngs"]])
        Xb = np.take_along_axis(state["X"], idx[:, :, None], axis=1)
        yb = np.take_along_axis(state["y"], idx, axis=1)
        r = np.matmul(Xb, state["w"][..., None])[..., 0] - yb
        return np.matmul(r[:, None, :], Xb)[:, 0, :] / B
