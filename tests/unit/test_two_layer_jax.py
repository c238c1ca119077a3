"""JAX/diffrax engine of the two-layer ODEs (hidyn.solvers.ode.two_layer_jax) against the scipy engine.

Compile time dominates (diffrax's Dopri8 and its reverse pass): the tests share one compiled batched solve
(same K, M, number of save times and tolerances) and one compiled gradient.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("diffrax")

import hidyn  # noqa: E402
from hidyn.solvers.ode import two_layer as TL  # noqa: E402
from hidyn.solvers.ode import two_layer_jax as TJ  # noqa: E402

P_K2 = np.array([[0.625095, 0.897214], [0.775686, 0.225207]])


@pytest.fixture(scope="module")
def sim():
    return hidyn.simulate("two_layer", d=200, K=2, M=2, activation="erf", lr=0.5, t_max=40.0, n_times=12,
                          seeds=2, noise=0.2, backend="numpy")


def test_theory_engine_jax_equals_scipy_per_seed(sim):
    """engine='jax' (one vmapped solve over the seeds' initial overlaps) vs the scipy engine, ≤ 1e-8."""
    th_np = hidyn.theory("two_layer", init=sim)
    th_jx = hidyn.theory("two_layer", init=sim, engine="jax")
    assert th_jx.attrs["ode_engine"] == "jax" and th_np.attrs["ode_engine"] == "scipy"
    for name in ("test_loss", "Q", "R"):
        np.testing.assert_allclose(th_jx[name].values, th_np[name].values, rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="engine='nope' is invalid"):
        hidyn.theory("two_layer", init=sim, engine="nope")
    with pytest.raises(NotImplementedError, match="erf closed forms only"):
        TJ.solve(np.eye(2), np.zeros((2, 2)), np.eye(2), np.ones(2), np.ones(2), "relu", [0.0, 1.0], lr=0.5)


def test_solve_batch_vmaps_over_learning_rates(sim):
    times = sim["time"].values                          # same shapes and tolerances: the compiled solve is reused
    Q0, R0 = np.diag([0.2, 0.3]), 1e-2 * P_K2
    lrs = np.array([0.3, 0.8])
    out = TJ.solve_batch(Q0, R0, np.eye(2), np.ones(2), np.ones(2), "erf", times, lr=lrs, noise=0.2)
    assert out["test_loss"].shape == (2, times.size) and out["Q"].shape == (2, times.size, 2, 2)
    for j, lr in enumerate(lrs):
        ref = TL.solve(Q0, R0, np.eye(2), np.ones(2), np.ones(2), "erf", times, lr=lr, noise=0.2)
        np.testing.assert_allclose(out["test_loss"][j], ref["test_loss"], rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["R"][j], ref["R"], rtol=0, atol=1e-8)
    assert np.all(out["info"]["diverged_at"] == -1.0)
    with pytest.raises(ValueError, match="share their leading length"):
        TJ.solve_batch(np.stack([Q0] * 3), R0, np.eye(2), np.ones(2), np.ones(2), "erf", times, lr=lrs)


def test_grad_of_final_test_loss_matches_finite_differences_of_scipy_solve():
    Q0, R0, T, v, A = np.diag([0.3, 0.4]), 0.2 * P_K2, np.eye(2), np.ones(2), np.ones(2)
    t_final, lr = 15.0, 0.5
    g = TJ.grad_test_loss(Q0, R0, T, v, A, "erf", t_final, lr=lr)

    def eps(lr_=lr, R=R0, Q=Q0):
        return TL.solve(Q, R, T, v, A, "erf", [0.0, t_final], lr=lr_, rtol=1e-13, atol=1e-15)["test_loss"][-1]

    assert g["test_loss"] == pytest.approx(eps(), abs=1e-9)
    # central differences: truncation O(h²) ~ 1e-9 relative here, solver error ~1e-13/h
    h = 1e-4
    fd_lr = (eps(lr_=lr + h) - eps(lr_=lr - h)) / (2 * h)
    assert g["d_lr"] == pytest.approx(fd_lr, rel=1e-5)
    e01 = np.zeros((2, 2))
    e01[0, 1] = h
    fd_r = (eps(R=R0 + e01) - eps(R=R0 - e01)) / (2 * h)
    assert g["d_R0"][0, 1] == pytest.approx(fd_r, rel=1e-5)
    sym = e01 + e01.T                                   # a symmetric perturbation of Q0
    fd_q = (eps(Q=Q0 + sym) - eps(Q=Q0 - sym)) / (2 * h)
    assert g["d_Q0"][0, 1] + g["d_Q0"][1, 0] == pytest.approx(fd_q, rel=1e-5)
