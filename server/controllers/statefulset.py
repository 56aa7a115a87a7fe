"""The StatefulSet controller: pods with stable names ``<set>-<ordinal>``, stable storage
(PersistentVolumeClaims from ``volumeClaimTemplates``, created before the pod) and ordered
rollout, after upstream's ``pkg/controller/statefulset``.

``OrderedReady`` creates ordinal i only once 0..i-1 are Running and Ready and removes the
highest ordinal first, one at a time, waiting for it to be gone; ``Parallel`` does both
eagerly. ``RollingUpdate`` replaces pods at ordinals >= ``partition`` from the highest down,
one at a time and only while the rest are available; ``OnDelete`` replaces a pod only when
it is deleted. Each pod template is recorded as a ControllerRevision ``<set>-<hash>``.
Deleting a set deletes nothing here: the garbage collector follows ownerReferences.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from edgek.objects import Obj
from edgek.podstate import is_pod_available, is_pod_ready, is_pod_terminating, pod_phase
from edgek.selectors import LabelSelector, SelectorError, label_selector_from_object
from edgek.status import ApiError
from server.cache import index_owner_uid
from server.controllers import history
from server.controllers.podutil import controller_keys, owner_reference, pod_from_template
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

log = logging.getLogger("edgek.controllers.statefulset")

API_VERSION = "apps/v1"
KIND = "StatefulSet"
#: Labels every StatefulSet pod carries (besides ``controller-revision-hash``).
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

_ORDINAL = re.compile(r"^(.*)-([0-9]+)$")
_OMIT_ZERO = ("observedGeneration", "readyReplicas", "currentReplicas", "updatedReplicas")


def parent_and_ordinal(name: str) -> tuple[str, int]:
    """The set name and ordinal encoded in a pod name (``("", -1)`` when there is none)."""
    m = _ORDINAL.match(name)
    if m is None:
        return "", -1
    ordinal = int(m.group(2))
    return (m.group(1), ordinal) if ordinal < 2**31 else ("", -1)


def pod_name(sts: Obj, ordinal: int) -> str:
    return f"{sts['metadata']['name']}-{ordinal}"


def claim_name(sts: Obj, template_name: str, ordinal: int) -> str:
    """``<claim>-<set>-<ordinal>``: the PVC of one ordinal for one claim template."""
    return f"{template_name}-{sts['metadata']['name']}-{ordinal}"


def start_ordinal(sts: Obj) -> int:
    return int(((sts.get("spec") or {}).get("ordinals") or {}).get("start") or 0)


def pod_revision(pod: Obj) -> str:
    return (pod["metadata"].get("labels") or {}).get(history.REVISION_HASH_LABEL, "")


def running_and_ready(pod: Obj) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def running_and_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    return pod_phase(pod) == "Running" and is_pod_available(pod, min_ready_seconds, now)


def _unavailable(pod: Obj | None, min_ready_seconds: int, now: datetime) -> bool:
    return (
        pod is None
        or is_pod_terminating(pod)
        or not running_and_available(pod, min_ready_seconds, now)
    )


def _is_member(sts: Obj, pod: Obj) -> bool:
    parent, ordinal = parent_and_ordinal(pod["metadata"]["name"])
    return ordinal >= 0 and parent == sts["metadata"]["name"]


def _identity_matches(sts: Obj, pod: Obj) -> bool:
    _, ordinal = parent_and_ordinal(pod["metadata"]["name"])
    labels = pod["metadata"].get("labels") or {}
    return (
        _is_member(sts, pod)
        and labels.get(POD_NAME_LABEL) == pod["metadata"]["name"]
        and labels.get(POD_INDEX_LABEL) == str(ordinal)
    )


def _retention(sts: Obj) -> tuple[str, str]:
    """(whenScaled, whenDeleted) of the PVC retention policy."""
    policy = (sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenScaled") or "Retain", policy.get("whenDeleted") or "Retain"


def new_pod(sts: Obj, template: Obj, revision: str, ordinal: int) -> Obj:
    """The pod of ``ordinal`` from ``template``: identity labels, hostname/subdomain and a
    volume per claim template."""
    name = pod_name(sts, ordinal)
    pod = pod_from_template(template, sts, API_VERSION, KIND, name=name)
    labels = pod["metadata"].setdefault("labels", {})
    labels[POD_NAME_LABEL] = name
    labels[POD_INDEX_LABEL] = str(ordinal)
    labels[history.REVISION_HASH_LABEL] = revision
    spec = pod["spec"]
    spec["hostname"] = name
    service = (sts.get("spec") or {}).get("serviceName")
    if service:
        spec["subdomain"] = service
    claims = [t["metadata"]["name"] for t in _claim_templates(sts)]
    if claims:
        volumes = [
            {"name": c, "persistentVolumeClaim": {"claimName": claim_name(sts, c, ordinal)}}
            for c in claims
        ]
        volumes += [v for v in spec.get("volumes") or [] if v.get("name") not in claims]
        spec["volumes"] = volumes
    return pod


def _claim_templates(sts: Obj) -> list[Obj]:
    return list((sts.get("spec") or {}).get("volumeClaimTemplates") or [])


class _Round:
    """One reconcile pass over a set: its pods split into replicas (by ordinal slot) and
    condemned pods (ordinals outside the range, highest first)."""

    def __init__(self, sts: Obj, pods: list[Obj], now: datetime) -> None:
        spec = sts.get("spec") or {}
        self.now = now
        self.min_ready = int(spec.get("minReadySeconds") or 0)
        self.start = start_ordinal(sts)
        count = int(spec.get("replicas", 1))
        self.replicas: list[Obj | None] = [None] * count
        self.condemned: list[Obj] = []
        for pod in pods:
            _, ordinal = parent_and_ordinal(pod["metadata"]["name"])
            if self.start <= ordinal < self.start + count:
                self.replicas[ordinal - self.start] = pod
            elif ordinal >= 0:
                self.condemned.append(pod)
        self.condemned.sort(key=lambda p: -parent_and_ordinal(p["metadata"]["name"])[1])
        self.first_unavailable: Obj | None = None
        for slot in self.replicas:
            if slot is not None and _unavailable(slot, self.min_ready, now):
                self.first_unavailable = slot
                break
        if self.first_unavailable is None:
            for pod in reversed(self.condemned):
                if _unavailable(pod, self.min_ready, now):
                    self.first_unavailable = pod
                    break

    def existing(self) -> Iterable[Obj]:
        yield from (p for p in self.replicas if p is not None)
        yield from self.condemned

    def unavailable(self, pod: Obj | None) -> bool:
        return _unavailable(pod, self.min_ready, self.now)

    def available(self, pod: Obj) -> bool:
        return running_and_available(pod, self.min_ready, self.now)


class _Targets:
    """What an update pass aims at: the pod management and update strategies, and the
    templates of the current and the update revision."""

    def __init__(self, sts: Obj, current: Obj, update: Obj) -> None:
        spec = sts.get("spec") or {}
        strategy = spec.get("updateStrategy") or {}
        self.monotonic = spec.get("podManagementPolicy") != "Parallel"
        self.strategy_type = strategy.get("type")
        self.rolling = strategy.get("rollingUpdate")
        self.partition = int((self.rolling or {}).get("partition") or 0)
        self.current = (history.revision_template(current), current["metadata"]["name"])
        self.update = (history.revision_template(update), update["metadata"]["name"])
        self.stored_current = int((sts.get("status") or {}).get("currentReplicas") or 0)

    def revision_for(self, ordinal: int, start: int) -> tuple[Obj, str]:
        """(template, revision name) a missing pod of ``ordinal`` is created from."""
        if self.rolling is None:
            on_current = self.strategy_type == "RollingUpdate" and (
                ordinal < start + self.stored_current
            )
        else:
            on_current = ordinal < self.partition
        return self.current if on_current else self.update


class StatefulSetController(Controller):
    """Keeps each StatefulSet's ordinal pods, claims, revisions and status."""

    name = "statefulset"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.sets_kind = ctx.kind("apps", "statefulsets")
        self.pods_kind = ctx.kind("", "pods")
        self.claims_kind = ctx.kind("", "persistentvolumeclaims")
        self.revisions_kind = ctx.kind("apps", "controllerrevisions")
        self.sets = ctx.cache("apps", "statefulsets")
        self.pods = ctx.cache("", "pods")
        self.claims = ctx.cache("", "persistentvolumeclaims")
        self.revisions = ctx.cache("apps", "controllerrevisions")
        self.pods.add_index("owner", index_owner_uid)
        self.revisions.add_index("owner", index_owner_uid)
        self.sets.on_event(self._set_event)
        self.pods.on_event(self._dependent_event)
        self.revisions.on_event(self._dependent_event)
        self.claims.on_event(self._claim_event)

    # -- event handlers ----------------------------------------------------------

    def _set_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new or old
        if obj is not None:
            self.queue.enqueue(key_of(obj))

    def _dependent_event(self, old: Obj | None, new: Obj | None) -> None:
        for obj in (old, new):
            if obj is not None:
                for key in controller_keys(obj, KIND, self.sets):
                    self.queue.enqueue(key)

    def _claim_event(self, old: Obj | None, new: Obj | None) -> None:
        """A claim of a set's pod changed (e.g. deleted while its pod is pending)."""
        obj = new or old
        if obj is None:
            return
        namespace = obj["metadata"].get("namespace", "")
        parent, _ = parent_and_ordinal(obj["metadata"]["name"])
        for sts in self.sets.items(namespace):
            name = sts["metadata"]["name"]
            if parent.endswith(f"-{name}") and _claim_templates(sts):
                self.queue.enqueue(key_of(sts))

    # -- reconcile ---------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        sts = self.sets.get(namespace, name)
        if sts is None:
            return
        try:
            selector = label_selector_from_object((sts.get("spec") or {}).get("selector"))
        except SelectorError as e:
            self.record(sts, "Warning", "InvalidSelector", f"invalid selector: {e}")
            return
        pods = await self._claim_pods(sts, selector)
        revisions = await history.claim_revisions(
            self.ctx.objects,
            self.revisions_kind,
            self.revisions,
            sts,
            API_VERSION,
            KIND,
            self.write_options(),
            selector,
        )
        revisions = history.sort_revisions(revisions)
        current, update, collisions = await self._revisions(sts, revisions)
        rnd = _Round(sts, pods, self.ctx.clock())
        status = _status(sts, rnd, current, update, collisions)
        try:
            await self._update_set(sts, rnd, current, update, status)
        finally:
            await self._write_status(sts, status)
        if rnd.min_ready > 0 and status.get("readyReplicas", 0) != status["availableReplicas"]:
            self.queue.enqueue_after(key, rnd.min_ready)
        live = {current["metadata"]["name"], update["metadata"]["name"]}
        live.update(pod_revision(p) for p in pods)
        limit = int((sts.get("spec") or {}).get("revisionHistoryLimit", 10))
        await history.truncate_history(
            self.ctx.objects, self.revisions_kind, revisions, live, limit
        )

    async def _update_set(
        self, sts: Obj, rnd: _Round, current: Obj, update: Obj, status: Obj
    ) -> None:
        """Create, fix and delete pods toward the desired state (upstream updateStatefulSet)."""
        if sts["metadata"].get("deletionTimestamp"):
            return
        targets = _Targets(sts, current, update)
        monotonic = targets.monotonic

        async def replica(i: int) -> bool:
            return await self._sync_replica(sts, rnd, targets, i)

        if await _run_for_all(len(rnd.replicas), replica, monotonic):
            return

        async def claim_owners(i: int) -> bool:
            pod = rnd.condemned[i]
            _, ordinal = parent_and_ordinal(pod["metadata"]["name"])
            await self._sync_claim_owners(sts, pod, ordinal, scaled_down=True)
            return False

        await _run_for_all(len(rnd.condemned), claim_owners, monotonic)

        async def condemned(i: int) -> bool:
            return await self._delete_condemned(sts, rnd, rnd.condemned[i], monotonic)

        if await _run_for_all(len(rnd.condemned), condemned, monotonic):
            return
        if targets.strategy_type != "OnDelete":
            await self._roll_one(sts, rnd, targets, status)

    async def _sync_replica(self, sts: Obj, rnd: _Round, targets: _Targets, i: int) -> bool:
        """Create, replace or fix the pod of replica slot ``i``; whether a monotonic pass
        stops here."""
        pod = rnd.replicas[i]
        ordinal = rnd.start + i
        if pod is not None and pod_phase(pod) in ("Failed", "Succeeded"):
            if not is_pod_terminating(pod):
                await self._delete_pod(sts, pod)
            return True
        if pod is None:
            if self._claims_stale(sts, ordinal):
                return True
            template, revision = targets.revision_for(ordinal, rnd.start)
            await self._create_pod(sts, new_pod(sts, template, revision, ordinal), ordinal)
            return targets.monotonic
        if pod_phase(pod) == "Pending":
            await self._create_claims(sts, pod, ordinal)
        if targets.monotonic and (
            is_pod_terminating(pod) or not running_and_ready(pod) or not rnd.available(pod)
        ):
            return True
        if not _identity_matches(sts, pod):
            await self._fix_identity(sts, pod, ordinal)
        await self._sync_claim_owners(sts, pod, ordinal, scaled_down=False)
        return False

    async def _delete_condemned(self, sts: Obj, rnd: _Round, pod: Obj, monotonic: bool) -> bool:
        """Delete a pod beyond the replica range (monotonic: one at a time, and only while
        the others are available); whether the pass stops here."""
        if is_pod_terminating(pod):
            return monotonic
        if monotonic and pod is not rnd.first_unavailable and rnd.unavailable(pod):
            return True
        await self._delete_pod(sts, pod)
        return True

    async def _roll_one(self, sts: Obj, rnd: _Round, targets: _Targets, status: Obj) -> None:
        """Rolling update: delete the highest-ordinal outdated pod above the partition once
        every pod above it runs the update revision and is available."""
        for target in range(len(rnd.replicas) - 1, targets.partition - 1, -1):
            pod = rnd.replicas[target]
            if pod is None:
                return
            if pod_revision(pod) != targets.update[1] and not is_pod_terminating(pod):
                await self._delete_pod(sts, pod)
                status["currentReplicas"] = int(status.get("currentReplicas", 0)) - 1
                return
            if rnd.unavailable(pod):
                return

    # -- ownership -----------------------------------------------------------------

    async def _claim_pods(self, sts: Obj, selector: LabelSelector) -> list[Obj]:
        """The set's pods: adopt matching orphans, release owned pods that stopped matching."""
        return await history.claim(
            self.ctx.objects,
            self.pods_kind,
            self.pods.items(sts["metadata"].get("namespace", "")),
            sts,
            API_VERSION,
            KIND,
            self.write_options(),
            lambda pod: (
                _is_member(sts, pod) and selector.matches(pod["metadata"].get("labels") or {})
            ),
        )

    # -- revisions -----------------------------------------------------------------

    async def _revisions(self, sts: Obj, revisions: list[Obj]) -> tuple[Obj, Obj, int]:
        """(current revision, update revision, collision count); creates the update
        revision, or renumbers an equal older one (a rollback)."""
        collisions = int((sts.get("status") or {}).get("collisionCount") or 0)
        template = (sts.get("spec") or {}).get("template") or {}
        candidate = history.new_revision(
            sts,
            API_VERSION,
            KIND,
            history.template_patch(sts),
            history.next_revision(revisions),
            labels=(template.get("metadata") or {}).get("labels") or {},
            collision_count=collisions,
        )
        equal = [r for r in revisions if history.equal_revision(r, candidate)]
        opts = self.write_options()
        if equal and history.equal_revision(revisions[-1], equal[-1]):
            update = revisions[-1]
        elif equal:
            update = await history.set_revision_number(
                self.ctx.objects, self.revisions_kind, equal[-1], candidate["revision"], opts
            )
        else:
            update, collisions = await history.create_revision(
                self.ctx.objects, self.revisions_kind, candidate, collisions, opts
            )
        wanted = (sts.get("status") or {}).get("currentRevision")
        current = next((r for r in revisions if r["metadata"]["name"] == wanted), update)
        return current, update, collisions

    # -- pods and claims -------------------------------------------------------------

    async def _create_pod(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        name = pod["metadata"]["name"]
        try:
            await self._create_claims(sts, pod, ordinal)
            await self.ctx.objects.create(
                self.pods_kind, sts["metadata"].get("namespace", ""), pod, self.write_options()
            )
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                return  # the cache is behind; its event brings us back
            self._pod_event(sts, "create", name, e)
            raise
        self._pod_event(sts, "create", name, None)

    async def _delete_pod(self, sts: Obj, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.ctx.objects.delete(
                self.pods_kind,
                md.get("namespace", ""),
                md["name"],
                DeleteOptions(precondition_uid=md.get("uid", "")),
            )
        except ApiError as e:
            if e.code in (404, 409):
                return  # already gone or replaced: the cache is behind
            self._pod_event(sts, "delete", md["name"], e)
            raise
        self._pod_event(sts, "delete", md["name"], None)

    def _pod_event(self, sts: Obj, verb: str, pod: str, err: ApiError | None) -> None:
        name = sts["metadata"]["name"]
        if err is None:
            self.record(
                sts,
                "Normal",
                f"Successful{verb.title()}",
                f"{verb} Pod {pod} in StatefulSet {name} successful",
            )
        else:
            self.record(
                sts,
                "Warning",
                f"Failed{verb.title()}",
                f"{verb} Pod {pod} in StatefulSet {name} failed error: {err.message}",
            )

    async def _fix_identity(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        async def mutate(current: Obj | None) -> Obj | None:
            if current is None or current["metadata"].get("uid") != pod["metadata"]["uid"]:
                return None
            labels = current["metadata"].setdefault("labels", {})
            labels[POD_NAME_LABEL] = current["metadata"]["name"]
            labels[POD_INDEX_LABEL] = str(ordinal)
            return current

        md = pod["metadata"]
        try:
            await self.ctx.objects.modify(
                self.pods_kind, md.get("namespace", ""), md["name"], mutate, self.write_options()
            )
        except ApiError as e:
            if e.code != 404:
                self._pod_event(sts, "update", md["name"], e)
                raise

    def _claim_body(self, sts: Obj, template: Obj, ordinal: int) -> Obj:
        tmd = template.get("metadata") or {}
        labels = dict(tmd.get("labels") or {})
        labels.update(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        md: Obj = {"name": claim_name(sts, tmd["name"], ordinal), "labels": labels}
        if tmd.get("annotations"):
            md["annotations"] = dict(tmd["annotations"])
        if _retention(sts)[1] == "Delete":
            md["ownerReferences"] = [owner_reference(sts, API_VERSION, KIND)]
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": md,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }

    async def _create_claims(self, sts: Obj, pod: Obj, ordinal: int) -> None:
        """Create the pod's missing claims (before the pod itself)."""
        namespace = sts["metadata"].get("namespace", "")
        set_name = sts["metadata"]["name"]
        for template in _claim_templates(sts):
            body = self._claim_body(sts, template, ordinal)
            claim = body["metadata"]["name"]
            if self.claims.get(namespace, claim) is not None:
                continue
            pod_name_ = pod["metadata"]["name"]
            try:
                await self.ctx.objects.create(
                    self.claims_kind, namespace, body, self.write_options()
                )
            except ApiError as e:
                if e.code == 409 and e.reason == "AlreadyExists":
                    continue
                self.record(
                    sts,
                    "Warning",
                    "FailedCreate",
                    f"create Claim {claim} for Pod {pod_name_} in StatefulSet {set_name} "
                    f"failed error: {e.message}",
                )
                raise
            self.record(
                sts,
                "Normal",
                "SuccessfulCreate",
                f"create Claim {claim} Pod {pod_name_} in StatefulSet {set_name} success",
            )

    def _claims_stale(self, sts: Obj, ordinal: int) -> bool:
        """Whether a claim of a pod about to be created is still being deleted, or still
        owned by a previous pod of that ordinal (the garbage collector removes it)."""
        namespace = sts["metadata"].get("namespace", "")
        name = pod_name(sts, ordinal)
        for template in _claim_templates(sts):
            claim = self.claims.get(
                namespace, claim_name(sts, template["metadata"]["name"], ordinal)
            )
            if claim is None:
                continue
            if claim["metadata"].get("deletionTimestamp"):
                return True
            for ref in claim["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Pod" and ref.get("name") == name:
                    return True
        return False

    async def _sync_claim_owners(
        self, sts: Obj, pod: Obj, ordinal: int, *, scaled_down: bool
    ) -> None:
        """Owner references on the pod's claims per the retention policy: the set owns them
        when ``whenDeleted`` is Delete, the pod owns them once scaled away when
        ``whenScaled`` is Delete; otherwise neither does."""
        when_scaled, when_deleted = _retention(sts)
        pod_owns = when_scaled == "Delete" and scaled_down
        set_owns = when_deleted == "Delete" and not pod_owns
        set_uid, pod_uid = sts["metadata"]["uid"], pod["metadata"].get("uid", "")
        namespace = sts["metadata"].get("namespace", "")
        for template in _claim_templates(sts):
            claim = self.claims.get(
                namespace, claim_name(sts, template["metadata"]["name"], ordinal)
            )
            if claim is None or claim["metadata"].get("deletionTimestamp"):
                continue
            refs = claim["metadata"].get("ownerReferences") or []
            have_set = any(r.get("uid") == set_uid for r in refs)
            have_pod = any(r.get("uid") == pod_uid for r in refs)
            if have_set == set_owns and have_pod == pod_owns:
                continue

            async def mutate(current: Obj | None) -> Obj | None:
                if current is None:
                    return None
                kept = [
                    r
                    for r in current["metadata"].get("ownerReferences") or []
                    if r.get("uid") not in (set_uid, pod_uid)
                ]
                if set_owns:
                    kept.append(owner_reference(sts, API_VERSION, KIND))
                if pod_owns:
                    kept.append(owner_reference(pod, "v1", "Pod", controller=False))
                current["metadata"]["ownerReferences"] = kept
                return current

            try:
                await self.ctx.objects.modify(
                    self.claims_kind,
                    namespace,
                    claim["metadata"]["name"],
                    mutate,
                    self.write_options(),
                )
            except ApiError as e:
                if e.code != 404:
                    raise

    # -- status --------------------------------------------------------------------

    async def _write_status(self, sts: Obj, status: Obj) -> None:
        spec = sts.get("spec") or {}
        if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate" and (
            status.get("updatedReplicas", 0) == status["replicas"] == status.get("readyReplicas", 0)
        ):
            status["currentReplicas"] = status.get("updatedReplicas", 0)
            status["currentRevision"] = status["updateRevision"]
        body = {k: v for k, v in status.items() if not (k in _OMIT_ZERO and not v)}
        await self.replace_status(self.sets_kind, sts, body)


def _status(sts: Obj, rnd: _Round, current: Obj, update: Obj, collisions: int) -> Obj:
    status: Obj = {
        "observedGeneration": int(sts["metadata"].get("generation") or 0),
        "currentRevision": current["metadata"]["name"],
        "updateRevision": update["metadata"]["name"],
        "collisionCount": collisions,
    }
    _count(status, rnd, current, update)
    return status


def _count(status: Obj, rnd: _Round, current: Obj, update: Obj) -> None:
    """Replica counts over the round's pods (upstream computeReplicaStatus)."""
    replicas = ready = available = current_n = updated = 0
    for pod in rnd.existing():
        replicas += 1
        if running_and_ready(pod):
            ready += 1
            if rnd.available(pod):
                available += 1
        if not is_pod_terminating(pod):
            revision = pod_revision(pod)
            current_n += revision == current["metadata"]["name"]
            updated += revision == update["metadata"]["name"]
    status.update(
        replicas=replicas,
        readyReplicas=ready,
        availableReplicas=available,
        currentReplicas=current_n,
        updatedReplicas=updated,
    )


async def _run_for_all(count: int, fn: Callable[[int], Awaitable[bool]], monotonic: bool) -> bool:
    """Run ``fn`` over 0..count-1: in order, stopping at the first that blocks
    (monotonic), or all at once. True when the round should end here."""
    if monotonic:
        for i in range(count):
            if await fn(i):
                return True
        return False
    results = await asyncio.gather(*(fn(i) for i in range(count)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return False
