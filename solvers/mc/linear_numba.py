"""numba Monte-Carlo backend of the linear family: online SGD (docs/theory/linear.md §1).

:class:`LinearNumbaBackend` inherits the numpy reference (:class:`~hidyn.solvers.mc.linear_numpy.
LinearNumpyBackend`): the teacher and initial weights, the random streams and the observables are the
reference's by construction.  Only the online-SGD step loop runs in numba.  Each seed's normals are drawn
from its own Generator in chunks of steps (the same stream the reference draws: numpy fills arrays
sequentially, so the values do not depend on the chunking) on the draw threads
(:func:`hidyn.rng.for_each_seed`), and a serial ``nogil`` kernel steps through the chunk with the
exact-in-law 2B + d normals per step draw of the reference, in the reference's order of operations:

* u = (w − w*)·√λ elementwise; ‖u‖ = √(np.sum(u·u)), r = ‖u‖a − σξ, ‖r‖ = √(np.sum(r·r)),
  û = u/‖u‖ (u/1 when ‖u‖ = 0); coef = np.sum(r·a) − ‖r‖·np.sum(z·û);
* w ← w − ((η/B)·√λ)·(û·coef + ‖r‖z).

Dot products use numpy's pairwise summation, reproduced by
:func:`hidyn.solvers.mc.numba_backend.pairwise_program` / ``_pw_dot``, so float64 trajectories equal the
reference's bit for bit (tests/unit/test_linear.py).  One kernel pass per step reads w, w* and √λ once and
needs no (S, d) temporaries, which is where its speed comes from (``benchmarks/linear_mc.py``).

Full-batch GD and multi-pass SGD are not covered (:meth:`LinearNumbaBackend.unsupported_reason`): they
are dense matrix products that numpy's BLAS already runs well, so ``backend="auto"`` keeps numpy for them.
``precision="float32"`` draws float32 normals (the reference's stream) but steps in float64 (the
reference's arithmetic also promotes to float64 through √λ); it agrees with the reference to rounding.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from hidyn.models.linear import lr_values
from hidyn.rng import for_each_seed
from hidyn.solvers.mc.linear_numpy import LinearNumpyBackend
from hidyn.solvers.mc.numba_backend import _pw_dot, _stack_size, pairwise_program

__all__ = ["LinearNumbaBackend", "linear_online_steps"]


@njit(cache=True, nogil=True)
def linear_online_steps(draws, w, w_star, sqrt_lam, etas, batch, noise, prog_d, prog_b, stack):
    """Online SGD of one seed through a chunk of steps, in place (module docstring for the order).

    Parameters
    ----------
    draws : ndarray (n_steps, 2B + d)
        Each step's normals [a (B), ξ (B), z (d)] in the reference's order.
    w, w_star, sqrt_lam : ndarray (d,) float64
        Weights (updated in place), teacher and √λ.
    etas : ndarray (n_steps,) float64
        Per-step learning rates.
    batch : int
        B.
    noise : float
        σ.
    prog_d, prog_b : ndarray
        :func:`pairwise_program` of d and of B terms.
    stack : ndarray float64
        Scratch for the pairwise sums.
    """
    n_steps = draws.shape[0]
    d = w.shape[0]
    B = batch
    u = np.empty(d)
    uh = np.empty(d)
    r = np.empty(B)
    a = np.empty(B)
    z = np.empty(d)
    for k in range(n_steps):
        row = draws[k]
        for j in range(B):
            a[j] = row[j]
        for i in range(d):
            u[i] = (w[i] - w_star[i]) * sqrt_lam[i]
            z[i] = row[2 * B + i]
        norm = math.sqrt(_pw_dot(u, u, prog_d, stack))
        for j in range(B):
            r[j] = norm * a[j] - noise * row[B + j]
        rnorm = math.sqrt(_pw_dot(r, r, prog_b, stack))
        safe = norm if norm > 0 else 1.0
        for i in range(d):
            uh[i] = u[i] / safe
        coef = _pw_dot(r, a, prog_b, stack) - rnorm * _pw_dot(z, uh, prog_d, stack)
        c = etas[k] / B
        for i in range(d):
            w[i] = w[i] - (c * sqrt_lam[i]) * (uh[i] * coef + rnorm * z[i])


class LinearNumbaBackend(LinearNumpyBackend):
    """Online SGD of :class:`~hidyn.models.LinearSpec` in numba, bitwise equal to the numpy reference in float64
    (module docstring)."""

    name = "numba"
    #: steps per drawn chunk are chosen so that a chunk holds about this many floats
    chunk_floats = 1 << 18

    @classmethod
    def unsupported_reason(cls, spec) -> str | None:
        """Why this backend cannot run ``spec`` (None when it can); ``backend="auto"`` skips it then."""
        if spec.algorithm != "sgd":
            return (f"the numba backend of 'linear' runs online SGD only; algorithm={spec.algorithm!r} uses the "
                    f"numpy (BLAS) or jax backend")
        return None

    def __init__(self, spec, precision: str = "float64"):
        reason = self.unsupported_reason(spec)
        if reason is not None:
            raise ValueError(f"algorithm={spec.algorithm!r} is invalid for backend='numba': {reason}")
        super().__init__(spec, precision)
        self._prog_d = pairwise_program(spec.d)
        self._prog_b = pairwise_program(spec.batch_size)
        self._stack = max(_stack_size(self._prog_d), _stack_size(self._prog_b), 1)

    def init(self, seed_sequences):
        state = super().init(seed_sequences)
        state["w"] = np.ascontiguousarray(state["w"], dtype=np.float64)
        state["w_star"] = np.ascontiguousarray(state["w_star"], dtype=np.float64)
        return state

    def advance(self, state, n):
        s = self.spec
        n = int(n)
        etas = np.ascontiguousarray(lr_values(s, state["k"] + n)[state["k"]:], dtype=np.float64)
        width = 2 * s.batch_size + s.d
        per_chunk = max(1, min(n, self.chunk_floats // width)) if n else 1
        dt = self.dtype
        sqrt_lam = np.ascontiguousarray(self.sqrt_lam, dtype=np.float64)

        def one(i):
            rng = state["rngs"][i]
            buf = np.empty((per_chunk, width), dtype=dt)
            stack = np.empty(self._stack)
            done = 0
            while done < n:
                k = min(per_chunk, n - done)
                rng.standard_normal(out=buf[:k], dtype=dt)
                linear_online_steps(buf[:k], state["w"][i], state["w_star"][i], sqrt_lam, etas[done:done + k],
                                    s.batch_size, float(s.noise), self._prog_d, self._prog_b, stack)
                done += k

        for_each_seed(one, len(state["rngs"]))
        state["k"] += n
        return state

    def attrs(self, state):
        out = super().attrs(state)
        out["online_draw"] += "; numba kernel in the numpy reference's order (bitwise equal in float64)"
        return out
