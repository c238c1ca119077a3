"""deep_linear JAX backend (the GPU path) against the numpy reference, on the CPU at small widths."""
from __future__ import annotations

import numpy as np
import pytest

import hidyn

pytest.importorskip("jax")

KW = dict(depth=2, d_in=5, n_samples=12, noise=0.1, t_max=9, n_times=4, spacing="linear", seeds=2)


def test_jax_equals_numpy_in_float64():
    """Same initial weights (drawn by the numpy streams): equal to rounding, through the low-rank
    storage and the switch to dense storage (width 8: rank n/2 = 4 after 4 steps)."""
    kw = dict(KW, width=8, parametrization="mup", lr=[0.05, 0.3])
    ref = hidyn.simulate("deep_linear", backend="numpy", **kw)
    jx = hidyn.simulate("deep_linear", backend="jax", **kw)
    assert jx.attrs["backend"] == "jax"
    for v in ("train_loss", "test_loss", "alignment", "weight_change"):
        assert np.allclose(jx[v], ref[v], rtol=1e-9, atol=1e-12), v


def test_jax_float32_sgd_with_a_diverging_lr():
    """float32 (the width-sweep precision) with minibatch SGD on the numpy reference's minibatch streams;
    a diverging lr of the grid is recorded and the rest of the grid kept."""
    kw = dict(KW, width=64, parametrization="ntp", lr=[0.1, 0.5, 200.0], algorithm="sgd", batch_size=4)
    with pytest.warns(RuntimeWarning, match="diverged"):
        ref = hidyn.simulate("deep_linear", backend="numpy", **kw)
    with pytest.warns(RuntimeWarning, match="diverged"):
        f32 = hidyn.simulate("deep_linear", backend="jax", precision="float32", **kw)
    ok = ref.train_loss.sel(lr=[0.1, 0.5])
    assert np.allclose(f32.train_loss.sel(lr=[0.1, 0.5]), ok, rtol=1e-3, atol=1e-5)
    assert np.all(np.isnan(f32.train_loss.sel(lr=200.0)[:, -1]))
