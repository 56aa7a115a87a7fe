"""The Deployment controller: rolls Deployments out through ReplicaSets, as upstream's
``pkg/controller/deployment``.

Each pod template gets a ReplicaSet named ``<deployment>-<pod-template-hash>``; the
Deployment scales it up and the older sets down within maxSurge/maxUnavailable
(RollingUpdate) or all old ones to zero first (Recreate), records revisions, keeps
``revisionHistoryLimit`` old sets for ``kubectl rollout undo`` (which, client side, writes
an old set's template back: the set with an equal template is simply reused under a new
revision), scales proportionally when resized mid-rollout, and reports the Available and
Progressing conditions ``kubectl rollout status`` waits on. Deleting is the garbage
collector's job.
"""

from __future__ import annotations

import contextlib
import copy
from datetime import datetime

from edgek import objects
from edgek.objects import Obj
from edgek.selectors import LabelSelector
from edgek.status import ApiError
from server.cache import index_owner_uid
from server.controllers import rollout as ro
from server.controllers.podutil import adopt, controller_of, owner_reference, release, selector_of
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

COMPONENT = "deployment-controller"


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    if not isinstance(status, dict):
        status = obj["status"] = {}
    return status


def find_new_rs(d: Obj, rs_list: list[Obj]) -> Obj | None:
    """The oldest replica set whose template equals the deployment's (hash label aside)."""
    template = d["spec"].get("template")
    for rs in sorted(rs_list, key=ro.by_creation):
        if ro.equal_ignore_hash(rs["spec"].get("template"), template):
            return rs
    return None


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only active replica set, the newest one when none is active, or None when
    several are (upstream ``FindActiveOrLatest``)."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=ro.by_creation, reverse=True)
    actives = ro.active([*newest_first, new_rs])
    if not actives:
        return new_rs if new_rs is not None else newest_first[0]
    return actives[0] if len(actives) == 1 else None


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The new set holds, is meant to hold, and has available all desired replicas."""
    if rs is None:
        return False
    want = ro.replicas(d)
    return (
        ro.replicas(rs) == want
        and ro.desired_replicas_annotation(rs) == want
        and ro.status_int(rs, "availableReplicas") == want
    )


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, d: Obj, now: datetime) -> Obj:
    """The deployment status the replica sets add up to, with the Available condition."""
    available = ro.total_status(all_rss, "availableReplicas")
    counters = {
        "observedGeneration": int(d["metadata"].get("generation") or 0),
        "replicas": ro.total_status(all_rss, "replicas"),
        "updatedReplicas": ro.status_int(new_rs, "replicas"),
        "readyReplicas": ro.total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(ro.total_replicas(all_rss) - available, 0),
    }
    status = ro.compact(counters)
    old = d.get("status") or {}
    if old.get("conditions"):
        status["conditions"] = [dict(c) for c in old["conditions"]]
    if old.get("collisionCount") is not None:
        status["collisionCount"] = old["collisionCount"]
    if available >= ro.replicas(d) - ro.max_unavailable(d):
        cond = ro.new_condition(
            "Available",
            "True",
            ro.REASON_MIN_AVAILABLE,
            "Deployment has minimum availability.",
            now,
        )
    else:
        cond = ro.new_condition(
            "Available",
            "False",
            ro.REASON_MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            now,
        )
    ro.set_condition(status, cond)
    return status


class DeploymentController(Controller):
    """Rolls out Deployments through ReplicaSets and reports their progress."""

    name = "deployment"
    workers = 5

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.kind = ctx.kind("apps", "deployments")
        self.rs_kind = ctx.kind("apps", "replicasets")
        self.deployments = ctx.cache("apps", "deployments")
        self.rss = ctx.cache("apps", "replicasets")
        self.pods = ctx.cache("", "pods")
        self.rss.add_index("owner", index_owner_uid)
        self.pods.add_index("owner", index_owner_uid)
        self.deployments.on_event(self._deployment_event)
        self.rss.on_event(self._rs_event)
        self.pods.on_event(self._pod_event)

    # -- events -----------------------------------------------------------------------------

    def _deployment_event(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        if obj is not None:
            self.queue.enqueue(key_of(obj))

    def _owner(self, obj: Obj, ref: Obj | None) -> Obj | None:
        if ref is None or ref.get("kind") != "Deployment":
            return None
        d = self.deployments.get(obj["metadata"].get("namespace", ""), ref.get("name", ""))
        if d is None or objects.uid(d) != ref.get("uid"):
            return None
        return d

    def _enqueue_owner(self, obj: Obj, ref: Obj | None) -> None:
        d = self._owner(obj, ref)
        if d is not None:
            self.queue.enqueue(key_of(d))

    def _enqueue_matching(self, rs: Obj) -> None:
        labels = objects.labels(rs)
        for d in self.deployments.items(rs["metadata"].get("namespace", "")):
            sel = selector_of(d)
            if sel is not None and not sel.empty and sel.matches(labels):
                self.queue.enqueue(key_of(d))

    def _rs_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                self._enqueue_owner(old, controller_of(old))
            return
        ref = controller_of(new)
        if old is None:
            if ref is not None:
                self._enqueue_owner(new, ref)
            else:
                self._enqueue_matching(new)
            return
        old_ref = controller_of(old)
        if old_ref != ref and old_ref is not None:
            self._enqueue_owner(old, old_ref)
        if ref is not None:
            self._enqueue_owner(new, ref)
        elif objects.labels(old) != objects.labels(new) or old_ref != ref:
            self._enqueue_matching(new)

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        """A Recreate rollout waits for old pods to be gone: their deletion wakes it."""
        if new is not None or old is None:
            return
        ref = controller_of(old)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        rs = self.rss.get(old["metadata"].get("namespace", ""), ref.get("name", ""))
        if rs is None:
            return
        d = self._owner(rs, controller_of(rs))
        if d is not None and (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            self.queue.enqueue(key_of(d))

    def _event(self, d: Obj, type_: str, reason: str, message: str) -> None:
        self.ctx.events.record(d, type_, reason, message, component=COMPONENT)

    # -- reconcile -------------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace, name = split_key(key)
        cached = self.deployments.get(namespace, name)
        if cached is None:
            return
        d = copy.deepcopy(cached)
        _status(d)
        selector = selector_of(d)
        if selector is None:
            return
        if selector.empty:
            self._event(
                d,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            generation = int(d["metadata"].get("generation") or 0)
            if int(d["status"].get("observedGeneration") or 0) < generation:
                d["status"]["observedGeneration"] = generation
                await self._put_status(d)
            return
        rs_list = await self._claim_replica_sets(d, selector)
        if d["metadata"].get("deletionTimestamp"):
            new_rs, old_rss = await self._all_rss(d, rs_list, create=False)
            await self._sync_deployment_status(d, [*old_rss, new_rs], new_rs)
            return
        await self._check_paused_conditions(d)
        if d["spec"].get("paused") or await self._is_scaling_event(d, rs_list):
            await self._sync(d, rs_list)
        elif (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            await self._rollout_recreate(d, rs_list)
        else:
            await self._rollout_rolling(d, rs_list)

    # -- replica set ownership ---------------------------------------------------------------

    async def _claim_replica_sets(self, d: Obj, selector: LabelSelector) -> list[Obj]:
        """Private copies of the replica sets this deployment controls, after adopting
        matching orphans and releasing owned sets that stopped matching."""
        uid = objects.uid(d)
        deleting = bool(d["metadata"].get("deletionTimestamp"))
        claimed: list[Obj] = []
        for rs in list(self.rss.items(d["metadata"].get("namespace", ""))):
            ref = controller_of(rs)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if selector.matches(objects.labels(rs)):
                    claimed.append(copy.deepcopy(rs))
                else:
                    await release(self.ctx.objects, self.rs_kind, rs, uid, self.write_options())
            elif (
                not deleting
                and not rs["metadata"].get("deletionTimestamp")
                and selector.matches(objects.labels(rs))
            ):
                adopted = await adopt(
                    self.ctx.objects,
                    self.rs_kind,
                    rs,
                    d,
                    "apps/v1",
                    "Deployment",
                    selector,
                    self.write_options(),
                )
                if adopted is not None:
                    claimed.append(adopted)
        return claimed

    # -- writes ----------------------------------------------------------------------------

    async def _put_status(self, d: Obj) -> None:
        """Write ``d``'s status and annotations (the revision), as upstream's UpdateStatus:
        neither bumps the generation. Its resourceVersion is the precondition."""
        result, _ = await self.ctx.objects.update(
            self.kind,
            d["metadata"].get("namespace", ""),
            objects.name(d),
            copy.deepcopy(d),
            self.write_options("status"),
        )
        d["metadata"]["resourceVersion"] = result["metadata"]["resourceVersion"]

    async def _patch_rs(
        self,
        rs: Obj,
        *,
        size: int | None = None,
        annotations: dict[str, str] | None = None,
        min_ready_seconds: int | None = None,
    ) -> None:
        """Set a replica set's size, annotations and minReadySeconds; ``rs`` (a private
        copy) becomes the stored object. The sizes were computed from ``rs``, so its
        resourceVersion is a precondition (409 when the cache was behind), as upstream's
        updates are: a stale copy must not undo a newer scale-down."""
        uid = objects.uid(rs)
        seen = rs["metadata"].get("resourceVersion")

        async def mutate(current: Obj | None) -> Obj | None:
            if current is None or objects.uid(current) != uid:
                return None
            if seen:
                current["metadata"]["resourceVersion"] = seen
            spec = current.setdefault("spec", {})
            if size is not None:
                spec["replicas"] = size
            if min_ready_seconds is not None:
                if min_ready_seconds:
                    spec["minReadySeconds"] = min_ready_seconds
                else:
                    spec.pop("minReadySeconds", None)
            if annotations:
                objects.ensure_annotations(current).update(annotations)
            return current

        result, _ = await self.ctx.objects.modify(
            self.rs_kind,
            rs["metadata"].get("namespace", ""),
            objects.name(rs),
            mutate,
            self.write_options(),
        )
        if objects.uid(result) != uid:
            raise ApiError(409, "Conflict", f'replica set "{objects.name(rs)}" was replaced')
        rs.clear()
        rs.update(result)

    async def _scale_rs(self, d: Obj, rs: Obj, new_scale: int) -> bool:
        """Resize a replica set (recording the deployment's size on it); whether its size
        changed."""
        old_scale = ro.replicas(rs)
        desired, maximum = ro.replicas(d), ro.replicas(d) + ro.max_surge(d)
        resize = old_scale != new_scale
        if not resize and not ro.replicas_annotations_need_update(rs, desired, maximum):
            return False
        await self._patch_rs(
            rs,
            size=new_scale,
            annotations={ro.DESIRED_REPLICAS: str(desired), ro.MAX_REPLICAS: str(maximum)},
        )
        if resize:
            direction = "up" if new_scale > old_scale else "down"
            self._event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {direction} replica set {objects.name(rs)} to {new_scale} from {old_scale}",
            )
        return resize

    # -- new and old replica sets ------------------------------------------------------------

    async def _all_rss(
        self, d: Obj, rs_list: list[Obj], *, create: bool
    ) -> tuple[Obj | None, list[Obj]]:
        """(new replica set or None, old ones), the new one's revision brought up to date
        and, with ``create``, the new one created when missing."""
        current = find_new_rs(d, rs_list)
        old_rss = [rs for rs in rs_list if rs is not current]
        new_rs = await self._new_rs(d, rs_list, old_rss, create)
        return new_rs, old_rss

    async def _new_rs(
        self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], create: bool
    ) -> Obj | None:
        existing = find_new_rs(d, rs_list)
        new_revision = ro.max_revision(old_rss) + 1
        now = self.ctx.clock()
        if existing is not None:
            updated = copy.deepcopy(existing)
            changed = ro.set_new_rs_annotations(d, updated, new_revision, exists=True)
            min_ready = int(d["spec"].get("minReadySeconds") or 0)
            if changed or int(existing["spec"].get("minReadySeconds") or 0) != min_ready:
                before = (existing["metadata"].get("annotations") or {}).items()
                diff = dict(set(objects.ensure_annotations(updated).items()) - set(before))
                await self._patch_rs(existing, annotations=diff, min_ready_seconds=min_ready)
                return existing
            meta_changed = self._set_revision(d, ro.revision(existing))
            status_changed = False
            if ro.has_progress_deadline(d) and ro.get_condition(d["status"], "Progressing") is None:
                ro.set_condition(
                    d["status"],
                    ro.new_condition(
                        "Progressing",
                        "True",
                        ro.REASON_FOUND_NEW_RS,
                        f'Found new replica set "{objects.name(existing)}"',
                        now,
                    ),
                )
                status_changed = True
            if meta_changed or status_changed:
                await self._put_status(d)
            return existing
        if not create:
            return None
        return await self._create_new_rs(d, rs_list, old_rss, new_revision)

    def _set_revision(self, d: Obj, revision: int) -> bool:
        ann = objects.ensure_annotations(d)
        if ann.get(ro.REVISION) == str(revision):
            return False
        ann[ro.REVISION] = str(revision)
        return True

    async def _create_new_rs(
        self, d: Obj, rs_list: list[Obj], old_rss: list[Obj], new_revision: int
    ) -> Obj:
        namespace = d["metadata"].get("namespace", "")
        template = copy.deepcopy(d["spec"].get("template") or {})
        collisions = d["status"].get("collisionCount")
        pod_hash = ro.template_hash(template, collisions)
        tmd = template.setdefault("metadata", {})
        tmd["labels"] = {**(tmd.get("labels") or {}), ro.HASH_LABEL: pod_hash}
        selector = copy.deepcopy(d["spec"]["selector"])
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), ro.HASH_LABEL: pod_hash}
        spec: Obj = {"replicas": 0, "selector": selector, "template": template}
        if d["spec"].get("minReadySeconds"):
            spec["minReadySeconds"] = d["spec"]["minReadySeconds"]
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{objects.name(d)}-{pod_hash}",
                "namespace": namespace,
                "labels": dict(tmd["labels"]),
                "ownerReferences": [owner_reference(d, "apps/v1", "Deployment")],
            },
            "spec": spec,
        }
        new_replicas = ro.new_rs_new_replicas(d, [*old_rss, rs], rs)
        spec["replicas"] = new_replicas
        ro.set_new_rs_annotations(d, rs, new_revision, exists=False)
        already_exists = False
        now = self.ctx.clock()
        try:
            created = await self.ctx.objects.create(
                self.rs_kind, namespace, copy.deepcopy(rs), self.write_options()
            )
        except ApiError as e:
            if e.code == 409:
                found = await self.ctx.objects.try_get(self.rs_kind, namespace, objects.name(rs))
                ref = controller_of(found) if found is not None else None
                if (
                    found is None
                    or ref is None
                    or ref.get("uid") != objects.uid(d)
                    or not ro.equal_ignore_hash(
                        d["spec"].get("template"), found["spec"]["template"]
                    )
                ):
                    d["status"]["collisionCount"] = int(collisions or 0) + 1
                    await self._put_status(d)
                    raise
                created, already_exists = found, True
            else:
                message = f'Failed to create new replica set "{objects.name(rs)}": {e.message}'
                if ro.has_progress_deadline(d):
                    ro.set_condition(
                        d["status"],
                        ro.new_condition(
                            "Progressing", "False", ro.REASON_RS_CREATE_ERROR, message, now
                        ),
                    )
                    with contextlib.suppress(ApiError):
                        await self._put_status(d)
                self._event(d, "Warning", ro.REASON_RS_CREATE_ERROR, message)
                raise
        if not already_exists and new_replicas > 0:
            self._event(
                d,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {objects.name(created)} to {new_replicas}",
            )
        meta_changed = self._set_revision(d, new_revision)
        status_changed = False
        if not already_exists and ro.has_progress_deadline(d):
            ro.set_condition(
                d["status"],
                ro.new_condition(
                    "Progressing",
                    "True",
                    ro.REASON_NEW_RS_CREATED,
                    f'Created new replica set "{objects.name(created)}"',
                    now,
                ),
            )
            status_changed = True
        rs_list.append(created)
        if meta_changed or status_changed:
            await self._put_status(d)
        return created

    # -- sync (paused or scaling) -------------------------------------------------------------

    async def _check_paused_conditions(self, d: Obj) -> None:
        """Mark (un)pausing in the Progressing condition so a paused spell does not count
        against the progress deadline."""
        if not ro.has_progress_deadline(d):
            return
        cond = ro.get_condition(d["status"], "Progressing")
        if cond is not None and cond.get("reason") == ro.REASON_TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == ro.REASON_PAUSED
        now = self.ctx.clock()
        if d["spec"].get("paused") and not paused_cond:
            new = ro.new_condition(
                "Progressing", "Unknown", ro.REASON_PAUSED, "Deployment is paused", now
            )
        elif not d["spec"].get("paused") and paused_cond:
            new = ro.new_condition(
                "Progressing", "Unknown", ro.REASON_RESUMED, "Deployment is resumed", now
            )
        else:
            return
        ro.set_condition(d["status"], new)
        await self._put_status(d)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """Whether an active replica set was sized for a different deployment size."""
        new_rs, old_rss = await self._all_rss(d, rs_list, create=False)
        for rs in ro.active([*old_rss, new_rs]):
            desired = ro.desired_replicas_annotation(rs)
            if desired is not None and desired != ro.replicas(d):
                return True
        return False

    async def _sync(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_rss(d, rs_list, create=False)
        await self._scale(d, new_rs, old_rss)
        if d["spec"].get("paused"):
            await self._cleanup(d, old_rss)
        await self._sync_deployment_status(d, [*old_rss, new_rs], new_rs)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Resize for a new deployment size, proportionally over the active replica sets
        during a rolling update."""
        target = find_active_or_latest(new_rs, old_rss)
        if target is not None:
            if ro.replicas(target) != ro.replicas(d):
                await self._scale_rs(d, target, ro.replicas(d))
            return
        if is_saturated(d, new_rs):
            for old in ro.active(old_rss):
                await self._scale_rs(d, old, 0)
            return
        if not ro.is_rolling(d):
            return
        all_rss = ro.active([*old_rss, new_rs])
        allowed = ro.replicas(d) + ro.max_surge(d) if ro.replicas(d) > 0 else 0
        to_add = allowed - ro.total_replicas(all_rss)
        if to_add != 0:
            all_rss = ro.sorted_by_size(all_rss, newer_first=to_add > 0)
        added = 0
        sizes: list[int] = []
        for rs in all_rss:
            share = ro.get_proportion(rs, d, to_add, added) if to_add else 0
            sizes.append(ro.replicas(rs) + share)
            added += share
        if all_rss and to_add:
            sizes[0] = max(sizes[0] + to_add - added, 0)
        for rs, size in zip(all_rss, sizes, strict=True):
            await self._scale_rs(d, rs, size)

    async def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest scaled-down replica sets beyond revisionHistoryLimit."""
        if not ro.has_revision_history_limit(d):
            return
        alive = [rs for rs in old_rss if not rs["metadata"].get("deletionTimestamp")]
        excess = len(alive) - int(d["spec"]["revisionHistoryLimit"])
        if excess <= 0:
            return
        for rs in sorted(alive, key=ro.by_revision)[:excess]:
            if (
                ro.status_int(rs, "replicas") != 0
                or ro.replicas(rs) != 0
                or int(rs["metadata"].get("generation") or 0)
                > ro.status_int(rs, "observedGeneration")
            ):
                continue
            try:
                await self.ctx.objects.delete(
                    self.rs_kind,
                    rs["metadata"].get("namespace", ""),
                    objects.name(rs),
                    DeleteOptions(precondition_uid=objects.uid(rs)),
                )
            except ApiError as e:
                if e.code != 404:
                    raise

    async def _sync_deployment_status(
        self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None
    ) -> None:
        status = calculate_status(all_rss, new_rs, d, self.ctx.clock())
        if status != d["status"]:
            d["status"] = status
            await self._put_status(d)

    # -- rollouts ---------------------------------------------------------------------------

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_rss(d, rs_list, create=True)
        assert new_rs is not None
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        if await self._reconcile_new_rs(d, all_rss, new_rs):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if await self._reconcile_old_rss(d, all_rss, ro.active(old_rss), new_rs):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if ro.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    async def _reconcile_new_rs(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj) -> bool:
        want = ro.replicas(d)
        if ro.replicas(new_rs) == want:
            return False
        if ro.replicas(new_rs) > want:
            return await self._scale_rs(d, new_rs, want)
        return await self._scale_rs(d, new_rs, ro.new_rs_new_replicas(d, all_rss, new_rs))

    async def _reconcile_old_rss(
        self, d: Obj, all_rss: list[Obj | None], old_rss: list[Obj], new_rs: Obj
    ) -> bool:
        """Scale old replica sets down as far as maxUnavailable allows: unhealthy replicas
        first, then available ones while enough stay available."""
        if ro.total_replicas(old_rss) == 0:
            return False
        max_unavailable = ro.max_unavailable(d)
        min_available = ro.replicas(d) - max_unavailable
        new_unavailable = ro.replicas(new_rs) - ro.status_int(new_rs, "availableReplicas")
        max_scaled_down = ro.total_replicas(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = await self._cleanup_unhealthy(d, old_rss, max_scaled_down)
        scaled = await self._scale_down_old_for_rolling(d, [*old_rss, new_rs], old_rss)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy(self, d: Obj, old_rss: list[Obj], limit: int) -> int:
        total = 0
        for rs in sorted(old_rss, key=ro.by_creation):
            if total >= limit:
                break
            size, available = ro.replicas(rs), ro.status_int(rs, "availableReplicas")
            if size == 0 or size == available:
                continue
            count = min(limit - total, size - available)
            await self._scale_rs(d, rs, size - count)
            total += count
        return total

    async def _scale_down_old_for_rolling(
        self, d: Obj, all_rss: list[Obj | None], old_rss: list[Obj]
    ) -> int:
        min_available = ro.replicas(d) - ro.max_unavailable(d)
        available = ro.total_status(all_rss, "availableReplicas")
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in sorted(old_rss, key=ro.by_creation):
            if total >= budget:
                break
            size = ro.replicas(rs)
            if size == 0:
                continue
            count = min(size, budget - total)
            await self._scale_rs(d, rs, size - count)
            total += count
        return total

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_rss(d, rs_list, create=False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled_down = False
        for rs in ro.active(old_rss):
            scaled_down = await self._scale_rs(d, rs, 0) or scaled_down
        if scaled_down or self._old_pods_running(new_rs, old_rss):
            await self._sync_rollout_status(d, all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old_rss = await self._all_rss(d, rs_list, create=True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_rs(d, new_rs, ro.replicas(d))
        if ro.deployment_complete(d, d["status"]):
            await self._cleanup(d, old_rss)
        await self._sync_rollout_status(d, all_rss, new_rs)

    def _old_pods_running(self, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        """Old replica sets report pods, or pods of theirs (terminating ones included) have
        not finished."""
        if ro.total_status(old_rss, "replicas") > 0:
            return True
        for rs in old_rss:
            if new_rs is not None and objects.uid(rs) == objects.uid(new_rs):
                continue
            for pod in self.pods.by_index("owner", objects.uid(rs)):
                ref = controller_of(pod)
                if ref is None or ref.get("uid") != objects.uid(rs):
                    continue
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    return True
        return False

    async def _sync_rollout_status(
        self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None
    ) -> None:
        """Write the status, estimating progress against the deadline (upstream
        ``syncRolloutStatus``)."""
        now = self.ctx.clock()
        status = calculate_status(all_rss, new_rs, d, now)
        if not ro.has_progress_deadline(d):
            ro.remove_condition(status, "Progressing")
        current = ro.get_condition(d["status"], "Progressing")
        complete_before = (
            int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
            and current is not None
            and current.get("reason") == ro.REASON_NEW_RS_AVAILABLE
        )
        subject = (
            f'ReplicaSet "{objects.name(new_rs)}"' if new_rs else f'Deployment "{objects.name(d)}"'
        )
        if ro.has_progress_deadline(d) and not complete_before:
            if ro.deployment_complete(d, status):
                ro.set_condition(
                    status,
                    ro.new_condition(
                        "Progressing",
                        "True",
                        ro.REASON_NEW_RS_AVAILABLE,
                        f"{subject} has successfully progressed.",
                        now,
                    ),
                )
            elif ro.deployment_progressing(d, status):
                cond = ro.new_condition(
                    "Progressing", "True", ro.REASON_RS_UPDATED, f"{subject} is progressing.", now
                )
                if current is not None and current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                ro.remove_condition(status, "Progressing")
                ro.set_condition(status, cond)
            elif ro.deployment_timed_out(d, status, now):
                ro.set_condition(
                    status,
                    ro.new_condition(
                        "Progressing",
                        "False",
                        ro.REASON_TIMED_OUT,
                        f"{subject} has timed out progressing.",
                        now,
                    ),
                )
        failure = self._replica_failure(all_rss, new_rs)
        if failure is not None:
            ro.set_condition(status, failure)
        else:
            ro.remove_condition(status, "ReplicaFailure")
        if status == d["status"]:
            self._requeue_stuck(d, status)
            return
        d["status"] = status
        await self._put_status(d)

    def _replica_failure(self, all_rss: list[Obj | None], new_rs: Obj | None) -> Obj | None:
        """The new (else any) replica set's ReplicaFailure condition, as a deployment one."""
        for rs in [new_rs, *all_rss]:
            if rs is None:
                continue
            cond = ro.get_condition(rs.get("status") or {}, "ReplicaFailure")
            if cond is not None:
                return {
                    "type": "ReplicaFailure",
                    "status": cond.get("status"),
                    "lastUpdateTime": cond.get("lastTransitionTime"),
                    "lastTransitionTime": cond.get("lastTransitionTime"),
                    "reason": cond.get("reason"),
                    "message": cond.get("message"),
                }
        return None

    def _requeue_stuck(self, d: Obj, status: Obj) -> None:
        """Come back when a rollout without progress reaches its deadline."""
        current = ro.get_condition(d["status"], "Progressing")
        if current is None or ro.deployment_complete(d, status):
            return
        deadline = ro.progress_deadline(d, d["status"])
        if deadline is None:
            return
        wait = (deadline - self.ctx.clock()).total_seconds()
        self.queue.enqueue_after(key_of(d), max(wait, 0.0) + 1.0)
