"""The CronJob controller: creates a Job per scheduled time, as upstream's CronJob
controller (v2) does.

Jobs are named ``<cronjob>-<scheduled time in minutes since the epoch>`` (the name is the
lock against creating one twice), carry the template's labels and annotations, the
``batch.kubernetes.io/cronjob-scheduled-timestamp`` annotation and a controller reference.
concurrencyPolicy Allow/Forbid/Replace, suspend, startingDeadlineSeconds, the history
limits, spec.timeZone and the status (``active``, ``lastScheduleTime``,
``lastSuccessfulTime``) follow upstream. "Now" is always ``ctx.clock``; after the server
clock moves, :meth:`CronJobController.clock_changed` re-checks every CronJob.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, tzinfo
from enum import IntEnum
from typing import ClassVar

from edgek.cron import CronError, Schedule, load_location, parse
from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import format_time, parse_time
from server.cache import index_owner_uid
from server.controllers.job import finished_condition
from server.controllers.podutil import controller_of, owner_reference
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
#: Requeue a little after the scheduled time, against clock skew (upstream: 100 ms).
NEXT_SCHEDULE_DELTA = 0.1


class Missed(IntEnum):
    NONE = 0
    FEW = 1
    MANY = 2


def job_name(cronjob: Obj, scheduled: datetime) -> str:
    """The deterministic name of the Job for one scheduled time."""
    return f"{cronjob['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def most_recent_schedule_time(
    cronjob: Obj, now: datetime, schedule: Schedule, include_deadline: bool
) -> tuple[datetime, datetime | None, Missed]:
    """(earliest time considered, the latest scheduled time not after ``now`` or None,
    how many were missed). Raises CronError for a schedule that never repeats."""
    status = cronjob.get("status") or {}
    earliest = parse_time(
        status.get("lastScheduleTime") or cronjob["metadata"]["creationTimestamp"]
    )
    deadline = (cronjob.get("spec") or {}).get("startingDeadlineSeconds")
    if include_deadline and deadline is not None:
        earliest = max(earliest, now - timedelta(seconds=int(deadline)))
    t1 = schedule.next_after(earliest)
    if t1 is None or now < t1:
        return earliest, None, Missed.NONE
    t2 = schedule.next_after(t1)
    if t2 is None or now < t2:
        return earliest, t1, Missed.NONE
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise CronError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    # step back one interval from the estimate and let the schedule find the exact time
    candidate = schedule.next_after(t1 + timedelta(seconds=(missed - 2) * between))
    latest: datetime | None = None
    while candidate is not None and candidate <= now:
        latest = candidate
        candidate = schedule.next_after(candidate)
    return earliest, latest, Missed.MANY if missed > 100 else Missed.FEW


def next_schedule_delay(cronjob: Obj, now: datetime, schedule: Schedule) -> float | None:
    """Seconds until the next scheduled time after the last one handled (None: never)."""
    try:
        earliest, latest, missed = most_recent_schedule_time(cronjob, now, schedule, False)
    except CronError:
        latest, missed, earliest = now, Missed.NONE, now
    base = latest if latest is not None else (earliest if missed == Missed.NONE else now)
    following = schedule.next_after(base)
    if following is None:
        return None
    return (following - now).total_seconds() + NEXT_SCHEDULE_DELTA


def _rfc3339(when: datetime) -> str:
    """Go's time.RFC3339 in the time's own zone (``Z`` for UTC)."""
    text = when.replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _rfc1123z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _succeeded(job: Obj) -> bool:
    cond = finished_condition(job)
    return cond is not None and cond.get("type") == "Complete"


def _object_reference(job: Obj) -> Obj:
    md = job["metadata"]
    return {
        "kind": "Job",
        "namespace": md.get("namespace", ""),
        "name": md["name"],
        "uid": md["uid"],
        "apiVersion": "batch/v1",
        "resourceVersion": md.get("resourceVersion", ""),
    }


class CronJobController(Controller):
    """Creates Jobs on schedule and keeps the CronJob's status and history."""

    name = "cronjob"
    workers = 2
    component: ClassVar[str] = "cronjob-controller"
    #: The zone of schedules without spec.timeZone (None: the server's local zone, as
    #: upstream uses the controller manager's).
    default_zone: ClassVar[tzinfo | None] = None

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.cronjobs_kind = ctx.kind("batch", "cronjobs")
        self.jobs_kind = ctx.kind("batch", "jobs")
        self.cronjobs = ctx.cache("batch", "cronjobs")
        self.jobs = ctx.cache("batch", "jobs")
        self.jobs.add_index("owner", index_owner_uid)
        self.cronjobs.on_event(self._cronjob_event)
        self.jobs.on_event(self._job_event)

    def _cronjob_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None:
            self.queue.enqueue(key_of(new))

    def _job_event(self, old: Obj | None, new: Obj | None) -> None:
        for job in (old, new):
            if job is None:
                continue
            ref = controller_of(job)
            if ref is None or ref.get("kind") != "CronJob":
                continue
            ns = job["metadata"].get("namespace", "")
            owner = self.cronjobs.get(ns, ref.get("name", ""))
            if owner is not None and owner["metadata"].get("uid") == ref.get("uid"):
                self.queue.enqueue(key_of(owner))

    def clock_changed(self) -> None:
        """The server clock moved: re-check every CronJob now."""
        for cronjob in self.cronjobs.items():
            self.queue.enqueue(key_of(cronjob))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        if self.cronjobs.get(ns, name) is None:
            return
        # the stored object: its status must include this loop's last write
        cronjob = await self.ctx.objects.try_get(self.cronjobs_kind, ns, name)
        if cronjob is None:
            return
        uid = cronjob["metadata"]["uid"]
        jobs = [
            j
            for j in self.jobs.by_index("owner", uid)
            if (controller_of(j) or {}).get("uid") == uid
        ]
        cronjob.setdefault("status", {})
        changed = await self._cleanup_finished(cronjob, jobs)
        delay, synced = await self._sync(cronjob, jobs)
        if changed or synced:
            await self.ctx.objects.update(
                self.cronjobs_kind, ns, name, cronjob, self.write_options("status")
            )
        if delay is not None:
            self.queue.enqueue_after(key, delay)

    async def _sync(self, cronjob: Obj, jobs: list[Obj]) -> tuple[float | None, bool]:
        """Reconcile status with the Jobs and start the due one; (requeue delay, changed)."""
        now = self.ctx.clock()
        status = cronjob["status"]
        changed = self._observe_jobs(cronjob, jobs)
        changed = await self._drop_missing_active(cronjob, jobs) or changed
        if cronjob["metadata"].get("deletionTimestamp"):
            return None, changed
        found = self._active_schedule(cronjob)
        if found is None:
            return None, changed
        schedule, zone = found
        try:
            _, scheduled, missed = most_recent_schedule_time(cronjob, now, schedule, True)
        except CronError as e:
            text = (cronjob.get("spec") or {}).get("schedule", "")
            self._event(cronjob, "Warning", "InvalidSchedule", f"invalid schedule: {text} : {e}")
            return None, changed
        delay = next_schedule_delay(cronjob, now, schedule)
        if scheduled is None or not self._should_start(cronjob, now, scheduled, missed):
            return delay, changed
        if (cronjob.get("spec") or {}).get("concurrencyPolicy") == "Replace":
            for ref in list(status.get("active") or []):
                await self._delete_job(cronjob, ref.get("name", ""), ref.get("uid", ""))
                changed = True
        job = await self._create_job(cronjob, scheduled, zone)
        if job is None:
            return None, changed
        if not any(r.get("uid") == job["metadata"]["uid"] for r in status.get("active") or []):
            status.setdefault("active", []).append(_object_reference(job))
        status["lastScheduleTime"] = format_time(scheduled)
        return next_schedule_delay(cronjob, now, schedule), True

    async def _drop_missing_active(self, cronjob: Obj, jobs: list[Obj]) -> bool:
        """Drop ``active`` references to Jobs that no longer exist; whether any went."""
        changed = False
        children = {j["metadata"]["uid"] for j in jobs}
        for ref in list(cronjob["status"].get("active") or []):
            if ref.get("uid") in children:
                continue
            found = await self.ctx.objects.try_get(
                self.jobs_kind, ref.get("namespace", ""), ref.get("name", "")
            )
            if found is None:
                self._event(
                    cronjob, "Normal", "MissingJob", f"Active job went missing: {ref['name']}"
                )
                _remove_active(cronjob, ref.get("uid", ""))
                changed = True
        return changed

    def _active_schedule(self, cronjob: Obj) -> tuple[Schedule, tzinfo | None] | None:
        """The schedule and its zone; None when suspended, or (after an event) when the
        zone or the schedule is invalid."""
        spec = cronjob.get("spec") or {}
        zone = self.default_zone
        zone_name = spec.get("timeZone")
        if zone_name is not None:
            try:
                zone = load_location(zone_name)
            except CronError as e:
                self._event(
                    cronjob, "Warning", "UnknownTimeZone", f'invalid timeZone: "{zone_name}": {e}'
                )
                return None
        if spec.get("suspend"):
            return None
        text = spec.get("schedule", "")
        if "TZ" in text:
            self._event(
                cronjob,
                "Warning",
                "UnsupportedSchedule",
                f'CRON_TZ or TZ used in schedule "{text}" is not officially supported, see '
                "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more "
                "details",
            )
        try:
            return parse(text, zone), zone
        except CronError as e:
            self._event(
                cronjob, "Warning", "UnparseableSchedule", f'unparseable schedule: "{text}" : {e}'
            )
            return None

    def _should_start(
        self, cronjob: Obj, now: datetime, scheduled: datetime, missed: Missed
    ) -> bool:
        """Whether the Job of ``scheduled`` starts now: within the starting deadline, not
        started yet, and allowed by the concurrency policy (events say why not)."""
        spec, status = cronjob.get("spec") or {}, cronjob["status"]
        if missed == Missed.MANY:
            self._event(
                cronjob,
                "Warning",
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                "or check clock skew",
            )
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < now:
            self._event(
                cronjob,
                "Warning",
                "MissSchedule",
                f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}",
            )
            return False
        name = job_name(cronjob, scheduled)
        last = status.get("lastScheduleTime")
        if any(r.get("name") == name for r in status.get("active") or []) or (
            last and parse_time(last) == scheduled
        ):
            return False
        if spec.get("concurrencyPolicy", "Allow") == "Forbid" and status.get("active"):
            self._event(
                cronjob,
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy "
                "is Forbid",
            )
            return False
        return True

    def _observe_jobs(self, cronjob: Obj, jobs: list[Obj]) -> bool:
        """Drop finished Jobs from ``active`` and track the last success."""
        status = cronjob["status"]
        changed = False
        active = {r.get("uid") for r in status.get("active") or []}
        for job in jobs:
            uid, name = job["metadata"]["uid"], job["metadata"]["name"]
            cond = finished_condition(job)
            if uid not in active and cond is None:
                self._event(
                    cronjob,
                    "Warning",
                    "UnexpectedJob",
                    f"Saw a job that the controller did not create or forgot: {name}",
                )
            elif uid in active and cond is not None:
                _remove_active(cronjob, uid)
                self._event(
                    cronjob,
                    "Normal",
                    "SawCompletedJob",
                    f"Saw completed job: {name}, status: {cond['type']}",
                )
                changed = True
            completed = (job.get("status") or {}).get("completionTime")
            if _succeeded(job) and completed:
                last = status.get("lastSuccessfulTime")
                if last is None or parse_time(completed) > parse_time(last):
                    status["lastSuccessfulTime"] = completed
                    changed = True
        return changed

    async def _cleanup_finished(self, cronjob: Obj, jobs: list[Obj]) -> bool:
        """Delete the oldest finished Jobs beyond the history limits."""
        spec = cronjob.get("spec") or {}
        succeeded: list[Obj] = []
        failed: list[Obj] = []
        for job in jobs:
            cond = finished_condition(job)
            if cond is None or job["metadata"].get("deletionTimestamp"):
                continue
            (succeeded if cond["type"] == "Complete" else failed).append(job)
        changed = False
        for group, limit in (
            (succeeded, spec.get("successfulJobsHistoryLimit")),
            (failed, spec.get("failedJobsHistoryLimit")),
        ):
            if limit is None or len(group) <= int(limit):
                continue
            group.sort(key=_start_order)
            for job in group[: len(group) - int(limit)]:
                md = job["metadata"]
                if await self._delete_job(cronjob, md["name"], md["uid"], quiet=True):
                    changed = True
        return changed

    async def _delete_job(self, cronjob: Obj, name: str, uid: str, *, quiet: bool = False) -> bool:
        """Delete a Job (background propagation) and drop it from ``active``."""
        ns = cronjob["metadata"]["namespace"]
        try:
            await self.ctx.objects.delete(
                self.jobs_kind,
                ns,
                name,
                DeleteOptions(propagation_policy="Background", precondition_uid=uid),
            )
        except ApiError as e:
            if e.code != 404:
                self._event(cronjob, "Warning", "FailedDelete", f"Deleted job: {e.message}")
                if quiet:
                    return False
                raise
        _remove_active(cronjob, uid)
        self._event(cronjob, "Normal", "SuccessfulDelete", f"Deleted job {name}")
        return True

    async def _create_job(
        self, cronjob: Obj, scheduled: datetime, zone: tzinfo | None
    ) -> Obj | None:
        """Create the Job of ``scheduled`` (or find the one already made); None when a Job of
        that name belongs to someone else or is already recorded as active."""
        md, spec = cronjob["metadata"], cronjob.get("spec") or {}
        template = spec.get("jobTemplate") or {}
        tmd = template.get("metadata") or {}
        annotations = dict(tmd.get("annotations") or {})
        stamp_zone = zone if spec.get("timeZone") is not None and zone is not None else UTC
        annotations[SCHEDULED_TIMESTAMP] = _rfc3339(scheduled.astimezone(stamp_zone))
        job_md: Obj = {
            "name": job_name(cronjob, scheduled),
            "namespace": md["namespace"],
            "annotations": annotations,
            "ownerReferences": [owner_reference(cronjob, "batch/v1", "CronJob")],
        }
        if tmd.get("labels"):
            job_md["labels"] = dict(tmd["labels"])
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": job_md,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            job = await self.ctx.objects.create(
                self.jobs_kind, md["namespace"], body, self.write_options()
            )
        except ApiError as e:
            if e.code != 409:
                self._event(cronjob, "Warning", "FailedCreate", f"Error creating job: {e.message}")
                raise
            existing = await self.ctx.objects.get(self.jobs_kind, md["namespace"], job_md["name"])
            if (controller_of(existing) or {}).get("uid") != md["uid"]:
                return None
            active = cronjob["status"].get("active") or []
            if any(r.get("uid") == existing["metadata"]["uid"] for r in active):
                return None
            return existing
        self._event(cronjob, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
        return job

    def _event(self, cronjob: Obj, type_: str, reason: str, message: str) -> None:
        subject = {"apiVersion": "batch/v1", "kind": "CronJob", **cronjob}
        self.ctx.events.record(subject, type_, reason, message, component=self.component)


def _remove_active(cronjob: Obj, uid: str) -> None:
    status = cronjob["status"]
    active = [r for r in status.get("active") or [] if r.get("uid") != uid]
    if active:
        status["active"] = active
    else:
        status.pop("active", None)


def _start_order(job: Obj) -> tuple[bool, datetime, str]:
    """Oldest first by start time (Jobs not started last), then by name."""
    start = (job.get("status") or {}).get("startTime")
    when = parse_time(start) if start else datetime.max.replace(tzinfo=UTC)
    return (start is None, when, job["metadata"]["name"])
