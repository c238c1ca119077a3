"""simulate(..., record_weights=True): the d-dimensional weights at every save time (issue #17 item 6).

The recorded weights are checked against the recorded order parameters, recomputed here from the
weights alone (and, for overlaps with the teacher, from the teacher redrawn on the seed's own stream).
"""
from __future__ import annotations

import numpy as np
import pytest

import hidyn
from hidyn import rng
from hidyn.solvers.mc import driver


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("params", [dict(ratio=0.5, algorithm="gd", lr=0.1),
                                    dict(ratio=None, algorithm="gf"),
                                    dict(ratio=None, algorithm="sgd", lr=0.05, batch_size=8)])
def test_dln_beta_reproduces_observables(backend, params):
    from hidyn.solvers.mc.dln_numpy import draw_teacher

    d, seeds = 40, 3
    sim = hidyn.simulate("dln", d=d, seeds=seeds, t_max=2.0, n_times=6, sparsity=0.2, noise=0.1,
                         backend=backend, record_weights=True, seed=7, **params)
    beta = sim["beta"]
    assert beta.dims == ("seed", "time", "i") and beta.shape == (seeds, sim.sizes["time"], d)
    assert sim.attrs["record_weights"] == 1 and np.array_equal(sim["i"].values, np.arange(d))
    b = beta.values
    np.testing.assert_allclose(np.mean(b * b, axis=-1), sim["norm2"].values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.mean(np.abs(b), axis=-1), sim["norm1"].values, rtol=1e-12, atol=1e-15)
    # the teacher is the first draw of each seed's stream (dln_numpy.DLNNumpyBackend.init)
    spec = hidyn.results.spec_from_dataset(sim)
    stars = np.stack([draw_teacher(np.random.Generator(np.random.PCG64(ss)), d, spec.sparsity, spec.teacher,
                                   spec.exact_sparsity) for ss in rng.seed_sequences(7, np.arange(seeds))])
    np.testing.assert_allclose(np.mean(b * stars[:, None], axis=-1), sim["overlap"].values, rtol=1e-12, atol=1e-15)
    test = np.mean((b - stars[:, None]) ** 2, axis=-1) + spec.noise ** 2
    np.testing.assert_allclose(test, sim["test_loss"].values, rtol=1e-12)
    assert not np.allclose(b[:, -1], b[:, 0])  # the weights moved


def test_two_layer_W_reproduces_overlaps():
    from hidyn.solvers.mc.two_layer_numpy import draw_weights

    d, seeds = 50, 2
    sim = hidyn.simulate("two_layer", d=d, K=3, M=2, seeds=seeds, t_max=1.0, n_times=4, lr=0.5,
                         record_weights=True, seed=3)
    W = sim["W"].values
    assert sim["W"].dims == ("seed", "time", "k", "i") and W.shape == (seeds, sim.sizes["time"], 3, d)
    np.testing.assert_allclose(np.einsum("stkd,stld->stkl", W, W) / d, sim["Q"].values, rtol=1e-10, atol=1e-14)
    spec = hidyn.results.spec_from_dataset(sim)
    B = np.stack([draw_weights(np.random.Generator(np.random.PCG64(ss)), spec)[0]
                  for ss in rng.seed_sequences(3, np.arange(seeds))])
    np.testing.assert_allclose(np.einsum("stkd,smd->stkm", W, B) / d, sim["R"].values, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_single_index_w_reproduces_overlaps(backend):
    d = 64
    sim = hidyn.simulate("single_index", d=d, seeds=2, t_max=1.0, n_times=4, spike=2.0, spike_angle=0.5,
                         geometry="plain", lr=0.2, record_weights=True, backend=backend)
    w = sim["w"].values
    assert sim["w"].dims == ("seed", "time", "i") and w.shape == (2, sim.sizes["time"], d)
    spec = hidyn.results.spec_from_dataset(sim)
    c = spec.cos_angle
    np.testing.assert_allclose(w[..., 0], sim["m"].values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c * w[..., 0] + np.sqrt(1 - c * c) * w[..., 1], sim["m_spike"].values,
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.sum(w * w, axis=-1), sim["q"].values, rtol=1e-10)


def test_default_records_no_weights_and_reduced_refuses():
    sim = hidyn.simulate("dln", d=16, seeds=2, t_max=0.5, n_times=3, backend="numpy")
    assert "beta" not in sim and "i" not in sim.dims and sim.attrs["record_weights"] == 0
    with pytest.raises(ValueError, match="record_weights=True is invalid with backend='reduced'"):
        hidyn.simulate("single_index", d=16, seeds=2, t_max=0.5, backend="reduced", record_weights=True)
    with pytest.raises(ValueError, match="record_weights"):
        hidyn.simulate("dln", d=16, seeds=2, t_max=0.5, record_weights="yes")


def test_memory_refusal_names_record_weights(monkeypatch):
    # 4 seeds × 101 times (steps 0..100) × 1000 weights × 8 B = 3.2 MB of weights on a machine of
    # 4 MB (limit 70 %): refused before anything runs, while the same run without weights is not
    monkeypatch.setattr(driver, "available_memory_bytes", lambda: 4_000_000)
    kw = dict(d=1000, ratio=None, algorithm="gd", lr=0.1, seeds=4, t_max=10.0, n_times=101, spacing="linear",
              backend="numpy")
    assert hidyn.simulate("dln", **kw).sizes["time"] == 101
    with pytest.raises(MemoryError, match="record_weights") as exc:
        hidyn.simulate("dln", record_weights=True, **kw)
    assert "fewer times" in str(exc.value) and "fewer seeds" in str(exc.value)
    assert driver.weights_nbytes({"beta": 1000}, 4, 100) == 3_200_000


def test_jax_weight_readers():
    """The JAX two-layer and single-index backends hand their device weights back as float64 numpy
    arrays of the declared layout (read from a state built here: no kernel is compiled)."""
    jnp = pytest.importorskip("jax.numpy")
    from hidyn.solvers.mc import jax_backend
    from hidyn.solvers.mc.jax_backend import DLNJaxBackend, SingleIndexJaxBackend, TwoLayerJaxBackend

    W = np.arange(2 * 3 * 5, dtype=np.float64).reshape(2, 3, 5) / 7
    tl = TwoLayerJaxBackend(hidyn.models.get("two_layer", d=5, K=3, M=1), "float32")
    out = tl.weights({"W": jnp.asarray(W.astype(np.float32))})
    assert tl.weight_variables == {"W": ("k", "i")} and out["W"].dtype == np.float64
    np.testing.assert_allclose(out["W"], W, rtol=1e-6)
    si = SingleIndexJaxBackend(hidyn.models.get("single_index", d=5), "float32")
    out = si.weights({"w": jnp.asarray(W[:, 0].astype(np.float32))})
    assert si.weight_variables == {"w": ("i",)} and out["w"].dtype == np.float64
    np.testing.assert_allclose(out["w"], W[:, 0], rtol=1e-6)
    dln = DLNJaxBackend(hidyn.models.get("dln", d=5, ratio=None), "float64")
    wp, wm = W[:, 0] + 1.0, W[:, 1]
    with jax_backend._scope("float64"):  # the backend's states are built in its x64 scope
        state = {"wp": jnp.asarray(wp), "wm": jnp.asarray(wm)}
    out = dln.weights(state)
    assert dln.weight_variables == {"beta": ("i",)}
    np.testing.assert_allclose(out["beta"], wp ** 2 - wm ** 2, rtol=1e-12)
