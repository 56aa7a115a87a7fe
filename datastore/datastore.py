"""Kine-style key-value store: an append-only SQL log whose row id is the revision.

Every write appends one row (an event); the newest row of a key at a revision is its version
then, and a row with ``deleted`` set is a tombstone. One writer task owns all writes: it takes
every queued write, checks the guards in order against the current state (an in-memory index
of live keys, kept in step with the table and rebuilt at open), appends the rows in a single
transaction and commit, and only then advances the revision, fans the events out to watchers
and answers the callers. Compaction and space reclamation run as exclusive jobs of that task.

This process must be the only writer of the database (revisions are assigned here).
Reads at a revision newer than the current one raise FutureRevisionError instead of waiting.
Keys whose TTL has passed stay readable until the expiry pass deletes them.
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import heapq
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from datastore import database
from datastore import statements as sql
from datastore.database import Database, Row
from datastore.types import (
    CompactedError,
    ConflictError,
    DatastoreError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyValue,
    NotFoundError,
)
from datastore.watch import Watcher

log = logging.getLogger(__name__)

_MAX_BATCH = 1000
_COMPACT_CHUNK = 5000
_DEFAULT_KEEP_REVISIONS = 1000


@dataclass(eq=False)
class _Write:
    op: Literal["create", "update", "delete"]
    key: str
    value: bytes
    expected_revision: int
    ttl: int | None
    future: asyncio.Future[KeyValue]


@dataclass(eq=False)
class _Job:
    run: Callable[[], Awaitable[None]]
    future: asyncio.Future[None]


@dataclass
class _Batch:
    """The outcome of a batch of writes, computed before its commit and applied after."""

    revision: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    results: list[KeyValue | DatastoreError] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    latest: dict[str, KeyValue | None] = field(default_factory=dict)
    expiries: list[tuple[float, str, int]] = field(default_factory=list)


def _prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    nxt = ord(stripped[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:
        nxt = 0xE000
    return stripped[:-1] + chr(nxt)


def _key_range(prefix: str, start_after: str = "") -> dict[str, str]:
    """The bounds of keys under ``prefix`` after ``start_after``, as statement parameters."""
    bounds: dict[str, str] = {}
    if prefix:
        bounds["lo"] = prefix
        end = _prefix_end(prefix)
        if end is not None:
            bounds["hi"] = end
    if start_after:
        bounds["after_key"] = start_after
    return bounds


def _to_kv(row: Row) -> KeyValue:
    return KeyValue(row["name"], row["value"], row["create_revision"], row["id"])


def _to_event(row: Row) -> Event:
    current = _to_kv(row)
    name, create_revision, prev_revision = row["name"], row["create_revision"], row["prev_revision"]
    if row["deleted"]:
        return Event(
            "DELETE", current, KeyValue(name, row["value"], create_revision, prev_revision)
        )
    prev_value = row["prev_value"]
    if prev_revision == 0 or prev_value is None:
        return Event("PUT", current, None)
    return Event("PUT", current, KeyValue(name, prev_value, create_revision, prev_revision))


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Datastore:
    """The datastore: get/list/count, guarded writes, watch, TTL expiry and compaction."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], float],
        revision: int,
        compact_revision: int,
        index: dict[str, KeyValue],
        expiries: list[tuple[float, str, int]],
    ) -> None:
        self._db = db
        self._clock = clock
        self._revision = revision
        self._compact_revision = compact_revision
        # key -> latest KeyValue of every live key (reads at the latest revision never touch
        # the database), and the live keys in order for prefix ranges.
        self._index = index
        self._keys = sorted(index)
        # Heap of (expires_at, key, mod_revision); entries of superseded versions are skipped.
        self._expiries = expiries
        heapq.heapify(self._expiries)
        self._keep_revisions = _DEFAULT_KEEP_REVISIONS
        self._pending: deque[_Write | _Job] = deque()
        self._has_work = asyncio.Event()
        self._watchers: set[Watcher] = set()
        self._compact_lock = asyncio.Lock()
        self._background: list[asyncio.Task[None]] = []
        self._closing = False
        self._writer = asyncio.create_task(self._run_writer(), name="datastore-writer")

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        connector: database.Connector = database.connect,
    ) -> Datastore:
        """Open (creating if needed) the datastore at ``url`` and rebuild its in-memory index.

        ``sqlite:///path`` (SQLAlchemy's convention: ``sqlite:////abs/state.db`` for an absolute
        path), ``sqlite://`` for a throwaway database, or ``postgres://...`` (needs asyncpg).
        ``connector`` opens the database (``database.connect_engine`` forces SQLAlchemy's
        asyncio engine, for tests).
        """
        db = await connector(url)
        try:
            await db.create_schema()
            async with db.transaction() as tx:
                stored = await tx.scalar(sql.LOAD_COMPACT)
                if stored is None:  # a new database
                    await tx.execute(sql.INIT_COMPACT)
                compact_revision = int(stored or 0)
                max_id = await tx.scalar(sql.MAX_REVISION)
                live = await tx.execute(sql.ALL_LIVE, {"at": 2**62})
        except BaseException:
            await db.close()
            raise
        index = {row["name"]: _to_kv(row) for row in live}
        expiries = [
            (row["expires_at"], row["name"], row["id"]) for row in live if row["expires_at"]
        ]
        # Compaction may have removed the newest rows (tombstones): never go back below it.
        revision = max(int(max_id or 0), compact_revision)
        return cls(db, clock, revision, compact_revision, index, expiries)

    async def close(self) -> None:
        """Finish queued writes, stop background tasks and watchers, release the database."""
        if self._closing:
            return
        self._closing = True
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._has_work.set()
        await self._writer
        for watcher in list(self._watchers):
            watcher.close()
        await self._db.close()

    @property
    def revision(self) -> int:
        """The current (latest committed) revision."""
        return self._revision

    @property
    def compact_revision(self) -> int:
        """Revisions below this one are no longer readable or watchable."""
        return self._compact_revision

    # ----------------------------------------------------------------------------- reads

    def _read_revision(self, revision: int) -> int:
        if revision == 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        self._check_compacted(revision)
        return revision

    def _check_compacted(self, revision: int) -> None:
        if revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)

    async def _query(self, stmt: str, params: dict[str, Any], revision: int) -> Sequence[Row]:
        """Run a read at ``revision``; fail if a compaction past it began meanwhile."""
        rows = await self._db.execute(stmt, params)
        self._check_compacted(revision)
        return rows

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        """The live version of ``key`` at ``revision`` (0 = latest), or None."""
        if revision == 0 or revision == self._revision:
            return self._index.get(key)
        at = self._read_revision(revision)
        rows = await self._query(sql.GET_AT, {"key": key, "at": at}, at)
        if not rows or rows[0]["deleted"]:
            return None
        return _to_kv(rows[0])

    async def list(
        self, prefix: str, *, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> tuple[list[KeyValue], int, bool]:
        """Live keys starting with ``prefix`` and greater than ``start_after``, by key.

        At most ``limit`` items (0 = all), read at ``revision`` (0 = latest). Returns the items,
        the revision they were read at, and whether more keys remain after the last item.
        """
        if revision == 0 or revision == self._revision:
            return self._list_latest(prefix, start_after, limit)
        at = self._read_revision(revision)
        params: dict[str, Any] = _key_range(prefix, start_after)
        stmt = sql.list_at(frozenset(params), limit > 0)
        params["at"] = at
        if limit > 0:
            params["limit"] = limit + 1
        rows = await self._query(stmt, params, at)
        more = limit > 0 and len(rows) > limit
        if more:
            rows = rows[:limit]
        return [_to_kv(row) for row in rows], at, more

    def _key_span(self, prefix: str, start_after: str = "") -> tuple[int, int]:
        """Index range in the sorted live keys of keys under ``prefix`` after ``start_after``."""
        lo = bisect.bisect_left(self._keys, prefix)
        if start_after >= prefix:
            lo = max(lo, bisect.bisect_right(self._keys, start_after))
        end = _prefix_end(prefix)
        hi = len(self._keys) if end is None else bisect.bisect_left(self._keys, end)
        return lo, hi

    def _list_latest(
        self, prefix: str, start_after: str, limit: int
    ) -> tuple[builtins.list[KeyValue], int, bool]:
        lo, hi = self._key_span(prefix, start_after)
        stop = hi if limit <= 0 else min(hi, lo + limit)
        items = [self._index[k] for k in self._keys[lo:stop]]
        return items, self._revision, stop < hi

    async def count(self, prefix: str) -> int:
        """How many live keys start with ``prefix``."""
        lo, hi = self._key_span(prefix)
        return hi - lo

    async def _read_history(
        self, prefix: str, after: int, upto: int, limit: int
    ) -> builtins.list[Event]:
        """Events of keys under ``prefix`` with after < revision <= upto, at most ``limit``."""
        self._check_compacted(after)
        params: dict[str, Any] = _key_range(prefix)
        stmt = sql.history(frozenset(params))
        params.update(after=after, upto=upto, limit=limit)
        return [_to_event(row) for row in await self._query(stmt, params, after)]

    # ---------------------------------------------------------------------------- writes

    async def _write(
        self,
        op: Literal["create", "update", "delete"],
        key: str,
        value: bytes = b"",
        expected_revision: int = 0,
        ttl: int | None = None,
    ) -> KeyValue:
        future: asyncio.Future[KeyValue] = asyncio.get_running_loop().create_future()
        self._submit(_Write(op, key, value, expected_revision, ttl, future))
        return await future

    def _submit(self, item: _Write | _Job) -> None:
        if self._closing:
            raise DatastoreError("datastore is closed")
        self._pending.append(item)
        self._has_work.set()

    async def create(self, key: str, value: bytes, *, ttl: int | None = None) -> KeyValue:
        """Create ``key`` (KeyExistsError if live); ``ttl`` seconds until it expires."""
        return await self._write("create", key, value, ttl=ttl)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int | None = None
    ) -> KeyValue:
        """Replace the value of ``key`` if its mod_revision is ``expected_revision``.

        NotFoundError if not live, ConflictError (with the current version) on a stale
        revision. ``ttl`` applies to the new version (None: it never expires).
        """
        return await self._write("update", key, value, expected_revision, ttl)

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        """Delete ``key`` (guarded by ``expected_revision`` unless 0).

        Returns the last value with mod_revision set to the delete's revision.
        """
        return await self._write("delete", key, expected_revision=expected_revision)

    async def _run_writer(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._has_work.clear()
                await self._has_work.wait()
                continue
            head = self._pending[0]
            if isinstance(head, _Job):
                self._pending.popleft()
                await self._run_job(head)
                continue
            batch: builtins.list[_Write] = []
            while self._pending and len(batch) < _MAX_BATCH:
                item = self._pending[0]
                if not isinstance(item, _Write):
                    break
                self._pending.popleft()
                batch.append(item)
            await self._commit(batch)

    async def _run_job(self, job: _Job) -> None:
        try:
            await job.run()
        except Exception as exc:
            _resolve(job.future, exc)
        else:
            _resolve(job.future, None)

    async def _commit(self, writes: builtins.list[_Write]) -> None:
        try:
            batch = self._plan(writes)
            if batch.rows:
                async with self._db.transaction() as tx:
                    await tx.executemany(sql.INSERT, batch.rows)
        except Exception as exc:
            log.exception("datastore write batch of %d failed", len(writes))
            for write in writes:
                error = DatastoreError(f"write failed: {exc!r}")
                error.__cause__ = exc
                _resolve(write.future, error)
            return
        self._apply(batch)
        for write, result in zip(writes, batch.results, strict=True):
            _resolve(write.future, result)

    def _plan(self, writes: builtins.list[_Write]) -> _Batch:
        """Check each write's guard in order and turn the accepted ones into rows and events."""
        batch = _Batch(revision=self._revision)
        for write in writes:
            try:
                batch.results.append(self._plan_one(write, batch))
            except DatastoreError as exc:
                batch.results.append(exc)
        return batch

    def _current(self, key: str, batch: _Batch) -> KeyValue | None:
        if key in batch.latest:
            return batch.latest[key]
        return self._index.get(key)

    def _plan_one(self, write: _Write, batch: _Batch) -> KeyValue:
        key = write.key
        if write.op == "create":
            live = batch.latest[key] is not None if key in batch.latest else key in self._index
            if live:
                raise KeyExistsError(key)
            current = None
        else:
            current = self._current(key, batch)
            if current is None:
                raise NotFoundError(key)
            if write.expected_revision and write.expected_revision != current.mod_revision:
                raise ConflictError(key, write.expected_revision, current)
        revision = batch.revision + 1
        batch.revision = revision
        create_revision = revision if current is None else current.create_revision
        expires_at = None if write.ttl is None else self._clock() + write.ttl
        if write.op == "delete":
            assert current is not None
            result = KeyValue(key, current.value, create_revision, revision)
            batch.events.append(Event("DELETE", result, current))
            batch.latest[key] = None
            expires_at = None
        else:
            result = KeyValue(key, write.value, create_revision, revision)
            batch.events.append(Event("PUT", result, current))
            batch.latest[key] = result
            if expires_at is not None:
                batch.expiries.append((expires_at, key, revision))
        batch.rows.append(
            {
                "id": revision,
                "name": key,
                "deleted": write.op == "delete",
                "create_revision": create_revision,
                "prev_revision": 0 if current is None else current.mod_revision,
                "expires_at": expires_at,
                "value": result.value,
            }
        )
        return result

    def _apply(self, batch: _Batch) -> None:
        """Make a committed batch visible: revision, index, expiries, then watchers."""
        self._revision = batch.revision
        for key, latest in batch.latest.items():
            if latest is None:
                if self._index.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._index:
                    bisect.insort(self._keys, key)
                self._index[key] = latest
        for entry in batch.expiries:
            heapq.heappush(self._expiries, entry)
        for event in batch.events:
            for watcher in list(self._watchers):
                watcher.deliver(event)

    # ----------------------------------------------------------------------------- watch

    def watch(self, prefix: str, revision: int = 0, *, queue_size: int = 1000) -> Watcher:
        """Watch keys under ``prefix`` for events after ``revision`` (0 = from now on).

        CompactedError at once if ``revision`` is below the compact revision (or later, from
        the iterator, if a compaction overtakes the history replay).
        """
        if self._closing:
            raise DatastoreError("datastore is closed")
        if revision:
            self._check_compacted(revision)
        watcher = Watcher(
            prefix,
            after=revision or self._revision,
            history_end=self._revision,
            queue_size=queue_size,
            read_history=self._read_history,
            on_close=self._watchers.discard,
        )
        self._watchers.add(watcher)
        return watcher

    # ------------------------------------------------------------------ TTL and compaction

    async def expire(self) -> int:
        """Delete every key whose TTL has passed (with normal DELETE events); return how many."""
        now = self._clock()
        due: builtins.list[tuple[float, str, int]] = []
        while self._expiries and self._expiries[0][0] <= now:
            entry = heapq.heappop(self._expiries)
            _, key, mod_revision = entry
            live = self._index.get(key)
            if live is not None and live.mod_revision == mod_revision:
                due.append(entry)
        results = await asyncio.gather(
            *(self.delete(key, expected_revision=mod) for _, key, mod in due),
            return_exceptions=True,
        )
        deleted = 0
        for entry, result in zip(due, results, strict=True):
            if isinstance(result, KeyValue):
                deleted += 1
            elif not isinstance(result, ConflictError | NotFoundError):
                log.warning("datastore: expiring %s failed: %s", entry[1], result)
                heapq.heappush(self._expiries, entry)
        return deleted

    async def _exclusive(self, run: Callable[[], Awaitable[None]]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._submit(_Job(run, future))
        await future

    async def compact(self, revision: int | None = None) -> int:
        """Drop history at or below ``revision`` and return the compact revision.

        ``None`` keeps the most recent ``keep_revisions`` (see start_background; 1000 by
        default). Removes tombstones and superseded rows, keeps the newest row of every live
        key, records the compact revision durably first, then reclaims disk space.
        """
        async with self._compact_lock:
            target = self._revision - self._keep_revisions if revision is None else revision
            if target > self._revision:
                raise FutureRevisionError(target, self._revision)
            if target <= self._compact_revision:
                return self._compact_revision

            async def record() -> None:
                async with self._db.transaction() as tx:
                    await tx.execute(sql.RECORD_COMPACT, {"revision": target})

            await self._exclusive(record)
            self._compact_revision = target
            lowest = int(await self._db.scalar(sql.MIN_REVISION) or 0)
            for low in range(lowest - 1, target, _COMPACT_CHUNK):
                await self._exclusive(
                    self._compact_chunk(low, min(low + _COMPACT_CHUNK, target), target)
                )
            await self._exclusive(self._db.reclaim_space)
            log.info("datastore: compacted to revision %d", target)
            return target

    def _compact_chunk(self, low: int, high: int, target: int) -> Callable[[], Awaitable[None]]:
        """A job deleting rows in (low, high] that are tombstones or superseded at ``target``."""

        async def run() -> None:
            async with self._db.transaction() as tx:
                await tx.execute(sql.COMPACT, {"low": low, "high": high, "target": target})

        return run

    def start_background(
        self,
        *,
        compact_interval: float = 300,
        keep_revisions: int = _DEFAULT_KEEP_REVISIONS,
        ttl_interval: float = 1.0,
    ) -> None:
        """Start the owned periodic tasks: compaction (keeping ``keep_revisions``) and TTL
        expiry. close() cancels them."""
        if self._background:
            raise DatastoreError("background tasks already started")
        self._keep_revisions = keep_revisions
        self._background = [
            asyncio.create_task(
                self._every(compact_interval, self.compact), name="datastore-compact"
            ),
            asyncio.create_task(self._every(ttl_interval, self.expire), name="datastore-ttl"),
        ]

    @staticmethod
    async def _every(interval: float, action: Callable[[], Awaitable[int]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except Exception:
                log.exception("datastore: background %s failed", action.__name__)
