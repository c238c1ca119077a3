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


STREAM = """
import pathlib, sys, time
import hidyn.validation.cases as cases
from hidyn.cli import main

real, go, calls = cases.run_case, pathlib.Path(sys.argv[1]), []

def run_case(case, d, **kw):
    calls.append(case.name)
    if len(calls) == 2:                 # hold the second case until the test has seen the first row
        deadline = time.time() + 300
        while not go.exists() and time.time() < deadline:
            time.sleep(0.05)
    return real(case, d, **kw)

cases.run_case = run_case
sys.exit(main(["validate", "--quick", "--case", "dln_population_gf", "--case", "dln_population_gf"]))
"""


def test_validate_streams_each_row_as_it_finishes(tmp_path):
    # issue #17.3: through a pipe the table came out only at the end.  The child holds its second case
    # until this test has read the first case's row from the pipe, so a buffered row would time out.
    import os
    import queue
    import threading

    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}   # a user's block-buffered pipe
    proc = subprocess.Popen([sys.executable, "-c", STREAM, str(go)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True)
    reader.start()
    try:
        seen = []
        while not any(ln.startswith("dln_population_gf") for ln in seen):
            seen.append(lines.get(timeout=240))          # the first row, while case 2 is still held
        assert proc.poll() is None and not any("passed," in ln for ln in seen)
        go.touch()
        assert proc.wait(timeout=240) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=30)                              # it ends at the end of the pipe
    while not lines.empty():
        seen.append(lines.get_nowait())
    assert sum(ln.startswith("dln_population_gf") for ln in seen) == 2
    assert seen[-1].startswith("2 passed, 0 failed")
