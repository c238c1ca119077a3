"""Bad and edge inputs, as a new user would type them: each must raise a clear exception that names the
parameter (issue #12).  One row per input: the call, the expected exception type and a substring of the
message that names the offending parameter (or the fix).  Tiny d and few steps: the file runs in seconds.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import warnings

import numpy as np
import pytest

import hidyn
from hidyn import cli, models
from hidyn.config import load_config
from hidyn.results import SchemaError


class CLIError(Exception):
    """``hidyn.cli.main`` returned a non-zero status; the message is what it printed on stderr."""


def _cli(tmp_path, text, *extra, name="run.toml", write=True):
    path = tmp_path / name
    if write:
        path.write_text(text)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["run", str(path), *extra])
    if rc != 0:
        raise CLIError(err.getvalue())
    return rc


def _toml(tmp_path, text):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return load_config(path)


# small results shared by the compare and save/load rows (module scope: computed once)
@pytest.fixture(scope="module")
def results():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = hidyn.simulate("dln", d=32, ratio=None, algorithm="gf", t_max=1.0, n_times=4, seeds=4,
                             backend="numpy")
        th = hidyn.theory("dln", ratio=None, times=sim["time"].values)
        th_two = hidyn.theory("two_layer", t_max=1.0, n_times=4)
    return {"sim": sim, "th": th, "th_two": th_two}


DLN = dict(d=16, t_max=0.5, n_times=3, seeds=2, backend="numpy")
TL = dict(d=8, t_max=0.1, n_times=3, seeds=2, backend="numpy")
SI = dict(d=16, t_max=0.1, n_times=3, seeds=2, backend="numpy")
PLAIN_TOML = 'model = "dln"\nmode = "simulate"\n[params]\nd = 16\nt_max = 0.5\nseeds = 2\n'

# (id, call(tmp_path, results), exception type, substring naming the parameter)
ROWS = [
    # ---- dln spec, through simulate / models.get ----------------------------------------------------
    ("dln_d_zero", lambda p, r: hidyn.simulate("dln", **{**DLN, "d": 0}), ValueError, "d=0"),
    ("dln_d_float", lambda p, r: models.get("dln", d=1.5), ValueError, "d=1.5"),
    ("dln_ratio_neg", lambda p, r: models.get("dln", ratio=-1.0), ValueError, "ratio=-1"),
    ("dln_ratio_zero_rows", lambda p, r: models.get("dln", d=10, ratio=1e-3), ValueError, "ratio="),
    ("dln_sparsity_zero", lambda p, r: models.get("dln", sparsity=0.0), ValueError, "sparsity=0"),
    ("dln_sparsity_big", lambda p, r: models.get("dln", sparsity=1.5), ValueError, "sparsity=1.5"),
    ("dln_teacher", lambda p, r: models.get("dln", teacher="laplace"), ValueError, "teacher="),
    ("dln_exact_sparsity_string", lambda p, r: models.get("dln", exact_sparsity="no"), ValueError,
     "exact_sparsity='no'"),
    ("dln_noise_neg", lambda p, r: models.get("dln", noise=-0.1), ValueError, "noise=-0.1"),
    ("dln_init_scale_zero", lambda p, r: models.get("dln", init_scale=0.0), ValueError, "init_scale=0"),
    ("dln_init_name", lambda p, r: models.get("dln", init="xavier"), ValueError, "init="),
    ("dln_parametrization", lambda p, r: models.get("dln", parametrization="xy"), ValueError,
     "parametrization="),
    ("dln_algorithm", lambda p, r: models.get("dln", algorithm="adam"), ValueError, "algorithm="),
    ("dln_lr_zero", lambda p, r: models.get("dln", lr=0.0), ValueError, "lr=0"),
    ("dln_lr_nan", lambda p, r: models.get("dln", lr=float("nan")), ValueError, "lr=nan"),
    ("dln_batch_zero", lambda p, r: models.get("dln", batch_size=0), ValueError, "batch_size=0"),
    ("dln_batch_above_n", lambda p, r: models.get("dln", d=16, ratio=0.5, batch_size=9), ValueError,
     "batch_size=9"),
    ("dln_unknown_field", lambda p, r: hidyn.simulate("dln", **DLN, lrr=0.1), ValueError, "'lrr'"),
    ("dln_online_sgd_no_batch", lambda p, r: hidyn.simulate("dln", **DLN, ratio=None, algorithm="sgd"),
     ValueError, "batch_size"),
    # ---- simulate run options --------------------------------------------------------------------------
    ("sim_precision", lambda p, r: hidyn.simulate("dln", **DLN, precision="float16"), ValueError,
     "precision="),
    ("sim_backend", lambda p, r: hidyn.simulate("dln", **{**DLN, "backend": "cuda"}), ValueError,
     "backend="),
    ("sim_seeds_zero", lambda p, r: hidyn.simulate("dln", **{**DLN, "seeds": 0}), ValueError, "seeds=0"),
    ("sim_seeds_negative", lambda p, r: hidyn.simulate("dln", **{**DLN, "seeds": [-1]}), ValueError,
     "seeds="),
    ("sim_seeds_huge", lambda p, r: hidyn.simulate("dln", **{**DLN, "d": 1024, "seeds": 10 ** 6}), MemoryError,
     "seeds"),
    ("sim_n_times_one", lambda p, r: hidyn.simulate("dln", **{**DLN, "n_times": 1}), ValueError,
     "n_times=1"),
    ("sim_n_times_huge", lambda p, r: hidyn.simulate("dln", d=16, algorithm="gf", n_times=10 ** 9,
                                                                 backend="numpy"),
     ValueError, "n_times=1000000000"),
    ("sim_t_max_negative", lambda p, r: hidyn.simulate("dln", **{**DLN, "t_max": -1.0}), ValueError,
     "t_max=-1"),
    ("sim_t_max_runaway", lambda p, r: hidyn.simulate("dln", d=64, t_max=1e12, backend="numpy"), ValueError,
     "max_work"),
    ("sim_t_max_below_one_step", lambda p, r: hidyn.simulate("dln", **{**DLN, "t_max": 0.01}), ValueError,
     "t_max=0.01"),
    ("sim_max_work_negative", lambda p, r: hidyn.simulate("dln", **DLN, max_work=-1), ValueError,
     "max_work=-1"),
    ("sim_times_unsorted", lambda p, r: hidyn.simulate("dln", d=16, times=[1.0, 0.0]), ValueError, "times"),
    ("sim_times_and_t_max", lambda p, r: hidyn.simulate("dln", d=16, times=[0.0, 1.0], t_max=1.0),
     ValueError, "t_max"),
    ("sim_spacing", lambda p, r: hidyn.simulate("dln", **DLN, spacing="cubic"), ValueError, "spacing="),
    ("sim_model_unknown", lambda p, r: hidyn.simulate("dnl", d=16), ValueError, "model='dnl'"),
    # ---- dln theory ---------------------------------------------------------------------------------
    ("dln_theory_method", lambda p, r: hidyn.theory("dln", method="exact"), ValueError, "method='exact'"),
    ("dln_dmft_population", lambda p, r: hidyn.theory("dln", method="dmft", ratio=None), ValueError,
     "ratio=None"),
    ("dln_dmft_n_samples", lambda p, r: hidyn.theory("dln", method="dmft", n_samples=500, t_max=0.5),
     ValueError, "n_samples=500"),
    ("dln_dmft_engine", lambda p, r: hidyn.theory("dln", method="dmft", engine="torch", t_max=0.5),
     ValueError, "engine='torch'"),
    ("dln_dmft_tiny_init", lambda p, r: hidyn.theory("dln", method="dmft", init_scale=1e-30, lr=0.01),
     ValueError, "init_scale=1e-30"),
    ("dln_closed_form_option", lambda p, r: hidyn.theory("dln", ratio=None, n_sample=10), ValueError,
     "n_sample"),
    ("dln_fixed_point_population", lambda p, r: hidyn.theory("dln", method="fixed_point", ratio=None),
     ValueError, "ratio=None"),
    ("dln_interpolator_no_data", lambda p, r: hidyn.theory("dln", method="interpolator"), ValueError, "X="),
    # ---- two_layer --------------------------------------------------------------------------------------
    ("tl_d_one", lambda p, r: hidyn.simulate("two_layer", **{**TL, "d": 1}), ValueError, "d=1"),
    ("tl_d_below_K_plus_M", lambda p, r: models.get("two_layer", d=4, K=3, M=2), ValueError, "K + M"),
    ("tl_K_zero", lambda p, r: models.get("two_layer", K=0), ValueError, "K=0"),
    ("tl_M_zero", lambda p, r: models.get("two_layer", M=0), ValueError, "M=0"),
    ("tl_activation", lambda p, r: models.get("two_layer", activation="softplus2"), ValueError,
     "activation='softplus2'"),
    ("tl_lr_negative", lambda p, r: models.get("two_layer", lr=-1.0), ValueError, "lr=-1"),
    ("tl_lr_second_frozen", lambda p, r: models.get("two_layer", lr_second=0.5), ValueError, "lr_second="),
    ("tl_noise_negative", lambda p, r: models.get("two_layer", noise=-1.0), ValueError, "noise=-1"),
    ("tl_batch_zero", lambda p, r: models.get("two_layer", batch_size=0), ValueError, "batch_size=0"),
    ("tl_init_scale_zero", lambda p, r: models.get("two_layer", init_scale=0.0), ValueError, "init_scale=0"),
    ("tl_init_unknown_key", lambda p, r: models.get("two_layer", init={"Q": np.eye(2), "R": np.zeros((2, 2)),
                                                                       "X": 1}), ValueError, "init"),
    ("tl_init_not_psd", lambda p, r: models.get("two_layer", init={"Q": np.eye(2), "R": 5 * np.ones((2, 2))}),
     ValueError, "init"),
    ("tl_T_shape", lambda p, r: models.get("two_layer", T=np.eye(3)), ValueError, "T must have shape"),
    ("tl_train_second_layer_string", lambda p, r: models.get("two_layer", train_second_layer="yes"),
     ValueError, "train_second_layer='yes'"),
    ("tl_theory_typo", lambda p, r: hidyn.theory("two_layer", lrr=1.0, t_max=1.0), ValueError, "'lrr'"),
    ("tl_theory_rtol", lambda p, r: hidyn.theory("two_layer", rtol=-1.0, t_max=1.0), ValueError, "rtol"),
    ("tl_theory_init_dataset_dln", lambda p, r: hidyn.theory("two_layer", init=r["sim"]), ValueError,
     "does not start from a simulation"),
    # ---- single_index -----------------------------------------------------------------------------------
    ("si_link", lambda p, r: models.get("single_index", link="he9x"), ValueError, "link='he9x'"),
    ("si_geometry", lambda p, r: models.get("single_index", geometry="torus"), ValueError, "geometry="),
    ("si_loss", lambda p, r: models.get("single_index", loss="hinge"), ValueError, "loss='hinge'"),
    ("si_spike_negative", lambda p, r: models.get("single_index", spike=-1.0), ValueError, "spike=-1"),
    ("si_spike_angle", lambda p, r: models.get("single_index", spike_angle=4.0), ValueError, "spike_angle=4"),
    ("si_lr_zero", lambda p, r: models.get("single_index", lr=0.0), ValueError, "lr=0"),
    ("si_m0_above_one", lambda p, r: models.get("single_index", m0=2.0), ValueError, "m0=2"),
    ("si_batch_zero", lambda p, r: models.get("single_index", batch_size=0), ValueError, "batch_size=0"),
    ("si_d_zero", lambda p, r: hidyn.simulate("single_index", **{**SI, "d": 0}), ValueError, "d=0"),
    ("si_theory_typo", lambda p, r: hidyn.theory("single_index", rtoll=1e-3, t_max=0.1), ValueError,
     "'rtoll'"),
    # ---- compare ----------------------------------------------------------------------------------------
    ("cmp_other_model", lambda p, r: hidyn.compare(r["sim"], r["th_two"]), ValueError, "model="),
    ("cmp_swapped", lambda p, r: hidyn.compare(r["th"], r["sim"]), ValueError, "swapped"),
    ("cmp_theory_first_alone", lambda p, r: hidyn.compare(r["th"]), ValueError, "empirical"),
    ("cmp_other_noise", lambda p, r: hidyn.compare(r["sim"], hidyn.theory("dln", ratio=None, noise=0.3,
                                                                          times=r["sim"]["time"].values)),
     ValueError, "noise"),
    ("cmp_other_ratio", lambda p, r: hidyn.compare(r["sim"], hidyn.theory("dln", ratio=2.0, method="closed_form",
                                                                          times=r["sim"]["time"].values)),
     ValueError, "ratio"),
    ("cmp_theory_too_short", lambda p, r: hidyn.compare(r["sim"], hidyn.theory("dln", ratio=None, t_max=0.5)),
     ValueError, "times"),
    ("cmp_unknown_variable", lambda p, r: hidyn.compare(r["sim"], variables=["foo"]), ValueError, "'foo'"),
    ("cmp_not_a_dataset", lambda p, r: hidyn.compare(r["sim"], {"time": [0.0]}), ValueError, "theory="),
    # ---- Tolerance --------------------------------------------------------------------------------------
    ("tol_z_negative", lambda p, r: hidyn.Tolerance(z=-1), ValueError, "Tolerance.z=-1"),
    ("tol_c_nan", lambda p, r: hidyn.Tolerance(c=float("nan")), ValueError, "Tolerance.c=nan"),
    ("tol_rtol_inf", lambda p, r: hidyn.Tolerance(rtol=math.inf), ValueError, "Tolerance.rtol=inf"),
    # a misspelt keyword in Python is Python's own TypeError, which names it (TOML: see toml_tolerance_typo)
    ("tol_unknown_keyword", lambda p, r: hidyn.Tolerance(zz=3.0), TypeError, "'zz'"),
    # ---- sweep ------------------------------------------------------------------------------------------
    ("sweep_func", lambda p, r: hidyn.sweep(1, {"lr": [0.1]}), ValueError, "func=1"),
    ("sweep_executor", lambda p, r: hidyn.sweep(hidyn.theory, {"lr": [0.1]}, executor=5), ValueError,
     "executor=5"),
    ("sweep_clash", lambda p, r: hidyn.sweep(hidyn.theory, {"lr": [0.1]}, lr=0.2), ValueError, "'lr'"),
    ("sweep_all_fail", lambda p, r: hidyn.sweep(hidyn.theory, {"lr": [-1.0, -2.0]}, model="two_layer",
                                                t_max=0.1, progress=False), RuntimeError, "lr=-1.0 is invalid"),
    # ---- save / load ------------------------------------------------------------------------------------
    ("save_engine", lambda p, r: hidyn.save(r["th"], p / "x.nc", engine="csv"), ValueError, "engine='csv'"),
    ("save_missing_dir", lambda p, r: hidyn.save(r["th"], p / "nodir" / "x.nc"), OSError, "nodir"),
    ("save_not_hidyn", lambda p, r: hidyn.save(r["th"].drop_attrs(), p / "x.nc"), SchemaError, ""),
    ("load_missing", lambda p, r: hidyn.load(p / "missing.nc"), FileNotFoundError, "missing.nc"),
    ("load_not_netcdf", lambda p, r: (p.joinpath("bad.nc").write_text("not a netCDF file"),
                                      hidyn.load(p / "bad.nc")), OSError, "bad.nc"),
    ("load_foreign_netcdf", lambda p, r: (r["th"].drop_attrs().to_netcdf(p / "f.nc", engine="h5netcdf"),
                                          hidyn.load(p / "f.nc")), SchemaError, "hidyn_version"),
    # ---- TOML configurations ----------------------------------------------------------------------------
    ("toml_unknown_top_level", lambda p, r: _toml(p, 'model = "dln"\nparmas = 1\n'), ValueError, "parmas"),
    ("toml_missing_model", lambda p, r: _toml(p, 'mode = "simulate"\n'), ValueError, "'model'"),
    ("toml_bad_mode", lambda p, r: _toml(p, 'model = "dln"\nmode = "run"\n'), ValueError, "mode='run'"),
    ("toml_unknown_model", lambda p, r: _toml(p, 'model = "dnl"\n'), ValueError, "model='dnl'"),
    ("toml_param_typo", lambda p, r: _toml(p, 'model = "two_layer"\n[params]\nlrr = 0.5\n'), ValueError,
     "'lrr'"),
    ("toml_theory_option_typo", lambda p, r: _toml(p, 'model = "single_index"\nmode = "theory"\n[params]\n'
                                                      'rtoll = 1e-6\n'), ValueError, "'rtoll'"),
    ("toml_grid_typo", lambda p, r: _toml(p, 'model = "dln"\n[grid]\nlearning_rate = [0.1]\n'), ValueError,
     "'learning_rate'"),
    ("toml_grid_not_lists", lambda p, r: _toml(p, 'model = "dln"\n[grid]\nlr = 0.1\n'), ValueError, "[grid]"),
    ("toml_tolerance_typo", lambda p, r: _toml(p, 'model = "dln"\n[tolerance]\nzz = 3\n'), ValueError, "'zz'"),
    ("toml_tolerance_string", lambda p, r: _toml(p, 'model = "dln"\n[tolerance]\nz = "three"\n'), ValueError,
     "z='three'"),
    ("toml_malformed", lambda p, r: _toml(p, 'model = "dln\n'), ValueError, "not valid TOML"),
    ("toml_params_not_table", lambda p, r: _toml(p, 'model = "dln"\nparams = 3\n'), ValueError, "[params]"),
    # ---- CLI (hidyn run) --------------------------------------------------------------------------------
    ("cli_missing_file", lambda p, r: _cli(p, "", write=False), CLIError, "does not exist"),
    ("cli_param_typo", lambda p, r: _cli(p, PLAIN_TOML + "lrr = 0.1\n"), CLIError, "'lrr'"),
    ("cli_bad_value", lambda p, r: _cli(p, PLAIN_TOML.replace("d = 16", "d = 0")), CLIError, "d=0"),
    ("cli_tolerance_typo", lambda p, r: _cli(p, PLAIN_TOML.replace("simulate", "compare") + "[tolerance]\n"
                                                "zz = 3\n"), CLIError, "'zz'"),
    ("cli_runaway", lambda p, r: _cli(p, PLAIN_TOML.replace("t_max = 0.5", "t_max = 1e12")), CLIError,
     "max_work"),
    ("cli_bad_n_times", lambda p, r: _cli(p, PLAIN_TOML + "n_times = 1000000000\n"), CLIError, "n_times="),
    ("cli_theory_typo", lambda p, r: _cli(p, 'model = "two_layer"\nmode = "theory"\n[params]\nt_max = 1.0\n'
                                              'rtoll = 1e-3\n'), CLIError, "'rtoll'"),
]


def test_table_is_large_and_covers_every_area():
    ids = [row[0] for row in ROWS]
    assert len(ids) == len(set(ids)) and len(ROWS) >= 60
    for prefix in ("dln_", "sim_", "tl_", "si_", "cmp_", "tol_", "sweep_", "save_", "load_", "toml_", "cli_"):
        assert any(i.startswith(prefix) for i in ids), prefix


@pytest.mark.parametrize("call,exc,fragment", [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_bad_input_raises_naming_the_parameter(call, exc, fragment, tmp_path, results):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            call(tmp_path, results)
    assert fragment in str(info.value), str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("zarr") is not None, reason="zarr is installed")
def test_load_zarr_without_zarr_names_the_extra(tmp_path):
    store = tmp_path / "run.zarr"
    store.mkdir()
    with pytest.raises(ImportError, match=r'pip install "hidyn\[zarr\]"'):
        hidyn.load(store)
