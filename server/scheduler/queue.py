"""The scheduling queue: a work queue that hands out the most important pod first.

Same contract as :class:`WorkQueue` (deduplicated keys, a key never runs twice at once, one
enqueued while running runs again afterwards, per-key exponential back-off when reconcile
raises) but keys come out by descending priority, then in arrival order (upstream
PrioritySort).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable

from server.controllers.workqueue import WorkQueue


class SchedulingQueue(WorkQueue):
    """A priority work queue; ``priority(key)`` is read when a key is queued."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[str], Awaitable[None]],
        priority: Callable[[str], int],
        *,
        workers: int = 1,
        base_delay: float = 0.005,
        max_delay: float = 300.0,
    ) -> None:
        super().__init__(
            name, reconcile, workers=workers, base_delay=base_delay, max_delay=max_delay
        )
        self.priority = priority
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._ready = asyncio.Semaphore(0)  # one release per heap entry

    def _push(self, key: str) -> None:
        heapq.heappush(self._heap, (-self.priority(key), next(self._seq), key))
        self._ready.release()

    async def _pop(self) -> str:
        await self._ready.acquire()
        return heapq.heappop(self._heap)[2]
