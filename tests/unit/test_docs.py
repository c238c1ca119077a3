"""The repository's documentation stays consistent with the code that cites it.

Every ``<family>.md §N`` citation in the source must land on a numbered heading of
``docs/theory/<family>.md``, every theory page must be in the MkDocs nav, the code must pass ``ruff
check`` with the project's configuration, and CITATION.cff must carry the package version.  (The site
itself is built with ``mkdocs build --strict`` in .ci/run.)
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hidyn

ROOT = Path(__file__).resolve().parents[2]
THEORY = ROOT / "docs" / "theory"
SOURCE_DIRS = ("hidyn", "solvers", "validation", "examples", "benchmarks", "tests", "tools")
#: "dln.md §5.2", "docs/theory/teacher_student.md § 3" (a trailing sentence dot is not part of N)
CITATION = re.compile(r"\b([a-z][a-z0-9_]*)\.md ?§ ?(\d+(?:\.\d+)*)")
#: numbered headings: "## §5.2 Numerical scheme", "### 5.2. Numerical scheme"
HEADING = re.compile(r"^#{1,6}\s+§?\s*(\d+(?:\.\d+)*)\.?\s", re.M)


def _sections(page: Path) -> set[str]:
    return set(HEADING.findall(page.read_text(encoding="utf-8")))


def _citations():
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for name, section in CITATION.findall(line):
                    yield f"{path.relative_to(ROOT)}:{lineno}", name, section


def test_heading_pattern_reads_numbered_headings():
    text = "# Title\n## §1. Sources\n### §5.2 Scheme\n## 10. Pitfalls\n## What is implemented\n"
    assert set(HEADING.findall(text)) == {"1", "5.2", "10"}
    assert CITATION.findall("see docs/theory/dln.md §5.2. and teacher_student.md § 3") == [
        ("dln", "5.2"), ("teacher_student", "3")]


def test_every_section_citation_resolves_to_a_theory_page():
    cites = list(_citations())
    assert len(cites) > 100  # the library cites its theory throughout; an empty scan is a broken scan
    sections = {page.stem: _sections(page) for page in THEORY.glob("*.md")}
    missing = [f"{where}: {name}.md §{sec}" for where, name, sec in cites
               if sec not in sections.get(name, set())]
    assert not missing, "citations without a matching docs/theory heading:\n" + "\n".join(missing)


def test_theory_pages_say_how_they_are_cited_and_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(THEORY.glob("*.md"))
    assert {p.stem for p in pages} >= {"dln", "teacher_student", "single_index"}
    for page in pages:
        assert f"Code comments cite this page as `{page.name} §N`" in page.read_text(encoding="utf-8"), page
        assert f"theory/{page.name}" in nav, f"{page.name} is not in the mkdocs.yml nav"


def test_citation_cff_version_matches_package():
    text = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.M)
    assert re.search(rf"^version: {re.escape(hidyn.__version__)}$", text, re.M)


def test_ruff_check_passes():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.importorskip("ruff")  # the test extra installs it; `python -m ruff` then works
        cmd = [sys.executable, "-m", "ruff"]
    else:
        cmd = [ruff]
    out = subprocess.run([*cmd, "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
