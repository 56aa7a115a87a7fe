"""Scoring of feasible nodes with upstream's default plugins and weights.

Each plugin gives 0..100 per node (normalised over the candidate nodes where upstream
normalises) and the weighted sum decides: NodeResourcesFit least-allocated (1),
NodeResourcesBalancedAllocation (1), NodeAffinity preferred terms (2), TaintToleration
PreferNoSchedule (3), InterPodAffinity preferred terms (2), PodTopologySpread ScheduleAnyway
constraints (2) -- with replicas of one controller spread over nodes when a pod states no
constraints (upstream's system-default spreading).
"""

from __future__ import annotations

import math
from typing import Any

from server.scheduler import nodematch
from server.scheduler.filters import PodCycle
from server.scheduler.nodeinfo import NodeInfo

MAX_SCORE = 100


def _resource_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float]:
    """Least-allocated plus balanced allocation over cpu and memory, per node."""
    pod_cpu, pod_mem = cycle.info.non_zero_cpu, cycle.info.non_zero_mem
    out: list[float] = []
    for node in nodes:
        cap_cpu, cap_mem = node.cap_cpu, node.cap_mem
        req_cpu = node.non_zero_cpu + pod_cpu
        req_mem = node.non_zero_mem + pod_mem
        if cap_cpu and req_cpu <= cap_cpu:
            least = (cap_cpu - req_cpu) * MAX_SCORE // cap_cpu
            f_cpu = req_cpu / cap_cpu
        else:
            least, f_cpu = 0, 1.0
        if cap_mem and req_mem <= cap_mem:
            least += (cap_mem - req_mem) * MAX_SCORE // cap_mem
            f_mem = req_mem / cap_mem
        else:
            f_mem = 1.0
        out.append(least // 2 + int((1 - abs(f_cpu - f_mem) / 2) * MAX_SCORE))
    return out


def _preferred_node_terms(spec: dict[str, Any]) -> list[tuple[int, nodematch.NodeMatcher]]:
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    out = []
    for term in node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
        weight = int(term.get("weight") or 0)
        if weight:
            matcher = nodematch.compile_node_selector_terms([term.get("preference") or {}])
            out.append((weight, matcher))
    return out


def _normalize(raw: list[float], reverse: bool = False) -> list[float]:
    """Upstream DefaultNormalizeScore: scale so the best is 100 (reversed: the worst)."""
    top = max(raw) if raw else 0
    if top == 0:
        return [MAX_SCORE if reverse else 0 for _ in raw]
    out = [MAX_SCORE * s / top for s in raw]
    return [MAX_SCORE - s for s in out] if reverse else out


def _spread_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float] | None:
    """PodTopologySpread scoring: fewer matching pods in the node's domains is better."""
    soft = [c for c in cycle.spread if not c.hard]
    owner = cycle.info.owner_uid
    if not soft and (cycle.spread or not owner):
        return None
    raw: list[float | None] = []
    if soft:
        for node in nodes:
            if not all(c.key in node.labels for c in soft):
                raw.append(None)
                continue
            total = 0.0
            for c in soft:
                weight = math.log(len(c.counts) + 2)
                total += c.counts.get(node.labels[c.key], 0) * weight + (c.max_skew - 1)
            raw.append(total)
    else:
        raw = [float(n.by_owner.get(owner, 0)) for n in nodes]
    present = [s for s in raw if s is not None]
    if not present:
        return None
    top, bottom = max(present), min(present)
    if top == 0:
        return [0.0 if s is None else MAX_SCORE for s in raw]
    return [0.0 if s is None else MAX_SCORE * (top + bottom - s) / top for s in raw]


def _affinity_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float] | None:
    """InterPodAffinity preferred terms, both ways, plus existing pods' required affinity."""
    info = cycle.info
    own = bool(info.preferred_affinity or info.preferred_anti_affinity)
    if not own and not cycle.state.affinity_pods:
        return None
    ns_labels = cycle.listers.namespace_labels
    scores: dict[tuple[str, str], float] = {}

    def add(key: str, node: NodeInfo, weight: float) -> None:
        if key in node.labels:
            pair = (key, node.labels[key])
            scores[pair] = scores.get(pair, 0) + weight

    for node in cycle.state.nodes.values():
        others = node.pods.values() if own else node.with_affinity.values()
        for other in others:
            for t in info.preferred_affinity:
                if t.matches(other, ns_labels):
                    add(t.topology_key, node, t.weight)
            for t in info.preferred_anti_affinity:
                if t.matches(other, ns_labels):
                    add(t.topology_key, node, -t.weight)
            for t in other.required_affinity:
                if t.matches(info, ns_labels):
                    add(t.topology_key, node, 1)
            for t in other.preferred_affinity:
                if t.matches(info, ns_labels):
                    add(t.topology_key, node, t.weight)
            for t in other.preferred_anti_affinity:
                if t.matches(info, ns_labels):
                    add(t.topology_key, node, -t.weight)
    if not scores:
        return None
    raw = [sum(v for (k, val), v in scores.items() if node.labels.get(k) == val) for node in nodes]
    top, bottom = max(raw), min(raw)
    if top == bottom:
        return [0.0] * len(raw)
    return [MAX_SCORE * (s - bottom) / (top - bottom) for s in raw]


def score_nodes(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float]:
    """The weighted total score of each node in ``nodes``."""
    totals = _resource_scores(cycle, nodes)
    spec = cycle.spec
    preferred = _preferred_node_terms(spec)
    if preferred:
        raw = [float(sum(w for w, m in preferred if m(n.node))) for n in nodes]
        for i, s in enumerate(_normalize(raw)):
            totals[i] += 2 * s
    if any(n.prefer_taints for n in nodes):
        tolerations = [
            t for t in cycle.tolerations if t.get("effect") in (None, "", "PreferNoSchedule")
        ]
        raw = [
            float(sum(1 for t in n.prefer_taints if not nodematch.tolerates(tolerations, t)))
            for n in nodes
        ]
        for i, s in enumerate(_normalize(raw, reverse=True)):
            totals[i] += 3 * s
    else:
        totals = [t + 3 * MAX_SCORE for t in totals]
    for extra in (_affinity_scores(cycle, nodes), _spread_scores(cycle, nodes)):
        if extra is not None:
            for i, s in enumerate(extra):
                totals[i] += 2 * s
    return totals
