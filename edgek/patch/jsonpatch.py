"""RFC 6902 JSON patch with RFC 6901 JSON pointers."""

from __future__ import annotations

import json
import marshal
import re
from typing import Any

from edgek import fastjson
from edgek.objects import clone
from edgek.patch.errors import PatchError

#: Most operations one patch may hold (upstream's maxJSONPatchOperations).
MAX_OPERATIONS = 10_000
#: Most JSON bytes ``copy`` operations may add up to (upstream's JSONPatchMaxCopyBytes).
MAX_COPY_BYTES = 3 * 1024 * 1024
_INDEX = re.compile(r"^(0|[1-9][0-9]*)$")
_OPS = ("add", "remove", "replace", "move", "copy", "test")


def json_equal(a: Any, b: Any) -> bool:
    """JSON value equality: numbers compare by value, booleans are not numbers.

    Python's ``==`` differs from it only in taking ``True`` for ``1``, so values it finds
    unequal are unequal; equal ones are confirmed by identical ``marshal`` output (same
    types, same order: fast, in C) or else walked."""
    if a is b:
        return True
    if a != b:
        return False
    try:
        if marshal.dumps(a) == marshal.dumps(b):
            return True
    except ValueError:  # not plain data, or nested too deep
        pass
    return _walk_equal(a, b)


def _walk_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_walk_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_walk_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, int | float):
        return isinstance(b, int | float) and a == b
    return type(a) is type(b) and a == b


class TooManyOperations(PatchError):
    """A patch with more than :data:`MAX_OPERATIONS` operations (upstream: 413)."""


def json_patch(doc: Any, ops: Any) -> Any:
    """Apply a JSON patch (a list of operations) to ``doc`` and return the new document.

    Supports ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test``; the input
    document and operations are never mutated. Any failing operation (bad shape, missing
    path, failed ``test``) raises :class:`PatchError` and no partial result is returned.
    More than :data:`MAX_OPERATIONS` operations raise :class:`TooManyOperations`; copies
    adding up to more than :data:`MAX_COPY_BYTES` of JSON fail as upstream's do.
    """
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    if len(ops) > MAX_OPERATIONS:
        raise TooManyOperations(
            f"The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {len(ops)}"
        )
    result = clone(doc)
    copied = [0]
    for number, op in enumerate(ops):
        if not isinstance(op, dict):
            raise PatchError(f"JSON patch operation {number} is not an object")
        result = _apply(result, op, copied)
    return result


def _copy(value: Any, copied: list[int]) -> Any:
    """A copy of ``value``, counted into the bytes ``copied`` so far (a one-item list)."""
    encoded = fastjson.dumps(value)
    copied[0] += len(encoded)
    if copied[0] > MAX_COPY_BYTES:
        raise PatchError(
            "Unable to complete the copy, the accumulated size increase of copy is "
            f"{copied[0]}, exceeding the limit {MAX_COPY_BYTES}"
        )
    return fastjson.loads(encoded)


def _apply(doc: Any, op: dict[str, Any], copied: list[int]) -> Any:
    """Apply one operation; ``doc`` is owned and may be changed in place."""
    name = op.get("op")
    if name not in _OPS:
        raise PatchError(f"unknown JSON patch operation {name!r}")
    path = _pointer(op, "path")
    if name == "remove":
        return _remove(doc, path, op["path"], name)[0]
    if name in ("move", "copy"):
        return _move_or_copy(doc, op, path, copied)
    if "value" not in op:
        raise PatchError(f"{name} operation on {op['path']!r} has no value")
    value = clone(op["value"])
    if name == "add":
        return _add(doc, path, value, op["path"])
    current = _get(doc, path, op["path"], name)
    if name == "test":
        _test(current, value, op["path"])
        return doc
    if not path:
        return value
    parent = _get(doc, path[:-1], op["path"], name)
    if isinstance(parent, list):
        parent[_index(path[-1], len(parent), op["path"], name)] = value
    else:
        parent[path[-1]] = value
    return doc


def _move_or_copy(doc: Any, op: dict[str, Any], path: list[str], copied: list[int]) -> Any:
    """A ``move`` or ``copy`` operation: the value at ``from`` added at ``path`` (a copy is
    counted into the bytes ``copied`` so far)."""
    name = op["op"]
    source = _pointer(op, "from")
    if name == "move":
        if len(path) > len(source) and path[: len(source)] == source:
            raise PatchError(f"move operation cannot move {op['from']!r} into its own child")
        doc, value = _remove(doc, source, op["from"], name)
    else:
        value = _copy(_get(doc, source, op["from"], "copy"), copied)
    return _add(doc, path, value, op["path"])


def _test(current: Any, value: Any, path: str) -> None:
    if not json_equal(current, value):
        raise PatchError(
            f"test operation failed: value at {path!r} is {json.dumps(current)}, "
            f"not {json.dumps(value)}"
        )


def _pointer(op: dict[str, Any], member: str) -> list[str]:
    """Parse the JSON pointer in ``op[member]`` into unescaped reference tokens."""
    raw = op.get(member)
    if not isinstance(raw, str):
        raise PatchError(f"{op['op']} operation is missing a string {member!r} member")
    if raw == "":
        return []
    if not raw.startswith("/"):
        raise PatchError(f"JSON pointer {raw!r} must be empty or start with '/'")
    tokens = raw[1:].split("/")
    for token in tokens:
        if re.search(r"~(?![01])", token):
            raise PatchError(f"JSON pointer {raw!r} has an invalid '~' escape")
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def _index(token: str, length: int, path: str, name: str, *, insert: bool = False) -> int:
    """The list index named by ``token``; ``-`` (append) and ``length`` only when inserting."""
    if insert and token == "-":
        return length
    if not _INDEX.match(token):
        raise PatchError(
            f"{name} operation does not apply: {token!r} in {path!r} is not a list index"
        )
    index = int(token)
    if index > length or (index == length and not insert):
        raise PatchError(
            f"{name} operation does not apply: index {index} in {path!r} is out of range"
        )
    return index


def _get(doc: Any, tokens: list[str], path: str, name: str) -> Any:
    """The value at ``tokens``; a missing location raises :class:`PatchError`."""
    node = doc
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"{name} operation does not apply: path {path!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(token, len(node), path, name)]
        else:
            raise PatchError(f"{name} operation does not apply: path {path!r} does not exist")
    return node


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    """Insert ``value`` at ``tokens`` (replacing an existing object member)."""
    if not tokens:
        return value
    parent = _get(doc, tokens[:-1], path, "add")
    if isinstance(parent, list):
        parent.insert(_index(tokens[-1], len(parent), path, "add", insert=True), value)
    elif isinstance(parent, dict):
        parent[tokens[-1]] = value
    else:
        raise PatchError(f"add operation does not apply: the parent of {path!r} is not a container")
    return doc


def _remove(doc: Any, tokens: list[str], path: str, name: str) -> tuple[Any, Any]:
    """Remove the value at ``tokens``; returns the document and the removed value."""
    if not tokens:
        raise PatchError(f"{name} operation cannot remove the whole document")
    parent = _get(doc, tokens[:-1], path, name)
    if isinstance(parent, list):
        return doc, parent.pop(_index(tokens[-1], len(parent), path, name))
    if isinstance(parent, dict) and tokens[-1] in parent:
        return doc, parent.pop(tokens[-1])
    raise PatchError(f"{name} operation does not apply: path {path!r} does not exist")
