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
from collections.abc import Mapping
from typing import Any

from edgek import nodematch
from server.scheduler.filters import PodCycle
from server.scheduler.nodeinfo import HOSTNAME, ZONE, NamespaceLabels, NodeInfo, PodInfo

MAX_SCORE = 100
#: maxSkew of upstream's system-default (ScheduleAnyway) spreading constraints.
DEFAULT_HOSTNAME_SKEW = 3
DEFAULT_ZONE_SKEW = 5


def _resource_score(node: NodeInfo, pod_cpu: int, pod_mem: int) -> int:
    """Least-allocated plus balanced allocation over cpu and memory (memoised per pod size
    on the node until its totals change)."""
    size = (pod_cpu, pod_mem)
    score = node.resource_scores.get(size)
    if score is not None:
        return score
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
    score = node.resource_scores[size] = least // 2 + int((1 - abs(f_cpu - f_mem) / 2) * MAX_SCORE)
    return score


def _resource_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float]:
    pod_cpu, pod_mem = cycle.info.non_zero_cpu, cycle.info.non_zero_mem
    return [_resource_score(node, pod_cpu, pod_mem) for node in nodes]


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


def _owner_zone_counts(cycle: PodCycle, owner: str) -> dict[str, int]:
    """Pods of ``owner`` per zone, over every node."""
    counts: dict[str, int] = {}
    for node in cycle.state.order:
        n = node.by_owner.get(owner)
        if n:
            zone = node.labels.get(ZONE)
            if zone is not None:
                counts[zone] = counts.get(zone, 0) + n
    return counts


def _spread_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float] | None:
    """PodTopologySpread scoring (upstream formula): each ScheduleAnyway constraint adds
    ``matching pods in the node's domain * log(domains + 2) + maxSkew - 1``, rounded; fewer
    is better after normalising. A pod without constraints gets upstream's system defaults
    (hostname maxSkew 3, zone maxSkew 5) over the pods of its controller."""
    soft = [c for c in cycle.spread if not c.hard]
    owner = cycle.info.owner_uid
    # (topology key, maxSkew, matching pods per domain; None: the controller's on the node)
    terms: list[tuple[str, int, Mapping[str, int] | None]]
    if soft:
        terms = [(c.key, c.max_skew, c.counts) for c in soft]
        ignored = [not all(c.key in n.labels for c in soft) for n in nodes]
    elif cycle.spread or not owner:
        return None
    else:
        if not any(ZONE in n.labels for n in nodes):
            return _normalize_spread(_default_hostname_raw(nodes, owner))
        terms = [
            (HOSTNAME, DEFAULT_HOSTNAME_SKEW, None),
            (ZONE, DEFAULT_ZONE_SKEW, _owner_zone_counts(cycle, owner)),
        ]
        ignored = [False] * len(nodes)
    scored = [n for n, skip in zip(nodes, ignored, strict=True) if not skip]
    if not scored:
        return None
    weights = [
        math.log(
            (
                len(scored)
                if key == HOSTNAME
                else len({n.labels[key] for n in scored if key in n.labels})
            )
            + 2
        )
        for key, _, _ in terms
    ]
    raw: list[int | None] = []
    for node, skip in zip(nodes, ignored, strict=True):
        if skip:
            raw.append(None)
            continue
        total = 0.0
        for (key, skew, counts), weight in zip(terms, weights, strict=True):
            value = node.labels.get(key)
            if value is not None:
                n = node.by_owner.get(owner, 0) if counts is None else counts.get(value, 0)
                total += n * weight + (skew - 1)
        raw.append(math.floor(total + 0.5))
    return _normalize_spread(raw)


def _default_hostname_raw(nodes: list[NodeInfo], owner: str) -> list[int | None]:
    """Raw spreading scores of the system-default hostname constraint alone (no candidate
    node has a zone): the general formula of :func:`_spread_scores` in one pass."""
    weight = math.log(len(nodes) + 2)
    base = DEFAULT_HOSTNAME_SKEW - 1 + 0.5
    alone = math.floor(base)  # on a node without pods of the owner
    return [
        0
        if HOSTNAME not in n.labels
        else math.floor(placed * weight + base)
        if (placed := n.by_owner.get(owner))
        else alone
        for n in nodes
    ]


def _normalize_spread(raw: list[int | None]) -> list[float]:
    """Fewer matching pods score higher; nodes without the topology keys (None) score 0."""
    present = [s for s in raw if s is not None]
    top, bottom = max(present), min(present)
    if top == 0:
        return [0.0 if s is None else MAX_SCORE for s in raw]
    return [0.0 if s is None else float(MAX_SCORE * (top + bottom - s) // top) for s in raw]


def _pair_affinity(
    info: PodInfo, other: PodInfo, ns_labels: NamespaceLabels
) -> list[tuple[str, float]]:
    """(topology key, weight) of every preferred or required affinity term between the pod
    and a pod ``other`` on a node: its own preferred terms matching ``other``, and
    ``other``'s terms matching it (anti-affinity counts against, a required term 1)."""
    weighted = (
        (info.preferred_affinity, other, 1),
        (info.preferred_anti_affinity, other, -1),
        (other.preferred_affinity, info, 1),
        (other.preferred_anti_affinity, info, -1),
    )
    found: list[tuple[str, float]] = [
        (t.topology_key, sign * t.weight)
        for terms, pod, sign in weighted
        for t in terms
        if t.matches(pod, ns_labels)
    ]
    found += [(t.topology_key, 1) for t in other.required_affinity if t.matches(info, ns_labels)]
    return found


def _affinity_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float] | None:
    """InterPodAffinity preferred terms, both ways, plus existing pods' required affinity."""
    info = cycle.info
    own = bool(info.preferred_affinity or info.preferred_anti_affinity)
    if not own and not cycle.state.affinity_pods:
        return None
    ns_labels = cycle.listers.namespace_labels
    scores: dict[tuple[str, str], float] = {}

    for node in cycle.state.nodes.values():
        others = node.pods.values() if own else node.with_affinity.values()
        for other in others:
            for key, weight in _pair_affinity(info, other, ns_labels):
                if key in node.labels:
                    pair = (key, node.labels[key])
                    scores[pair] = scores.get(pair, 0) + weight
    if not scores:
        return None
    raw = [sum(v for (k, val), v in scores.items() if node.labels.get(k) == val) for node in nodes]
    top, bottom = max(raw), min(raw)
    if top == bottom:
        return [0.0] * len(raw)
    return [MAX_SCORE * (s - bottom) / (top - bottom) for s in raw]


def _common_scores(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float] | None:
    """:func:`score_nodes` for the commonest pods and clusters, computing only the resource
    and hostname-spreading scores, or None when it does not apply: no preferred node or pod
    affinity anywhere, no PreferNoSchedule taint and no zone label on the candidates, no
    spreading constraints of the pod's own (so at most the system-default hostname spreading
    over its controller's pods). Same scores."""
    info = cycle.info
    if (
        cycle.spread
        or info.preferred_affinity
        or info.preferred_anti_affinity
        or cycle.state.affinity_pods
        or _preferred_node_terms(cycle.spec)
    ):
        return None
    pod_cpu, pod_mem, owner = info.non_zero_cpu, info.non_zero_mem, info.owner_uid
    size = (pod_cpu, pod_mem)
    taints = 3 * MAX_SCORE  # TaintToleration: no PreferNoSchedule taint to count
    fixed: list[int] = []
    for node in nodes:
        if not node.plain_scoring:
            return None
        score = node.resource_scores.get(size)
        fixed.append((_resource_score(node, pod_cpu, pod_mem) if score is None else score) + taints)
    if not owner:
        return [float(f) for f in fixed]
    spread = _normalize_spread(_default_hostname_raw(nodes, owner))
    return [f + 2 * s for f, s in zip(fixed, spread, strict=True)]


def score_nodes(cycle: PodCycle, nodes: list[NodeInfo]) -> list[float]:
    """The weighted total score of each node in ``nodes``."""
    common = _common_scores(cycle, nodes)
    if common is not None:
        return common
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
