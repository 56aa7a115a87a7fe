"""The layer order of the product packages (docs/ARCHITECTURE.md, "Layers"), enforced over
the import graph: every import -- at module level, inside a function, or under
``if TYPE_CHECKING:`` -- must point to a lower layer or stay within its own part.

A layer is a tuple of parts; the parts of one layer are independent and must not import each
other (a part written as a tuple of module prefixes is one part). A module belongs to the
part with the longest matching prefix; a part with sub-layers (``server``) places its modules
again within those. A product module that matches no part fails the test: a new module or
package gets its place here and in the docs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("edgek", "datastore", "netpolicy", "agent", "server")

Part = str | tuple[str, ...]
Layers = tuple[tuple[Part, ...], ...]

#: Lowest first.
LAYERS: Layers = (
    ("edgek",),  # the object model and helpers every process shares
    ("datastore",),
    ("netpolicy",),
    ("agent", "server"),  # the agent never needs the server, nor the server the agent
    (("edgek.cmd", "edgek.__main__"),),  # the command line, on top
)
SUBLAYERS: dict[str, Layers] = {
    "server": (
        ("server.config", "server.pki"),
        ("server.storage",),
        ("server.cache",),
        ("server.admission", "server.auth"),
        ("server.controllers",),
        ("server.scheduler",),
        ("server.apiserver",),
        # the wiring: the server's start-up, the object graph it builds and the loops it runs
        (("server.main", "server.wiring", "server.controllers.builtin"),),
    ),
}


class Import(NamedTuple):
    """One import statement's target, as found in a module."""

    module: str  # the importing module
    path: str  # its file, relative to the repository
    line: int
    target: str  # the imported module (or package, for ``from package import name``)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[Import]:
    """Every import of a product package in one file, wherever it appears."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    rel = str(path.relative_to(ROOT))
    for node in ast.walk(ast.parse(path.read_text(), rel)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            # ``from pkg import mod`` depends on pkg.mod when that is a module
            targets = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        for target in dict.fromkeys(targets):  # once per statement and module
            if target.split(".")[0] in PACKAGES:
                yield Import(module, rel, node.lineno, target)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def place(module: str, layers: Layers = LAYERS) -> tuple[tuple[int, str], ...] | None:
    """Where a module sits: (layer index, part) at each level of nesting, outermost first;
    None when no part claims it."""
    best: tuple[int, int, str, str] | None = None  # (prefix length, layer, part name, prefix)
    for index, layer in enumerate(layers):
        for part in layer:
            prefixes = (part,) if isinstance(part, str) else part
            for prefix in prefixes:
                if _within(module, prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), index, prefixes[0], prefix)
    if best is None:
        return None
    _, index, part_name, prefix = best
    here = ((index, part_name),)
    inner = SUBLAYERS.get(prefix)
    if inner is None:
        return here
    rest = place(module, inner)
    return None if rest is None else here + rest


def violation(imp: Import) -> str | None:
    """Why an import runs against the layer order, or None when it is allowed."""
    source, target = place(imp.module), place(imp.target)
    where = f"{imp.path}:{imp.line}: {imp.module} imports {imp.target}"
    if source is None or target is None:
        unplaced = imp.module if source is None else imp.target
        return f"{where}: {unplaced} is in no layer (tests/unit/test_layers.py LAYERS)"
    for (s_layer, s_part), (t_layer, t_part) in zip(source, target, strict=False):
        if s_part == t_part:
            continue
        if t_layer < s_layer:
            return None
        if t_layer == s_layer:
            return f"{where}: {s_part} and {t_part} are independent parts of one layer"
        return f"{where}: {s_part} sits below {t_part}"
    return None


def product_files() -> list[Path]:
    """The Python files of the product packages."""
    return sorted(f for pkg in PACKAGES for f in (ROOT / pkg).rglob("*.py"))


def test_every_import_runs_down_the_layers() -> None:
    found = [v for f in product_files() for imp in imports_of(f) if (v := violation(imp))]
    assert not found, "imports against the layer order:\n" + "\n".join(found)


def test_wrong_way_imports_are_named() -> None:
    """The check itself: upward, sideways and unplaced imports are reported, downward and
    in-part ones are not."""

    def check(module: str, target: str) -> str | None:
        return violation(Import(module, "x.py", 1, target))

    assert check("server.storage.binding", "server.controllers.podutil") == (
        "x.py:1: server.storage.binding imports server.controllers.podutil: "
        "server.storage sits below server.controllers"
    )
    assert check("agent.bootstrap", "server.pki") is not None
    assert check("server.auth.identity", "server.admission.quota") is not None
    assert check("edgek.kinds", "edgek.cmd.server") is not None
    assert check("server.nowhere", "edgek.kinds") is not None
    assert check("server.controllers.job", "server.storage.objectstore") is None
    assert check("server.controllers.builtin", "server.scheduler.scheduler") is None
    assert check("edgek.cmd.server", "server.main") is None
    assert check("edgek.patch.apply", "edgek.kinds") is None
