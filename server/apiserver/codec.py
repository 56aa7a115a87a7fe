"""Request body decoding (JSON, YAML, protobuf) and response encoding/negotiation."""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from aiohttp import web

from edgek import fastjson, protobuf, status
from edgek.gofloat import go_float

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}


#: Deepest nesting of arrays and objects a request body may have (upstream's Go decoders
#: stop at 10,000; edgek's recursive validators and patchers need a lower bound).
MAX_DEPTH = 200
_DEPTH_ERROR = "exceeded max depth"
#: Digits enough for an integer orjson would turn into a float (beyond -2**63 .. 2**64-1).
_LONG_DIGITS = re.compile(rb"-[0-9]{19}|[0-9]{20}")
#: A \\u escape of a UTF-16 surrogate (a lone one decodes to U+FFFD, as in Go).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _YAMLLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: unquoted dates and times stay strings; nesting deeper
    than :data:`MAX_DEPTH`, a node containing itself and excessive aliasing (go-yaml's
    billion-laughs guard) are errors."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, counting how deep the composer has gone."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    problem=_DEPTH_ERROR, problem_mark=self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        """The document's node graph, checked for cycles and alias expansion."""
        node = super().get_single_node()
        if node is not None:
            _check_aliases(node)
        return node


_YAMLLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


#: Body media types a resource endpoint decodes (custom resources: JSON and YAML only).
BODY_TYPES = (JSON, YAML, PROTOBUF)
CUSTOM_BODY_TYPES = (JSON, YAML)
#: Patch media types in upstream's order (custom resources: no strategic merge patch).
BUILTIN_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
CUSTOM_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)

#: What Go's encoding/json reports for a non-object where the version/kind probe expects one.
_KP = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)
_GO_JSON_TYPES = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}


def unsupported_media_type(accepted: tuple[str, ...]) -> status.ApiError:
    """415 listing the accepted media types, as upstream words it."""
    return status.ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def _summary(body: bytes, limit: int = 30) -> str:
    """Upstream's summarizeData: JSON objects as text, anything else as hex."""
    if not body:
        return "<empty>"
    if body[:1] == b"{":
        return body[:limit].decode("utf-8", "replace") + (" ..." if len(body) > limit else "")
    return body[:limit].hex() + (" ..." if len(body) > limit else "")


def _yaml_error(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"error converting YAML to JSON: yaml: {where}{problem}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _alias_ratio(decoded: int) -> float:
    """go-yaml's allowedAliasRatio: the share of decoded nodes that may come from aliases."""
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * (decoded - low) / (high - low)


def _check_aliases(root: yaml.Node) -> None:
    """ComposerError when aliases make the node graph cyclic, deeper than :data:`MAX_DEPTH`
    or expand it beyond go-yaml's aliasing ratio. Iterative, linear in the distinct nodes."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if depth[key] > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    problem=_DEPTH_ERROR, problem_mark=node.start_mark
                )
            continue
        if key in size:
            continue
        if key in entered:
            raise yaml.composer.ComposerError(
                problem="anchor value contains itself", problem_mark=node.start_mark
            )
        entered.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    total = size[id(root)]
    aliased = total - len(size)
    if aliased > 100 and total > 1000 and aliased / total > _alias_ratio(total):
        raise yaml.composer.ComposerError(
            problem="document contains excessive aliasing", problem_mark=root.start_mark
        )


def _reject_constant(name: str) -> Any:
    """Go's error for ``NaN``, ``Infinity`` and ``-Infinity``, which JSON does not have."""
    if name.startswith("-"):
        raise ValueError(f"invalid character '{name[1]}' in numeric literal")
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _replace_surrogates(obj: Any) -> Any:
    """``obj`` with lone UTF-16 surrogates in its strings replaced by U+FFFD."""
    if isinstance(obj, str):
        return _SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, list):
        return [_replace_surrogates(v) for v in obj]
    if isinstance(obj, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in obj.items()}
    return obj


def _check_depth(obj: Any, body: bytes | None = None) -> None:
    """ValueError when ``obj`` nests deeper than :data:`MAX_DEPTH` (with the JSON ``body``
    it was decoded from, only walked when that has enough brackets to be that deep)."""
    if body is not None and body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return
    stack = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if level >= MAX_DEPTH:
                    raise ValueError(_DEPTH_ERROR)
                stack.append((child, level + 1))


def _loads_json(body: bytes) -> Any:
    """A JSON request body as upstream's decoder reads it: no byte-order mark, ``NaN`` or
    ``Infinity``; integers exact (so range checks see them as written); lone surrogate
    escapes as U+FFFD; nesting limited to :data:`MAX_DEPTH`. ValueError otherwise."""
    if body.startswith(b"\xef\xbb\xbf"):
        raise ValueError("invalid character 'ï' looking for beginning of value")
    obj: Any
    try:
        if _LONG_DIGITS.search(body) is not None:
            raise ValueError("may hold integers beyond 64 bits")
        obj = orjson.loads(body)
    except ValueError:
        try:
            obj = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except RecursionError:
            raise ValueError(_DEPTH_ERROR) from None
        _check_depth(obj, body)
        if _SURROGATE_ESCAPE.search(body) is not None:
            obj = _replace_surrogates(obj)
        return obj
    _check_depth(obj, body)
    return obj


def _yaml_key(key: Any) -> str:
    """A YAML mapping key as the JSON object key sigs.k8s.io/yaml makes of it."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return go_float(key)
    return str(key)


def _as_json(value: Any) -> Any:
    """A constructed YAML value as JSON data: string keys, sets as maps of nulls, binary and
    timestamps as strings, no NaN or infinities, and every aliased place its own copy."""
    if isinstance(value, dict):
        return {_yaml_key(k): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, set):
        return {_yaml_key(k): None for k in value}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"json: unsupported value: {go_float(value)}")
    return value


def _load_yaml(body: bytes) -> Any:
    loader = _YAMLLoader(body)
    try:
        return _as_json(loader.get_single_data())
    finally:
        loader.dispose()


def _decode(body: bytes, mt: str, probe: str) -> Any:
    """Parse by media type; raises ValueError with the decoder's message (JSON errors after
    ``probe``)."""
    if mt in ("", JSON, "*/*") or mt.endswith("+json"):
        try:
            return _loads_json(body)
        except ValueError as e:
            raise ValueError(f"{probe}{e}") from e
    if mt in (YAML, "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return _load_yaml(body)
        except yaml.YAMLError as e:
            raise ValueError(_yaml_error(e)) from e
    try:
        obj = protobuf.decode(body, protobuf.default_type_for)
    except protobuf.ProtobufError as e:
        raise ValueError(str(e)) from e
    except RecursionError:
        raise ValueError(_DEPTH_ERROR) from None
    _check_depth(obj)
    return obj


def type_meta_error(obj: dict[str, Any]) -> str | None:
    """Go's decoding error for an ``apiVersion`` or ``kind`` that is not a string, or None."""
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if value is not None and not isinstance(value, str):
            got = _GO_JSON_TYPES.get(type(value), "object")
            return f"json: cannot unmarshal {got} into Go struct field .{field} of type string"
    return None


def decode_body(
    body: bytes,
    content_type: str | None,
    *,
    into: str | None = None,
    accepted: tuple[str, ...] = BODY_TYPES,
) -> Any:
    """Parse a request body by its Content-Type (JSON when absent). 415 when the type is not
    ``accepted``; 400 on malformed input. With ``into`` (the kind the endpoint decodes), a
    body that is not an object fails too and errors read like upstream's
    ``the object provided is unrecognized (must be of type <into>): <error> (<summary>)``."""
    mt = media_type(content_type)
    json_like = mt in ("", "*/*") or mt.endswith("+json")
    yaml_like = mt in ("application/x-yaml", "text/yaml", "application/apply-patch+yaml")
    if not (mt in accepted or (json_like and JSON in accepted) or (yaml_like and YAML in accepted)):
        raise unsupported_media_type(accepted)
    probe = "couldn't get version/kind; json parse error: " if into else "json parse error: "
    try:
        obj = _decode(body, mt, probe)
        if into is not None and obj is not None and not isinstance(obj, dict):
            got = _GO_JSON_TYPES.get(type(obj), "value")
            raise ValueError(f"{probe}json: cannot unmarshal {got} into Go value of type {_KP}")
        error = type_meta_error(obj) if into is not None and obj is not None else None
        if error is not None:
            raise ValueError(probe + error)
    except ValueError as e:
        if into is None:
            raise status.bad_request(f"error decoding body: {e}") from e
        raise status.bad_request(
            f"the object provided is unrecognized (must be of type {into}): {e} ({_summary(body)})"
        ) from e
    return obj


@dataclass(frozen=True)
class Accept:
    """What representation a GET/LIST/WATCH wants: a Table, partial metadata, or the objects."""

    table: bool = False
    partial: bool = False
    yaml: bool = False


def negotiate(accept_header: str | None) -> Accept:
    """Pick the first acceptable representation from an Accept header, in order."""
    if not accept_header:
        return Accept()
    for part in accept_header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        as_ = params.get("as")
        if mt in (JSON, "*/*", "application/*"):
            if as_ == "Table" and params.get("g") == "meta.k8s.io":
                return Accept(table=True)
            if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Accept(partial=True)
            if as_ is None:
                return Accept()
        elif mt == YAML and as_ is None:
            return Accept(yaml=True)
    if any(p.split(";", 1)[0].strip() == PROTOBUF for p in accept_header.split(",")):
        # protobuf-only clients: we answer JSON, which every client-go accepts as well
        return Accept()
    raise status.ApiError(
        406, "NotAcceptable", f"only the following media types are accepted: {JSON}, {YAML}"
    )


def dumps(obj: Any) -> bytes:
    return fastjson.dumps(obj)


def respond(
    obj: Any,
    code: int = 200,
    *,
    accept: Accept | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON (or YAML when asked) response."""
    if accept is not None and accept.yaml:
        return web.Response(
            body=yaml.safe_dump(obj, sort_keys=False).encode(),
            status=code,
            content_type=YAML,
            headers=headers,
        )
    return web.Response(body=dumps(obj), status=code, content_type=JSON, headers=headers)


def error_response(err: status.ApiError) -> web.Response:
    return respond(err.status(), err.code)
