"""Command-line smoke tests: info, run (simulate / theory / compare), errors, python -m hidyn."""
from __future__ import annotations

import subprocess
import sys

import pytest

import hidyn
from hidyn.cli import main
from hidyn.config import load_config

CONFIG = """
model = "dln"
mode = "{mode}"
[params]
d = 64
ratio = "none"
algorithm = "gf"
t_max = 2.0
n_times = 6
{extra}
"""


def _write(tmp_path, mode="simulate", extra="seeds = 2"):
    path = tmp_path / f"{mode}.toml"
    path.write_text(CONFIG.format(mode=mode, extra=extra))
    return path


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "hidyn" in out and "dln" in out and "numpy" in out


def test_run_simulate_writes_netcdf_and_plot(tmp_path, capsys):
    out = tmp_path / "out.nc"
    png = tmp_path / "out.png"
    assert main(["run", str(_write(tmp_path)), "-o", str(out), "--plot", str(png)]) == 0
    ds = hidyn.load(out)
    assert ds.sizes["seed"] == 2 and ds.attrs["method"] == "monte_carlo"
    assert png.stat().st_size > 1000


def test_run_theory_and_compare(tmp_path, capsys):
    out = tmp_path / "th.nc"
    assert main(["run", str(_write(tmp_path, "theory", "")), "-o", str(out)]) == 0
    assert hidyn.load(out).attrs["method"] == "closed_form"
    assert main(["run", str(_write(tmp_path, "compare"))]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_bad_configs_give_clear_errors(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text("model = \"dln\"\n[params\nd = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(broken)
    assert main(["run", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = _write(tmp_path, extra="seeds = 2\nsparsity = 2.0")
    assert main(["run", str(bad)]) == 2
    assert "sparsity=2.0" in capsys.readouterr().err
    odd = tmp_path / "odd.toml"
    odd.write_text('model = "dln"\nfoo = 1\n')
    with pytest.raises(ValueError, match="unknown top-level key"):
        load_config(odd)


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "hidyn", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "info" in out.stdout


SWEEP = """
model = "dln"
mode = "simulate"
[params]
ratio = "none"
algorithm = "gf"
seeds = 2
t_max = 1.0
n_times = 4
[grid]
d = [16, 32]
init_scale = [0.1, 0.3]
"""


def test_sweep_command(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "sweep.nc"
    assert main(["sweep", str(cfg), "-o", str(out), "--out-dir", str(tmp_path / "pts")]) == 0
    ds = hidyn.load(out)
    assert ds["test_loss"].dims[:2] == ("d", "init_scale")
    assert len(list((tmp_path / "pts").glob("*.nc"))) == 4


def test_validate_table(capsys):
    # one cheap case: the agreement tests run every registered case already
    assert main(["validate", "--quick", "--case", "dln_population_gf"]) == 0
    out = capsys.readouterr().out
    assert "dln_population_gf" in out and "closed_form" in out and "1 passed, 0 failed" in out
    assert main(["validate", "--family", "nope"]) == 2
    assert main(["validate", "--case", "nope"]) == 2
