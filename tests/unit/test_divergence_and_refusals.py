"""Runaway runs are detected and reported, never returned as ordinary curves; comparisons that cannot mean
anything are refused or flagged (issue #12 classes 1, 2, 4; issue #17 item 5)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import hidyn
from hidyn.admissibility import Q_RUNAWAY, single_index_margin, two_layer_margin, two_layer_scale
from hidyn.checks import MIN_SEEDS, check_run_size, work_per_step
from hidyn.families import family
from hidyn.solvers.ode.integrate import integrate


def _diverged(caught):
    return [w for w in caught if issubclass(w.category, RuntimeWarning) and "diverged" in str(w.message)]


# ---- admissible sets -------------------------------------------------------------------------------------
def test_two_layer_margins():
    T = np.eye(2)
    psd, run = two_layer_margin(np.eye(2), np.zeros((2, 2)), T, 1.0)
    assert psd > 0 and run > 0
    # R larger than √(Q T) allows: no real vectors have these overlaps
    psd, _ = two_layer_margin(np.eye(2), 2.0 * np.eye(2), T, 1.0)
    assert psd < 0
    # a perfectly learnt teacher (Ω singular) is admissible: round-off must not flag it
    psd, _ = two_layer_margin(np.eye(2), np.eye(2) * (1 + 1e-14), T, 1.0)
    assert psd >= 0
    # norms: the runaway limit is Q_RUNAWAY times the scale max(1, T_nn, Q_kk(0))
    assert two_layer_scale(T, 4.0 * np.eye(2)) == 4.0
    Q = np.diag([Q_RUNAWAY * 4.0 * 1.01, 1.0])
    _, run = two_layer_margin(Q, np.zeros((2, 2)), T, 4.0)
    assert run < 0
    # batched over seeds, NaN → inadmissible
    Qs = np.stack([np.eye(2), np.full((2, 2), np.nan)])
    psd, run = two_layer_margin(Qs, np.zeros((2, 2, 2)), T, 1.0)
    assert psd[0] > 0 and psd[1] == -np.inf and run[1] == -np.inf


def test_single_index_margin_and_mc_check():
    c = np.cos(np.pi / 4)
    assert single_index_margin(0.5, 0.5 * c, 1.0, c) > 0
    assert single_index_margin(1.1, 1.1 * c, 1.0, c) < 0          # |m| > 1 on the sphere
    assert single_index_margin(0.0, 0.0, -0.1, c) < 0              # negative squared norm
    assert single_index_margin(1.0, 1.0, 1.0, 1.0) >= 0           # aligned spike, w = θ*
    spec = hidyn.models.get("single_index", d=64, spike=1.0, spike_angle=np.pi / 4)
    check = family("single_index").inadmissible(spec)
    obs = {"m": np.array([0.3, 1.2]), "m_spike": np.array([0.3 * c, 1.2 * c]), "q": np.ones(2)}
    flags = check(obs, obs)
    assert [bool(v[0]) for v in flags.values()] == [False] and [bool(v[1]) for v in flags.values()] == [True]


def test_integrate_admissible_event_stops_and_records():
    times = np.linspace(0.0, 3.0, 7)
    with pytest.warns(RuntimeWarning, match="left the box"):
        res = integrate(lambda t, y: np.ones(1), [0.0], times, admissible={"left the box": lambda y: 1.0 - y[0]})
    assert res.info["diverged_at"] == pytest.approx(1.0, abs=1e-9)
    assert res.info["divergence_reason"] == "left the box"
    assert np.all(np.isnan(res.y[times > 1.0])) and np.all(np.isfinite(res.y[times < 1.0]))
    with pytest.raises(ValueError, match="outside the admissible set"):
        integrate(lambda t, y: np.ones(1), [2.0], times, admissible={"left the box": lambda y: 1.0 - y[0]})


# ---- two-layer: silent divergence at lr far beyond stability ---------------------------------------------
def test_two_layer_mc_runaway_weights_are_flagged():
    """erf saturates, so ε_g stays O(1) at lr = 50 while the weights grow without bound: the loss blow-up test
    alone never fires; the admissible-set check must (issue #12 class 1)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim = hidyn.simulate("two_layer", d=50, K=2, M=2, activation="erf", lr=50.0, t_max=10.0, n_times=12,
                             seeds=3, backend="numpy")
    assert len(_diverged(caught)) == 1
    at = np.asarray(sim.attrs["diverged_at"])
    assert np.all(at > 0)
    assert "running away" in sim.attrs["divergence_reason"]
    t = sim["time"].values
    for i, ti in enumerate(at):
        assert np.all(np.isnan(sim["Q"].values[i, t >= ti])) and np.all(np.isfinite(sim["Q"].values[i, t < ti]))
    assert np.all(np.isfinite(sim["test_loss"].values[:, 0]))


def test_two_layer_mc_stable_lr_is_not_flagged():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sim = hidyn.simulate("two_layer", d=50, K=2, M=2, lr=1.0, t_max=10.0, n_times=6, seeds=3, backend="numpy")
    assert np.all(np.asarray(sim.attrs["diverged_at"]) == -1.0)


def test_two_layer_ode_runaway_is_flagged_and_stable_ode_is_not():
    with pytest.warns(RuntimeWarning, match="running away"):
        th = hidyn.theory("two_layer", K=2, M=2, lr=50.0, t_max=20.0, n_times=20)
    t_div = th.attrs["ode_diverged_at"]
    assert 0 < t_div < 20
    t = th["time"].values
    assert np.all(np.isnan(th["Q"].values[t > t_div])) and np.all(np.isfinite(th["Q"].values[t < t_div]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ok = hidyn.theory("two_layer", K=2, M=2, lr=1.0, t_max=100.0, n_times=10)
    assert ok.attrs["ode_diverged_at"] == -1.0


def test_two_layer_per_seed_odes_warn_once():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = hidyn.simulate("two_layer", d=50, K=2, M=2, lr=50.0, t_max=5.0, n_times=8, seeds=3, backend="numpy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        th = hidyn.theory("two_layer", init=sim)
    assert len(_diverged(caught)) == 1
    per = np.asarray(th.attrs["ode_diverged_at_per_seed"])
    assert per.shape == (3,) and np.all(per > 0)


# ---- runaway requests --------------------------------------------------------------------------------------
def test_run_size_estimate_and_override():
    spec = hidyn.models.get("dln", d=64, ratio=0.5)
    assert work_per_step(spec) == 2 * 32 * 64
    # the exact reduced single-index chain costs O(1) per step at any d: a d = 10⁹ run is not refused
    si = hidyn.models.get("single_index", d=10 ** 9)
    assert work_per_step(si, type("R", (), {"name": "reduced"})()) == 50.0 < work_per_step(si)
    backend = type("B", (), {"time_per_step": 0.1, "variables": {"test_loss": ()}})()
    est = check_run_size(spec, backend, 2, np.array([0.0, 1.0]))
    assert est["work_estimate"] == pytest.approx((10 + 2) * 2 * 32 * 64 * 2)
    with pytest.raises(ValueError, match="max_work=1e"):
        check_run_size(spec, backend, 2, np.array([0.0, 1.0]), max_work=1e3)
    # an explicit max_work lets a run through that the default refuses
    with pytest.raises(ValueError, match="multiply-adds"):
        hidyn.simulate("dln", d=16, ratio=None, algorithm="gd", lr=0.1, t_max=1.0, seeds=2, backend="numpy",
                       max_work=10.0)
    sim = hidyn.simulate("dln", d=16, ratio=None, algorithm="gd", lr=0.1, t_max=1.0, n_times=3, seeds=2,
                         backend="numpy", max_work=1e6)
    assert sim.sizes["time"] == 3


# ---- comparisons -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pop():
    return {n: hidyn.simulate("dln", d=32, ratio=None, algorithm="gf", t_max=1.0, n_times=4, seeds=n,
                              backend="numpy") for n in (2, MIN_SEEDS)}


def test_compare_warns_below_min_seeds_and_says_so_in_summary(pop):
    with pytest.warns(RuntimeWarning, match="only 2 seed"):
        cmp = hidyn.compare(pop[2])
    assert "only 2 seed" in cmp.summary(file=open("/dev/null", "w"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cmp = hidyn.compare(pop[MIN_SEEDS])
    assert "seed(s)" not in cmp.summary(file=open("/dev/null", "w"))


def test_compare_accepts_legitimate_differences_and_same_spec_false(pop):
    sim = pop[MIN_SEEDS]
    # the d → ∞ theory computed at another d and with the default algorithm is the same closed form
    th = hidyn.theory("dln", ratio=None, d=4096, algorithm="gd", times=sim["time"].values,
                      sparsity=round(0.1 * 32) / 32)
    assert hidyn.compare(sim, th).passed
    other = hidyn.theory("dln", ratio=None, noise=0.3, times=sim["time"].values)
    with pytest.raises(ValueError, match="noise"):
        hidyn.compare(sim, other)
    assert not hidyn.compare(sim, other, same_spec=False).passed       # allowed, and it fails as it should


# ---- sweeps ------------------------------------------------------------------------------------------------
def _fails_silently(**kwargs):
    raise KeyError()                      # an exception whose str() is empty


def test_sweep_every_point_failed_names_the_error_on_the_first_line():
    with pytest.raises(RuntimeError) as info:
        hidyn.sweep(_fails_silently, {"lr": [0.1, 0.2]}, progress=False)
    first = str(info.value).splitlines()[0]
    assert "KeyError" in first and "lr" in first
