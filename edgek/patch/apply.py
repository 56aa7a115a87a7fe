"""Server-side apply and ``metadata.managedFields`` bookkeeping.

Follows the upstream field manager (structured-merge-diff): every writer owns a set of
field paths, recorded per manager in ``metadata.managedFields``. An *apply* merges the
applied configuration into the live object, makes the applier own exactly the applied
fields, removes fields it applied before but no longer applies (unless someone else
owns them) and refuses to change fields other managers own (:class:`ApplyConflict`)
unless forced. Any other write (:func:`record_update`) gives the writer ownership of the
fields it changed.

The schema comes from :mod:`edgek.kinds`: structs merge field by field, ``map`` lists
merge by their key fields, ``set`` lists as sets, atomic lists/maps/structs and scalars
are replaced whole. Custom resources (no type name) merge maps and replace lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

from edgek import kinds
from edgek.objects import clone
from edgek.patch import fieldset
from edgek.patch.fieldset import Path
from edgek.patch.jsonpatch import json_equal
from edgek.status import ApiError, bad_request

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

#: Defaults of list-map key fields that may be omitted (upstream ``+default`` markers, which
#: the kinds data does not carry).
KEY_DEFAULTS: dict[str, dict[str, Any]] = {
    "core/v1.ContainerPort": {"protocol": "TCP"},
    "core/v1.ServicePort": {"protocol": "TCP"},
}

#: Paths never recorded in a manager's set.
_STRIPPED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", "f:" + name)
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    }
)

#: Metadata the server sets: an applied value never reaches the stored object.
_SERVER_METADATA = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")

#: Go zero values of non-omitempty special fields, as a typed round trip renders them.
_SPECIAL_ZERO: dict[str, Any] = {
    "resource.Quantity": "0",
    "intstr.IntOrString": 0,
    "meta/v1.Duration": "0s",
}


class _Missing:
    """Marker for an absent value (distinct from JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


# ---------------------------------------------------------------------------
# Schema


@dataclass(frozen=True)
class _Node:
    """How a value at some position merges: ``leaf`` (scalar or atomic), ``struct``,
    ``map`` (string-keyed, each entry its own member), ``assoc`` (list merged by
    ``keys``), ``set`` (list of scalars merged by value) or ``deduced`` (shape taken
    from the value: maps merge, lists are atomic)."""

    kind: Literal["leaf", "struct", "map", "assoc", "set", "deduced"]
    name: str = ""
    elem: _Node | None = None
    keys: tuple[str, ...] = ()
    root: bool = False


_LEAF = _Node("leaf")
_DEDUCED = _Node("deduced")
_CR_ROOT = _Node("deduced", root=True)
_DEDUCED_TYPES = frozenset({"runtime.RawExtension", "apiextensions/v1.JSON"})


def _root(type_name: str | None) -> _Node:
    return _Node("struct", type_name) if type_name else _CR_ROOT


def _node(ref: kinds.TypeRef, field: kinds.Field | None = None) -> _Node:
    """The node for a resolved type; ``field`` is the struct field holding it, if any."""
    if ref.shape == "special":
        return _DEDUCED if ref.name in _DEDUCED_TYPES else _LEAF
    if ref.shape == "struct":
        struct_type = field.struct_type if field else None
        if (struct_type or kinds.struct_type(ref.name)) == "atomic":
            return _LEAF
        return _Node("struct", ref.name)
    if ref.shape == "map" and ref.elem is not None and not (field and field.map_type == "atomic"):
        return _Node("map", elem=_node(ref.elem))
    if ref.shape == "list" and ref.elem is not None and field is not None:
        if field.list_type == "map":
            return _Node("assoc", elem=_node(ref.elem), keys=field.list_map_keys)
        if field.list_type == "set":
            return _Node("set", elem=_node(ref.elem))
    return _LEAF


@cache
def _struct_child(type_name: str, name: str) -> tuple[_Node, Any]:
    """The node of a struct field and its value in a zero struct (``MISSING`` when a
    zero struct omits it)."""
    f = kinds.fields(type_name).get(name)
    if f is None:
        return _DEDUCED, MISSING
    ref = kinds.resolve(f.type)
    return _node(ref, f), _zero(f, ref)


def _zero(f: kinds.Field, ref: kinds.TypeRef) -> Any:
    pointer = f.type.startswith("*")
    if ref.shape == "struct" and not pointer:
        return {}
    if f.omitempty:
        return MISSING
    if pointer or ref.shape in ("list", "map", "bytes"):
        return None
    if ref.shape == "special":
        return _SPECIAL_ZERO.get(ref.name)
    if ref.name == "bool":
        return False
    if ref.name == "string":
        return ""
    return 0.0 if ref.name.startswith("float") else 0


def _child(node: _Node, name: str) -> tuple[_Node, Any]:
    """Node and zero value of entry ``name`` of a struct, map or deduced map."""
    if node.kind == "struct":
        return _struct_child(node.name, name)
    if node.kind == "map" and node.elem is not None:
        return node.elem, MISSING
    if node.root and name == "metadata":
        return _Node("struct", "meta/v1.ObjectMeta"), MISSING
    return _DEDUCED, MISSING


def _is_map_node(node: _Node) -> bool:
    return node.kind in ("struct", "map", "deduced")


def _is_list_node(node: _Node) -> bool:
    return node.kind in ("assoc", "set")


# ---------------------------------------------------------------------------
# Values


def _item_token(item: Any, node: _Node, where: Path, strict: bool) -> str:
    """The path element of a list item. ``strict`` (applied configurations) rejects
    items that lack a key field without default."""
    if node.kind == "set":
        return fieldset.value_token(item)
    if not isinstance(item, dict):
        if strict:
            raise bad_request(f"{fieldset.path_string(where)}: list-map element is not an object")
        return fieldset.value_token(item)
    defaults = KEY_DEFAULTS.get(node.elem.name if node.elem else "", {})
    key: dict[str, Any] = {}
    for name in node.keys:
        if name in item:
            key[name] = item[name]
        elif name in defaults:
            key[name] = defaults[name]
        elif strict:
            raise bad_request(
                f"{fieldset.path_string(where)}: associative list with keys has an element "
                f'that omits key field "{name}" (and doesn\'t have default value)'
            )
    return fieldset.key_token(key)


def _index(items: list[Any], node: _Node, where: Path, strict: bool) -> list[str]:
    tokens = [_item_token(item, node, where, strict) for item in items]
    if strict and len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise bad_request(
            f"{fieldset.path_string(where)}: duplicate entries for key "
            f"{fieldset.path_string((dup,))}"
        )
    return tokens


def _field_set(value: Any, node: _Node, path: Path, out: set[Path], strict: bool) -> None:
    """Add the paths a value sets (upstream ``ToFieldSet``) to ``out``."""
    if _is_map_node(node) and isinstance(value, dict):
        for name, child_value in value.items():
            child, _ = _child(node, name)
            child_path = (*path, fieldset.field_token(name))
            _field_set(child_value, child, child_path, out, strict)
            if child_value is None or child_value == {} or node.kind == "map":
                out.add(child_path)
    elif _is_list_node(node) and isinstance(value, list):
        assert node.elem is not None
        for token, item in zip(_index(value, node, path, strict), value, strict=True):
            item_path = (*path, token)
            _field_set(item, node.elem, item_path, out, strict)
            out.add(item_path)
    elif path:
        out.add(path)


def _merge(live: Any, applied: Any, node: _Node, path: Path) -> Any:
    """``applied`` merged onto ``live`` (which the result may reuse and mutate)."""
    if _is_map_node(node) and isinstance(live, dict) and isinstance(applied, dict):
        for name, value in applied.items():
            child, _ = _child(node, name)
            live[name] = _merge(
                live.get(name, MISSING), value, child, (*path, fieldset.field_token(name))
            )
        return live
    if _is_list_node(node) and isinstance(live, list) and isinstance(applied, list):
        return _merge_list(live, applied, node, path)
    return clone(applied)


def _merge_list(live: list[Any], applied: list[Any], node: _Node, path: Path) -> list[Any]:
    """Merge list items by identity. Live-only items keep their place, shared items
    follow the applied order, applied-only items come where the applied list has them."""
    assert node.elem is not None
    elem = node.elem
    ltok = _index(live, node, path, strict=False)
    rtok = _index(applied, node, path, strict=True)
    lmap = _first_by_token(ltok, live)
    rmap = dict(zip(rtok, applied, strict=True))
    shared = [t for t in rtok if t in lmap]
    done: set[str] = set()
    out: list[Any] = []

    def take(token: str) -> None:
        done.add(token)
        out.append(_merge(lmap.get(token, MISSING), rmap[token], elem, (*path, token)))

    li = ri = si = 0
    while li < len(live) or ri < len(applied):
        while si < len(shared) and shared[si] in done:
            si += 1
        if li < len(live):
            token = ltok[li]
            if token not in rmap:
                out.append(live[li])
                li += 1
                continue
            if token in done:
                li += 1
                continue
            if ri < len(applied) and rtok[ri] == token:
                take(token)
                li += 1
                ri += 1
                continue
            if token != shared[si]:
                li += 1
                continue
        if ri < len(applied):
            take(rtok[ri])
            ri += 1
        else:
            li += 1
    return out


@dataclass
class _Diff:
    """Paths added, changed and removed between two values (upstream ``Compare``)."""

    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def _compare(old: Any, new: Any, node: _Node, path: Path, diff: _Diff) -> None:
    """Record in ``diff`` how ``new`` differs from ``old`` (either may be ``MISSING``).
    Absent fields of typed structs compare as their Go zero values."""
    if old is not MISSING and json_equal(old, new):
        return  # equal subtrees differ nowhere; checking that first is much cheaper
    both_maps = all(v is MISSING or v is None or isinstance(v, dict) for v in (old, new))
    both_lists = all(v is MISSING or v is None or isinstance(v, list) for v in (old, new))
    nonempty = any(v is not MISSING and v for v in (old, new))
    if _is_map_node(node) and both_maps and nonempty:
        _compare_maps(old, new, node, path, diff)
    elif _is_list_node(node) and both_lists and nonempty:
        _compare_lists(old, new, node, path, diff)
    elif old is not MISSING and new is not MISSING:
        if not json_equal(old, new) and path:
            diff.modified.add(path)
        return
    if not path:
        return
    if old is MISSING and new is not MISSING:
        diff.added.add(path)
    elif new is MISSING and old is not MISSING:
        diff.removed.add(path)


def _compare_maps(old: Any, new: Any, node: _Node, path: Path, diff: _Diff) -> None:
    """:func:`_compare` field by field (either side may be missing or null)."""
    old_map = old if isinstance(old, dict) else {}
    new_map = new if isinstance(new, dict) else {}
    for name in old_map.keys() | new_map.keys():
        child, zero = _child(node, name)
        # Only a present struct has zero-valued fields; an absent or null one has none.
        _compare(
            old_map.get(name, zero if isinstance(old, dict) else MISSING),
            new_map.get(name, zero if isinstance(new, dict) else MISSING),
            child,
            (*path, fieldset.field_token(name)),
            diff,
        )


def _compare_lists(old: Any, new: Any, node: _Node, path: Path, diff: _Diff) -> None:
    """:func:`_compare` item by item, matched by identity (either side may be missing)."""
    assert node.elem is not None
    old_items = _keyed(old if isinstance(old, list) else [], node, path)
    new_items = _keyed(new if isinstance(new, list) else [], node, path)
    for token in old_items.keys() | new_items.keys():
        _compare(
            old_items.get(token, MISSING),
            new_items.get(token, MISSING),
            node.elem,
            (*path, token),
            diff,
        )


def _keyed(items: list[Any], node: _Node, path: Path) -> dict[str, Any]:
    return _first_by_token(_index(items, node, path, strict=False), items)


def _first_by_token(tokens: list[str], items: list[Any]) -> dict[str, Any]:
    """The first item of each identity token."""
    out: dict[str, Any] = {}
    for token, item in zip(tokens, items, strict=True):
        out.setdefault(token, item)
    return out


def _diff(old: dict[str, Any], new: dict[str, Any], root: _Node) -> _Diff:
    diff = _Diff()
    _compare(old, new, root, (), diff)
    return diff


def _remove(value: Any, paths: dict[str, Any], node: _Node) -> Any:
    """Remove the paths of a token tree (see :func:`fieldset.tree`) from ``value``, in
    place where possible. A map or list emptied by a removal comes back ``MISSING``."""
    if _is_map_node(node) and isinstance(value, dict):
        return _remove_from_map(value, paths, node)
    if _is_list_node(node) and isinstance(value, list) and value:
        return _remove_from_list(value, paths, node)
    return value


def _remove_from_map(value: dict[str, Any], paths: dict[str, Any], node: _Node) -> Any:
    """:func:`_remove` over a map's fields."""
    removed = nulled = False
    for token, sub in paths.items():
        name = token[2:]
        if not token.startswith("f:") or name not in value:
            continue
        if "." in sub:
            del value[name]
            removed = True
            continue
        child, _ = _child(node, name)
        kept = _remove(value[name], sub, child)
        if kept is MISSING:
            # Upstream leaves an emptied child as null, so this map is not empty.
            del value[name]
            nulled = True
        else:
            value[name] = kept
    return MISSING if removed and not nulled and not value else value


def _remove_from_list(value: list[Any], paths: dict[str, Any], node: _Node) -> Any:
    """:func:`_remove` over a list's items, matched by identity."""
    assert node.elem is not None
    out = []
    for token, item in zip(_index(value, node, (), strict=False), value, strict=True):
        sub = paths.get(token)
        if sub is None:
            out.append(item)
        elif "." not in sub:
            kept = _remove(item, sub, node.elem)
            if kept is not MISSING:
                out.append(kept)
    return out or MISSING


def _drop_nulls(value: Any) -> Any:
    """``value`` without ``null`` map entries (typed objects cannot hold them)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Managers


@dataclass(frozen=True)
class _Identity:
    """What makes two managedFields entries the same manager (upstream drops the
    apiVersion for appliers, so an applier keeps one entry across versions)."""

    manager: str
    operation: str
    api_version: str
    subresource: str


@dataclass
class _Entry:
    """One manager's fields; ``encoded`` keeps the stored ``fieldsV1`` for reuse while
    ``fields`` is unchanged (encoding is the costly half of every status write)."""

    fields: set[Path]
    api_version: str
    time: str | None
    encoded: Any = None


_Managers = dict[_Identity, _Entry]


def _identity(manager: str, operation: str, api_version: str, subresource: str) -> _Identity:
    return _Identity(manager, operation, "" if operation == "Apply" else api_version, subresource)


def _decode_managers(entries: Any, keep_encoded: bool = False) -> _Managers | None:
    """Parse ``metadata.managedFields``; ``None`` when it is malformed. With
    ``keep_encoded`` (entries this server wrote) each entry keeps its ``fieldsV1``."""
    if not isinstance(entries, list):
        return None
    out: _Managers = {}
    for e in entries:
        if (
            not isinstance(e, dict)
            or e.get("operation") not in ("Apply", "Update")
            or not e.get("apiVersion")
            or e.get("fieldsType") != "FieldsV1"
        ):
            return None
        ident = _identity(
            str(e.get("manager", "")), e["operation"], e["apiVersion"], e.get("subresource", "")
        )
        raw = e.get("fieldsV1")
        out[ident] = _Entry(
            fieldset.decode(raw), e["apiVersion"], e.get("time"), raw if keep_encoded else None
        )
    return out


def _seconds(time: str | None) -> float:
    if not time:
        return 0.0
    try:
        return datetime.fromisoformat(time).timestamp()
    except ValueError:
        return 0.0


def _encode_managers(managers: _Managers) -> list[dict[str, Any]]:
    """The ``metadata.managedFields`` list, in upstream order."""
    out = []
    for ident, entry in managers.items():
        if not entry.fields:
            continue
        e: dict[str, Any] = {"manager": ident.manager, "operation": ident.operation}
        e["apiVersion"] = entry.api_version
        if entry.time:
            e["time"] = entry.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = (
            entry.encoded if entry.encoded is not None else fieldset.encode(entry.fields)
        )
        if ident.subresource:
            e["subresource"] = ident.subresource
        out.append(e)
    out.sort(
        key=lambda e: (
            e["operation"],
            _seconds(e.get("time")),
            e["manager"],
            e["apiVersion"],
            e.get("subresource", ""),
        )
    )
    return out


def _store_managers(obj: dict[str, Any], managers: _Managers) -> None:
    meta = obj.setdefault("metadata", {})
    encoded = _encode_managers(managers)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def _without_managed_fields(obj: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """``obj`` (``{}`` for none) without managedFields, and those. Only the top level and
    the metadata are copied: callers read the rest (apply merges into its own copy)."""
    if not obj:
        return {}, None
    out = dict(obj)
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return out, None
    meta = out["metadata"] = dict(meta)
    return out, meta.pop("managedFields", None)


# ---------------------------------------------------------------------------
# Conflicts


@dataclass(frozen=True)
class Conflict:
    """One field another manager owns with a different value."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    path: Path

    def manager_text(self, fallback_api_version: str | None = None) -> str:
        """The manager as upstream prints it: ``"name" using apps/v1`` for updaters."""
        text = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            text += f" using {self.api_version or fallback_api_version}"
        return text


class ApplyConflict(Exception):
    """An apply would change fields owned by other managers (HTTP 409)."""

    def __init__(self, details: list[Conflict]) -> None:
        self.details = sorted(
            details,
            key=lambda c: (
                (c.manager, c.operation, c.api_version, c.subresource),
                fieldset.iteration_key(c.path),
            ),
        )
        #: ``(manager, field path)`` pairs, e.g. ``("kubectl", ".spec.replicas")``.
        self.conflicts: list[tuple[str, str]] = [
            (c.manager, fieldset.path_string(c.path)) for c in self.details
        ]
        super().__init__(self.message())

    def message(self, kind_api_version: str | None = None) -> str:
        """Upstream's message. ``kind_api_version`` is printed for an updater whose
        entry lacks an apiVersion (each entry's own apiVersion is printed otherwise)."""
        if len(self.details) == 1:
            c = self.details[0]
            return (
                f"Apply failed with 1 conflict: conflict with "
                f"{c.manager_text(kind_api_version)}: {fieldset.path_string(c.path)}"
            )
        lines: list[str] = []
        previous: Conflict | None = None
        for c in self.details:
            if previous is None or c.manager_text() != previous.manager_text():
                lines.append(f"conflicts with {c.manager_text(kind_api_version)}:")
            lines.append(f"- {fieldset.path_string(c.path)}")
            previous = c
        return f"Apply failed with {len(self.details)} conflicts: " + "\n".join(lines)

    def causes(self, kind_api_version: str | None = None) -> list[dict[str, str]]:
        """``details.causes`` of the 409 Status, one per conflicting field."""
        return [
            {
                "reason": "FieldManagerConflict",
                "message": f"conflict with {c.manager_text(kind_api_version)}",
                "field": fieldset.path_string(c.path),
            }
            for c in self.details
        ]

    def api_error(self, kind_api_version: str | None = None) -> ApiError:
        """The 409 Conflict Status error a client receives."""
        return ApiError(
            409,
            "Conflict",
            self.message(kind_api_version),
            details={"causes": self.causes(kind_api_version)},
        )


# ---------------------------------------------------------------------------
# Apply


@dataclass
class _Applied:
    obj: dict[str, Any]
    managers: _Managers
    changed: bool


def _apply_once(
    live: dict[str, Any],
    config: dict[str, Any],
    managers: _Managers,
    ident: _Identity,
    root: _Node,
    api_version: str,
    force: bool,
) -> _Applied:
    managers = {k: _Entry(set(v.fields), v.api_version, v.time) for k, v in managers.items()}
    merged = _merge(clone(live), config, root, ())
    applied: set[Path] = set()
    _field_set(config, root, (), applied, strict=True)
    applied -= _STRIPPED
    previous = managers.get(ident)
    managers[ident] = _Entry(applied, api_version, previous.time if previous else None)

    if previous is not None:
        owned = set().union(*(e.fields for e in managers.values()))
        gone = previous.fields - owned
        if gone:
            kept = _remove(merged, fieldset.tree(gone), root)
            merged = {} if kept is MISSING else kept

    diff = _diff(live, merged, root)
    changed_paths = diff.modified | diff.added
    conflicts = []
    for other, entry in managers.items():
        if other == ident:
            continue
        taken = entry.fields & changed_paths
        conflicts += [
            Conflict(other.manager, other.operation, entry.api_version, other.subresource, p)
            for p in taken
        ]
        entry.fields -= taken | diff.removed
    if conflicts and not force:
        raise ApplyConflict(conflicts)

    result = _drop_nulls(merged)
    changed = not json_equal(_drop_nulls(live), result)
    return _Applied(result, {k: v for k, v in managers.items() if v.fields}, changed)


def _allowed_by_last_applied(live: dict[str, Any], root: _Node, api_version: str) -> set[Path]:
    """Fields the client-side apply annotation still describes exactly: ``kubectl``
    may take them over from client-side apply without a conflict."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    try:
        last = json.loads(annotations.get(LAST_APPLIED) or "null")
    except ValueError:
        return set()
    if not isinstance(last, dict) or last.get("apiVersion") != api_version:
        return set()
    owned: set[Path] = set()
    _field_set(last, root, (), owned, strict=False)
    diff = _diff(last, live, root)
    return owned - diff.modified - diff.added - diff.removed


def apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    type_name: str | None,
    api_version: str,
    now: str,
) -> dict[str, Any]:
    """Server-side apply of ``applied`` (the parsed apply-patch body) onto ``live``
    (``None`` when the object does not exist yet); returns the new object.

    The manager's ``Apply`` entry in ``metadata.managedFields`` then owns exactly the
    applied fields; fields it applied before and no longer does are removed unless
    another manager owns them; changing fields owned by other managers raises
    :class:`ApplyConflict` unless ``force`` (then they lose ownership). For the manager
    ``kubectl``, conflicts on fields the client-side apply annotation still describes
    are taken over, and that annotation, when present, is rewritten to the applied
    configuration. Applied ``uid``/``resourceVersion``/``creationTimestamp``/
    ``generation`` are not merged (preconditions are the caller's business). Raises
    :class:`~edgek.status.ApiError` (400) for a wrong apiVersion, for
    ``metadata.managedFields`` in the body or for malformed list-map elements.
    """
    if applied.get("apiVersion") != api_version:
        raise bad_request(
            "Incorrect version specified in apply patch. Specified patch version: "
            f"{applied.get('apiVersion') or ''}, expected: {api_version}"
        )
    config = _applied_config(applied)

    root = _root(type_name)
    current, entries = _without_managed_fields(live)
    managers = _decode_managers(entries) or {}
    ident = _identity(manager, "Apply", api_version, "")
    try:
        result = _apply_once(current, config, managers, ident, root, api_version, force)
    except ApplyConflict as exc:
        if manager != "kubectl":
            raise
        allowed = _allowed_by_last_applied(current, root, api_version)
        remaining = [c for c in exc.details if c.path not in allowed]
        if remaining:
            raise ApplyConflict(remaining) from None
        result = _apply_once(current, config, managers, ident, root, api_version, True)

    entry = result.managers.get(ident)
    if entry is not None and (result.changed or entry.time is None):
        entry.time = now
    obj = result.obj
    if manager == "kubectl":
        _rewrite_last_applied(obj, applied)
    _store_managers(obj, result.managers)
    return obj


def _applied_config(applied: dict[str, Any]) -> dict[str, Any]:
    """A copy of the applied object without the metadata the server sets."""
    config = clone(applied)
    meta = config.get("metadata")
    if isinstance(meta, dict):
        if meta.get("managedFields") is not None:
            raise bad_request("metadata.managedFields must be nil")
        for name in _SERVER_METADATA:
            meta.pop(name, None)
    return config


def _rewrite_last_applied(obj: dict[str, Any], applied: dict[str, Any]) -> None:
    """Keep kubectl's last-applied annotation, when the object has one, equal to ``applied``."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if not isinstance(annotations, dict) or not annotations.get(LAST_APPLIED):
        return
    last = clone(applied)
    last_annotations = (last.get("metadata") or {}).get("annotations")
    if isinstance(last_annotations, dict):
        last_annotations.pop(LAST_APPLIED, None)
    annotations[LAST_APPLIED] = fieldset.compact_json(last) + "\n"


# ---------------------------------------------------------------------------
# Updates


def record_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    type_name: str | None,
    api_version: str,
    now: str,
    subresource: str = "",
) -> None:
    """Update ``new["metadata"]["managedFields"]`` in place for a non-apply write
    (create when ``old`` is ``None``, update or patch) by ``manager``.

    The fields that differ between ``old`` and ``new`` (every set field on create) join
    the manager's ``Update`` entry (stamped ``now``) and leave every other entry;
    removed fields leave every entry; entries left empty are dropped. Managed fields
    sent in ``new`` replace the old ones (not for subresources); an empty list or
    ``[{}]`` clears them.
    """
    meta = new.setdefault("metadata", {})
    sent = meta.pop("managedFields", None)
    if sent == [] or sent == [{}]:
        return
    managers = _decode_managers(sent) if sent and not subresource else None
    old_obj, old_entries = _without_managed_fields(old)
    if managers is None:
        managers = _decode_managers(old_entries, keep_encoded=True) or {}

    diff = _diff(old_obj, new, _root(type_name))
    changed = (diff.modified | diff.added) - _STRIPPED
    ident = _identity(manager, "Update", api_version, subresource)
    for key, entry in managers.items():
        dropped = diff.removed if key == ident else changed | diff.removed
        if dropped and not entry.fields.isdisjoint(dropped):
            entry.fields -= dropped
            entry.encoded = None
    if changed:
        previous = managers.get(ident)
        if previous is not None and changed <= previous.fields:
            previous.time = now
        else:
            fields = changed | (previous.fields if previous else set())
            managers[ident] = _Entry(fields, api_version, now)
    _store_managers(new, managers)
