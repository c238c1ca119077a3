"""Render every example's figure into examples/gallery/ (the images examples/README.md shows).

Run:  python examples/make_gallery.py [--quick] [--only NAME ...]

Each example runs in a temporary directory; its PNG files are copied into examples/gallery/ and its
wall time is printed.  ``--quick`` uses each example's quick mode (what the tests run).
"""
from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def examples() -> list[Path]:
    """Example scripts: every examples/*.py with a main(), except this one."""
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def render(path: Path, quick: bool, dest: Path) -> float:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        module.main(quick=quick, out=tmp)
        for png in Path(tmp).glob("*.png"):
            shutil.copy(png, dest / png.name)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="example names (file stems) to render")
    args = parser.parse_args(argv)
    dest = HERE / "gallery"
    dest.mkdir(exist_ok=True)
    times = {}
    for path in examples():
        if args.only and path.stem not in args.only:
            continue
        times[path.stem] = render(path, args.quick, dest)
        print(f"{path.stem:<28} {times[path.stem]:7.1f} s")
    print(f"{'total':<28} {sum(times.values()):7.1f} s")
    return times


if __name__ == "__main__":
    main()
