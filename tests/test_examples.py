"""Every example runs in quick mode and writes its .nc and .png."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.py")
                  if p.name != "make_gallery.py")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_quick(path, tmp_path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(quick=True, out=tmp_path)
    assert list(tmp_path.glob("*.nc")), "example wrote no .nc"
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5000 for p in pngs), "example wrote no figure"


def test_gallery_lists_every_example_and_its_figure():
    """examples/README.md names every example, and every figure it shows is committed."""
    import re

    root = Path(__file__).resolve().parents[1] / "examples"
    text = (root / "README.md").read_text()
    for path in EXAMPLES:
        assert f"`{path.name}`" in text, f"{path.name} is missing from examples/README.md"
    images = re.findall(r"\]\((gallery/[^)]+\.png)\)", text)
    assert images
    for image in images:
        assert (root / image).is_file(), f"{image} is not committed (run examples/make_gallery.py)"
