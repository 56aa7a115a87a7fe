"""Request body decoding (JSON, YAML, protobuf) and response encoding/negotiation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from edgek import protobuf, status

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


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str | None) -> Any:
    """Parse a request body by its Content-Type (JSON when absent). 400 on malformed input,
    415 on an unsupported type."""
    mt = media_type(content_type)
    if mt in ("", JSON, "*/*") or mt.endswith("+json"):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise status.bad_request(f"error decoding JSON body: {e}") from e
    if mt in (YAML, "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise status.bad_request(f"error decoding YAML body: {e}") from e
    if mt == PROTOBUF:
        try:
            return protobuf.decode(body, protobuf.default_type_for)
        except protobuf.ProtobufError as e:
            raise status.bad_request(f"error decoding protobuf body: {e}") from e
    raise status.unsupported_media_type(mt)


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
    return json.dumps(obj, separators=(",", ":")).encode()


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
