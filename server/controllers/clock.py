"""The control loops' clock. Normally the wall clock; with ``--debug-clock-file`` (tests)
it runs ahead by the number of seconds written in that file, so time-driven loops
(CronJobs, node heartbeats, TTLs) can be exercised without waiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from edgek.objects import now
from edgek.tasks import cancel_and_wait

log = logging.getLogger("edgek.clock")


class SkewedClock:
    """``now()`` plus an offset read from a file; listeners hear when the offset moves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        self._listeners: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._read()

    def __call__(self) -> datetime:
        return now() + timedelta(seconds=self.offset)

    def on_jump(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the offset changes."""
        self._listeners.append(listener)

    def _read(self) -> bool:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except FileNotFoundError:
            offset = 0.0
        except (OSError, ValueError) as e:
            log.warning("clock file %s unreadable: %s", self.path, e)
            return False
        changed = offset != self.offset
        self.offset = offset
        return changed

    def start(self, interval: float = 0.2) -> None:
        """Re-read the file every ``interval`` seconds in the background."""
        self._task = asyncio.create_task(self._poll(interval), name="debug-clock")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._read():
                log.info("control-loop clock now %+.0f s", self.offset)
                for listener in self._listeners:
                    listener()
