"""In-process object caches (informers): a kind's objects kept in memory from a list and a
datastore watch, with change handlers and indexes. Authorizers, the scheduler and the
controllers read these instead of the store; every change in the datastore reaches them,
whoever wrote it.

Objects handed out are shared: readers must never mutate them (copy first). They carry no
``metadata.managedFields``: nothing reading a cache needs them, they are a large part of an
object's memory, and a write of a cached copy without them keeps the stored ones. Their
keys and short strings are interned: every object of a kind repeats the same field names
and mostly the same values, and one shared copy of each halves a cached pod's memory.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import datastore
from edgek.kinds import Kind, Registry
from edgek.objects import Obj
from edgek.tasks import cancel_and_wait
from server.storage.eventmemo import EventMemo
from server.storage.objectstore import ListOptions, ObjectStore, key_prefix

log = logging.getLogger("edgek.cache")

#: Strings up to this length are shared between cached objects (names of fields, enum
#: values, label values, timestamps); longer ones are mostly unique.
_SHARED_STRING_LENGTH = 40

Handler = Callable[[Obj, bool], None]
EventHandler = Callable[[Obj | None, Obj | None], None]
IndexFunc = Callable[[Obj], Iterable[str]]
Key = tuple[str, str]


def index_owner_uid(obj: Obj) -> list[str]:
    """Index values: the uid of every owner reference."""
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("uid")]


def index_node_name(obj: Obj) -> list[str]:
    """Index values: the node a pod is bound to (none while unbound)."""
    node = (obj.get("spec") or {}).get("nodeName")
    return [node] if node else []


def _index_namespace(obj: Obj) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


class ObjectCache:
    """The current objects of one kind, by (namespace, name)."""

    def __init__(self, objects: ObjectStore, kind: Kind, memo: EventMemo) -> None:
        self.objects = objects
        self.kind = kind
        self.memo = memo  # shared with the API watches: each event is decoded once
        self._items: dict[Key, Obj] = {}
        self._handlers: list[EventHandler] = []
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self.synced = asyncio.Event()
        if kind.namespaced:
            self.add_index("namespace", _index_namespace)

    def on_change(self, handler: Handler) -> None:
        """Call ``handler(obj, deleted)`` for every change (and every object at sync)."""
        self._handlers.append(
            lambda old, new: handler(new, False) if new is not None else handler(old or {}, True)
        )

    def on_event(self, handler: EventHandler) -> None:
        """Call ``handler(old, new)`` for every change: old None on add, new None on delete."""
        self._handlers.append(handler)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        """Maintain an index ``name`` of the values ``fn(obj)`` (once per name)."""
        if name in self._index_funcs:
            return
        self._index_funcs[name] = fn
        index: dict[str, set[Key]] = {}
        for key, item in self._items.items():
            for value in fn(item):
                index.setdefault(value, set()).add(key)
        self._indexes[name] = index

    def by_index(self, name: str, value: str) -> list[Obj]:
        """The objects whose index ``name`` has ``value``."""
        keys = self._indexes[name].get(value, ())
        return [self._items[k] for k in keys]

    def get(self, namespace: str, name: str) -> Obj | None:
        return self._items.get((namespace, name))

    def items(self, namespace: str | None = None) -> Iterator[Obj]:
        """All objects, or those of one namespace."""
        if namespace is None:
            yield from self._items.values()
        elif self.kind.namespaced:
            yield from self.by_index("namespace", namespace)

    def __len__(self) -> int:
        return len(self._items)

    async def start(self) -> None:
        """Load the current objects and follow changes in the background."""
        async with self._starting:
            if self._task is not None:
                return
            revision = await self._relist()
            self.synced.set()
            self._task = asyncio.create_task(
                self._follow(revision), name=f"cache-{self.kind.resource}"
            )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _relist(self) -> int:
        listed = await self.objects.list(self.kind, "", ListOptions())
        fresh = {_key(o): _compact(o) for o in listed.items}
        for key, gone in list(self._items.items()):
            if key not in fresh:
                self._apply(key, None)
                self._emit(gone, None)
        for key, obj in fresh.items():
            old = self._items.get(key)
            self._apply(key, obj)
            self._emit(old, obj)
        return int(listed.resource_version)

    async def _follow(self, revision: int) -> None:
        prefix = key_prefix(self.kind)
        memo = self.memo
        while True:
            try:
                watcher = self.objects.datastore.watch(prefix, revision)
                async for ev in watcher:
                    # decoded once for this cache and every API watch of the same event
                    obj = _compact(memo.view(self.kind, ev).obj)
                    key = _key(obj)
                    old = self._items.get(key)
                    if ev.type == "DELETE":
                        self._apply(key, None)
                        self._emit(old or obj, None)
                    else:
                        self._apply(key, obj)
                        self._emit(old, obj)
                    revision = ev.kv.mod_revision
                return
            except datastore.CompactedError:
                pass
            log.info("cache %s fell behind a compaction; re-listing", self.kind.resource)
            revision = await self._relist()

    def _apply(self, key: Key, obj: Obj | None) -> None:
        old = self._items.get(key)
        for name, fn in self._index_funcs.items():
            index = self._indexes[name]
            if old is not None:
                for value in fn(old):
                    keys = index.get(value)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del index[value]
            if obj is not None:
                for value in fn(obj):
                    index.setdefault(value, set()).add(key)
        if obj is None:
            self._items.pop(key, None)
        else:
            self._items[key] = obj

    def _emit(self, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:
                log.exception("cache %s handler failed", self.kind.resource)


def _key(obj: Obj) -> Key:
    md = obj["metadata"]
    return (md.get("namespace", ""), md["name"])


class Informers:
    """The shared caches: one per kind, created on first use, started together."""

    def __init__(self, objects_: ObjectStore, registry: Registry, memo: EventMemo) -> None:
        self.objects = objects_
        self.registry = registry
        self.memo = memo
        self._caches: dict[tuple[str, str], ObjectCache] = {}

    def cache(self, group: str, resource: str) -> ObjectCache:
        """The cache of a built-in kind (created, not yet started, on first use)."""
        found = self._caches.get((group, resource))
        if found is None:
            found = ObjectCache(
                self.objects, builtin_kind(self.registry, group, resource), self.memo
            )
            self._caches[(group, resource)] = found
        return found

    async def start(self) -> None:
        """Start every cache made so far (already started ones are left as they are)."""
        await asyncio.gather(*(c.start() for c in list(self._caches.values())))

    async def stop(self) -> None:
        for c in self._caches.values():
            await c.stop()


def builtin_kind(registry: Registry, group: str, resource: str) -> Kind:
    """A built-in kind by group and resource (every built-in kind is served as v1)."""
    kind = registry.by_resource(group, "v1", resource)
    if kind is None or kind.custom:
        raise KeyError(f"no kind {resource}.{group}")
    return kind


def _compact(obj: Obj) -> Obj:
    """The cached form of a decoded object (a copy: ``obj`` may be shared): without
    managedFields, strings shared."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    shared: Obj = _shared({**obj, "metadata": meta})
    return shared


def _shared(value: Any, intern: Callable[[str], str] = sys.intern) -> Any:
    """A copy of JSON data whose keys and short strings are the interned copies."""
    if isinstance(value, dict):
        return {
            intern(k): (
                intern(v)
                if type(v) is str and len(v) <= _SHARED_STRING_LENGTH
                else _shared(v)
                if isinstance(v, dict | list)
                else v
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            intern(v)
            if type(v) is str and len(v) <= _SHARED_STRING_LENGTH
            else _shared(v)
            if isinstance(v, dict | list)
            else v
            for v in value
        ]
    return value
