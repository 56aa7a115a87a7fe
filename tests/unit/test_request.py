"""Tests of resource URL parsing (server.apiserver.request.parse_resource_path)."""

from __future__ import annotations

import pytest

from edgek.kinds import Registry
from edgek.status import ApiError
from server.apiserver.request import parse_resource_path
from server.storage.requestinfo import RequestInfo

REGISTRY = Registry()


def parse(method: str, path: str, query: dict[str, str] | None = None) -> RequestInfo:
    """Split a URL path the way the app does and parse it."""
    segments = [s for s in path.split("/") if s]
    return parse_resource_path(method, segments, query or {}, REGISTRY)


def facts(info: RequestInfo) -> tuple[str, str, str, str, str, str]:
    return (
        info.verb,
        info.kind.group,
        info.kind.resource,
        info.namespace,
        info.name,
        info.subresource,
    )


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        # core group, namespaced
        ("GET", "/api/v1/pods", ("list", "", "pods", "", "", "")),
        ("GET", "/api/v1/namespaces/default/pods", ("list", "", "pods", "default", "", "")),
        ("POST", "/api/v1/namespaces/default/pods", ("create", "", "pods", "default", "", "")),
        (
            "DELETE",
            "/api/v1/namespaces/default/pods",
            ("deletecollection", "", "pods", "default", "", ""),
        ),
        ("GET", "/api/v1/namespaces/default/pods/p", ("get", "", "pods", "default", "p", "")),
        ("PUT", "/api/v1/namespaces/default/pods/p", ("update", "", "pods", "default", "p", "")),
        ("PATCH", "/api/v1/namespaces/default/pods/p", ("patch", "", "pods", "default", "p", "")),
        ("DELETE", "/api/v1/namespaces/default/pods/p", ("delete", "", "pods", "default", "p", "")),
        (
            "GET",
            "/api/v1/namespaces/default/pods/p/status",
            ("get", "", "pods", "default", "p", "status"),
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/pods/p/status",
            ("update", "", "pods", "default", "p", "status"),
        ),
        # core group, cluster scoped
        ("GET", "/api/v1/nodes", ("list", "", "nodes", "", "", "")),
        ("GET", "/api/v1/nodes/n1", ("get", "", "nodes", "", "n1", "")),
        ("PATCH", "/api/v1/nodes/n1/status", ("patch", "", "nodes", "", "n1", "status")),
        # namespaces themselves: /namespaces/x is an object, /namespaces/x/status a subresource
        ("GET", "/api/v1/namespaces", ("list", "", "namespaces", "", "", "")),
        ("POST", "/api/v1/namespaces", ("create", "", "namespaces", "", "", "")),
        ("GET", "/api/v1/namespaces/x", ("get", "", "namespaces", "", "x", "")),
        ("DELETE", "/api/v1/namespaces/x", ("delete", "", "namespaces", "", "x", "")),
        ("GET", "/api/v1/namespaces/x/status", ("get", "", "namespaces", "", "x", "status")),
        ("PUT", "/api/v1/namespaces/x/status", ("update", "", "namespaces", "", "x", "status")),
        # a namespace called like a subresource still scopes a namespaced collection
        ("GET", "/api/v1/namespaces/status/pods", ("list", "", "pods", "status", "", "")),
        # named groups
        ("GET", "/apis/apps/v1/deployments", ("list", "apps", "deployments", "", "", "")),
        (
            "GET",
            "/apis/apps/v1/namespaces/ns/deployments/web",
            ("get", "apps", "deployments", "ns", "web", ""),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            ("patch", "apps", "deployments", "ns", "web", "scale"),
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/web/status",
            ("update", "apps", "deployments", "ns", "web", "status"),
        ),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin",
            ("get", "rbac.authorization.k8s.io", "clusterroles", "", "admin", ""),
        ),
        # the /watch/ prefix
        ("GET", "/api/v1/watch/pods", ("watch", "", "pods", "", "", "")),
        ("GET", "/api/v1/watch/namespaces/default/pods", ("watch", "", "pods", "default", "", "")),
        (
            "GET",
            "/api/v1/watch/namespaces/default/pods/p",
            ("watch", "", "pods", "default", "p", ""),
        ),
        ("GET", "/api/v1/watch/namespaces", ("watch", "", "namespaces", "", "", "")),
        ("GET", "/api/v1/watch/namespaces/x", ("watch", "", "namespaces", "", "x", "")),
        (
            "GET",
            "/apis/apps/v1/watch/namespaces/ns/deployments",
            ("watch", "apps", "deployments", "ns", "", ""),
        ),
    ],
)
def test_url_shapes(method: str, path: str, expected: tuple[str, ...]) -> None:
    assert facts(parse(method, path)) == expected


@pytest.mark.parametrize(
    ("query", "verb"),
    [
        ({"watch": "true"}, "watch"),
        ({"watch": "1"}, "watch"),
        ({"watch": "True"}, "watch"),
        ({"watch": "false"}, "list"),
        ({"watch": "0"}, "list"),
        ({}, "list"),
    ],
)
def test_watch_query_parameter(query: dict[str, str], verb: str) -> None:
    assert parse("GET", "/api/v1/namespaces/default/configmaps", query).verb == verb


def test_watch_query_on_named_object() -> None:
    info = parse("GET", "/api/v1/namespaces/default/configmaps/c", {"watch": "true"})
    assert (info.verb, info.name) == ("watch", "c")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1",
        "/api/v1/watch",
        "/api/v1/foos",
        "/api/v2/pods",
        "/apis/apps/v1/pods",
        "/apis/nope.example.com/v1/things",
        "/apis/apps/v9/deployments",
        "/api/v1/namespaces/default/nodes",
        "/api/v1/namespaces/default/namespaces",
        "/api/v1/namespaces/default/pods/p/bogus",
        "/api/v1/namespaces/default/configmaps/c/status",
        "/api/v1/namespaces/default/pods/p/status/extra",
        "/apis/apps/v1/namespaces/x/status",
    ],
)
def test_unknown_paths_are_not_found(path: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse("GET", path)
    assert (exc.value.code, exc.value.reason) == (404, "NotFound")
    assert exc.value.message == "the server could not find the requested resource"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/namespaces/default/pods/p"),
        ("POST", "/api/v1/namespaces/x"),
        ("POST", "/apis/apps/v1/namespaces/ns/deployments/web/status"),
        ("PUT", "/api/v1/namespaces/default/pods"),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments"),
        ("OPTIONS", "/api/v1/namespaces/default/pods/p"),
        ("HEAD", "/api/v1/nodes"),
    ],
)
def test_methods_not_allowed(method: str, path: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse(method, path)
    assert (exc.value.code, exc.value.reason) == (405, "MethodNotAllowed")


def test_namespace_finalize_subresource() -> None:
    info = parse("PUT", "/api/v1/namespaces/x/finalize")
    assert facts(info) == ("update", "", "namespaces", "", "x", "finalize")


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("DELETE", "/api/v1/pods", 405),
        ("GET", "/api/v1/pods/p", 404),
        ("DELETE", "/apis/apps/v1/deployments/web", 404),
    ],
)
def test_all_namespaces_path_is_list_and_watch_only(method: str, path: str, code: int) -> None:
    with pytest.raises(ApiError) as exc:
        parse(method, path)
    assert exc.value.code == code
