"""In-process object caches (informers): a kind's objects kept in memory from a list and a
datastore watch, with change handlers. Authorizers and controllers read these instead of
the store; every change in the datastore reaches them, whoever wrote it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import datastore
from edgek.kinds import Kind
from server.registry.store import ListOptions, ObjectStore, key_prefix

log = logging.getLogger("edgek.cache")

Handler = Callable[[dict[str, Any], bool], None]


class ObjectCache:
    """The current objects of one kind, by (namespace, name)."""

    def __init__(self, objects: ObjectStore, kind: Kind) -> None:
        self.objects = objects
        self.kind = kind
        self._items: dict[tuple[str, str], dict[str, Any]] = {}
        self._handlers: list[Handler] = []
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()

    def on_change(self, handler: Handler) -> None:
        """Call ``handler(obj, deleted)`` for every change (and every object at sync)."""
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._items.get((namespace, name))

    def items(self, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """All objects, or those of one namespace."""
        if namespace is None:
            yield from self._items.values()
        else:
            yield from (o for (ns, _), o in self._items.items() if ns == namespace)

    async def start(self) -> None:
        """Load the current objects and follow changes in the background."""
        revision = await self._relist()
        self.synced.set()
        self._task = asyncio.create_task(self._follow(revision), name=f"cache-{self.kind.resource}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _relist(self) -> int:
        listed = await self.objects.list(self.kind, "", ListOptions())
        fresh = {_key(o): o for o in listed.items}
        for key, old in list(self._items.items()):
            if key not in fresh:
                self._emit(old, True)
        self._items = fresh
        for obj in fresh.values():
            self._emit(obj, False)
        return int(listed.resource_version)

    async def _follow(self, revision: int) -> None:
        prefix = key_prefix(self.kind)
        while True:
            try:
                watcher = self.objects.store.watch(prefix, revision)
                async for ev in watcher:
                    obj = self.objects.decode(self.kind, ev.kv)
                    deleted = ev.type == "DELETE"
                    if deleted:
                        self._items.pop(_key(obj), None)
                    else:
                        self._items[_key(obj)] = obj
                    revision = ev.kv.mod_revision
                    self._emit(obj, deleted)
                if not watcher.dropped:
                    return
            except datastore.CompactedError:
                pass
            log.info("cache %s fell behind; re-listing", self.kind.resource)
            revision = await self._relist()

    def _emit(self, obj: dict[str, Any], deleted: bool) -> None:
        for handler in self._handlers:
            try:
                handler(obj, deleted)
            except Exception:
                log.exception("cache %s handler failed", self.kind.resource)


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    md = obj["metadata"]
    return (md.get("namespace", ""), md["name"])
