"""A deduplicating work queue with one worker: the runtime of a level-triggered loop.

Keys are enqueued on any relevant change; the worker calls ``reconcile(key)``, which reads
current state itself. A key that fails with an ApiError is retried after a back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from edgek.status import ApiError

log = logging.getLogger("edgek.controllers")


class WorkQueue:
    """Runs ``reconcile`` for each queued key, one at a time."""

    def __init__(
        self, name: str, reconcile: Callable[[str], Awaitable[None]], *, retry_delay: float = 1.0
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        self.retry_delay = retry_delay
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, key: str) -> None:
        if key and key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                await self.reconcile(key)
            except ApiError as e:
                log.warning("%s %s: %s; retrying", self.name, key, e.message)
                await asyncio.sleep(self.retry_delay)
                self.enqueue(key)
            except Exception:
                log.exception("%s %s failed", self.name, key)
