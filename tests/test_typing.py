"""The package's lazy exports are visible to type checkers (the checkers themselves run in `nox -s typing`)."""

from __future__ import annotations

import ast
from pathlib import Path

import slither

INIT = Path(slither.__file__)


def _type_checking_names() -> set[str]:
    tree = ast.parse(INIT.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                for alias in imp.names:
                    names.add(alias.name)
    return names


def test_every_lazy_export_is_declared_for_type_checkers_and_nothing_else():
    assert slither.__all__ == sorted(slither._EXPORTS)
    assert _type_checking_names() == set(slither.__all__)


def test_every_lazy_export_resolves_at_run_time():
    for name in slither.__all__:
        assert getattr(slither, name) is not None
