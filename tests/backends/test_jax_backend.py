"""JAX backends on CPU: keys, compile-once, scoped precision, update rules, agreement in law."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

import hidyn  # noqa: E402
from hidyn import models, rng  # noqa: E402
from hidyn.solvers.mc import jax_backend as jb  # noqa: E402
from hidyn.solvers.mc.dln_numpy import DLNNumpyBackend  # noqa: E402


def test_seed_keys_fold_the_seed_index_into_a_key_from_the_entropy():
    five = jb.seed_keys(rng.seed_sequences(7, range(5)))
    alone = jb.seed_keys(rng.seed_sequences(7, [3]))
    np.testing.assert_array_equal(jax.random.key_data(five[3]), jax.random.key_data(alone[0]))
    words = np.random.SeedSequence(7).generate_state(2, np.uint32)
    base = jax.random.wrap_key_data(jnp.asarray(words))
    np.testing.assert_array_equal(jax.random.key_data(jax.random.fold_in(base, 3)),
                                  jax.random.key_data(alone[0]))
    other = jb.seed_keys(rng.seed_sequences(8, [3]))
    assert not np.array_equal(jax.random.key_data(other[0]), jax.random.key_data(alone[0]))


def test_two_layer_compiles_once_per_shape_and_precision_is_scoped():
    kw = dict(d=64, K=2, M=2, activation="relu", t_max=3.0, n_times=12, seeds=3, backend="jax")
    x64_before = jax.config.jax_enable_x64
    a = hidyn.simulate("two_layer", lr=0.5, **kw)          # log-spaced times: many chunk lengths
    traces = jb.TRACE_COUNTS["two_layer_advance"]
    assert traces >= 1
    b = hidyn.simulate("two_layer", lr=0.3, **kw)           # new instance, new lr: no new trace
    assert jb.TRACE_COUNTS["two_layer_advance"] == traces
    assert a.attrs["backend"] == "jax" and a.attrs["precision"] == "float64"
    assert not np.allclose(a["Q"].values[:, -1], b["Q"].values[:, -1])
    # the global flag is untouched: float64 ran inside jax.enable_x64 only
    assert jax.config.jax_enable_x64 == x64_before
    c = hidyn.simulate("two_layer", lr=0.5, **kw)
    np.testing.assert_array_equal(a["Q"].values, c["Q"].values)   # reproducible


def test_two_layer_trajectory_does_not_depend_on_chunking():
    spec = models.get("two_layer", d=50, K=2, M=2, activation="erf", lr=0.8, noise=0.2, batch_size=2,
                      lr_second=0.3, train_second_layer=True)
    ss = rng.seed_sequences(0, [0, 1])
    states = []
    for chunks in ((100,), (1, 2, 33, 64)):
        be = jb.TwoLayerJaxBackend(spec)
        st = be.init(ss)
        for c in chunks:
            be.advance(st, c)
        states.append(st)
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(states[0]["W"]), np.asarray(states[1]["W"]), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(np.asarray(states[0]["v"]), np.asarray(states[1]["v"]), rtol=1e-13, atol=1e-13)


def test_two_layer_step_matches_the_update_rule():
    """Replay one step by hand from the same jax.random draws (docs/theory/teacher_student.md §1)."""
    spec = models.get("two_layer", d=40, K=2, M=3, activation="tanh", lr=0.7, lr_second=0.3,
                      train_second_layer=True, noise=0.2, A=[1.0, -0.5, 0.3], v0=[0.8, 1.2])
    be = jb.TwoLayerJaxBackend(spec)
    st = be.init(rng.seed_sequences(0, [0]))
    with jax.enable_x64(True):
        W0, v0, B = (np.asarray(st[k][0]) for k in ("W", "v", "B"))
        kx, kz = jax.random.split(jax.random.fold_in(st["keys"][0], 0))
        x = np.asarray(jax.random.normal(kx, (1, 40), jnp.float64))[0]
        zeta = float(jax.random.normal(kz, (1,), jnp.float64)[0])
    be.advance(st, 1)
    lam, nu = W0 @ x / np.sqrt(40), B @ x / np.sqrt(40)
    delta = np.tanh(nu) @ np.array([1.0, -0.5, 0.3]) + 0.2 * zeta - v0 @ np.tanh(lam)
    W1 = W0 + (0.7 / np.sqrt(40)) * np.outer(v0 * (1 - np.tanh(lam) ** 2) * delta, x)
    v1 = v0 + (0.3 / 40) * np.tanh(lam) * delta
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(st["W"][0]), W1, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(st["v"][0]), v1, rtol=1e-12)


def test_two_layer_agrees_with_theory_in_distribution():
    sim = hidyn.simulate("two_layer", d=250, K=2, M=2, activation="linear", lr=0.2, init_scale=0.5,
                         t_max=10.0, n_times=12, seeds=16, backend="jax")
    hidyn.compare(sim).assert_ok()


def test_two_layer_float32_is_recorded_and_close_in_law():
    kw = dict(d=100, K=2, M=2, activation="linear", lr=0.2, t_max=3.0, n_times=4, seeds=8, backend="jax")
    s32 = hidyn.simulate("two_layer", precision="float32", **kw)
    assert s32.attrs["precision"] == "float32"
    be = jb.TwoLayerJaxBackend(models.get("two_layer", d=16), "float32")
    st = be.init(rng.seed_sequences(0, [0]))
    be.advance(st, 3)
    assert st["W"].dtype == jnp.float32
    hidyn.compare(s32).assert_ok()


def test_custom_activation_is_refused():
    spec = models.get("two_layer", d=16, activation=(np.tanh, lambda x: 1 - np.tanh(x) ** 2))
    with pytest.raises(NotImplementedError, match="named activation"):
        jb.TwoLayerJaxBackend(spec)


# ---------------------------------------------------------------------------------------------------
# DLN
# ---------------------------------------------------------------------------------------------------
def _with_numpy_data(spec, seeds=(0, 1)):
    """A JAX state whose teacher and data are the numpy backend's (deterministic algorithms compare
    trajectory by trajectory)."""
    ss = rng.seed_sequences(0, list(seeds))
    ref = DLNNumpyBackend(spec)
    a = ref.init(ss)
    be = jb.DLNJaxBackend(spec)
    b = be.init(ss)
    with jax.enable_x64(True):
        b["beta_star"] = jnp.asarray(a["beta_star"])
        if spec.ratio is not None:
            b["X"], b["y"] = jnp.asarray(a["X"]), jnp.asarray(a["y"])
            if be.continuous:
                b["lambda_max"] = float(jnp.max(jb._dln_lambda_max(b["X"], jnp.asarray(spec.ratio), 50)))
    return ref, a, be, b


@pytest.mark.parametrize("ratio", [0.5, None])
def test_dln_gd_equals_numpy_gd_on_the_same_data(ratio):
    spec = models.get("dln", d=96, ratio=ratio, lr=0.1, init_scale=0.3)
    ref, a, be, b = _with_numpy_data(spec)
    for n in (1, 40, 9):
        ref.advance(a, n)
        be.advance(b, n)
    oa, ob = ref.observe(a), be.observe(b)
    for key in oa:
        np.testing.assert_allclose(ob[key], oa[key], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ratio, t_end", [(0.5, 3.0), (None, 5.0)])
def test_dln_rk4_gradient_flow_matches_numpy_dop853(ratio, t_end):
    """Fixed-step RK4 in mirror coordinates vs DOP853 (rtol 1e-8) on the same data: < 1e-7 relative."""
    spec = models.get("dln", d=96, ratio=ratio, algorithm="gf", init_scale=0.2, parametrization="pm")
    ref, a, be, b = _with_numpy_data(spec)
    for dt in (0.3, t_end - 0.3):
        ref.advance(a, dt)
        be.advance(b, dt)
    oa, ob = ref.observe(a), be.observe(b)
    for key in ("train_loss", "test_loss", "overlap", "norm1", "norm2"):
        np.testing.assert_allclose(ob[key], oa[key], rtol=1e-7, atol=1e-10)
    assert be.attrs(b)["gf_rk4_steps"] >= t_end / jb.GF_MAX_STEP


def test_dln_full_batch_sgd_equals_gd():
    """B = n distinct rows is the whole training set: minibatch SGD reproduces GD (to summation order)."""
    gd = models.get("dln", d=64, ratio=0.5, lr=0.1)
    sgd = gd.replace(algorithm="sgd", batch_size=gd.n)
    _, _, be1, b1 = _with_numpy_data(gd)
    be2 = jb.DLNJaxBackend(sgd)
    b2 = be2.init(rng.seed_sequences(0, [0, 1]))
    for key in ("beta_star", "X", "y"):
        b2[key] = b1[key]
    be1.advance(b1, 20)
    # (d/B)·X_Bᵀr with B = n equals Xᵀr/δ since d/n = 1/δ
    be2.advance(b2, 20)
    o1, o2 = be1.observe(b1), be2.observe(b2)
    np.testing.assert_allclose(o2["train_loss"], o1["train_loss"], rtol=1e-10)


def test_dln_population_gd_and_online_sgd_agree_with_the_closed_form():
    gd = hidyn.simulate("dln", d=128, ratio=None, lr=0.05, init_scale=0.5, t_max=6.0, n_times=6,
                        seeds=4, backend="jax")
    hidyn.compare(gd).assert_ok()
    sgd = hidyn.simulate("dln", d=128, ratio=None, algorithm="sgd", lr=0.01, batch_size=128,
                         init_scale=0.5, t_max=6.0, n_times=6, seeds=8, backend="jax")
    hidyn.compare(sgd).assert_ok()


def test_dln_gd_with_a_training_set_agrees_with_numpy_in_law():
    """Independent data (jax.random vs numpy Generators): seed means within 4 combined SEM."""
    kw = dict(d=128, ratio=0.5, lr=0.1, init_scale=0.3, times=[0.0, 2.0, 4.0], seeds=10)
    a = hidyn.simulate("dln", backend="jax", **kw)
    b = hidyn.simulate("dln", backend="numpy", **kw)
    for var in ("train_loss", "test_loss", "norm2"):
        xa, xb = a[var].values, b[var].values
        sem = np.sqrt(xa.var(0, ddof=1) / xa.shape[0] + xb.var(0, ddof=1) / xb.shape[0])
        assert np.all(np.abs(xa.mean(0) - xb.mean(0)) <= 4 * sem + 1e-12), var


def test_dln_float32():
    """Population GD is deterministic given the teacher (the same ±1 draws in both precisions)."""
    kw = dict(d=128, ratio=None, lr=0.05, init_scale=0.5, t_max=6.0, n_times=6, seeds=4, backend="jax")
    sim = hidyn.simulate("dln", precision="float32", **kw)
    assert sim.attrs["precision"] == "float32"
    ref = hidyn.simulate("dln", **kw)        # compiled already by the closed-form test above
    np.testing.assert_allclose(sim["test_loss"].values, ref["test_loss"].values, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------
# single-index
# ---------------------------------------------------------------------------------------------------
def test_single_index_agrees_with_theory_and_compiles_once():
    kw = dict(d=256, seeds=16, link="he2", activation="he2", geometry="sphere", spike=5.0, spike_angle=0.7,
              m0=0.2, t_max=8.0, n_times=10, backend="jax")
    sim = hidyn.simulate("single_index", lr=0.1, **kw)
    hidyn.compare(sim).assert_ok()
    traces = jb.TRACE_COUNTS["single_index_advance"]
    again = hidyn.simulate("single_index", lr=0.12, **kw)
    assert jb.TRACE_COUNTS["single_index_advance"] == traces
    t_half = np.asarray(again.attrs["t_half"])
    assert t_half.shape == (16,) and np.all((t_half == -1) | (t_half > 0))


def test_single_index_wn_sigma_square_loss_polynomial_student():
    sim = hidyn.simulate("single_index", d=128, seeds=12, geometry="wn_sigma", loss="square", link="he2",
                         activation=[0.0, 0.5, 1.0], spike=3.0, spike_angle=0.5, m0=0.3, lr=0.2, noise=0.1,
                         batch_size=2, t_max=4.0, n_times=6, backend="jax")
    # the Σ-norm constraint wᵀΣw = q + κs² = 1 holds after every step
    q, s = sim["q"].values, sim["m_spike"].values
    np.testing.assert_allclose(q + 3.0 * s * s, 1.0, rtol=1e-12)
    hidyn.compare(sim).assert_ok()


def test_single_index_custom_link_is_refused():
    spec = models.get("single_index", d=16, link=(np.tanh, lambda x: 1 - np.tanh(x) ** 2), activation="he2")
    with pytest.raises(NotImplementedError, match="registry or polynomial link"):
        jb.SingleIndexJaxBackend(spec)
