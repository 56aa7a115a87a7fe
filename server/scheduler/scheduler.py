"""The scheduler loop: assigns unbound pods to nodes.

Pods and nodes are followed through the shared caches into a :class:`ClusterState` kept up
to date incrementally. Each pending pod is scheduled by a worker of a priority queue: the
filter and score pass runs without awaiting, then the chosen node is *assumed* (its
resources count at once) and the bind is awaited -- so many binds are in flight together
(the datastore group-commits them) without two pods ever being placed on the same free
capacity. A pod that fits nowhere gets the ``PodScheduled=False`` condition and a
``FailedScheduling`` event, may preempt lower-priority pods, and is retried with back-off
when the cluster changes (node added or changed, pod deleted or finished).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any, ClassVar

from edgek.status import ApiError
from edgek.timefmt import format_time
from server.controllers.runtime import Controller, ControllerContext, split_key
from server.scheduler.filters import SELECTED_NODE, Listers, PodCycle, fit_message
from server.scheduler.nodeinfo import CPU, MEMORY, PODS, ClusterState, NodeInfo, PodInfo
from server.scheduler.preemption import Candidate, find_candidate
from server.scheduler.queue import SchedulingQueue
from server.scheduler.scoring import score_nodes
from server.storage.binding import bind_pod, set_pod_condition
from server.storage.objectstore import DeleteOptions

SCHEDULER_NAME = "default-scheduler"
NO_NODES = "no nodes available to schedule pods"
#: Upstream back-off of unschedulable pods: 1 s doubling to 10 s; a full retry every 5 min.
INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 10.0
UNSCHEDULABLE_FLUSH = 300.0
#: Adaptive percentageOfNodesToScore (upstream numFeasibleNodesToFind).
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5
_TERMINAL = ("Succeeded", "Failed")


def feasible_nodes_to_find(total: int) -> int:
    """How many feasible nodes to find before scoring (upstream's adaptive percentage)."""
    if total < MIN_FEASIBLE_NODES:
        return total
    percent = max(50 - total // 125, MIN_FEASIBLE_PERCENT)
    return max(total * percent // 100, MIN_FEASIBLE_NODES)


def select_node(
    cycle: PodCycle, start: int = 0
) -> tuple[NodeInfo | None, dict[str, list[str]], int]:
    """Filter (from node index ``start`` on, until enough feasible nodes are found) and
    score: (the chosen node or None, each failed node's reasons, the next start index)."""
    state = cycle.state
    order = state.order
    total = len(order)
    failures: dict[str, list[str]] = {}
    if not total:
        return None, failures, 0
    if cycle.prefilter_message:
        return None, {n.name: [cycle.prefilter_message] for n in order}, start
    nodes = state.nodes
    nominated = (cycle.info.pod.get("status") or {}).get("nominatedNodeName")
    here = nodes.get(nominated) if nominated else None
    if here is not None and here.exists and not cycle.filter(here):
        return here, failures, start
    want = feasible_nodes_to_find(total)
    feasible: list[NodeInfo] = []
    start %= total
    examined = 0
    check = cycle.filter
    plain, tolerant = cycle.plain, cycle.tolerates_unschedulable
    want_cpu, want_mem = cycle.want_cpu, cycle.want_mem
    for node in order[start:] + order[:start]:
        examined += 1
        free = node.free
        if (
            not plain
            or node.hard_taints
            or (node.unschedulable and not tolerant)
            or free.get(PODS, 0) < 1
            or (want_cpu and want_cpu > free.get(CPU, 0))
            or (want_mem and want_mem > free.get(MEMORY, 0))
        ):
            reasons = check(node)
            if reasons:
                failures[node.name] = reasons
                continue
        feasible.append(node)
        if len(feasible) >= want:
            break
    start = (start + examined) % total
    if len(feasible) <= 1:
        return (feasible[0] if feasible else None), failures, start
    scores = score_nodes(cycle, feasible)
    best = max(scores)
    top = [n for n, s in zip(feasible, scores, strict=True) if s == best]
    return random.choice(top), {}, start


def wants_scheduling(pod: Mapping[str, Any]) -> bool:
    """An unbound, live pod for this scheduler without scheduling gates."""
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and spec.get("schedulerName", SCHEDULER_NAME) in ("", SCHEDULER_NAME)
        and not pod["metadata"].get("deletionTimestamp")
        and not spec.get("schedulingGates")
        and (pod.get("status") or {}).get("phase") not in _TERMINAL
    )


def _placement(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of an assigned pod matters to the scheduler."""
    md = pod["metadata"]
    return (pod.get("spec"), md.get("labels"), bool(md.get("deletionTimestamp")))


class Scheduler(Controller):
    """Binds pending pods to nodes (the default scheduler)."""

    name: ClassVar[str] = "scheduler"
    manager: ClassVar[str] = SCHEDULER_NAME
    #: Pods scheduled concurrently: each awaits its bind while the next is placed.
    workers: ClassVar[int] = 128

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.queue: SchedulingQueue = SchedulingQueue(
            self.name, self.reconcile, self._priority, workers=self.workers
        )
        self.pods_kind = ctx.kind("", "pods")
        self.claims_kind = ctx.kind("", "persistentvolumeclaims")
        self.volumes_kind = ctx.kind("", "persistentvolumes")
        self.pods = ctx.cache("", "pods")
        self.nodes = ctx.cache("", "nodes")
        self.namespaces = ctx.cache("", "namespaces")
        self.claims = ctx.cache("", "persistentvolumeclaims")
        self.volumes = ctx.cache("", "persistentvolumes")
        self.classes = ctx.cache("storage.k8s.io", "storageclasses")
        self.state = ClusterState()
        self.listers = Listers(
            namespace_labels=self._namespace_labels,
            claim=self.claims.get,
            volume=lambda name: self.volumes.get("", name),
            volumes=lambda: list(self.volumes.items()),
            storage_class=lambda name: self.classes.get("", name),
            default_class=self._default_class,
        )
        #: Pods that fit nowhere: key -> (failed attempts, loop time of the last attempt).
        self.unschedulable: dict[str, tuple[int, float]] = {}
        #: Preemptors waiting for their victims to go: node -> pods, and pod key -> node.
        self.nominated: dict[str, list[PodInfo]] = {}
        self._nominated_node: dict[str, str] = {}
        self._next_start = 0
        self.pods.on_event(self._pod_event)
        self.nodes.on_event(self._node_event)
        for cache in (self.claims, self.volumes, self.classes):
            cache.on_event(lambda old, new: self._cluster_changed())

    # -- cache events --------------------------------------------------------------

    def _namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        ns = self.namespaces.get("", namespace)
        return ns["metadata"].get("labels") if ns is not None else None

    def _default_class(self) -> dict[str, Any] | None:
        defaults = [
            sc
            for sc in self.classes.items()
            if (sc["metadata"].get("annotations") or {}).get(
                "storageclass.kubernetes.io/is-default-class"
            )
            == "true"
        ]
        return max(
            defaults, key=lambda sc: sc["metadata"].get("creationTimestamp", ""), default=None
        )

    def _priority(self, key: str) -> int:
        ns, name = split_key(key)
        pod = self.pods.get(ns, name)
        return int((pod or {}).get("spec", {}).get("priority") or 0)

    def _pod_event(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        pod = new if new is not None else old
        if pod is None:
            return
        md = pod["metadata"]
        key = f"{md.get('namespace', '')}/{md['name']}"
        if new is None or (new.get("status") or {}).get("phase") in _TERMINAL:
            self._clear_nomination(key)
            self.unschedulable.pop(key, None)
            self.queue.forget(key)
            if self.state.remove_pod(key) is not None:
                self._cluster_changed()
            return
        if new["spec"].get("nodeName"):
            placed = self.state.pod_node.get(key)
            if (
                placed != new["spec"]["nodeName"]
                or key in self.state.assumed
                or old is None
                or _placement(old) != _placement(new)
            ):
                self.state.confirm(new)
                self._clear_nomination(key)
                self.unschedulable.pop(key, None)
                if old is not None and old["spec"].get("nodeName"):
                    self._cluster_changed()
            return
        if key in self.state.assumed:
            return  # our bind is in flight
        if not wants_scheduling(new):
            self.unschedulable.pop(key, None)
            return
        if (
            old is None
            or old.get("spec") != new.get("spec")
            or (old["metadata"].get("labels") != md.get("labels"))
        ):
            self.queue.enqueue(key)

    def _node_event(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        if new is None:
            if old is not None:
                self.state.remove_node(old["metadata"]["name"])
            return
        name = new["metadata"]["name"]
        before = self.state.nodes.get(name)
        facts = _node_facts(before) if before is not None and before.exists else None
        self.state.set_node(new)
        if facts != _node_facts(self.state.nodes[name]):
            self._cluster_changed()

    def _cluster_changed(self) -> None:
        """Something that may make unschedulable pods fit changed: retry them after their
        back-off."""
        if not self.unschedulable:
            return
        now = asyncio.get_running_loop().time()
        for key, (attempts, last) in self.unschedulable.items():
            backoff = min(INITIAL_BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)
            self.queue.enqueue_after(key, last + backoff - now)

    def _clear_nomination(self, key: str) -> None:
        node = self._nominated_node.pop(key, None)
        if node is not None:
            left = [p for p in self.nominated.get(node, ()) if p.key != key]
            if left:
                self.nominated[node] = left
            else:
                self.nominated.pop(node, None)

    # -- scheduling ------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(ns, name)
        if pod is None or not wants_scheduling(pod) or key in self.state.assumed:
            self.unschedulable.pop(key, None)
            return
        info = PodInfo.of(pod)
        cycle = PodCycle(info, self.state, self.listers, self.nominated)
        node, failures = self.schedule(cycle)
        if node is None:
            await self._unschedulable(pod, cycle, failures)
            return
        self.state.add_pod(pod, node.name, assumed=True)
        try:
            await self._bind_volumes(cycle, node)
            await bind_pod(
                self.ctx.objects,
                self.pods_kind,
                ns,
                name,
                node.name,
                uid=info.uid,
                opts=self.write_options(),
            )
        except ApiError as e:
            if key in self.state.assumed:
                self.state.remove_pod(key)
            if e.code in (404, 409):
                return  # gone, or bound meanwhile: the cache brings the news
            raise
        except BaseException:
            if key in self.state.assumed:
                self.state.remove_pod(key)
            raise
        self.unschedulable.pop(key, None)
        self._clear_nomination(key)
        self.record(pod, "Normal", "Scheduled", f"Successfully assigned {key} to {node.name}")

    def schedule(self, cycle: PodCycle) -> tuple[NodeInfo | None, dict[str, list[str]]]:
        """Filter and score: the chosen node, or None and each examined node's reasons."""
        node, failures, self._next_start = select_node(cycle, self._next_start)
        return node, failures

    async def _unschedulable(
        self, pod: dict[str, Any], cycle: PodCycle, failures: dict[str, list[str]]
    ) -> None:
        key = cycle.info.key
        total = len(self.state.order)
        if not total:
            message = NO_NODES
        else:
            message = fit_message(total, failures, cycle.prefilter_message)
            candidate, post = find_candidate(cycle, self.state.existing(), failures)
            if candidate is not None:
                await self._preempt(pod, cycle.info, candidate)
            elif post:
                message += " " + post
        attempts = self.unschedulable.get(key, (0, 0.0))[0] + 1
        self.unschedulable[key] = (attempts, asyncio.get_running_loop().time())
        self.queue.enqueue_after(key, UNSCHEDULABLE_FLUSH)
        self.record(pod, "Warning", "FailedScheduling", message)
        await self._set_condition(pod, message)

    async def _set_condition(self, pod: dict[str, Any], message: str) -> None:
        now = format_time(self.ctx.clock())
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
        }

        async def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["spec"].get("nodeName"):
                return None
            return current if set_pod_condition(current, condition, now) else None

        md = pod["metadata"]
        try:
            await self.ctx.objects.modify(
                self.pods_kind, md["namespace"], md["name"], mutate, self.write_options("status")
            )
        except ApiError as e:
            if e.code != 404:
                raise

    async def _preempt(self, pod: dict[str, Any], info: PodInfo, candidate: Candidate) -> None:
        """Nominate the node for the preemptor, then delete the victims gracefully."""
        node = candidate.node

        async def nominate(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or current["spec"].get("nodeName"):
                return None
            status = current.setdefault("status", {})
            if status.get("nominatedNodeName") == node:
                return None
            status["nominatedNodeName"] = node
            return current

        md = pod["metadata"]
        await self.ctx.objects.modify(
            self.pods_kind, md["namespace"], md["name"], nominate, self.write_options("status")
        )
        self._clear_nomination(info.key)
        self.nominated.setdefault(node, []).append(info)
        self._nominated_node[info.key] = node
        for victim in candidate.victims:
            try:
                await self.ctx.objects.delete(
                    self.pods_kind,
                    victim.namespace,
                    victim.name,
                    DeleteOptions(precondition_uid=victim.uid),
                )
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
                continue
            self.record(
                victim.pod, "Normal", "Preempted", f"Preempted by pod {info.uid} on node {node}"
            )

    async def _bind_volumes(self, cycle: PodCycle, node: NodeInfo) -> None:
        """Before binding: tell provisioners the node (WaitForFirstConsumer claims) and
        reserve existing local volumes for static claims."""
        for claim in cycle.claims.provision:
            md = claim["metadata"]
            if (md.get("annotations") or {}).get(SELECTED_NODE) == node.name:
                continue

            async def select(current: dict[str, Any] | None) -> dict[str, Any] | None:
                if current is None or (current.get("spec") or {}).get("volumeName"):
                    return None
                current["metadata"].setdefault("annotations", {})[SELECTED_NODE] = node.name
                return current

            await self.ctx.objects.modify(
                self.claims_kind, md["namespace"], md["name"], select, self.write_options()
            )
        if cycle.claims.static:
            await self._reserve_static_volumes(cycle, node)

    async def _reserve_static_volumes(self, cycle: PodCycle, node: NodeInfo) -> None:
        """Point the local volumes chosen for the pod's static claims at those claims."""
        for claim, pv in cycle.static_volumes(node) or ():
            cmd = claim["metadata"]
            ref = {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": cmd["namespace"],
                "name": cmd["name"],
                "uid": cmd.get("uid", ""),
            }

            async def reserve(
                current: dict[str, Any] | None, ref: dict[str, Any] = ref
            ) -> dict[str, Any] | None:
                if current is None:
                    return None
                existing = current["spec"].get("claimRef")
                if existing and existing.get("uid") == ref["uid"]:
                    return None
                if existing:
                    raise ApiError(409, "Conflict", "volume taken by another claim")
                current["spec"]["claimRef"] = ref
                annotations = current["metadata"].setdefault("annotations", {})
                annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
                return current

            await self.ctx.objects.modify(
                self.volumes_kind, "", pv["metadata"]["name"], reserve, self.write_options()
            )


def _node_facts(node: NodeInfo) -> tuple[Any, ...]:
    """What of a node can change a pod's fit (heartbeats alone do not)."""
    return (
        node.labels,
        node.allocatable,
        node.unschedulable,
        node.hard_taints,
        node.prefer_taints,
    )
