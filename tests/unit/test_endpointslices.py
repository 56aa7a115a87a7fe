"""EndpointSlices from the pods a Service selects."""

from __future__ import annotations

from typing import Any

from server.controllers.endpointslices import EndpointSliceController
from server.storage.objectstore import DeleteOptions, WriteOptions
from tests.unit.controller_harness import Harness
from tests.unit.test_endpoints import (
    HTTP,
    WEB,
    add_pod,
    add_service,
    add_unselecting_services,
)

MANAGED = {
    "kubernetes.io/service-name": "web",
    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
}


async def slices(h: Harness, service: str = "web") -> list[dict[str, Any]]:
    return [
        s
        for s in await h.list("discovery.k8s.io", "endpointslices", "default")
        if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == service
    ]


def by_ip(slice_: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["addresses"][0]: e for e in slice_.get("endpoints") or []}


async def test_slices_for_ready_not_ready_and_terminating_pods(harness: Harness) -> None:
    h = harness
    svc = await add_service(h, "web", WEB, labels={"tier": "front"})
    await h.create(
        "",
        "nodes",
        "",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "z1"}},
        },
    )
    p1 = await add_pod(h, "p1", "10.42.0.5", ports=HTTP)
    await add_pod(h, "p2", "10.42.0.6", ready=False, ports=HTTP)
    await add_pod(h, "gone", "10.42.0.7", ports=HTTP)
    await add_pod(h, "p3", None, ports=HTTP)
    await h.objects.delete(h.kind("", "pods"), "default", "gone", DeleteOptions())  # graceful
    await h.start(EndpointSliceController)
    await h.settle()

    (slice_,) = await slices(h)
    md = slice_["metadata"]
    assert md["name"].startswith("web-")
    assert md["labels"] == {"tier": "front", **MANAGED}
    assert md["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": svc["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in md["annotations"]
    assert slice_["addressType"] == "IPv4"
    assert sorted(slice_["ports"], key=lambda p: p["name"]) == [
        {"name": "http", "port": 8080, "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "protocol": "TCP"},
    ]
    endpoints = by_ip(slice_)
    assert sorted(endpoints) == ["10.42.0.5", "10.42.0.6", "10.42.0.7"]
    assert endpoints["10.42.0.5"] == {
        "addresses": ["10.42.0.5"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "targetRef": {
            "kind": "Pod",
            "namespace": "default",
            "name": "p1",
            "uid": p1["metadata"]["uid"],
        },
        "nodeName": "n1",
        "zone": "z1",
    }
    assert endpoints["10.42.0.6"]["conditions"] == {
        "ready": False,
        "serving": False,
        "terminating": False,
    }
    assert endpoints["10.42.0.7"]["conditions"] == {
        "ready": False,
        "serving": True,
        "terminating": True,
    }

    await h.set_pod_status("default", "p2", ip="10.42.0.6")
    await h.settle()
    (again,) = await slices(h)
    assert again["metadata"]["name"] == md["name"]  # updated in place
    assert by_ip(again)["10.42.0.6"]["conditions"]["ready"] is True


async def test_placeholder_then_slices_of_at_most_100(harness: Harness) -> None:
    h = harness
    await add_service(h, "web", {**WEB, "ports": [{"name": "http", "port": 80}]})
    await h.start(EndpointSliceController)
    await h.settle()
    (placeholder,) = await slices(h)
    assert not placeholder.get("endpoints")
    assert not placeholder.get("ports")

    for i in range(130):
        await add_pod(h, f"p{i}", f"10.42.{i // 200}.{i % 200 + 1}")
    await h.settle()
    got = await slices(h)
    sizes = sorted(len(s["endpoints"]) for s in got)
    assert sizes == [30, 100]
    # the placeholder (no ports) is not one of them, as upstream
    assert placeholder["metadata"]["name"] not in {s["metadata"]["name"] for s in got}
    assert all(s["ports"] == [{"name": "http", "port": 80, "protocol": "TCP"}] for s in got)
    seen = [e["targetRef"]["name"] for s in got for e in s["endpoints"]]
    assert sorted(seen) == sorted(f"p{i}" for i in range(130))


async def test_headless_with_hostname_and_removal(harness: Harness) -> None:
    h = harness
    await add_service(h, "peers", {"selector": {"app": "web"}, "clusterIP": "None"})
    await add_pod(h, "web-0", "10.42.0.5", extra={"hostname": "web-0", "subdomain": "peers"})
    await h.start(EndpointSliceController)
    await h.settle()
    (slice_,) = await slices(h, "peers")
    assert slice_["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert not slice_.get("ports")
    (endpoint,) = slice_["endpoints"]
    assert endpoint["hostname"] == "web-0"

    async def relabel(pod: dict[str, Any] | None) -> dict[str, Any] | None:
        assert pod is not None
        pod["metadata"]["labels"] = {"app": "other"}
        return pod

    await h.objects.modify(h.kind("", "pods"), "default", "web-0", relabel, WriteOptions())
    await h.settle()
    (slice_,) = await slices(h, "peers")
    assert not slice_.get("endpoints")

    await h.objects.delete(h.kind("", "services"), "default", "peers", DeleteOptions())
    await h.settle()
    assert await slices(h, "peers") == []


async def test_no_slices_without_selector_or_for_external_name(harness: Harness) -> None:
    h = harness
    await add_unselecting_services(h)
    await h.start(EndpointSliceController)
    await h.settle()
    assert await h.list("discovery.k8s.io", "endpointslices", "default") == []
