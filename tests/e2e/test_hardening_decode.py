"""Issue 14, items 4 and 5: numbers are checked against their Go type when a body is decoded,
and no client mistake in a body (nesting too deep, a lone surrogate, a non-string apiVersion)
is answered with a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.hardening import assert_alive, crd, create_crd, pod, timed
from tests.e2e.test_bad_input import Api, Response, assert_status

DEEP = 20_000
PROBE = "couldn't get version/kind; json parse error: "


def _deep_json(key: str = "x") -> str:
    return f'{{"{key}":' * DEEP + "1" + "}" * DEEP


def _assert_too_deep(api: Api, resp: Response) -> None:
    st = assert_status(resp, 400, "BadRequest")
    assert "exceeded max depth" in st["message"]
    assert_alive(api)


def test_int64_overflow_is_refused(hard_api: Api, hard_ns: str) -> None:
    body = json.dumps(pod("big")).replace(
        '"spec": {', '"spec": {"activeDeadlineSeconds": 99999999999999999999999999, ', 1
    )
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/pods", body.encode())
    assert_status(
        resp,
        400,
        "BadRequest",
        'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal number '
        "99999999999999999999999999 into Go struct field PodSpec.spec.activeDeadlineSeconds "
        "of type int64",
    )
    listed = hard_api.ok("GET", f"/api/v1/namespaces/{hard_ns}/pods")
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("value", "code"),
    [(2**63 - 1, 422), (2**63, 400), (-(2**63), 422), (-(2**63) - 1, 400), (1.5, 400)],
)
def test_int64_bounds(hard_api: Api, hard_ns: str, value: int | float, code: int) -> None:
    """activeDeadlineSeconds is an int64: a value in its range decodes and then fails
    upstream's validation (1 to 2**32-1, 422), one outside it fails decoding (400)."""
    resp = timed(
        hard_api,
        "POST",
        f"/api/v1/namespaces/{hard_ns}/pods",
        pod("b", activeDeadlineSeconds=value),
    )
    if code == 422:
        st = assert_status(resp, 422, "Invalid")
        assert st["details"]["causes"][0]["field"] == "spec.activeDeadlineSeconds"
    else:
        st = assert_status(resp, 400, "BadRequest")
        assert st["message"].endswith("activeDeadlineSeconds of type int64"), st["message"]


def test_int32_overflow_is_refused(hard_api: Api, hard_ns: str) -> None:
    body = pod("port")
    body["spec"]["containers"][0]["ports"] = [{"containerPort": 2**31}]
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/pods", body)
    st = assert_status(resp, 400, "BadRequest")
    assert f"cannot unmarshal number {2**31} into Go struct field" in st["message"]
    assert st["message"].endswith("containerPort of type int32")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", _deep_json()),
        ("application/json", "[" * DEEP + "]" * DEEP),
        ("application/yaml", "x:\n" + "".join(f"{' ' * i}- \n" for i in range(1, 400))),
        ("application/yaml", "[" * DEEP + "]" * DEEP),
    ],
    ids=["json-object", "json-array", "yaml-block", "yaml-flow"],
)
def test_deep_create_body(hard_api: Api, hard_ns: str, content_type: str, body: str) -> None:
    resp = timed(
        hard_api,
        "POST",
        f"/api/v1/namespaces/{hard_ns}/configmaps",
        body.encode(),
        content_type=content_type,
    )
    _assert_too_deep(hard_api, resp)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/merge-patch+json", _deep_json("data")),
        ("application/strategic-merge-patch+json", _deep_json("metadata")),
        (
            "application/json-patch+json",
            '[{"op":"add","path":"/data/x","value":' + _deep_json() + "}]",
        ),
        ("application/apply-patch+yaml", _deep_json("data")),
    ],
    ids=["merge", "strategic", "json", "apply"],
)
def test_deep_patch(hard_api: Api, hard_ns: str, content_type: str, body: str) -> None:
    path = f"/api/v1/namespaces/{hard_ns}/configmaps"
    hard_api.ok("POST", path, {"metadata": {"name": "deep"}, "data": {"k": "v"}})
    resp = timed(
        hard_api,
        "PATCH",
        f"{path}/deep?fieldManager=t",
        body.encode(),
        content_type=content_type,
    )
    _assert_too_deep(hard_api, resp)
    assert hard_api.ok("GET", f"{path}/deep")["data"] == {"k": "v"}


def test_nesting_within_the_limit_is_stored(hard_api: Api, hard_ns: str) -> None:
    """A custom-resource-like deep value (150 levels) goes through create and merge patch."""
    path = f"/api/v1/namespaces/{hard_ns}/configmaps"
    deep = '{"a":' * 150 + '"v"' + "}" * 150
    body = f'{{"metadata":{{"name":"ok","annotations":{{"x":"y"}}}},"unknownDeep":{deep}}}'
    resp = timed(hard_api, "POST", path, body.encode())
    assert resp.status == 201, resp.body[:500]
    patch = f'{{"metadata":{{"labels":{{"a":"b"}}}},"alsoUnknown":{deep}}}'
    resp = timed(
        hard_api, "PATCH", f"{path}/ok", patch.encode(), content_type="application/merge-patch+json"
    )
    assert resp.status == 200, resp.body[:500]


def test_lone_surrogate_becomes_replacement_character(hard_api: Api, hard_ns: str) -> None:
    """Go's decoder turns an unpaired surrogate escape into U+FFFD; so does edgek."""
    body = b'{"metadata":{"name":"sur"},"data":{"k":"a\\ud800b","pair":"\\ud83d\\ude00"}}'
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/configmaps", body)
    assert resp.status == 201, resp.body[:500]
    assert resp.json()["data"] == {"k": "a\ufffdb", "pair": "\U0001f600"}
    got = hard_api.ok("GET", f"/api/v1/namespaces/{hard_ns}/configmaps/sur")
    assert got["data"]["k"] == "a\ufffdb"


@pytest.mark.parametrize(
    ("field", "value", "go_type"),
    [("apiVersion", 5, "number"), ("kind", [], "array"), ("apiVersion", {}, "object")],
)
def test_non_string_type_meta(
    hard_api: Api, hard_ns: str, field: str, value: object, go_type: str
) -> None:
    body = {"metadata": {"name": "tm"}, field: value}
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/configmaps", body)
    st = assert_status(resp, 400, "BadRequest")
    assert st["message"].startswith(
        "the object provided is unrecognized (must be of type ConfigMap): "
        f"{PROBE}json: cannot unmarshal {go_type} into Go struct field .{field} of type string"
    )


def _nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "pattern": "^v$"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


def _nested_value(levels: int) -> Any:
    value: Any = "v"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("group", "schema", "spec_levels"),
    [
        ("deep.hardening.example.com", _nested_schema(90), 90),
        (
            "free.hardening.example.com",
            {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            180,
        ),
    ],
    ids=["nested-schema", "preserve-unknown-fields"],
)
def test_deep_custom_resources(
    hard_api: Api, hard_ns: str, group: str, schema: dict[str, Any], spec_levels: int
) -> None:
    """A CRD whose schema nests as deep as a body may, and custom resources as deep as their
    schema (or a body) allows: created, patched and listed without a 500."""
    path = create_crd(hard_api, crd(group, "things", "Thing", schema), hard_ns)
    thing = {
        "apiVersion": f"{group}/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": _nested_value(spec_levels),
    }
    resp = timed(hard_api, "POST", path, thing)
    assert resp.status == 201, resp.body[:500]
    patch = {"spec": _nested_value(spec_levels), "metadata": {"labels": {"a": "b"}}}
    resp = timed(hard_api, "PATCH", f"{path}/t", patch, content_type="application/merge-patch+json")
    assert resp.status == 200, resp.body[:500]
    resp = timed(
        hard_api,
        "PATCH",
        f"{path}/t?fieldManager=deep",
        json.dumps(thing).encode(),
        content_type="application/apply-patch+yaml",
    )
    assert resp.status == 200, resp.body[:500]
    table = "application/json;as=Table;g=meta.k8s.io;v=v1"
    resp = timed(hard_api, "GET", path, headers={"Accept": table})
    assert resp.status == 200, resp.body[:500]
    assert_alive(hard_api)


@pytest.mark.parametrize(
    ("value", "code"), [(2**63 - 1, 201), (2**63, 422), (10**26, 422), (2.0, 201), (2.0**60, 422)]
)
def test_custom_resource_integers(hard_api: Api, hard_ns: str, value: float, code: int) -> None:
    """Upstream decodes a custom resource's integers beyond int64 as float64, and a whole
    float beyond 2**53 is no integer to its schema validation."""
    schema = {"type": "object", "properties": {"count": {"type": "integer", "format": "int64"}}}
    group = "ints.hardening.example.com"
    path = f"/apis/{group}/v1/namespaces/{hard_ns}/counters"
    if hard_api.request("GET", path).status == 404:
        create_crd(hard_api, crd(group, "counters", "Counter", schema), hard_ns)
    body = json.dumps(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Counter",
            "metadata": {"generateName": "c-"},
            "spec": {"count": value},
        }
    )
    resp = timed(hard_api, "POST", path, body.encode())
    assert resp.status == code, resp.body[:500]
    if code == 422:
        st = assert_status(resp, 422, "Invalid")
        assert 'spec.count in body must be of type int64: "float64"' in st["message"]


def test_unknown_field_names_in_warnings(hard_api: Api, hard_ns: str) -> None:
    """Unknown fields are named in the Warning header: a line break in a name is written as
    a space (as Go's server writes header values), and long names are cut as upstream's
    warning recorder cuts them, instead of the response failing."""
    body = {"metadata": {"name": "warn"}, "bad\r\n\x00name": 1, "x" * 70_000: 2}
    resp = timed(hard_api, "POST", f"/api/v1/namespaces/{hard_ns}/configmaps", body)
    assert resp.status == 201, resp.body[:500]
    warning = resp.headers["Warning"]
    assert 'unknown field \\"bad   name\\"' in warning
    assert len(warning) < 1000


@pytest.mark.parametrize(
    ("content_type", "patch"),
    [
        ("application/apply-patch+yaml", b'{"apiVersion": 5, "kind": "ConfigMap"}'),
        ("application/merge-patch+json", b'{"apiVersion": 5}'),
        ("application/strategic-merge-patch+json", b'{"kind": ["x"]}'),
        ("application/json-patch+json", b'[{"op": "replace", "path": "/kind", "value": {}}]'),
    ],
    ids=["apply", "merge", "strategic", "json"],
)
def test_non_string_type_meta_in_patches(
    hard_api: Api, hard_ns: str, content_type: str, patch: bytes
) -> None:
    path = f"/api/v1/namespaces/{hard_ns}/configmaps"
    hard_api.ok("POST", path, {"metadata": {"name": "tmp"}, "data": {"k": "v"}})
    resp = timed(hard_api, "PATCH", f"{path}/tmp?fieldManager=t", patch, content_type=content_type)
    st = assert_status(resp, 400, "BadRequest")
    assert "json: cannot unmarshal " in st["message"]
    assert " of type string" in st["message"]
