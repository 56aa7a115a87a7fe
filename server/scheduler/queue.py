"""The scheduling queue: a work queue that hands out the most important pod first.

Same contract as :class:`WorkQueue` (deduplicated keys, a key never runs twice at once, one
enqueued while running runs again afterwards, per-key exponential back-off when reconcile
raises) but keys come out by descending priority, then in arrival order (upstream
PrioritySort).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

from edgek.status import ApiError
from server.controllers.workqueue import WorkQueue

log = logging.getLogger("edgek.scheduler")


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
        self._pending: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._fails: dict[str, int] = {}
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    def enqueue(self, key: str) -> None:
        if not key:
            return
        if key in self._active:
            self._again.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            heapq.heappush(self._heap, (-self.priority(key), next(self._seq), key))
            self._ready.release()

    def enqueue_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.enqueue(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._later.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._later[key] = loop.call_at(when, self._fire_later, key)

    def _fire_later(self, key: str) -> None:
        self._later.pop(key, None)
        self.enqueue(key)

    def forget(self, key: str) -> None:
        """Drop a pending back-off timer and failure count (the pod is gone or done)."""
        timer = self._later.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._fails.pop(key, None)

    def start(self) -> None:
        for i in range(self.workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"{self.name}-{i}"))

    async def stop(self) -> None:
        for timer in self._later.values():
            timer.cancel()
        self._later.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()

    async def idle(self, *, include_timers: bool = True) -> None:
        while self._pending or self._active or self._again or (include_timers and self._later):
            self._changed.clear()
            await self._changed.wait()

    async def _next(self) -> str:
        await self._ready.acquire()
        _, _, key = heapq.heappop(self._heap)
        return key

    async def _work(self) -> None:
        while True:
            key = await self._next()
            self._pending.discard(key)
            self._active.add(key)
            failed = False
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                failed = True
                log.info("%s %s: %s; retrying", self.name, key, e.message)
            except Exception:
                failed = True
                log.exception("%s %s failed; retrying", self.name, key)
            finally:
                self._active.discard(key)
            if failed:
                n = self._fails.get(key, 0)
                self._fails[key] = n + 1
                self.enqueue_after(key, min(self.base_delay * 2**n, self.max_delay))
            else:
                self._fails.pop(key, None)
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)
            self._changed.set()
