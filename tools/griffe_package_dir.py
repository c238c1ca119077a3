"""Griffe extensions for the docs build.

``HidynPackageDir`` attaches ``solvers/`` and ``validation/`` as ``hidyn.solvers`` and ``hidyn.validation``;
``SphinxRoles`` renders the Sphinx cross-reference roles of the docstrings (``:func:`name```) as code.

setup.cfg installs those two top-level folders inside the ``hidyn`` package (``package_dir``), so
Python imports them as ``hidyn.solvers``/``hidyn.validation`` but griffe, which reads the source tree,
finds no ``solvers`` folder under ``hidyn/``.  When griffe has loaded the ``hidyn`` package this extension
visits the two folders with griffe's public :func:`griffe.visit` and sets them as members of ``hidyn``,
so ``::: hidyn.validation.tolerance.Tolerance`` resolves statically (no import of the library).

Both are listed under ``extensions`` in ``mkdocs.yml``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe

ROOT = Path(__file__).resolve().parent.parent
#: sub-package name inside ``hidyn`` -> folder at the repository root (mirrors setup.cfg ``package_dir``)
MAPPED = {"solvers": ROOT / "solvers", "validation": ROOT / "validation"}


def _visit_tree(name: str, folder: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> griffe.Module:
    """Visit ``folder/__init__.py`` as module ``name`` under ``parent``, then its modules and packages."""

    def visit(mod_name: str, path: Path, mod_parent: griffe.Module) -> griffe.Module:
        return griffe.visit(mod_name, filepath=path, code=path.read_text(encoding="utf-8"), parent=mod_parent,
                            extensions=loader.extensions, docstring_parser=loader.docstring_parser,
                            docstring_options=loader.docstring_options,
                            lines_collection=loader.lines_collection, modules_collection=loader.modules_collection)

    package = visit(name, folder / "__init__.py", parent)
    for child in sorted(folder.iterdir()):
        if child.is_dir() and (child / "__init__.py").is_file():
            sub = _visit_tree(child.name, child, package, loader)
        elif child.suffix == ".py" and child.name != "__init__.py":
            sub = visit(child.stem, child, package)
        else:
            continue
        package.set_member(sub.name, sub)
    return package


class HidynPackageDir(griffe.Extension):
    """Mirror setup.cfg's ``package_dir`` mapping in griffe's view of the ``hidyn`` package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "hidyn":
            return
        for name, folder in MAPPED.items():
            if name not in pkg.members:
                pkg.set_member(name, _visit_tree(name, folder, pkg, loader))


#: ``:func:`x```, ``:class:`~a.b.C```, ... (the docstrings were written for Sphinx-style roles)
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Render Sphinx roles as inline code: Markdown has no roles, they would show as raw ``:func:`` text."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
