"""The Job controller: runs a Job's pods to completion, as upstream's job controller does.

Pods come from the template with the Job's labels, a controller ownerReference and the
``batch.kubernetes.io/job-tracking`` finalizer. A finished pod is first recorded in
``status.uncountedTerminatedPods`` (Indexed Jobs record succeeded indexes in
``status.completedIndexes`` instead), then its finalizer is removed, then it is moved into
the ``succeeded``/``failed`` counters, so counts survive pods being deleted.

Covered: completions and parallelism (NonIndexed, Indexed and work-queue Jobs), backoffLimit
with exponential back-off before replacing failed pods, restart counts for OnFailure pods,
activeDeadlineSeconds, podFailurePolicy (FailJob, Ignore, Count on exit codes and pod
conditions), podReplacementPolicy, suspend/resume, and the interim ``FailureTarget`` and
``SuccessCriteriaMet`` conditions before the terminal ``Failed``/``Complete`` ones.

Not covered: backoffLimitPerIndex/maxFailedIndexes, successPolicy, managedBy, adopting
orphan pods that match the selector.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from edgek import objects
from edgek.objects import Obj, generate_name
from edgek.podstate import is_pod_active, is_pod_ready, pod_phase
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.cache import index_owner_uid
from server.controllers.expectations import (
    SLOW_START_INITIAL_BATCH,
    Expectation,
    Expectations,
    SlowStartError,
    slow_start_batch,
)
from server.controllers.podutil import controller_of, pod_from_template
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"

#: Most pods created or deleted in one sync (upstream MaxPodCreateDeletePerSync).
MAX_POD_CHANGES_PER_SYNC = 500
#: Longest generateName prefix (63 minus the five random characters).
_MAX_GENERATED_PREFIX = 58
_ORPHAN = "orphan-pod:"


# -- conditions ---------------------------------------------------------------


def find_condition(job: Obj, type_: str) -> Obj | None:
    """The Job condition of ``type_``, if any."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def finished_condition(job: Obj) -> Obj | None:
    """The true ``Complete`` or ``Failed`` condition of a finished Job."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return dict(cond)
    return None


def is_job_finished(job: Obj) -> bool:
    return finished_condition(job) is not None


def _new_condition(type_: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = format_time(now)
    cond: Obj = {
        "type": type_,
        "status": status,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _ensure_condition(
    status: Obj, type_: str, value: str, reason: str, message: str, now: datetime
) -> bool:
    """Set a condition (a new False condition is not added); whether anything changed."""
    conditions: list[Obj] = status.setdefault("conditions", [])
    for i, cond in enumerate(conditions):
        if cond.get("type") == type_:
            same = (cond.get("status"), cond.get("reason", ""), cond.get("message", ""))
            if same == (value, reason, message):
                return False
            conditions[i] = _new_condition(type_, value, reason, message, now)
            return True
    if value == "False":
        if not conditions:
            status.pop("conditions")
        return False
    conditions.append(_new_condition(type_, value, reason, message, now))
    return True


# -- completion indexes -------------------------------------------------------


def completion_index(pod: Obj) -> int | None:
    """The pod's completion index annotation (None when missing or malformed)."""
    value = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    if value is None or not value.isdigit():
        return None
    return int(value)


def parse_indexes(text: str, completions: int) -> set[int]:
    """Indexes of a ``completedIndexes`` string such as ``"1,3-5"`` (below ``completions``)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            continue
        out.update(range(lo, min(hi, completions - 1) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    """Upstream's interval form: ``"1,3-5"``; two adjacent indexes are listed, not ranged."""
    parts: list[str] = []
    ordered = sorted(set(indexes))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        first, last = ordered[i], ordered[j]
        if last == first:
            parts.append(str(first))
        elif last == first + 1:
            parts.append(f"{first},{last}")
        else:
            parts.append(f"{first}-{last}")
        i = j + 1
    return ",".join(parts)


# -- pod failure policy -------------------------------------------------------


def match_pod_failure_policy(policy: Obj | None, pod: Obj) -> tuple[str | None, bool, str | None]:
    """(FailJob message or None, whether the failure counts, matched action or None)."""
    if not policy:
        return None, True, None
    md, status = pod["metadata"], pod.get("status") or {}
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action", "")
        if rule.get("onExitCodes") is not None:
            container = _match_exit_codes(status, rule["onExitCodes"])
            if container is None:
                continue
            code = container["state"]["terminated"]["exitCode"]
            message = (
                f"Container {container.get('name', '')} for pod {md.get('namespace', '')}/"
                f"{md['name']} failed with exit code {code} matching {action} rule at index {index}"
            )
        elif rule.get("onPodConditions") is not None:
            condition = _match_pod_conditions(status, rule["onPodConditions"])
            if condition is None:
                continue
            message = (
                f"Pod {md.get('namespace', '')}/{md['name']} has condition {condition['type']} "
                f"matching {action} rule at index {index}"
            )
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "Count":
            return None, True, action
        if action == "FailJob":
            return message, True, action
    return None, True, None


def _match_exit_codes(status: Obj, requirement: Obj) -> Obj | None:
    wanted = requirement.get("containerName")
    values = requirement.get("values") or []
    operator = requirement.get("operator")
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            terminated = (cs.get("state") or {}).get("terminated")
            if terminated is None or (wanted and cs.get("name") != wanted):
                continue
            code = int(terminated.get("exitCode") or 0)
            if code == 0:
                continue
            if (operator == "In" and code in values) or (
                operator == "NotIn" and code not in values
            ):
                return dict(cs)
    return None


def _match_pod_conditions(status: Obj, patterns: list[Obj]) -> Obj | None:
    for cond in status.get("conditions") or []:
        for pattern in patterns:
            if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                "status", "True"
            ):
                return dict(cond)
    return None


# -- pods ---------------------------------------------------------------------


def _has_finalizer(pod: Obj) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def _is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp")) and pod_phase(pod) not in (
        "Succeeded",
        "Failed",
    )


def _finish_time(pod: Obj) -> datetime:
    """When a pod finished: its containers' latest finish, its Ready=False transition, its
    deletion, or (failing all those) its creation (upstream getFinishedTime)."""
    status = pod.get("status") or {}
    latest: datetime | None = None
    statuses = status.get("containerStatuses") or []
    for cs in statuses:
        finished = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if not finished:
            latest = None
            break
        when = parse_time(finished)
        latest = when if latest is None or when > latest else latest
    if latest is not None:
        return latest
    for cond in status.get("conditions") or []:
        ready_false = cond.get("type") == "Ready" and cond.get("status") == "False"
        if ready_false and cond.get("lastTransitionTime"):
            return parse_time(cond["lastTransitionTime"])
    md = pod["metadata"]
    if md.get("deletionTimestamp"):
        grace = int(md.get("deletionGracePeriodSeconds") or 0)
        return parse_time(md["deletionTimestamp"]) - timedelta(seconds=grace)
    return parse_time(md["creationTimestamp"])


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def _removal_order(pod: Obj) -> tuple[bool, int, bool, int, float]:
    """Sort key putting the pods to delete first (upstream controller.ActivePods):
    unscheduled, then pending, then not ready, then more restarts, then newer."""
    status = pod.get("status") or {}
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    created = pod["metadata"].get("creationTimestamp")
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        _PHASE_RANK.get(pod_phase(pod), 0),
        is_pod_ready(pod),
        -restarts,
        -parse_time(created).timestamp() if created else 0.0,
    )


# -- back-off and expectations ---------------------------------------------------


@dataclass
class BackoffRecord:
    """Consecutive pod failures since the last success (kept in memory, as upstream)."""

    failures: int = 0
    last_failure: datetime | None = None

    def updated(self, succeeded: list[Obj], failed: list[Obj]) -> BackoffRecord:
        """The record after these newly finished pods."""
        if not succeeded and not failed:
            return self
        fail_times = sorted(_finish_time(p) for p in failed)
        if not succeeded:
            return BackoffRecord(self.failures + len(failed), fail_times[-1])
        last_success = max(_finish_time(p) for p in succeeded)
        later = [t for t in fail_times if t > last_success]
        return BackoffRecord(len(later), later[-1] if later else None)

    def remaining(self, now: datetime, base: float, cap: float) -> float:
        """Seconds to wait before creating replacement pods."""
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = base
        for _ in range(1, self.failures):
            delay *= 2
            if delay >= cap:
                delay = cap
                break
        elapsed = (now - self.last_failure).total_seconds()
        return max(delay - elapsed, 0.0)


@dataclass
class _Sync:
    """State of one sync of one Job."""

    key: str
    job: Obj
    pods: list[Obj]
    active_pods: list[Obj]
    ready: int
    terminating: int
    succeeded: int
    expected_rm: set[str]
    backoff: BackoffRecord
    finished: Obj | None = None
    prev_indexes: set[int] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)
    error: ApiError | None = None  # a pod write that failed; retried after the status write

    @property
    def spec(self) -> Obj:
        return dict(self.job["spec"])

    @property
    def status(self) -> Obj:
        status: Obj = self.job.setdefault("status", {})
        return status

    @property
    def indexed(self) -> bool:
        return self.spec.get("completionMode") == "Indexed"

    @property
    def completions(self) -> int | None:
        value = self.spec.get("completions")
        return None if value is None else int(value)

    def valid_index(self, pod: Obj) -> bool:
        ix = completion_index(pod)
        return ix is not None and ix < (self.completions or 0)

    @property
    def only_replace_failed(self) -> bool:
        spec = self.spec
        return spec.get("podReplacementPolicy") == "Failed" or bool(spec.get("podFailurePolicy"))

    def pod_failed(self, pod: Obj) -> bool:
        """Failed, or (unless only failed pods are replaced) deleted before succeeding."""
        if pod_phase(pod) == "Failed":
            return True
        if self.only_replace_failed:
            return False
        return bool(pod["metadata"].get("deletionTimestamp")) and pod_phase(pod) != "Succeeded"


# -- the controller -------------------------------------------------------------


class JobController(Controller):
    """Creates and counts the pods of every Job."""

    name = "job"
    workers = 4
    #: Event source component, as upstream's.
    component: ClassVar[str] = "job-controller"
    #: Back-off before replacing failed pods: base * 2**(failures-1), capped.
    backoff_base: ClassVar[float] = 10.0
    backoff_max: ClassVar[float] = 360.0

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs_kind = ctx.kind("batch", "jobs")
        self.pods_kind = ctx.kind("", "pods")
        self.jobs = ctx.cache("batch", "jobs")
        self.pods = ctx.cache("", "pods")
        self.pods.add_index("owner", index_owner_uid)
        self.jobs.on_event(self._job_event)
        self.pods.on_event(self._pod_event)
        self._backoff: dict[str, BackoffRecord] = {}
        self.expectations = Expectations(finalizer=TRACKING_FINALIZER)
        self._written: dict[str, int] = {}  # resourceVersion of this loop's last status write

    # -- events -------------------------------------------------------------

    def _job_event(self, old: Obj | None, new: Obj | None) -> None:
        job = new if new is not None else old
        if job is None:
            return
        self.queue.enqueue(key_of(job))
        if new is None:  # release the pods of a deleted Job
            for pod in self.pods.by_index("owner", objects.uid(job)):
                if _has_finalizer(pod):
                    self.queue.enqueue(_ORPHAN + key_of(pod))

    def _pod_event(self, old: Obj | None, new: Obj | None) -> None:
        pod = new if new is not None else old
        if pod is None:
            return
        job = self._owning_job(pod)
        if job is not None:
            key = key_of(job)
            self.expectations.observe(key, old, new)
            self.queue.enqueue(key)
        elif new is not None and _has_finalizer(new):
            self.queue.enqueue(_ORPHAN + key_of(new))

    def _owning_job(self, pod: Obj) -> Obj | None:
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
            return None
        job = self.jobs.get(pod["metadata"].get("namespace", ""), ref.get("name", ""))
        if job is None or objects.uid(job) != ref.get("uid"):
            return None
        return job

    def clock_changed(self) -> None:
        """The server clock moved: re-check deadlines and back-offs of every Job."""
        for job in self.jobs.items():
            if not is_job_finished(job):
                self.queue.enqueue(key_of(job))

    # -- reconcile ------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        if key.startswith(_ORPHAN):
            await self._release_orphan(key[len(_ORPHAN) :])
            return
        ns, name = split_key(key)
        job = self.jobs.get(ns, name)
        if job is None:
            self._backoff.pop(key, None)
            self.expectations.forget(key)
            self._written.pop(key, None)
            return
        if int(job["metadata"]["resourceVersion"]) < self._written.get(key, 0):
            return  # the cache has not seen our last status write yet; its event re-queues
        if is_job_finished(job):
            self._backoff.pop(key, None)
            await self._release_finished(key, job)
            return
        await self._sync(key, copy.deepcopy(job))

    async def _release_orphan(self, key: str) -> None:
        """Drop the tracking finalizer of a pod whose Job is gone or finished."""
        ns, name = split_key(key)
        pod = self.pods.get(ns, name)
        if pod is None or not _has_finalizer(pod):
            return
        ref = controller_of(pod)
        if ref is not None and (ref.get("kind"), ref.get("apiVersion")) != ("Job", "batch/v1"):
            return
        job = self._owning_job(pod)
        if job is not None and not is_job_finished(job):
            return
        await self._remove_finalizer(pod)

    async def _release_finished(self, key: str, job: Obj) -> None:
        """A finished Job keeps no pod finalizers (a back-up for interrupted syncs)."""
        exp = self.expectations.entry(key)
        for pod in self.pods.by_index("owner", objects.uid(job)):
            if _has_finalizer(pod) and objects.uid(pod) not in exp.finalizers:
                exp.finalizers.add(objects.uid(pod))
                await self._remove_finalizer(pod)

    async def _sync(self, key: str, job: Obj) -> None:
        now = self.ctx.clock()
        status = job.setdefault("status", {})
        status.setdefault("uncountedTerminatedPods", {})
        satisfied = self.expectations.satisfied(key)
        ctx = self._new_sync(key, job)
        failed = _count_finished(ctx)
        if not status.get("startTime") and not ctx.spec.get("suspend"):
            status["startTime"] = format_time(now)
        ctx.finished = self._finish_reason(ctx, failed, now)
        if ctx.indexed:
            _count_succeeded_indexes(ctx)
        if ctx.finished is not None:
            active = await self._stop_active(ctx, satisfied)
            suspend_changed = False
        else:
            active, suspend_changed = await self._progress(ctx, satisfied, now)
        needs_flush = suspend_changed or (
            active != int(status.get("active") or 0)
            or ctx.ready != status.get("ready")
            or ctx.terminating != status.get("terminating")
        )
        _set_count(status, "active", active)
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track(ctx, needs_flush)
        if ctx.error is not None:
            raise ctx.error

    def _new_sync(self, key: str, job: Obj) -> _Sync:
        """The sync state of ``job`` over the pods it controls."""
        pods = [
            p
            for p in self.pods.by_index("owner", objects.uid(job))
            if (controller_of(p) or {}).get("uid") == objects.uid(job)
        ]
        active_pods = [p for p in pods if is_pod_active(p)]
        return _Sync(
            key=key,
            job=job,
            pods=pods,
            active_pods=active_pods,
            ready=sum(1 for p in active_pods if is_pod_ready(p)),
            terminating=sum(1 for p in pods if _is_terminating(p)),
            succeeded=0,
            expected_rm=set(self.expectations.entry(key).finalizers),
            backoff=self._backoff.get(key, BackoffRecord()),
        )

    async def _stop_active(self, ctx: _Sync, satisfied: bool) -> int:
        """Delete the active pods of a finishing Job; how many stay active."""
        active = len(ctx.active_pods)
        deleted_ready, deleted = await self._delete_pods(ctx, ctx.active_pods, keep_finalizer=True)
        if deleted != active or not satisfied:
            ctx.finished = None  # wait for the cache to show every pod finishing
        ctx.terminating += deleted
        ctx.ready -= deleted_ready
        return active - deleted

    async def _progress(self, ctx: _Sync, satisfied: bool, now: datetime) -> tuple[int, bool]:
        """Manage the pods of a running Job and notice its completion; the active count,
        and whether the Suspended condition changed."""
        active = len(ctx.active_pods)
        managed = satisfied and not ctx.job["metadata"].get("deletionTimestamp")
        if managed:
            active = await self._manage(ctx)
        target = ctx.completions
        if target is None:
            complete = ctx.succeeded > 0 and active == 0
        else:
            complete = ctx.succeeded >= target and active == 0
        if complete:
            ctx.finished = _new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            )
            return active, False
        if managed:
            return active, self._suspend_condition(ctx, bool(ctx.spec.get("suspend")), now)
        return active, False

    def _finish_reason(self, ctx: _Sync, failed: int, now: datetime) -> Obj | None:
        """The condition the Job is heading for (None while it keeps running)."""
        job, spec = ctx.job, ctx.spec
        met = find_condition(job, "SuccessCriteriaMet")
        if met is not None and met.get("status") == "True":
            return met
        target = find_condition(job, "FailureTarget")
        if target is not None and target.get("status") == "True":
            return _new_condition(
                "Failed", "True", target.get("reason", ""), target.get("message", ""), now
            )
        policy = spec.get("podFailurePolicy")
        if policy:
            for pod in ctx.pods:
                if ctx.pod_failed(pod):
                    message = match_pod_failure_policy(policy, pod)[0]
                    if message is not None:
                        return _new_condition(
                            "FailureTarget", "True", "PodFailurePolicy", message, now
                        )
        if failed > int(spec.get("backoffLimit", 6)) or _past_backoff_on_failure(ctx):
            return _new_condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            )
        deadline = spec.get("activeDeadlineSeconds")
        start = ctx.status.get("startTime")
        if deadline is not None and start and not spec.get("suspend"):
            left = int(deadline) - (now - parse_time(start)).total_seconds()
            if left <= 0:
                return _new_condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                )
            self.queue.enqueue_after(ctx.key, left)
        return None

    def _suspend_condition(self, ctx: _Sync, suspended: bool, now: datetime) -> bool:
        status = ctx.status
        if suspended:
            changed = _ensure_condition(
                status, "Suspended", "True", "JobSuspended", "Job suspended", now
            )
            if changed:
                self._event(ctx.job, "Normal", "Suspended", "Job suspended")
            return changed
        changed = _ensure_condition(status, "Suspended", "False", "JobResumed", "Job resumed", now)
        if changed:
            self._event(ctx.job, "Normal", "Resumed", "Job resumed")
            status["startTime"] = format_time(now)  # the deadline counts from the resume
        return changed

    # -- pods -------------------------------------------------------------------

    async def _manage(self, ctx: _Sync) -> int:
        """Create or delete pods towards the wanted number; returns the active count."""
        spec = ctx.spec
        active = len(ctx.active_pods)
        if spec.get("suspend"):
            ready, removed = await self._delete_pods(ctx, ctx.active_pods, keep_finalizer=False)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed
        parallelism = int(spec.get("parallelism", 1))
        completions = ctx.completions
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(min(completions - ctx.succeeded, parallelism), 0)
        to_delete = self._pods_for_removal(ctx, max(active - want, 0))
        if to_delete:
            to_delete = to_delete[:MAX_POD_CHANGES_PER_SYNC]
            ready, removed = await self._delete_pods(ctx, to_delete, keep_finalizer=False)
            ctx.terminating += removed
            ctx.ready -= ready
            return active - removed
        terminating = ctx.terminating if ctx.only_replace_failed else 0
        diff = min(want - terminating - active, MAX_POD_CHANGES_PER_SYNC)
        if diff <= 0:
            return active
        wait = ctx.backoff.remaining(self.ctx.clock(), self.backoff_base, self.backoff_max)
        if wait > 0:
            self.queue.enqueue_after(ctx.key, wait)
            return active
        indexes: list[int | None] = [None] * diff
        if ctx.indexed:
            indexes = list(self._pending_indexes(ctx, diff))
        return active + await self._create_pods(ctx, indexes)

    def _pods_for_removal(self, ctx: _Sync, at_least: int) -> list[Obj]:
        """Excess pods; for Indexed Jobs also pods with a bad or repeated index."""
        remove: list[Obj] = []
        left = list(ctx.active_pods)
        if ctx.indexed:
            left = []
            by_index: dict[int, list[Obj]] = {}
            for pod in ctx.active_pods:
                ix = completion_index(pod)
                if ix is None or not ctx.valid_index(pod):
                    remove.append(pod)
                else:
                    by_index.setdefault(ix, []).append(pod)
            for group in by_index.values():
                group.sort(key=_removal_order)
                remove.extend(group[:-1])
                left.append(group[-1])
        if len(remove) < at_least:
            left.sort(key=_removal_order)
            remove.extend(left[: at_least - len(remove)])
        return remove

    def _pending_indexes(self, ctx: _Sync, count: int) -> Iterable[int]:
        taken = set(ctx.succeeded_indexes)
        taken.update(ix for p in ctx.active_pods if (ix := completion_index(p)) is not None)
        found = 0
        for ix in range(ctx.completions or 0):
            if found == count:
                return
            if ix not in taken:
                found += 1
                yield ix

    async def _create_pods(self, ctx: _Sync, indexes: list[int | None]) -> int:
        """Create pods in slow-start batches (1, 2, 4, ...); returns how many were made."""
        exp = self.expectations.entry(ctx.key)
        pending = iter(indexes)
        try:
            return await slow_start_batch(
                len(indexes),
                SLOW_START_INITIAL_BATCH,
                lambda: self._create_pod(ctx, next(pending), exp),
            )
        except SlowStartError as e:
            raise e.error from None

    async def _create_pod(self, ctx: _Sync, index: int | None, exp: Expectation) -> None:
        job = ctx.job
        job_name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["template"])
        tmd = template.setdefault("metadata", {})
        finalizers = tmd.setdefault("finalizers", [])
        if TRACKING_FINALIZER not in finalizers:
            finalizers.append(TRACKING_FINALIZER)
        prefix = f"{job_name}-"
        if index is not None:
            tmd.setdefault("annotations", {})[COMPLETION_INDEX] = str(index)
            tmd.setdefault("labels", {})[COMPLETION_INDEX] = str(index)
            template.setdefault("spec", {})["hostname"] = f"{job_name}-{index}"
            _add_index_env(template["spec"])
            suffix = f"-{index}-"
            prefix = job_name[: _MAX_GENERATED_PREFIX - len(suffix)] + suffix
        name = generate_name(prefix[:_MAX_GENERATED_PREFIX])
        pod = pod_from_template(template, job, "batch/v1", "Job", name=name)
        exp.created.add(name)
        exp.touch()
        try:
            await self.ctx.objects.create(
                self.pods_kind, job["metadata"]["namespace"], pod, self.write_options()
            )
        except ApiError as e:
            exp.created.discard(name)
            self._event(job, "Warning", "FailedCreate", f"Error creating: {e.message}")
            raise
        self._event(job, "Normal", "SuccessfulCreate", f"Created pod: {name}")

    async def _delete_pods(
        self, ctx: _Sync, pods: list[Obj], *, keep_finalizer: bool
    ) -> tuple[int, int]:
        """Delete pods; (ready ones deleted, all deleted). Pods of a failing Job keep the
        finalizer, to be counted as failed; pods removed otherwise are not counted."""
        exp = self.expectations.entry(ctx.key)
        ready = deleted = 0
        errors: list[ApiError] = []
        for pod in pods:
            md = pod["metadata"]
            exp.deleted.add(md["uid"])
            exp.touch()
            try:
                if not keep_finalizer and _has_finalizer(pod):
                    await self._remove_finalizer(pod)
                await self.ctx.objects.delete(
                    self.pods_kind,
                    md["namespace"],
                    md["name"],
                    DeleteOptions(precondition_uid=md["uid"]),
                )
            except ApiError as e:
                exp.deleted.discard(md["uid"])
                if e.code != 404:
                    errors.append(e)
                    self._event(ctx.job, "Warning", "FailedDelete", f"Error deleting: {e.message}")
                    continue
            deleted += 1
            ready += 1 if is_pod_ready(pod) else 0
            self._event(ctx.job, "Normal", "SuccessfulDelete", f"Deleted pod: {md['name']}")
        if errors:
            if not keep_finalizer:
                raise errors[0]
            ctx.error = ctx.error or errors[0]
        return ready, deleted

    async def _remove_finalizer(self, pod: Obj) -> None:
        md = pod["metadata"]
        uid = md.get("uid")

        async def drop(current: Obj | None) -> Obj | None:
            if current is None or current["metadata"].get("uid") != uid:
                return None
            finalizers = current["metadata"].get("finalizers") or []
            if TRACKING_FINALIZER not in finalizers:
                return None
            current["metadata"]["finalizers"] = [f for f in finalizers if f != TRACKING_FINALIZER]
            return current

        try:
            await self.ctx.objects.modify(
                self.pods_kind, md.get("namespace", ""), md["name"], drop, self.write_options()
            )
        except ApiError as e:
            if e.code != 404:
                raise

    # -- status -----------------------------------------------------------------

    async def _track(self, ctx: _Sync, needs_flush: bool) -> None:
        """Record finished pods as uncounted, release their finalizers, move them into the
        counters, and set the terminal condition once nothing is left to count."""
        pods = ctx.pods
        if ctx.indexed:
            pods = sorted(pods, key=lambda p: completion_index(p) or 0)
        with_finalizer = {
            objects.uid(p)
            for p in pods
            if _has_finalizer(p) and objects.uid(p) not in ctx.expected_rm
        }
        needs_flush = _move_uncounted(ctx.status, with_finalizer) or needs_flush
        release, recorded = _record_finished(ctx, pods)
        finished, interim = _terminal_condition(ctx, self.ctx.clock())
        if needs_flush or recorded or interim:
            await self._write_status(ctx)
            self._backoff[ctx.key] = ctx.backoff
        error = await self._release_finalizers(ctx, release, with_finalizer)
        needs_flush = _move_uncounted(ctx.status, with_finalizer)
        if error is not None:
            if needs_flush:
                await self._write_status(ctx)
            raise error
        done = finished is not None and self._enact(ctx, finished)
        if done or needs_flush:
            await self._write_status(ctx)
        if done and finished is not None:
            self._report_finished(ctx, finished)

    async def _release_finalizers(
        self, ctx: _Sync, release: list[Obj], with_finalizer: set[str]
    ) -> ApiError | None:
        """Drop the tracking finalizer of ``release`` (their uids leave ``with_finalizer``);
        the first error, after trying every pod."""
        error: ApiError | None = None
        exp = self.expectations.entry(ctx.key)
        for pod in release:
            exp.finalizers.add(objects.uid(pod))
            try:
                await self._remove_finalizer(pod)
            except ApiError as e:
                exp.finalizers.discard(objects.uid(pod))
                error = error or e
                continue
            with_finalizer.discard(objects.uid(pod))
        return error

    def _report_finished(self, ctx: _Sync, finished: Obj) -> None:
        """The events of a Job that just got its terminal condition."""
        if finished["type"] != "Complete":
            self._event(ctx.job, "Warning", finished.get("reason", ""), finished.get("message", ""))
            return
        completions = ctx.completions
        if completions is not None and int(ctx.status.get("succeeded") or 0) > completions:
            self._event(
                ctx.job,
                "Warning",
                "TooManySucceededPods",
                "Too many succeeded pods running after completion count reached",
            )
        self._event(ctx.job, "Normal", "Completed", "Job completed")

    def _enact(self, ctx: _Sync, finished: Obj) -> bool:
        """Set the terminal condition once no pod is uncounted or terminating."""
        uncounted = ctx.status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed") or ctx.terminating > 0:
            return False
        _ensure_condition(
            ctx.status,
            finished["type"],
            "True",
            finished.get("reason", ""),
            finished.get("message", ""),
            self.ctx.clock(),
        )
        if finished["type"] == "Complete":
            ctx.status["completionTime"] = format_time(self.ctx.clock())
        return True

    async def _write_status(self, ctx: _Sync) -> None:
        md = ctx.job["metadata"]
        updated, _ = await self.ctx.objects.update(
            self.jobs_kind, md["namespace"], md["name"], ctx.job, self.write_options("status")
        )
        ctx.job = copy.deepcopy(updated)
        self._written[ctx.key] = int(updated["metadata"]["resourceVersion"])
        ctx.job.setdefault("status", {}).setdefault("uncountedTerminatedPods", {})

    def _event(self, job: Obj, type_: str, reason: str, message: str) -> None:
        subject = {"apiVersion": "batch/v1", "kind": "Job", **job}
        self.ctx.events.record(subject, type_, reason, message, component=self.component)


def _past_backoff_on_failure(ctx: _Sync) -> bool:
    """For restartPolicy OnFailure: container restarts of running pods reach the limit."""
    template_spec = ctx.spec["template"].get("spec") or {}
    if template_spec.get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for pod in ctx.pods:
        if pod_phase(pod) in ("Running", "Pending"):
            status = pod.get("status") or {}
            for key in ("initContainerStatuses", "containerStatuses"):
                restarts += sum(int(cs.get("restartCount") or 0) for cs in status.get(key) or [])
    limit = int(ctx.spec.get("backoffLimit", 6))
    return restarts > 0 if limit == 0 else restarts >= limit


def _count_finished(ctx: _Sync) -> int:
    """Count the pods that finished since the last status write into ``ctx.succeeded`` and
    the back-off record; returns the failed count the backoffLimit compares with."""
    status = ctx.status
    uncounted = status["uncountedTerminatedPods"]
    unc_succeeded = set(uncounted.get("succeeded") or [])
    unc_failed = set(uncounted.get("failed") or [])

    def new_finished(uncounted_uids: set[str], phase_check: Callable[[Obj], bool]) -> list[Obj]:
        return [
            p
            for p in ctx.pods
            if _has_finalizer(p)
            and objects.uid(p) not in uncounted_uids
            and objects.uid(p) not in ctx.expected_rm
            and (not ctx.indexed or ctx.valid_index(p))
            and phase_check(p)
        ]

    new_succeeded = new_finished(unc_succeeded, lambda p: pod_phase(p) == "Succeeded")
    new_failed = new_finished(unc_failed, ctx.pod_failed)
    policy = ctx.spec.get("podFailurePolicy")
    counted_failed = sum(1 for p in new_failed if match_pod_failure_policy(policy, p)[1])
    ctx.succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(unc_succeeded)
    ctx.backoff = ctx.backoff.updated(new_succeeded, new_failed)
    return int(status.get("failed") or 0) + counted_failed + len(unc_failed)


def _count_succeeded_indexes(ctx: _Sync) -> None:
    """Indexed Jobs count distinct succeeded indexes: the recorded ones and new ones."""
    completions = ctx.completions or 0
    ctx.prev_indexes = parse_indexes(ctx.status.get("completedIndexes", ""), completions)
    ctx.succeeded_indexes = ctx.prev_indexes | {
        ix
        for p in ctx.pods
        if pod_phase(p) == "Succeeded"
        and _has_finalizer(p)
        and (ix := completion_index(p)) is not None
        and ix < completions
    }
    ctx.succeeded = len(ctx.succeeded_indexes)


@dataclass
class _Tally:
    """Finished pods one sync records: uncounted uids, and new succeeded indexes."""

    succeeded: list[str]
    failed: list[str]
    indexes: set[int] = field(default_factory=set)

    def record_success(self, ctx: _Sync, pod: Obj) -> bool:
        """Record a succeeded pod; whether it was new."""
        if ctx.indexed:
            ix = completion_index(pod)
            if ix is None or not ctx.valid_index(pod) or ix in ctx.prev_indexes:
                return False
            self.indexes.add(ix)
            return True
        uid = objects.uid(pod)
        if uid in self.succeeded:
            return False
        self.succeeded.append(uid)
        return True

    def record_failure(self, ctx: _Sync, pod: Obj) -> bool:
        """Record a failed pod the failure policy counts; whether it was new."""
        uid = objects.uid(pod)
        if uid in self.failed or (ctx.indexed and not ctx.valid_index(pod)):
            return False
        if not match_pod_failure_policy(ctx.spec.get("podFailurePolicy"), pod)[1]:
            return False
        self.failed.append(uid)
        return True


def _releasable(ctx: _Sync, pod: Obj) -> bool:
    """Whether the pod's tracking finalizer can go: it finished, or the Job is ending."""
    if not _has_finalizer(pod) or objects.uid(pod) in ctx.expected_rm:
        return False
    return bool(
        ctx.job["metadata"].get("deletionTimestamp")
        or ctx.finished is not None
        or pod_phase(pod) == "Succeeded"
        or ctx.pod_failed(pod)
    )


def _record_finished(ctx: _Sync, pods: list[Obj]) -> tuple[list[Obj], bool]:
    """Record newly finished pods in ``uncountedTerminatedPods`` (Indexed Jobs: in
    ``completedIndexes``); the pods whose finalizers can go, and whether the status changed."""
    uncounted = ctx.status["uncountedTerminatedPods"]
    tally = _Tally(list(uncounted.get("succeeded") or []), list(uncounted.get("failed") or []))
    failing = ctx.finished is not None and ctx.finished["type"] != "SuccessCriteriaMet"
    release = [pod for pod in pods if _releasable(ctx, pod)]
    changed = False
    for pod in release:
        if pod_phase(pod) == "Succeeded" and objects.uid(pod) not in tally.failed:
            changed = tally.record_success(ctx, pod) or changed
        elif failing or ctx.pod_failed(pod):
            changed = tally.record_failure(ctx, pod) or changed
    _set_uncounted(ctx.status, tally.succeeded, tally.failed)
    if ctx.indexed:
        changed = _record_completed_indexes(ctx, tally.indexes) or changed
    return release, changed


def _record_completed_indexes(ctx: _Sync, new: set[int]) -> bool:
    """Add ``new`` to ``completedIndexes`` and the succeeded count; whether it changed."""
    status = ctx.status
    ctx.succeeded_indexes |= new
    text = format_indexes(ctx.succeeded_indexes)
    changed = text != status.get("completedIndexes", "")
    if text:
        status["completedIndexes"] = text
    else:
        status.pop("completedIndexes", None)
    _set_count(status, "succeeded", len(ctx.succeeded_indexes))
    return changed


def _terminal_condition(ctx: _Sync, now: datetime) -> tuple[Obj | None, bool]:
    """The terminal condition the Job is heading for, after adding the interim one
    (``FailureTarget``, ``SuccessCriteriaMet``) to the status; whether one was added."""
    finished, added = ctx.finished, False
    if finished is None:
        return None, False
    if finished["type"] == "FailureTarget":
        ctx.status.setdefault("conditions", []).append(finished)
        added = True
        finished = _new_condition(
            "Failed", "True", finished.get("reason", ""), finished.get("message", ""), now
        )
    if finished["type"] == "SuccessCriteriaMet":
        if find_condition(ctx.job, "SuccessCriteriaMet") is None:
            ctx.status.setdefault("conditions", []).append(finished)
            added = True
        finished = _new_condition(
            "Complete", "True", finished.get("reason", ""), finished.get("message", ""), now
        )
    return finished, added


def _move_uncounted(status: Obj, with_finalizer: set[str]) -> bool:
    """Count uncounted pods that lost their finalizer; whether anything moved."""
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for key in ("succeeded", "failed"):
        uids = list(uncounted.get(key) or [])
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            changed = True
            _set_count(status, key, int(status.get(key) or 0) + len(uids) - len(keep))
        if keep:
            uncounted[key] = keep
        else:
            uncounted.pop(key, None)
    return changed


def _set_uncounted(status: Obj, succeeded: list[str], failed: list[str]) -> None:
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    for key, uids in (("succeeded", succeeded), ("failed", failed)):
        if uids:
            uncounted[key] = uids
        else:
            uncounted.pop(key, None)


def _set_count(status: Obj, key: str, value: int) -> None:
    """Counters are omitted when zero, as upstream's omitempty int32 fields are."""
    if value:
        status[key] = value
    else:
        status.pop(key, None)


def _add_index_env(pod_spec: Obj) -> None:
    """Every container sees its completion index as JOB_COMPLETION_INDEX."""
    ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
    for key in ("initContainers", "containers"):
        for container in pod_spec.get(key) or []:
            env = container.setdefault("env", [])
            if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append({"name": COMPLETION_INDEX_ENV, "valueFrom": copy.deepcopy(ref)})
