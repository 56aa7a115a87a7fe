"""Kubernetes strategic merge patch, driven by the kinds registry schema.

Maps merge recursively and ``null`` deletes a key. A list merges only when its field's
``patchStrategy`` includes ``merge``: lists of objects merge element by element on the
field's ``patchMergeKey``, lists of scalars merge as an ordered set; every other list is
replaced. Directives: ``$patch`` (``merge``, ``replace``, ``delete``) in maps and merging
list elements, ``$retainKeys``, ``$setElementOrder/<field>`` and
``$deleteFromPrimitiveList/<field>``. Directives never reach the result.

Deviations from upstream, all in the direction of a clean result: ``$patch: delete`` on a
nested map removes the field (upstream leaves ``{}``); ``$patch: merge`` is accepted as
a no-op; values absent from the original are added with their directives applied and
their nulls dropped; a deletion list for a list the object does not have is a no-op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgek import kinds
from edgek.kinds import TypeRef
from edgek.objects import clone
from edgek.patch.errors import PatchError
from edgek.patch.jsonpatch import json_equal

_MARKER = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder"
_DELETE_FROM = "$deleteFromPrimitiveList"
_ABSENT = object()  # identity of an element missing its merge key


@dataclass(frozen=True)
class _FieldPatch:
    """How one field is patched: its type and its patch strategy."""

    ref: TypeRef | None = None
    merge: bool = False
    replace: bool = False
    merge_key: str | None = None

    @property
    def elem(self) -> _FieldPatch:
        """The patch information for an element of this (list) field."""
        if self.ref is not None and self.ref.shape == "list":
            return _FieldPatch(self.ref.elem)
        return _FieldPatch()


def strategic_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any], type_name: str | None, *, owned: bool = False
) -> dict[str, Any]:
    """Apply a strategic merge patch to ``doc`` against the schema type ``type_name``.

    ``type_name`` is a registry type such as ``"apps/v1.Deployment"``; with ``None`` (or
    for fields outside the schema) maps merge and lists are replaced. Returns a new
    document; ``doc`` and ``patch`` are not mutated, unless ``owned`` says ``doc`` is the
    caller's private copy, which is then patched in place. A malformed patch raises
    :class:`PatchError`.
    """
    if not isinstance(patch, dict):
        raise PatchError(f"a strategic merge patch must be a JSON object, not {_describe(patch)}")
    if not isinstance(doc, dict):
        doc = {}
    original = doc if owned else clone(doc)
    return _merge_map(original, patch, TypeRef("struct", type_name) if type_name else None)


def _describe(value: Any) -> str:
    """A short name of a JSON value's type for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _field(ref: TypeRef | None, name: str) -> _FieldPatch:
    """Patch information for field ``name`` of a value of type ``ref``."""
    if ref is None:
        return _FieldPatch()
    if ref.shape == "map":
        return _FieldPatch(ref.elem)
    if ref.shape != "struct":
        return _FieldPatch()
    field = kinds.fields(ref.name).get(name)
    if field is None:
        return _FieldPatch()
    strategies = (field.patch_strategy or "").split(",")
    return _FieldPatch(
        kinds.resolve(field.type), "merge" in strategies, "replace" in strategies, field.merge_key
    )


def _directive_field(key: str, prefix: str, value: Any) -> str:
    """The field named by a ``<prefix>/<field>`` directive key, whose value must be a list."""
    name = key[len(prefix) + 1 :] if key.startswith(prefix + "/") else ""
    if not name or not isinstance(value, list):
        what = "setElementOrder list" if prefix == _SET_ORDER else "primitive list"
        raise PatchError(
            f"invalid patch format of {what}: {key} must be <directive>/<field>: [...]"
        )
    return name


def _merge_map(
    original: dict[str, Any], patch: dict[str, Any], ref: TypeRef | None
) -> dict[str, Any]:
    """Merge ``patch`` into ``original`` (owned, changed in place) and return the result."""
    if _MARKER in patch:
        directive = patch[_MARKER]
        rest = {k: v for k, v in patch.items() if k != _MARKER}
        if directive == "delete":
            return {}
        if directive == "replace":
            return _merge_map({}, rest, ref)
        if directive != "merge":
            raise PatchError(f"unknown patch type: {_dump(directive)} in map: {_dump(patch)}")
        patch = rest
    if _RETAIN_KEYS in patch:
        _retain_keys(original, patch)

    orders, deletions, names = _field_directives(patch)
    for name in names:
        field = _field(ref, name)
        before = original.get(name)
        if name in patch:
            _merge_field(original, name, patch[name], field)
        if name in orders:
            _set_element_order(original, name, orders[name], before, patch.get(name), field)
        if name in deletions and isinstance(original.get(name), list):
            doomed = {_key(v) for v in deletions[name]}
            original[name] = [v for v in original[name] if _key(v) not in doomed]
    return original


def _field_directives(
    patch: dict[str, Any],
) -> tuple[dict[str, list[Any]], dict[str, list[Any]], list[str]]:
    """The ``$setElementOrder/`` and ``$deleteFromPrimitiveList/`` directives of a map patch
    by field, and every field the patch names, in order."""
    orders: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    names: list[str] = []
    for key, value in patch.items():
        if key == _RETAIN_KEYS:
            continue
        if key.startswith(_SET_ORDER):
            name = _directive_field(key, _SET_ORDER, value)
            orders[name] = value
        elif key.startswith(_DELETE_FROM):
            name = _directive_field(key, _DELETE_FROM, value)
            deletions[name] = value
        else:
            name = key
        names.append(name)
    return orders, deletions, list(dict.fromkeys(names))


def _retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply ``$retainKeys``: drop fields of ``original`` that the list does not name."""
    keys = patch[_RETAIN_KEYS]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PatchError(
            "invalid patch format of retainKeys: $retainKeys must be a list of field names"
        )
    for key, value in patch.items():
        if value is None or key in (_MARKER, _RETAIN_KEYS):
            continue
        if key.startswith((_SET_ORDER, _DELETE_FROM)):
            continue
        if key not in keys:
            raise PatchError(
                f"invalid patch format of retainKeys: field {key!r} is set but not in $retainKeys"
            )
    for key in [k for k in original if k not in keys]:
        del original[key]


def _merge_field(original: dict[str, Any], name: str, value: Any, field: _FieldPatch) -> None:
    """Merge the patch ``value`` of field ``name`` into ``original``."""
    if value is None or (isinstance(value, dict) and value.get(_MARKER) == "delete"):
        original.pop(name, None)
        return
    current = original.get(name)
    if isinstance(value, dict) and isinstance(current, dict) and not field.replace:
        original[name] = _merge_map(current, value, field.ref)
    elif isinstance(value, list) and isinstance(current, list):
        original[name] = _merge_list(current, value, field)
    else:
        original[name] = _materialize(value, field)


def _materialize(value: Any, field: _FieldPatch) -> Any:
    """A patch value as a plain value: directives applied, nulls dropped, containers new."""
    if isinstance(value, dict):
        return _merge_map({}, value, field.ref)
    if isinstance(value, list):
        return _merge_list([], value, field)
    return value


def _element_kind(*lists: list[Any]) -> str | None:
    """``"map"`` or ``"scalar"`` for the elements of ``lists``; ``None`` if all are empty."""
    kind = None
    for values in lists:
        for value in values:
            if isinstance(value, list):
                raise PatchError("lists of lists are not supported")
            this = "map" if isinstance(value, dict) else "scalar"
            if kind is not None and kind != this:
                raise PatchError(f"list element types are not identical: {_dump(list(lists))}")
            kind = this
    return kind


def _merge_list(original: list[Any], patch: list[Any], field: _FieldPatch) -> list[Any]:
    """Merge a patch list into ``original`` (owned) according to the field's strategy."""
    if not field.merge:
        return [_materialize(v, field.elem) for v in patch]
    kind = _element_kind(original, patch)
    if kind is None:
        return []
    if kind == "scalar":
        merged: list[Any] = []
        seen: set[Any] = set()
        for value in original + patch:
            if _key(value) not in seen:
                seen.add(_key(value))
                merged.append(value)
        return _enforce_order(merged, patch, original, None)
    return _merge_map_list(original, patch, field)


def _merge_map_list(original: list[Any], patch: list[Any], field: _FieldPatch) -> list[Any]:
    """Merge a patch list of maps into ``original`` by the field's merge key."""
    key = field.merge_key
    if not key:
        raise PatchError("cannot merge lists of objects without a merge key")
    elem_ref = field.elem.ref
    kept, items, replace = _list_directives(original, patch, key)
    if replace:
        return [_merge_map({}, element, elem_ref) for element in items]

    merged = list(kept)
    where = _first_positions([o.get(key, _ABSENT) for o in merged])
    for element in items:
        value = _key(_merge_key_value(element, key))
        index = where.get(value)
        if index is None:
            where[value] = len(merged)
            merged.append(_merge_map({}, element, elem_ref))
        else:
            merged[index] = _merge_map(merged[index], element, elem_ref)
    return _enforce_order(merged, items, kept, key)


def _list_directives(
    original: list[Any], patch: list[Any], key: str
) -> tuple[list[Any], list[dict[str, Any]], bool]:
    """Apply the ``$patch`` elements of a map list: (original elements kept, the elements
    to merge, whether the list is replaced)."""
    items: list[dict[str, Any]] = []
    doomed: set[Any] = set()
    replace = False
    for element in patch:
        if _MARKER not in element:
            items.append(element)
            continue
        directive = element[_MARKER]
        if directive == "delete":
            doomed.add(_key(_merge_key_value(element, key)))
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            items.append({k: v for k, v in element.items() if k != _MARKER})
        else:
            raise PatchError(f"unknown patch type: {_dump(directive)} in map: {_dump(element)}")
    kept = [o for o in original if key not in o or _key(o[key]) not in doomed]
    return kept, items, replace


def _merge_key_value(element: dict[str, Any], key: str) -> Any:
    if key not in element:
        raise PatchError(f"map: {_dump(element)} does not contain declared merge key: {key}")
    return element[key]


def _identity(value: Any, key: str | None) -> Any:
    """What identifies a list element: its merge key value, or the value itself."""
    if key is not None and isinstance(value, dict):
        return value.get(key, _ABSENT)
    return value


def _key(value: Any) -> Any:
    """A hashable stand-in for a JSON value: equal exactly when the values are equal as
    JSON (numbers by value, booleans apart from numbers), so lists are matched through
    dicts and sets in linear time."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, dict):
        return ("d", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("l", tuple(_key(v) for v in value))
    return value


def _first_positions(ids: list[Any]) -> dict[Any, int]:
    """The index of the first occurrence of every identity in ``ids`` (by :func:`_key`)."""
    positions: dict[Any, int] = {}
    for i, identity in enumerate(ids):
        positions.setdefault(_key(identity), i)
    return positions


def _enforce_order(
    merged: list[Any], patch_order: list[Any], server_order: list[Any], key: str | None
) -> list[Any]:
    """Order ``merged``: elements named in ``patch_order`` follow it, the others keep their
    ``server_order`` order, and the two runs interleave as they did in ``server_order``."""
    patch_at = _first_positions([_identity(v, key) for v in patch_order])
    server_at = _first_positions([_identity(v, key) for v in server_order])
    ids = [_key(_identity(v, key)) for v in merged]
    in_patch = [(patch_at[k], k, v) for k, v in zip(ids, merged, strict=True) if k in patch_at]
    in_patch.sort(key=lambda t: t[0])
    server_only = [
        (server_at.get(k, len(server_order)), k, v)
        for k, v in zip(ids, merged, strict=True)
        if k not in patch_at
    ]
    server_only.sort(key=lambda t: t[0])

    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(in_patch):
        left = server_at.get(server_only[i][1])
        right = server_at.get(in_patch[j][1])
        if left is not None and right is not None and left < right:
            out.append(server_only[i][2])
            i += 1
        else:
            out.append(in_patch[j][2])
            j += 1
    return out + [t[2] for t in server_only[i:]] + [t[2] for t in in_patch[j:]]


def _set_element_order(
    original: dict[str, Any],
    name: str,
    order: list[Any],
    before: Any,
    patch_list: Any,
    field: _FieldPatch,
) -> None:
    """Apply ``$setElementOrder/<name>`` to the merged list ``original[name]``."""
    key = field.merge_key
    if key and not all(isinstance(o, dict) and key in o for o in order):
        raise PatchError(
            f"invalid patch format of setElementOrder list: every element of "
            f"{_SET_ORDER}/{name} must be an object with the merge key {key!r}"
        )
    order_ids = [_identity(o, key) for o in order]
    if isinstance(patch_list, list):
        cursor = 0
        for element in patch_list:
            if isinstance(element, dict) and _MARKER in element:
                continue
            wanted = _identity(element, key)
            while cursor < len(order_ids) and not json_equal(order_ids[cursor], wanted):
                cursor += 1
            if cursor == len(order_ids):
                raise PatchError(
                    f"the order in patch list {_dump(patch_list)} doesn't match "
                    f"{_SET_ORDER} list {_dump(order)}"
                )
            cursor += 1
    current = original.get(name)
    if isinstance(current, list):
        server = before if isinstance(before, list) else []
        original[name] = _enforce_order(current, order, server, key)
