"""EndpointSlices: every Service with a selector gets EndpointSlices for the pods it selects
(upstream's endpointslice controller).

One endpoint per pod with an address of the slice's family (terminating pods included),
with conditions ready (``publishNotReadyAddresses``, or serving and not terminating),
serving (pod Ready) and terminating, plus targetRef, nodeName, zone (the node's
``topology.kubernetes.io/zone``) and hostname. Endpoints are grouped by their resolved
ports and address type, at most 100 to a slice; an endpoint stays in the slice it is in
while it can, so an update touches few slices. A Service with no endpoints keeps one empty
placeholder slice. Slices are labelled ``kubernetes.io/service-name`` and
``endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`` (plus the
Service's labels) and owned by the Service.

The shared cache may lag this loop's own writes; until it shows them, a Service is retried
rather than reconciled (which could duplicate slices).
"""

from __future__ import annotations

import json
from typing import Any

from edgek.objects import Obj
from edgek.podstate import is_pod_ready
from edgek.status import ApiError
from server.controllers.endpoints import (
    ANNOTATION_TRIGGER_TIME,
    LABEL_HEADLESS,
    api_server_owned,
    find_port,
    is_headless,
    pod_hostname,
    pod_ip,
    selected_pods,
    service_selector,
    services_selecting,
    should_be_in_endpoints,
    target_ref,
    trigger_time,
)
from server.controllers.podutil import owner_reference
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
LABEL_ZONE = "topology.kubernetes.io/zone"
MAX_ENDPOINTS_PER_SLICE = 100
#: How soon a Service is looked at again while the cache lags this loop's writes.
STALE_RETRY = 0.05

_RESERVED_LABELS = (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)

#: One slice to write: (the existing slice or None for a new one, its endpoints, address
#: family, ports).
_Plan = tuple[Obj | None, list[Obj], str, list[Obj]]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _endpoint_key(endpoint: Obj) -> str:
    ref = endpoint.get("targetRef") or {}
    return f"{ref.get('uid', '')}/{','.join(endpoint.get('addresses') or [])}"


def _index_service(slice_: Obj) -> list[str]:
    """Index values: ``namespace/service`` of the slices this loop manages."""
    labels = slice_["metadata"].get("labels") or {}
    service = labels.get(LABEL_SERVICE_NAME)
    if not service or labels.get(LABEL_MANAGED_BY) != CONTROLLER_NAME:
        return []
    return [f"{slice_['metadata'].get('namespace', '')}/{service}"]


def _rv(obj: Obj) -> int:
    return int(obj["metadata"].get("resourceVersion") or 0)


class EndpointSliceController(Controller):
    """Keeps each selecting Service's EndpointSlices in step with its pods."""

    name = "endpointslice"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.services = ctx.cache("", "services")
        self.pods = ctx.cache("", "pods")
        self.nodes = ctx.cache("", "nodes")
        self.slices = ctx.cache("discovery.k8s.io", "endpointslices")
        self.slices.add_index("service", _index_service)
        self.kind = ctx.kind("discovery.k8s.io", "endpointslices")
        # service key -> slice name -> resourceVersion written (None: deleted)
        self._expected: dict[str, dict[str, int | None]] = {}
        self.services.on_event(lambda old, new: self.queue.enqueue(key_of(new or old or {})))
        self.pods.on_event(self._pod_event)
        self.slices.on_event(self._slice_event)

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        namespace = obj["metadata"].get("namespace", "")
        for key in services_selecting(self.services.items(namespace), old, new):
            self.queue.enqueue(key)

    def _slice_event(self, old: Obj | None, new: Obj | None) -> None:
        """A slice changed by someone else (or deleted) sends its Service back to the loop."""
        obj = new or old
        if obj is None:
            return
        for key in _index_service(obj):
            expected = self._expected.get(key, {}).get(obj["metadata"]["name"], -1)
            if new is None and expected is None:
                continue
            if new is not None and expected is not None and _rv(new) <= expected:
                continue
            self.queue.enqueue(key)

    def _cache_lags(self, key: str, namespace: str) -> bool:
        """Whether the cache has yet to show some of this loop's writes for ``key``."""
        expected = self._expected.get(key)
        if not expected:
            return False
        for name, rv in expected.items():
            cached = self.slices.get(namespace, name)
            if (rv is None and cached is not None) or (
                rv is not None and (cached is None or _rv(cached) < rv)
            ):
                return True
        del self._expected[key]
        return False

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        if api_server_owned(namespace, name):
            return
        if self._cache_lags(key, namespace):
            self.queue.enqueue_after(key, STALE_RETRY)
            return
        existing = sorted(self.slices.by_index("service", key), key=lambda s: s["metadata"]["name"])
        service = self.services.get(namespace, name)
        if service is None:
            for slice_ in existing:
                await self._delete(key, slice_)
            return
        selector = service_selector(service)
        if selector is None:
            return
        pods = selected_pods(self.pods.items(namespace), selector)
        families = (service.get("spec") or {}).get("ipFamilies") or ["IPv4"]
        wanted, ports_of = self._wanted_endpoints(service, pods, families)
        meta = self._slice_metadata(service, trigger_time(service, pods))
        plans: list[_Plan] = []
        for (family, pkey), members in sorted(wanted.items()):
            group = [
                s
                for s in existing
                if s.get("addressType") == family and _canonical(s.get("ports") or []) == pkey
            ]
            plans += _pack(group, members, family, ports_of[pkey])
        used = {plan[0]["metadata"]["name"] for plan in plans if plan[0] is not None}
        unused = [s for s in existing if s["metadata"]["name"] not in used]
        if not plans:  # no endpoints at all: one placeholder slice
            plans.append(_placeholder(unused, families[0]))
        for slice_ in unused:
            await self._delete(key, slice_)
        for current, endpoints, family, ports in plans:
            await self._write(key, service, current, endpoints, family, ports, meta)

    def _wanted_endpoints(
        self, service: Obj, pods: list[Obj], families: list[str]
    ) -> tuple[dict[tuple[str, str], dict[str, Obj]], dict[str, list[Obj]]]:
        """The endpoints the slices should hold, by (address family, canonical ports) and
        endpoint key; and the ports of each canonical form."""
        wanted: dict[tuple[str, str], dict[str, Obj]] = {}
        ports_of: dict[str, list[Obj]] = {}
        for family in families:
            for pod in pods:
                endpoint_ports = self._endpoint(service, pod, family)
                if endpoint_ports is None:
                    continue
                endpoint, ports = endpoint_ports
                pkey = _canonical(ports)
                ports_of[pkey] = ports
                wanted.setdefault((family, pkey), {})[_endpoint_key(endpoint)] = endpoint
        return wanted, ports_of

    def _endpoint(self, service: Obj, pod: Obj, family: str) -> tuple[Obj, list[Obj]] | None:
        """The endpoint of ``pod`` in a slice of ``family``, with its resolved ports."""
        spec = service.get("spec") or {}
        if not should_be_in_endpoints(pod, True):
            return None
        ip = pod_ip(pod, family)
        if ip is None:
            return None
        ports: list[Obj] = []
        for service_port in spec.get("ports") or []:
            number = find_port(pod, service_port)
            if number is None:
                continue
            port: Obj = {
                "name": service_port.get("name", ""),
                "port": number,
                "protocol": service_port.get("protocol") or "TCP",
            }
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            ports.append(port)
        serving = is_pod_ready(pod)
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ready = bool(spec.get("publishNotReadyAddresses")) or (serving and not terminating)
        endpoint: Obj = {
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        }
        hostname = pod_hostname(pod, service)
        if hostname:
            endpoint["hostname"] = hostname
        endpoint["targetRef"] = target_ref(pod)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            endpoint["nodeName"] = node_name
            node = self.nodes.get("", node_name)
            zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(LABEL_ZONE)
            if zone:
                endpoint["zone"] = zone
        return endpoint, ports

    def _slice_metadata(self, service: Obj, when: str) -> Obj:
        """Labels, annotations and owner every slice of ``service`` carries."""
        md = service["metadata"]
        labels = {k: v for k, v in (md.get("labels") or {}).items() if k not in _RESERVED_LABELS}
        if is_headless(service):
            labels[LABEL_HEADLESS] = ""
        labels[LABEL_SERVICE_NAME] = md["name"]
        labels[LABEL_MANAGED_BY] = CONTROLLER_NAME
        return {
            "labels": labels,
            "annotations": {ANNOTATION_TRIGGER_TIME: when} if when else {},
            "ownerReferences": [owner_reference(service, "v1", "Service")],
        }

    async def _delete(self, key: str, slice_: Obj) -> None:
        md = slice_["metadata"]
        try:
            await self.ctx.objects.delete(
                self.kind, md.get("namespace", ""), md["name"], DeleteOptions()
            )
        except ApiError as e:
            if e.code != 404:
                raise
        self._expected.setdefault(key, {})[md["name"]] = None

    async def _write(
        self,
        key: str,
        service: Obj,
        current: Obj | None,
        endpoints: list[Obj],
        family: str,
        ports: list[Obj],
        meta: Obj,
    ) -> None:
        """Create or update one slice, unless it already holds exactly this."""
        namespace = service["metadata"].get("namespace", "")
        endpoints = sorted(endpoints, key=_endpoint_key)
        if current is not None:
            cmd = current["metadata"]
            unchanged = (
                (current.get("endpoints") or []) == endpoints
                and (current.get("ports") or []) == ports
                and current.get("addressType") == family
                and (cmd.get("labels") or {}) == meta["labels"]
                and cmd.get("ownerReferences") == meta["ownerReferences"]
            )
            if unchanged:
                return
        annotations = dict(((current or {}).get("metadata") or {}).get("annotations") or {})
        annotations.pop(ANNOTATION_TRIGGER_TIME, None)
        annotations.update(meta["annotations"])
        md: Obj = {
            "namespace": namespace,
            "labels": meta["labels"],
            "ownerReferences": meta["ownerReferences"],
        }
        if annotations:
            md["annotations"] = annotations
        body: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": md,
            "addressType": family,
            "endpoints": endpoints,
            "ports": ports,
        }
        if current is None:
            md["generateName"] = f"{service['metadata']['name']}-"
            created = await self.ctx.objects.create(
                self.kind, namespace, body, self.write_options()
            )
            self._expected.setdefault(key, {})[created["metadata"]["name"]] = _rv(created)
            return
        cmd = current["metadata"]
        for field in ("name", "uid", "creationTimestamp", "resourceVersion", "finalizers"):
            if field in cmd:
                md[field] = cmd[field]
        updated, _ = await self.ctx.objects.update(
            self.kind, namespace, cmd["name"], body, self.write_options()
        )
        self._expected.setdefault(key, {})[cmd["name"]] = _rv(updated)


def _pack(
    slices: list[Obj], endpoints: dict[str, Obj], family: str, ports: list[Obj]
) -> list[_Plan]:
    """Distribute ``endpoints`` over existing ``slices`` of one (family, ports) group and new
    ones: each endpoint stays in the slice already holding it, the rest fill free room,
    then new slices of at most MAX_ENDPOINTS_PER_SLICE. Slices left empty are dropped."""
    remaining = dict(endpoints)
    plans: list[tuple[Obj | None, list[Obj], str, list[Obj]]] = []
    for slice_ in slices:
        kept: list[Obj] = []
        for endpoint in slice_.get("endpoints") or []:
            ekey = _endpoint_key(endpoint)
            if ekey in remaining and len(kept) < MAX_ENDPOINTS_PER_SLICE:
                kept.append(remaining.pop(ekey))
        plans.append((slice_, kept, family, ports))
    leftover = [remaining[k] for k in sorted(remaining)]
    for _, kept, _, _ in plans:
        room = MAX_ENDPOINTS_PER_SLICE - len(kept)
        if room > 0 and leftover:
            kept += leftover[:room]
            leftover = leftover[room:]
    while leftover:
        plans.append((None, leftover[:MAX_ENDPOINTS_PER_SLICE], family, ports))
        leftover = leftover[MAX_ENDPOINTS_PER_SLICE:]
    return [plan for plan in plans if plan[1]]


def _placeholder(unused: list[Obj], family: str) -> _Plan:
    """The plan of the one empty slice a service without endpoints keeps (reusing an empty
    slice of ``family`` from ``unused``, which it then leaves)."""
    placeholder = next(
        (s for s in unused if s.get("addressType") == family and not s.get("endpoints")),
        None,
    )
    if placeholder is not None:
        unused.remove(placeholder)
    return (placeholder, [], family, [])
