"""The TTL-after-finished controller: deletes a finished Job ``ttlSecondsAfterFinished``
after it finished (counted from its Complete/Failed condition), with background
propagation so the garbage collector removes its pods."""

from __future__ import annotations

from datetime import datetime, timedelta

from edgek.objects import Obj
from edgek.status import ApiError
from edgek.timefmt import parse_time
from server.controllers.job import finished_condition
from server.controllers.runtime import Controller, ControllerContext, key_of, split_key
from server.storage.objectstore import DeleteOptions


def expires_at(job: Obj) -> datetime | None:
    """When a finished Job with a TTL is due for deletion (None: never, or not finished)."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    cond = finished_condition(job)
    if ttl is None or cond is None or job["metadata"].get("deletionTimestamp"):
        return None
    finished = cond.get("lastTransitionTime")
    if not finished:
        return None
    return parse_time(finished) + timedelta(seconds=int(ttl))


class TTLAfterFinishedController(Controller):
    """Cleans up finished Jobs whose TTL has passed."""

    name = "ttl-after-finished"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs_kind = ctx.kind("batch", "jobs")
        self.jobs = ctx.cache("batch", "jobs")
        self.jobs.on_event(self._job_event)

    def _job_event(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and expires_at(new) is not None:
            self.queue.enqueue(key_of(new))

    def clock_changed(self) -> None:
        """The server clock moved: re-check every Job with a pending TTL."""
        for job in self.jobs.items():
            if expires_at(job) is not None:
                self.queue.enqueue(key_of(job))

    async def reconcile(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.jobs.get(ns, name)
        if job is None or expires_at(job) is None:
            return
        # decide on the stored object, not a possibly stale cached one
        fresh = await self.ctx.objects.try_get(self.jobs_kind, ns, name)
        if fresh is None:
            return
        due = expires_at(fresh)
        if due is None:
            return
        left = (due - self.ctx.clock()).total_seconds()
        if left > 0:
            self.queue.enqueue_after(key, left)
            return
        try:
            await self.ctx.objects.delete(
                self.jobs_kind,
                ns,
                name,
                DeleteOptions(
                    propagation_policy="Background", precondition_uid=fresh["metadata"]["uid"]
                ),
            )
        except ApiError as e:
            if e.code not in (404, 409):
                raise
