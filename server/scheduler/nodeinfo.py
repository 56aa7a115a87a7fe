"""The scheduler's view of the cluster: per-pod facts computed once (requests, ports,
affinity terms) and per-node accounting kept up to date incrementally (requested resources,
host ports, pods by owner and with affinity), including pods *assumed* on a node while
their bind is in flight.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgek.quantity import parse_quantity
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object

CPU, MEMORY, PODS, EPHEMERAL = "cpu", "memory", "pods", "ephemeral-storage"
#: Requests assumed for scoring when a container states none (upstream non-zero defaults).
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

_BASIC = frozenset({CPU, MEMORY, EPHEMERAL, PODS})
#: The labels of a namespace by name (None when unknown).
NamespaceLabels = Callable[[str], Mapping[str, str] | None]


def quantity_value(name: str, value: Any) -> int:
    """A resource quantity as an integer: millicores for cpu, else units rounded up."""
    try:
        q = parse_quantity(value)
    except (ValueError, TypeError):
        return 0
    return math.ceil(q * 1000) if name == CPU else math.ceil(q)


def _resources(c: Mapping[str, Any]) -> dict[str, int]:
    requests = (c.get("resources") or {}).get("requests") or {}
    return {k: quantity_value(k, v) for k, v in requests.items()}


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def pod_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """Effective requests of a pod (upstream ``PodRequests``): the containers' sum, or the
    largest init container (plus sidecars started before it) if more, plus the overhead."""
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(total, _resources(c))
    sidecars: dict[str, int] = {}
    init_max: dict[str, int] = {}
    for c in spec.get("initContainers") or ():
        req = _resources(c)
        if c.get("restartPolicy") == "Always":
            _add(total, req)
            _add(sidecars, req)
            continue
        step = dict(sidecars)
        _add(step, req)
        for k, v in step.items():
            init_max[k] = max(init_max.get(k, 0), v)
    for k, v in init_max.items():
        total[k] = max(total.get(k, 0), v)
    _add(total, {k: quantity_value(k, v) for k, v in (spec.get("overhead") or {}).items()})
    return {k: v for k, v in total.items() if v}


def _non_zero(spec: Mapping[str, Any], requests: Mapping[str, int]) -> tuple[int, int]:
    """cpu and memory for scoring: containers without a request count the defaults."""
    cpu = mem = 0
    for c in spec.get("containers") or ():
        req = _resources(c)
        cpu += req.get(CPU) or DEFAULT_MILLI_CPU
        mem += req.get(MEMORY) or DEFAULT_MEMORY
    return max(cpu, requests.get(CPU, 0)), max(mem, requests.get(MEMORY, 0))


@dataclass(frozen=True)
class AffinityTerm:
    """A compiled PodAffinityTerm: which pods it selects and over which topology."""

    topology_key: str
    selector: LabelSelector
    namespaces: frozenset[str]
    namespace_selector: LabelSelector | None
    weight: int = 0

    def matches(self, pod: PodInfo, ns_labels: NamespaceLabels) -> bool:
        """Whether ``pod`` is one of the pods this term selects."""
        if pod.namespace not in self.namespaces and (
            self.namespace_selector is None
            or not self.namespace_selector.matches(ns_labels(pod.namespace))
        ):
            return False
        return self.selector.matches(pod.labels)


def _term_selector(term: dict[str, Any], labels: Mapping[str, str]) -> LabelSelector:
    """A term's label selector, with its ``matchLabelKeys``/``mismatchLabelKeys`` turned into
    In/NotIn requirements on the pod's own label values."""
    extra = []
    for key in term.get("matchLabelKeys") or ():
        if key in labels:
            extra.append({"key": key, "operator": "In", "values": [labels[key]]})
    for key in term.get("mismatchLabelKeys") or ():
        if key in labels:
            extra.append({"key": key, "operator": "NotIn", "values": [labels[key]]})
    if not extra or term.get("labelSelector") is None:
        return label_selector_from_object(term.get("labelSelector"))
    sel = dict(term["labelSelector"])
    sel["matchExpressions"] = list(sel.get("matchExpressions") or ()) + extra
    return label_selector_from_object(sel)


def _affinity_terms(
    namespace: str, labels: Mapping[str, str], terms: Iterable[Any], weighted: bool
) -> list[AffinityTerm]:
    out: list[AffinityTerm] = []
    for raw in terms:
        if not isinstance(raw, dict):
            continue
        weight = int(raw.get("weight") or 0) if weighted else 0
        term = raw.get("podAffinityTerm") if weighted else raw
        if not isinstance(term, dict):
            continue
        try:
            selector = _term_selector(term, labels)
            ns_sel = term.get("namespaceSelector")
            ns_selector = label_selector_from_object(ns_sel) if ns_sel is not None else None
        except SelectorError:
            continue
        names = frozenset(term.get("namespaces") or ())
        if not names and ns_selector is None:
            names = frozenset({namespace})
        out.append(
            AffinityTerm(str(term.get("topologyKey") or ""), selector, names, ns_selector, weight)
        )
    return out


def _reference(pod: dict[str, Any]) -> dict[str, Any]:
    """Just what names a pod (for events about it)."""
    md = pod["metadata"]
    ref = {k: md[k] for k in ("name", "namespace", "uid") if k in md}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": ref}


@dataclass
class PodInfo:
    """What the scheduler needs of a pod, computed once per pod version."""

    pod: dict[str, Any]
    key: str
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    priority: int
    requests: dict[str, int]
    non_zero_cpu: int
    non_zero_mem: int
    host_ports: list[tuple[str, str, int]]
    owner_uid: str
    terminating: bool
    required_affinity: list[AffinityTerm] = field(default_factory=list)
    required_anti_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_affinity: list[AffinityTerm] = field(default_factory=list)
    preferred_anti_affinity: list[AffinityTerm] = field(default_factory=list)

    @property
    def request_order(self) -> list[tuple[str, int]]:
        """Non-zero requests in the order upstream checks them: cpu, memory, ephemeral
        storage, then extended resources by name."""
        first = [(k, self.requests[k]) for k in (CPU, MEMORY, EPHEMERAL) if k in self.requests]
        rest = sorted((k, v) for k, v in self.requests.items() if k not in _BASIC)
        return first + rest

    @property
    def has_affinity(self) -> bool:
        return bool(
            self.required_affinity
            or self.required_anti_affinity
            or self.preferred_affinity
            or self.preferred_anti_affinity
        )

    @classmethod
    def of(cls, pod: dict[str, Any]) -> PodInfo:
        md = pod["metadata"]
        spec = pod.get("spec") or {}
        ns = md.get("namespace", "")
        labels = md.get("labels") or {}
        requests = pod_requests(spec)
        cpu, mem = _non_zero(spec, requests)
        ports: list[tuple[str, str, int]] = []
        containers = list(spec.get("containers") or ())
        containers += [
            c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"
        ]
        for c in containers:
            for p in c.get("ports") or ():
                if p.get("hostPort"):
                    ip = p.get("hostIP") or "0.0.0.0"
                    ports.append((ip, p.get("protocol") or "TCP", int(p["hostPort"])))
        owner = next(
            (r.get("uid", "") for r in md.get("ownerReferences") or () if r.get("controller")),
            "",
        )
        affinity = spec.get("affinity") or {}
        pa = affinity.get("podAffinity") or {}
        paa = affinity.get("podAntiAffinity") or {}
        req_key = "requiredDuringSchedulingIgnoredDuringExecution"
        pref_key = "preferredDuringSchedulingIgnoredDuringExecution"
        return cls(
            pod=pod,
            key=f"{ns}/{md['name']}",
            namespace=ns,
            name=md["name"],
            uid=md.get("uid", ""),
            labels=labels,
            priority=int(spec.get("priority") or 0),
            requests=requests,
            non_zero_cpu=cpu,
            non_zero_mem=mem,
            host_ports=ports,
            owner_uid=owner,
            terminating=bool(md.get("deletionTimestamp")),
            required_affinity=_affinity_terms(ns, labels, pa.get(req_key) or (), False),
            required_anti_affinity=_affinity_terms(ns, labels, paa.get(req_key) or (), False),
            preferred_affinity=_affinity_terms(ns, labels, pa.get(pref_key) or (), True),
            preferred_anti_affinity=_affinity_terms(ns, labels, paa.get(pref_key) or (), True),
        )


def _ready_taint(node: Mapping[str, Any]) -> dict[str, str] | None:
    """The taint node lifecycle puts on a node whose Ready condition is not True."""
    for cond in (node.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return None
            key = NOT_READY_TAINT if cond.get("status") == "False" else UNREACHABLE_TAINT
            return {"key": key, "effect": "NoSchedule"}
    return {"key": NOT_READY_TAINT, "effect": "NoSchedule"}


class NodeInfo:
    """A node and the pods on it (bound or assumed), with running totals."""

    __slots__ = (
        "allocatable",
        "by_owner",
        "cap_cpu",
        "cap_mem",
        "free",
        "hard_taints",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_mem",
        "plain_scoring",
        "pods",
        "prefer_taints",
        "requested",
        "resource_scores",
        "unschedulable",
        "used_ports",
        "with_affinity",
        "with_required_anti_affinity",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: dict[str, Any] = {}
        self.labels: Mapping[str, str] = {}
        self.allocatable: dict[str, int] = {}
        self.cap_cpu = 0  # allocatable millicores
        self.cap_mem = 0  # allocatable memory bytes
        self.unschedulable = False
        #: NoSchedule/NoExecute taints, including the implied not-ready one.
        self.hard_taints: list[dict[str, Any]] = []
        self.prefer_taints: list[dict[str, Any]] = []
        #: neither a PreferNoSchedule taint nor a zone label: scoring's common case
        self.plain_scoring = True
        self.requested: dict[str, int] = {}
        #: allocatable minus requested, per resource ("pods" included)
        self.free: dict[str, int] = {}
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        #: resource score by pod size (non-zero cpu, memory) while the node's totals stay as
        #: they are: between two pods only the node the first went to changes
        self.resource_scores: dict[tuple[int, int], int] = {}
        self.pods: dict[str, PodInfo] = {}
        self.used_ports: dict[tuple[str, int], set[str]] = {}
        self.by_owner: dict[str, int] = {}
        self.with_affinity: dict[str, PodInfo] = {}
        self.with_required_anti_affinity: dict[str, PodInfo] = {}

    @property
    def exists(self) -> bool:
        return bool(self.node)

    def set_node(self, node: dict[str, Any]) -> None:
        self.node = node
        self.labels = (node.get("metadata") or {}).get("labels") or {}
        status = node.get("status") or {}
        alloc = status.get("allocatable") or status.get("capacity") or {}
        self.allocatable = {k: quantity_value(k, v) for k, v in alloc.items()}
        self.cap_cpu = self.allocatable.get(CPU, 0)
        self.cap_mem = self.allocatable.get(MEMORY, 0)
        self.resource_scores = {}
        self._refresh_free()
        spec = node.get("spec") or {}
        self.unschedulable = bool(spec.get("unschedulable"))
        taints = list(spec.get("taints") or ())
        implied = _ready_taint(node)
        if implied is not None and not any(t.get("key") == implied["key"] for t in taints):
            taints.append(implied)
        self.hard_taints = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")]
        self.prefer_taints = [t for t in taints if t.get("effect") == "PreferNoSchedule"]
        self.plain_scoring = not self.prefer_taints and ZONE not in self.labels

    def _refresh_free(self) -> None:
        free = {k: v - self.requested.get(k, 0) for k, v in self.allocatable.items()}
        for k, v in self.requested.items():
            free.setdefault(k, -v)
        free[PODS] = self.allocatable.get(PODS, 0) - len(self.pods)
        self.free = free

    def add_pod(self, info: PodInfo) -> None:
        if info.key in self.pods:
            self.remove_pod(info.key)
        self.pods[info.key] = info
        free = self.free
        for k, v in info.requests.items():
            self.requested[k] = self.requested.get(k, 0) + v
            free[k] = free.get(k, 0) - v
        free[PODS] = free.get(PODS, 0) - 1
        self.non_zero_cpu += info.non_zero_cpu
        self.non_zero_mem += info.non_zero_mem
        self.resource_scores = {}
        for ip, proto, port in info.host_ports:
            self.used_ports.setdefault((proto, port), set()).add(ip)
        if info.owner_uid:
            self.by_owner[info.owner_uid] = self.by_owner.get(info.owner_uid, 0) + 1
        if info.has_affinity:
            self.with_affinity[info.key] = info
        if info.required_anti_affinity:
            self.with_required_anti_affinity[info.key] = info

    def remove_pod(self, key: str) -> PodInfo | None:
        info = self.pods.pop(key, None)
        if info is None:
            return None
        free = self.free
        for k, v in info.requests.items():
            left = self.requested.get(k, 0) - v
            if left:
                self.requested[k] = left
            else:
                self.requested.pop(k, None)
            free[k] = free.get(k, 0) + v
        free[PODS] = free.get(PODS, 0) + 1
        self.non_zero_cpu -= info.non_zero_cpu
        self.non_zero_mem -= info.non_zero_mem
        self.resource_scores = {}
        for ip, proto, port in info.host_ports:
            ips = self.used_ports.get((proto, port))
            if ips is not None:
                ips.discard(ip)
                if not ips:
                    del self.used_ports[(proto, port)]
        if info.owner_uid:
            n = self.by_owner.get(info.owner_uid, 0) - 1
            if n > 0:
                self.by_owner[info.owner_uid] = n
            else:
                self.by_owner.pop(info.owner_uid, None)
        self.with_affinity.pop(key, None)
        self.with_required_anti_affinity.pop(key, None)
        return info

    def ports_conflict(self, ports: list[tuple[str, str, int]]) -> bool:
        """Whether any wanted (ip, protocol, port) collides with one in use (0.0.0.0 is
        every address)."""
        for ip, proto, port in ports:
            used = self.used_ports.get((proto, port))
            if used and (ip == "0.0.0.0" or "0.0.0.0" in used or ip in used):
                return True
        return False

    def clone(self) -> NodeInfo:
        """A copy whose pod set can change independently (for preemption dry runs)."""
        copy_ = NodeInfo(self.name)
        copy_.node = self.node
        copy_.labels = self.labels
        copy_.allocatable = self.allocatable
        copy_.cap_cpu, copy_.cap_mem = self.cap_cpu, self.cap_mem
        copy_.unschedulable = self.unschedulable
        copy_.hard_taints = self.hard_taints
        copy_.prefer_taints = self.prefer_taints
        copy_.plain_scoring = self.plain_scoring
        copy_._refresh_free()
        for info in self.pods.values():
            copy_.add_pod(info)
        return copy_


class ClusterState:
    """All nodes with their pods; where each pod is (bound or assumed)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.order: list[NodeInfo] = []  # existing nodes, in the filter walk order
        self.pod_node: dict[str, str] = {}  # pod key -> node name
        self.assumed: set[str] = set()
        self.anti_affinity_pods = 0  # pods with required anti-affinity, cluster-wide
        self.affinity_pods = 0  # pods with any (anti-)affinity, cluster-wide

    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        return info

    def set_node(self, node: dict[str, Any]) -> None:
        name = node["metadata"]["name"]
        info = self._info(name)
        if not info.exists:
            self.order.append(info)
        info.set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None or not info.exists:
            return
        self.order.remove(info)
        if info.pods:
            info.node = {}  # keep pod accounting until the pods are gone
        else:
            del self.nodes[name]

    def add_pod(self, pod: dict[str, Any], node_name: str, *, assumed: bool = False) -> PodInfo:
        """Place a pod on a node (replacing where it was)."""
        info = PodInfo.of(pod)
        # A placed pod is looked at through its PodInfo fields; keeping the whole version
        # seen at bind time would hold a second copy of every pod beside the pods cache.
        info.pod = _reference(pod)
        self.remove_pod(info.key)
        self._info(node_name).add_pod(info)
        self.pod_node[info.key] = node_name
        if assumed:
            self.assumed.add(info.key)
        self.anti_affinity_pods += bool(info.required_anti_affinity)
        self.affinity_pods += info.has_affinity
        return info

    def remove_pod(self, key: str) -> PodInfo | None:
        node_name = self.pod_node.pop(key, None)
        self.assumed.discard(key)
        if node_name is None:
            return None
        node = self.nodes.get(node_name)
        info = node.remove_pod(key) if node is not None else None
        if info is not None:
            self.anti_affinity_pods -= bool(info.required_anti_affinity)
            self.affinity_pods -= info.has_affinity
        if node is not None and not node.exists and not node.pods:
            del self.nodes[node_name]
        return info

    def confirm(self, pod: dict[str, Any]) -> None:
        """A bound pod arrived from the cache: account it where it is bound."""
        self.add_pod(pod, pod["spec"]["nodeName"])

    def existing(self) -> list[NodeInfo]:
        return list(self.order)
