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
