"""The public names of ``hidyn``: what static tools see (TYPE_CHECKING imports) must be what
``__all__`` promises and what the lazy ``__getattr__`` delivers at run time."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import hidyn

INIT = Path(hidyn.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the ``from M import x as x`` lines under ``if TYPE_CHECKING:``."""
    tree = ast.parse(INIT.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.dump(stmt)
                for alias in stmt.names:
                    # `import x as x` is the explicit re-export form that type checkers honour
                    assert alias.asname == alias.name, f"{alias.name} is imported without `as {alias.name}`"
                    found[alias.name] = stmt.module
    return found


def test_all_is_statically_visible():
    static = _type_checking_imports()
    assert set(hidyn.__all__) - {"__version__"} == set(static)
    assert len(hidyn.__all__) == len(set(hidyn.__all__))


def test_static_imports_match_runtime_objects():
    for name, module in _type_checking_imports().items():
        if module == "hidyn":  # `from hidyn import plot as plot`: a submodule
            static = importlib.import_module(f"hidyn.{name}")
        else:
            static = getattr(importlib.import_module(module), name)
        assert getattr(hidyn, name) is static, name


def test_py_typed_shipped():
    import configparser

    assert (INIT.parent / "py.typed").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(INIT.parent.parent / "setup.cfg")
    assert "py.typed" in cfg["options.package_data"]["hidyn"].split()
