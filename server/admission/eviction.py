"""The Eviction API: POST pods/{name}/eviction (policy/v1 or policy/v1beta1 Eviction).

As upstream's EvictionREST: pods that are Pending, finished or already being deleted are
deleted outright; otherwise the one PodDisruptionBudget covering the pod must allow a
disruption, which is spent (``disruptionsAllowed`` decremented, the pod recorded in
``disruptedPods``) through a resourceVersion-guarded status update before the pod gets the
DisruptionTarget condition and is deleted. A budget that allows nothing answers 429
TooManyRequests, which ``kubectl drain`` retries.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import datetime

from edgek import objects as objutil
from edgek import status
from edgek.kinds import Kind, Registry
from edgek.objects import Obj
from edgek.podstate import is_pod_ready
from edgek.selectors import SelectorError, label_selector_from_object
from edgek.status import ApiError
from edgek.timefmt import format_time
from server.admission.pdb import update_disruption_allowed_condition
from server.storage.objectstore import DeleteOptions, ListOptions, ObjectStore, WriteOptions
from server.storage.requestinfo import Action, RequestInfo

#: Upstream MaxDisruptedPodSize: evictions approved but not yet seen by the controller.
MAX_DISRUPTED_PODS = 2000
#: Upstream EvictionsRetry allows 20 attempts on conflicts.
RETRIES = 20
RETRY_DELAY = 0.05
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")
TOO_MANY = "Cannot evict pod as it would violate the pod's disruption budget."


def too_many_requests(cause: str, retry_after: int) -> ApiError:
    """429 with a DisruptionBudget cause (errors.NewTooManyRequests plus the cause)."""
    details: Obj = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return ApiError(429, "TooManyRequests", TOO_MANY, details=details)


def still_processing(pdb_name: str) -> ApiError:
    return too_many_requests(
        f"The disruption budget {pdb_name} is still being processed by the server.", 10
    )


def _forbidden_pdb(name: str, why: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'poddisruptionbudget.policy "{name}" is forbidden: {why}',
        details={"name": name, "group": "policy", "kind": "poddisruptionbudget"},
    )


def can_ignore_pdb(pod: Obj) -> bool:
    """Finished, pending and terminating pods are deleted without asking any budget."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(
        pod["metadata"].get("deletionTimestamp")
    )


def _should_enforce_rv(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _delete_options(body: Obj, request_dry_run: bool) -> DeleteOptions:
    raw = body.get("deleteOptions") or {}
    if not isinstance(raw, dict):
        raise status.bad_request("deleteOptions must be an object")
    dry = list(raw.get("dryRun") or [])
    if dry and any(v != "All" for v in dry):
        raise status.bad_request(f'unsupported dry run option "{dry[0]}", only "All" is supported')
    grace = raw.get("gracePeriodSeconds")
    if grace is not None and not isinstance(grace, int):
        raise status.bad_request("deleteOptions.gracePeriodSeconds must be an integer")
    pre = raw.get("preconditions") or {}
    policy = raw.get("propagationPolicy") or ""
    if raw.get("orphanDependents") is True:
        policy = policy or "Orphan"
    return DeleteOptions(
        dry_run=request_dry_run or bool(dry),
        grace_period_seconds=grace,
        propagation_policy=policy,
        precondition_uid=pre.get("uid") or "",
        precondition_rv=pre.get("resourceVersion") or "",
    )


def _success() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


class Eviction:
    """The pods/eviction subresource over an ObjectStore."""

    def __init__(
        self,
        objects: ObjectStore,
        pods: Kind,
        pdbs: Kind,
        clock: Callable[[], datetime] = objutil.now,
    ) -> None:
        self.objects = objects
        self.pods = pods
        self.pdbs = pdbs
        self.clock = clock

    async def __call__(self, info: RequestInfo, body: Obj, opts: WriteOptions) -> tuple[Obj, int]:
        self._check_body(info, body)
        original = _delete_options(body, opts.dry_run)
        ns, name = info.namespace, info.name
        pod = await self._delete_if_pdb_ignorable(ns, name, original, opts)
        if pod is None:
            return _success(), 201
        pdbs = await self._budgets_for(pod)
        if len(pdbs) > 1:
            failure = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the "
                "eviction subresource does not support.",
                "code": 500,
            }
            return failure, 500
        guard_rv = False
        pdb_name = ""
        if pdbs:
            pdb = pdbs[0]
            pdb_name = pdb["metadata"]["name"]
            guard_rv = self._unhealthy_pod_may_go(pod, pdb)
            if not guard_rv:
                await self._spend_budget(pod, pdb, original.dry_run)
        delete_opts = original
        if guard_rv:
            delete_opts = copy.copy(original)
            delete_opts.precondition_rv = pod["metadata"]["resourceVersion"]
        try:
            await self._mark_and_delete(ns, name, delete_opts, opts)
        except ApiError as e:
            if e.code == 409 and guard_rv and not original.precondition_rv:
                raise still_processing(pdb_name) from e
            raise
        return _success(), 201

    def _check_body(self, info: RequestInfo, body: Obj) -> None:
        api_version = body.get("apiVersion")
        if api_version is not None and api_version not in EVICTION_VERSIONS:
            raise status.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                "API version (policy/v1)"
            )
        if body.get("kind") not in (None, "Eviction"):
            raise status.bad_request(f"not a Eviction object: {body.get('kind')}")
        md = body.get("metadata") or {}
        if md.get("namespace") and md["namespace"] != info.namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        if md.get("name", "") != info.name:
            raise status.bad_request("name in URL does not match name in Eviction object")

    async def _delete_if_pdb_ignorable(
        self, ns: str, name: str, original: DeleteOptions, opts: WriteOptions
    ) -> Obj | None:
        """Delete a pod no budget guards; the pod (for the budget checks) otherwise, None when
        it was deleted. Conflicts are retried unless the client set a resourceVersion."""
        for attempt in range(RETRIES):
            pod = await self.objects.get(self.pods, ns, name)
            if not can_ignore_pdb(pod):
                return pod
            delete_opts = original
            if _should_enforce_rv(pod) and not original.precondition_rv:
                delete_opts = copy.copy(original)
                delete_opts.precondition_rv = pod["metadata"]["resourceVersion"]
            try:
                await self._mark_and_delete(ns, name, delete_opts, opts)
            except ApiError as e:
                if e.code != 409 or original.precondition_rv or attempt == RETRIES - 1:
                    raise
                await asyncio.sleep(RETRY_DELAY)
                continue
            return None
        raise status.conflict(self.pods.group_resource, name)

    async def _budgets_for(self, pod: Obj) -> list[Obj]:
        """The budgets whose (non-empty) selector matches the pod."""
        md = pod["metadata"]
        listed = await self.objects.list(self.pdbs, md.get("namespace", ""), ListOptions())
        found = []
        for pdb in listed.items:
            try:
                selector = label_selector_from_object((pdb.get("spec") or {}).get("selector"))
            except SelectorError:
                continue
            if selector.empty or not selector.matches(md.get("labels")):
                continue
            found.append(pdb)
        return found

    @staticmethod
    def _unhealthy_pod_may_go(pod: Obj, pdb: Obj) -> bool:
        """An unready pod is deleted without spending the budget when the policy is
        AlwaysAllow, or (IfHealthyBudget) while the guarded application is healthy."""
        if is_pod_ready(pod):
            return False
        if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return True
        st = pdb.get("status") or {}
        desired = int(st.get("desiredHealthy") or 0)
        return int(st.get("currentHealthy") or 0) >= desired > 0

    async def _spend_budget(self, pod: Obj, pdb: Obj, dry_run: bool) -> None:
        """checkAndDecrement with a re-read and retry on conflict."""
        ns, name = pdb["metadata"].get("namespace", ""), pdb["metadata"]["name"]
        for attempt in range(RETRIES):
            if attempt:
                await asyncio.sleep(RETRY_DELAY)
                pdb = await self.objects.get(self.pdbs, ns, name)
            try:
                await self._check_and_decrement(pod["metadata"]["name"], pdb, dry_run)
                return
            except ApiError as e:
                if e.code != 409:
                    raise
        raise ApiError(
            504,
            "Timeout",
            f'Timeout: couldn\'t update PodDisruptionBudget "{name}" due to conflicts',
            details={"retryAfterSeconds": 10},
        )

    async def _check_and_decrement(self, pod_name: str, pdb: Obj, dry_run: bool) -> None:
        md = pdb["metadata"]
        st = pdb.get("status") or {}
        if int(st.get("observedGeneration") or 0) < int(md.get("generation") or 0):
            raise still_processing(md["name"])
        allowed = int(st.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise _forbidden_pdb(md["name"], "pdb disruptions allowed is negative")
        if len(st.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise _forbidden_pdb(
                md["name"],
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            )
        if allowed == 0:
            raise too_many_requests(
                f"The disruption budget {md['name']} needs {int(st.get('desiredHealthy') or 0)} "
                f"healthy pods and has {int(st.get('currentHealthy') or 0)} currently",
                0,
            )
        if dry_run:
            return
        new = copy.deepcopy(pdb)
        new_status = new.setdefault("status", {})
        new_status["disruptionsAllowed"] = allowed - 1
        now = self.clock()
        if allowed - 1 == 0:
            update_disruption_allowed_condition(new_status, now)
        new_status.setdefault("disruptedPods", {})[pod_name] = format_time(now)
        await self.objects.update(
            self.pdbs,
            md.get("namespace", ""),
            md["name"],
            new,
            WriteOptions(subresource="status", field_manager="kube-apiserver"),
        )

    async def _mark_and_delete(
        self, ns: str, name: str, delete_opts: DeleteOptions, opts: WriteOptions
    ) -> None:
        """addConditionAndDeletePod: the DisruptionTarget condition, then the delete (the
        resourceVersion precondition follows our own status write)."""
        if not delete_opts.dry_run:
            now = self.clock()

            async def mark(current: Obj | None) -> Obj | None:
                if current is None:
                    return None
                cmd = current["metadata"]
                if delete_opts.precondition_uid and delete_opts.precondition_uid != cmd.get("uid"):
                    raise status.conflict(
                        "Pod",
                        name,
                        f"the UID in the precondition ({delete_opts.precondition_uid}) does "
                        f"not match the UID in record ({cmd.get('uid')}). The object might "
                        "have been deleted and then recreated",
                    )
                rv = delete_opts.precondition_rv
                if rv and rv != cmd.get("resourceVersion"):
                    raise status.conflict(
                        "Pod",
                        name,
                        f"the ResourceVersion in the precondition ({rv}) does not match the "
                        f"ResourceVersion in record ({cmd.get('resourceVersion')}). The object "
                        "might have been modified",
                    )
                cmd.pop("resourceVersion", None)
                return current if _add_disruption_target(current, now) else None

            updated, _ = await self.objects.modify(
                self.pods,
                ns,
                name,
                mark,
                WriteOptions(
                    subresource="status",
                    field_manager=opts.field_manager,
                    requester=opts.requester,
                    user=opts.user,
                ),
            )
            if delete_opts.precondition_rv:
                delete_opts = copy.copy(delete_opts)
                delete_opts.precondition_rv = updated["metadata"]["resourceVersion"]
        await self.objects.delete(self.pods, ns, name, delete_opts)


def _add_disruption_target(pod: Obj, now: datetime) -> bool:
    """Set the DisruptionTarget condition (EvictionByEvictionAPI); False if already so."""
    conditions: list[Obj] = pod.setdefault("status", {}).setdefault("conditions", [])
    wanted = {
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    }
    for cond in conditions:
        if cond.get("type") == "DisruptionTarget":
            if all(cond.get(k) == v for k, v in wanted.items()):
                return False
            if cond.get("status") != "True":
                cond["lastTransitionTime"] = format_time(now)
            cond.update(wanted)
            return True
    conditions.append({**wanted, "lastTransitionTime": format_time(now)})
    return True


def eviction_action(
    objects: ObjectStore, registry: Registry, clock: Callable[[], datetime] = objutil.now
) -> Action:
    """The Action to register as ``ResourceAPI.actions[("", "pods", "eviction")]``."""
    pods = registry.by_resource("", "v1", "pods")
    pdbs = registry.by_resource("policy", "v1", "poddisruptionbudgets")
    assert pods is not None and pdbs is not None
    return Eviction(objects, pods, pdbs, clock)
