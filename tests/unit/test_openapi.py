"""Tests for server.apiserver.openapi: documents generated from the kinds registry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from edgek import kinds
from server.apiserver.openapi import OpenAPI, custom_schema_name, schema_name

CRONTAB = kinds.Kind(
    group="stable.example.com",
    version="v1",
    kind="CronTab",
    resource="crontabs",
    singular="crontab",
    namespaced=True,
    custom=True,
    subresources=("status", "scale"),
)
CRONTAB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}},
            "required": ["cronSpec"],
        }
    },
}


@pytest.fixture(scope="module")
def builtin() -> OpenAPI:
    return OpenAPI(kinds.Registry())


def doc(api: OpenAPI, path: str) -> dict[str, Any]:
    body = api.document(path)
    assert body is not None, path
    return json.loads(body)


def schemas(api: OpenAPI, path: str) -> dict[str, Any]:
    return doc(api, path)["components"]["schemas"]


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` inside a JSON value (``properties`` keys are field names)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            elif key == "properties":
                for schema in value.values():
                    yield from refs(schema)
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_schema_names() -> None:
    assert schema_name("apps/v1.Deployment") == "io.k8s.api.apps.v1.Deployment"
    assert schema_name("core/v1.Pod") == "io.k8s.api.core.v1.Pod"
    assert schema_name("meta/v1.ObjectMeta") == "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    assert schema_name("resource.Quantity") == "io.k8s.apimachinery.pkg.api.resource.Quantity"
    assert schema_name("intstr.IntOrString") == "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    assert schema_name("runtime.RawExtension") == "io.k8s.apimachinery.pkg.runtime.RawExtension"
    assert (
        schema_name("apiextensions/v1.CustomResourceDefinition")
        == "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"
    )
    assert custom_schema_name(CRONTAB) == "com.example.stable.v1.CronTab"


def test_index_lists_served_group_versions_with_stable_hashes(builtin: OpenAPI) -> None:
    index = builtin.index()
    expected = {
        f"apis/{g}/{v}" if g else f"api/{v}"
        for g, versions in kinds.Registry().group_versions().items()
        for v in versions
    }
    assert set(index["paths"]) == expected
    assert {"api/v1", "apis/apps/v1", "apis/rbac.authorization.k8s.io/v1"} <= expected
    for path, entry in index["paths"].items():
        url = urlsplit(entry["serverRelativeURL"])
        assert url.path == f"/openapi/v3/{path}"
        (digest,) = parse_qs(url.query)["hash"]
        assert digest == hashlib.sha512(builtin.document(path) or b"").hexdigest().upper()
    assert builtin.index() == index
    assert OpenAPI(kinds.Registry()).index() == index


def test_unknown_group_version_is_not_served(builtin: OpenAPI) -> None:
    assert builtin.document("apis/apps/v2") is None
    assert builtin.document("apis/nope/v1") is None
    assert builtin.document("/api/v1") == builtin.document("api/v1")


def test_deployment_patch_operation(builtin: OpenAPI) -> None:
    apps = doc(builtin, "apis/apps/v1")
    assert apps["openapi"] == "3.0.0"
    item = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert patch["x-kubernetes-action"] == "patch"
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    names = {p["name"] for p in patch["parameters"]}
    assert {"fieldValidation", "dryRun", "fieldManager", "force"} <= names
    assert all(p["in"] == "query" for p in patch["parameters"])
    assert {p["name"] for p in item["parameters"]} == {"name", "namespace", "pretty"}
    body = patch["requestBody"]["content"]
    assert set(body) == {
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    }
    ok = patch["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok == "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    assert item["get"]["operationId"] == "readAppsV1NamespacedDeployment"
    assert item["put"]["operationId"] == "replaceAppsV1NamespacedDeployment"
    assert item["delete"]["operationId"] == "deleteAppsV1NamespacedDeployment"
    coll = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]
    assert coll["get"]["operationId"] == "listAppsV1NamespacedDeployment"
    assert coll["post"]["operationId"] == "createAppsV1NamespacedDeployment"
    assert {"fieldValidation", "dryRun", "fieldManager"} <= {
        p["name"] for p in coll["post"]["parameters"]
    }
    assert coll["delete"]["operationId"] == "deleteAppsV1CollectionNamespacedDeployment"
    every = apps["paths"]["/apis/apps/v1/deployments"]["get"]
    assert every["operationId"] == "listAppsV1DeploymentForAllNamespaces"
    scale = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["operationId"] == "patchAppsV1NamespacedDeploymentScale"
    assert scale["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Scale"
    status = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]
    assert status["put"]["operationId"] == "replaceAppsV1NamespacedDeploymentStatus"
    assert (
        "/apis/apps/v1/namespaces/{namespace}/controllerrevisions/{name}/status"
        not in (apps["paths"])
    )


def test_every_patch_operation_accepts_field_validation(builtin: OpenAPI) -> None:
    """kubectl takes the first PATCH operation carrying the kind's GVK (in map order)."""
    for path in builtin.index()["paths"]:
        for item in doc(builtin, path)["paths"].values():
            for method in ("patch", "put", "post"):
                if method in item:
                    names = {p["name"] for p in item[method]["parameters"]}
                    assert "fieldValidation" in names, (path, method)


def test_core_paths(builtin: OpenAPI) -> None:
    core = doc(builtin, "api/v1")
    paths = core["paths"]
    assert paths["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]["operationId"] == (
        "patchCoreV1NamespacedPod"
    )
    assert "/api/v1/pods" in paths
    node = paths["/api/v1/nodes/{name}"]
    assert node["get"]["operationId"] == "readCoreV1Node"
    assert node["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "",
        "version": "v1",
        "kind": "Node",
    }
    assert {p["name"] for p in node["parameters"]} == {"name", "pretty"}
    assert "/api/v1/namespaces/{namespace}/nodes" not in paths
    assert "/api/v1/nodes/{name}/status" in paths
    rbac = doc(builtin, "apis/rbac.authorization.k8s.io/v1")["paths"]
    assert (
        rbac["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"]
        == "patchRbacAuthorizationV1ClusterRole"
    )


def test_container_schema(builtin: OpenAPI) -> None:
    container = schemas(builtin, "api/v1")["io.k8s.api.core.v1.Container"]
    assert container["type"] == "object"
    assert "name" in container["required"]
    ports = container["properties"]["ports"]
    assert ports["type"] == "array"
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    assert ports["x-kubernetes-patch-strategy"] == "merge"
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    assert ports["items"] == {
        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}]
    }
    port = schemas(builtin, "api/v1")["io.k8s.api.core.v1.ContainerPort"]
    assert port["required"] == ["containerPort"]
    assert port["properties"]["containerPort"] == {"type": "integer", "format": "int32"}
    assert port["properties"]["protocol"] == {"type": "string", "enum": ["TCP", "UDP", "SCTP"]}
    pod_spec = schemas(builtin, "api/v1")["io.k8s.api.core.v1.PodSpec"]
    assert pod_spec["properties"]["nodeSelector"]["x-kubernetes-map-type"] == "atomic"
    assert pod_spec["properties"]["nodeSelector"]["additionalProperties"] == {"type": "string"}


def test_special_schemas(builtin: OpenAPI) -> None:
    core = schemas(builtin, "api/v1")
    quantity = core["io.k8s.apimachinery.pkg.api.resource.Quantity"]
    assert {"type": "string"} in quantity["oneOf"]
    int_or_string = core["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert int_or_string["format"] == "int-or-string"
    assert int_or_string["x-kubernetes-int-or-string"] is True
    time = core["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]
    assert time == {"type": "string", "format": "date-time"}
    limits = core["io.k8s.api.core.v1.ResourceRequirements"]["properties"]["limits"]
    assert limits["additionalProperties"]["allOf"][0]["$ref"].endswith("resource.Quantity")
    meta = core["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    assert meta["creationTimestamp"]["allOf"][0]["$ref"].endswith("meta.v1.Time")
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    crd = schemas(builtin, "apis/apiextensions.k8s.io/v1")
    props = crd["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"]
    assert props["properties"]["x-kubernetes-preserve-unknown-fields"] == {"type": "boolean"}
    assert props["properties"]["items"]["allOf"][0]["$ref"].endswith("JSONSchemaPropsOrArray")
    v2 = json.loads(builtin.v2())["definitions"]
    assert v2["io.k8s.apimachinery.pkg.api.resource.Quantity"] == {"type": "string"}
    assert v2["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] == {
        "type": "string",
        "format": "int-or-string",
    }


def test_kind_and_list_schemas(builtin: OpenAPI) -> None:
    for kind in kinds.builtin_kinds():
        path = f"apis/{kind.group}/{kind.version}" if kind.group else f"api/{kind.version}"
        defs = schemas(builtin, path)
        assert kind.type_name is not None
        obj = defs[schema_name(kind.type_name)]
        gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
        assert gvk in obj["x-kubernetes-group-version-kind"], kind
        assert obj["properties"]["apiVersion"] == {"type": "string"}
        assert obj["properties"]["kind"] == {"type": "string"}
        lst = defs[schema_name(kind.type_name) + "List"]
        assert lst["x-kubernetes-group-version-kind"] == [{**gvk, "kind": kind.kind + "List"}]
        assert lst["properties"]["items"]["items"]["allOf"][0]["$ref"].endswith(
            schema_name(kind.type_name)
        )
        for meta in ("ObjectMeta", "ListMeta", "Status", "DeleteOptions", "Patch", "WatchEvent"):
            assert f"io.k8s.apimachinery.pkg.apis.meta.v1.{meta}" in defs


def test_every_ref_resolves(builtin: OpenAPI) -> None:
    prefix = "#/components/schemas/"
    for path in builtin.index()["paths"]:
        document = doc(builtin, path)
        defs = document["components"]["schemas"]
        targets = set(refs(document))
        assert targets, path
        for target in targets:
            assert target.startswith(prefix), target
            assert target.removeprefix(prefix) in defs, (path, target)
    v2 = json.loads(builtin.v2())
    for target in set(refs(v2)):
        assert target.removeprefix("#/definitions/") in v2["definitions"], target
    assert v2["swagger"] == "2.0"
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}" in v2["paths"]


def test_custom_kind() -> None:
    registry = kinds.Registry()
    api = OpenAPI(registry)
    assert "apis/stable.example.com/v1" not in api.index()["paths"]
    registry.add(CRONTAB)
    entry = api.index()["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
    crontab = schemas(api, "apis/stable.example.com/v1")["com.example.stable.v1.CronTab"]
    assert crontab["x-kubernetes-preserve-unknown-fields"] is True

    given = json.loads(json.dumps(CRONTAB_SCHEMA))
    api.set_custom_schema(CRONTAB, given)
    assert given == CRONTAB_SCHEMA  # not modified
    updated = api.index()["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
    assert updated != entry
    document = doc(api, "apis/stable.example.com/v1")
    defs = document["components"]["schemas"]
    crontab = defs["com.example.stable.v1.CronTab"]
    assert crontab["properties"]["spec"] == CRONTAB_SCHEMA["properties"]["spec"]
    assert crontab["properties"]["metadata"]["allOf"][0]["$ref"].endswith("v1.ObjectMeta")
    assert crontab["properties"]["apiVersion"] == {"type": "string"}
    assert crontab["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "version": "v1", "kind": "CronTab"}
    ]
    assert "x-kubernetes-preserve-unknown-fields" not in crontab
    assert defs["com.example.stable.v1.CronTabList"]["x-kubernetes-group-version-kind"][0][
        "kind"
    ] == ("CronTabList")
    assert "io.k8s.api.autoscaling.v1.Scale" in defs
    paths = document["paths"]
    patch = paths["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
    assert patch["operationId"] == "patchStableExampleComV1NamespacedCronTab"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "application/strategic-merge-patch+json" not in patch["requestBody"]["content"]
    assert "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/scale" in paths
    for target in set(refs(document)):
        assert target.removeprefix("#/components/schemas/") in defs
    assert "com.example.stable.v1.CronTab" in json.loads(api.v2())["definitions"]

    api.remove_custom(CRONTAB)
    crontab = schemas(api, "apis/stable.example.com/v1")["com.example.stable.v1.CronTab"]
    assert crontab["x-kubernetes-preserve-unknown-fields"] is True
    registry.remove(CRONTAB)
    assert "apis/stable.example.com/v1" not in api.index()["paths"]
    assert api.document("apis/stable.example.com/v1") is None


def test_documents_are_cached(builtin: OpenAPI) -> None:
    assert builtin.document("apis/apps/v1") is builtin.document("apis/apps/v1")
    assert builtin.v2() is builtin.v2()


# ---------------------------------------------------------------------------
# kubectl against a tiny server serving discovery and these documents

KUBECTL = next((p for p in ("/usr/bin/kubectl", "/work/venv/bin/kubectl") if shutil.which(p)), None)


def _resource_list(registry: kinds.Registry, group: str, version: str) -> dict[str, Any]:
    resources = []
    for k in registry.all():
        if (k.group, k.version) != (group, version):
            continue
        resources.append(
            {
                "name": k.resource,
                "singularName": k.singular,
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": list(k.verbs),
                "shortNames": list(k.short_names),
            }
        )
        resources += [
            {
                "name": f"{k.resource}/{s}",
                "singularName": "",
                "namespaced": k.namespaced,
                "kind": k.kind if s == "status" else "Scale",
                "verbs": ["get", "patch", "update"],
            }
            for s in k.subresources
        ]
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


class FakeServer:
    """Discovery, OpenAPI v3 and an echoing create endpoint; records write requests."""

    def __init__(self, registry: kinds.Registry) -> None:
        self.registry = registry
        self.api = OpenAPI(registry)
        self.writes: list[tuple[str, str, dict[str, list[str]]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/version", self.version)
        app.router.add_get("/api", self.api_versions)
        app.router.add_get("/apis", self.api_groups)
        app.router.add_get("/api/{version}", self.resources)
        app.router.add_get("/apis/{group}/{version}", self.resources)
        app.router.add_get("/openapi/v3", self.openapi_index)
        app.router.add_get("/openapi/v3/{path:.+}", self.openapi_document)
        app.router.add_route("*", "/{tail:.*}", self.write)
        return app

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}
        )

    async def api_versions(self, request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"]})

    async def api_groups(self, request: web.Request) -> web.Response:
        groups = []
        for group, versions in self.registry.group_versions().items():
            if not group:
                continue
            gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
        return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def resources(self, request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        return web.json_response(
            _resource_list(self.registry, group, request.match_info["version"])
        )

    async def openapi_index(self, request: web.Request) -> web.Response:
        return web.json_response(self.api.index())

    async def openapi_document(self, request: web.Request) -> web.Response:
        body = self.api.document(request.match_info["path"])
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="application/json")

    async def write(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            raise web.HTTPNotFound()
        obj = json.loads(await request.read())
        self.writes.append((request.method, request.path, parse_qs(request.query_string)))
        obj.setdefault("metadata", {}).update({"uid": "u-1", "resourceVersion": "1"})
        return web.json_response(obj, status=201)


@pytest.fixture
async def fake(tmp_path: Path) -> AsyncIterator[tuple[FakeServer, list[str]]]:
    if KUBECTL is None:
        pytest.skip("kubectl not installed")
    registry = kinds.Registry()
    server = FakeServer(registry)
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    base = [KUBECTL, f"--kubeconfig={kubeconfig}", f"--cache-dir={tmp_path / 'cache'}"]
    try:
        yield server, base
    finally:
        await runner.cleanup()


async def kubectl(base: list[str], *args: str, stdin: bytes = b"") -> str:
    proc = await asyncio.create_subprocess_exec(
        *base,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_kubectl_explain(fake: tuple[FakeServer, list[str]]) -> None:
    _, base = fake
    out = await kubectl(base, "explain", "deployment.spec.template.spec.containers.ports")
    assert "GROUP:      apps" in out
    assert "KIND:       Deployment" in out
    assert "FIELD: ports <[]ContainerPort>" in out
    assert "containerPort\t<integer> -required-" in out
    assert "protocol\t<string>" in out
    out = await kubectl(base, "explain", "pod.spec.containers.resources")
    assert "limits\t<map[string]Quantity>" in out
    out = await kubectl(base, "explain", "deployments.spec.strategy.rollingUpdate")
    assert "maxSurge\t<IntOrString>" in out
    out = await kubectl(base, "explain", "pods.metadata")
    assert "creationTimestamp\t<string>" in out


async def test_kubectl_create_leaves_validation_to_server(
    fake: tuple[FakeServer, list[str]],
) -> None:
    server, base = fake
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {}}},
    }
    out = await kubectl(base, "create", "-f", "-", stdin=json.dumps(manifest).encode())
    assert "deployment.apps/web created" in out
    ((method, path, query),) = server.writes
    assert (method, path) == ("POST", "/apis/apps/v1/namespaces/default/deployments")
    assert query["fieldValidation"] == ["Strict"]
