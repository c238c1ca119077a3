"""Numpy Monte-Carlo backends for spiked-covariance single-index online SGD (docs/theory/single_index.md §1).

Two backends follow the driver contract of :mod:`hidyn.solvers.mc.driver`:

* :class:`SingleIndexNumpyBackend` (``backend="numpy"``, the reference) runs the full d-dimensional
  online SGD, vectorised over seeds;
* :class:`SingleIndexReducedBackend` (``backend="reduced"``) runs the *exact reduced chain* of note §1:
  (m, s, q) is itself a Markov chain at finite d, with the law of the full SGD at O(1) cost per step
  (pitfall P9), for large ensembles such as escape times.

Conventions (note §1, adopted unchanged): x ~ N(0, Σ), Σ = I + κuuᵀ, c = ⟨u, θ*⟩ = cos φ; target
y = g(τν) + noise·ξ; student σ(λ); −∇ℓ = F·x with F = yσ'(λ) (correlation) or (y − σ(λ))σ'(λ)
(square); one step w' = w + (η/d)(1/n_b)Σ_i F_i D_i, D = x (D = x − λΣw for ``wn_sigma``), then the
retraction (none, w/‖w‖, or w/‖w‖_Σ); time t = steps/d.

Placement of θ* and u
---------------------
z ~ N(0, I_d) is rotation invariant and the initial w is drawn with a uniformly random component
orthogonal to span(θ*, u) (note §1, *Drawing w at finite d*), so the law of the whole trajectory of
(m, s, q) does not depend on where θ* and u sit.  The full backend therefore uses θ* = e₀ and
u = c e₀ + √(1 − c²) e₁: the exact spiked input x = z + (√(1+κ) − 1)⟨z, u⟩u (Σ is never formed) then
touches two coordinates per sample, and ν = x₀, μ = c x₀ + √(1−c²) x₁ cost nothing.  The remaining
d-dimensional work per step is one dot product ⟨w, x⟩ and one axpy; the Gaussian draws dominate
(benchmarks/single_index_mc.py).

Scaled weights
--------------
Every geometry's step is w' = (a w + Σ_i b_i x_i + e u)/N with per-seed scalars a, b_i, e, N (a = 1,
e = 0 except for ``wn_sigma``, where Σw = w + κsu).  The backend stores w = α·V and updates
V += (Σ_i b_i x_i + e u)/(αa), α ← αa/N: one axpy per step whatever the geometry.  m, s, q are
propagated exactly from the step's projections (λ, ν, μ, ‖x‖²) — which the retraction needs anyway —
and re-measured from V every ``resync_steps`` steps and at every save (``observe``), so rounding cannot
accumulate.

Random streams
--------------
Each seed owns three Generators, children ``spawn_key + (k,)`` of its SeedSequence: k = 0 draws the
initial weights, k = 1 the inputs, k = 2 the label noise.  A seed's trajectory therefore does not
depend on the other seeds, on the block size or on the save times.
"""
from __future__ import annotations

import math

import numpy as np

from hidyn import observables
from hidyn.models.single_index import SIGMA_GEOMETRIES, SingleIndexSpec
from hidyn.rng import fill_standard_normal

__all__ = ["SingleIndexNumpyBackend", "SingleIndexReducedBackend", "child_generators",
           "draw_initial_weights", "spike_frame", "ESCAPE_LEVEL"]

#: t_{1/2}: first passage of |m| to 1/2 (note §4)
ESCAPE_LEVEL = 0.5

_VARIABLES = {"m": (), "m_spike": (), "q": (), "cosine": (), "test_loss": (), "objective": ()}


def child_generators(seed_sequence: np.random.SeedSequence, n: int = 3) -> list[np.random.Generator]:
    """PCG64 Generators of the children ``spawn_key + (k,)``, k < n, of a seed's SeedSequence.

    Built explicitly (not with ``SeedSequence.spawn``, which depends on how often it was called) so
    that ``init`` is a pure function of the seed.
    """
    return [np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        seed_sequence.entropy, spawn_key=tuple(seed_sequence.spawn_key) + (k,))))
        for k in range(n)]


def spike_frame(c: float) -> tuple[float, float]:
    """(c, √(1 − c²)): u = c θ* + √(1 − c²) e₂ (exactly (1, 0) at c = 1)."""
    return float(c), (0.0 if c >= 1.0 else math.sqrt(max(1.0 - c * c, 0.0)))


def draw_initial_weights(rng: np.random.Generator, spec: SingleIndexSpec) -> np.ndarray:
    """Initial weights w, shape (d,), float64, with θ* = e₀ and u = c e₀ + √(1−c²) e₁.

    With a start (m₀, s₀, q₀) (``m0`` or ``init``, note §1): w = m₀e₀ + b e₁ + r e₃ with
    b = (s₀ − cm₀)/√(1−c²) (0 when c = 1), r = √(q₀ − m₀² − b²) and e₃ a uniformly random unit vector
    orthogonal to e₀, e₁: the overlaps are exact.  Random start (``m0=None``): a uniformly random
    direction, of unit norm (``plain``, ``sphere``) or unit Σ-norm wᵀΣw = 1 (Σ-geometries).
    """
    d = spec.d
    c, sc = spike_frame(spec.cos_angle)
    start = spec.start()
    g = rng.standard_normal(d)
    if start is None:
        w = g / np.linalg.norm(g)
        if spec.geometry in SIGMA_GEOMETRIES:
            s = c * w[0] + sc * w[1]
            w /= math.sqrt(1.0 + spec.spike * s * s)        # ‖w‖² = 1, so ‖w‖²_Σ = 1 + κs²
        return w
    m, s, q = start
    b = 0.0 if sc == 0.0 else (s - c * m) / sc
    g[:2] = 0.0
    e3 = g / np.linalg.norm(g)
    w = math.sqrt(max(q - m * m - b * b, 0.0)) * e3
    w[0] += m
    w[1] += b
    return w


class _Common:
    """Pieces shared by the two backends: link evaluation, F, observables, escape bookkeeping."""

    variables = _VARIABLES

    def __init__(self, spec: SingleIndexSpec, precision: str = "float64"):
        if not isinstance(spec, SingleIndexSpec):
            raise TypeError(f"{type(self).__name__} needs a SingleIndexSpec, got {type(spec).__name__}")
        self.spec = spec
        self.dtype = np.dtype(precision)
        if self.dtype not in (np.dtype("float64"), np.dtype("float32")):
            raise ValueError(f"precision={precision!r} is invalid: must be 'float64' or 'float32'")
        self.time_per_step = 1.0 / spec.d
        self.c, self.sc = spike_frame(spec.cos_angle)
        self.kappa = spec.spike
        self.amp = math.sqrt(1.0 + spec.spike) - 1.0      # x = z + amp⟨z,u⟩u (note §1)
        self.h = spec.lr / spec.d                          # step η/d
        self.tau = spec.tau
        self.g = spec.target.g
        self.sig = spec.student.g
        self.dsig = spec.student.dg
        self.square = spec.loss == "square"
        self.wn = spec.geometry == "wn_sigma"

    def _force(self, y, lam):
        """F with −∇ℓ = F·x (note §1): yσ'(λ) or (y − σ(λ))σ'(λ); float64, shape of ``lam``."""
        lam = np.asarray(lam, dtype=np.float64)
        ds = np.asarray(self.dsig(lam), dtype=np.float64)
        if self.square:
            return (y - np.asarray(self.sig(lam), dtype=np.float64)) * ds
        return y * ds

    def _labels(self, nu, xi):
        """y = g(τν) + noise·ξ for a block, float64 (ν, ξ of equal shape; ξ None when noise = 0)."""
        y = np.asarray(self.g(self.tau * np.asarray(nu, dtype=np.float64)), dtype=np.float64)
        if xi is not None:
            y = y + self.spec.noise * np.asarray(xi, dtype=np.float64)
        return y

    def _norm2(self, q, s):
        """Squared retraction norm N² after a step: 1, ‖w'‖² or ‖w'‖²_Σ = q + κs² (note §1 table)."""
        geo = self.spec.geometry
        if geo == "plain":
            return np.ones_like(q)
        if geo == "sphere":
            return q
        return q + self.kappa * s * s

    def _mark_escapes(self, state):
        """Record the first step at which |m| ≥ 1/2 (t_{1/2} of note §4), per seed."""
        newly = (np.abs(state["m"]) >= ESCAPE_LEVEL) & (state["hit"] < 0)
        if newly.any():
            state["hit"][newly] = state["step"]

    def _observables(self, m, s, q):
        """Schema variables at the measured (m, s, q), shape (n_seeds,) each, float64.

        Losses are the exact population values at the run's own (m, s, q) (note §2: no test-set noise).
        """
        spec = self.spec
        kw = spec.observable_kwargs()
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = m / np.sqrt(q)
        return {"m": m, "m_spike": s, "q": q, "cosine": cosine,
                "test_loss": np.asarray(observables.single_index_test_loss(m, s, q, **kw), dtype=np.float64),
                "objective": np.asarray(observables.single_index_objective(m, s, q, loss=spec.loss,
                                                                           noise=spec.noise, **kw),
                                        dtype=np.float64)}

    def attrs(self, state):
        """``t_half`` per seed (first passage of |m| to 1/2 in steps/d, −1 when not reached)."""
        hit = state["hit"]
        return {"t_half": np.where(hit >= 0, hit * self.time_per_step, -1.0),
                "escape_level": ESCAPE_LEVEL}

    def escape_times(self, state) -> np.ndarray:
        """First-passage times of |m| to 1/2 per seed (steps/d), ``inf`` where not reached yet."""
        hit = state["hit"]
        return np.where(hit >= 0, hit * self.time_per_step, np.inf)


class SingleIndexNumpyBackend(_Common):
    """Full d-dimensional online SGD of note §1, vectorised over seeds (the reference backend).

    Parameters
    ----------
    spec : SingleIndexSpec
    precision : {"float64", "float32"}
        dtype of the weights and inputs; m, s, q, F and the losses are always float64.

    Notes
    -----
    Per block of ``B`` steps each seed draws its inputs z, shape (B, n_b, d), from its own Generator;
    the spike, ν, μ, ‖x‖² and the labels are computed for the whole block, then the steps run
    sequentially (SGD is a sequential map), each a dot product and an axpy over (n_seeds, d).
    ``B`` keeps the block near :attr:`block_elements` numbers in all; the weights are re-measured every
    :attr:`resync_steps` steps.
    """

    name = "numpy"
    #: numbers drawn per block over all seeds (64 MiB at float64): large enough to amortise the
    #: per-block overhead (thread hand-offs, numpy calls on the block); measured best of 2^21…2^24 at
    #: d = 4096, 64 seeds on a 2-core machine
    block_elements = 1 << 23
    max_block_steps = 256
    #: fold α into V and re-measure (m, s, q) every this many steps (a fixed schedule, independent of
    #: the block size, so that a seed's trajectory is bitwise the same whatever the number of seeds)
    resync_steps = 64

    def block_steps(self, n_seeds: int) -> int:
        per_step = n_seeds * self.spec.batch_size * self.spec.d
        return int(max(1, min(self.max_block_steps, self.block_elements // max(per_step, 1))))

    def memory_bytes(self, n_seeds: int) -> int:
        s = self.spec
        block = self.block_steps(n_seeds) * s.batch_size
        return int(n_seeds * s.d * self.dtype.itemsize * (block + 3) + n_seeds * block * 8 * 6)

    def init(self, seed_sequences):
        spec = self.spec
        gens = [child_generators(ss) for ss in seed_sequences]
        S = len(gens)
        V = np.stack([draw_initial_weights(g[0], spec) for g in gens]).astype(self.dtype)
        state = {"gen_x": [g[1] for g in gens], "gen_xi": [g[2] for g in gens], "V": V,
                 "alpha": np.ones(S), "step": 0, "hit": np.full(S, -1, dtype=np.int64),
                 "block": None, "used": 0, "B": self.block_steps(S),
                 "tmp": np.empty((S, spec.d), dtype=self.dtype)}
        self._resync(state)
        self._mark_escapes(state)
        return state

    # -- measured order parameters -------------------------------------------------------------------
    def _measure(self, state):
        """(m, s, q) measured from the weights w = αV: m = w₀, s = c w₀ + √(1−c²) w₁, q = ‖w‖²."""
        V, alpha = state["V"], state["alpha"]
        v0 = V[:, 0].astype(np.float64)
        v1 = V[:, 1].astype(np.float64)
        m = alpha * v0
        s = alpha * (self.c * v0 + self.sc * v1)
        q = alpha * alpha * np.sum(V * V, axis=-1).astype(np.float64)   # pairwise order (numba: same)
        return m, s, q

    def _resync(self, state):
        """Fold α into V (avoids under/overflow of α) and re-measure (m, s, q) from the weights."""
        V, alpha = state["V"], state["alpha"]
        if not np.all(alpha == 1.0):
            V *= alpha[:, None].astype(self.dtype)
            alpha[:] = 1.0
        state["m"], state["s"], state["q"] = self._measure(state)

    # -- inputs -------------------------------------------------------------------------------------
    #: whether ``_new_block`` measures ‖x‖² (a subclass may take it in its own pass over x instead)
    norms_in_block = True

    def _needs_norms(self) -> bool:
        """The retraction's h²F²‖x‖² term needs ‖x‖² (batch 1 with a normalised geometry, note §2)."""
        return self.spec.batch_size == 1 and self.spec.geometry != "plain"

    def _new_block(self, state):
        """Draw the next block of spiked inputs and labels for every seed (note §1)."""
        spec = self.spec
        S, B, nb, d = len(state["gen_x"]), state["B"], spec.batch_size, spec.d
        X = state["block"]["X"] if state["block"] is not None else np.empty((S, B, nb, d), dtype=self.dtype)
        fill_standard_normal(state["gen_x"], X, self.dtype)   # z ~ N(0, I_d), seeds on all cores
        z0 = X[..., 0].astype(np.float64)
        z1 = X[..., 1].astype(np.float64)
        if self.amp != 0.0:
            # x = z + (√(1+κ) − 1)⟨z,u⟩u with u = c e₀ + √(1−c²) e₁: only two coordinates change
            zu = self.c * z0 + self.sc * z1
            z0 = z0 + self.amp * self.c * zu
            z1 = z1 + self.amp * self.sc * zu
            X[..., 0] = z0
            X[..., 1] = z1
        nu = z0                                          # ν = ⟨θ*, x⟩ = x₀
        mu = self.c * z0 + self.sc * z1                  # μ = ⟨u, x⟩
        xi = None
        if spec.noise > 0.0:
            xi = np.stack([gen.standard_normal((B, nb)) for gen in state["gen_xi"]])
        block = {"X": X, "nu": nu, "mu": mu, "y": self._labels(nu, xi)}
        if self.norms_in_block and self._needs_norms():
            # ‖x‖² for the retraction's h²F²‖x‖² term (note §2), numpy's pairwise order; one seed
            # at a time keeps the temporary small
            block["xx"] = np.stack([np.sum(X[i] * X[i], axis=-1) for i in range(S)]).astype(np.float64)
        state["block"] = block
        state["used"] = 0

    # -- dynamics -----------------------------------------------------------------------------------
    def advance(self, state, n):
        done = 0
        while done < n:
            if state["block"] is None or state["used"] == state["B"]:
                self._new_block(state)
            take = min(n - done, state["B"] - state["used"])
            for _ in range(take):
                if state["step"] % self.resync_steps == 0:
                    self._resync(state)
                self._step(state)
            done += take
        return state

    def _step(self, state):
        """One SGD step for every seed: w' = (a w + Σ_i b_i x_i + e u)/N (module docstring)."""
        spec, blk, j = self.spec, state["block"], state["used"]
        V, alpha, tmp = state["V"], state["alpha"], state["tmp"]
        m, s, q = state["m"], state["s"], state["q"]
        x = blk["X"][:, j]                                               # (S, n_b, d)
        nb = spec.batch_size
        # every reduction is a pairwise np.sum (over d) or a sequential sum over the batch: the order
        # the numba backend reproduces, so that both give the same bits
        if nb == 1:
            x1 = x[:, 0]
            lam = (alpha * np.sum(V * x1, axis=-1).astype(np.float64))[:, None]          # λ = α⟨V, x⟩
        else:
            lam = alpha[:, None] * np.sum(V[:, None, :] * x, axis=-1).astype(np.float64)
        nu, mu, y = blk["nu"][:, j], blk["mu"][:, j], blk["y"][:, j]    # (S, n_b)
        b = (self.h / nb) * self._force(y, lam)                          # per-sample coefficients
        bl = np.sum(b * lam, axis=1)                                     # ⟨w, Σ b_i x_i⟩
        bnu = np.sum(b * nu, axis=1)
        bmu = np.sum(b * mu, axis=1)
        if self.wn:
            # D = x − λΣw with Σw = w + κ s u (note §1): w' = (1 − Σb_iλ_i) w + Σ b_i x_i − (Σb_iλ_i)κ s u
            a = 1.0 - bl
            e = -bl * self.kappa * s
        else:
            a = np.ones_like(bl)
            e = np.zeros_like(bl)
        if nb == 1:
            # ‖b x‖²; on plain (N = 1) no step needs q, so ‖x‖² is not computed and the tracked q is
            # left as last measured (every resync and observe measures it from the weights)
            yy = b[:, 0] ** 2 * blk["xx"][:, j, 0] if "xx" in blk else None
            Y = None
        else:
            Y = np.sum(b.astype(self.dtype)[:, :, None] * x, axis=1)
            yy = np.sum(Y * Y, axis=-1).astype(np.float64)
        # exact one-step overlaps (note §2 "one step, exactly"), before the retraction
        m1 = a * m + bnu + e * self.c
        s1 = a * s + bmu + e
        if yy is None:
            q1, N2 = q, np.ones_like(q)
        else:
            q1 = a * a * q + 2.0 * a * bl + yy + 2.0 * a * e * s + 2.0 * e * bmu + e * e
            N2 = self._norm2(q1, s1)
        N = np.sqrt(N2)
        huge = np.abs(a) < 0.5
        if not huge.any():
            scale = 1.0 / (alpha * a)
            if nb == 1:
                np.multiply(x1, (b[:, 0] * scale).astype(self.dtype)[:, None], out=tmp)
                V += tmp
            else:
                V += (scale.astype(self.dtype))[:, None] * Y
            if self.wn:
                eu = e * scale
                V[:, 0] += (eu * self.c).astype(self.dtype)
                V[:, 1] += (eu * self.sc).astype(self.dtype)
            alpha *= a / N
        else:
            self._huge_step(V, alpha, a, b, e, N, x1 if nb == 1 else None, Y, huge)
        state["m"], state["s"], state["q"] = m1 / N, s1 / N, q1 / N2
        state["used"] = j + 1
        state["step"] += 1
        self._mark_escapes(state)

    def _huge_step(self, V, alpha, a, b, e, N, x1, Y, huge):
        """A step with some |a| < 1/2 (a rare huge wn_sigma step): those seeds update their weights
        explicitly, w' = (αa)V + Σ b_i x_i + e u with α ← 1/N (no division by a); the others take the
        usual scaled update.  Seed by seed, as the numba kernel decides."""
        dt = self.dtype
        for i in range(V.shape[0]):
            Yi = (b[i, 0].astype(dt) * x1[i]) if Y is None else Y[i]
            if huge[i]:
                V[i] *= dt.type(alpha[i] * a[i])
                V[i] += Yi
                V[i, 0] += dt.type(e[i] * self.c)
                V[i, 1] += dt.type(e[i] * self.sc)
                alpha[i] = 1.0 / N[i]
            else:
                scale = 1.0 / (alpha[i] * a[i])
                if Y is None:
                    V[i] += x1[i] * dt.type(b[i, 0] * scale)
                else:
                    V[i] += dt.type(scale) * Y[i]
                if self.wn:
                    eu = e[i] * scale
                    V[i, 0] += dt.type(eu * self.c)
                    V[i, 1] += dt.type(eu * self.sc)
                alpha[i] *= a[i] / N[i]

    def observe(self, state):
        m, s, q = self._measure(state)
        return self._observables(m, s, q)

    #: weights recorded by ``simulate(..., record_weights=True)``: name -> extra dims after (seed, time)
    weight_variables = {"w": ("i",)}

    def weights(self, state):
        """w = αV (n_seeds, d), float64, in the simulation's frame: e₀ = θ*, u = c·e₀ + √(1−c²)·e₁
        (so m = w₀ and s = c·w₀ + √(1−c²)·w₁)."""
        return {"w": state["alpha"][:, None] * np.asarray(state["V"], dtype=np.float64)}


class SingleIndexReducedBackend(_Common):
    """Exact reduced chain of note §1: (m, s, q) as a Markov chain at finite d, O(1) per step.

    Each step rebuilds the orthonormal frame e₁ = θ*, e₂ = (u − cθ*)/√(1−c²), e₃ ∝ the rest of w from
    the current (m, s, q); draws z ~ N(0, I₃) and x₃ = z + (√(1+κ) − 1)⟨z, u⟩u in that frame; the
    components of the n_b samples outside span(e₁, e₂, e₃) enter only through
    ‖Σ_i F_i x⊥_i‖² ~ ‖F‖²·χ²_{d−3} (a Wishart quadratic form, independent of F because F depends on
    the in-frame parts only).  Then w' = w + (η/(d n_b))Σ_i F_i D_i (D = x, or x − λΣw whose
    out-of-frame part is x⊥ as well, since Σw ∈ span(e₁, e₂, e₃)), and the retraction.

    The law of (m, s, q)(t) is that of :class:`SingleIndexNumpyBackend` (tested in
    tests/unit/test_single_index_spec_mc.py); per step the cost is a few dozen operations on
    (n_seeds,) arrays, so ensembles of thousands of runs at any d are cheap (pitfall P9).

    Parameters
    ----------
    spec : SingleIndexSpec
    precision : {"float64", "float32"}
        dtype of the Gaussian draws; the chain itself is updated in float64.
    """

    name = "reduced"
    block = 512           # steps drawn per block and seed (fixed: a seed's stream never depends on S)

    def memory_bytes(self, n_seeds: int) -> int:
        return int(n_seeds * self.block * (self.spec.batch_size * 5 + 2) * 8)

    def init(self, seed_sequences):
        spec = self.spec
        gens = [child_generators(ss) for ss in seed_sequences]
        S = len(gens)
        start = spec.start()
        if start is None:
            # uniform random direction: its projections on e₀, e₁ and the squared norm of the rest
            # (χ²_{d−2}) are drawn exactly, then normalised like draw_initial_weights does
            m = np.empty(S)
            s = np.empty(S)
            q = np.empty(S)
            for i, g in enumerate(gens):
                g0, g1 = g[0].standard_normal(2)
                rest = g[0].chisquare(spec.d - 2)
                norm = math.sqrt(g0 * g0 + g1 * g1 + rest)
                mi, si = g0 / norm, (self.c * g0 + self.sc * g1) / norm
                scale = 1.0
                if spec.geometry in SIGMA_GEOMETRIES:
                    scale = 1.0 / math.sqrt(1.0 + self.kappa * si * si)
                m[i], s[i], q[i] = mi * scale, si * scale, scale * scale
        else:
            m = np.full(S, start[0])
            s = np.full(S, start[1])
            q = np.full(S, start[2])
        state = {"gen_x": [g[1] for g in gens], "gen_xi": [g[2] for g in gens], "m": m, "s": s, "q": q,
                 "step": 0, "hit": np.full(S, -1, dtype=np.int64), "blk": None, "used": 0}
        self._mark_escapes(state)
        return state

    def _new_block(self, state):
        """In-frame spiked inputs x₃ (S, B, n_b, 3), χ²_{d−3} (S, B) and labels for one block."""
        spec = self.spec
        B, nb = self.block, spec.batch_size
        z = np.empty((len(state["gen_x"]), B, nb, 3), dtype=self.dtype)
        chi = np.empty((len(state["gen_x"]), B))
        for i, gen in enumerate(state["gen_x"]):
            gen.standard_normal(out=z[i], dtype=self.dtype)
            chi[i] = gen.chisquare(spec.d - 3, size=B)
        x = z.astype(np.float64)
        u3 = np.array([self.c, self.sc, 0.0])
        x += self.amp * (x @ u3)[..., None] * u3          # x₃ = z + (√(1+κ) − 1)⟨z,u⟩u in the frame
        xi = None
        if spec.noise > 0.0:
            xi = np.stack([gen.standard_normal((B, nb)) for gen in state["gen_xi"]])
        nu = x[..., 0]
        state["blk"] = {"x": x, "chi": chi, "nu": nu, "mu": x @ u3, "y": self._labels(nu, xi)}
        state["used"] = 0

    def advance(self, state, n):
        done = 0
        while done < n:
            if state["blk"] is None or state["used"] == self.block:
                self._new_block(state)
            take = min(n - done, self.block - state["used"])
            for _ in range(take):
                self._step(state)
            done += take
        return state

    def _step(self, state):
        spec, blk, j = self.spec, state["blk"], state["used"]
        c, sc, kappa = self.c, self.sc, self.kappa
        m, s, q = state["m"], state["s"], state["q"]
        nb = spec.batch_size
        # frame coordinates of w: (m, b, r) with b = (s − cm)/√(1−c²), r = ‖rest‖ (note §1)
        bco = np.zeros_like(m) if sc == 0.0 else (s - c * m) / sc
        r = np.sqrt(np.maximum(q - m * m - bco * bco, 0.0))
        x = blk["x"][:, j]                                   # (S, n_b, 3)
        lam = x[..., 0] * m[:, None] + x[..., 1] * bco[:, None] + x[..., 2] * r[:, None]
        F = self._force(blk["y"][:, j], lam)                 # (S, n_b)
        k = self.h / nb
        if self.wn:
            # D = x − λΣw, Σw = w + κ s u: frame coordinates (m + κsc, b + κs√(1−c²), r)
            sw0, sw1 = m + kappa * s * c, bco + kappa * s * sc
            Fl = np.sum(F * lam, axis=1)
            g0 = k * (np.sum(F * x[..., 0], axis=1) - Fl * sw0)
            g1 = k * (np.sum(F * x[..., 1], axis=1) - Fl * sw1)
            g2 = k * (np.sum(F * x[..., 2], axis=1) - Fl * r)
        else:
            g0 = k * np.sum(F * x[..., 0], axis=1)
            g1 = k * np.sum(F * x[..., 1], axis=1)
            g2 = k * np.sum(F * x[..., 2], axis=1)
        perp2 = k * k * np.sum(F * F, axis=1) * blk["chi"][:, j]     # ‖Σ F_i x⊥_i‖²(η/(d n_b))²
        m1, b1, r1 = m + g0, bco + g1, r + g2
        s1 = c * m1 + sc * b1
        q1 = m1 * m1 + b1 * b1 + r1 * r1 + perp2
        N2 = self._norm2(q1, s1)
        N = np.sqrt(N2)
        state["m"], state["s"], state["q"] = m1 / N, s1 / N, q1 / N2
        state["used"] = j + 1
        state["step"] += 1
        self._mark_escapes(state)

    def observe(self, state):
        return self._observables(state["m"].copy(), state["s"].copy(), state["q"].copy())
