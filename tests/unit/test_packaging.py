"""The explicit package list in setup.cfg must match the folders that hold __init__.py."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPING = {"hidyn": "hidyn", "hidyn.solvers": "solvers", "hidyn.validation": "validation"}


def _declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {p.strip() for p in cfg["options"]["packages"].split() if p.strip()}


def _on_disk():
    found = set()
    for prefix, folder in MAPPING.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if "__pycache__" in rel.parts:
                continue
            found.add(".".join((prefix, *rel.parts)) if rel.parts else prefix)
    return found


def test_package_list_matches_folders():
    assert _declared() == _on_disk()


def test_mapping_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options"]["package_dir"].splitlines() if ln.strip()]
    assert {k.strip(): v.strip() for k, v in (ln.split("=") for ln in lines)} == MAPPING


def test_jax_0_10_2_excluded():
    import re

    text = (ROOT / "setup.cfg").read_text()
    reqs = [ln.strip() for ln in text.splitlines()
            if re.match(r"^(jax|jaxlib)(\[[^\]]*\])?\s*(>=|==|!=|~=|<|>)\s*\d", ln.strip())]
    assert len(reqs) >= 6
    for line in reqs:
        assert "!=0.10.2" in line, line


def test_import_is_light():
    code = ("import sys, hidyn; heavy = [m for m in ('jax', 'numba', 'matplotlib', 'dask', 'xarray') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sdist_holds_tests_examples_and_license(tmp_path):
    """Issue #17.4: the sdist held only tests/test_examples.py; MANIFEST.in now ships the whole suite.

    The source tree is copied first so that building writes no egg-info into the checkout.
    """
    import shutil
    import tarfile

    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info",
                                                             "build", "dist", "out", ".pytest_cache"))
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist")], cwd=src, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    name = res.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / "dist" / name) as tar:
        members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
    tracked = subprocess.run(["git", "ls-files", "tests", "examples", "benchmarks"], cwd=ROOT,
                             capture_output=True, text=True)
    expected = set(tracked.stdout.split()) if tracked.returncode == 0 else set()
    expected |= {"LICENSE", "README.md", "MANIFEST.in", "tests/conftest.py", "tests/test_examples.py",
                 "tests/unit/test_packaging.py", "examples/quickstart.py", "benchmarks/mc_throughput.py"}
    assert expected - members == set()
    assert any(m.startswith("tests/agreement/") for m in members)
    assert not [m for m in members if "__pycache__" in m or m.endswith((".pyc", ".nc"))]
