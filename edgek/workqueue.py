"""A deduplicating, rate-limited key queue: the runtime of level-triggered loops (the
server's controllers and scheduler, and ``edgek sim``).

Keys are enqueued on any relevant change; workers call ``reconcile(key)``, which reads
current state itself. A key is never reconciled by two workers at once; a key enqueued
while it runs is run again afterwards. A reconcile that raises is retried after a per-key
exponential back-off (``base_delay * 2**failures``, capped at ``max_delay``) unless
:meth:`KeyQueue.should_retry` says otherwise; a successful one resets the key's back-off.
Delayed keys are event-loop timers, not sleeping tasks. Subclasses may change the order
keys come out in (``_push``/``_pop``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

from edgek.tasks import cancel_and_wait

log = logging.getLogger("edgek.workqueue")

#: The started queues, for ``depths``.
_RUNNING: weakref.WeakSet[KeyQueue] = weakref.WeakSet()


def depths() -> dict[str, int]:
    """Keys waiting (not being reconciled) in the started queues, by queue name (the
    ``workqueue_depth`` metric)."""
    found: dict[str, int] = {}
    for queue in list(_RUNNING):
        found[queue.name] = found.get(queue.name, 0) + len(queue._queued)
    return found


class KeyQueue:
    """Runs ``reconcile`` for each queued key with ``workers`` concurrent workers."""

    def __init__(
        self,
        name: str,
        reconcile: Callable[[str], Awaitable[None]],
        *,
        workers: int = 1,
        base_delay: float = 0.005,
        max_delay: float = 300.0,
    ) -> None:
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._dirty: set[str] = set()  # enqueued while running
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._settled = asyncio.Event()  # set whenever a reconcile finishes

    def enqueue(self, key: str) -> None:
        """Queue ``key`` now (a no-op if it is already waiting)."""
        if not key:
            return
        if key in self._running:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._push(key)

    def enqueue_after(self, key: str, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (an earlier pending timer wins)."""
        if delay <= 0:
            self.enqueue(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: str) -> None:
        """Drop the key's pending timer and back-off (its object is gone or done)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def _push(self, key: str) -> None:
        """Hand a newly queued key to the workers (first in, first out)."""
        self._queue.put_nowait(key)

    async def _pop(self) -> str:
        """The next key for a worker."""
        return await self._queue.get()

    def should_retry(self, key: str, error: Exception) -> bool:
        """Whether a failed reconcile is retried (after logging the failure)."""
        log.exception("%s %s failed; retrying", self.name, key, exc_info=error)
        return True

    def start(self) -> None:
        _RUNNING.add(self)
        for i in range(self.workers):
            self._tasks.append(asyncio.create_task(self._run(), name=f"{self.name}-{i}"))

    async def stop(self) -> None:
        _RUNNING.discard(self)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()

    async def idle(self, *, include_timers: bool = True) -> None:
        """Return when nothing is queued or running (and, by default, no timer is pending)."""
        while self._busy(include_timers):
            self._settled.clear()
            await self._settled.wait()

    def _busy(self, include_timers: bool) -> bool:
        return bool(
            self._queued or self._running or self._dirty or (include_timers and self._timers)
        )

    async def _run(self) -> None:
        while True:
            key = await self._pop()
            self._queued.discard(key)
            self._running.add(key)
            failed = False
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failed = self.should_retry(key, e)
            finally:
                self._running.discard(key)
            if failed:
                n = self._failures.get(key, 0)
                self._failures[key] = n + 1
                self.enqueue_after(key, min(self.base_delay * 2**n, self.max_delay))
            else:
                self._failures.pop(key, None)
            if key in self._dirty:
                self._dirty.discard(key)
                self.enqueue(key)
            self._settled.set()
