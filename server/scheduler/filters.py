"""Filters: whether a pod fits a node, with upstream kube-scheduler's reasons.

A :class:`PodCycle` holds what is computed once per scheduling attempt (the compiled node
selector, topology-spread and inter-pod-affinity counts, volume facts) and runs the filters
on one node in the upstream plugin order: NodeUnschedulable, TaintToleration, NodeAffinity,
NodePorts, NodeResourcesFit, VolumeBinding, PodTopologySpread, InterPodAffinity. The first
failing filter decides the node's reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgek import nodematch
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from server.scheduler.nodeinfo import (
    CPU,
    MEMORY,
    PODS,
    UNSCHEDULABLE_TAINT,
    ClusterState,
    NamespaceLabels,
    NodeInfo,
    PodInfo,
    quantity_value,
)

NODE_UNSCHEDULABLE = "node(s) were unschedulable"
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"
VOLUME_NODE_CONFLICT = "node(s) had volume node affinity conflict"
VOLUME_NO_MATCH = "node(s) didn't find available persistent volumes to bind"
VOLUME_PV_MISSING = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
SPREAD_MISSING_LABEL = (
    "node(s) didn't match pod topology spread constraints (missing required label)"
)
SPREAD_SKEW = "node(s) didn't match pod topology spread constraints"
AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
#: Reasons preemption cannot fix (upstream UnschedulableAndUnresolvable statuses).
_UNRESOLVABLE = frozenset(
    {
        NODE_UNSCHEDULABLE,
        NODE_AFFINITY,
        VOLUME_NODE_CONFLICT,
        VOLUME_NO_MATCH,
        VOLUME_PV_MISSING,
        SPREAD_MISSING_LABEL,
        AFFINITY,
    }
)
_HARD_EFFECTS = ("NoSchedule", "NoExecute")
SELECTED_NODE = "volume.kubernetes.io/selected-node"
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def taint_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def unresolvable(reasons: list[str]) -> bool:
    """Whether evicting pods cannot make a node with these reasons fit."""
    return any(r in _UNRESOLVABLE or r.startswith("node(s) had untolerated taint") for r in reasons)


@dataclass
class SpreadConstraint:
    """A compiled topologySpreadConstraint and its counts of matching pods per domain."""

    max_skew: int
    key: str
    hard: bool
    selector: LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool
    self_match: int
    counts: dict[str, int]


@dataclass
class VolumeClaims:
    """The pod's claims as the VolumeBinding filter sees them."""

    bound_pv_affinity: list[nodematch.NodeMatcher]
    missing_pv: bool
    #: unbound WaitForFirstConsumer claims provisioned dynamically (get the selected node)
    provision: list[dict[str, Any]]
    #: unbound WaitForFirstConsumer claims that need an existing PV: (claim, class name)
    static: list[tuple[dict[str, Any], str]]

    @property
    def empty(self) -> bool:
        return not (self.bound_pv_affinity or self.missing_pv or self.provision or self.static)


class Listers:
    """Read access to the other kinds the filters consult (the scheduler's caches)."""

    def __init__(
        self,
        namespace_labels: NamespaceLabels,
        claim: Callable[[str, str], dict[str, Any] | None],
        volume: Callable[[str], dict[str, Any] | None],
        volumes: Callable[[], list[dict[str, Any]]],
        storage_class: Callable[[str], dict[str, Any] | None],
        default_class: Callable[[], dict[str, Any] | None],
    ) -> None:
        self.namespace_labels = namespace_labels
        self.claim = claim
        self.volume = volume
        self.volumes = volumes
        self.storage_class = storage_class
        self.default_class = default_class


def _quantity(value: Any) -> int:
    return quantity_value("storage", value)


def pv_matches_claim(pv: Mapping[str, Any], claim: Mapping[str, Any], class_name: str) -> bool:
    """Whether an unbound PV can satisfy an unbound claim (class, size, modes, claimRef)."""
    spec = pv.get("spec") or {}
    if (pv.get("status") or {}).get("phase") in ("Bound", "Released", "Failed"):
        return False
    if pv.get("metadata", {}).get("deletionTimestamp"):
        return False
    ref = spec.get("claimRef")
    cmd = claim["metadata"]
    if ref and (ref.get("name"), ref.get("namespace")) != (cmd["name"], cmd.get("namespace")):
        return False
    if (spec.get("storageClassName") or "") != class_name:
        return False
    cspec = claim.get("spec") or {}
    want = _quantity(((cspec.get("resources") or {}).get("requests") or {}).get("storage", 0))
    if _quantity((spec.get("capacity") or {}).get("storage", 0)) < want:
        return False
    modes = set(spec.get("accessModes") or ())
    return all(m in modes for m in cspec.get("accessModes") or ())


def pv_node_matcher(pv: Mapping[str, Any]) -> nodematch.NodeMatcher | None:
    required = (((pv.get("spec") or {}).get("nodeAffinity") or {}).get("required")) or None
    if required is None:
        return None
    return nodematch.compile_node_selector_terms(required.get("nodeSelectorTerms"))


class PodCycle:
    """One scheduling attempt of one pod: pre-computed state plus the filters."""

    def __init__(
        self,
        info: PodInfo,
        state: ClusterState,
        listers: Listers,
        nominated: Mapping[str, list[PodInfo]] | None = None,
    ) -> None:
        self.info = info
        self.state = state
        self.listers = listers
        self.nominated = nominated or {}
        spec = info.pod.get("spec") or {}
        self.spec = spec
        self.tolerations: list[dict[str, Any]] = list(spec.get("tolerations") or ())
        self.tolerates_unschedulable = nodematch.tolerates(
            self.tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
        )
        has_selector = bool(spec.get("nodeSelector")) or bool(
            ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
                "requiredDuringSchedulingIgnoredDuringExecution"
            )
        )
        self.matcher = nodematch.compile_pod_node_matcher(info.pod) if has_selector else None
        #: Why no node can fit, found before filtering (upstream PreFilter), or "".
        self.prefilter_message = ""
        self.claims = self._claims()
        self.spread = self._spread()
        self.host_ports = info.host_ports
        self.request_order = info.request_order
        self.want_cpu = info.requests.get(CPU, 0)
        self.want_mem = info.requests.get(MEMORY, 0)
        self.want_other = [(n, v) for n, v in self.request_order if n not in (CPU, MEMORY)]
        self.extra_filters = bool(
            not self.claims.empty
            or self.spread
            or info.required_affinity
            or info.required_anti_affinity
            or state.anti_affinity_pods
        )
        #: Only taints, unschedulable and cpu/memory/pod count can rule a node out: the
        #: filter walk may test those inline and call :meth:`filter` for the failures only.
        self.plain = (
            self.matcher is None
            and not self.host_ports
            and not self.nominated
            and not self.want_other
            and not self.extra_filters
        )
        self._affinity_ready = False
        self.affinity_counts: dict[tuple[str, str], int] = {}
        self.anti_counts: dict[tuple[str, str], int] = {}
        self.existing_anti: dict[tuple[str, str], int] = {}

    # -- pre-filter --------------------------------------------------------------

    def _claims(self) -> VolumeClaims:
        out = VolumeClaims([], False, [], [])
        ns = self.info.namespace
        for vol in self.spec.get("volumes") or ():
            source = vol.get("persistentVolumeClaim")
            if not source:
                continue
            name = source.get("claimName", "")
            claim = self.listers.claim(ns, name)
            if claim is None:
                self.prefilter_message = f'persistentvolumeclaim "{name}" not found'
                continue
            if claim["metadata"].get("deletionTimestamp"):
                self.prefilter_message = f'persistentvolumeclaim "{name}" is being deleted'
                continue
            cspec = claim.get("spec") or {}
            if cspec.get("volumeName"):
                pv = self.listers.volume(cspec["volumeName"])
                if pv is None:
                    out.missing_pv = True
                    continue
                matcher = pv_node_matcher(pv)
                if matcher is not None:
                    out.bound_pv_affinity.append(matcher)
                continue
            class_name = cspec.get("storageClassName")
            sc = (
                self.listers.storage_class(class_name)
                if class_name
                else self.listers.default_class()
            )
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                self.prefilter_message = "pod has unbound immediate PersistentVolumeClaims"
                continue
            if sc.get("provisioner") == NO_PROVISIONER:
                out.static.append((claim, sc["metadata"]["name"]))
            else:
                out.provision.append(claim)
        return out

    def _spread(self) -> list[SpreadConstraint]:
        out: list[SpreadConstraint] = []
        labels = self.info.labels
        for raw in self.spec.get("topologySpreadConstraints") or ():
            sel = raw.get("labelSelector")
            try:
                if sel is not None and raw.get("matchLabelKeys"):
                    sel = dict(sel)
                    sel["matchExpressions"] = list(sel.get("matchExpressions") or ()) + [
                        {"key": k, "operator": "In", "values": [labels[k]]}
                        for k in raw["matchLabelKeys"]
                        if k in labels
                    ]
                selector = label_selector_from_object(sel)
            except SelectorError:
                continue
            out.append(
                SpreadConstraint(
                    max_skew=int(raw.get("maxSkew") or 1),
                    key=str(raw.get("topologyKey") or ""),
                    hard=raw.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule",
                    selector=selector,
                    min_domains=int(raw.get("minDomains") or 1),
                    honor_affinity=raw.get("nodeAffinityPolicy", "Honor") == "Honor",
                    honor_taints=raw.get("nodeTaintsPolicy", "Ignore") == "Honor",
                    self_match=int(selector.matches(labels)),
                    counts={},
                )
            )
        if out:
            self._count_spread(out)
        return out

    def _count_spread(self, constraints: list[SpreadConstraint]) -> None:
        keys = [c.key for c in constraints]
        ns = self.info.namespace
        for node in self.state.existing():
            if not all(k in node.labels for k in keys):
                continue
            for c in constraints:
                if c.honor_affinity and self.matcher is not None and not self.matcher(node.node):
                    continue
                if c.honor_taints and self._untolerated(node) is not None:
                    continue
                n = sum(
                    1
                    for p in node.pods.values()
                    if p.namespace == ns and not p.terminating and c.selector.matches(p.labels)
                )
                domain = node.labels[c.key]
                c.counts[domain] = c.counts.get(domain, 0) + n

    def _prepare_affinity(self) -> None:
        """Counts for inter-pod (anti-)affinity over all placed pods (upstream PreFilter)."""
        self._affinity_ready = True
        own = bool(self.info.required_affinity or self.info.required_anti_affinity)
        if own:
            nodes = list(self.state.nodes.values())
        else:
            nodes = [n for n in self.state.nodes.values() if n.with_required_anti_affinity]
        for node in nodes:
            self._count_existing_anti(node)
            if own:
                self._count_own_terms(node)

    def _count_existing_anti(self, node: NodeInfo) -> None:
        """Count the required anti-affinity terms of the node's pods that match the pod."""
        info, ns_labels = self.info, self.listers.namespace_labels
        for other in node.with_required_anti_affinity.values():
            for term in other.required_anti_affinity:
                if term.topology_key in node.labels and term.matches(info, ns_labels):
                    pair = (term.topology_key, node.labels[term.topology_key])
                    self.existing_anti[pair] = self.existing_anti.get(pair, 0) + 1

    def _count_own_terms(self, node: NodeInfo) -> None:
        """Count the node's pods that match the pod's required (anti-)affinity terms."""
        info, ns_labels = self.info, self.listers.namespace_labels
        for other in node.pods.values():
            if info.required_affinity and all(
                t.matches(other, ns_labels) for t in info.required_affinity
            ):
                for t in info.required_affinity:
                    if t.topology_key in node.labels:
                        pair = (t.topology_key, node.labels[t.topology_key])
                        self.affinity_counts[pair] = self.affinity_counts.get(pair, 0) + 1
            for t in info.required_anti_affinity:
                if t.topology_key in node.labels and t.matches(other, ns_labels):
                    pair = (t.topology_key, node.labels[t.topology_key])
                    self.anti_counts[pair] = self.anti_counts.get(pair, 0) + 1

    # -- filters ------------------------------------------------------------------

    def _untolerated(self, node: NodeInfo) -> dict[str, Any] | None:
        if not node.hard_taints:
            return None
        if not self.tolerations:
            return node.hard_taints[0]
        for taint in node.hard_taints:
            if not nodematch.tolerates(self.tolerations, taint):
                return taint
        return None

    def filter(self, node: NodeInfo, *, nominated: bool = True) -> list[str]:
        """Reasons the pod does not fit ``node`` (empty when it fits)."""
        if node.unschedulable and not self.tolerates_unschedulable:
            return [NODE_UNSCHEDULABLE]
        if node.hard_taints:
            taint = self._untolerated(node)
            if taint is not None:
                return [taint_reason(taint)]
        if self.matcher is not None and not self.matcher(node.node):
            return [NODE_AFFINITY]
        if self.host_ports and node.ports_conflict(self.host_ports):
            return [NODE_PORTS]
        free = node.free
        if nominated and self.nominated and node.name in self.nominated:
            reasons = self.fit_resources(node, self._nominated_requests(node))
            if reasons:
                return reasons
        elif (
            free.get(PODS, 0) < 1
            or (self.want_cpu and self.want_cpu > free.get(CPU, 0))
            or (self.want_mem and self.want_mem > free.get(MEMORY, 0))
            or (self.want_other and any(want > free.get(n, 0) for n, want in self.want_other))
        ):
            return self.fit_resources(node)
        if self.extra_filters:
            return self._extra_filters(node)
        return []

    def _extra_filters(self, node: NodeInfo) -> list[str]:
        """VolumeBinding, PodTopologySpread and InterPodAffinity."""
        if not self.claims.empty:
            why = self._volumes(node)
            if why:
                return [why]
        if self.spread:
            why = self._spread_filter(node)
            if why:
                return [why]
        info = self.info
        if info.required_affinity or info.required_anti_affinity or self.state.anti_affinity_pods:
            why = self._affinity_filter(node)
            if why:
                return [why]
        return []

    def _nominated_requests(self, node: NodeInfo) -> tuple[dict[str, int], int] | None:
        """Requests of pods nominated to this node that are at least as important."""
        others = [
            p
            for p in self.nominated.get(node.name, ())
            if p.priority >= self.info.priority and p.key != self.info.key
        ]
        if not others:
            return None
        total: dict[str, int] = {}
        for p in others:
            for k, v in p.requests.items():
                total[k] = total.get(k, 0) + v
        return total, len(others)

    def fit_resources(
        self, node: NodeInfo, extra: tuple[dict[str, int], int] | None = None
    ) -> list[str]:
        """NodeResourcesFit: pod count, then cpu, memory, ephemeral storage, extended."""
        reasons: list[str] = []
        free = node.free
        extra_req, extra_pods = extra if extra is not None else ({}, 0)
        if free.get(PODS, 0) - extra_pods < 1:
            reasons.append(TOO_MANY_PODS)
        for name, want in self.request_order:
            if want > free.get(name, 0) - extra_req.get(name, 0):
                reasons.append(f"Insufficient {name}")
        return reasons

    def _volumes(self, node: NodeInfo) -> str:
        claims = self.claims
        if claims.missing_pv:
            return VOLUME_PV_MISSING
        if any(not m(node.node) for m in claims.bound_pv_affinity):
            return VOLUME_NODE_CONFLICT
        if claims.static and self.static_volumes(node) is None:
            return VOLUME_NO_MATCH
        return ""

    def static_volumes(self, node: NodeInfo) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
        """A distinct Available PV on ``node`` for each static WaitForFirstConsumer claim:
        [(claim, pv)], or None when some claim has none."""
        chosen: list[tuple[dict[str, Any], dict[str, Any]]] = []
        taken: set[str] = set()
        volumes = self.listers.volumes()
        for claim, class_name in self.claims.static:
            best: dict[str, Any] | None = None
            for pv in volumes:
                name = pv["metadata"]["name"]
                if name in taken or not pv_matches_claim(pv, claim, class_name):
                    continue
                matcher = pv_node_matcher(pv)
                if matcher is not None and not matcher(node.node):
                    continue
                size = _quantity((pv.get("spec") or {}).get("capacity", {}).get("storage", 0))
                if best is None or size < _quantity(best["spec"]["capacity"]["storage"]):
                    best = pv
            if best is None:
                return None
            taken.add(best["metadata"]["name"])
            chosen.append((claim, best))
        return chosen

    def _spread_filter(self, node: NodeInfo) -> str:
        for c in self.spread:
            if not c.hard:
                continue
            if c.key not in node.labels:
                return SPREAD_MISSING_LABEL
        for c in self.spread:
            if not c.hard:
                continue
            counts = c.counts
            minimum = min(counts.values()) if counts else 0
            if len(counts) < c.min_domains:
                minimum = 0
            here = counts.get(node.labels[c.key], 0)
            if here + c.self_match - minimum > c.max_skew:
                return SPREAD_SKEW
        return ""

    def _affinity_filter(self, node: NodeInfo) -> str:
        if not self._affinity_ready:
            self._prepare_affinity()
        info, labels = self.info, node.labels
        if info.required_affinity and not self._affinity_met(labels):
            return AFFINITY
        for t in info.required_anti_affinity:
            if t.topology_key in labels and self.anti_counts.get(
                (t.topology_key, labels[t.topology_key]), 0
            ):
                return ANTI_AFFINITY
        for (key, value), n in self.existing_anti.items():
            if n > 0 and labels.get(key) == value:
                return EXISTING_ANTI_AFFINITY
        return ""

    def _affinity_met(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with ``labels`` meets the pod's required affinity: every term's
        topology has a matching pod, or (the first pod of a group) no pod matches anywhere
        and the pod matches its own terms."""
        info = self.info
        exist = True
        for t in info.required_affinity:
            if t.topology_key not in labels:
                return False
            if self.affinity_counts.get((t.topology_key, labels[t.topology_key]), 0) <= 0:
                exist = False
        return exist or (
            not self.affinity_counts
            and all(t.matches(info, self.listers.namespace_labels) for t in info.required_affinity)
        )


def fit_message(total: int, reasons_by_node: Mapping[str, list[str]], prefilter: str = "") -> str:
    """The upstream FitError text: ``0/N nodes are available: <counts>.``"""
    msg = f"0/{total} nodes are available:"
    if prefilter:
        return f"{msg} {prefilter}."
    histogram: dict[str, int] = {}
    for reasons in reasons_by_node.values():
        for r in reasons:
            histogram[r] = histogram.get(r, 0) + 1
    parts = sorted(f"{n} {r}" for r, n in histogram.items())
    if parts:
        msg += f" {', '.join(parts)}."
    return msg
