"""numba backends: bitwise identity with numpy on shared streams, agreement in law, auto selection."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

import hidyn  # noqa: E402
from hidyn import models, rng  # noqa: E402
from hidyn.solvers.mc import numba_backend as nb  # noqa: E402
from hidyn.solvers.mc.dln_numpy import DLNNumpyBackend  # noqa: E402
from hidyn.solvers.mc.two_layer_numpy import TwoLayerNumpyBackend  # noqa: E402

# The numpy reference pins its floating-point order (np.sum of products, see its advance), which the
# numba kernel reproduces: the bitwise tests compare against the reference itself.
ExactOrderNumpy = TwoLayerNumpyBackend


def _run(cls, spec, chunks, seeds=(0, 3, 5), precision="float64"):
    be = cls(spec, precision)
    state = be.init(rng.seed_sequences(0, list(seeds)))
    for c in chunks:
        be.advance(state, c)
    return be, state


# chunks that start mid-block, cross the 256-step block boundary twice and end mid-block
CHUNKS = (1, 5, 300, 7, 400)


def _assert_identical_runs(be_ref, ref, be_out, out, state_keys):
    """The two runs' state arrays ``state_keys`` and every observable are equal bit for bit."""
    for key in state_keys:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)
    obs_ref, obs_out = be_ref.observe(ref), be_out.observe(out)
    for key in obs_ref:
        np.testing.assert_array_equal(obs_out[key], obs_ref[key], err_msg=key)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 127, 128, 129, 255, 1000, 4097, 10_001])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pairwise_reproduces_numpy_sum(n, dtype):
    r = np.random.default_rng(n)
    a, b = r.standard_normal(n).astype(dtype), r.standard_normal(n).astype(dtype)
    assert nb.pairwise_dot(a, b) == np.sum(a * b)
    assert nb.pairwise_sum(a) == np.sum(a)


def test_arithmetic_activations_are_bitwise():
    for name in ("linear", "relu", "quadratic", "he1", "he2", "he3", "he4"):
        assert nb.activation_is_bitwise(name), name
    assert not nb.activation_is_bitwise("no-such-activation")


@pytest.mark.parametrize("act, extra", [
    ("linear", dict(noise=0.3, batch_size=3, lr_second=0.4, train_second_layer=True)),
    ("relu", dict(noise=0.2)),
    ("he3", dict(K=3, M=9, lr=0.05)),          # M ≥ 8: the unit sum uses the 8-accumulator leaf
])
def test_bitwise_identical_to_exact_order_numpy(act, extra):
    extra = dict(extra)
    K, M, lr = extra.pop("K", 2), extra.pop("M", 2), extra.pop("lr", 0.5)
    spec = models.get("two_layer", d=300, K=K, M=M, activation=act, lr=lr, **extra)
    assert nb.activation_is_bitwise(act)
    be_np, ref = _run(ExactOrderNumpy, spec, CHUNKS)
    be_nb, out = _run(nb.TwoLayerNumbaBackend, spec, CHUNKS)
    _assert_identical_runs(be_np, ref, be_nb, out, ("W", "v"))


def test_transcendental_activation_agrees_to_rounding_with_the_reference():
    """erf goes through scipy / numpy-SIMD exp in numpy and libm in numba: equal to ~1e-15, same stream."""
    spec = models.get("two_layer", d=300, K=2, M=2, activation="erf", lr=1.0, noise=0.1)
    _, ref = _run(TwoLayerNumpyBackend, spec, CHUNKS)
    _, exact = _run(ExactOrderNumpy, spec, CHUNKS)
    _, out = _run(nb.TwoLayerNumbaBackend, spec, CHUNKS)
    for other in (ref, exact):
        np.testing.assert_allclose(out["W"], other["W"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(out["v"], other["v"], rtol=0, atol=1e-12)


def test_seed_alone_equals_seed_in_a_run_and_threads_do_not_matter():
    spec = models.get("two_layer", d=200, K=2, M=2, activation="relu", lr=0.5, noise=0.2)
    _, many = _run(nb.TwoLayerNumbaBackend, spec, (300,), seeds=(0, 1, 2))
    _, one = _run(nb.TwoLayerNumbaBackend, spec, (300,), seeds=(2,))
    np.testing.assert_array_equal(many["W"][2], one["W"][0])
    import numba

    threads, draw_threads = nb._numba_threads(), hidyn.rng.draw_threads()
    try:
        numba.set_num_threads(1)
        nb.set_draw_threads(1)
        _, serial = _run(nb.TwoLayerNumbaBackend, spec, (300,), seeds=(0, 1, 2))
    finally:
        numba.set_num_threads(threads)
        nb.set_draw_threads(draw_threads)
    np.testing.assert_array_equal(serial["W"], many["W"])


def test_float32_runs_in_float32_and_stays_close_to_the_float32_reference():
    """float32 draws a different stream (numpy's float32 ziggurat): compare with the float32 reference,
    which evaluates some activations in float64, so agreement is to float32 rounding."""
    spec = models.get("two_layer", d=256, K=2, M=2, activation="erf", lr=0.5)
    _, ref = _run(TwoLayerNumpyBackend, spec, (200,), precision="float32")
    be, s32 = _run(nb.TwoLayerNumbaBackend, spec, (200,), precision="float32")
    assert s32["W"].dtype == np.float32 and s32["buffer"].dtype == np.float32
    np.testing.assert_allclose(s32["W"], ref["W"], rtol=0, atol=1e-4)
    sim = hidyn.simulate("two_layer", d=64, t_max=1.0, n_times=3, seeds=2, backend="numba", precision="float32")
    assert sim.attrs["precision"] == "float32" and sim.attrs["backend"] == "numba"


def test_agrees_with_theory_in_distribution():
    """Seed mean of 16 runs against the per-seed ODE theory, the family's default tolerance."""
    sim = hidyn.simulate("two_layer", d=250, K=2, M=2, activation="erf", lr=1.0, init_scale=0.5,
                         t_max=30.0, n_times=15, seeds=16, backend="numba")
    assert sim.attrs["backend"] == "numba"
    hidyn.compare(sim).assert_ok()


def test_custom_activation_is_refused_and_auto_falls_back():
    spec = models.get("two_layer", d=40, activation=(np.tanh, lambda x: 1 - np.tanh(x) ** 2))
    with pytest.raises(NotImplementedError, match="named activation"):
        nb.TwoLayerNumbaBackend(spec)
    sim = hidyn.simulate(spec, t_max=0.5, n_times=2, seeds=1)
    assert sim.attrs["backend"] == "numpy"


def test_memory_estimate_covers_the_input_block():
    spec = models.get("two_layer", d=4096, K=2, M=2)
    be = nb.TwoLayerNumbaBackend(spec)
    state = be.init(rng.seed_sequences(0, range(4)))
    held = sum(a.nbytes for a in state.values() if isinstance(a, np.ndarray))
    assert be.memory_bytes(4) >= held >= 4 * 256 * 4096 * 8


# ---------------------------------------------------------------------------------------------------
# DLN: fused full-batch GD
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio, parametrization", [(0.5, "uv"), (2.0, "pm"), (None, "uv")])
def test_fused_gd_equals_numpy_gd_on_the_same_data(ratio, parametrization):
    spec = models.get("dln", d=200, ratio=ratio, lr=0.1, parametrization=parametrization, init_scale=0.3)
    ss = rng.seed_sequences(0, [0, 1, 2])
    ref, fused = DLNNumpyBackend(spec), nb.DLNNumbaBackend(spec)
    a, b = ref.init(ss), fused.init(ss)
    np.testing.assert_array_equal(a["beta_star"], b["beta_star"])
    for n in (1, 30, 70):
        ref.advance(a, n)
        fused.advance(b, n)
    np.testing.assert_allclose(fused._beta(b), ref._beta(a), rtol=1e-10, atol=1e-12)
    oa, ob = ref.observe(a), fused.observe(b)
    for key in oa:
        np.testing.assert_allclose(ob[key], oa[key], rtol=1e-9, atol=1e-12)


def test_fused_kernel_shares_one_design_between_many_weight_vectors():
    """G columns sharing X, split over row chunks, equal G independent single-column runs."""
    r = np.random.default_rng(4)
    n, d, G = 96, 128, 5
    X = r.standard_normal((1, n, d)) / math.sqrt(d)
    y = r.standard_normal((1, G, n))
    wp = np.full((1, G, d), 0.3) + 0.01 * r.standard_normal((1, G, d))
    wm = np.full((1, G, d), 0.3)
    wp1, wm1 = wp.copy(), wm.copy()
    nb.dln_gd_fused(X, y, wp, wm, 20, 0.1, 2.0, 3)
    for g in range(G):
        a, b = wp1[:, g:g + 1].copy(), wm1[:, g:g + 1].copy()
        nb.dln_gd_fused(X, np.ascontiguousarray(y[:, g:g + 1]), a, b, 20, 0.1, 2.0, 1)
        np.testing.assert_allclose(wp[0, g], a[0, 0], rtol=1e-12)
        np.testing.assert_allclose(wm[0, g], b[0, 0], rtol=1e-12)


def test_fused_gd_seed_alone_equals_seed_in_a_run():
    spec = models.get("dln", d=128, ratio=0.5)
    a = hidyn.simulate(spec, t_max=2.0, n_times=4, seeds=3, backend="numba")
    b = hidyn.simulate(spec, t_max=2.0, n_times=4, seeds=[1], backend="numba")
    np.testing.assert_array_equal(a["train_loss"].sel(seed=1), b["train_loss"].sel(seed=1))


def test_observed_kernel_steps_like_the_fused_kernel_and_keeps_the_final_residual():
    """Split into calls (the cached gradient is the next call's first step), the observed kernel's
    weights equal one :func:`dln_gd_fused` run of the same steps bit for bit, and its residual is
    Xβ − y at the final weights (a numpy matmul, to rounding).  float64 only: a float32
    specialisation would cost CI ~15 s of compilation for the same code path."""
    precision = "float64"
    r = np.random.default_rng(7)
    S, n, d = 3, 70, 130            # n not a multiple of 4: the kernel's tail rows are covered too
    dt = np.dtype(precision)
    X = (r.standard_normal((S, n, d)) / math.sqrt(d)).astype(dt)
    y = r.standard_normal((S, 1, n)).astype(dt)
    wp = (0.3 + 0.01 * r.standard_normal((S, 1, d))).astype(dt)
    wm = np.full((S, 1, d), 0.3, dtype=dt)
    wp1, wm1 = wp.copy(), wm.copy()
    nb.dln_gd_fused(X, y, wp1, wm1, 12, 0.1, 2.0, 1)
    grad, res = np.zeros((S, 1, d), dtype=dt), np.zeros((S, 1, n), dtype=dt)
    valid = False
    for k in (1, 5, 6):
        nb.dln_gd_fused_observed(X, y, wp, wm, k, 0.1, 2.0, grad, res, valid)
        valid = True
    np.testing.assert_array_equal(wp, wp1)
    np.testing.assert_array_equal(wm, wm1)
    beta = (wp.astype(np.float64) ** 2 - wm.astype(np.float64) ** 2)
    expected = np.matmul(X.astype(np.float64), beta[:, 0, :, None])[..., 0] - y[:, 0, :]
    np.testing.assert_allclose(res[:, 0, :], expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("parametrization", ["uv", "pm"])
def test_gd_observe_reuses_the_kernel_residual_and_equals_the_matmul(parametrization):
    """After advance, GD's train loss comes from the kernel's last pass (no matmul over X) and equals
    the recomputed (1/n)‖Xβ − y‖² to 1e-12 relative; the trajectory is the plain fused kernel's."""
    spec = models.get("dln", d=160, ratio=0.6, lr=0.2, noise=0.1, parametrization=parametrization,
                      init_scale=0.3)
    ss = rng.seed_sequences(0, [0, 1, 2])
    be = nb.DLNNumbaBackend(spec)
    state = be.init(ss)
    wp, wm = state["wp"].copy()[:, None, :], state["wm"].copy()[:, None, :]
    for n in (1, 9, 40):
        be.advance(state, n)
        assert state["r"] is not None and np.shares_memory(state["r"], state["gd_res"])
        obs = be.observe(state)
        beta = be._beta(state)
        recomputed = np.mean((np.matmul(state["X"], beta[..., None])[..., 0] - state["y"]) ** 2, axis=-1)
        np.testing.assert_allclose(obs["train_loss"], recomputed, rtol=1e-12, atol=0)
    nb.dln_gd_fused(state["X"], state["y3"], wp, wm, 50, spec.clock * spec.lr, 1.0 / spec.ratio, 1)
    np.testing.assert_array_equal(state["wp"], wp[:, 0, :])
    np.testing.assert_array_equal(state["wm"], wm[:, 0, :])
    # weights reset in place: the cached gradient (formed at the old weights) must not be used
    state["wp"][:], state["wm"][:] = state["wp0"], state["wm0"]
    be.advance(state, 50)
    np.testing.assert_array_equal(state["wp"], wp[:, 0, :])
    np.testing.assert_array_equal(state["wm"], wm[:, 0, :])


DLN_SGD_CASES = [
    dict(ratio=None, batch_size=1, noise=0.1),                       # online, label noise
    dict(ratio=None, batch_size=9, noise=0.0),                       # online, B > 8 (8-lane sums)
    dict(ratio=None, batch_size=2, noise=0.3, parametrization="pm"),
    dict(ratio=0.5, batch_size=7, noise=0.1),                        # minibatch
    dict(ratio=2.0, batch_size=1, noise=0.0, parametrization="pm"),
]


@pytest.mark.parametrize("params", DLN_SGD_CASES)
def test_dln_sgd_is_bitwise_the_numpy_reference(params):
    """Same Generators, same draws, same order of operations: float64 trajectories are identical, also
    when the numba backend's drawn chunks end in the middle of an advance (small ``chunk_floats``)."""
    spec = models.get("dln", d=300, algorithm="sgd", lr=0.01, init_scale=0.3, **params)
    a_be, a = _run(DLNNumpyBackend, spec, (1, 50, 333))
    be = nb.DLNNumbaBackend(spec)
    be.chunk_floats = 5 * (2 * spec.batch + spec.d)          # 5 steps per chunk: many chunk boundaries
    b = be.init(rng.seed_sequences(0, [0, 3, 5]))
    for c in (1, 50, 333):
        be.advance(b, c)
    _assert_identical_runs(a_be, a, be, b, ("wp", "wm"))


def test_dln_sgd_seed_alone_equals_seed_in_a_run_for_any_thread_count():
    import numba

    spec = models.get("dln", d=256, ratio=None, algorithm="sgd", batch_size=1, lr=0.01, noise=0.1)
    a = hidyn.simulate(spec, t_max=3.0, n_times=4, seeds=4, backend="numba")
    old, old_draw = numba.get_num_threads(), rng.draw_threads()
    try:
        numba.set_num_threads(1)
        rng.set_draw_threads(1)
        b = hidyn.simulate(spec, t_max=3.0, n_times=4, seeds=[2], backend="numba")
    finally:
        numba.set_num_threads(old)
        rng.set_draw_threads(old_draw)
    np.testing.assert_array_equal(a["test_loss"].sel(seed=2), b["test_loss"].sel(seed=2))


def test_dln_sgd_float32_stays_close_to_the_float32_reference():
    spec = models.get("dln", d=300, ratio=None, algorithm="sgd", batch_size=3, lr=0.01, noise=0.1)
    _, a = _run(DLNNumpyBackend, spec, (200,), precision="float32")
    _, b = _run(nb.DLNNumbaBackend, spec, (200,), precision="float32")
    assert b["wp"].dtype == np.float32
    np.testing.assert_allclose(b["wp"], a["wp"], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, None])
def test_dln_gradient_flow_with_the_fused_gradient_matches_numpy(ratio):
    """Same DOP853 integrator in mirror coordinates; only the right-hand side's summation order differs."""
    spec = models.get("dln", d=200, ratio=ratio, algorithm="gf", init_scale=0.3)
    a_be, a = _run(DLNNumpyBackend, spec, (0.5, 2.0))
    b_be, b = _run(nb.DLNNumbaBackend, spec, (0.5, 2.0))
    np.testing.assert_allclose(b_be._beta(b), a_be._beta(a), rtol=1e-9, atol=1e-12)
    assert b_be.attrs(b)["gf_integrator"] == a_be.attrs(a)["gf_integrator"]


def test_fused_gradient_equals_two_matvecs():
    r = np.random.default_rng(2)
    X = r.standard_normal((3, 50, 70))
    y = r.standard_normal((3, 2, 50))
    beta = r.standard_normal((3, 2, 70))
    expected = np.einsum("snd,sgn->sgd", X, np.einsum("snd,sgd->sgn", X, beta) - y) / 0.7
    for chunks in (1, 3):
        np.testing.assert_allclose(nb.dln_fused_gradient(X, y, beta, 1 / 0.7, chunks), expected, rtol=1e-11)


def test_auto_uses_numba_for_every_dln_algorithm():
    for algorithm, extra in (("gf", {}), ("sgd", {"batch_size": 8}), ("gd", {})):
        spec = models.get("dln", d=32, algorithm=algorithm, **extra)
        assert hidyn.api._backend_class(spec, "auto")[0] == "numba"


def test_auto_does_not_import_jax_without_a_gpu_plugin():
    code = ("import sys, pkgutil, hidyn\n"
            "gpu = any(m.name.startswith(('jax_cuda', 'jax_rocm')) for m in pkgutil.iter_modules())\n"
            "sim = hidyn.simulate('two_layer', d=32, t_max=0.2, n_times=2, seeds=1)\n"
            "print(sim.attrs['backend'], gpu, 'jax' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    backend, gpu, imported = out.stdout.split()
    if gpu == "False":
        assert backend == "numba" and imported == "False"


# ---------------------------------------------------------------------------------------------------
# single-index: the scaled-weights SGD of single_index_numpy.py
# ---------------------------------------------------------------------------------------------------
SI_CASES = [
    dict(geometry="sphere", spike=5.0, spike_angle=0.7, m0=0.2, lr=0.3),
    dict(geometry="plain", lr=0.05, m0=0.3, noise=0.2),
    dict(geometry="sigma_sphere", spike=2.0, spike_angle=0.3, loss="square", link="he3",
         activation=[0.0, 1.0, 0.5], m0=0.3, batch_size=3),
    dict(geometry="wn_sigma", spike=3.0, spike_angle=0.5, m0=0.2, lr=0.5, noise=0.1),
    dict(geometry="sphere", link="relu", activation="relu", loss="square", m0=0.2, batch_size=11),  # 8-lane sums
    dict(geometry="wn_sigma", spike=3.0, spike_angle=0.5, m0=0.2, lr=40.0, batch_size=2),  # huge steps
]


@pytest.mark.parametrize("params", SI_CASES, ids=[f"{c['geometry']}-b{c.get('batch_size', 1)}-lr{c.get('lr')}"
                                                  for c in SI_CASES])
def test_single_index_is_bitwise_the_numpy_reference_on_the_same_stream(params):
    """Same streams and the reference's order of every reduction: weights, scale, tracked overlaps,
    observables and escape steps are identical in float64, across blocks and resyncs."""
    from hidyn.solvers.mc.single_index_numpy import SingleIndexNumpyBackend

    spec = models.get("single_index", d=300, **params)
    be_np, ref = _run(SingleIndexNumpyBackend, spec, (1, 70, 300, 5, 700), seeds=(0, 4, 7))
    be_nb, out = _run(nb.SingleIndexNumbaBackend, spec, (1, 70, 300, 5, 700), seeds=(0, 4, 7))
    _assert_identical_runs(be_np, ref, be_nb, out, ("V", "alpha", "m", "s", "q", "hit"))
    np.testing.assert_array_equal(be_nb.attrs(out)["t_half"], be_np.attrs(ref)["t_half"])


def test_single_index_agrees_with_theory_and_auto_picks_numba():
    sim = hidyn.simulate("single_index", d=256, seeds=16, link="he2", activation="he2", geometry="sphere",
                         spike=5.0, spike_angle=0.7, lr=0.1, m0=0.2, t_max=8.0, n_times=10)
    assert sim.attrs["backend"] == "numba"
    hidyn.compare(sim).assert_ok()


def test_single_index_custom_student_is_refused():
    spec = models.get("single_index", d=16, link="he2", activation=(np.tanh, lambda x: 1 - np.tanh(x) ** 2))
    with pytest.raises(NotImplementedError, match="student activation"):
        nb.SingleIndexNumbaBackend(spec)
    assert hidyn.api._backend_class(spec, "auto")[0] == "numpy"
