"""JAX Monte-Carlo backend of the linear family: chunking invariance, same start as numpy, agreement in law
with the exact recursion (linear.md §2) and with the numpy fixed-set backend."""
from __future__ import annotations

import numpy as np
import pytest

import hidyn

pytest.importorskip("jax")


def test_trajectory_does_not_depend_on_save_times():
    kw = dict(d=30, noise=0.2, batch_size=3, lr={"schedule": "step", "lr": 0.3, "every": 20, "factor": 0.5},
              seeds=2, backend="jax", progress=False)
    a = hidyn.simulate("linear", times=[0, 8, 16, 32], **kw)
    b = hidyn.simulate("linear", times=[0, 32], **kw)
    np.testing.assert_allclose(a.test_loss.values[:, -1], b.test_loss.values[:, -1], rtol=1e-12)
    ref = hidyn.simulate("linear", times=[0, 32], **{**kw, "backend": "numpy"})
    np.testing.assert_allclose(a.test_loss.values[:, 0], ref.test_loss.values[:, 0], rtol=1e-14)  # same start


def test_online_sgd_agrees_with_the_exact_recursion():
    sim = hidyn.simulate("linear", d=100, noise=0.3, batch_size=8, lr=0.3, t_max=200, n_times=15, seeds=32,
                         backend="jax", progress=False)
    hidyn.compare(sim).assert_ok()


@pytest.mark.parametrize("algorithm", ["gd", "multipass_sgd"])
def test_fixed_set_agrees_with_numpy_in_law(algorithm):
    kw = dict(d=40, ratio=2.0, algorithm=algorithm, noise=0.5, lr=0.2, batch_size=8, times=[0, 8, 32],
              seeds=32, progress=False)
    a = hidyn.simulate("linear", backend="jax", **kw)
    b = hidyn.simulate("linear", backend="numpy", **kw)
    for var in ("test_loss", "train_loss"):
        x, y = a[var].values[:, 1:], b[var].values[:, 1:]
        sem = np.hypot(x.std(0, ddof=1), y.std(0, ddof=1)) / np.sqrt(32)
        assert np.all(np.abs(x.mean(0) - y.mean(0)) < 5 * sem), var
