"""docs/ARCHITECTURE.md names every module of the product packages by its repo-relative path
(e.g. ``server/apiserver/watch.py``), and every such path it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("edgek", "datastore", "server", "agent", "netpolicy")
DOC = REPO / "docs" / "ARCHITECTURE.md"
# A module path as the document writes it: not part of a longer path or name.
NAMED_PATH = re.compile(rf"(?<![\w/.])((?:{'|'.join(PACKAGES)})/[\w/]*\w\.py)\b")


def only_docstring(path: Path) -> bool:
    """True for a module that holds nothing but (at most) its docstring."""
    body = ast.parse(path.read_text()).body
    return all(
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for node in body
    )


def product_modules() -> list[str]:
    """Repo-relative paths of every product module that carries code (``__init__.py`` files
    that are empty or only a docstring are left out)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name == "__init__.py" and only_docstring(path):
                continue
            found.append(path.relative_to(REPO).as_posix())
    return found


def test_the_rule_reads_paths_whole() -> None:
    text = "`server/apiserver/watch.py`, (edgek/cli.py) and xserver/a.py, server/b.pyc"
    assert NAMED_PATH.findall(text) == ["server/apiserver/watch.py", "edgek/cli.py"]


def test_every_module_is_named() -> None:
    named = set(NAMED_PATH.findall(DOC.read_text()))
    missing = [module for module in product_modules() if module not in named]
    assert not missing, f"docs/ARCHITECTURE.md does not name: {', '.join(missing)}"


def test_every_named_module_exists() -> None:
    named = sorted(set(NAMED_PATH.findall(DOC.read_text())))
    stale = [module for module in named if not (REPO / module).is_file()]
    assert not stale, f"docs/ARCHITECTURE.md names modules that do not exist: {', '.join(stale)}"
