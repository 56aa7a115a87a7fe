"""Endpoints: every Service with a selector gets an Endpoints object listing the pods it
selects (upstream's endpoint controller).

Pods with an IP that are not finished take part: Ready ones under ``addresses``, others
under ``notReadyAddresses`` (all under ``addresses`` with ``publishNotReadyAddresses``,
which also keeps terminating pods). Each service port's ``targetPort`` is resolved per pod
(a name through the pod's container ports); a pod without the named port is left out of
that port's subset. Headless services without ports list bare addresses. Subsets are
packed as upstream's ``RepackSubsets`` does (addresses offering the same ports share a
subset); at most 1000 addresses are kept (annotation
``endpoints.kubernetes.io/over-capacity: truncated``).

Selector-less and ExternalName Services are left alone; ``default/kubernetes`` is the API
server's. The pod/endpoint helpers here are shared with the EndpointSlice loop.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from edgek.objects import Obj
from edgek.podstate import is_pod_ready
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

LABEL_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpoint-controller"
LABEL_HEADLESS = "service.kubernetes.io/headless"
ANNOTATION_TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
ANNOTATION_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
ANNOTATION_LEADER = "control-plane.alpha.kubernetes.io/leader"
MAX_CAPACITY = 1000


# -- helpers shared with the EndpointSlice loop -------------------------------------------


def api_server_owned(namespace: str, name: str) -> bool:
    """``default/kubernetes`` lists the API servers; the server maintains it itself."""
    return (namespace, name) == ("default", "kubernetes")


def service_selector(service: Obj) -> dict[str, str] | None:
    """The label selector of a Service, or None when it gets no endpoints from the loops
    (ExternalName, or no selector)."""
    spec = service.get("spec") or {}
    selector: dict[str, str] | None = spec.get("selector")
    if spec.get("type") == "ExternalName" or not selector:
        return None
    return selector


def selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def selected_pods(pods: Iterable[Obj], selector: dict[str, str]) -> list[Obj]:
    return [p for p in pods if selects(selector, p)]


def is_headless(service: Obj) -> bool:
    """No cluster IP (``None``, or not yet set), as upstream's ``IsServiceIPSet`` negated."""
    return (service.get("spec") or {}).get("clusterIP", "") in ("", "None")


def should_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """Upstream ``ShouldPodBeInEndpoints``: not finished, has an IP, and not terminating
    unless terminating pods are wanted."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    if not status.get("podIP") and not status.get("podIPs"):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def pod_ip(pod: Obj, family: str) -> str | None:
    """The pod's address of ``family`` ("IPv4" or "IPv6")."""
    status = pod.get("status") or {}
    ips = [entry.get("ip", "") for entry in status.get("podIPs") or []]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    want = 6 if family == "IPv6" else 4
    for ip in ips:
        try:
            if ipaddress.ip_address(ip).version == want:
                return ip
        except ValueError:
            continue
    return None


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The pod's port for ``service_port`` (upstream ``FindPort``): a numeric targetPort as
    it is; a named one through the ports of the containers (and sidecar init containers)
    with that name and the service port's protocol."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or [])
    containers += [
        c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
    ]
    for container in containers:
        for port in container.get("ports") or []:
            if port.get("name") == target and (port.get("protocol") or "TCP") == protocol:
                return int(port["containerPort"])
    return None


def pod_hostname(pod: Obj, service: Obj) -> str | None:
    """The pod's hostname when it names itself within this service's subdomain."""
    spec = pod.get("spec") or {}
    if (
        spec.get("hostname")
        and spec.get("subdomain") == service["metadata"]["name"]
        and pod["metadata"].get("namespace") == service["metadata"].get("namespace")
    ):
        return str(spec["hostname"])
    return None


def target_ref(pod: Obj) -> Obj:
    md = pod["metadata"]
    return {
        "kind": "Pod",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md["uid"],
    }


def trigger_time(service: Obj, pods: Iterable[Obj]) -> str:
    """The time of the latest change that shapes the endpoints: the service's creation or a
    selected pod's last readiness transition (upstream's trigger-time sources)."""
    times: list[datetime] = []
    created = service["metadata"].get("creationTimestamp")
    if created:
        times.append(parse_time(created))
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("lastTransitionTime"):
                times.append(parse_time(cond["lastTransitionTime"]))
    return format_time(max(times)) if times else ""


def services_selecting(services: Iterable[Obj], *pods: Obj | None) -> list[str]:
    """Keys of the services (of the pods' namespace) selecting any of ``pods``."""
    keys: list[str] = []
    for service in services:
        selector = service_selector(service)
        if selector is None:
            continue
        for pod in pods:
            if pod is not None and selects(selector, pod):
                keys.append(key_of(service))
                break
    return keys


# -- the loop --------------------------------------------------------------------------------


def _port(service_port: Obj, number: int) -> Obj:
    port: Obj = {"port": number, "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("name"):
        port["name"] = service_port["name"]
    if service_port.get("appProtocol"):
        port["appProtocol"] = service_port["appProtocol"]
    return port


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def repack(entries: Iterable[tuple[Obj, Obj | None, bool]]) -> list[Obj]:
    """Subsets from (address, port or None, ready) entries: addresses offering the same set
    of ports share one subset (upstream ``RepackSubsets``), sorted."""
    addresses: dict[tuple[str, str], Obj] = {}
    by_port: dict[str, dict[tuple[str, str], bool]] = {}
    ports: dict[str, Obj | None] = {}
    for address, port, ready in entries:
        akey = (address["ip"], (address.get("targetRef") or {}).get("uid", ""))
        addresses[akey] = address
        pkey = _canonical(port)
        ports[pkey] = port
        seen = by_port.setdefault(pkey, {})
        seen[akey] = seen.get(akey, False) or ready
    groups: dict[str, tuple[dict[tuple[str, str], bool], list[Obj]]] = {}
    for pkey, members in by_port.items():
        gkey = _canonical(sorted(members.items()))
        group = groups.setdefault(gkey, (members, []))
        port = ports[pkey]
        if port is not None:
            group[1].append(port)
    subsets: list[Obj] = []
    for members, group_ports in groups.values():
        ready_ones = sorted((addresses[k] for k, ok in members.items() if ok), key=_address_order)
        not_ready = sorted(
            (addresses[k] for k, ok in members.items() if not ok), key=_address_order
        )
        subset: Obj = {}
        if ready_ones:
            subset["addresses"] = ready_ones
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if group_ports:
            subset["ports"] = sorted(group_ports, key=_canonical)
        subsets.append(subset)
    return sorted(subsets, key=_canonical)


def _address_order(address: Obj) -> tuple[int, int, str]:
    ip = ipaddress.ip_address(address["ip"])
    return (ip.version, int(ip), (address.get("targetRef") or {}).get("uid", ""))


def truncate(subsets: list[Obj]) -> bool:
    """Keep at most MAX_CAPACITY addresses, ready ones first, each subset keeping its share
    (upstream ``truncateEndpoints``). True when something was cut."""
    ready = sum(len(s.get("addresses") or []) for s in subsets)
    not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if ready + not_ready <= MAX_CAPACITY:
        return False
    cut_ready = ready > MAX_CAPACITY
    room, total = (MAX_CAPACITY, ready) if cut_ready else (MAX_CAPACITY - ready, not_ready)
    left = room
    field = "addresses" if cut_ready else "notReadyAddresses"
    for subset in subsets:
        members = subset.get(field) or []
        share = min(math.ceil(len(members) / total * room), left) if total else 0
        if cut_ready:
            subset.pop("notReadyAddresses", None)
        if members:
            subset[field] = members[:share]
            if not subset[field]:
                del subset[field]
        left -= share if members else 0
    return True


class EndpointsController(Controller):
    """Keeps each selecting Service's Endpoints object in step with its pods."""

    name = "endpoint"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.cache("", "services")
        self.pods = ctx.cache("", "pods")
        self.endpoints = ctx.cache("", "endpoints")
        self.kind = ctx.kind("", "endpoints")
        self.services.on_event(lambda old, new: self.queue.enqueue(key_of(new or old or {})))
        self.pods.on_event(self._pod_event)
        self.endpoints.on_event(self._endpoints_event)

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        for key in services_selecting(
            self.services.items(obj["metadata"].get("namespace", "")), old, new
        ):
            self.queue.enqueue(key)

    def _endpoints_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None and old is not None:
            self.queue.enqueue(key_of(old))

    def start(self) -> None:
        """Also look at every Endpoints object once: those of deleted services go."""
        for endpoints in self.endpoints.items():
            if ANNOTATION_LEADER not in (endpoints["metadata"].get("annotations") or {}):
                self.queue.enqueue(key_of(endpoints))
        super().start()

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        if api_server_owned(namespace, name):
            return
        service = self.services.get(namespace, name)
        current = self.endpoints.get(namespace, name)
        if service is None:
            if current is not None:
                await self._delete(namespace, name)
            return
        selector = service_selector(service)
        if selector is None:
            return
        pods = selected_pods(self.pods.items(namespace), selector)
        subsets = self._subsets(service, pods)
        labels = _endpoints_labels(service)
        if current is not None and _up_to_date(current, subsets, labels):
            return
        annotations = dict((current or {}).get("metadata", {}).get("annotations") or {})
        _set_annotation(annotations, ANNOTATION_TRIGGER_TIME, trigger_time(service, pods))
        _set_annotation(
            annotations, ANNOTATION_OVER_CAPACITY, "truncated" if truncate(subsets) else ""
        )
        md: Obj = {"name": name, "namespace": namespace, "labels": labels}
        if annotations:
            md["annotations"] = annotations
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": md}
        if subsets:
            body["subsets"] = subsets
        await self._write(current, body)

    async def _write(self, current: Obj | None, body: Obj) -> None:
        """Create ``body``, or replace ``current`` with it (keeping its identity)."""
        md = body["metadata"]
        if current is None:
            await self.ctx.objects.create(self.kind, md["namespace"], body, self.write_options())
            return
        md["resourceVersion"] = current["metadata"]["resourceVersion"]
        for field in ("uid", "creationTimestamp", "finalizers", "ownerReferences"):
            if field in current["metadata"]:
                md[field] = current["metadata"][field]
        await self.ctx.objects.update(
            self.kind, md["namespace"], md["name"], body, self.write_options()
        )

    async def _delete(self, namespace: str, name: str) -> None:
        """Delete the Endpoints of a service that is gone."""
        try:
            await self.ctx.objects.delete(self.kind, namespace, name, DeleteOptions())
        except ApiError as e:
            if e.code != 404:
                raise

    def _subsets(self, service: Obj, pods: list[Obj]) -> list[Obj]:
        spec = service.get("spec") or {}
        publish = bool(spec.get("publishNotReadyAddresses"))
        family = (spec.get("ipFamilies") or ["IPv4"])[0]
        entries: list[tuple[Obj, Obj | None, bool]] = []
        for pod in pods:
            if not should_be_in_endpoints(pod, publish):
                continue
            ip = pod_ip(pod, family)
            if ip is None:
                continue
            address: Obj = {"ip": ip}
            hostname = pod_hostname(pod, service)
            if hostname:
                address["hostname"] = hostname
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                address["nodeName"] = node
            address["targetRef"] = target_ref(pod)
            ready = publish or is_pod_ready(pod)
            service_ports = spec.get("ports") or []
            if not service_ports:
                if spec.get("clusterIP") == "None":
                    entries.append((address, None, ready))
                continue
            for service_port in service_ports:
                number = find_port(pod, service_port)
                if number is not None:
                    entries.append((address, _port(service_port, number), ready))
        return repack(entries)


def _endpoints_labels(service: Obj) -> dict[str, str]:
    """The service's labels plus the managed-by and headless ones."""
    labels = dict(service["metadata"].get("labels") or {})
    labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
    if is_headless(service):
        labels[LABEL_HEADLESS] = ""
    else:
        labels.pop(LABEL_HEADLESS, None)
    return labels


def _up_to_date(current: Obj, subsets: list[Obj], labels: dict[str, str]) -> bool:
    """Whether ``current`` already has these subsets and labels, and the over-capacity
    annotation exactly when the subsets hold too many addresses."""
    addresses = sum(
        len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets
    )
    md = current["metadata"]
    return (
        (current.get("subsets") or []) == subsets
        and (md.get("labels") or {}) == labels
        and (ANNOTATION_OVER_CAPACITY in (md.get("annotations") or {}))
        == (addresses > MAX_CAPACITY)
    )


def _set_annotation(annotations: dict[str, str], key: str, value: str) -> None:
    """Set ``key`` to ``value``, or remove it when ``value`` is empty."""
    if value:
        annotations[key] = value
    else:
        annotations.pop(key, None)
