"""jax/jaxlib 0.10.2 miscompiles vmapped matvec+reduce on CPU (jax-ml/jax#39103).

setup.cfg excludes that version; this test guards the pattern itself on whatever jax is installed:
jit(vmap(f)) must equal the eager per-row numpy result.
"""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")


def test_vmapped_matvec_reduce_jit_equals_eager():
    import jax.numpy as jnp

    assert jax.__version__ != "0.10.2", "jax 0.10.2 is known to miscompile this pattern"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 96, 64))
    b = rng.standard_normal((16, 64))

    def f(Xi, bi):
        r = Xi @ bi
        return jnp.sum(r * r), Xi.T @ r

    with jax.enable_x64(True):
        s_jit, g_jit = jax.jit(jax.vmap(f))(jnp.asarray(X), jnp.asarray(b))
        s_eager, g_eager = jax.vmap(f)(jnp.asarray(X), jnp.asarray(b))
    s_np = np.array([np.sum((X[i] @ b[i]) ** 2) for i in range(16)])
    g_np = np.stack([X[i].T @ (X[i] @ b[i]) for i in range(16)])
    np.testing.assert_allclose(np.asarray(s_jit), s_np, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(s_eager), s_np, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(g_jit), g_np, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(np.asarray(g_eager), g_np, rtol=1e-11, atol=1e-11)
