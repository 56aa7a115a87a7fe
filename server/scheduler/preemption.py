"""Preemption (upstream DefaultPreemption): when a pod fits nowhere, find the node where
evicting the fewest, least important lower-priority pods makes it fit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from server.scheduler.filters import PodCycle, fit_message, unresolvable
from server.scheduler.nodeinfo import NodeInfo, PodInfo

NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]

    def rank(self) -> tuple[int, int, int]:
        """Smaller is better: highest victim priority, sum of priorities, victim count."""
        prios = [v.priority for v in self.victims]
        return (max(prios), sum(prios), len(prios))


def eligible(cycle: PodCycle, nodes: Mapping[str, NodeInfo]) -> str:
    """Why the pod may not preempt ("" when it may)."""
    spec = cycle.spec
    if spec.get("preemptionPolicy") == "Never":
        return "not eligible due to preemptionPolicy=Never."
    nominated = (cycle.info.pod.get("status") or {}).get("nominatedNodeName")
    node = nodes.get(nominated) if nominated else None
    if node is not None and any(
        p.terminating and p.priority < cycle.info.priority for p in node.pods.values()
    ):
        return "not eligible due to a terminating pod on the nominated node."
    return ""


def _victims_on(cycle: PodCycle, node: NodeInfo) -> tuple[list[PodInfo], list[str]]:
    """The minimal victims on ``node`` (empty, with reasons, when preemption cannot help)."""
    lower = [p for p in node.pods.values() if p.priority < cycle.info.priority]
    if not lower:
        return [], [NO_VICTIMS]
    trial = node.clone()
    for p in lower:
        trial.remove_pod(p.key)
    reasons = cycle.filter(trial)
    if reasons:
        return [], reasons
    # give back the most important pods first while the preemptor still fits
    victims: list[PodInfo] = []
    for p in sorted(lower, key=lambda p: -p.priority):
        trial.add_pod(p)
        if cycle.filter(trial):
            trial.remove_pod(p.key)
            victims.append(p)
    return victims, []


def find_candidate(
    cycle: PodCycle, nodes: list[NodeInfo], failures: Mapping[str, list[str]]
) -> tuple[Candidate | None, str]:
    """The best candidate, or None and the upstream ``preemption: ...`` message."""
    by_name = {n.name: n for n in nodes}
    why = eligible(cycle, by_name)
    if why:
        return None, f"preemption: {why}"
    reasons: dict[str, list[str]] = {}
    candidates: list[Candidate] = []
    for node in nodes:
        failed = failures.get(node.name)
        if failed is None:
            continue  # fits already (not examined): nothing to preempt there
        if unresolvable(failed) or cycle.prefilter_message:
            reasons[node.name] = [NOT_HELPFUL]
            continue
        victims, why_not = _victims_on(cycle, node)
        if victims:
            candidates.append(Candidate(node.name, victims))
        else:
            reasons[node.name] = why_not
    if candidates:
        return min(candidates, key=Candidate.rank), ""
    return None, "preemption: " + fit_message(len(nodes), reasons)
