"""deep_linear on a CUDA GPU at the issue's largest size (skipped without a GPU, tests/conftest.py)."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import hidyn  # noqa: E402

pytestmark = pytest.mark.gpu


def test_width_8192_depth_4_float32_agrees_with_the_mup_limit():
    """Widths up to 8192 at depth 4 must fit and run (issue 15): the four shared 8192² matrices per seed
    take 1 GiB in float32.  The seed mean is compared with the μP limit by the family tolerance."""
    kw = dict(depth=4, d_in=16, n_samples=64, noise=0.1, lr=[0.2, 0.5], times=np.arange(6.0))
    sim = hidyn.simulate("deep_linear", width=8192, seeds=4, backend="jax", precision="float32", **kw)
    assert sim.attrs["backend"] == "jax" and sim.attrs["jax_device"] == "gpu"
    hidyn.compare(sim).assert_ok()
