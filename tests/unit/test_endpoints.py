"""Endpoints from the pods a Service selects."""

from __future__ import annotations

from typing import Any

from edgek.timefmt import format_time
from server.controllers.endpoints import EndpointsController, repack, truncate
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness

STATUS = WriteOptions(subresource="status")


async def add_service(
    h: Harness, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return await h.create(
        "",
        "services",
        "default",
        {"apiVersion": "v1", "kind": "Service", "metadata": md, "spec": spec},
    )


async def add_pod(
    h: Harness,
    name: str,
    ip: str | None,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "i"}
    if ports:
        container["ports"] = ports
    spec: dict[str, Any] = {"nodeName": "n1", "containers": [container], **(extra or {})}
    pod = await h.create(
        "",
        "pods",
        "default",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}},
            "spec": spec,
        },
    )
    await h.set_pod_status("default", name, ready=ready, phase=phase, ip=ip)
    return pod


WEB = {
    "selector": {"app": "web"},
    "clusterIP": "10.43.0.10",
    "ports": [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9090},
    ],
}
HTTP = [{"name": "http", "containerPort": 8080}]


async def endpoints(h: Harness, name: str) -> dict[str, Any] | None:
    return await h.get("", "endpoints", "default", name)


def ips(subset: dict[str, Any], field: str = "addresses") -> list[str]:
    return [a["ip"] for a in subset.get(field) or []]


async def test_ready_and_not_ready_pods_with_named_ports(harness: Harness) -> None:
    h = harness
    await add_service(h, "web", WEB, labels={"tier": "front"})
    p1 = await add_pod(h, "p1", "10.42.0.5", ports=HTTP)
    await add_pod(h, "p2", "10.42.0.6", ready=False, ports=HTTP)
    await add_pod(h, "p3", None, ports=HTTP)  # no IP yet
    await add_pod(h, "p4", "10.42.0.8", ports=HTTP, phase="Succeeded")
    await add_pod(h, "other", "10.42.0.9", labels={"app": "db"}, ports=HTTP)
    await add_pod(h, "noname", "10.42.0.7")  # no port named http: only the metrics port
    await h.start(EndpointsController)
    await h.settle()

    ep = await endpoints(h, "web")
    assert ep is not None
    assert ep["metadata"]["labels"] == {
        "tier": "front",
        "endpoints.kubernetes.io/managed-by": "endpoint-controller",
    }
    assert "ownerReferences" not in ep["metadata"]
    assert ep["metadata"]["annotations"][
        "endpoints.kubernetes.io/last-change-trigger-time"
    ] == format_time(h.clock())
    # as upstream's RepackSubsets: each port's set of addresses differs, so one subset each
    by_port = {s["ports"][0]["name"]: s for s in ep["subsets"]}
    assert sorted(by_port) == ["http", "metrics"]
    http, metrics = by_port["http"], by_port["metrics"]
    assert http["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert ips(http) == ["10.42.0.5"]
    assert ips(http, "notReadyAddresses") == ["10.42.0.6"]
    assert metrics["ports"] == [{"name": "metrics", "port": 9090, "protocol": "TCP"}]
    assert ips(metrics) == ["10.42.0.5", "10.42.0.7"]
    assert ips(metrics, "notReadyAddresses") == ["10.42.0.6"]
    address = http["addresses"][0]
    assert address["nodeName"] == "n1"
    assert address["targetRef"] == {
        "kind": "Pod",
        "namespace": "default",
        "name": "p1",
        "uid": p1["metadata"]["uid"],
    }

    h.clock.advance(10)
    await h.set_pod_status("default", "p2", ip="10.42.0.6")
    await h.settle()
    ep = await endpoints(h, "web")
    assert ep is not None
    # now http and metrics differ only by noname: still two subsets, p2 ready in both
    for subset in ep["subsets"]:
        assert "10.42.0.6" in ips(subset)
        assert "notReadyAddresses" not in subset
    assert ep["metadata"]["annotations"][
        "endpoints.kubernetes.io/last-change-trigger-time"
    ] == format_time(h.clock())


async def test_publish_not_ready_and_headless(harness: Harness) -> None:
    h = harness
    await add_service(
        h,
        "peers",
        {"selector": {"app": "web"}, "clusterIP": "None", "publishNotReadyAddresses": True},
    )
    await add_pod(
        h, "web-0", "10.42.0.5", ready=False, extra={"hostname": "web-0", "subdomain": "peers"}
    )
    await h.start(EndpointsController)
    await h.settle()
    ep = await endpoints(h, "peers")
    assert ep is not None
    assert ep["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    (subset,) = ep["subsets"]
    assert "ports" not in subset
    (address,) = subset["addresses"]
    assert (address["ip"], address["hostname"]) == ("10.42.0.5", "web-0")


async def add_unselecting_services(h: Harness) -> None:
    """Services no endpoints are kept for: ``manual`` (no selector) and ``ext``
    (ExternalName, though it selects the pod ``p1`` that is added too)."""
    await add_service(h, "manual", {"clusterIP": "10.43.0.11", "ports": [{"port": 80}]})
    await add_service(
        h,
        "ext",
        {"type": "ExternalName", "externalName": "example.com", "selector": {"app": "web"}},
    )
    await add_pod(h, "p1", "10.42.0.5")


async def test_services_that_get_no_endpoints(harness: Harness) -> None:
    h = harness
    await add_unselecting_services(h)
    await h.start(EndpointsController)
    await h.settle()
    assert await endpoints(h, "manual") is None
    assert await endpoints(h, "ext") is None


async def test_deleted_service_loses_its_endpoints(harness: Harness) -> None:
    h = harness
    await add_service(h, "web", WEB)
    await add_pod(h, "p1", "10.42.0.5", ports=HTTP)
    await h.start(EndpointsController)
    await h.settle()
    assert await endpoints(h, "web") is not None
    await h.objects.delete(h.kind("", "services"), "default", "web", DeleteOptions())
    await h.settle()
    assert await endpoints(h, "web") is None


async def test_kubernetes_service_is_left_to_the_api_server(harness: Harness) -> None:
    h = harness
    await add_service(
        h,
        "kubernetes",
        {"selector": {"app": "web"}, "clusterIP": "10.43.0.1", "ports": [{"port": 443}]},
    )
    await add_pod(h, "p1", "10.42.0.5")
    await h.start(EndpointsController)
    await h.settle()
    assert await endpoints(h, "kubernetes") is None


def test_repack_groups_addresses_by_ports_and_truncates() -> None:
    def addr(i: int) -> dict[str, Any]:
        return {"ip": f"10.0.{i // 250}.{i % 250}", "targetRef": {"uid": str(i)}}

    port: dict[str, Any] = {"name": "p", "port": 1, "protocol": "TCP"}
    other: dict[str, Any] = {"name": "q", "port": 2, "protocol": "TCP"}
    (shared,) = repack(
        [
            (addr(1), port, True),
            (addr(1), other, True),
            (addr(2), port, False),
            (addr(2), other, False),
        ]
    )
    assert shared["ports"] == [port, other]
    assert ips(shared) == ["10.0.0.1"] and ips(shared, "notReadyAddresses") == ["10.0.0.2"]
    entries = [(addr(i), port, i % 3 != 0) for i in range(1200)]
    subsets = repack(entries)
    assert len(subsets) == 1
    assert len(subsets[0]["addresses"]) == 800 and len(subsets[0]["notReadyAddresses"]) == 400
    assert truncate(subsets)
    assert len(subsets[0]["addresses"]) == 800 and len(subsets[0]["notReadyAddresses"]) == 200
    assert not truncate(subsets)
