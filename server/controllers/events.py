"""Events recorded by the control loops: non-blocking, written in the background, and
aggregated like upstream's event correlator (an identical event bumps ``count`` and
``lastTimestamp`` of the one already written instead of adding another).

Events expire with the store's event TTL (1 h by default).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edgek import objects
from edgek.kinds import Kind
from edgek.status import ApiError
from edgek.tasks import cancel_and_wait
from edgek.timefmt import format_time
from server.storage.objectstore import ObjectStore, WriteOptions

log = logging.getLogger("edgek.events")

#: How many distinct recent events are remembered for aggregation.
_REMEMBERED = 4096
#: Concurrent event writes (the datastore group-commits them).
_WRITERS = 4

_Key = tuple[str, str, str, str, str, str]


class EventRecorder:
    """Writes core/v1 Events about objects on behalf of the control loops."""

    def __init__(
        self,
        objects_: ObjectStore,
        events: Kind,
        *,
        clock: Callable[[], datetime] = objects.now,
        host: str = "",
    ) -> None:
        self.objects = objects_
        self.events = events
        self.clock = clock
        self.host = host
        # one queue per writer; a key always goes to the same writer, so the writes of one
        # event never race; repeats that arrive before it is written just add to its count
        self._queues: list[asyncio.Queue[_Key]] = [asyncio.Queue() for _ in range(_WRITERS)]
        self._waiting: dict[_Key, tuple[dict[str, Any], int]] = {}
        self._recent: OrderedDict[_Key, tuple[str, str]] = OrderedDict()  # -> (ns, name)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_suffix = 0

    def record(
        self,
        obj: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        *,
        component: str = "kube-controller-manager",
    ) -> None:
        """Queue an event about ``obj`` (``type_`` is "Normal" or "Warning")."""
        md = obj.get("metadata") or {}
        namespace = md.get("namespace") or "default"
        involved = {
            "kind": obj.get("kind", ""),
            "namespace": md.get("namespace", ""),
            "name": md.get("name", ""),
            "uid": md.get("uid", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": md.get("resourceVersion", ""),
        }
        involved = {k: v for k, v in involved.items() if v}
        subject = involved.get("uid") or involved.get("name", "")
        key: _Key = (namespace, subject, type_, reason, message, component)
        waiting = self._waiting.get(key)
        if waiting is not None:
            self._waiting[key] = (waiting[0], waiting[1] + 1)
        else:
            self._waiting[key] = (involved, 1)
            self._queues[hash(key) % _WRITERS].put_nowait(key)
        if not self._tasks:
            self.start()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop(q), name=f"events-{i}")
            for i, q in enumerate(self._queues)
        ]

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()

    async def flush(self) -> None:
        """Return once every recorded event is written (tests)."""
        for q in self._queues:
            await q.join()

    def _suffix(self) -> int:
        """Upstream names events ``<object>.<unix nanoseconds in hex>``; kept unique here."""
        self._last_suffix = max(self._last_suffix + 1, time.time_ns())
        return self._last_suffix

    async def _write_loop(self, queue: asyncio.Queue[_Key]) -> None:
        while True:
            key = await queue.get()
            involved, times = self._waiting.pop(key)
            try:
                await self._write(key, involved, times)
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                log.debug("event %s not written: %s", key[3], e.message)
            except Exception:
                log.exception("event %s not written", key[3])
            finally:
                queue.task_done()

    async def _write(self, key: _Key, involved: dict[str, Any], times: int) -> None:
        namespace, _, type_, reason, message, component = key
        now = format_time(self.clock())
        opts = WriteOptions()
        seen = self._recent.get(key)
        if seen is not None:
            self._recent.move_to_end(key)

            async def bump(current: dict[str, Any] | None) -> dict[str, Any] | None:
                if current is None:
                    return None
                current["count"] = int(current.get("count") or 1) + times
                current["lastTimestamp"] = now
                return current

            try:
                await self.objects.modify(self.events, seen[0], seen[1], bump, opts)
                return
            except ApiError as e:
                if e.code != 404:
                    raise
        source: dict[str, str] = {"component": component}
        if self.host:
            source["host"] = self.host
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{involved.get('name', 'event')}.{self._suffix():x}",
                "namespace": namespace,
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": times,
            "type": type_,
            "reportingComponent": component,
            "reportingInstance": self.host,
        }
        created = await self.objects.create(self.events, namespace, event, opts)
        self._recent[key] = (namespace, created["metadata"]["name"])
        while len(self._recent) > _REMEMBERED:
            self._recent.popitem(last=False)
