"""Bad input against a real server: every refusal is upstream's metav1.Status (code, reason,
message) and leaves the store exactly as it was."""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import Kubectl, ServerProcess, client_credentials

_ns_counter = itertools.count()

LEGACY_SCHEME = "k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"
KIND_PROBE = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
    'Kind string "json:\\"kind,omitempty\\"" }'
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
LABEL_KEY_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used "
    "for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
CONFLICT_MSG = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
NOT_FOUND_MSG = "the server could not find the requested resource"
MAX_BODY = 3 * 1024 * 1024


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    """Raw HTTPS requests to the API server with (or without) the admin client certificate."""

    def __init__(self, server: ServerProcess, tmp: Path) -> None:
        ca, cert, key = client_credentials(server.kubeconfig, tmp)
        self.anonymous = ssl.create_default_context(cafile=str(ca))
        self.admin = ssl.create_default_context(cafile=str(ca))
        self.admin.load_cert_chain(str(cert), str(key))
        self.port = server.port

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        anonymous: bool = False,
    ) -> Response:
        ctx = self.anonymous if anonymous else self.admin
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        resp = self.request(method, path, body, **kw)
        assert resp.status < 300, (resp.status, resp.body[:500])
        return resp.json()


@pytest.fixture(scope="module")
def api(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Api:
    return Api(server, tmp_path_factory.mktemp("bad-input-certs"))


@pytest.fixture
def ns(api: Api) -> Iterator[str]:
    """A fresh namespace holding one ConfigMap ``keep`` and one Deployment ``web``."""
    name = f"bad{next(_ns_counter)}"
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    api.ok("POST", f"/api/v1/namespaces/{name}/configmaps", configmap("keep", {"k": "v"}))
    api.ok("POST", f"/apis/apps/v1/namespaces/{name}/deployments", deployment("web"))
    yield name


def configmap(name: str, data: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": data or {},
    }


def deployment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
            **spec,
        },
    }


def cm_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/configmaps" + (f"/{name}" if name else "")


def deploy_path(ns: str, name: str = "") -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments" + (f"/{name}" if name else "")


def snapshot(api: Api, ns: str) -> dict[str, list[dict[str, Any]]]:
    """Everything stored in the namespace that these tests could touch (the root CA
    config map the server's own controller adds to every namespace is left out)."""
    out = {}
    for kind, path in (
        ("configmaps", cm_path(ns)),
        ("secrets", f"/api/v1/namespaces/{ns}/secrets"),
        ("services", f"/api/v1/namespaces/{ns}/services"),
        ("deployments", deploy_path(ns)),
    ):
        items = api.ok("GET", path)["items"]
        out[kind] = [i for i in items if i["metadata"]["name"] != "kube-root-ca.crt"]
    return out


def assert_status(
    resp: Response, code: int, reason: str, message: str | None = None
) -> dict[str, Any]:
    """The response is a failure metav1.Status with this code, reason and (when given)
    exact message."""
    assert resp.status == code, resp.body[:1000]
    assert resp.headers.get_content_type() == "application/json"
    st = resp.json()
    assert st["kind"] == "Status"
    assert st["apiVersion"] == "v1"
    assert st["status"] == "Failure"
    assert st["code"] == code
    assert st["reason"] == reason
    if message is not None:
        assert st["message"] == message
    return dict(st)


def settled_snapshot(api: Api, ns: str, timeout: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    """The snapshot once the control loops are done with the namespace (the Deployment's
    controller writes its status and revision shortly after it is created): two snapshots
    in a row that are equal."""
    deadline = time.monotonic() + timeout
    last = snapshot(api, ns)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = snapshot(api, ns)
        if current == last and all(
            (d.get("status") or {}).get("observedGeneration") == d["metadata"].get("generation")
            for d in current["deployments"]
        ):
            return current
        last = current
    raise AssertionError(f"namespace {ns} did not settle")


@pytest.fixture
def unchanged(api: Api, ns: str) -> Iterator[str]:
    """The namespace, checked to be untouched when the test ends."""
    before = settled_snapshot(api, ns)
    yield ns
    assert snapshot(api, ns) == before


# -- malformed bodies ------------------------------------------------------------


def unrecognized(error: str, body: bytes) -> str:
    summary = body.decode() if body.startswith(b"{") else body.hex()
    return f"the object provided is unrecognized (must be of type ConfigMap): {error} ({summary})"


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        ("application/json", b"[]", f"json: cannot unmarshal array into Go value of type {KIND_PROBE}"),
        ("application/json", b'"x"', f"json: cannot unmarshal string into Go value of type {KIND_PROBE}"),
        ("application/json", b"42", f"json: cannot unmarshal number into Go value of type {KIND_PROBE}"),
        ("application/yaml", b"- a\n- b\n", f"json: cannot unmarshal array into Go value of type {KIND_PROBE}"),
    ],
    ids=["array", "string", "number", "yaml-list"],
)  # fmt: skip
def test_body_not_an_object(
    api: Api, unchanged: str, content_type: str, body: bytes, error: str
) -> None:
    resp = api.request("POST", cm_path(unchanged), body, content_type=content_type)
    probe = "couldn't get version/kind; json parse error: "
    assert_status(resp, 400, "BadRequest", unrecognized(probe + error, body))


def test_malformed_json(api: Api, unchanged: str) -> None:
    body = b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {name: "x"}}'
    st = assert_status(api.request("POST", cm_path(unchanged), body), 400, "BadRequest")
    prefix = "the object provided is unrecognized (must be of type ConfigMap): "
    assert st["message"].startswith(prefix + "couldn't get version/kind; json parse error: ")
    # upstream summarizes the first 30 bytes of a body that starts like a JSON object
    assert st["message"].endswith(f" ({body[:30].decode()} ...)")


def test_malformed_json_on_update(api: Api, unchanged: str) -> None:
    resp = api.request("PUT", cm_path(unchanged, "keep"), b"{")
    st = assert_status(resp, 400, "BadRequest")
    assert st["message"].startswith("the object provided is unrecognized (must be of type ")
    assert st["message"].endswith(" ({)")


def test_malformed_yaml(api: Api, unchanged: str) -> None:
    body = b"metadata: {name: [x\n"
    resp = api.request("POST", cm_path(unchanged), body, content_type="application/yaml")
    st = assert_status(resp, 400, "BadRequest")
    prefix = "the object provided is unrecognized (must be of type ConfigMap): "
    assert st["message"].startswith(prefix + "error converting YAML to JSON: yaml: line ")
    assert st["message"].endswith(f" ({body.hex()})")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"garbage", "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"),
        (b"k8s\x00\x0a", "unexpected EOF"),
    ],
    ids=["bad-magic", "truncated"],
)  # fmt: skip
def test_garbage_protobuf(api: Api, unchanged: str, body: bytes, error: str) -> None:
    resp = api.request(
        "POST", cm_path(unchanged), body, content_type="application/vnd.kubernetes.protobuf"
    )
    assert_status(resp, 400, "BadRequest", unrecognized(error, body))


def test_unsupported_body_media_type(api: Api, unchanged: str) -> None:
    resp = api.request("POST", cm_path(unchanged), b"name=x", content_type="text/plain")
    assert_status(
        resp,
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml, application/vnd.kubernetes.protobuf",
    )


def test_unsupported_patch_media_type(api: Api, unchanged: str) -> None:
    resp = api.request(
        "PATCH", cm_path(unchanged, "keep"), {"data": {"k": "changed"}}, content_type="text/plain"
    )
    assert_status(
        resp,
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml",
    )


def test_oversized_body(api: Api, unchanged: str) -> None:
    body = configmap("big", {"k": "x" * (MAX_BODY + 1024)})
    for method, path in (("POST", cm_path(unchanged)), ("PUT", cm_path(unchanged, "keep"))):
        resp = api.request(method, path, body)
        assert_status(
            resp, 413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
        )


def test_oversized_chunked_body(api: Api, unchanged: str) -> None:
    """Without a Content-Length the limit is enforced while reading, still as a Status."""
    conn = http.client.HTTPSConnection("127.0.0.1", api.port, context=api.admin, timeout=30)
    chunk = b"x" * 65536
    try:
        conn.putrequest("POST", cm_path(unchanged))
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for _ in range(MAX_BODY // len(chunk) + 2):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        raw = conn.getresponse()
        resp = Response(raw.status, raw.headers, raw.read())
    finally:
        conn.close()
    assert_status(
        resp, 413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
    )


def test_oversized_patch(api: Api, unchanged: str) -> None:
    patch = {"data": {"k": "x" * (MAX_BODY + 1)}}
    resp = api.request(
        "PATCH", cm_path(unchanged, "keep"), patch, content_type="application/merge-patch+json"
    )
    assert_status(
        resp, 413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
    )


# -- wrong kind, version, namespace, name ------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
            cm_path,
            'Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to '
            "(core.ConfigMap): unknown conversion",
        ),
        (
            deployment("d"),
            cm_path,
            'Deployment in version "v1" cannot be handled as a ConfigMap: converting '
            "(v1.Deployment) to (core.ConfigMap): unknown conversion",
        ),
        (
            configmap("c"),
            deploy_path,
            'ConfigMap in version "v1" cannot be handled as a Deployment: converting '
            "(v1.ConfigMap) to (apps.Deployment): unknown conversion",
        ),
        (
            {**configmap("c"), "apiVersion": "apps/v1"},
            cm_path,
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: no kind "ConfigMap" is '
            f'registered for version "apps/v1" in scheme "{LEGACY_SCHEME}"',
        ),
        (
            {**configmap("c"), "kind": "configmap"},
            cm_path,
            'configmap in version "v1" cannot be handled as a ConfigMap: no kind "configmap" is '
            f'registered for version "v1" in scheme "{LEGACY_SCHEME}"',
        ),
    ],
    ids=["secret-to-configmaps", "deployment-to-configmaps", "configmap-to-deployments",
         "apps-v1-configmap", "lowercase-kind"],
)  # fmt: skip
def test_wrong_kind_or_version_for_url(
    api: Api, unchanged: str, body: dict[str, Any], path: Any, message: str
) -> None:
    assert_status(api.request("POST", path(unchanged), body), 400, "BadRequest", message)


def test_wrong_kind_on_update(api: Api, unchanged: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keep"}}
    assert_status(
        api.request("PUT", cm_path(unchanged, "keep"), body),
        400,
        "BadRequest",
        'Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to '
        "(core.ConfigMap): unknown conversion",
    )


def test_group_version_mismatch(api: Api, unchanged: str) -> None:
    """Event is registered in two groups: it decodes, then fails the group-version check."""
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "reportingController": "x/y",
        "reportingInstance": "i",
        "action": "A",
        "reason": "R",
        "regarding": {"kind": "Pod", "name": "p", "namespace": unchanged},
    }
    path = f"/apis/events.k8s.io/v1/namespaces/{unchanged}/events"
    assert_status(
        api.request("POST", path, event),
        400,
        "BadRequest",
        "the API version in the data (v1) does not match the expected API version "
        "(events.k8s.io/v1)",
    )
    # the loops record events about the namespace's Deployment; the refused one is not there
    assert [e for e in api.ok("GET", path)["items"] if e["metadata"]["name"] == "e"] == []


def test_namespace_mismatch(api: Api, unchanged: str) -> None:
    message = (
        "the namespace of the provided object does not match the namespace sent on the request"
    )
    body = configmap("other", namespace="elsewhere")
    assert_status(api.request("POST", cm_path(unchanged), body), 400, "BadRequest", message)
    body = configmap("keep", {"k": "changed"}, namespace="elsewhere")
    assert_status(api.request("PUT", cm_path(unchanged, "keep"), body), 400, "BadRequest", message)


def test_name_mismatch_on_update(api: Api, unchanged: str) -> None:
    assert_status(
        api.request("PUT", cm_path(unchanged, "keep"), configmap("other")),
        400,
        "BadRequest",
        "the name of the object (other) does not match the name on the URL (keep)",
    )


LONG = "a" * 254


@pytest.mark.parametrize(
    ("path", "body", "kind", "name", "cause"),
    [
        (cm_path, configmap("Foo_Bar"), "ConfigMap", "Foo_Bar",
         ("FieldValueInvalid", f'Invalid value: "Foo_Bar": {SUBDOMAIN_MSG}')),
        (cm_path, configmap(LONG), "ConfigMap", LONG,
         ("FieldValueInvalid", f'Invalid value: "{LONG}": must be no more than 253 characters')),
        (cm_path, configmap(""), "ConfigMap", "",
         ("FieldValueRequired", "Required value: name or generateName is required")),
        (lambda ns: f"/api/v1/namespaces/{ns}/services",
         {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Web"},
          "spec": {"ports": [{"port": 80}]}},
         "Service", "Web", ("FieldValueInvalid", f'Invalid value: "Web": {DNS1035_MSG}')),
    ],
    ids=["underscore", "too-long", "empty", "service-dns1035"],
)  # fmt: skip
def test_invalid_names(
    api: Api,
    unchanged: str,
    path: Any,
    body: dict[str, Any],
    kind: str,
    name: str,
    cause: tuple[str, str],
) -> None:
    st = assert_status(
        api.request("POST", path(unchanged), body),
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: metadata.name: {cause[1]}',
    )
    assert st["details"]["name"] == name
    assert st["details"]["kind"] == kind
    assert "group" not in st["details"]
    assert st["details"]["causes"] == [
        {"reason": cause[0], "message": cause[1], "field": "metadata.name"}
    ]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"app": "b c"}, f'Invalid value: "b c": {LABEL_VALUE_MSG}'),
        ({"-bad": "x"}, f'Invalid value: "-bad": {LABEL_KEY_MSG}'),
    ],
    ids=["value", "key"],
)
def test_invalid_labels(api: Api, unchanged: str, labels: dict[str, str], message: str) -> None:
    body = configmap("labelled", labels=labels)
    st = assert_status(
        api.request("POST", cm_path(unchanged), body),
        422,
        "Invalid",
        f'ConfigMap "labelled" is invalid: metadata.labels: {message}',
    )
    assert st["details"]["causes"][0]["field"] == "metadata.labels"
    # the same labels on an update of an existing object are refused as well
    update = configmap("keep", {"k": "v"}, labels=labels)
    resp = api.request("PUT", cm_path(unchanged, "keep"), update)
    assert_status(resp, 422, "Invalid", f'ConfigMap "keep" is invalid: metadata.labels: {message}')


# -- field validation and type errors ----------------------------------------------


def test_unknown_field_strict(api: Api, unchanged: str) -> None:
    body = deployment("strict", foo=1)
    resp = api.request("POST", deploy_path(unchanged) + "?fieldValidation=Strict", body)
    assert_status(
        resp,
        400,
        "BadRequest",
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.foo"',
    )
    body = deployment("web", foo=1, bar=2)
    resp = api.request("PUT", deploy_path(unchanged, "web") + "?fieldValidation=Strict", body)
    st = assert_status(resp, 400, "BadRequest")
    assert st["message"].endswith(
        'strict decoding error: unknown field "spec.bar", unknown field "spec.foo"'
    ) or st["message"].endswith(
        'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    )


def test_unknown_field_warn_and_ignore(api: Api, ns: str) -> None:
    for mode in ("Warn", ""):
        name = f"warn{mode.lower()}"
        query = f"?fieldValidation={mode}" if mode else ""
        resp = api.request("POST", deploy_path(ns) + query, deployment(name, foo=1))
        assert resp.status == 201, resp.body
        assert resp.headers.get_all("Warning") == ['299 - "unknown field \\"spec.foo\\""']
        assert "foo" not in resp.json()["spec"]
        assert "foo" not in api.ok("GET", deploy_path(ns, name))["spec"]
    resp = api.request(
        "POST", deploy_path(ns) + "?fieldValidation=Ignore", deployment("ign", foo=1)
    )
    assert resp.status == 201, resp.body
    assert resp.headers.get("Warning") is None
    assert "foo" not in api.ok("GET", deploy_path(ns, "ign"))["spec"]


@pytest.mark.parametrize(
    "content_type", ["application/merge-patch+json", "application/strategic-merge-patch+json"]
)
def test_unknown_fields_in_patches(api: Api, ns: str, content_type: str) -> None:
    """Patches are checked where they change the object, top level included: Strict
    refuses, Warn warns and drops, the stored object keeps only known fields."""
    name = "patched-" + content_type.split("/")[1].split("-")[0]
    api.ok("POST", deploy_path(ns), deployment(name))
    path = deploy_path(ns, name)
    patch = {"spec": {"replicas": 3, "foo": 1}, "bar": {"x": 1}}
    resp = api.request("PATCH", path + "?fieldValidation=Strict", patch, content_type=content_type)
    st = assert_status(resp, 400, "BadRequest")
    assert 'unknown field "spec.foo"' in st["message"]
    assert 'unknown field "bar"' in st["message"]
    assert api.ok("GET", path)["spec"]["replicas"] != 3

    resp = api.request("PATCH", path, patch, content_type=content_type)
    assert resp.status == 200, resp.body
    warnings = ", ".join(resp.headers.get_all("Warning") or [])
    assert '299 - "unknown field \\"bar\\""' in warnings
    assert '299 - "unknown field \\"spec.foo\\""' in warnings
    stored = api.ok("GET", path)
    assert stored["spec"]["replicas"] == 3
    assert "foo" not in stored["spec"] and "bar" not in stored


def test_unknown_field_validation_directive(api: Api, unchanged: str) -> None:
    resp = api.request("POST", cm_path(unchanged) + "?fieldValidation=Bogus", configmap("b"))
    message = 'Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn"'
    st = assert_status(
        resp, 422, "Invalid", f'CreateOptions.meta.k8s.io "" is invalid: fieldValidation: {message}'
    )
    assert st["details"]["group"] == "meta.k8s.io"
    assert st["details"]["causes"] == [
        {"reason": "FieldValueNotSupported", "message": message, "field": "fieldValidation"}
    ]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (deploy_path, deployment("typed", replicas="three"),
         'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
         "string into Go struct field DeploymentSpec.spec.replicas of type int32"),
        (cm_path, configmap("typed", {"port": 8080}),
         'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal '
         "number into Go struct field ConfigMap.data of type string"),
    ],
    ids=["deployment-replicas", "configmap-data"],
)  # fmt: skip
def test_json_type_errors(
    api: Api, unchanged: str, path: Any, body: dict[str, Any], message: str
) -> None:
    assert_status(api.request("POST", path(unchanged), body), 400, "BadRequest", message)


# -- routing, methods, list parameters -----------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/{ns}/nopes",
        "/apis/nogroup/v1/things",
        "/apis/apps/v9/namespaces/{ns}/deployments",
        "/api/v1/namespaces/{ns}/configmaps/keep/bogus",
    ],
)
def test_unknown_resource_path(api: Api, unchanged: str, path: str) -> None:
    resp = api.request("GET", path.format(ns=unchanged))
    assert_status(resp, 404, "NotFound", NOT_FOUND_MSG)
    resp = api.request("POST", path.format(ns=unchanged), configmap("x"))
    assert_status(resp, 404, "NotFound", NOT_FOUND_MSG)


def test_put_to_collection(api: Api, unchanged: str) -> None:
    assert_status(api.request("PUT", cm_path(unchanged), configmap("x")), 405, "MethodNotAllowed")
    resp = api.request("POST", cm_path(unchanged, "keep"), configmap("keep"))
    assert_status(resp, 405, "MethodNotAllowed")


def test_invalid_label_selector(api: Api, unchanged: str) -> None:
    resp = api.request("GET", cm_path(unchanged) + "?labelSelector=a%20in%20(")
    assert_status(
        resp,
        400,
        "BadRequest",
        "unable to parse requirement: found '', expected: ',', ')' or identifier",
    )


def test_unknown_field_selector(api: Api, unchanged: str) -> None:
    resp = api.request("GET", cm_path(unchanged) + "?fieldSelector=spec.foo%3D1")
    assert_status(
        resp,
        400,
        "BadRequest",
        '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )


def test_negative_limit_lists_everything(api: Api, unchanged: str) -> None:
    listed = api.ok("GET", cm_path(unchanged) + "?limit=-1")
    names = [i["metadata"]["name"] for i in listed["items"]]
    assert [n for n in names if n != "kube-root-ca.crt"] == ["keep"]
    assert "continue" not in listed["metadata"]


def test_malformed_resource_version(api: Api, unchanged: str) -> None:
    st = assert_status(
        api.request("GET", cm_path(unchanged) + "?resourceVersion=abc"), 400, "BadRequest"
    )
    assert "abc" in st["message"]


def test_malformed_continue_token(api: Api, unchanged: str) -> None:
    resp = api.request("GET", cm_path(unchanged) + "?limit=1&continue=garbage")
    st = assert_status(resp, 400, "BadRequest")
    assert "continue key is not valid" in st["message"]


def test_malformed_continue_token_upstream_wording(api: Api, unchanged: str) -> None:
    resp = api.request("GET", cm_path(unchanged) + "?limit=1&continue=garbage")
    st = assert_status(resp, 400, "BadRequest")
    assert st["message"].startswith("invalid continue token: continue key is not valid: ")


# -- namespace, conflicts, authentication --------------------------------------------


def test_create_in_missing_namespace(api: Api) -> None:
    resp = api.request("POST", cm_path("nope"), configmap("x"))
    st = assert_status(resp, 404, "NotFound", 'namespaces "nope" not found')
    assert st["details"] == {"name": "nope", "kind": "namespaces"}
    assert_status(api.request("GET", cm_path("nope", "x")), 404, "NotFound")


def test_stale_resource_version_update(api: Api, ns: str) -> None:
    current = api.ok("GET", cm_path(ns, "keep"))
    stale = {**current, "data": {"k": "first"}}
    api.ok("PUT", cm_path(ns, "keep"), stale)
    after_first = api.ok("GET", cm_path(ns, "keep"))
    stale["data"] = {"k": "second"}
    st = assert_status(
        api.request("PUT", cm_path(ns, "keep"), stale),
        409,
        "Conflict",
        f'Operation cannot be fulfilled on configmaps "keep": {CONFLICT_MSG}',
    )
    assert st["details"] == {"name": "keep", "kind": "configmaps"}
    assert api.ok("GET", cm_path(ns, "keep")) == after_first
    deploy = api.ok("GET", deploy_path(ns, "web"))
    deploy["metadata"]["resourceVersion"] = "1"
    st = assert_status(
        api.request("PUT", deploy_path(ns, "web"), deploy),
        409,
        "Conflict",
        f'Operation cannot be fulfilled on deployments.apps "web": {CONFLICT_MSG}',
    )
    assert st["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


def test_unauthenticated(api: Api, unchanged: str) -> None:
    for method, body, verb in (("GET", None, "list"), ("POST", configmap("anon"), "create")):
        resp = api.request(method, cm_path(unchanged), body, anonymous=True)
        assert_status(
            resp,
            403,
            "Forbidden",
            f'configmaps is forbidden: User "system:anonymous" cannot {verb} resource '
            f'"configmaps" in API group "" in the namespace "{unchanged}"',
        )
    resp = api.request("GET", "/readyz", anonymous=True)
    assert resp.status == 200
    assert resp.body == b"ok"


# -- through kubectl ---------------------------------------------------------------


def test_kubectl_shows_invalid_name(kubectl: Kubectl, api: Api, unchanged: str) -> None:
    manifest = yaml.safe_dump(configmap("Foo_Bar", {"k": "v"}))
    res = kubectl.run("create", "-n", unchanged, "-f", "-", input=manifest, check=False)
    assert res.returncode != 0
    assert (
        f'The ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar": '
        f"{SUBDOMAIN_MSG}"
    ) in res.stderr


def test_kubectl_strict_unknown_field(kubectl: Kubectl, api: Api, unchanged: str) -> None:
    manifest = yaml.safe_dump(deployment("strict", foo=1))
    res = kubectl.run(
        "create", "--validate=strict", "-n", unchanged, "-f", "-", input=manifest, check=False
    )
    assert res.returncode != 0
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version '
        '"v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.foo"'
    ) in res.stderr


def test_kubectl_conflict(kubectl: Kubectl, api: Api, ns: str) -> None:
    current = api.ok("GET", cm_path(ns, "keep"))
    api.ok("PUT", cm_path(ns, "keep"), {**current, "data": {"k": "moved"}})
    stale = yaml.safe_dump({**current, "data": {"k": "stale"}})
    res = kubectl.run("replace", "-n", ns, "-f", "-", input=stale, check=False)
    assert res.returncode != 0
    assert (
        f'Error from server (Conflict): error when replacing "STDIN": Operation cannot be '
        f'fulfilled on configmaps "keep": {CONFLICT_MSG}'
    ) in res.stderr
    assert api.ok("GET", cm_path(ns, "keep"))["data"] == {"k": "moved"}
