"""ServiceLB (server/controllers/servicelb.py): LoadBalancer Services get the Ready nodes'
addresses as status.loadBalancer.ingress, following nodes; other Services are left alone."""

from __future__ import annotations

from typing import Any

from server.controllers.servicelb import ServiceLBController, node_ingress
from server.storage.objectstore import WriteOptions
from tests.unit.controller_harness import Harness


def node(
    name: str, internal: str, external: str = "", ready: bool = True, **labels: str
) -> dict[str, Any]:
    """A Node with addresses and a Ready condition."""
    addresses = [{"type": "InternalIP", "address": internal}]
    if external:
        addresses.append({"type": "ExternalIP", "address": external})
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def service(name: str, type_: str = "LoadBalancer", **spec: Any) -> dict[str, Any]:
    """A Service of ``type_`` with one TCP port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": type_, "ports": [{"port": 80, "protocol": "TCP"}], **spec},
    }


def test_node_ingress_prefers_external_and_honours_the_label() -> None:
    nodes = [
        node("b", "10.0.0.12"),
        node("a", "10.0.0.11", "192.0.2.5"),
        node("down", "10.0.0.13", ready=False),
    ]
    assert node_ingress(nodes) == [{"ip": "10.0.0.12"}, {"ip": "192.0.2.5"}]
    nodes[0]["metadata"]["labels"] = {"svccontroller.k3s.cattle.io/enablelb": "true"}
    assert node_ingress(nodes) == [{"ip": "10.0.0.12"}]


async def ingress(h: Harness, name: str) -> list[dict[str, Any]]:
    """The Service's status.loadBalancer.ingress (empty when none)."""
    svc = await h.get("", "services", "default", name)
    assert svc is not None
    return list(((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


async def test_load_balancer_services_follow_the_nodes(harness: Harness) -> None:
    h = harness
    await h.start(ServiceLBController)
    await h.create("", "nodes", "", node("n1", "10.0.0.11"))
    await h.create("", "services", "default", service("lb"))
    await h.create("", "services", "default", service("plain", "ClusterIP"))
    await h.create("", "services", "default", service("other", loadBalancerClass="example.com/lb"))
    await h.settle()
    assert await ingress(h, "lb") == [{"ip": "10.0.0.11"}]
    assert await ingress(h, "plain") == []
    assert await ingress(h, "other") == []

    await h.create("", "nodes", "", node("n2", "10.0.0.12"))
    await h.wait_for(lambda: _has(h, "lb", 2), what="the second node's address")

    # no longer a LoadBalancer: the ingress goes
    svc = await h.get("", "services", "default", "lb")
    assert svc is not None
    svc["spec"]["type"] = "ClusterIP"
    for port in svc["spec"]["ports"]:
        port.pop("nodePort", None)
    await h.objects.update(h.kind("", "services"), "default", "lb", svc, WriteOptions())
    await h.wait_for(lambda: _has(h, "lb", 0), what="the ingress removed")


async def _has(h: Harness, name: str, count: int) -> bool:
    return len(await ingress(h, name)) == count
