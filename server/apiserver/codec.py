"""Request body decoding (JSON, YAML, protobuf) and response encoding/negotiation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from edgek import fastjson, protobuf, status

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


class _YAMLLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: unquoted dates and times stay strings."""


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


def _decode(body: bytes, mt: str, probe: str) -> Any:
    """Parse by media type; raises ValueError with the decoder's message (JSON errors after
    ``probe``)."""
    if mt in ("", JSON, "*/*") or mt.endswith("+json"):
        try:
            return fastjson.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{probe}{e}") from e
    if mt in (YAML, "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.load(body, Loader=_YAMLLoader)
        except yaml.YAMLError as e:
            raise ValueError(_yaml_error(e)) from e
    try:
        return protobuf.decode(body, protobuf.default_type_for)
    except protobuf.ProtobufError as e:
        raise ValueError(str(e)) from e


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
