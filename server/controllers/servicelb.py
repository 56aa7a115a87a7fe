"""ServiceLB: the built-in load balancer for ``type: LoadBalancer`` Services (k3s's
klipper-lb behaviour, without its per-service DaemonSet: every agent's service proxy already
answers on the node's addresses).

Each LoadBalancer Service without a ``spec.loadBalancerClass`` gets
``status.loadBalancer.ingress`` = the addresses of the Ready nodes (each node's ExternalIP,
else its InternalIP), sorted; when some node carries the label
``svccontroller.k3s.cattle.io/enablelb=true`` only the nodes so labelled serve, as in k3s. A
Service that stops being a LoadBalancer loses the ingress this loop gave it. ``edgek server
--disable servicelb`` turns the loop off.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from edgek.objects import Obj
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key

ENABLE_LABEL = "svccontroller.k3s.cattle.io/enablelb"


def node_ingress(all_nodes: Iterable[Obj]) -> list[dict[str, Any]]:
    """The ingress entries for these nodes: the serving Ready nodes' addresses, sorted."""
    nodes = list(all_nodes)
    labelled = [n for n in nodes if _labels(n).get(ENABLE_LABEL) == "true"]
    ips: set[str] = set()
    for node in labelled or nodes:
        if not _ready(node):
            continue
        addresses = (node.get("status") or {}).get("addresses") or []
        by_type: dict[str, list[str]] = {}
        for a in addresses:
            by_type.setdefault(a.get("type", ""), []).append(a.get("address", ""))
        ips.update(by_type.get("ExternalIP") or by_type.get("InternalIP") or [])
    valid = [ip for ip in ips if _is_ip(ip)]
    return [{"ip": ip} for ip in sorted(valid, key=ipaddress.ip_address)]


def _labels(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _ready(node: Obj) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def served(svc: Obj) -> bool:
    """Whether ServiceLB answers for this Service."""
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


class ServiceLBController(Controller):
    """Keeps the LoadBalancer Services' ingress on the nodes' addresses."""

    name = "servicelb"
    component = "service-lb-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services_kind = ctx.kind("", "services")
        self.services = ctx.cache("", "services")
        self.nodes = ctx.cache("", "nodes")
        self.services.on_event(self._service_event)
        self.nodes.on_event(self._node_event)

    def _service_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.queue.enqueue(key_of(new))

    def _node_event(self, old: Obj | None, new: Obj | None) -> None:
        for svc in self.services.items():
            if served(svc):
                self.queue.enqueue(key_of(svc))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(ns, name)
        if svc is None or (svc.get("spec") or {}).get("loadBalancerClass"):
            return
        status = dict(svc.get("status") or {})
        lb = dict(status.get("loadBalancer") or {})
        if served(svc):
            lb["ingress"] = node_ingress(self.nodes.items())
            if not lb["ingress"]:
                lb.pop("ingress")
        elif "ingress" in lb:
            lb.pop("ingress")
        else:
            return
        status["loadBalancer"] = lb
        await self.replace_status(self.services_kind, svc, status)
