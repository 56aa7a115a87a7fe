"""Node lifecycle: nodes that stop heartbeating go Unknown, and node conditions become
taints (upstream's node lifecycle controller, taint-based eviction mode).

Heartbeats are the node's Lease in ``kube-node-lease`` (``spec.renewTime``) and its Ready
condition's ``lastHeartbeatTime``. As upstream, their age is measured on this controller's
clock from when a change was *observed* (so clock skew between node and server does not
matter, and a restarted server gives every node a fresh grace period). A node with no
heartbeat for ``--node-monitor-grace-period`` gets Ready, MemoryPressure, DiskPressure and
PIDPressure set to Unknown ("Kubelet stopped posting node status."); the kubelet (or
``edgek sim``) posting again is what makes it Ready, never this loop.

Taints, each with ``timeAdded``: NoSchedule from conditions (``not-ready`` for Ready False,
``unreachable`` for Unknown, the pressure and network-unavailable taints) and from
``spec.unschedulable``; NoExecute ``not-ready``/``unreachable`` for Ready False/Unknown,
removed when Ready is True again. When no node at all is Ready (upstream's full disruption:
most likely the control plane's own network is at fault) NoExecute taints are withheld, so
nothing is evicted. Pods on a node that is not Ready are marked not Ready.

Every node is re-checked every ``--node-monitor-period``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.cache import index_node_name
from server.controllers.runtime import Controller, ControllerContext

log = logging.getLogger("edgek.controllers.nodelifecycle")

LEASE_NAMESPACE = "kube-node-lease"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
#: Nodes with this label do not count when deciding whether the whole cluster is down.
LABEL_EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"

#: condition type -> status -> the NoSchedule taint it means
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
NO_SCHEDULE_KEYS = frozenset(
    [TAINT_UNSCHEDULABLE, *(key for m in CONDITION_TAINTS.values() for key in m.values())]
)
NO_EXECUTE_KEYS = frozenset([TAINT_NOT_READY, TAINT_UNREACHABLE])
#: Conditions set to Unknown when the kubelet goes quiet (not NetworkUnavailable, which the
#: network plugin owns).
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")


@dataclass
class _Health:
    """What was last observed of a node's heartbeats, and when (controller clock)."""

    probe: datetime
    heartbeat: str | None
    renew: datetime | None = None


def condition(obj: Obj, type_: str) -> Obj | None:
    """The status condition of ``type_``, if present."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def _ready_status(node: Obj) -> str | None:
    ready = condition(node, "Ready")
    return None if ready is None else ready.get("status")


def _managed(taint: Obj) -> bool:
    effect, key = taint.get("effect"), taint.get("key")
    return (effect == "NoSchedule" and key in NO_SCHEDULE_KEYS) or (
        effect == "NoExecute" and key in NO_EXECUTE_KEYS
    )


class NodeLifecycleController(Controller):
    """Marks silent nodes Unknown, taints nodes by condition, marks their pods not ready."""

    name = "nodelifecycle"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.cache("", "nodes")
        self.leases = ctx.cache("coordination.k8s.io", "leases")
        self.pods = ctx.cache("", "pods")
        self.pods.add_index("node", index_node_name)
        self.node_kind = ctx.kind("", "nodes")
        self.pod_kind = ctx.kind("", "pods")
        self._health: dict[str, _Health] = {}
        self._known: set[str] = set()
        # full-disruption bookkeeping: the counted nodes, and those of them that are Ready
        self._counted: set[str] = set()
        self._ready: set[str] = set()
        self._all_down = False
        self.nodes.on_event(self._node_event)
        self.leases.on_event(self._lease_event)
        self.pods.on_event(self._pod_event)

    # -- event handlers ----------------------------------------------------------

    def _node_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is None:
            return
        name = obj["metadata"]["name"]
        self._counted.discard(name)
        self._ready.discard(name)
        if new is not None and LABEL_EXCLUDE_DISRUPTION not in (
            new["metadata"].get("labels") or {}
        ):
            self._counted.add(name)
            if _ready_status(new) == "True":
                self._ready.add(name)
        all_down = bool(self._counted) and not self._ready
        if all_down != self._all_down:
            self._all_down = all_down
            log.warning(
                "no node is Ready: withholding NoExecute taints"
                if all_down
                else "a node is Ready again: NoExecute taints resume"
            )
            for node in self.nodes.items():
                self.queue.enqueue(node["metadata"]["name"])
        self.queue.enqueue(name)

    def _lease_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None and obj["metadata"].get("namespace") == LEASE_NAMESPACE:
            self.queue.enqueue(obj["metadata"]["name"])

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None or _ready_status(new) != "True":
            return
        node_name: str = (new.get("spec") or {}).get("nodeName") or ""
        node = self.nodes.get("", node_name) if node_name else None
        if node is not None and _ready_status(node) not in (None, "True"):
            self.queue.enqueue(node_name)

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None:
            self._health.pop(key, None)
            self._known.discard(key)
            return
        self.queue.enqueue_after(key, self.ctx.config.node_monitor_period)
        if key not in self._known:
            self._known.add(key)
            self.record(
                node,
                "Normal",
                "RegisteredNode",
                f"Node {key} event: Registered Node {key} in Controller",
            )
        now = self.ctx.clock()
        health = self._observe(node, now)
        grace = timedelta(seconds=self.ctx.config.node_monitor_grace_period)
        if now > health.probe + grace:
            node = await self._mark_unknown(node, health, now)
        node = await self._sync_taints(node, now)
        if _ready_status(node) not in (None, "True"):
            await self._mark_pods_not_ready(key, now)

    def _observe(self, node: Obj, now: datetime) -> _Health:
        """Update the probe time from the node's Ready heartbeat and its Lease."""
        name = node["metadata"]["name"]
        ready = condition(node, "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready is not None else None
        health = self._health.get(name)
        if health is None:
            created = node["metadata"].get("creationTimestamp")
            # a node that never posted status counts from its creation, as upstream
            start = parse_time(created) if ready is None and created else now
            health = self._health[name] = _Health(probe=start, heartbeat=heartbeat)
        elif heartbeat != health.heartbeat:
            health.heartbeat = heartbeat
            health.probe = now
        lease = self.leases.get(LEASE_NAMESPACE, name)
        renewed = ((lease or {}).get("spec") or {}).get("renewTime")
        if renewed:
            try:
                renew = parse_time(renewed)
            except ValueError:
                renew = None
            if renew is not None and (health.renew is None or renew > health.renew):
                health.renew = renew
                health.probe = now
        return health

    async def _mark_unknown(self, node: Obj, health: _Health, now: datetime) -> Obj:
        """Post Unknown conditions for a node whose kubelet went quiet; the node as stored."""
        name = node["metadata"]["name"]
        seen = health.heartbeat
        stamp = format_time(now)
        wrote = False

        async def mutate(current: Obj | None) -> Obj | None:
            nonlocal wrote
            wrote = False
            if current is None:
                return None
            before = condition(current, "Ready")
            if (before or {}).get("lastHeartbeatTime") != seen:
                return None  # the kubelet posted meanwhile; its word wins
            _set_unknown(current, stamp)
            if condition(current, "Ready") == before:
                return None
            wrote = True
            return current

        try:
            result, _ = await self.ctx.objects.modify(
                self.node_kind, "", name, mutate, self.write_options("status")
            )
        except ApiError as e:
            if e.code == 404:
                return node
            raise
        if not wrote:
            return result
        # a never-reported Ready condition now carries a heartbeat time: not a kubelet's
        health.heartbeat = (condition(result, "Ready") or {}).get("lastHeartbeatTime")
        if _ready_status(node) == "True":
            self.record(
                result, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady"
            )
        return result

    def _wanted_taints(self, node: Obj) -> set[tuple[str, str]]:
        """The (key, effect) taints this loop wants on ``node``."""
        wanted: set[tuple[str, str]] = set()
        for cond in (node.get("status") or {}).get("conditions") or []:
            key = CONDITION_TAINTS.get(cond.get("type", ""), {}).get(cond.get("status", ""))
            if key:
                wanted.add((key, "NoSchedule"))
        if (node.get("spec") or {}).get("unschedulable"):
            wanted.add((TAINT_UNSCHEDULABLE, "NoSchedule"))
        ready = _ready_status(node)
        if ready is None:  # never reported: leave NoExecute taints as they are
            for taint in (node.get("spec") or {}).get("taints") or []:
                if taint.get("effect") == "NoExecute" and taint.get("key") in NO_EXECUTE_KEYS:
                    wanted.add((taint["key"], "NoExecute"))
        elif not self._all_down and ready in ("False", "Unknown"):
            key = TAINT_NOT_READY if ready == "False" else TAINT_UNREACHABLE
            wanted.add((key, "NoExecute"))
        return wanted

    async def _sync_taints(self, node: Obj, now: datetime) -> Obj:
        """Swap this loop's taints on ``node`` for the wanted ones; the node as stored."""
        name = node["metadata"]["name"]

        def have(obj: Obj) -> set[tuple[str, str]]:
            taints = (obj.get("spec") or {}).get("taints") or []
            return {(t.get("key", ""), t.get("effect", "")) for t in taints if _managed(t)}

        if have(node) == self._wanted_taints(node):
            return node
        stamp = format_time(now)

        async def mutate(current: Obj | None) -> Obj | None:
            if current is None:
                return None
            wanted = self._wanted_taints(current)
            present = have(current)
            if present == wanted:
                return None
            spec = current.setdefault("spec", {})
            kept = [
                t
                for t in spec.get("taints") or []
                if not _managed(t) or (t.get("key", ""), t.get("effect", "")) in wanted
            ]
            for key, effect in sorted(wanted - present):
                kept.append({"key": key, "effect": effect, "timeAdded": stamp})
            if kept:
                spec["taints"] = kept
            else:
                spec.pop("taints", None)
            return current

        try:
            result, _ = await self.ctx.objects.modify(
                self.node_kind, "", name, mutate, self.write_options()
            )
        except ApiError as e:
            if e.code == 404:
                return node
            raise
        return result

    async def _mark_pods_not_ready(self, node_name: str, now: datetime) -> None:
        """Set Ready=False on the pods of a node that is not Ready (upstream MarkPodsNotReady)."""
        stamp = format_time(now)
        failed: ApiError | None = None
        for pod in self.pods.by_index("node", node_name):
            if _ready_status(pod) == "True":
                failed = await self._mark_pod_not_ready(pod, node_name, stamp) or failed
        if failed is not None:
            raise failed

    async def _mark_pod_not_ready(self, pod: Obj, node_name: str, stamp: str) -> ApiError | None:
        """Set Ready=False on one pod still on ``node_name``; the error, if the write failed."""
        md = pod["metadata"]
        changed = False

        async def mutate(current: Obj | None) -> Obj | None:
            nonlocal changed
            if current is None or (current.get("spec") or {}).get("nodeName") != node_name:
                return None
            for cond in (current.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Ready" and cond.get("status") != "False":
                    cond["status"] = "False"
                    cond["lastTransitionTime"] = stamp
                    changed = True
                    return current
            return None

        try:
            result, _ = await self.ctx.objects.modify(
                self.pod_kind,
                md.get("namespace", ""),
                md["name"],
                mutate,
                self.write_options("status"),
            )
        except ApiError as e:
            return None if e.code == 404 else e
        if changed:
            self.record(result, "Warning", "NodeNotReady", "Node is not ready")
        return None


def _set_unknown(node: Obj, stamp: str) -> None:
    """Mark every monitored condition of ``node`` Unknown (added when never reported)."""
    conditions = node.setdefault("status", {}).setdefault("conditions", [])
    for type_ in MONITORED_CONDITIONS:
        cond = next((c for c in conditions if c.get("type") == type_), None)
        if cond is None:
            conditions.append(
                {
                    "type": type_,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                    "lastTransitionTime": stamp,
                }
            )
        elif cond.get("status") != "Unknown":
            cond.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
                lastTransitionTime=stamp,
            )
