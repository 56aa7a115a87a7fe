"""The ReplicaSet controller: keeps ``spec.replicas`` pods matching each ReplicaSet's
selector, as upstream's ``pkg/controller/replicaset``.

Level-triggered: pods and replica sets enqueue the owning set; ``reconcile`` adopts
matching orphans, releases owned pods that stopped matching, creates pods in slow-start
batches (1, 2, 4, ...) or deletes the least valuable ones, and writes the status. Creations
and deletions not yet seen by the pod cache are tracked as *expectations*, so a reconcile
never acts twice on a write the cache has not caught up with.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Any

from edgek import objects
from edgek.objects import Obj
from edgek.podstate import is_pod_active, is_pod_available, is_pod_ready, pod_ready_since
from edgek.selectors import LabelSelector
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.cache import index_owner_uid
from server.controllers.expectations import (
    SLOW_START_INITIAL_BATCH,
    Expectations,
    SlowStartError,
    slow_start_batch,
)
from server.controllers.podutil import (
    adopt,
    controller_of,
    is_controlled_by,
    pod_from_template,
    release,
    selector_of,
)
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

#: Most pods created or deleted by one reconcile (upstream ``BurstReplicas``).
BURST_REPLICAS = 500
#: Pod annotation ranking pods for scale-down (lower cost goes first).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: Pod-cache index of pods without a controller, by namespace.
ORPHAN_INDEX = "orphan-namespace"
COMPONENT = "replicaset-controller"

_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def index_orphan_namespace(pod: Obj) -> list[str]:
    """Index values: the namespace of a pod nobody controls."""
    if controller_of(pod) is None:
        return [pod["metadata"].get("namespace", "")]
    return []


def _log_rank(age_seconds: float) -> int:
    """Upstream's logarithmic scale-down bucket: ages within a power of two are equal."""
    return int(math.log2(age_seconds)) if age_seconds >= 1 else 0


def _deletion_cost(pod: Obj) -> int:
    value = (pod["metadata"].get("annotations") or {}).get(DELETION_COST)
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _max_restarts(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((int(s.get("restartCount") or 0) for s in statuses), default=0)


def deletion_order(pods: list[Obj], related: list[Obj], now: datetime) -> list[Obj]:
    """``pods`` ordered most expendable first (upstream ``ActivePodsWithRanks``):
    unscheduled < scheduled, Pending < Unknown < Running, not ready < ready, lower
    deletion cost, more related pods on the same node, ready more recently, more restarts,
    created more recently."""
    per_node: dict[str, int] = {}
    for pod in related:
        node = (pod.get("spec") or {}).get("nodeName")
        if node and is_pod_active(pod):
            per_node[node] = per_node.get(node, 0) + 1

    def age(when: datetime | None) -> float:
        return (now - when).total_seconds() if when is not None else 0.0

    def key(pod: Obj) -> tuple[Any, ...]:
        node = (pod.get("spec") or {}).get("nodeName") or ""
        phase = (pod.get("status") or {}).get("phase") or ""
        ready = is_pod_ready(pod)
        since = pod_ready_since(pod) if ready else None
        created = pod["metadata"].get("creationTimestamp")
        created_at = parse_time(created) if created else None
        return (
            bool(node),
            _PHASE_ORDER.get(phase, 0),
            ready,
            _deletion_cost(pod),
            -per_node.get(node, 0) if node else 0,
            _log_rank(age(since)) if ready else 0,
            -_max_restarts(pod),
            _log_rank(age(created_at)),
            pod["metadata"].get("uid", ""),
        )

    return sorted(pods, key=key)


class ReplicaSetController(Controller):
    """Keeps each ReplicaSet's pods at its desired count and reports their state."""

    name = "replicaset"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.rs_kind = ctx.kind("apps", "replicasets")
        self.pod_kind = ctx.kind("", "pods")
        self.rss = ctx.cache("apps", "replicasets")
        self.pods = ctx.cache("", "pods")
        self.namespaces = ctx.cache("", "namespaces")
        self.pods.add_index("owner", index_owner_uid)
        self.pods.add_index(ORPHAN_INDEX, index_orphan_namespace)
        self.rss.add_index("owner", index_owner_uid)
        self.expectations = Expectations()
        self.rss.on_event(self._rs_event)
        self.pods.on_event(self._pod_event)

    # -- events -----------------------------------------------------------------------------

    def _rs_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                self.expectations.forget(key_of(old))
            return
        self.queue.enqueue(key_of(new))

    def _owner_rs(self, pod: Obj, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "ReplicaSet":
            return None
        rs = self.rss.get(pod["metadata"].get("namespace", ""), ref.get("name", ""))
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        return rs

    def _matching_rss(self, pod: Obj) -> list[Obj]:
        labels = objects.labels(pod)
        if not labels:
            return []
        found = []
        for rs in self.rss.items(pod["metadata"].get("namespace", "")):
            sel = selector_of(rs)
            if sel is not None and not sel.empty and sel.matches(labels):
                found.append(rs)
        return found

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                self._pod_gone(old)
            return
        if new["metadata"].get("deletionTimestamp"):
            self._pod_gone(new)
            if old is not None and objects.labels(old) != objects.labels(new):
                self._pod_gone(old)
            return
        if old is None:
            self._pod_added(new)
        else:
            self._pod_updated(old, new)

    def _pod_added(self, pod: Obj) -> None:
        """A new pod: its controller saw a creation; an orphan may be adopted."""
        ref = controller_of(pod)
        rs = self._owner_rs(pod, ref)
        if rs is not None:
            self.expectations.creation_observed(key_of(rs))
            self.queue.enqueue(key_of(rs))
        elif ref is None:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        """A changed pod: wake its old and new controller, or the sets that may adopt it."""
        ref, old_ref = controller_of(new), controller_of(old)
        if old_ref != ref and old_ref is not None:
            previous = self._owner_rs(old, old_ref)
            if previous is not None:
                self.queue.enqueue(key_of(previous))
        if ref is None:
            if objects.labels(old) != objects.labels(new) or old_ref is not None:
                self._enqueue_matching(new)
            return
        rs = self._owner_rs(new, ref)
        if rs is None:
            return
        self.queue.enqueue(key_of(rs))
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        if min_ready > 0 and not is_pod_ready(old) and is_pod_ready(new):
            self.queue.enqueue_after(key_of(rs), min_ready + 1)

    def _enqueue_matching(self, pod: Obj) -> None:
        for rs in self._matching_rss(pod):
            self.queue.enqueue(key_of(rs))

    def _pod_gone(self, pod: Obj) -> None:
        rs = self._owner_rs(pod, controller_of(pod))
        if rs is not None:
            self.expectations.deletion_observed(key_of(rs), objects.uid(pod))
            self.queue.enqueue(key_of(rs))

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        rs = self.rss.get(namespace, name)
        if rs is None:
            self.expectations.forget(key)
            return
        selector = selector_of(rs)
        if selector is None:
            return
        needs_sync = self.expectations.satisfied(key)
        pods = await self._claim_pods(rs, selector)
        error: ApiError | None = None
        if needs_sync and not rs["metadata"].get("deletionTimestamp"):
            error = await self._manage_replicas(key, rs, pods)
        now = self.ctx.clock()
        status = self._calculate_status(rs, pods, error, now)
        await self.replace_status(self.rs_kind, rs, status)
        self._requeue_for_availability(key, rs, pods, now)
        if error is not None:
            raise error

    async def _claim_pods(self, rs: Obj, selector: LabelSelector) -> list[Obj]:
        """The active pods this set controls, after adopting matching orphans and releasing
        owned pods that no longer match (upstream ``ClaimPods``)."""
        namespace = rs["metadata"].get("namespace", "")
        uid = rs["metadata"]["uid"]
        owned = [p for p in self.pods.by_index("owner", uid) if is_controlled_by(p, rs)]
        orphans = self.pods.by_index(ORPHAN_INDEX, namespace)
        claimed: list[Obj] = []
        for pod in owned:
            if not is_pod_active(pod):
                continue
            if selector.matches(objects.labels(pod)):
                claimed.append(pod)
            else:
                await release(self.ctx.objects, self.pod_kind, pod, uid, self.write_options())
        if rs["metadata"].get("deletionTimestamp") or selector.empty:
            return claimed
        for pod in orphans:
            if is_pod_active(pod) and selector.matches(objects.labels(pod)):
                adopted = await adopt(
                    self.ctx.objects,
                    self.pod_kind,
                    pod,
                    rs,
                    "apps/v1",
                    "ReplicaSet",
                    selector,
                    self.write_options(),
                )
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    def _namespace_terminating(self, namespace: str) -> bool:
        ns = self.namespaces.get("", namespace)
        return ns is not None and bool(ns["metadata"].get("deletionTimestamp"))

    def _event(self, rs: Obj, type_: str, reason: str, message: str) -> None:
        self.ctx.events.record(rs, type_, reason, message, component=COMPONENT)

    async def _manage_replicas(self, key: str, rs: Obj, pods: list[Obj]) -> ApiError | None:
        """Create or delete pods towards ``spec.replicas``; the first error, if any."""
        diff = len(pods) - int(rs["spec"].get("replicas") or 0)
        namespace = rs["metadata"].get("namespace", "")
        if diff < 0:
            if self._namespace_terminating(namespace):
                return None
            count = min(-diff, BURST_REPLICAS)
            self.expectations.expect_creations(key, count)
            try:
                await slow_start_batch(
                    count, SLOW_START_INITIAL_BATCH, lambda: self._create_pod(rs)
                )
            except SlowStartError as e:
                self.expectations.creation_observed(key, count - e.successes)
                if isinstance(e.error, ApiError):
                    return e.error
                raise e.error from None
            return None
        if diff > 0:
            count = min(diff, BURST_REPLICAS)
            victims = deletion_order(pods, self._related_pods(rs), self.ctx.clock())[:count]
            self.expectations.expect_deletions(key, [objects.uid(p) for p in victims])
            results = await asyncio.gather(
                *(self._delete_pod(key, rs, p) for p in victims), return_exceptions=True
            )
            for r in results:
                if isinstance(r, ApiError):
                    return r
                if isinstance(r, BaseException):
                    raise r
        return None

    async def _create_pod(self, rs: Obj) -> None:
        pod = pod_from_template(
            rs["spec"].get("template") or {},
            rs,
            "apps/v1",
            "ReplicaSet",
            generate_name=f"{rs['metadata']['name']}-",
        )
        try:
            created = await self.ctx.objects.create(
                self.pod_kind, rs["metadata"].get("namespace", ""), pod, self.write_options()
            )
        except ApiError as e:
            self._event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self._event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod(self, key: str, rs: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.ctx.objects.delete(
                self.pod_kind,
                md.get("namespace", ""),
                md["name"],
                DeleteOptions(precondition_uid=md.get("uid", "")),
            )
        except ApiError as e:
            self.expectations.deletion_observed(key, objects.uid(pod))
            if e.code == 404:
                return
            self._event(rs, "Warning", "FailedDelete", f"Error deleting: {e.message}")
            raise
        self._event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")

    def _related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of this set and of its siblings (sets with the same controller)."""
        ref = controller_of(rs)
        if ref is None:
            return list(self.pods.by_index("owner", rs["metadata"]["uid"]))
        siblings = self.rss.by_index("owner", ref.get("uid", ""))
        related: list[Obj] = []
        for sibling in siblings:
            related.extend(self.pods.by_index("owner", sibling["metadata"]["uid"]))
        return related

    # -- status ----------------------------------------------------------------------------

    def _calculate_status(
        self, rs: Obj, pods: list[Obj], error: ApiError | None, now: datetime
    ) -> Obj:
        template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get(
            "labels"
        ) or {}
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        fully_labeled = sum(
            1
            for p in pods
            if all(objects.labels(p).get(k) == v for k, v in template_labels.items())
        )
        ready = sum(1 for p in pods if is_pod_ready(p))
        available = sum(1 for p in pods if is_pod_available(p, min_ready, now))
        old = rs.get("status") or {}
        status: Obj = {"replicas": len(pods)}
        for field_name, value in (
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("observedGeneration", int(rs["metadata"].get("generation") or 0)),
        ):
            if value:
                status[field_name] = value
        conditions = [dict(c) for c in old.get("conditions") or []]
        failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
        if error is not None and failure is None:
            diff = len(pods) - int(rs["spec"].get("replicas") or 0)
            reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": format_time(now),
                    "reason": reason,
                    "message": error.message,
                }
            )
        elif error is None and failure is not None:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        if conditions:
            status["conditions"] = conditions
        return status

    def _requeue_for_availability(self, key: str, rs: Obj, pods: list[Obj], now: datetime) -> None:
        """Come back when a ready pod passes minReadySeconds."""
        min_ready = int(rs["spec"].get("minReadySeconds") or 0)
        if min_ready <= 0:
            return
        waits = []
        for pod in pods:
            since = pod_ready_since(pod)
            if since is not None and not is_pod_available(pod, min_ready, now):
                waits.append(min_ready - (now - since).total_seconds())
        if waits:
            self.queue.enqueue_after(key, max(min(waits), 0.0) + 0.5)
