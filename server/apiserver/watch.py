"""Watch streams: newline-delimited JSON watch events over a chunked HTTP response.

Events come from the datastore watch for the kind's key prefix, filtered by selectors
(an object that stops matching is reported DELETED, one that starts matching ADDED), with
optional bookmarks, the ``sendInitialEvents`` protocol, and ``timeoutSeconds``. Decoding and
encoding an event is shared by every watch that receives it (the start-up's ``EventMemo``): per
watch remain
the selector check, the Table or metadata-only transform if asked, and the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

import datastore
from edgek import status
from edgek.kinds import Kind
from server.apiserver.codec import JSON, dumps
from server.storage.eventmemo import Decoder, EventMemo, EventView
from server.storage.objectstore import ListOptions, ObjectStore, decode, key_prefix, parse_rv

#: Upstream serves watches for a random 30-60 minutes when the client sets no timeout.
DEFAULT_TIMEOUT_RANGE = (1800, 3600)
#: Most watch events written in one chunk (fewer than the event memo holds).
WRITE_BATCH = 64
#: How long a watch from a future resourceVersion waits for the store to reach it (upstream's
#: watch cache blockTimeout) before answering 504 Too large resource version.
FRESH_WAIT = 3.0


class WatchRequest:
    """What the client asked of a watch."""

    def __init__(
        self,
        kind: Kind,
        namespace: str,
        opts: ListOptions,
        *,
        resource_version: str,
        bookmarks: bool,
        timeout: float | None,
        send_initial_events: bool,
    ) -> None:
        self.kind = kind
        self.namespace = namespace
        self.opts = opts
        self.resource_version = resource_version
        self.bookmarks = bookmarks
        self.timeout = timeout
        self.send_initial_events = send_initial_events


Transform = Callable[[dict[str, Any], bool], dict[str, Any]]


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return dumps({"type": kind, "object": obj}) + b"\n"


def _bookmark(kind: Kind, revision: int, initial_end: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"resourceVersion": str(revision)}
    if initial_end:
        md["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": md}


def translate(
    kind: Kind,
    ev: datastore.Event,
    opts: ListOptions,
    filtered: bool,
    decode: Decoder = decode,
) -> tuple[str, dict[str, Any]] | None:
    """The watch event (type, object) a datastore event means for this watcher, or None."""
    return EventView(kind, ev, decode).translate(opts, filtered)


async def serve(
    request: web.Request,
    objects: ObjectStore,
    memo: EventMemo,
    wr: WatchRequest,
    transform: Transform,
    *,
    bookmark_interval: float = 60.0,
) -> web.StreamResponse:
    """Stream watch events until the timeout, the client leaves, or the datastore ends it."""
    store = objects.datastore
    kind = wr.kind
    initial: list[dict[str, Any]] = []
    start_rev: int
    if wr.send_initial_events or wr.resource_version in ("", "0"):
        listed = await objects.list(
            kind,
            wr.namespace,
            ListOptions(
                label_selector=wr.opts.label_selector, field_selector=wr.opts.field_selector
            ),
        )
        initial = listed.items
        start_rev = int(listed.resource_version)
    else:
        start_rev = parse_rv(wr.resource_version)
        await _wait_fresh(objects, start_rev)
    resp = web.StreamResponse(headers={"Content-Type": JSON})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        watcher = store.watch(key_prefix(kind, wr.namespace), start_rev)
    except datastore.CompactedError as e:
        await resp.write(_compacted(start_rev, e))
        return resp
    timeout = wr.timeout if wr.timeout else random.uniform(*DEFAULT_TIMEOUT_RANGE)
    deadline = asyncio.get_running_loop().time() + timeout
    live = _Stream(resp, watcher, memo, wr, transform, start_rev)
    streaming: asyncio.Task[None] | None = None
    try:
        for obj in initial:
            await resp.write(_event("ADDED", transform(obj, True)))
        if wr.send_initial_events:
            await resp.write(_event("BOOKMARK", _bookmark(kind, start_rev, initial_end=True)))
        streaming = asyncio.ensure_future(live.pump())
        await live.follow(streaming, deadline, bookmark_interval)
    except ConnectionResetError:
        return resp
    finally:
        watcher.close()
        if streaming is not None:
            streaming.cancel()
            # asyncio.wait never raises the task's outcome but lets this handler's own
            # cancellation through; the outcome is then read so none goes unretrieved
            await asyncio.wait({streaming})
            if not streaming.cancelled():
                streaming.exception()
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


def _compacted(start_rev: int, e: datastore.CompactedError) -> bytes:
    """The ERROR event line for a watch whose start revision was compacted away."""
    err = status.expired(f"too old resource version: {start_rev} ({e.compact_revision})")
    return _event("ERROR", err.status())


class _Stream:
    """The live part of one watch: its datastore events written as watch events."""

    __slots__ = ("filtered", "last_rev", "memo", "resp", "start_rev", "transform", "watcher", "wr")

    def __init__(
        self,
        resp: web.StreamResponse,
        watcher: datastore.Watcher,
        memo: EventMemo,
        wr: WatchRequest,
        transform: Transform,
        start_rev: int,
    ) -> None:
        self.resp = resp
        self.watcher = watcher
        self.memo = memo
        self.wr = wr
        self.transform = transform
        self.filtered = wr.opts.label_selector is not None or wr.opts.field_selector is not None
        self.start_rev = start_rev
        #: The revision up to which events are written (for bookmarks).
        self.last_rev = start_rev

    async def pump(self) -> None:
        """Write the watch events of the datastore events, until the watcher ends.

        Events already waiting are written together (one chunk, up to WRITE_BATCH of them),
        then the stream yields: the other watches of the same events take their turn while
        the events are still in the memo. ``last_rev`` (for bookmarks) advances only once the
        events up to it are written."""
        resp = self.resp
        watcher = self.watcher
        memo = self.memo
        transform = self.transform
        kind = self.wr.kind
        opts = self.wr.opts
        filtered = self.filtered
        lines: list[bytes] = []
        try:
            async for ev in watcher:
                view = memo.view(kind, ev)
                out = view.translate(opts, filtered)
                if out is not None:
                    shown = transform(out[1], False)
                    # an untransformed object's line is encoded once, for every watch
                    lines.append(view.line(*out) if shown is out[1] else _event(out[0], shown))
                if len(lines) < WRITE_BATCH and watcher.ready():
                    continue
                if lines:
                    await resp.write(b"".join(lines))
                    lines.clear()
                self.last_rev = ev.kv.mod_revision
                await asyncio.sleep(0)
        except datastore.CompactedError as e:
            await resp.write(_compacted(self.start_rev, e))

    async def follow(
        self, streaming: asyncio.Task[None], deadline: float, bookmark_interval: float
    ) -> None:
        """Wait until ``streaming`` (:meth:`pump`) ends or the deadline passes, writing a
        bookmark every ``bookmark_interval`` meanwhile if the client asked for them.
        ConnectionResetError if the client left."""
        loop = asyncio.get_running_loop()
        bookmarks = self.wr.bookmarks
        next_bookmark = loop.time() + bookmark_interval
        while True:
            now = loop.time()
            if now >= deadline:
                return
            wait = deadline - now
            if bookmarks:
                wait = min(wait, max(next_bookmark - now, 0))
            done, _ = await asyncio.wait({streaming}, timeout=wait)
            if done:
                streaming.result()  # ConnectionResetError if the client left
                return
            if bookmarks and loop.time() >= next_bookmark:
                await self.resp.write(_event("BOOKMARK", _bookmark(self.wr.kind, self.last_rev)))
                next_bookmark = loop.time() + bookmark_interval


async def _wait_fresh(objects: ObjectStore, revision: int) -> None:
    """Wait up to :data:`FRESH_WAIT` for the store to reach ``revision``; then 504 if not."""
    if objects.datastore.revision < revision:
        watcher = objects.datastore.watch("")
        try:
            async with asyncio.timeout(FRESH_WAIT):
                async for ev in watcher:
                    if ev.kv.mod_revision >= revision:
                        break
        except TimeoutError:
            pass
        finally:
            watcher.close()
    objects.check_not_future(revision)


def first_only(transform: Callable[[dict[str, Any], bool], dict[str, Any]]) -> Transform:
    """Wrap a Table transform so only the first event carries column definitions."""
    state = {"first": True}

    def wrapped(obj: dict[str, Any], initial: bool) -> dict[str, Any]:
        out = transform(obj, state["first"])
        state["first"] = False
        return out

    return wrapped
