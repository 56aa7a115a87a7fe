"""Scheduled datastore snapshots (k3s's etcd snapshot schedule, for SQLite): a snapshot
at each time of a cron schedule into ``<data-dir>/server/db/snapshots/``, keeping the
newest ``retention``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from datastore import snapshot
from edgek import cron

log = logging.getLogger("edgek.snapshots")

#: The name scheduled snapshots carry (``edgek datastore snapshot`` names its own).
SCHEDULED_NAME = "scheduled"


def snapshot_dir(db: Path) -> Path:
    """Where snapshots of the database ``db`` are kept."""
    return db.parent / "snapshots"


class SnapshotSchedule:
    """Takes a snapshot of ``db`` at each time ``spec`` names; ``start`` then ``stop``."""

    def __init__(self, db: Path, spec: str, retention: int) -> None:
        self.db = db
        self.schedule = cron.parse(spec)
        self.retention = retention
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the schedule in the background."""
        self._task = asyncio.create_task(self._run(), name="datastore-snapshots")

    async def stop(self) -> None:
        """Stop the schedule (a snapshot being written finishes in its thread)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        # the next time after now, so a suspended machine takes one late snapshot, not many
        due = self.schedule.next_after(datetime.now(UTC))
        while due is not None:
            await asyncio.sleep(max((due - datetime.now(UTC)).total_seconds(), 0))
            await self.snapshot_now()
            due = self.schedule.next_after(max(due, datetime.now(UTC)))

    async def snapshot_now(self) -> None:
        """Take one snapshot and prune to the retention count (failures are logged)."""
        directory = snapshot_dir(self.db)
        try:
            path = await asyncio.to_thread(snapshot.take, self.db, directory, SCHEDULED_NAME)
            removed = await asyncio.to_thread(
                snapshot.prune, directory, SCHEDULED_NAME, self.retention
            )
        except (OSError, snapshot.SnapshotError) as e:
            log.error("scheduled datastore snapshot failed: %s", e)
            return
        log.info("datastore snapshot %s (%d old removed)", path, len(removed))
