"""Events the agent records about its pods, as the kubelet does: core/v1 Events from source
component ``kubelet`` on this host, repeats of the same event aggregated into one object
whose ``count`` and ``lastTimestamp`` grow.

Recording never blocks a pod worker: events go to a bounded queue that one task writes to
the API; an event that cannot be written (the server is away) is dropped, as upstream's
broadcaster drops after its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from edgek.apiclient import ApiClient, ApiClientError
from edgek.timefmt import format_time

log = logging.getLogger("edgek.agent.events")

NORMAL = "Normal"
WARNING = "Warning"
#: How many distinct events are remembered for aggregation (upstream's LRU: 4096).
_REMEMBERED = 4096
_QUEUE = 1000


def involved(pod: Mapping[str, Any], container: str = "", init: bool = False) -> dict[str, Any]:
    """The ``involvedObject`` of an event about ``pod`` (or one of its containers: the
    kubelet's ``spec.containers{name}`` / ``spec.initContainers{name}`` field path)."""
    meta = pod["metadata"]
    ref = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if container:
        kind = "initContainers" if init else "containers"
        ref["fieldPath"] = f"spec.{kind}{{{container}}}"
    return ref


class EventRecorder:
    """Writes the node's events (see the module docstring)."""

    def __init__(
        self,
        client: Callable[[], ApiClient | None],
        host: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.host = host
        self.clock = clock
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, datetime]] = asyncio.Queue(
            _QUEUE
        )
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int, str]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._run(), name="events")

    async def stop(self) -> None:
        """Stop the writer (queued events are dropped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def record(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Queue an event about ``obj`` (an :func:`involved` reference)."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait((obj, kind, reason, message, self.clock()))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
            except ApiClientError as e:
                log.debug("dropping event %s: %s", item[2], e)

    async def _write(
        self, obj: dict[str, Any], kind: str, reason: str, message: str, when: datetime
    ) -> None:
        client = self._client()
        if client is None:
            return
        ns = obj.get("namespace") or "default"
        key = (obj.get("uid", ""), obj.get("fieldPath", ""), kind, reason, message)
        stamp = format_time(when)
        seen = self._seen.get(key)
        if seen is not None:
            name, count, first = seen
            try:
                await client.patch(
                    f"/api/v1/namespaces/{ns}/events/{name}",
                    {"count": count + 1, "lastTimestamp": stamp},
                    patch_type="strategic",
                )
                self._remember(key, (name, count + 1, first))
                return
            except ApiClientError as e:
                if e.code != 404:
                    raise
        name = f"{obj.get('name', 'unknown')}.{secrets.token_hex(8)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": obj,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.host},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": None,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.host,
        }
        await client.request("POST", f"/api/v1/namespaces/{ns}/events", body)
        self._remember(key, (name, 1, stamp))

    def _remember(self, key: tuple[str, ...], value: tuple[str, int, str]) -> None:
        self._seen[key] = value
        self._seen.move_to_end(key)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
