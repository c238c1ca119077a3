"""Sweeps: coordinates, executors (spawn process pool, dask), failures, interrupted-then-resumed."""
from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import xarray as xr

import hidyn
from hidyn.sweeps import grid_points, point_filename

FIXED = dict(model="dln", ratio=None, algorithm="gf", seeds=2, t_max=2.0, n_times=5)
GRID = {"init_scale": [0.1, 0.5], "d": [32, 64]}


def test_grid_expansion_and_validation():
    points, names, cartesian = grid_points(GRID)
    assert len(points) == 4 and names == ["init_scale", "d"] and cartesian
    with pytest.raises(ValueError, match="not a scalar"):
        grid_points({"T": [np.eye(2)]})
    with pytest.raises(ValueError, match="repeated"):
        grid_points({"d": [8, 8]})
    with pytest.raises(ValueError, match="same parameters"):
        grid_points([{"d": 8}, {"lr": 0.1}])
    assert point_filename({"d": 8}, {"a": 1}) == point_filename({"d": 8}, {"a": 1})
    assert point_filename({"d": 8}, {"a": 1}) != point_filename({"d": 8}, {"a": 2})


def test_serial_sweep_makes_coordinates_not_attrs():
    ds = hidyn.sweep(hidyn.simulate, GRID, **FIXED)
    assert ds["test_loss"].dims[:2] == ("init_scale", "d")
    assert "init_scale" not in ds.attrs and "d" not in ds.attrs
    one = hidyn.simulate(d=64, init_scale=0.1, **FIXED)
    np.testing.assert_array_equal(ds["test_loss"].sel(init_scale=0.1, d=64).values, one["test_loss"].values)
    with pytest.raises(ValueError, match="both in the grid and as fixed"):
        hidyn.sweep(hidyn.simulate, {"d": [8]}, d=8, model="dln")


def test_explicit_points_stack_along_point():
    th = hidyn.sweep(hidyn.theory, [{"init_scale": 0.1}, {"init_scale": 0.3}], model="dln", ratio=None,
                     t_max=2.0, n_times=5)
    assert th["test_loss"].dims == ("point", "time")
    np.testing.assert_array_equal(th["init_scale"].values, [0.1, 0.3])


def _flaky(**kw):
    if kw["init_scale"] == 0.5 and kw["d"] == 32:
        raise RuntimeError("boom at this point")
    return hidyn.simulate(**kw)


def test_failed_point_is_reported_and_others_complete(tmp_path):
    with pytest.warns(RuntimeWarning, match="1 of 4 points failed"):
        ds = hidyn.sweep(_flaky, GRID, out_dir=tmp_path, **FIXED)
    failures = json.loads(ds.attrs["sweep_failures"])
    assert len(failures) == 1 and "boom" in failures[0]["error"]
    assert ds.sizes["point"] == 3
    assert len(list(tmp_path.glob("*.nc"))) == 3
    assert json.loads((tmp_path / "failures.json").read_text())[0]["point"] == {"init_scale": 0.5, "d": 32}


def test_spawn_process_pool_equals_serial():
    serial = hidyn.sweep(hidyn.simulate, GRID, **FIXED)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        parallel = hidyn.sweep(hidyn.simulate, GRID, executor=pool, **FIXED)
    xr.testing.assert_allclose(serial.drop_attrs(), parallel.drop_attrs(), rtol=0, atol=0)


def test_dask_local_cluster_two_workers_equals_serial():
    distributed = pytest.importorskip("distributed")
    serial = hidyn.sweep(hidyn.simulate, GRID, **FIXED)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        dist = hidyn.sweep(hidyn.simulate, GRID, executor=client, **FIXED)
    xr.testing.assert_allclose(serial.drop_attrs(), dist.drop_attrs(), rtol=0, atol=0)


SCRIPT = textwrap.dedent("""
    import sys, time
    import hidyn
    log = open(sys.argv[2], "a")
    def slow(**kw):
        ds = hidyn.simulate(**kw)
        time.sleep(0.4)
        log.write(repr(sorted((k, kw[k]) for k in ("d", "init_scale"))) + "\\n"); log.flush()
        return ds
    hidyn.sweep(slow, {"init_scale": [0.1, 0.2, 0.3, 0.4], "d": [32, 48]}, out_dir=sys.argv[1],
                model="dln", ratio=None, algorithm="gf", seeds=1, t_max=1.0, n_times=3)
""")


def test_interrupted_sweep_resumes_without_loss_or_recomputation(tmp_path):
    out, log1, log2 = tmp_path / "points", tmp_path / "first.log", tmp_path / "second.log"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(log1)])
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.nc"))) < 3:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done_before = {p.name for p in out.glob("*.nc")}
    assert 3 <= len(done_before) < 8, "the sweep was not interrupted halfway"
    # the restart: same sweep, another log
    subprocess.run([sys.executable, str(script), str(out), str(log2)], check=True)
    first = log1.read_text().splitlines()
    second = log2.read_text().splitlines()
    assert len(list(out.glob("*.nc"))) == 8                       # no point lost
    assert not set(first[:len(done_before)]) & set(second)        # none of the finished ones recomputed
    assert len(second) == 8 - len(done_before)                    # exactly the missing ones ran
    assert not list(out.glob(".*.tmp*"))                          # no half-written files left


def test_single_parameter_grid_becomes_a_dimension():
    th = hidyn.sweep(hidyn.theory, {"init_scale": [0.1, 0.2, 0.4]}, model="dln", ratio=None, t_max=1.0,
                     n_times=4)
    assert th["test_loss"].dims == ("init_scale", "time")
    np.testing.assert_array_equal(th["init_scale"].values, [0.1, 0.2, 0.4])


# -- one time axis (issue #17.2): points whose clocks differ are aligned, never outer-joined with NaN ------

def test_issue_example_two_layer_lr_by_d_has_no_nan():
    # online SGD: t = steps/d, so d = 250 and d = 1000 save at different times for the same request
    ds = hidyn.sweep(hidyn.simulate, {"lr": [0.1, 0.5], "d": [250, 1000]}, model="two_layer", seeds=2,
                     t_max=2.0)
    for name in ds.data_vars:
        assert not ds[name].isnull().any(), name
    assert ds["time_reached"].dims == ("lr", "d", "time")
    for d in (250, 1000):
        gap = np.abs(ds["time_reached"].sel(d=d) - ds["time"])
        assert float(gap.max()) <= 0.5 / d + 1e-12               # the nearest whole step
    # the aligned record is the run itself: rerun one point on the shared grid, pick the reached times
    one = hidyn.simulate("two_layer", d=250, lr=0.5, seeds=2, times=ds["time"].values)
    reached = ds["time_reached"].sel(lr=0.5, d=250).values
    np.testing.assert_array_equal(ds["test_loss"].sel(lr=0.5, d=250).values,
                                  one["test_loss"].sel(time=reached).values)


def test_gd_lr_sweep_shares_the_requested_grid():
    # GD: t = η·k, so η = 0.1, 0.3, 0.5 reach different times (and 3·0.1 = 0.30000000000000004)
    lrs = [0.1, 0.3, 0.5]
    ds = hidyn.sweep(hidyn.simulate, {"lr": lrs}, model="dln", d=64, ratio=0.5, seeds=2, t_max=3.0,
                     n_times=20)
    assert not ds["test_loss"].isnull().any() and ds.sizes["time"] == 20
    assert ds["time"].values[1] == 0.5                          # the log grid starts at the coarsest step
    for lr in lrs:
        reached = ds["time_reached"].sel(lr=lr).values
        np.testing.assert_allclose(reached, np.rint(ds["time"].values / lr) * lr, rtol=0, atol=1e-12)
    one = hidyn.simulate("dln", d=64, ratio=0.5, lr=0.3, seeds=2, times=ds["time"].values)
    np.testing.assert_array_equal(ds["test_loss"].sel(lr=0.3).values,
                                  one["test_loss"].sel(time=ds["time_reached"].sel(lr=0.3).values).values)


def _grid_with_rounding(x):
    # two points whose save times differ only in the last bit (0.3 vs 0.1·3)
    t = np.array([0.0, 0.1, 0.2, 0.3]) if x == 0 else np.arange(4) * 0.1
    assert x == 0 or t[3] != 0.3
    return xr.Dataset({"test_loss": (("time",), np.full(4, float(x)), {"long_name": "l", "units": "1"})},
                      coords={"time": t}, attrs={"hidyn_version": "0", "model": "dln", "method": "test"})


def test_float_noise_in_times_is_not_a_new_time():
    ds = hidyn.sweep(_grid_with_rounding, {"x": [0, 1]})
    assert ds.sizes["time"] == 4 and not ds["test_loss"].isnull().any()
    assert "time_reached" not in ds.coords


def test_genuinely_different_grids_raise_instead_of_nan():
    with pytest.raises(ValueError, match="different time grids.*times="):
        hidyn.sweep(hidyn.theory, {"t_max": [1.0, 2.0]}, model="dln", ratio=None, n_times=5)
    # a shared times= makes them one axis again
    th = hidyn.sweep(hidyn.theory, {"init_scale": [0.1, 0.2]}, model="dln", ratio=None, times=[0.0, 0.5, 1.0])
    np.testing.assert_array_equal(th["time"].values, [0.0, 0.5, 1.0])


def test_other_mismatched_coordinates_warn():
    with pytest.warns(RuntimeWarning, match="different 'seed' coordinates"):
        hidyn.sweep(hidyn.simulate, {"seeds": [1, 2]}, model="dln", d=16, ratio=None, algorithm="gf",
                    t_max=1.0, n_times=3)
