"""The event memo: work on a datastore event shared by every API watch and informer cache that
receives it.

All watches of a kind see the same datastore events (kubelets of a fleet each watch the pods of
their own node), so an event is decoded once per kind view, its selectable fields are computed
once per object, and each watch event line (type and object, JSON) is encoded once; per watch
only the selector check and the write remain, as with kube-apiserver's watch cache.

Views are kept in a small FIFO memo keyed by (kind, key, revision) -- one event per key and
revision, so a watch that re-reads an event from the datastore log shares it too. The objects a
view hands out are shared: no consumer may modify them. One memo per object store is built at
start-up and handed to the API watches and the informer caches.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import datastore
from edgek.fastjson import dumps
from edgek.kinds import Kind
from edgek.selectors import selectable_fields
from server.storage.objectstore import ListOptions, ObjectStore

#: How many event views a memo keeps: the spread between the fastest and the slowest watch of
#: the same events it covers (a watch further behind decodes for itself, correctly, just again).
MEMO_SIZE = 256

Decoder = Callable[[Kind, datastore.KeyValue], dict[str, Any]]
#: The view, if any, of the event that wrote a KeyValue.
Finder = Callable[[Kind, datastore.KeyValue], "EventView | None"]


class EventView:
    """One datastore event as one kind shows it, decoded and encoded lazily, at most once."""

    __slots__ = (
        "_decode",
        "_fields",
        "_find",
        "_left",
        "_lines",
        "_obj",
        "_prev",
        "_prev_fields",
        "event",
        "kind",
    )

    def __init__(
        self, kind: Kind, event: datastore.Event, decode: Decoder, find: Finder | None = None
    ) -> None:
        self.kind = kind
        self.event = event
        self._decode = decode
        self._find = find
        self._obj: dict[str, Any] | None = None
        self._prev: dict[str, Any] | None = None
        self._left: dict[str, Any] | None = None
        self._fields: dict[str, str] | None = None
        self._prev_fields: dict[str, str] | None = None
        self._lines: dict[tuple[str, bool], bytes] = {}

    @property
    def obj(self) -> dict[str, Any]:
        """The object the event leaves (for a DELETE: the last one, at the delete's revision)."""
        if self._obj is None:
            self._obj = self._decode(self.kind, self.event.kv)
        return self._obj

    @property
    def prev(self) -> dict[str, Any]:
        """The object the event replaced (only for events with a ``prev_kv``): the object of
        the event that wrote it, while that one is still in the memo."""
        if self._prev is None:
            prev_kv = self.event.prev_kv
            assert prev_kv is not None
            earlier = self._find(self.kind, prev_kv) if self._find is not None else None
            if earlier is not None:
                self._prev, self._prev_fields = earlier.obj, earlier._fields
            else:
                self._prev = self._decode(self.kind, prev_kv)
        return self._prev

    @property
    def left(self) -> dict[str, Any]:
        """The previous object at this event's revision: what a watch sees leave its selection
        (upstream). A copy of ``prev`` down to its metadata; the rest is shared."""
        if self._left is None:
            prev = self.prev
            self._left = {
                **prev,
                "metadata": {
                    **prev["metadata"],
                    "resourceVersion": str(self.event.kv.mod_revision),
                },
            }
        return self._left

    def _matches(self, opts: ListOptions, previous: bool) -> bool:
        """``objectstore.matches`` of the new or previous object, fields computed once."""
        obj = self.prev if previous else self.obj
        if opts.label_selector is not None and not opts.label_selector.matches(
            obj.get("metadata", {}).get("labels")
        ):
            return False
        if opts.field_selector is None:
            return True
        fields = self._prev_fields if previous else self._fields
        if fields is None:
            fields = selectable_fields(self.kind.group, self.kind.resource, obj)
            if previous:
                self._prev_fields = fields
            else:
                self._fields = fields
        return opts.field_selector.matches(fields)

    def translate(self, opts: ListOptions, filtered: bool) -> tuple[str, dict[str, Any]] | None:
        """The watch event (type, shared object) this event means for a watch, or None.

        Unfiltered watches see ADDED, MODIFIED and DELETED as they happen. With selectors, an
        object that starts matching is ADDED, one that stops matching DELETED (as it last
        matched), and events of objects that match neither before nor after are dropped.
        """
        ev = self.event
        if ev.type == "DELETE":
            return ("DELETED", self.obj) if not filtered or self._matches(opts, False) else None
        now_matches = not filtered or self._matches(opts, False)
        if ev.prev_kv is None:
            return ("ADDED", self.obj) if now_matches else None
        if not filtered:
            return ("MODIFIED", self.obj)
        before = self._matches(opts, True)
        if now_matches:
            return ("MODIFIED" if before else "ADDED", self.obj)
        return ("DELETED", self.left) if before else None

    def line(self, type_: str, obj: dict[str, Any]) -> bytes:
        """The JSON watch event line of ``(type_, obj)``, ``obj`` being one of this view's."""
        key = (type_, obj is self._left)
        found = self._lines.get(key)
        if found is None:
            found = self._lines[key] = dumps({"type": type_, "object": obj}) + b"\n"
        return found


class EventMemo:
    """The most recent event views of one object store (so one decoder), oldest dropped first."""

    def __init__(self, objects: ObjectStore, size: int = MEMO_SIZE) -> None:
        self.decode: Decoder = objects.decode
        """``kv`` decoded as an object of ``kind`` (a new object; Secrets decrypted)."""
        self._size = size
        # OrderedDict: dropping the oldest is O(1) (next(iter(dict)) after deletions at the
        # front walks the dead slots)
        self._views: OrderedDict[tuple[Kind, str, int], EventView] = OrderedDict()

    def view(self, kind: Kind, event: datastore.Event) -> EventView:
        """The shared view of ``event`` through ``kind``."""
        key = (kind, event.kv.key, event.kv.mod_revision)
        found = self._views.get(key)
        if found is None:
            found = self._views[key] = EventView(kind, event, self.decode, self.find)
            if len(self._views) > self._size:
                self._views.popitem(last=False)
        return found

    def find(self, kind: Kind, kv: datastore.KeyValue) -> EventView | None:
        """The view, if still kept, of the event that wrote ``kv`` (not a deletion's)."""
        found = self._views.get((kind, kv.key, kv.mod_revision))
        return found if found is not None and found.event.type != "DELETE" else None

    def __len__(self) -> int:
        return len(self._views)
