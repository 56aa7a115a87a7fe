"""OpenAPI documents generated from the kinds registry.

Serves what ``GET /openapi/v3`` (an index of group-version documents), ``GET
/openapi/v3/<api/v1|apis/<group>/<version>>`` and ``GET /openapi/v2`` return. kubectl
reads them to decide whether the server validates fields itself (a ``fieldValidation``
query parameter on the PATCH operation of a kind) and to print ``kubectl explain``.

Schemas follow the upstream naming (``io.k8s.api.apps.v1.Deployment``) and shape: struct
fields become properties, references to other types are wrapped as ``allOf: [{$ref}]``
in v3 (plain ``$ref`` in v2), and the strategic-merge and list-type markers of every
field are carried as ``x-kubernetes-*`` extensions. Custom kinds use the schema of their
CustomResourceDefinition version. Documents are built on first request and cached as
bytes; a cached document is rebuilt when the kinds of its group-version change.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from edgek import kinds

Schema = dict[str, Any]

#: Go import path of each non-``k8s.io/api`` package prefix used in type names.
_GO_PACKAGES = {
    "meta/v1": "k8s.io/apimachinery/pkg/apis/meta/v1",
    "resource": "k8s.io/apimachinery/pkg/api/resource",
    "intstr": "k8s.io/apimachinery/pkg/util/intstr",
    "runtime": "k8s.io/apimachinery/pkg/runtime",
    "apiextensions/v1": "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1",
}

#: Go scalar -> (OpenAPI type, format).
_SCALARS: dict[str, tuple[str, str | None]] = {
    "string": ("string", None),
    "bool": ("boolean", None),
    "int": ("integer", "int32"),
    "int32": ("integer", "int32"),
    "int64": ("integer", "int64"),
    "uint32": ("integer", "int64"),
    "uint64": ("integer", "int64"),
    "float32": ("number", "float"),
    "float64": ("number", "double"),
    "byte": ("integer", "int32"),
}

_TIME: Schema = {"type": "string", "format": "date-time"}

#: Types with a hand-written schema (JSON encodings that are not their Go structs).
_FIXED_V3: dict[str, Schema] = {
    "resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
    "intstr.IntOrString": {
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    },
    "meta/v1.Time": _TIME,
    "meta/v1.MicroTime": _TIME,
    "meta/v1.Duration": {"type": "string"},
    "meta/v1.FieldsV1": {"type": "object"},
    "runtime.RawExtension": {"type": "object"},
    "apiextensions/v1.JSON": {"x-kubernetes-preserve-unknown-fields": True},
    "meta/v1.Patch": {"type": "object"},
}
_FIXED_V2: dict[str, Schema] = {
    **_FIXED_V3,
    "resource.Quantity": {"type": "string"},
    "intstr.IntOrString": {"type": "string", "format": "int-or-string"},
}

_SCALE_GVK = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
_STATUS_GVK = {"group": "", "version": "v1", "kind": "Status"}

#: Parameters: name -> (type, description); ``name`` and ``namespace`` are path parameters.
_PARAMS: dict[str, tuple[str, str]] = {
    "name": ("string", "Name of the object."),
    "namespace": ("string", "Namespace of the object."),
    "pretty": ("string", "If 'true', the output is pretty printed."),
    "dryRun": ("string", "If 'All', the request is processed but nothing is persisted."),
    "fieldManager": ("string", "Name of the actor making the change, for field ownership."),
    "fieldValidation": (
        "string",
        "How the server treats unknown or duplicate fields: Ignore, Warn or Strict.",
    ),
    "force": ("boolean", "Apply requests only: take ownership of conflicting fields."),
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK events on a watch."),
    "continue": ("string", "Continue token from a previous limited list."),
    "fieldSelector": ("string", "Restrict the result by field values."),
    "labelSelector": ("string", "Restrict the result by labels."),
    "limit": ("integer", "Largest number of items to return."),
    "resourceVersion": ("string", "Resource version the request is served at or after."),
    "resourceVersionMatch": ("string", "How resourceVersion applies: Exact or NotOlderThan."),
    "sendInitialEvents": ("boolean", "Start a watch with synthetic events for current state."),
    "timeoutSeconds": ("integer", "Time limit of the list or watch call."),
    "watch": ("boolean", "Stream changes instead of returning a list."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted."),
    "orphanDependents": ("boolean", "Deprecated: orphan the dependents (use propagationPolicy)."),
    "propagationPolicy": ("string", "Garbage collection policy: Orphan, Background or Foreground."),
}
_LIST_PARAMS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
_PATCH_PARAMS = (*_WRITE_PARAMS, "force")
_DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
_COLLECTION_DELETE_PARAMS = (
    *_DELETE_PARAMS,
    *(p for p in _LIST_PARAMS if p not in ("allowWatchBookmarks", "watch")),
)

_JSON = "application/json"
_YAML = "application/yaml"
_PROTOBUF = "application/vnd.kubernetes.protobuf"
_APPLY = "application/apply-patch+yaml"
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_SMP = "application/strategic-merge-patch+json"
_WATCH_TYPES = (f"{_JSON};stream=watch", f"{_PROTOBUF};stream=watch")


def schema_name(type_name: str) -> str:
    """The upstream OpenAPI name of a registry type, e.g. ``apps/v1.Deployment`` ->
    ``io.k8s.api.apps.v1.Deployment``, ``resource.Quantity`` ->
    ``io.k8s.apimachinery.pkg.api.resource.Quantity``."""
    prefix, _, name = type_name.rpartition(".")
    host, _, path = _GO_PACKAGES.get(prefix, f"k8s.io/api/{prefix}").partition("/")
    return ".".join([*reversed(host.split(".")), *path.split("/"), name])


def custom_schema_name(kind: kinds.Kind) -> str:
    """The OpenAPI name of a custom kind: reversed group, version, kind
    (``stable.example.com/v1 CronTab`` -> ``com.example.stable.v1.CronTab``)."""
    return ".".join([*reversed(kind.group.split(".")), kind.version, kind.kind])


def gv_path(group: str, version: str) -> str:
    """The index key (and URL prefix without ``/``) of a group-version."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _gvk(kind: kinds.Kind) -> dict[str, str]:
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


def _is_custom(kind: kinds.Kind) -> bool:
    return kind.custom or kind.type_name is None


def _required(field: kinds.Field) -> bool:
    """kube-openapi's rule: an explicit ``+required`` wins, then ``+optional`` or
    ``omitempty`` make a field optional."""
    return field.required or not (field.optional or field.omitempty)


class _Schemas:
    """Collects the component schemas one document needs, following references."""

    def __init__(self, v3: bool, gvks: dict[str, list[dict[str, str]]]) -> None:
        self.v3 = v3
        self.defs: dict[str, Schema] = {}
        self._gvks = gvks
        self._fixed = _FIXED_V3 if v3 else _FIXED_V2
        self._seen: set[str] = set()
        self._todo: list[str] = []

    def target(self, name: str) -> str:
        return ("#/components/schemas/" if self.v3 else "#/definitions/") + name

    def ref(self, name: str) -> Schema:
        """A reference to component ``name`` as a property schema."""
        target = {"$ref": self.target(name)}
        return {"allOf": [target]} if self.v3 else target

    def type_ref(self, type_name: str) -> Schema:
        """A reference to a registry type, queueing its schema."""
        if type_name not in self._seen:
            self._seen.add(type_name)
            self._todo.append(type_name)
        return self.ref(schema_name(type_name))

    def close(self) -> dict[str, Schema]:
        """Build every queued schema (and what it references); return all, sorted."""
        while self._todo:
            type_name = self._todo.pop()
            self.defs[schema_name(type_name)] = self._build(type_name)
        return dict(sorted(self.defs.items()))

    def add_list(self, name: str, item: Schema, gvk: dict[str, str]) -> None:
        """Add a ``<Kind>List`` schema."""
        self.defs[name] = {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": self.type_ref("meta/v1.ListMeta"),
                "items": {"type": "array", "items": item},
            },
            "required": ["items"],
            "x-kubernetes-group-version-kind": [gvk],
        }

    def add_custom(self, kind: kinds.Kind, schema: Schema | None) -> None:
        """Add a custom kind's schema from its CRD (``None``: any fields)."""
        out: Schema = (
            copy.deepcopy(schema)
            if schema is not None
            else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        )
        out.setdefault("type", "object")
        out["properties"] = {
            **out.get("properties", {}),
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": self.type_ref("meta/v1.ObjectMeta"),
        }
        out["x-kubernetes-group-version-kind"] = [_gvk(kind)]
        self.defs[custom_schema_name(kind)] = out

    def expr(self, type_expr: str) -> Schema:
        """The schema of a field type expression."""
        return self._ref_schema(kinds.resolve(type_expr))

    def _ref_schema(self, ref: kinds.TypeRef) -> Schema:
        if ref.shape in ("struct", "special"):
            return self.type_ref(ref.name)
        if ref.shape == "list":
            assert ref.elem is not None
            return {"type": "array", "items": self._ref_schema(ref.elem)}
        if ref.shape == "map":
            assert ref.elem is not None
            return {"type": "object", "additionalProperties": self._ref_schema(ref.elem)}
        if ref.shape == "bytes":
            return {"type": "string", "format": "byte"}
        kind, fmt = _SCALARS.get(ref.name, ("string", None))
        out: Schema = {"type": kind}
        if fmt:
            out["format"] = fmt
        if ref.enum:
            out["enum"] = list(ref.enum)
        return out

    def _build(self, type_name: str) -> Schema:
        if type_name in self._fixed:
            return copy.deepcopy(self._fixed[type_name])
        if kinds.custom_json(type_name):
            return {}
        props: dict[str, Schema] = {}
        if kinds.has_type_meta(type_name):
            props["apiVersion"] = {"type": "string"}
            props["kind"] = {"type": "string"}
        required: list[str] = []
        for name, field in kinds.fields(type_name).items():
            props[name] = self._property(field)
            if _required(field):
                required.append(name)
        out: Schema = {"type": "object", "properties": props} if props else {"type": "object"}
        if required:
            out["required"] = required
        if type_name in self._gvks:
            out["x-kubernetes-group-version-kind"] = self._gvks[type_name]
        return out

    def _property(self, field: kinds.Field) -> Schema:
        out = self.expr(field.type)
        if field.patch_strategy:
            out["x-kubernetes-patch-strategy"] = field.patch_strategy
        if field.merge_key:
            out["x-kubernetes-patch-merge-key"] = field.merge_key
        if field.list_type:
            out["x-kubernetes-list-type"] = field.list_type
        if field.list_map_keys:
            out["x-kubernetes-list-map-keys"] = list(field.list_map_keys)
        map_type = field.map_type or field.struct_type
        if map_type:
            out["x-kubernetes-map-type"] = map_type
        return out


# ---------------------------------------------------------------------------
# Paths and operations


@dataclass(frozen=True)
class _Op:
    """One operation, independent of the OpenAPI version it is rendered in."""

    method: str
    op_id: str
    action: str
    description: str
    gvk: dict[str, str]
    params: tuple[str, ...]
    body: str | None  # component name of the request body
    body_types: tuple[str, ...]
    responses: tuple[tuple[str, str, str], ...]  # (code, description, component name)
    response_types: tuple[str, ...]


@dataclass(frozen=True)
class _PathItem:
    path: str
    path_params: tuple[str, ...]  # "namespace", "name"
    ops: tuple[_Op, ...]


def _words(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in text.replace("-", ".").split("."))


def _op_group(group: str) -> str:
    """The group part of an operation id: ``Core``, ``Apps``, ``RbacAuthorization``."""
    return _words(group.removesuffix(".k8s.io")) if group else "Core"


@dataclass(frozen=True)
class _OpSpec:
    """An operation template; ``{of}`` in the description names the subresource."""

    verb: str  # the Kind.verbs entry enabling it
    method: str
    id_verb: str  # operation id prefix
    action: str  # x-kubernetes-action
    description: str
    params: tuple[str, ...]
    body: str | None  # role of the request body schema
    responses: tuple[tuple[str, str, str], ...]  # (code, description, schema role)


_OK = ("200", "OK", "object")
_CREATED = ("201", "Created", "object")
_ACCEPTED = ("202", "Accepted", "object")
_COLLECTION_OPS = (
    _OpSpec(
        "list",
        "get",
        "list",
        "list",
        "list or watch objects of kind {kind}",
        _LIST_PARAMS,
        None,
        (("200", "OK", "list"),),
    ),
    _OpSpec(
        "create",
        "post",
        "create",
        "post",
        "create a {kind}",
        _WRITE_PARAMS,
        "object",
        (_OK, _CREATED, _ACCEPTED),
    ),
    _OpSpec(
        "deletecollection",
        "delete",
        "deleteCollection",
        "deletecollection",
        "delete collection of {kind}",
        _COLLECTION_DELETE_PARAMS,
        "delete",
        (("200", "OK", "status"),),
    ),
)
_ITEM_OPS = (
    _OpSpec("get", "get", "read", "get", "read {of}the specified {kind}", (), None, (_OK,)),
    _OpSpec(
        "update",
        "put",
        "replace",
        "put",
        "replace {of}the specified {kind}",
        _WRITE_PARAMS,
        "object",
        (_OK, _CREATED),
    ),
    _OpSpec(
        "patch",
        "patch",
        "patch",
        "patch",
        "partially update {of}the specified {kind}",
        _PATCH_PARAMS,
        "patch",
        (_OK, _CREATED),
    ),
    _OpSpec(
        "delete",
        "delete",
        "delete",
        "delete",
        "delete a {kind}",
        _DELETE_PARAMS,
        "delete",
        (("200", "OK", "status"), ("202", "Accepted", "status")),
    ),
)
_SUBRESOURCE_VERBS = ("get", "update", "patch")


def _resource_paths(kind: kinds.Kind, obj: str, lst: str) -> list[_PathItem]:
    """The paths and operations serving ``kind``; ``obj``/``lst`` name its schemas."""
    gv = f"{_op_group(kind.group)}{_words(kind.version)}"
    base = "/" + gv_path(kind.group, kind.version)
    scope, coll, coll_params = (
        ("Namespaced", f"{base}/namespaces/{{namespace}}/{kind.resource}", ("namespace",))
        if kind.namespaced
        else ("", f"{base}/{kind.resource}", ())
    )
    custom = _is_custom(kind)
    out_types = (_JSON, _YAML) if custom else (_JSON, _YAML, _PROTOBUF)
    patch_types = (_APPLY, _JSON_PATCH, _MERGE_PATCH) + (() if custom else (_SMP,))
    roles = {
        "object": obj,
        "list": lst,
        "status": schema_name("meta/v1.Status"),
        "delete": schema_name("meta/v1.DeleteOptions"),
        "patch": schema_name("meta/v1.Patch"),
    }

    def build(spec: _OpSpec, op_scope: str, sub: str = "") -> _Op:
        op_roles = (
            roles if sub != "scale" else {**roles, "object": schema_name("autoscaling/v1.Scale")}
        )
        id_verb = (
            f"delete{gv}Collection" if spec.id_verb == "deleteCollection" else f"{spec.id_verb}{gv}"
        )
        suffix = (
            "ForAllNamespaces" if spec.action == "list" and not op_scope and kind.namespaced else ""
        )
        return _Op(
            method=spec.method,
            op_id=f"{id_verb}{op_scope}{kind.kind}{sub.capitalize()}{suffix}",
            action=spec.action,
            description=spec.description.format(kind=kind.kind, of=f"{sub} of " if sub else ""),
            gvk=_SCALE_GVK if sub == "scale" else _gvk(kind),
            params=spec.params,
            body=op_roles[spec.body] if spec.body else None,
            body_types=(patch_types if spec.body == "patch" else ("*/*",)) if spec.body else (),
            responses=tuple((code, text, op_roles[role]) for code, text, role in spec.responses),
            response_types=(*out_types, *_WATCH_TYPES) if spec.action == "list" else out_types,
        )

    verbs = set(kind.verbs)
    item = f"{coll}/{{name}}"
    item_params = (*coll_params, "name")
    paths = [
        _PathItem(
            coll, coll_params, tuple(build(s, scope) for s in _COLLECTION_OPS if s.verb in verbs)
        ),
        _PathItem(item, item_params, tuple(build(s, scope) for s in _ITEM_OPS if s.verb in verbs)),
    ]
    if kind.namespaced and "list" in verbs:
        paths.append(_PathItem(f"{base}/{kind.resource}", (), (build(_COLLECTION_OPS[0], ""),)))
    for sub in kind.subresources:
        allowed = {"finalize": {"update"}, "token": set()}.get(sub, _SUBRESOURCE_VERBS)
        ops = tuple(build(s, scope, sub) for s in _ITEM_OPS if s.verb in allowed)
        paths.append(_PathItem(f"{item}/{sub}", item_params, ops))
    return [p for p in paths if p.ops]


def _param(name: str, where: str = "query", *, v3: bool) -> Schema:
    """A parameter object (v3 puts the type under ``schema``)."""
    kind, description = _PARAMS[name]
    out: Schema = {"name": name, "in": where, "description": description}
    if where == "path":
        out["required"] = True
    typed = {"type": kind, "uniqueItems": True}
    if v3:
        out["schema"] = typed
    else:
        out.update(typed)
    return out


def _render_v3(item: _PathItem, tag: str) -> Schema:
    def target(name: str) -> Schema:
        return {"$ref": f"#/components/schemas/{name}"}

    out: Schema = {
        "parameters": [
            *(_param(p, "path", v3=True) for p in item.path_params),
            _param("pretty", v3=True),
        ]
    }
    for op in item.ops:
        rendered: Schema = {
            "description": op.description,
            "operationId": op.op_id,
            "tags": [tag],
            "parameters": [_param(p, v3=True) for p in op.params],
            "responses": {
                code: {
                    "description": text,
                    "content": {t: {"schema": target(name)} for t in op.response_types},
                }
                for code, text, name in op.responses
            },
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        }
        rendered["responses"]["401"] = {"description": "Unauthorized"}
        if op.body:
            rendered["requestBody"] = {
                "content": {t: {"schema": target(op.body)} for t in op.body_types},
                "required": op.method != "delete",
            }
        out[op.method] = rendered
    return out


def _render_v2(item: _PathItem, tag: str) -> Schema:
    out: Schema = {
        "parameters": [
            *(_param(p, "path", v3=False) for p in item.path_params),
            _param("pretty", v3=False),
        ]
    }
    for op in item.ops:
        params = [_param(p, v3=False) for p in op.params]
        if op.body:
            params.insert(
                0,
                {
                    "name": "body",
                    "in": "body",
                    "required": op.method != "delete",
                    "schema": {"$ref": f"#/definitions/{op.body}"},
                },
            )
        out[op.method] = {
            "description": op.description,
            "operationId": op.op_id,
            "tags": [tag],
            "schemes": ["https"],
            "consumes": list(op.body_types) or ["*/*"],
            "produces": list(op.response_types),
            "parameters": params,
            "responses": {
                **{
                    code: {"description": text, "schema": {"$ref": f"#/definitions/{name}"}}
                    for code, text, name in op.responses
                },
                "401": {"description": "Unauthorized"},
            },
            "x-kubernetes-action": op.action,
            "x-kubernetes-group-version-kind": op.gvk,
        }
    return out


def _tag(kind: kinds.Kind) -> str:
    group = _op_group(kind.group)
    return f"{group[:1].lower()}{group[1:]}_{kind.version}"


def _dumps(doc: Schema) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    key: tuple[Any, ...]
    body: bytes
    hash: str


class OpenAPI:
    """OpenAPI v3 (per group-version) and v2 documents for the kinds of a registry.

    The registry decides which kinds are served; custom kinds get the schema given to
    :meth:`set_custom_schema` (or an object with any fields when none was given).
    """

    def __init__(self, registry: kinds.Registry) -> None:
        self._registry = registry
        self._custom: dict[tuple[str, str], Schema | None] = {}
        self._revision: dict[str, int] = {}  # gv path -> bumped on custom schema changes
        self._cache: dict[str, _Cached] = {}  # by gv path
        self._v2: _Cached | None = None

    def index(self) -> dict[str, Any]:
        """The ``/openapi/v3`` index: every served group-version with the URL of its
        document; the ``hash`` query parameter is a SHA-512 of the document bytes."""
        paths: dict[str, Any] = {}
        for group, versions in sorted(self._registry.group_versions().items()):
            for version in versions:
                path = gv_path(group, version)
                cached = self._document(path)
                if cached is not None:
                    url = f"/openapi/v3/{path}?hash={cached.hash}"
                    paths[path] = {"serverRelativeURL": url}
        return {"paths": paths}

    def document(self, path: str) -> bytes | None:
        """The JSON document of ``api/<version>`` or ``apis/<group>/<version>``; ``None``
        when that group-version is not served."""
        cached = self._document(path.strip("/"))
        return cached.body if cached is not None else None

    def set_custom_schema(self, kind: kinds.Kind, schema: Schema | None) -> None:
        """Use a CRD version's ``openAPIV3Schema`` for custom ``kind`` (``None``: an
        object preserving unknown fields)."""
        self._custom[(kind.api_version, kind.kind)] = schema
        self._invalidate(kind)

    def remove_custom(self, kind: kinds.Kind) -> None:
        """Forget the schema of custom ``kind``."""
        self._custom.pop((kind.api_version, kind.kind), None)
        self._invalidate(kind)

    def v2(self) -> bytes:
        """A Swagger 2.0 JSON document covering every served kind."""
        served = self._served(self._registry.all())
        key = (served, tuple(sorted(self._revision.items())))
        if self._v2 is None or self._v2.key != key:
            body = _dumps(self._build(served, v3=False))
            self._v2 = _Cached(key, body, "")
        return self._v2.body

    # -- internals ---------------------------------------------------------------

    def _invalidate(self, kind: kinds.Kind) -> None:
        path = gv_path(kind.group, kind.version)
        self._revision[path] = self._revision.get(path, 0) + 1

    @staticmethod
    def _served(all_kinds: list[kinds.Kind]) -> tuple[kinds.Kind, ...]:
        return tuple(sorted(all_kinds, key=lambda k: (k.group, k.version, k.resource)))

    def _document(self, path: str) -> _Cached | None:
        served = self._served(
            [k for k in self._registry.all() if gv_path(k.group, k.version) == path]
        )
        if not served:
            self._cache.pop(path, None)
            return None
        key = (served, self._revision.get(path, 0))
        cached = self._cache.get(path)
        if cached is None or cached.key != key:
            body = _dumps(self._build(served, v3=True))
            cached = _Cached(key, body, hashlib.sha512(body).hexdigest().upper())
            self._cache[path] = cached
        return cached

    def _build(self, served: tuple[kinds.Kind, ...], *, v3: bool) -> Schema:
        gvks: dict[str, list[dict[str, str]]] = {
            "autoscaling/v1.Scale": [_SCALE_GVK],
            "meta/v1.Status": [_STATUS_GVK],
        }
        for k in self._registry.all():
            if not _is_custom(k) and k.type_name:
                gvks.setdefault(k.type_name, []).append(_gvk(k))
        schemas = _Schemas(v3, gvks)
        for name in (
            "meta/v1.Status",
            "meta/v1.DeleteOptions",
            "meta/v1.Patch",
            "meta/v1.WatchEvent",
        ):
            schemas.type_ref(name)
        paths: dict[str, Schema] = {}
        render = _render_v3 if v3 else _render_v2
        for k in served:
            if _is_custom(k):
                obj = custom_schema_name(k)
                schemas.add_custom(k, self._custom.get((k.api_version, k.kind)))
            else:
                assert k.type_name is not None
                obj = schema_name(k.type_name)
                schemas.type_ref(k.type_name)
            lst = f"{obj}List"
            schemas.add_list(lst, schemas.ref(obj), {**_gvk(k), "kind": f"{k.kind}List"})
            if "scale" in k.subresources:
                schemas.type_ref("autoscaling/v1.Scale")
            for item in _resource_paths(k, obj, lst):
                paths[item.path] = render(item, _tag(k))
        info = {"title": "Kubernetes", "version": "unversioned"}
        if v3:
            return {
                "openapi": "3.0.0",
                "info": info,
                "paths": paths,
                "components": {"schemas": schemas.close()},
            }
        return {"swagger": "2.0", "info": info, "paths": paths, "definitions": schemas.close()}
