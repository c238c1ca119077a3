"""Teacher–student spec validation and the numpy Monte-Carlo backend."""
from __future__ import annotations

import math

import numpy as np
import pytest

import hidyn
from hidyn import models, rng
from hidyn.solvers.mc.two_layer_numpy import TwoLayerNumpyBackend, draw_weights


@pytest.mark.parametrize("params, fragment", [
    (dict(K=0), "K=0"), (dict(M=0), "M=0"), (dict(lr=-0.1), "lr=-0.1"), (dict(lr=math.inf), "lr=inf"),
    (dict(noise=-1.0), "noise=-1.0"), (dict(activation="softplus"), "activation='softplus'"),
    (dict(activation=np.tanh), "needs its derivative"),
    (dict(lr_second=0.5), "train_second_layer=False"),
    (dict(init={"Q": np.eye(2), "R": 2 * np.eye(2)}), "positive semi-definite"),
    (dict(init={"Q": np.eye(3), "R": np.zeros((2, 2))}), "shape (2, 2)"),
    (dict(init={"Q": [[1, 0.5], [0.4, 1]], "R": np.zeros((2, 2))}), "symmetric"),
    (dict(batch_size=0), "batch_size=0"),
])
def test_bad_input_names_parameter(params, fragment):
    with pytest.raises(ValueError) as err:
        models.get("two_layer", **params)
    assert fragment in str(err.value)


def test_exact_initial_overlaps_at_finite_d():
    Q = np.array([[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]])
    R = np.array([[0.1, 0.0], [0.2, 0.1], [0.0, 0.3]])
    T = np.array([[1.0, 0.2], [0.2, 1.5]])
    spec = models.get("two_layer", d=300, K=3, M=2, init={"Q": Q, "R": R}, T=T)
    B, W = draw_weights(np.random.default_rng(3), spec)
    np.testing.assert_allclose(W @ W.T / 300, Q, atol=1e-12)
    np.testing.assert_allclose(W @ B.T / 300, R, atol=1e-12)
    np.testing.assert_allclose(B @ B.T / 300, T, atol=1e-12)


def test_random_start_statistics():
    spec = models.get("two_layer", d=4000, K=2, M=2, init_scale=0.5)
    B, W = draw_weights(np.random.default_rng(1), spec)
    np.testing.assert_allclose(B @ B.T / 4000, np.eye(2), atol=1e-12)  # teacher T held exactly
    assert np.allclose(W @ W.T / 4000, 0.25 * np.eye(2), atol=5 * 0.25 * math.sqrt(2 / 4000))
    assert np.all(np.abs(W @ B.T / 4000) < 5 * 0.5 / math.sqrt(4000))


def test_one_sgd_step_matches_the_update_rule():
    """Replay one step by hand from the same input stream (docs/theory/teacher_student.md §1)."""
    spec = models.get("two_layer", d=50, K=2, M=3, lr=0.7, lr_second=0.3, train_second_layer=True,
                      noise=0.2, activation="tanh", A=[1.0, -0.5, 0.3], v0=[0.8, 1.2])
    be = TwoLayerNumpyBackend(spec)
    ss = rng.seed_sequences(0, [0])
    state = be.init(ss)
    W0, v0, B = state["W"][0].copy(), state["v"][0].copy(), state["B"][0]
    be.advance(state, 1)
    x = state["buffer"][0, 0, 0]
    # the noise is drawn after the block of inputs from the same generator: reproduce the stream
    r = np.random.Generator(np.random.PCG64(ss[0]))
    draw_weights(r, spec)
    r.standard_normal((be.block, 1, 50))
    zeta = 0.2 * r.standard_normal((1, 1))[0, 0]
    lam, nu = W0 @ x / math.sqrt(50), B @ x / math.sqrt(50)
    delta = np.tanh(nu) @ np.array([1.0, -0.5, 0.3]) + zeta - v0 @ np.tanh(lam)
    W1 = W0 + (0.7 / math.sqrt(50)) * np.outer(v0 * (1 - np.tanh(lam) ** 2) * delta, x)
    v1 = v0 + (0.3 / 50) * np.tanh(lam) * delta
    np.testing.assert_allclose(state["W"][0], W1, rtol=1e-13)
    np.testing.assert_allclose(state["v"][0], v1, rtol=1e-13)


def test_simulate_schema_and_reproducibility():
    kw = dict(d=60, K=2, M=2, t_max=2.0, n_times=5, seeds=3)
    a = hidyn.simulate("two_layer", **kw)
    assert a["Q"].dims == ("seed", "time", "k", "k_") and a["R"].dims == ("seed", "time", "k", "m")
    assert a.equals(hidyn.simulate("two_layer", **kw))
    np.testing.assert_allclose(a["Q"].values, np.swapaxes(a["Q"].values, -1, -2))
    np.testing.assert_allclose(a["train_loss"] - a["test_loss"], 0.0)  # σ = 0


def test_divergence_reported():
    with pytest.warns(RuntimeWarning, match="diverged"):
        sim = hidyn.simulate("two_layer", d=40, K=2, M=2, lr=40.0, t_max=20.0, n_times=10, seeds=2,
                             activation="linear")
    assert np.all(np.asarray(sim.attrs["diverged_at"]) > 0)


def test_trajectory_does_not_depend_on_save_times_with_noise():
    """Inputs and label noise come in fixed blocks per seed: saving more often changes nothing."""
    kw = dict(d=50, K=2, M=2, noise=0.3, lr=0.5, seeds=2, progress=False)
    coarse = hidyn.simulate("two_layer", times=[0.0, 13.0], **kw)
    fine = hidyn.simulate("two_layer", times=np.linspace(0.0, 13.0, 27), **kw)
    np.testing.assert_array_equal(coarse["Q"].isel(time=-1).values, fine["Q"].isel(time=-1).values)
