"""Field paths and their ``FieldsV1`` encoding, as used by ``metadata.managedFields``.

A path is a tuple of path-element tokens spelled the way ``FieldsV1`` spells them:
``f:<name>`` selects a map field, ``k:<json object>`` a list-map element by its key
fields (sorted, compact JSON), ``v:<json>`` a set element and ``i:<n>`` an atomic-list
index. A field set is a plain ``set`` of paths; ``FieldsV1`` nests them as a JSON tree
where ``{}`` marks a leaf member and ``".": {}`` marks a member that also has children.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

Path = tuple[str, ...]

_KIND_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def compact_json(value: Any) -> str:
    """Compact JSON with sorted object keys, the spelling used inside path tokens."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def field_token(name: str) -> str:
    """The token selecting map field ``name``."""
    return "f:" + name


def key_token(key: dict[str, Any]) -> str:
    """The token selecting the list-map element whose key fields are ``key``."""
    return "k:" + compact_json(key)


def value_token(value: Any) -> str:
    """The token selecting the set element equal to ``value``."""
    return "v:" + compact_json(value)


@lru_cache(maxsize=8192)
def _canonical(token: str) -> str:
    """Re-spell a decoded ``k:``/``v:`` token so equal elements compare equal (cached:
    the same few tokens recur in every object of a kind)."""
    if token.startswith("f:"):
        return token
    kind, _, rest = token.partition(":")
    if kind in ("k", "v"):
        try:
            return kind + ":" + compact_json(json.loads(rest))
        except ValueError:
            return token
    return token


def decode(fields: Any) -> set[Path]:
    """The field set encoded by a ``fieldsV1`` object (anything malformed is skipped)."""
    out: set[Path] = set()

    def walk(node: Any, prefix: Path) -> None:
        if not isinstance(node, dict):
            return
        for name, child in node.items():
            if name == ".":
                if prefix:
                    out.add(prefix)
                continue
            path = (*prefix, _canonical(name))
            if isinstance(child, dict) and child:
                walk(child, path)
            else:
                out.add(path)

    walk(fields, ())
    return out


def tree(paths: set[Path]) -> dict[str, Any]:
    """Nest ``paths`` into a token tree; a node holding ``"."`` is itself a member."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for token in path:
            node = node.setdefault(token, {})
        node["."] = {}
    return root


@lru_cache(maxsize=8192)
def _element_key(token: str) -> tuple[int, Any]:
    kind, _, rest = token.partition(":")
    if kind == "i" and rest.lstrip("-").isdigit():
        return (3, int(rest))
    return (_KIND_ORDER.get(kind, 4), rest)


def encode(paths: set[Path]) -> dict[str, Any]:
    """The ``fieldsV1`` object for a field set, children in upstream order."""

    def emit(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        children = [t for t in node if t != "."]
        if "." in node and children:
            out["."] = {}
        for token in sorted(children, key=_element_key):
            out[token] = emit(node[token])
        return out

    return emit(tree(paths))


def iteration_key(path: Path) -> tuple[tuple[int, tuple[int, Any]], ...]:
    """Sort key giving upstream's set iteration order: at each level the members come
    first, then the children's subtrees, each group in path-element order."""
    last = len(path) - 1
    return tuple((0 if i == last else 1, _element_key(t)) for i, t in enumerate(path))


def path_string(path: Path) -> str:
    """Human-readable path, e.g. ``.spec.containers[name="app"].image``."""
    parts = []
    for token in path:
        kind, _, rest = token.partition(":")
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            try:
                key = json.loads(rest)
            except ValueError:
                key = {}
            inner = ",".join(f"{name}={compact_json(v)}" for name, v in sorted(key.items()))
            parts.append(f"[{inner}]")
        elif kind == "v":
            parts.append(f"[={rest}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)
