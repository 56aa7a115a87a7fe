"""The disruption controller: keeps each PodDisruptionBudget's status (expected, healthy and
desired pods, disruptions allowed, the DisruptionAllowed condition) current from the pods its
selector matches, as upstream's pkg/controller/disruption does.

The Eviction API (``server/admission/eviction.py``) spends ``disruptionsAllowed`` and records the
pod in ``disruptedPods``; this loop forgets such entries once the pod is being deleted, or after
``DELETION_TIMEOUT`` if it never was.
"""

from __future__ import annotations

import copy
import math
from datetime import datetime, timedelta

from edgek.objects import Obj
from edgek.podstate import is_pod_ready
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from edgek.status import ApiError
from edgek.timefmt import parse_time
from server.admission.pdb import (
    CONDITION,
    conditions_up_to_date,
    set_condition,
    update_disruption_allowed_condition,
)
from server.cache import ObjectCache
from server.controllers.podutil import controller_of
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key

#: How long a pod stays in ``disruptedPods`` without being marked for deletion (upstream 2 min).
DELETION_TIMEOUT = timedelta(minutes=2)


class ExpectedCountError(Exception):
    """The expected number of pods cannot be worked out (upstream event message)."""


def scaled_value(value: int | str, total: int) -> int:
    """An int-or-percent against ``total``, percentages rounded up (GetScaledValueFromIntOrPercent
    with roundUp)."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ExpectedCountError(
            "invalid value for IntOrString: invalid type: string is not a percentage"
        )
    try:
        percent = int(value[:-1])
    except ValueError as e:
        raise ExpectedCountError(
            f'invalid value for IntOrString: invalid value "{value}": {e}'
        ) from e
    return math.ceil(percent * total / 100)


def pdb_selector(pdb: Obj) -> LabelSelector:
    """The PDB's selector as the controller reads it (null matches nothing, ``{}`` all)."""
    return label_selector_from_object((pdb.get("spec") or {}).get("selector"))


class DisruptionController(Controller):
    """PodDisruptionBudget status from the pods it selects."""

    name = "disruption"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.pdb_kind = ctx.kind("policy", "poddisruptionbudgets")
        self.pdbs = ctx.cache("policy", "poddisruptionbudgets")
        self.pods = ctx.cache("", "pods")
        self.replicasets = ctx.cache("apps", "replicasets")
        self.deployments = ctx.cache("apps", "deployments")
        self.statefulsets = ctx.cache("apps", "statefulsets")
        self.rcs: ObjectCache | None = None
        try:
            self.rcs = ctx.cache("", "replicationcontrollers")
        except KeyError:
            self.rcs = None  # not served here
        self.pdbs.on_event(lambda old, new: self.queue.enqueue(key_of(new or old or {})))
        self.pods.on_event(self._pod_event)

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        """A pod change wakes every budget in its namespace that selects it (before or after)."""
        for pod in (old, new):
            if pod is None:
                continue
            md = pod["metadata"]
            for pdb in self.pdbs.items(md.get("namespace", "")):
                try:
                    if pdb_selector(pdb).matches(md.get("labels")):
                        self.queue.enqueue(key_of(pdb))
                except SelectorError:
                    continue

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        pdb = self.pdbs.get(namespace, name)
        if pdb is None:
            return
        try:
            await self._try_sync(pdb)
        except ApiError as e:
            if e.code == 409:
                raise
            await self._fail_safe(pdb, e.message)
        except (ExpectedCountError, SelectorError) as e:
            await self._fail_safe(pdb, str(e))

    def _pods_for(self, pdb: Obj) -> list[Obj]:
        selector = pdb_selector(pdb)
        ns = pdb["metadata"].get("namespace", "")
        return [p for p in self.pods.items(ns) if selector.matches(p["metadata"].get("labels"))]

    async def _try_sync(self, pdb: Obj) -> None:
        pods = self._pods_for(pdb)
        if not pods:
            self.record(pdb, "Normal", "NoPods", "No matching pods found")
        try:
            expected, desired, unmanaged = self.expected_pod_count(pdb, pods)
        except ExpectedCountError as e:
            self.record(
                pdb,
                "Warning",
                "CalculateExpectedPodCountFailed",
                f"Failed to calculate the number of expected pods: {e}",
            )
            raise
        if unmanaged:
            self.record(
                pdb,
                "Warning",
                "UnmanagedPods",
                "Pods selected by this PodDisruptionBudget (selector: "
                f"{pdb_selector(pdb)}) were found to be unmanaged. As a result, the status of "
                "the PDB cannot be calculated correctly, which may result in undefined "
                'behavior. To account for these pods please set ".spec.minAvailable" field of '
                "the PDB to an integer value.",
            )
        now = self.ctx.clock()
        disrupted, recheck = self._disrupted_pods(pods, pdb, now)
        healthy = count_healthy_pods(pods, disrupted, now)
        await self._update_status(pdb, healthy, desired, expected, disrupted)
        if recheck is not None:
            self.queue.enqueue_after(key_of(pdb), (recheck - now).total_seconds())

    def expected_pod_count(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int, list[str]]:
        """(expectedPods, desiredHealthy, unmanaged pod names), as upstream getExpectedPodCount."""
        spec = pdb.get("spec") or {}
        unmanaged: list[str] = []
        if spec.get("maxUnavailable") is not None:
            expected, unmanaged = self._expected_scale(pods)
            max_unavailable = scaled_value(spec["maxUnavailable"], expected)
            return expected, max(expected - max_unavailable, 0), unmanaged
        min_available = spec.get("minAvailable")
        if isinstance(min_available, int):
            return len(pods), min_available, unmanaged
        if isinstance(min_available, str):
            expected, unmanaged = self._expected_scale(pods)
            return expected, scaled_value(min_available, expected), unmanaged
        return 0, 0, unmanaged

    def _expected_scale(self, pods: list[Obj]) -> tuple[int, list[str]]:
        """The sum of the scales of the pods' controllers (each counted once)."""
        scales: dict[str, int] = {}
        unmanaged: list[str] = []
        for pod in pods:
            ref = controller_of(pod)
            if ref is None:
                unmanaged.append(pod["metadata"]["name"])
                continue
            if ref.get("uid") in scales:
                continue
            found = self._controller_scale(ref, pod["metadata"].get("namespace", ""))
            if found is None:
                raise ExpectedCountError(
                    f'found no controllers for pod "{pod["metadata"]["name"]}"'
                )
            scales[found[0]] = found[1]
        return sum(scales.values()), unmanaged

    def _controller_scale(self, ref: Obj, namespace: str) -> tuple[str, int] | None:
        """(uid, replicas) of the workload a controller reference leads to: a Deployment for
        its ReplicaSets, else the ReplicaSet, StatefulSet or ReplicationController."""
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        kind = ref.get("kind")
        if kind == "ReplicationController" and group == "" and self.rcs is not None:
            return _scale_of(self.rcs.get(namespace, ref["name"]), ref)
        if kind == "StatefulSet" and group == "apps":
            return _scale_of(self.statefulsets.get(namespace, ref["name"]), ref)
        if kind != "ReplicaSet" or group not in ("apps", "extensions"):
            return None
        rs = self.replicasets.get(namespace, ref["name"])
        if rs is None or rs["metadata"].get("uid") != ref.get("uid"):
            return None
        owner = controller_of(rs)
        if owner is not None and owner.get("kind") == "Deployment":
            owner_group = str(owner.get("apiVersion", "")).rpartition("/")[0]
            if owner_group not in ("apps", "extensions"):
                return None
            return _scale_of(self.deployments.get(namespace, owner["name"]), owner)
        return _scale_of(rs, ref)

    def _disrupted_pods(
        self, pods: list[Obj], pdb: Obj, now: datetime
    ) -> tuple[dict[str, str], datetime | None]:
        """The disruptedPods entries still pending, and when the earliest one expires."""
        recorded: dict[str, str] = (pdb.get("status") or {}).get("disruptedPods") or {}
        result: dict[str, str] = {}
        recheck: datetime | None = None
        for pod in pods:
            md = pod["metadata"]
            if md.get("deletionTimestamp") or md["name"] not in recorded:
                continue
            when = recorded[md["name"]]
            expires = parse_time(when) + DELETION_TIMEOUT
            if expires < now:
                self.record(
                    pod,
                    "Warning",
                    "NotDeleted",
                    "Pod was expected by PDB "
                    f"{pdb['metadata'].get('namespace')}/{pdb['metadata']['name']} to be "
                    "deleted but it wasn't",
                )
                continue
            if recheck is None or expires < recheck:
                recheck = expires
            result[md["name"]] = when
        return result, recheck

    async def _update_status(
        self, pdb: Obj, healthy: int, desired: int, expected: int, disrupted: dict[str, str]
    ) -> None:
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        status = pdb.get("status") or {}
        generation = int(pdb["metadata"].get("generation") or 0)
        if (
            status.get("currentHealthy", 0) == healthy
            and status.get("desiredHealthy", 0) == desired
            and status.get("expectedPods", 0) == expected
            and status.get("disruptionsAllowed", 0) == allowed
            and (status.get("disruptedPods") or {}) == disrupted
            and int(status.get("observedGeneration") or 0) == generation
            and conditions_up_to_date(pdb)
        ):
            return
        new = copy.deepcopy(pdb)
        new_status: Obj = {
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "observedGeneration": generation,
            "conditions": copy.deepcopy(status.get("conditions") or []),
        }
        if disrupted:
            new_status["disruptedPods"] = disrupted
        update_disruption_allowed_condition(new_status, self.ctx.clock())
        new["status"] = new_status
        await self._write(new)

    async def _fail_safe(self, pdb: Obj, message: str) -> None:
        """Fail closed: no disruptions allowed while the status cannot be worked out."""
        new = copy.deepcopy(pdb)
        status = new.setdefault("status", {})
        status["disruptionsAllowed"] = 0
        set_condition(
            status,
            {
                "type": CONDITION,
                "status": "False",
                "reason": "SyncFailed",
                "message": message,
                "observedGeneration": int(status.get("observedGeneration") or 0),
            },
            self.ctx.clock(),
        )
        await self._write(new)

    async def _write(self, pdb: Obj) -> None:
        """Status update guarded by the cached resourceVersion (a conflict requeues)."""
        md = pdb["metadata"]
        await self.ctx.objects.update(
            self.pdb_kind,
            md.get("namespace", ""),
            md["name"],
            pdb,
            self.write_options("status"),
        )


def _scale_of(obj: Obj | None, ref: Obj) -> tuple[str, int] | None:
    if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
        return None
    replicas = (obj.get("spec") or {}).get("replicas")
    return obj["metadata"]["uid"], int(1 if replicas is None else replicas)


def count_healthy_pods(pods: list[Obj], disrupted: dict[str, str], now: datetime) -> int:
    """Ready pods that are neither being deleted nor about to be (recently evicted)."""
    healthy = 0
    for pod in pods:
        md = pod["metadata"]
        if md.get("deletionTimestamp"):
            continue
        when = disrupted.get(md["name"])
        if when is not None and parse_time(when) + DELETION_TIMEOUT > now:
            continue
        if is_pod_ready(pod):
            healthy += 1
    return healthy
