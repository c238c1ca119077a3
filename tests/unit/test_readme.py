"""README.md: its Python examples use only names they define, and its links stay inside the repository."""
from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def _undefined(code: str) -> set[str]:
    """Names a block reads but neither assigns, imports nor gets from builtins (order not checked)."""
    tree = ast.parse(code)
    stored, loaded = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (stored if isinstance(node.ctx, (ast.Store, ast.Del)) else loaded).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            stored |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stored.add(node.name)
        elif isinstance(node, ast.arg):
            stored.add(node.arg)
    return loaded - stored


def test_python_blocks_define_every_name_they_use():
    # issue #17.5: the saddle-to-saddle line used X and y that the README never defined
    assert len(BLOCKS) >= 4
    for code in BLOCKS:
        assert _undefined(code) == set(), code


def test_saddle_to_saddle_instance_runs():
    import hidyn

    (block,) = [b for b in BLOCKS if "saddle_to_saddle" in b]
    # only the instance and the jump process: the block's DMFT and d = 4096 run are the agreement tests'
    keep = [node for node in ast.parse(block).body
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Assign) and {t.id for t in node.targets} <= {"rng", "X", "y", "s2s"})]
    assert {t.id for n in keep if isinstance(n, ast.Assign) for t in n.targets} == {"rng", "X", "y", "s2s"}
    env = {"hidyn": hidyn}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "README.md", "exec"), env)
    s2s = env["s2s"]
    assert s2s.attrs["converged"] and s2s["train_loss"].values[-1] < 1e-12


def test_links_stay_in_the_repository():
    # issue #17.4: links to ../shared/theory/*.md pointed outside the repository
    assert "../" not in README
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if target.startswith(("http://", "https://")):
            continue
        if target.startswith("docs/"):
            # docs/ is written by the docs work; where it exists, the page must too
            if (ROOT / "docs").is_dir():
                assert (ROOT / target).is_file(), target
            continue
        assert (ROOT / target).exists(), target
