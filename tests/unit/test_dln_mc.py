"""The numpy DLN Monte-Carlo backend: seeding, algorithms, exactness checks, divergence."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import hidyn
from hidyn import models, rng
from hidyn.solvers.closed_form.dln import beta_flow
from hidyn.solvers.mc.dln_numpy import DLNNumpyBackend

SMALL = dict(d=64, t_max=2.0, n_times=8, seeds=3)


def test_same_seed_same_result_and_seed_index_independence():
    a = hidyn.simulate("dln", **SMALL)
    b = hidyn.simulate("dln", **SMALL)
    assert a.equals(b)
    one = hidyn.simulate("dln", **{**SMALL, "seeds": [2]})
    np.testing.assert_array_equal(one["train_loss"].sel(seed=2), a["train_loss"].sel(seed=2))
    other = hidyn.simulate("dln", seed=1, **SMALL)
    assert not np.allclose(other["train_loss"].values, a["train_loss"].values)
    assert a.attrs["seed_entropy"] == "0" and other.attrs["seed_entropy"] == "1"


def test_times_are_whole_steps():
    # η = 0.1: 0.04 → step 0 (a duplicate of t = 0, kept once), 0.26 → step 3, 1.0 → step 10
    sim = hidyn.simulate("dln", d=32, lr=0.1, times=[0.0, 0.04, 0.26, 1.0], seeds=1)
    np.testing.assert_allclose(sim["time"].values, [0.0, 0.3, 1.0])
    assert sim.attrs["n_steps"] == 10


def _run(spec, times, seeds=(0,)):
    be = DLNNumpyBackend(spec)
    state = be.init(rng.seed_sequences(0, list(seeds)))
    return be, state


def _beta_at(spec, t_end, seeds=(0,)):
    be, state = _run(spec, None, seeds)
    n = t_end if be.time_per_step is None else int(round(t_end / spec.lr))
    be.advance(state, n)
    return be._beta(state), state


def test_mirror_gradient_flow_is_the_small_step_limit_of_gd():
    """GD converges to the mirror-coordinate GF at rate O(η) (errors halve with η)."""
    base = dict(d=200, ratio=0.5, init_scale=0.3, noise=0.1)
    gf, _ = _beta_at(models.get("dln", algorithm="gf", **base), 4.0)
    errs = []
    for lr in (0.04, 0.02, 0.01):
        gd, _ = _beta_at(models.get("dln", algorithm="gd", lr=lr, **base), 4.0)
        errs.append(np.max(np.abs(gd - gf)))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), (errs, ratios)
    # Richardson 2·GD(η/2) − GD(η) removes the O(η) term: the remainder bounds GF's own error
    gd1, _ = _beta_at(models.get("dln", algorithm="gd", lr=0.02, **base), 4.0)
    gd2, _ = _beta_at(models.get("dln", algorithm="gd", lr=0.01, **base), 4.0)
    assert np.max(np.abs(2 * gd2 - gd1 - gf)) < 0.05 * errs[-1]


@pytest.mark.parametrize("init", ["pesme", "balanced"])
@pytest.mark.parametrize("parametrization", ["uv", "pm"])
def test_orthogonal_design_gradient_flow_equals_closed_form(init, parametrization):
    """XᵀX = δI: finite-d GF equals the §3 closed form coordinate by coordinate, b = Xᵀy/δ."""
    d, delta = 50, 2.0
    spec = models.get("dln", d=d, ratio=delta, algorithm="gf", init=init, parametrization=parametrization,
                      init_scale=0.2, noise=0.3, teacher="gauss", sparsity=0.4)
    be, state = _run(spec, None)
    n = spec.n
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((n, d)))
    X = math.sqrt(delta) * q
    y = X @ state["beta_star"][0] + spec.noise * np.random.default_rng(6).standard_normal(n)
    state["X"][0], state["y"][0] = X, y
    b = X.T @ y / delta
    from hidyn.models.dln import initial_pq

    p0, q0 = initial_pq(spec)
    t = 0.0
    for dt in (0.3, 1.7, 4.0):
        be.advance(state, dt)
        t += dt
        np.testing.assert_allclose(be._beta(state)[0], beta_flow(t, b, p0, q0, spec.clock), atol=1e-7)


def test_online_gradient_sampler_matches_direct_rows_in_law():
    """The O(B + d) online-SGD gradient has the law of (d/B)X_Bᵀ(X_BΔβ − σξ) with fresh rows."""
    d, B, sigma, n_draws = 12, 3, 0.4, 40_000
    spec = models.get("dln", d=d, ratio=None, algorithm="sgd", batch_size=B, noise=sigma, lr=0.01)
    be, state = _run(spec, None)
    r = np.random.default_rng(1)
    beta = r.standard_normal((1, d)) * 0.5
    state["beta_star"][0] = r.standard_normal(d)
    fast = np.stack([be._online_gradient(state, beta)[0] for _ in range(n_draws)])
    delta = beta[0] - state["beta_star"][0]
    X = r.standard_normal((n_draws, B, d)) / math.sqrt(d)
    res = X @ delta - sigma * r.standard_normal((n_draws, B))
    direct = (d / B) * np.einsum("kbi,kb->ki", X, res)
    for g in (fast, direct):
        se = g.std(0) / math.sqrt(n_draws)
        assert np.all(np.abs(g.mean(0) - delta) < 5 * se)  # E[g] = Δβ (population gradient)
    e = delta / np.linalg.norm(delta)
    perp = np.linalg.svd(np.eye(d) - np.outer(e, e))[0][:, 0]
    for direction in (e, perp):
        v_fast, v_direct = np.var(fast @ direction), np.var(direct @ direction)
        assert abs(v_fast / v_direct - 1) < 0.05, (v_fast, v_direct)
    # covariance between the two directions vanishes in both
    assert abs(np.corrcoef(fast @ e, fast @ perp)[0, 1]) < 0.03


def test_online_gradient_is_the_projection_formula():
    """c_z·z + κδ (the evaluated form) equals e(r·a)/‖δ‖ + c_z(z − (z·e)e) (the derived form)."""
    from hidyn.solvers.mc.dln_numpy import online_gradient

    r = np.random.default_rng(3)
    d, B, sigma = 50, 4, 0.3
    for _ in range(20):
        delta = r.standard_normal(d) * r.uniform(1e-3, 10)
        draws = r.standard_normal(2 * B + d)
        norm = np.linalg.norm(delta)
        a = draws[:B] * norm / math.sqrt(d)
        res = a - sigma * draws[B:2 * B]
        z, e = draws[2 * B:], delta / norm
        derived = (d / B) * (e * (res @ a) / norm + (np.linalg.norm(res) / math.sqrt(d)) * (z - (z @ e) * e))
        np.testing.assert_allclose(online_gradient(delta, draws, B, sigma), derived, rtol=1e-10, atol=1e-12)
    # at δ = 0 only the isotropic part is left
    draws = r.standard_normal(2 * B + d)
    res = -sigma * draws[B:2 * B]
    np.testing.assert_allclose(online_gradient(np.zeros(d), draws, B, sigma),
                               (d / B) * np.linalg.norm(res) / math.sqrt(d) * draws[2 * B:], rtol=1e-14)


def test_full_batch_sgd_equals_gd():
    base = dict(d=40, ratio=1.0, lr=0.05, t_max=1.0, n_times=5, seeds=2)
    gd = hidyn.simulate("dln", algorithm="gd", **base)
    sgd = hidyn.simulate("dln", algorithm="sgd", batch_size=40, **base)
    np.testing.assert_allclose(sgd["train_loss"].values, gd["train_loss"].values, rtol=1e-10)


def test_gd_divergence_is_reported_not_silent():
    with pytest.warns(RuntimeWarning, match="diverged"):
        sim = hidyn.simulate("dln", d=64, lr=3.0, t_max=60.0, seeds=2)
    div = np.asarray(sim.attrs["diverged_at"])
    assert np.all(div > 0)
    t_after = sim["time"].values > div.max()
    assert np.all(np.isnan(sim["train_loss"].values[:, t_after]))
    assert np.all(np.isfinite(sim["train_loss"].values[:, sim["time"].values < div.min()]))


def test_float32_precision_close_to_float64():
    kw = dict(d=128, t_max=5.0, n_times=10, seeds=2)
    a = hidyn.simulate("dln", **kw)
    b = hidyn.simulate("dln", precision="float32", **kw)
    assert b.attrs["precision"] == "float32"
    np.testing.assert_allclose(b["test_loss"].values, a["test_loss"].values, rtol=1e-3)


def test_population_gf_equals_closed_form_exactly():
    sim = hidyn.simulate("dln", d=256, ratio=None, algorithm="gf", seeds=2, teacher="rademacher")
    cmp = hidyn.compare(sim)
    assert cmp.passed
    assert float(np.abs(cmp.data["test_loss_residual"]).max()) < 1e-7


def test_memory_guard_refuses_oversized_runs():
    with pytest.raises(MemoryError, match="GiB"):
        hidyn.simulate("dln", d=200_000, ratio=4.0, seeds=64, t_max=1.0)


def test_no_warnings_on_a_normal_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hidyn.simulate("dln", d=64, t_max=1.0, seeds=2, progress=False)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 3])
def test_designs_drawn_on_the_draw_threads_equal_the_serial_draw(precision, threads):
    """init draws each seed's X and y on the draw threads; the values are bitwise those of the serial
    loop over seeds (each seed's own Generator: teacher, then X, then label noise)."""
    spec = models.get("dln", d=64, ratio=0.75, noise=0.2)
    ss = rng.seed_sequences(3, [0, 2, 5, 6])
    old = rng.draw_threads()
    rng.set_draw_threads(threads)
    try:
        state = DLNNumpyBackend(spec, precision).init(ss)
    finally:
        rng.set_draw_threads(old)
    from hidyn.solvers.mc.dln_numpy import draw_teacher
    dt = np.dtype(precision)
    for i, s in enumerate(ss):
        r = np.random.Generator(np.random.PCG64(s))
        bs = draw_teacher(r, spec.d, spec.sparsity, spec.teacher, spec.exact_sparsity)
        X = (r.standard_normal((spec.n, spec.d)) / math.sqrt(spec.d)).astype(dt)
        y = (X @ bs + spec.noise * r.standard_normal(spec.n)).astype(dt)
        np.testing.assert_array_equal(state["X"][i], X)
        np.testing.assert_array_equal(state["y"][i], y)
        np.testing.assert_array_equal(state["beta_star"][i], bs.astype(dt))
