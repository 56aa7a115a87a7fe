"""Tests of request body decoding and response negotiation (server.apiserver.codec)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from edgek import protobuf
from edgek.status import ApiError, not_found
from server.apiserver.codec import (
    Accept,
    decode_body,
    dumps,
    error_response,
    media_type,
    negotiate,
    respond,
)

CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cfg", "namespace": "default", "labels": {"app": "web"}},
    "data": {"key": "value", "empty": ""},
}

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx", "resources": {"limits": {"cpu": "500m"}}}
                ]
            },
        },
    },
}

KUBECTL_TABLE = (
    "application/json;as=Table;v=v1;g=meta.k8s.io,"
    "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
)


def _raises(code: int, reason: str, body: bytes, content_type: str | None) -> ApiError:
    with pytest.raises(ApiError) as exc:
        decode_body(body, content_type)
    assert (exc.value.code, exc.value.reason) == (code, reason)
    return exc.value


# -- decode_body ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "*/*",
    ],
)
def test_decode_json(content_type: str | None) -> None:
    assert decode_body(json.dumps(CONFIGMAP).encode(), content_type) == CONFIGMAP


def test_decode_json_patch_list() -> None:
    ops = [{"op": "replace", "path": "/data/key", "value": "x"}]
    assert decode_body(json.dumps(ops).encode(), "application/json-patch+json") == ops


@pytest.mark.parametrize(
    "content_type",
    ["application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"],
)
def test_decode_yaml(content_type: str) -> None:
    text = yaml.safe_dump(CONFIGMAP).encode()
    assert decode_body(text, content_type) == CONFIGMAP


def test_decode_json_body_sent_as_apply_yaml() -> None:
    """kubectl sends server-side apply bodies as JSON with the apply-patch+yaml type."""
    assert decode_body(dumps(DEPLOYMENT), "application/apply-patch+yaml") == DEPLOYMENT


def test_decode_yaml_keeps_timestamps_as_strings() -> None:
    body = (
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
        b"  annotations:\n    at: 2024-05-01T10:00:00Z\ndata:\n  day: 2024-05-01\n"
    )
    obj = decode_body(body, "application/yaml")
    assert obj["metadata"]["annotations"]["at"] == "2024-05-01T10:00:00Z"
    assert obj["data"]["day"] == "2024-05-01"


@pytest.mark.parametrize("obj", [CONFIGMAP, DEPLOYMENT], ids=["configmap", "deployment"])
def test_decode_protobuf(obj: dict[str, Any]) -> None:
    type_name = protobuf.default_type_for(obj["apiVersion"], obj["kind"])
    assert type_name is not None
    body = protobuf.encode(obj, type_name)
    assert body.startswith(protobuf.MAGIC)
    assert decode_body(body, "application/vnd.kubernetes.protobuf") == obj


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"metadata": ', "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe{}", None),
        (b"key: [unclosed", "application/yaml"),
        (b"a: b\n  c: d\n", "application/yaml"),
        (b'{"kind": "ConfigMap"}', "application/vnd.kubernetes.protobuf"),
        (protobuf.MAGIC + b"\xff\xff", "application/vnd.kubernetes.protobuf"),
    ],
)
def test_decode_malformed_is_bad_request(body: bytes, content_type: str | None) -> None:
    err = _raises(400, "BadRequest", body, content_type)
    assert err.message


def test_decode_protobuf_unregistered_kind() -> None:
    body = protobuf.encode({"apiVersion": "example.com/v1", "kind": "Widget"}, "core/v1.ConfigMap")
    err = _raises(400, "BadRequest", body, "application/vnd.kubernetes.protobuf")
    assert 'no kind "Widget" is registered for version "example.com/v1"' in err.message


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/apply-patch+cbor"]
)
def test_decode_unsupported_media_type(content_type: str) -> None:
    err = _raises(415, "UnsupportedMediaType", b"{}", content_type)
    assert err.message.startswith("the body of the request was in an unknown format")


def test_media_type() -> None:
    assert media_type("Application/JSON ; charset=utf-8") == "application/json"
    assert media_type(None) == ""


# -- negotiate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, Accept()),
        ("", Accept()),
        ("application/json", Accept()),
        ("*/*", Accept()),
        ("application/*", Accept()),
        ("application/json;q=0.9", Accept()),
        (KUBECTL_TABLE, Accept(table=True)),
        ("application/json; as=Table; v=v1; g=meta.k8s.io", Accept(table=True)),
        ("application/json;as=Table;v=v1beta1;g=meta.k8s.io", Accept(table=True)),
        (
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io," + KUBECTL_TABLE,
            Accept(table=True),
        ),
        ("application/vnd.kubernetes.protobuf,application/json", Accept()),
        ("application/vnd.kubernetes.protobuf", Accept()),
        (
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json",
            Accept(partial=True),
        ),
        ("application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", Accept(partial=True)),
        ("application/yaml", Accept(yaml=True)),
        ("application/yaml,application/json", Accept(yaml=True)),
        ("application/json,application/yaml", Accept()),
        # a Table of another group is not ours: fall through to the next choice
        ("application/json;as=Table;v=v1;g=example.com,application/json", Accept()),
        ("text/html,application/json", Accept()),
    ],
)
def test_negotiate(accept: str | None, expected: Accept) -> None:
    assert negotiate(accept) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "text/html",
        "application/cbor",
        "application/json;as=Table;v=v1;g=example.com",
        "application/json;as=Unknown;v=v1;g=meta.k8s.io",
        "application/yaml;as=Table;v=v1;g=meta.k8s.io",
    ],
)
def test_negotiate_not_acceptable(accept: str) -> None:
    with pytest.raises(ApiError) as exc:
        negotiate(accept)
    assert (exc.value.code, exc.value.reason) == (406, "NotAcceptable")


# -- responses -------------------------------------------------------------------------------


def test_respond_json_and_yaml() -> None:
    plain = respond(CONFIGMAP, 201, headers={"Warning": '299 - "x"'})
    assert plain.status == 201
    assert plain.content_type == "application/json"
    assert plain.headers["Warning"] == '299 - "x"'
    assert isinstance(plain.body, bytes)
    assert json.loads(plain.body) == CONFIGMAP

    as_yaml = respond(CONFIGMAP, accept=Accept(yaml=True))
    assert as_yaml.content_type == "application/yaml"
    assert isinstance(as_yaml.body, bytes)
    assert yaml.safe_load(as_yaml.body) == CONFIGMAP


def test_error_response_is_a_status() -> None:
    resp = error_response(not_found("pods", "p"))
    assert resp.status == 404
    assert isinstance(resp.body, bytes)
    body = json.loads(resp.body)
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["message"] == 'pods "p" not found'
    assert body["details"] == {"name": "p", "kind": "pods"}


# -- hostile bodies (issue 14) ----------------------------------------------------------------


def _decode_error(body: bytes, content_type: str = "application/json") -> str:
    with pytest.raises(ApiError) as exc:
        decode_body(body, content_type, into="ConfigMap")
    assert exc.value.code == 400
    return exc.value.message


@pytest.mark.parametrize(
    "body",
    [b"[" * 20_000 + b"]" * 20_000, b'{"a":' * 201 + b"1" + b"}" * 201, b"[" * 1000 + b"]" * 1000],
)
def test_json_nesting_is_limited(body: bytes) -> None:
    assert "json parse error: exceeded max depth" in _decode_error(body)


def test_json_nesting_at_the_limit() -> None:
    body = b'{"a":' * 199 + b"1" + b"}" * 199
    assert decode_body(body, "application/json", into="ConfigMap")["a"]["a"]["a"]


@pytest.mark.parametrize(
    "body",
    [b"x:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 300)), b"[" * 5000 + b"]" * 5000],
)
def test_yaml_nesting_is_limited(body: bytes) -> None:
    assert "exceeded max depth" in _decode_error(body, "application/yaml")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"a":NaN}', "invalid character 'N' looking for beginning of value"),
        (b'{"a":-Infinity}', "invalid character 'I' in numeric literal"),
        (b'\xef\xbb\xbf{"a":1}', "invalid character '\u00ef' looking for beginning of value"),
    ],
)
def test_not_json(body: bytes, error: str) -> None:
    assert error in _decode_error(body)


def test_integers_beyond_64_bits_are_exact() -> None:
    body = b'{"a":99999999999999999999999999,"b":-9223372036854775809,"c":18446744073709551615}'
    assert decode_body(body, "application/json") == {
        "a": 99999999999999999999999999,
        "b": -9223372036854775809,
        "c": 18446744073709551615,
    }


def test_lone_surrogates_become_replacement_characters() -> None:
    body = b'{"\\udc00k":"a\\ud800","pair":"\\ud83d\\ude00","list":["\\udfff"]}'
    assert decode_body(body, "application/json") == {
        "\ufffdk": "a\ufffd",
        "pair": "\U0001f600",
        "list": ["\ufffd"],
    }


@pytest.mark.parametrize(
    ("body", "got"),
    [(b'{"apiVersion":5}', "number"), (b'{"kind":true}', "bool"), (b'{"kind":{}}', "object")],
)
def test_type_meta_must_be_strings(body: bytes, got: str) -> None:
    assert f"json: cannot unmarshal {got} into Go struct field ." in _decode_error(body)


def test_yaml_alias_bomb() -> None:
    lines = ['a0: &a0 ["l","l","l","l","l","l","l","l","l"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    body = "\n".join(lines).encode()
    assert "document contains excessive aliasing" in _decode_error(body, "application/yaml")


def test_yaml_anchor_containing_itself() -> None:
    assert "anchor value contains itself" in _decode_error(b"a: &a [*a]", "application/yaml")


def test_yaml_aliases_are_copies() -> None:
    got = decode_body(b"a: &a {k: [1]}\nb: *a\n", "application/yaml")
    assert got == {"a": {"k": [1]}, "b": {"k": [1]}}
    got["a"]["k"].append(2)
    assert got["b"] == {"k": [1]}


def test_yaml_values_become_json() -> None:
    """Keys become strings, sets maps of nulls, binary and timestamps strings (as
    sigs.k8s.io/yaml's conversion to JSON makes them)."""
    body = (
        b"labels: {1: a, false: b, null: c, 1.5: d}\n"
        b"bin: !!binary aGVsbG8=\n"
        b"when: !!timestamp 2001-12-14\n"
        b"set: !!set {x, y}\n"
    )
    assert decode_body(body, "application/yaml") == {
        "labels": {"1": "a", "false": "b", "null": "c", "1.5": "d"},
        "bin": "hello",
        "when": "2001-12-14",
        "set": {"x": None, "y": None},
    }


@pytest.mark.parametrize(("value", "shown"), [(".nan", "NaN"), ("-.inf", "-Inf")])
def test_yaml_non_finite_numbers(value: str, shown: str) -> None:
    body = f"x: {value}".encode()
    assert f"json: unsupported value: {shown}" in _decode_error(body, "application/yaml")


def _deep_crd_protobuf(levels: int) -> bytes:
    """A CustomResourceDefinition in protobuf whose schema nests ``levels`` objects deep
    (JSONSchemaProps is recursive, so protobuf can nest as deep as the body allows)."""
    import sys

    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    version = {"name": "v1", "served": True, "storage": True}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "xs.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "xs", "kind": "X"},
            "scope": "Namespaced",
            "versions": [{**version, "schema": {"openAPIV3Schema": schema}}],
        },
    }
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, levels * 10))
    try:
        type_name = protobuf.default_type_for("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        assert type_name is not None
        return protobuf.encode(crd, type_name)
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("levels", [300, 3000])
def test_protobuf_nesting_is_limited(levels: int) -> None:
    body = _deep_crd_protobuf(levels)
    assert "exceeded max depth" in _decode_error(body, "application/vnd.kubernetes.protobuf")


def test_protobuf_nesting_within_the_limit() -> None:
    body = _deep_crd_protobuf(20)
    got = decode_body(body, "application/vnd.kubernetes.protobuf")
    assert got["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["type"] == "object"
