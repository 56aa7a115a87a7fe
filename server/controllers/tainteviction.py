"""Taint-based eviction: pods on a node with NoExecute taints they do not tolerate are
deleted (upstream's taint-eviction-controller).

A pod that tolerates every NoExecute taint of its node stays; where the tolerations used
carry ``tolerationSeconds`` it is deleted that long after the taint's ``timeAdded`` (after
it was first seen here when a taint has no ``timeAdded``). Before deleting, the pod gets
the ``DisruptionTarget`` condition (reason ``DeletionByTaintManager``), and a
``TaintManagerEviction`` event says "Marking for deletion Pod ns/name"; a scheduled
eviction that is no longer due (taint gone, pod deleted) says "Cancelling deletion of Pod
ns/name".
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from edgek.nodematch import toleration_matches
from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.cache import index_node_name
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

log = logging.getLogger("edgek.controllers.tainteviction")

COMPONENT = "taint-eviction-controller"


def no_execute_taints(node: Obj) -> list[Obj]:
    return [
        t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"
    ]


def eviction_time(
    taints: list[Obj], tolerations: list[Obj], first_seen: datetime, now: datetime
) -> datetime | None:
    """When a pod with ``tolerations`` must leave a node with NoExecute ``taints``: ``now``
    if one is not tolerated; else the earliest taint's ``timeAdded`` (``first_seen`` when it
    has none) plus the ``tolerationSeconds`` of the toleration that tolerates it; None when
    every taint is tolerated forever."""
    due: datetime | None = None
    for taint in taints:
        used = next((t for t in tolerations if toleration_matches(t, taint)), None)
        if used is None:
            return now
        seconds = used.get("tolerationSeconds")
        if seconds is None:
            continue
        added = taint.get("timeAdded")
        try:
            start = parse_time(added) if added else first_seen
        except ValueError:
            start = first_seen
        when = start + timedelta(seconds=max(int(seconds), 0))
        if due is None or when < due:
            due = when
    return due


class TaintEvictionController(Controller):
    """Deletes pods from nodes whose NoExecute taints they do not (or no longer) tolerate."""

    name = "taint-eviction-controller"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.nodes = ctx.cache("", "nodes")
        self.pods = ctx.cache("", "pods")
        self.pods.add_index("node", index_node_name)
        self.pod_kind = ctx.kind("", "pods")
        # pod key -> (when first seen on a tainted node, the eviction time scheduled)
        self._scheduled: dict[str, tuple[datetime, datetime]] = {}
        self.nodes.on_event(self._node_event)
        self.pods.on_event(self._pod_event)

    def _node_event(self, old: Obj | None, new: Obj | None) -> None:
        before = no_execute_taints(old) if old is not None else []
        after = no_execute_taints(new) if new is not None else []
        if old is not None and new is not None and before == after:
            return
        name = (new or old or {}).get("metadata", {}).get("name")
        if name:
            for pod in self.pods.by_index("node", name):
                self.queue.enqueue(key_of(pod))

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        if old is not None and new is not None:
            o, n = old.get("spec") or {}, new.get("spec") or {}
            if o.get("nodeName") == n.get("nodeName") and o.get("tolerations") == n.get(
                "tolerations"
            ):
                return
        obj = new if new is not None else old
        if obj is not None and (
            (obj.get("spec") or {}).get("nodeName") or key_of(obj) in self._scheduled
        ):
            self.queue.enqueue(key_of(obj))

    def _cancel(self, key: str, pod: Obj | None) -> None:
        if self._scheduled.pop(key, None) is None:
            return
        namespace, name = split_key(key)
        ref = pod or {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"namespace": namespace, "name": name},
        }
        self.ctx.events.record(
            ref,
            "Normal",
            "TaintManagerEviction",
            f"Cancelling deletion of Pod {key}",
            component=COMPONENT,
        )

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        pod = self.pods.get(namespace, name)
        node_name = ((pod or {}).get("spec") or {}).get("nodeName")
        if pod is None or not node_name or pod["metadata"].get("deletionTimestamp"):
            self._cancel(key, pod)
            return
        node = self.nodes.get("", node_name)
        taints = no_execute_taints(node) if node is not None else []
        if not taints:
            self._cancel(key, pod)
            return
        now = self.ctx.clock()
        first_seen = self._scheduled.get(key, (now, now))[0]
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        due = eviction_time(taints, tolerations, first_seen, now)
        if due is None:
            self._cancel(key, pod)
            return
        if due > now:
            self._scheduled[key] = (first_seen, due)
            self.queue.enqueue_after(key, (due - now).total_seconds())
            return
        self._scheduled.pop(key, None)
        await self._evict(pod, now)

    async def _evict(self, pod: Obj, now: datetime) -> None:
        """Mark the pod a disruption target, then delete it (upstream addConditionAndDeletePod)."""
        md = pod["metadata"]
        namespace, name = md.get("namespace", ""), md["name"]
        self.ctx.events.record(
            pod,
            "Normal",
            "TaintManagerEviction",
            f"Marking for deletion Pod {namespace}/{name}",
            component=COMPONENT,
        )
        stamp = format_time(now)

        async def mutate(current: Obj | None) -> Obj | None:
            if current is None or current["metadata"].get("uid") != md.get("uid"):
                return None
            conditions = current.setdefault("status", {}).setdefault("conditions", [])
            wanted = {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
            }
            existing = next((c for c in conditions if c.get("type") == "DisruptionTarget"), None)
            if existing is None:
                conditions.append({**wanted, "lastTransitionTime": stamp})
                return current
            if all(existing.get(k) == v for k, v in wanted.items()):
                return None
            since = existing.get("lastTransitionTime") if existing.get("status") == "True" else None
            existing.clear()
            existing.update(wanted, lastTransitionTime=since or stamp)
            return current

        try:
            await self.ctx.objects.modify(
                self.pod_kind, namespace, name, mutate, self.write_options("status")
            )
            await self.ctx.objects.delete(
                self.pod_kind, namespace, name, DeleteOptions(precondition_uid=md.get("uid", ""))
            )
        except ApiError as e:
            if e.code in (404, 409):  # gone, or replaced by a new pod of the same name
                return
            raise
