"""Provenance of theory results (issue #11 item 5) and units of the time coordinate (issue #17 item 6)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hidyn
from hidyn.results import DIMENSIONLESS


def _no_dimension(ds):
    assert ds.attrs["limit"] == "d->inf"
    assert "d" not in ds.attrs and "n" not in ds.attrs and "n_seeds" not in ds.attrs
    cfg = json.loads(ds.attrs["config_json"])
    assert "d" not in cfg and cfg["model"] == ds.attrs["model"]


@pytest.mark.parametrize("model,params", [
    ("dln", dict(d=1000, ratio=None)),
    ("dln", dict(d=1000, ratio=0.5, method="dmft", lr=0.1, t_max=0.3, init_scale=1.0, n_samples=400, n_batches=4)),
    ("two_layer", dict(d=1000, K=2, M=2, lr=0.5, t_max=2.0)),
    ("single_index", dict(d=1000, link="he2", lr=0.1, m0=0.2, t_max=2.0)),
])
def test_infinite_d_theory_records_no_dimension(model, params):
    _no_dimension(hidyn.theory(model, **params))


def test_dln_infinite_d_drops_finite_instance_fields_and_compare_still_works():
    th = hidyn.theory("dln", d=4096, ratio=None, exact_sparsity=True, batch_size=64, algorithm="sgd", lr=0.01,
                      t_max=1.0, n_times=5)
    _no_dimension(th)
    cfg = json.loads(th.attrs["config_json"])
    assert "exact_sparsity" not in cfg and "batch_size" not in cfg and cfg["algorithm"] == "sgd"
    # compare rebuilds the spec from the simulation, which does record its d
    sim = hidyn.simulate("dln", d=256, ratio=None, algorithm="gd", lr=0.05, t_max=1.0, n_times=5, seeds=3,
                         backend="numpy")
    assert sim.attrs["d"] == 256 and json.loads(sim.attrs["config_json"])["d"] == 256
    cmp = hidyn.compare(sim)
    assert cmp.d == 256 and cmp.data.attrs["d"] == 256
    # a d → ∞ result still names a valid spec (the family's defaults fill the finite-d fields)
    assert hidyn.results.spec_from_dataset(th).ratio is None


def test_theory_from_a_simulation_drops_its_dimension():
    sim = hidyn.simulate("two_layer", d=200, K=2, M=2, lr=0.5, t_max=1.0, n_times=4, seeds=2, backend="numpy")
    th = hidyn.theory("two_layer", init=sim)
    _no_dimension(th)
    assert np.array_equal(th["time"].values, sim["time"].values)


@pytest.mark.parametrize("method", ["interpolator", "saddle_to_saddle"])
def test_explicit_instance_records_its_shape_not_spec_defaults(method):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 8)) / np.sqrt(8)
    beta_star = np.zeros(8)
    beta_star[:2] = 1.0
    y = X @ beta_star
    th = hidyn.theory("dln", method=method, X=X, y=y, init_scale=1e-3)
    assert th.attrs["limit"] == "explicit instance"
    assert th.attrs["n_rows"] == 4 and th.attrs["n_features"] == 8
    for key in ("d", "ratio", "sparsity", "teacher", "noise", "lr", "algorithm"):
        assert key not in th.attrs, key
    cfg = json.loads(th.attrs["config_json"])
    assert set(cfg) == {"model", "init_scale", "init", "parametrization"} and cfg["init_scale"] == 1e-3
    with_star = hidyn.theory("dln", method=method, X=X, y=y, init_scale=1e-3, beta_star=beta_star, noise=0.2)
    assert with_star.attrs["noise"] == 0.2   # it enters the recorded test error


@pytest.mark.parametrize("model,params,units", [
    ("dln", dict(algorithm="gd"), "lr * steps (GD)"),
    ("dln", dict(algorithm="sgd", batch_size=8), "lr * steps (SGD)"),
    ("dln", dict(algorithm="gf"), "gradient-flow time"),
    ("dln", dict(algorithm="gf", parametrization="pm"), "gradient-flow time, pm clock (runs 2x the uv clock)"),
    ("two_layer", dict(K=1, M=1), "steps / d"),
    ("single_index", dict(), "steps / d"),
])
def test_time_units_name_the_algorithm_clock(model, params, units):
    sim = hidyn.simulate(model, d=32, seeds=2, t_max=0.5, n_times=3, backend="numpy", **params)
    assert sim["time"].attrs["units"] == units != DIMENSIONLESS
    # losses and order parameters are dimensionless, deliberately
    assert all(sim[v].attrs["units"] == DIMENSIONLESS for v in sim.data_vars)
    th = hidyn.theory(model, times=sim["time"].values, **({"ratio": None} if model == "dln" else {}),
                      **{k: v for k, v in params.items() if k not in ("batch_size",)})
    assert th["time"].attrs["units"] == units


def test_dmft_grid_coordinates_carry_the_time_unit():
    th = hidyn.theory("dln", ratio=0.5, lr=0.1, t_max=0.3, init_scale=1.0, n_samples=400, n_batches=4)
    assert th["grid_time"].attrs["units"] == th["time"].attrs["units"] == "lr * steps (GD)"
