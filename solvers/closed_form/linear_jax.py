"""Differentiable exact SGD recursion of the linear family in JAX (docs/theory/linear.md §8).

The recursion of linear.md eq. (2.5) as a ``jax.lax.scan`` over the per-step learning rates, so that
``jax.grad`` of the final test loss with respect to the whole schedule (and to the batch size, treated
as a real number through 1/B) is exact.  Float64 inside a scoped ``jax.enable_x64(True)``; the global
JAX configuration is never changed.  jax is imported inside the functions.
"""
from __future__ import annotations

import numpy as np

__all__ = ["loss_curve", "final_loss_and_grad", "gd_mp_curve"]


def _curve(jnp, lax, lam, v0, lrs, inv_batch, noise2):
    c = 1.0 + inv_batch

    def step(v, eta):
        loss = noise2 + jnp.dot(lam, v)
        v = (1.0 - 2.0 * eta * lam + eta * eta * c * lam * lam) * v + (eta * eta * inv_batch * loss) * lam
        return v, loss

    v_end, losses = lax.scan(step, v0, lrs)
    return jnp.concatenate([losses, (noise2 + jnp.dot(lam, v_end))[None]])


_JITTED = None


def loss_curve(lam, v0, lrs, batch, noise: float) -> np.ndarray:
    """Expected test loss L_0 … L_K of online SGD (eq. 2.5) for the schedule ``lrs`` (K,), via JAX.

    ``batch`` may be a real number ≥ 1 (it enters only through 1/B).  Equals
    :func:`hidyn.solvers.closed_form.linear.sgd_recursion` to rounding.
    """
    import jax
    import jax.numpy as jnp

    global _JITTED
    with jax.enable_x64(True):
        if _JITTED is None:   # one jitted wrapper per process: recompiles only for new shapes
            _JITTED = jax.jit(lambda *a: _curve(jnp, jax.lax, *a))
        out = _JITTED(jnp.asarray(lam, jnp.float64), jnp.asarray(v0, jnp.float64), jnp.asarray(lrs, jnp.float64),
                      jnp.asarray(1.0 / float(batch), jnp.float64), jnp.asarray(float(noise) ** 2, jnp.float64))
        return np.asarray(out)


def final_loss_and_grad(lam, v0, batch, noise: float, *, log: bool = True, wrt_batch: bool = False):
    """A compiled function ``f(lrs) -> (value, d value/d lrs)`` of the final loss L_K (or log L_K).

    With ``wrt_batch=True`` the function is ``f(lrs, B) -> (value, (d/d lrs, d/d B))``, B a real number.
    The returned function converts to and from numpy float64 (for scipy.optimize) and runs inside
    ``jax.enable_x64(True)``.
    """
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        lam_j = jnp.asarray(lam, jnp.float64)
        v0_j = jnp.asarray(v0, jnp.float64)
        noise2 = float(noise) ** 2

        def objective(lrs, b):
            final = _curve(jnp, jax.lax, lam_j, v0_j, lrs, 1.0 / b, noise2)[-1]
            return jnp.log(final) if log else final

        vg = jax.jit(jax.value_and_grad(objective, argnums=(0, 1) if wrt_batch else 0))

    def f(lrs, b=None):
        with jax.enable_x64(True):
            val, grad = vg(jnp.asarray(lrs, jnp.float64), jnp.asarray(float(batch if b is None else b), jnp.float64))
            if wrt_batch:
                return float(val), (np.asarray(grad[0], dtype=np.float64), float(grad[1]))
            return float(val), np.asarray(grad, dtype=np.float64)

    return f


def gd_mp_curve(ratio: float, lrs, *, e0_norm2: float = 1.0, noise: float = 0.0, n_nodes: int = 2000):
    """Full-batch GD test and train loss for Σ = I in the proportional regime with any step schedule, in JAX.

    Eqs. (6.2)–(6.3) of linear.md hold for a schedule η_0 … η_{K−1} with (1 − ηx)^k replaced by
    P_k(x) = Π_{j<k}(1 − η_j x) (the iterates stay polynomials in Σ̂), so the curves are the same
    one-dimensional Marchenko–Pastur integrals.  Differentiable in the schedule (``jax.grad``); with a
    constant schedule it equals :func:`hidyn.solvers.closed_form.linear.gd_marchenko_pastur`.

    Returns
    -------
    (test_loss, train_loss) : two ndarrays (K + 1,) — or JAX arrays when called under a JAX transform.
    """
    import jax
    import jax.numpy as jnp

    from hidyn.solvers.closed_form.linear import mp_quadrature

    gamma = 1.0 / ratio
    x_np, w_np = mp_quadrature(gamma, n_nodes)
    atom = max(0.0, 1.0 - ratio)
    cont = min(1.0, ratio)
    g1 = min(1.0, gamma)
    with jax.enable_x64(True):
        x = jnp.asarray(x_np)
        w = jnp.asarray(w_np)
        lrs = jnp.asarray(lrs, jnp.float64)

        def step(p, eta):
            p = p * (1.0 - eta * x)
            return p, p

        _, ps = jax.lax.scan(step, jnp.ones_like(x), lrs)
        ps = jnp.concatenate([jnp.ones_like(x)[None], ps])                     # P_k(x), (K + 1, nodes)
        q2 = ps * ps
        test = noise ** 2 + e0_norm2 * (q2 @ w + atom) + noise ** 2 * gamma * (((1.0 - ps) ** 2 / x) @ w)
        train = e0_norm2 * ((x * q2) @ w) + noise ** 2 * ((1.0 - g1) + g1 * (q2 @ w) / cont)
        if isinstance(test, jax.core.Tracer):
            return test, train
        return np.asarray(test), np.asarray(train)
