"""Result schema, netCDF round trip and refusal of foreign or broken files."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import hidyn
from hidyn.results import SchemaError, safe_attrs, spec_from_dataset, validate_dataset


@pytest.fixture(scope="module")
def sim():
    return hidyn.simulate("dln", d=32, t_max=1.0, n_times=6, seeds=2, ratio=None, algorithm="gf")


def test_schema_of_simulation_and_theory(sim):
    validate_dataset(sim)
    th = hidyn.theory("dln", ratio=None, t_max=1.0, n_times=6)
    validate_dataset(th)
    for ds in (sim, th):
        for var in ds.data_vars.values():
            assert var.attrs["long_name"] and "units" in var.attrs
        assert ds.attrs["model"] == "dln" and ds.attrs["hidyn_version"] == hidyn.__version__
    assert sim["test_loss"].dims == ("seed", "time")
    assert th["test_loss"].dims == ("time",)
    assert "no 1/2" in sim["test_loss"].attrs["long_name"]
    assert "since" not in sim["time"].attrs["units"]


def test_netcdf_round_trip_keeps_values_and_attrs(sim, tmp_path):
    path = hidyn.save(sim, tmp_path / "run.nc")
    back = hidyn.load(path)
    xr.testing.assert_identical(back, sim)
    assert spec_from_dataset(back) == spec_from_dataset(sim)
    assert spec_from_dataset(back).ratio is None  # None survives through config_json


def test_safe_attrs_conversions():
    out = safe_attrs({"a": True, "b": None, "c": {"x": 1}, "d": [1, 2], "e": [[1, 2]], "f": np.float32(2)})
    assert out["a"] == 1 and "b" not in out and out["c"] == '{"x": 1}'
    assert out["d"].dtype == np.int64 and isinstance(out["e"], str) and isinstance(out["f"], float)


def test_validate_rejects_broken_datasets(sim):
    bad = sim.copy()
    bad.attrs = {k: v for k, v in sim.attrs.items() if k != "method"}
    with pytest.raises(SchemaError, match="method"):
        validate_dataset(bad)
    bad = sim.copy()
    bad.attrs["flag"] = True
    with pytest.raises(SchemaError, match="flag"):
        validate_dataset(bad)
    bad = sim.copy()
    bad["test_loss"].attrs = {}
    with pytest.raises(SchemaError, match="long_name"):
        validate_dataset(bad)


def test_load_refuses_foreign_and_non_netcdf_files(tmp_path):
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(foreign, engine="h5netcdf")
    with pytest.raises(SchemaError, match="not written by hidyn"):
        hidyn.load(foreign)
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(OSError, match="cannot read"):
        hidyn.load(text)
    with pytest.raises(FileNotFoundError, match="no hidyn result"):
        hidyn.load(tmp_path / "missing.nc")


def test_save_to_missing_or_readonly_directory(sim, tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        hidyn.save(sim, tmp_path / "nope" / "run.nc")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("directory permissions are not enforced for this user (root)")
        with pytest.raises(OSError, match="not writable"):
            hidyn.save(sim, ro / "run.nc")
    finally:
        ro.chmod(0o700)


def test_zarr_round_trip(sim, tmp_path):
    # issue #17.4: with zarr 2 the installed xarray could neither save nor load (zarr_format keyword);
    # the extra pins zarr >= 3 and this round trip runs wherever zarr is installed
    pytest.importorskip("zarr", minversion="3")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                # no consolidated-metadata or fallback warnings
        path = hidyn.save(sim, tmp_path / "run.zarr")
        back = hidyn.load(path)
    xr.testing.assert_identical(back, sim)
    for key, val in sim.attrs.items():               # attrs keep their types (arrays stay arrays)
        assert type(back.attrs[key]) is type(val), key
    np.testing.assert_array_equal(back.attrs["diverged_at"], sim.attrs["diverged_at"])
    assert spec_from_dataset(back) == spec_from_dataset(sim)
    assert not list(tmp_path.glob(".*tmp*"))


def test_zarr_extra_excludes_what_the_installed_xarray_cannot_use():
    # the pin follows xarray's own requirement on zarr (its "io" extra), not a hard-coded version
    import configparser
    import importlib.metadata
    from pathlib import Path

    requirements = pytest.importorskip("packaging.requirements")
    xarray_reqs = [requirements.Requirement(r) for r in importlib.metadata.requires("xarray") or []]
    theirs = [r for r in xarray_reqs if r.name == "zarr"]
    if not theirs:
        pytest.skip("the installed xarray declares no zarr requirement")
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    (pin,) = [requirements.Requirement(r) for r in cfg["options.extras_require"]["zarr"].split()]
    for version in ("2.17.0", "2.18.7", "3.0.0", "3.0.8", "3.1.6"):
        if version not in theirs[0].specifier:
            assert version not in pin.specifier, (version, str(pin), str(theirs[0]))
