"""The DaemonSet controller: one pod per eligible node, after upstream's
``pkg/controller/daemon``.

A node is eligible when the template's nodeSelector and required node affinity match it
and its NoSchedule/NoExecute taints are tolerated (the controller adds upstream's default
daemon tolerations first). Pods are pinned with the required node affinity
``matchFields metadata.name In [node]`` and bound by the scheduler; pods on nodes that are
no longer eligible (or gone) are deleted. Updates roll per ``maxUnavailable``/``maxSurge``
or wait for deletions (``OnDelete``); templates are recorded as ControllerRevisions and
pods carry ``controller-revision-hash`` and ``pod-template-generation`` labels. Deleting a
DaemonSet deletes nothing here: the garbage collector follows ownerReferences.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgek.nodematch import pod_matches_node, untolerated_taints
from edgek.objects import Obj
from edgek.podstate import is_pod_available, is_pod_ready, is_pod_terminating, pod_phase
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from edgek.status import ApiError
from server.cache import index_owner_uid
from server.controllers import history
from server.controllers.expectations import (
    SLOW_START_INITIAL_BATCH,
    Expectations,
    SlowStartError,
    slow_start_batch,
)
from server.controllers.podutil import controller_keys, pod_from_template
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

log = logging.getLogger("edgek.controllers.daemonset")

API_VERSION = "apps/v1"
KIND = "DaemonSet"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
#: Where upstream's API server keeps the template generation of a DaemonSet.
TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

#: Tolerations every daemon pod gets (upstream ``AddOrUpdateDaemonPodTolerations``).
DEFAULT_TOLERATIONS: tuple[tuple[str, str], ...] = (
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
)
HOST_NETWORK_TOLERATION = ("node.kubernetes.io/network-unavailable", "NoSchedule")

#: Back-off for replacing failed daemon pods on one node (upstream 1 s doubling to 15 min).
_FAILED_BACKOFF = (1.0, 900.0)
#: Per node name: (should run a daemon pod, may keep running one).
_Placement = dict[str, tuple[bool, bool]]
_OMIT_ZERO = (
    "observedGeneration",
    "updatedNumberScheduled",
    "numberAvailable",
    "numberUnavailable",
)


def _key(toleration: Obj) -> tuple[str, str, str, str]:
    return (
        toleration.get("key", ""),
        toleration.get("operator", "Equal"),
        toleration.get("value", ""),
        toleration.get("effect", ""),
    )


def daemon_tolerations(spec: Obj) -> list[Obj]:
    """The pod's tolerations plus the daemon defaults it does not already have."""
    tolerations = list(spec.get("tolerations") or [])
    defaults = list(DEFAULT_TOLERATIONS)
    if spec.get("hostNetwork"):
        defaults.append(HOST_NETWORK_TOLERATION)
    for key, effect in defaults:
        wanted = {"key": key, "operator": "Exists", "effect": effect}
        for i, have in enumerate(tolerations):
            if _key(have) == _key(wanted):
                tolerations[i] = wanted
                break
        else:
            tolerations.append(wanted)
    return tolerations


def pin_to_node(affinity: Obj | None, node: str) -> Obj:
    """The pod affinity with its required node terms replaced by ``metadata.name In [node]``
    (upstream ``ReplaceDaemonSetPodNodeNameNodeAffinity``)."""
    out = copy.deepcopy(affinity or {})
    node_affinity = out.setdefault("nodeAffinity", {})
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }
    return out


def target_node(pod: Obj) -> str:
    """The node a daemon pod is for: its nodeName, else the node its affinity pins
    (upstream ``GetTargetNodeName``); "" when neither."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in required.get("nodeSelectorTerms") or []:
        for req in term.get("matchFields") or []:
            values = req.get("values") or []
            if (
                req.get("key") == "metadata.name"
                and req.get("operator") == "In"
                and len(values) == 1
            ):
                return str(values[0])
    return ""


def template_generation(ds: Obj) -> str | None:
    """The template generation pods are labelled with: the upstream annotation when the
    API server set it, else the object's generation."""
    md = ds["metadata"]
    value = (md.get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
    if value is not None:
        return str(value)
    generation = md.get("generation")
    return None if generation is None else str(generation)


def is_pod_updated(pod: Obj, hash_: str, generation: str | None) -> bool:
    """Whether a pod runs the current template (hash or template generation matches)."""
    labels = pod["metadata"].get("labels") or {}
    if hash_ and labels.get(history.REVISION_HASH_LABEL) == hash_:
        return True
    return generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == generation


def node_should_run(node: Obj, ds: Obj) -> tuple[bool, bool]:
    """(should run a daemon pod, may keep running one) for ``node`` (upstream
    ``NodeShouldRunDaemonPod``): untolerated NoSchedule taints stop new pods only."""
    template_spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    node_name = node["metadata"]["name"]
    if template_spec.get("nodeName") not in (None, "", node_name):
        return False, False
    if not pod_matches_node({"spec": template_spec}, node):
        return False, False
    untolerated = untolerated_taints(
        node, daemon_tolerations(template_spec), ("NoSchedule", "NoExecute")
    )
    if untolerated:
        return False, not any(t.get("effect") == "NoExecute" for t in untolerated)
    return True, True


def scaled_value(value: Any, total: int) -> int:
    """An int-or-percent against ``total``, percentages rounded up."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


def _creation_order(pod: Obj) -> tuple[bool, str, str]:
    """Upstream podByCreationTimestampAndPhase: bound pods first, then oldest, then name."""
    md = pod["metadata"]
    unbound = not (pod.get("spec") or {}).get("nodeName")
    return unbound, md.get("creationTimestamp") or "", md["name"]


class DaemonSetController(Controller):
    """Keeps one pod per eligible node for every DaemonSet."""

    name = "daemonset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets_kind = ctx.kind("apps", "daemonsets")
        self.pods_kind = ctx.kind("", "pods")
        self.revisions_kind = ctx.kind("apps", "controllerrevisions")
        self.sets = ctx.cache("apps", "daemonsets")
        self.pods = ctx.cache("", "pods")
        self.nodes = ctx.cache("", "nodes")
        self.revisions = ctx.cache("apps", "controllerrevisions")
        self.pods.add_index("owner", index_owner_uid)
        self.revisions.add_index("owner", index_owner_uid)
        self.sets.on_event(self._set_event)
        self.pods.on_event(self._pod_event)
        self.revisions.on_event(self._revision_event)
        self.nodes.on_event(self._node_event)
        self.expectations = Expectations()
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}  # -> (delay, last)

    # -- event handlers ------------------------------------------------------------

    def _set_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is None:
            return
        if new is None:
            self.expectations.forget(key_of(obj))
        self.queue.enqueue(key_of(obj))

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is None:
                continue
            for key in controller_keys(obj, KIND, self.sets):
                self.expectations.observe(key, old, new)
                self.queue.enqueue(key)

    def _revision_event(self, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is not None:
                for key in controller_keys(obj, KIND, self.sets):
                    self.queue.enqueue(key)

    def _node_event(self, old: Obj | None, new: Obj | None) -> None:
        if old is not None and new is not None and _node_shape(old) == _node_shape(new):
            return
        for ds in self.sets.items():
            self.queue.enqueue(key_of(ds))

    # -- reconcile -------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        ds = self.sets.get(namespace, name)
        if ds is None:
            self.expectations.forget(key)
            return
        if ds["metadata"].get("deletionTimestamp"):
            return
        try:
            selector = label_selector_from_object((ds.get("spec") or {}).get("selector"))
        except SelectorError as e:
            self.record(ds, "Warning", "InvalidSelector", f"invalid selector: {e}")
            return
        placement = {n["metadata"]["name"]: node_should_run(n, ds) for n in self.nodes.items()}
        pods = await self._claim_pods(ds, selector)
        current, old = await self._history(ds, selector)
        hash_ = (current["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL, "")
        satisfied = self._satisfied(key, pods)
        if satisfied:
            by_node = _pods_by_node(pods)
            await self._manage(key, ds, placement, by_node, hash_)
            strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" and self._satisfied(
                key, pods
            ):
                await self._rolling_update(key, ds, placement, by_node, hash_)
        await self._cleanup_history(ds, old, pods)
        await self._write_status(ds, placement, _pods_by_node(pods), hash_, satisfied)

    def _satisfied(self, key: str, pods: list[Obj]) -> bool:
        """Whether the cache shows every pod this loop created or deleted for ``key``."""
        exp = self.expectations.get(key)
        if exp is not None:  # writes whose events came before the write returned
            by_name = {p["metadata"]["name"]: p for p in pods}
            by_uid = {p["metadata"].get("uid", ""): p for p in pods}
            exp.created = {n for n in exp.created if n not in by_name}
            exp.deleted = {
                u for u in exp.deleted if u in by_uid and not is_pod_terminating(by_uid[u])
            }
        return self.expectations.satisfied(key)

    # -- pods per node -------------------------------------------------------------------

    async def _manage(
        self, key: str, ds: Obj, placement: _Placement, by_node: dict[str, list[Obj]], hash_: str
    ) -> None:
        """Create missing daemon pods and delete excess, failed or misplaced ones."""
        create: list[str] = []
        delete: list[Obj] = []
        for node_name, runs in placement.items():
            c, d = self._pods_for_node(key, ds, node_name, runs, by_node.get(node_name), hash_)
            create += c
            delete += d
        for node_name, pods in by_node.items():
            if node_name not in placement:
                delete += [p for p in pods if not is_pod_terminating(p)]
        await self._sync_nodes(key, ds, delete, create, hash_)

    def _pods_for_node(
        self,
        key: str,
        ds: Obj,
        node_name: str,
        runs: tuple[bool, bool],
        pods: list[Obj] | None,
        hash_: str,
    ) -> tuple[list[str], list[Obj]]:
        """(nodes needing a pod, pods to delete) for one node (upstream podsShouldBeOnNode)."""
        should_run, should_continue = runs
        if should_run and pods is None:
            return [node_name], []
        if pods is None:
            return [], []
        if not should_continue:
            return [], [p for p in pods if not is_pod_terminating(p)]
        delete, running = self._finished_on_node(key, ds, node_name, pods)
        if not _allows_surge(ds):
            return [], delete + running[1:]
        if not running:
            return ([node_name] if should_run else []), delete
        if len(running) == 1:
            return [], delete
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        return [], delete + _surge_excess(running, hash_, min_ready, self.ctx.clock())

    def _finished_on_node(
        self, key: str, ds: Obj, node_name: str, pods: list[Obj]
    ) -> tuple[list[Obj], list[Obj]]:
        """(finished pods to delete, running pods oldest first) of one node; failed pods
        wait out the node's back-off."""
        delete: list[Obj] = []
        running: list[Obj] = []
        for pod in pods:
            if is_pod_terminating(pod):
                continue
            if pod_phase(pod) == "Failed":
                if self._in_backoff(key, ds, node_name):
                    continue
                self.record(
                    ds,
                    "Warning",
                    "FailedDaemonPod",
                    f"Found failed daemon pod {pod['metadata'].get('namespace', '')}/"
                    f"{pod['metadata']['name']} on node {node_name}, will try to kill it",
                )
                delete.append(pod)
            elif pod_phase(pod) == "Succeeded":
                delete.append(pod)
            else:
                running.append(pod)
        running.sort(key=_creation_order)
        return delete, running

    def _in_backoff(self, key: str, ds: Obj, node: str) -> bool:
        """Failed pods on a node are replaced with a growing delay (the kubelet may keep
        rejecting them); True while waiting, with the DaemonSet requeued for later."""
        bkey = (ds["metadata"]["uid"], node)
        now = time.monotonic()
        delay, last = self._backoff.get(bkey, (0.0, 0.0))
        if delay and now - last < delay:
            self.queue.enqueue_after(key, delay - (now - last))
            return True
        if delay and now - last > 2 * _FAILED_BACKOFF[1]:
            delay = 0.0
        base, cap = _FAILED_BACKOFF
        self._backoff[bkey] = (min(delay * 2, cap) if delay else base, now)
        return False

    async def _rolling_update(
        self, key: str, ds: Obj, placement: _Placement, by_node: dict[str, list[Obj]], hash_: str
    ) -> None:
        """Replace old pods within maxUnavailable, or surge new ones within maxSurge."""
        spec = ds.get("spec") or {}
        rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = self.ctx.clock()
        generation = template_generation(ds)
        desired = sum(1 for should_run, _ in placement.values() if should_run)
        max_surge = scaled_value(rolling.get("maxSurge"), desired) if _allows_surge(ds) else 0
        max_unavailable = scaled_value(rolling.get("maxUnavailable", 1), desired)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1

        def available(pod: Obj) -> bool:
            return is_pod_available(pod, min_ready, now)

        nodes = [
            (name, placement.get(name, (False, False))[0], _split_on_node(pods, hash_, generation))
            for name, pods in sorted(by_node.items())
        ]
        if max_surge == 0:
            replace = _unavailable_replacements(nodes, max_unavailable, available)
            await self._sync_nodes(key, ds, replace, [], hash_)
            return
        plan = _SurgePlan(max_surge)
        for node_name, runs, found in nodes:
            plan.add_node(node_name, runs, found, available)
        delete, create = plan.result(desired)
        await self._sync_nodes(key, ds, delete, create, hash_)

    async def _sync_nodes(
        self, key: str, ds: Obj, delete: list[Obj], create: list[str], hash_: str
    ) -> None:
        """Delete ``delete`` and create a pod for each node in ``create``."""
        if not delete and not create:
            return
        exp = self.expectations.entry(key)
        exp.touch()
        template = self._pod_template(ds, hash_)
        namespace = ds["metadata"].get("namespace", "")
        names = {n["metadata"]["name"] for n in self.nodes.items()}
        errors: list[ApiError] = []

        async def create_one(node: str) -> None:
            pod = pod_from_template(template, ds, API_VERSION, KIND)
            spec = pod["spec"]
            spec["affinity"] = pin_to_node(spec.get("affinity"), node)
            try:
                created = await self.ctx.objects.create(
                    self.pods_kind, namespace, pod, self.write_options()
                )
            except ApiError as e:
                self.record(ds, "Warning", "FailedCreate", f"Error creating: {e.message}")
                raise
            exp.created.add(created["metadata"]["name"])
            self.record(
                ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}"
            )

        async def delete_one(pod: Obj) -> None:
            md = pod["metadata"]
            # pods bound to vanished nodes have no kubelet to finish a graceful deletion
            node = (pod.get("spec") or {}).get("nodeName")
            grace = 0 if node and node not in names else None
            try:
                await self.ctx.objects.delete(
                    self.pods_kind,
                    namespace,
                    md["name"],
                    DeleteOptions(grace_period_seconds=grace, precondition_uid=md.get("uid", "")),
                )
            except ApiError as e:
                if e.code in (404, 409):
                    return
                self.record(ds, "Warning", "FailedDelete", f"Error deleting: {e.message}")
                errors.append(e)
                return
            exp.deleted.add(md.get("uid", ""))
            self.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")

        nodes = iter(create)
        try:
            await slow_start_batch(
                len(create), SLOW_START_INITIAL_BATCH, lambda: create_one(next(nodes))
            )
        except SlowStartError as e:
            if not isinstance(e.error, ApiError):
                raise e.error from None
            errors.append(e.error)
        await asyncio.gather(*(delete_one(p) for p in delete))
        if errors:
            raise errors[0]

    def _pod_template(self, ds: Obj, hash_: str) -> Obj:
        """The DaemonSet's template with the daemon tolerations and the generation and
        revision labels."""
        template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
        spec = template.setdefault("spec", {})
        spec["tolerations"] = daemon_tolerations(spec)
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        generation = template_generation(ds)
        if generation is not None:
            labels[TEMPLATE_GENERATION_LABEL] = generation
        if hash_:
            labels[history.REVISION_HASH_LABEL] = hash_
        return template

    # -- ownership -----------------------------------------------------------------------

    async def _claim_pods(self, ds: Obj, selector: LabelSelector) -> list[Obj]:
        """The DaemonSet's pods: adopt matching orphans, release owned pods that stopped
        matching."""
        return await history.claim(
            self.ctx.objects,
            self.pods_kind,
            self.pods.items(ds["metadata"].get("namespace", "")),
            ds,
            API_VERSION,
            KIND,
            self.write_options(),
            lambda pod: selector.matches(pod["metadata"].get("labels") or {}),
        )

    # -- revisions -------------------------------------------------------------------------

    async def _history(self, ds: Obj, selector: LabelSelector) -> tuple[Obj, list[Obj]]:
        """(current revision, older revisions): adopt orphans, create the current revision
        or renumber an equal older one, drop duplicates (upstream constructHistory)."""
        revisions = await history.claim_revisions(
            self.ctx.objects,
            self.revisions_kind,
            self.revisions,
            ds,
            API_VERSION,
            KIND,
            self.write_options(),
            selector,
        )
        data = history.template_patch(ds)
        matching = [r for r in revisions if history.equal_revision(r, {"data": data})]
        old = [r for r in revisions if not history.equal_revision(r, {"data": data})]
        number = history.next_revision(old)
        if not matching:
            return await self._snapshot(ds, data, number), old
        matching = history.sort_revisions(matching)
        current = matching[-1]
        for dup in matching[:-1]:
            await history.delete_revision(self.ctx.objects, self.revisions_kind, dup)
        if int(current.get("revision") or 0) < number:
            current = await history.set_revision_number(
                self.ctx.objects, self.revisions_kind, current, number, self.write_options()
            )
        return current, old

    async def _snapshot(self, ds: Obj, data: Obj, number: int) -> Obj:
        """Create the revision of the current template; on a name collision with other data
        bump ``status.collisionCount`` and fail (the retry uses a new name)."""
        template = (ds.get("spec") or {}).get("template") or {}
        collisions = (ds.get("status") or {}).get("collisionCount")
        hash_ = history.hash_template(template, collisions)
        name = history.revision_name(ds["metadata"]["name"], hash_)
        labels = {
            **((template.get("metadata") or {}).get("labels") or {}),
            history.REVISION_HASH_LABEL: hash_,
        }
        body = history.revision_body(ds, API_VERSION, KIND, name, labels, data, number)
        namespace = ds["metadata"].get("namespace", "")
        try:
            return await self.ctx.objects.create(
                self.revisions_kind, namespace, body, self.write_options()
            )
        except ApiError as e:
            if e.code != 409:
                raise
            existing = await self.ctx.objects.try_get(self.revisions_kind, namespace, name)
            if existing is not None and history.equal_revision(existing, body):
                return existing
            await self._bump_collisions(ds)
            raise

    async def _bump_collisions(self, ds: Obj) -> None:
        uid = ds["metadata"]["uid"]

        async def mutate(current: Obj | None) -> Obj | None:
            if current is None or current["metadata"].get("uid") != uid:
                return None
            status = current.setdefault("status", {})
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            return current

        md = ds["metadata"]
        await self.ctx.objects.modify(
            self.sets_kind,
            md.get("namespace", ""),
            md["name"],
            mutate,
            self.write_options("status"),
        )

    async def _cleanup_history(self, ds: Obj, old: list[Obj], pods: list[Obj]) -> None:
        """Delete the oldest revisions no pod runs, beyond revisionHistoryLimit."""
        limit = int((ds.get("spec") or {}).get("revisionHistoryLimit", 10))
        excess = len(old) - limit
        if excess <= 0:
            return
        live = {(p["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL) for p in pods}
        for rev in history.sort_revisions(old):
            if excess <= 0:
                break
            if (rev["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL) in live:
                continue
            await history.delete_revision(self.ctx.objects, self.revisions_kind, rev)
            excess -= 1

    # -- status ------------------------------------------------------------------------------

    async def _write_status(
        self,
        ds: Obj,
        placement: _Placement,
        by_node: dict[str, list[Obj]],
        hash_: str,
        observed: bool,
    ) -> None:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        counts = _status_counts(ds, placement, by_node, hash_, self.ctx.clock())
        old = ds.get("status") or {}
        new = {**old, **counts}
        if observed:
            new["observedGeneration"] = int(ds["metadata"].get("generation") or 0)
        new = {k: v for k, v in new.items() if not (k in _OMIT_ZERO and not v)}
        if min_ready > 0 and counts["numberReady"] != counts["numberAvailable"]:
            self.queue.enqueue_after(key_of(ds), min_ready)
        if new == old:
            return
        uid = ds["metadata"]["uid"]

        async def mutate(cur: Obj | None) -> Obj | None:
            if cur is None or cur["metadata"].get("uid") != uid:
                return None
            status = dict(cur.get("status") or {})
            status.update(
                {k: v for k, v in new.items() if k not in ("collisionCount", "conditions")}
            )
            for k in _OMIT_ZERO:
                if not new.get(k):
                    status.pop(k, None)
            if status == cur.get("status"):
                return None
            cur["status"] = status
            return cur

        await self.write_status(self.sets_kind, ds, mutate)


def _status_counts(
    ds: Obj, placement: _Placement, by_node: dict[str, list[Obj]], hash_: str, now: datetime
) -> dict[str, int]:
    """The status counters of a DaemonSet: each eligible node counts by its oldest pod."""
    min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    generation = template_generation(ds)
    desired = current = misscheduled = ready = updated = available = 0
    for node_name, (should_run, _) in placement.items():
        pods = sorted(by_node.get(node_name) or [], key=_creation_order)
        if not should_run:
            misscheduled += bool(pods)
            continue
        desired += 1
        if not pods:
            continue
        current += 1
        pod = pods[0]
        if is_pod_ready(pod):
            ready += 1
            available += is_pod_available(pod, min_ready, now)
        updated += is_pod_updated(pod, hash_, generation)
    return {
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
    }


def _allows_surge(ds: Obj) -> bool:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    rolling = strategy.get("rollingUpdate") or {}
    return scaled_value(rolling.get("maxSurge"), 1) > 0


def _node_shape(node: Obj) -> tuple[Any, ...]:
    """What of a node decides where daemon pods run (heartbeat-only changes are ignored)."""
    spec = node.get("spec") or {}
    conditions = (node.get("status") or {}).get("conditions") or []
    return (
        node["metadata"].get("labels"),
        spec.get("taints"),
        spec.get("unschedulable"),
        sorted((c.get("type", ""), c.get("status", "")) for c in conditions),
    )


def _pods_by_node(pods: list[Obj]) -> dict[str, list[Obj]]:
    """Owned pods grouped by the node they are for (pods for no node are left out)."""
    out: dict[str, list[Obj]] = {}
    for pod in pods:
        node = target_node(pod)
        if node:
            out.setdefault(node, []).append(pod)
    return out


def _split_on_node(
    pods: list[Obj], hash_: str, generation: str | None
) -> tuple[Obj | None, Obj | None] | None:
    """(new pod, old pod) among a node's live pods; None when there are several of a kind
    (the manage pass prunes them first)."""
    new = old = None
    for pod in pods:
        if is_pod_terminating(pod):
            continue
        if is_pod_updated(pod, hash_, generation):
            if new is not None:
                return None
            new = pod
        else:
            if old is not None:
                return None
            old = pod
    return new, old


#: Per node, by name: (node name, should run a daemon pod, its new and old pod, or None
#: when it has several of a kind).
_NodePods = list[tuple[str, bool, tuple[Obj | None, Obj | None] | None]]


def _unavailable_replacements(
    nodes: _NodePods, max_unavailable: int, available: Callable[[Obj], bool]
) -> list[Obj]:
    """Old pods to delete in a rolling update without surge: the unavailable ones, and
    available ones while fewer than ``max_unavailable`` nodes are unavailable."""
    unavailable = 0
    replace: list[Obj] = []
    candidates: list[Obj] = []
    for _, _, found in nodes:
        if found is None:
            unavailable += 1
            continue
        new, old = found
        if (new is None) == (old is None):
            unavailable += 1
        elif new is not None:
            unavailable += not available(new)
        elif old is not None and not available(old):
            replace.append(old)
            unavailable += 1
        elif unavailable < max_unavailable and old is not None:
            candidates.append(old)
    room = max(0, min(max_unavailable - unavailable, len(candidates)))
    return replace + candidates[:room]


@dataclass
class _SurgePlan:
    """A rolling update with surge: new pods start beside old ones (at most ``max_surge``
    at once), and old pods go once their replacement is available."""

    max_surge: int
    delete: list[Obj] = field(default_factory=list)
    misplaced: list[Obj] = field(default_factory=list)  # on nodes that no longer qualify
    allowed: list[str] = field(default_factory=list)  # nodes whose old pod is unavailable
    candidates: list[str] = field(default_factory=list)  # nodes that may surge
    surge: int = 0
    available: int = 0

    def add_node(
        self,
        node_name: str,
        runs: bool,
        found: tuple[Obj | None, Obj | None] | None,
        available: Callable[[Obj], bool],
    ) -> None:
        """Account for one node's new and old pod."""
        if found is None:
            self.surge += 1
            return
        new, old = found
        current = old if old is not None else new
        if current is not None:
            self.available += available(current)
        if old is None:
            return
        if new is None:
            self._old_only(node_name, runs, old, available(old))
        elif not available(new):
            self.surge += 1
        else:
            self.delete.append(old)

    def _old_only(self, node_name: str, runs: bool, old: Obj, old_available: bool) -> None:
        if not old_available:
            if runs:
                self.allowed.append(node_name)
            else:
                self.delete.append(old)
        elif not runs:
            self.misplaced.append(old)
        elif self.surge < self.max_surge:
            self.candidates.append(node_name)

    def result(self, desired: int) -> tuple[list[Obj], list[str]]:
        """(pods to delete, nodes to create a pod on)."""
        delete = list(self.delete)
        # only drop pods on nodes that no longer qualify once enough others are available
        spare = self.available - desired
        if spare > 0:
            delete += self.misplaced[:spare]
        room = max(0, min(self.max_surge - self.surge, len(self.candidates)))
        return delete, self.allowed + self.candidates[:room]


def _surge_excess(running: list[Obj], hash_: str, min_ready: int, now: datetime) -> list[Obj]:
    """Surging pods of one node to delete (oldest first in ``running``): keep the oldest new
    pod and, until it is available, the oldest old one."""
    delete: list[Obj] = []
    oldest_new = oldest_old = None
    for pod in running:
        updated = (pod["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL)
        if updated == hash_ and oldest_new is None:
            oldest_new = pod
        elif updated != hash_ and oldest_old is None:
            oldest_old = pod
        else:
            delete.append(pod)
    if (
        oldest_new is not None
        and oldest_old is not None
        and (not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now))
    ):
        delete.append(oldest_old)
    return delete
