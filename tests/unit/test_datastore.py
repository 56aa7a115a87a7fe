"""Tests of the kine-style datastore on real SQLite files.

Every test runs on both database implementations: aiosqlite directly (the default for SQLite)
and SQLAlchemy's asyncio engine (the path other databases take), driven with sqlite+aiosqlite.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from datastore import (
    CompactedError,
    ConflictError,
    Datastore,
    DatastoreError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyValue,
    NotFoundError,
    Watcher,
    database,
)
from datastore import statements as sql
from datastore.database import Connector
from datastore.schema import sqlite_statements

REPO = Path(__file__).resolve().parents[2]


def url(path: Path) -> str:
    return f"sqlite:///{path / 'db' / 'state.db'}"


CONNECTORS = {"aiosqlite": "connect", "engine": "connect_engine"}


@pytest.fixture(params=sorted(CONNECTORS))
def impl(request: pytest.FixtureRequest) -> str:
    """The database implementation under test, by name."""
    name: str = request.param
    return name


@pytest.fixture
def connector(impl: str) -> Connector:
    connect: Connector = getattr(database, CONNECTORS[impl])
    return connect


@pytest.fixture
async def store(tmp_path: Path, connector: Connector) -> AsyncIterator[Datastore]:
    s = await Datastore.open(url(tmp_path), connector=connector)
    yield s
    await s.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def take(watcher: Watcher, n: int) -> list[Event]:
    async def collect() -> list[Event]:
        out = []
        async for event in watcher:
            out.append(event)
            if len(out) == n:
                break
        return out

    return await asyncio.wait_for(collect(), 5.0)


def db_size(path: Path) -> int:
    files = [path / "db" / name for name in ("state.db", "state.db-wal", "state.db-shm")]
    return sum(f.stat().st_size for f in files if f.exists())


async def test_create_get_update_delete(store: Datastore) -> None:
    assert store.revision == 0
    created = await store.create("/registry/pods/default/a", b"one")
    assert created == KeyValue("/registry/pods/default/a", b"one", 1, 1)
    updated = await store.update("/registry/pods/default/a", b"two", expected_revision=1)
    assert updated == KeyValue("/registry/pods/default/a", b"two", 1, 2)
    assert await store.get("/registry/pods/default/a") == updated
    assert await store.get("/registry/pods/default/a", revision=1) == created
    assert await store.get("/registry/pods/default/missing") is None

    deleted = await store.delete("/registry/pods/default/a")
    assert deleted == KeyValue("/registry/pods/default/a", b"two", 1, 3)
    assert store.revision == 3
    assert await store.get("/registry/pods/default/a") is None
    assert await store.get("/registry/pods/default/a", revision=2) == updated

    again = await store.create("/registry/pods/default/a", b"three")
    assert again.create_revision == again.mod_revision == 4


async def test_guards(store: Datastore) -> None:
    first = await store.create("/k", b"v1")
    with pytest.raises(KeyExistsError):
        await store.create("/k", b"other")
    second = await store.update("/k", b"v2", expected_revision=first.mod_revision)
    with pytest.raises(ConflictError) as conflict:
        await store.update("/k", b"v3", expected_revision=first.mod_revision)
    assert conflict.value.current == second
    with pytest.raises(ConflictError):
        await store.delete("/k", expected_revision=first.mod_revision)
    with pytest.raises(NotFoundError):
        await store.update("/missing", b"x", expected_revision=1)
    with pytest.raises(NotFoundError):
        await store.delete("/missing")
    # Failed writes consume no revision.
    assert store.revision == second.mod_revision
    await store.delete("/k", expected_revision=second.mod_revision)
    assert await store.get("/k") is None


async def test_guards_apply_in_order_within_a_batch(store: Datastore) -> None:
    results = await asyncio.gather(
        store.create("/same", b"first"),
        store.create("/same", b"second"),
        store.delete("/same"),
        store.create("/same", b"third"),
        return_exceptions=True,
    )
    assert isinstance(results[0], KeyValue) and results[0].value == b"first"
    assert isinstance(results[1], KeyExistsError)
    assert isinstance(results[2], KeyValue) and results[2].value == b"first"
    assert isinstance(results[3], KeyValue) and results[3].value == b"third"
    revisions = [r.mod_revision for r in results if isinstance(r, KeyValue)]
    assert revisions == [1, 2, 3]
    assert await store.get("/same") == KeyValue("/same", b"third", 3, 3)


async def test_list_prefix_paging_and_revision(store: Datastore) -> None:
    for name in ["c", "a", "b", "d"]:
        await store.create(f"/pods/{name}", name.encode())
    await store.create("/podsx/z", b"not under /pods/")
    await store.create("/other/x", b"x")
    at = store.revision

    items, rev, more = await store.list("/pods/")
    assert [kv.key for kv in items] == ["/pods/a", "/pods/b", "/pods/c", "/pods/d"]
    assert rev == at and not more

    page, _, more = await store.list("/pods/", limit=2)
    assert [kv.key for kv in page] == ["/pods/a", "/pods/b"] and more
    page, _, more = await store.list("/pods/", start_after="/pods/b", limit=2)
    assert [kv.key for kv in page] == ["/pods/c", "/pods/d"] and not more

    a = await store.get("/pods/a")
    assert a is not None
    await store.update("/pods/a", b"a2", expected_revision=a.mod_revision)
    await store.delete("/pods/b")
    await store.create("/pods/e", b"e")
    latest, _, _ = await store.list("/pods/")
    assert [(kv.key, kv.value) for kv in latest] == [
        ("/pods/a", b"a2"),
        ("/pods/c", b"c"),
        ("/pods/d", b"d"),
        ("/pods/e", b"e"),
    ]
    old, rev, _ = await store.list("/pods/", revision=at)
    assert rev == at
    assert [(kv.key, kv.value) for kv in old] == [
        ("/pods/a", b"a"),
        ("/pods/b", b"b"),
        ("/pods/c", b"c"),
        ("/pods/d", b"d"),
    ]
    assert len((await store.list(""))[0]) == 6
    assert await store.count("/pods/") == 4
    assert await store.count("") == 6
    with pytest.raises(FutureRevisionError):
        await store.list("/pods/", revision=store.revision + 1)
    with pytest.raises(FutureRevisionError):
        await store.get("/pods/a", revision=store.revision + 1)


async def test_watch_from_now(store: Datastore) -> None:
    await store.create("/w/old", b"old")
    watcher = store.watch("/w/")
    await store.create("/w/a", b"a")
    await store.create("/elsewhere", b"x")
    a = await store.get("/w/a")
    assert a is not None
    await store.update("/w/a", b"a2", expected_revision=a.mod_revision)
    await store.delete("/w/a")
    events = await take(watcher, 3)
    assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events] == [
        ("PUT", "/w/a", b"a", 2),
        ("PUT", "/w/a", b"a2", 4),
        ("DELETE", "/w/a", b"a2", 5),
    ]
    assert events[0].created and events[0].prev_kv is None
    assert not events[1].created and events[1].prev_kv == KeyValue("/w/a", b"a", 2, 2)
    assert events[2].prev_kv == KeyValue("/w/a", b"a2", 2, 4)
    watcher.close()
    assert [e async for e in watcher] == []


async def test_watcher_tells_whether_an_event_is_waiting(store: Datastore) -> None:
    first = await store.create("/r/old", b"old")
    await store.create("/r/old2", b"old")
    from_history = store.watch("/r/", first.mod_revision)
    assert not from_history.ready()  # history must be read from the table first
    assert [e.kv.key for e in await take(from_history, 1)] == ["/r/old2"]
    live = store.watch("/r/")
    assert not live.ready()
    await store.create("/r/a", b"a")
    await store.create("/r/b", b"b")
    assert live.ready()
    assert [e.kv.key for e in await take(live, 1)] == ["/r/a"]
    assert live.ready()
    assert [e.kv.key for e in await take(live, 1)] == ["/r/b"]
    assert not live.ready()
    live.close()
    from_history.close()


async def test_watch_history_then_live_without_gap(store: Datastore) -> None:
    for i in range(20):
        await store.create(f"/h/{i:03}", b"v")
    start = 7
    stop = asyncio.Event()

    async def keep_writing() -> None:
        i = 100
        while not stop.is_set():
            await store.create(f"/h/{i:03}", b"live")
            i += 1

    writer = asyncio.create_task(keep_writing())
    await asyncio.sleep(0.01)
    watcher = store.watch("/h/", start)
    seen: list[int] = []
    async for event in watcher:
        seen.append(event.kv.mod_revision)
        if len(seen) == 300:
            break
    stop.set()
    await writer
    assert seen == list(range(start + 1, start + 301))


async def test_watch_history_has_previous_values(store: Datastore) -> None:
    await store.create("/other", b"x")
    kv = await store.create("/p/a", b"1")
    kv = await store.update("/p/a", b"2", expected_revision=kv.mod_revision)
    await store.delete("/p/a")
    history = await take(store.watch("/p/", 1), 3)
    live = store.watch("/p/")
    await store.create("/p/a", b"3")
    assert history + await take(live, 1) == [
        Event("PUT", KeyValue("/p/a", b"1", 2, 2), None),
        Event("PUT", KeyValue("/p/a", b"2", 2, 3), KeyValue("/p/a", b"1", 2, 2)),
        Event("DELETE", KeyValue("/p/a", b"2", 2, 4), KeyValue("/p/a", b"2", 2, 3)),
        Event("PUT", KeyValue("/p/a", b"3", 5, 5), None),
    ]


async def test_watch_from_future_revision_skips_until_then(store: Datastore) -> None:
    watcher = store.watch("/f/", 2)
    for i in range(4):
        await store.create(f"/f/{i}", b"v")
    assert [e.kv.mod_revision for e in await take(watcher, 2)] == [3, 4]


async def test_many_watchers(store: Datastore) -> None:
    watchers = [store.watch("/m/") for _ in range(50)]
    await asyncio.gather(*(store.create(f"/m/{i}", b"v") for i in range(40)))
    results = await asyncio.gather(*(take(w, 40) for w in watchers))
    for events in results:
        assert [e.kv.mod_revision for e in events] == list(range(1, 41))


async def test_slow_watcher_catches_up_from_history(store: Datastore) -> None:
    slow = store.watch("/s/", queue_size=5)
    fast = store.watch("/s/", queue_size=5)
    fast_task = asyncio.create_task(take(fast, 30))
    for i in range(30):
        await store.create(f"/s/{i}", b"v")
    assert len(await fast_task) == 30
    assert await store.count("/s/") == 30
    # the writer never waited on the slow watcher; it still gets every event once, in order
    first = await take(slow, 12)
    assert [e.kv.key for e in first] == [f"/s/{i}" for i in range(12)]
    # falling behind again after consuming live events neither repeats nor loses any
    for i in range(30, 50):
        await store.create(f"/s/{i}", b"v")
    rest = await take(slow, 38)
    assert [e.kv.key for e in rest] == [f"/s/{i}" for i in range(12, 50)]
    assert [e.kv.mod_revision for e in first + rest] == list(range(1, 51))


async def test_slow_watcher_behind_a_compaction_fails(store: Datastore) -> None:
    slow = store.watch("/k/", queue_size=2)
    for i in range(10):
        await store.create(f"/k/{i}", b"v")
    await store.compact(store.revision)
    with pytest.raises(CompactedError):
        await take(slow, 10)


async def test_compaction(store: Datastore, tmp_path: Path) -> None:
    value = os.urandom(1000)
    keys = [f"/c/{i:03}" for i in range(100)]
    latest = {k: (await store.create(k, value)).mod_revision for k in keys}
    for _ in range(30):
        updates = await asyncio.gather(
            *(store.update(k, value, expected_revision=latest[k]) for k in keys)
        )
        latest = {kv.key: kv.mod_revision for kv in updates}
    await store.delete(keys[0])
    keys = keys[1:]
    mid = store.revision
    await store.update(keys[1], b"after", expected_revision=latest[keys[1]])
    await store.delete(keys[2])
    before = db_size(tmp_path)

    assert await store.compact(mid) == mid
    assert store.compact_revision == mid
    after = db_size(tmp_path)
    live_bytes = 98 * 1000
    assert after < before / 5
    assert after < 2 * live_bytes + 64 * 1024

    with pytest.raises(CompactedError) as exc:
        await store.get(keys[0], revision=mid - 1)
    assert exc.value.compact_revision == mid
    with pytest.raises(CompactedError):
        await store.list("/c/", revision=mid - 1)
    with pytest.raises(CompactedError):
        store.watch("/c/", mid - 1)
    items, _, _ = await store.list("/c/", revision=mid)
    assert len(items) == 99
    assert await store.count("/c/") == 98
    assert (await store.get(keys[1])) == KeyValue(keys[1], b"after", 3, mid + 1)
    # History after the compact revision is complete, previous values included.
    events = await take(store.watch("/c/", mid), 2)
    assert events[0].prev_kv == KeyValue(keys[1], value, 3, latest[keys[1]])
    assert events[1].type == "DELETE" and events[1].kv.value == value
    # Compacting again at or below the compact revision is a no-op.
    assert await store.compact(mid - 10) == mid
    with pytest.raises(FutureRevisionError):
        await store.compact(store.revision + 1)


async def test_compaction_overtaking_a_history_replay_ends_the_watch(store: Datastore) -> None:
    await asyncio.gather(*(store.create(f"/o/{i:04}", b"v") for i in range(700)))
    kv = await store.get("/o/0000")
    assert kv is not None
    await store.update("/o/0000", b"v2", expected_revision=kv.mod_revision)
    watcher = store.watch("/o/", 1)
    first = await anext(watcher)
    assert first.kv.mod_revision == 2
    await store.compact(650)
    with pytest.raises(CompactedError):
        async for _ in watcher:
            pass
    assert [e async for e in watcher] == []


async def test_compaction_of_head_tombstone_never_reuses_revisions(
    tmp_path: Path, connector: Connector
) -> None:
    store = await Datastore.open(url(tmp_path), connector=connector)
    await store.create("/t/a", b"a")
    await store.delete("/t/a")
    assert await store.compact(store.revision) == 2
    await store.close()
    store = await Datastore.open(url(tmp_path), connector=connector)
    assert store.revision == 2 and store.compact_revision == 2
    assert (await store.create("/t/a", b"again")).mod_revision == 3
    await store.close()


async def test_default_compaction_keeps_recent_revisions(store: Datastore) -> None:
    kv = await store.create("/d/a", b"0")
    for i in range(30):
        kv = await store.update("/d/a", str(i).encode(), expected_revision=kv.mod_revision)
    store.start_background(compact_interval=3600, keep_revisions=10, ttl_interval=3600)
    assert await store.compact() == store.revision - 10
    assert len(await take(store.watch("/d/", store.compact_revision), 10)) == 10


async def test_ttl_expiry_produces_delete_events(tmp_path: Path, connector: Connector) -> None:
    clock = FakeClock()
    store = await Datastore.open(url(tmp_path), clock=clock, connector=connector)
    watcher = store.watch("/ttl/")
    short = await store.create("/ttl/short", b"s", ttl=5)
    await store.create("/ttl/long", b"l", ttl=50)
    kept = await store.create("/ttl/kept", b"k", ttl=5)
    await store.update("/ttl/kept", b"k2", expected_revision=kept.mod_revision)  # no TTL now
    assert await store.expire() == 0
    clock.now += 10
    assert await store.expire() == 1
    assert await store.get("/ttl/short") is None
    assert await store.get("/ttl/kept") is not None
    events = await take(watcher, 5)
    assert events[-1] == Event("DELETE", KeyValue("/ttl/short", b"s", short.mod_revision, 5), short)
    await store.close()

    # Expiry times survive a restart; the background task deletes due keys.
    store = await Datastore.open(url(tmp_path), clock=clock, connector=connector)
    watcher = store.watch("/ttl/")
    clock.now += 100
    store.start_background(ttl_interval=0.01)
    event = (await take(watcher, 1))[0]
    assert (event.type, event.kv.key) == ("DELETE", "/ttl/long")
    assert [kv.key for kv in (await store.list("/ttl/"))[0]] == ["/ttl/kept"]
    await store.close()


async def test_reopen_preserves_data_revision_and_history(
    tmp_path: Path, connector: Connector
) -> None:
    store = await Datastore.open(url(tmp_path), connector=connector)
    kv = await store.create("/r/a", b"1")
    await store.update("/r/a", b"2", expected_revision=kv.mod_revision)
    await store.create("/r/b", b"b")
    await store.delete("/r/b")
    await store.compact(1)
    await store.close()
    with pytest.raises(DatastoreError):
        await store.create("/r/c", b"closed")

    store = await Datastore.open(url(tmp_path), connector=connector)
    assert store.revision == 4 and store.compact_revision == 1
    assert await store.get("/r/a") == KeyValue("/r/a", b"2", 1, 2)
    assert await store.get("/r/b") is None
    with pytest.raises(ConflictError):
        await store.update("/r/a", b"x", expected_revision=1)
    with pytest.raises(KeyExistsError):
        await store.create("/r/a", b"x")
    history = await take(store.watch("/r/", 1), 3)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in history] == [
        ("PUT", "/r/a", 2),
        ("PUT", "/r/b", 3),
        ("DELETE", "/r/b", 4),
    ]
    assert (await store.create("/r/c", b"c")).mod_revision == 5
    await store.close()

    with sqlite3.connect(tmp_path / "db" / "state.db") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental


async def test_concurrent_creates_are_durable(tmp_path: Path, connector: Connector) -> None:
    store = await Datastore.open(url(tmp_path), connector=connector)
    results = await asyncio.gather(*(store.create(f"/cc/{i:04}", b"v") for i in range(500)))
    assert sorted(kv.mod_revision for kv in results) == list(range(1, 501))
    await store.close()
    store = await Datastore.open(url(tmp_path), connector=connector)
    items, rev, _ = await store.list("/cc/")
    assert rev == 500
    assert [kv.key for kv in items] == [f"/cc/{i:04}" for i in range(500)]
    await store.close()


async def test_throwaway_database(tmp_path: Path, connector: Connector) -> None:
    store = await Datastore.open("sqlite://", connector=connector)
    await store.create("/x", b"y")
    assert await store.get("/x") == KeyValue("/x", b"y", 1, 1)
    await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from datastore import Datastore, database

    async def main() -> None:
        store = await Datastore.open(sys.argv[1], connector=getattr(database, sys.argv[2]))
        async def one(i: int) -> None:
            kv = await store.create(f"/k/{i:06}", b"v")
            print(kv.key, flush=True)
        i = 0
        while True:
            await asyncio.gather(*(one(i + j) for j in range(16)))
            i += 16

    asyncio.run(main())
    """
)


async def test_acknowledged_writes_survive_sigkill(
    tmp_path: Path, impl: str, connector: Connector
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _WRITER,
        url(tmp_path),
        CONNECTORS[impl],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    while len(acknowledged) < 300:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line, "writer exited early"
        acknowledged.append(line.decode().strip())
    proc.send_signal(signal.SIGKILL)
    rest = await proc.stdout.read()
    await proc.wait()
    acknowledged += rest.decode().split()

    store = await Datastore.open(url(tmp_path), connector=connector)
    items, _, _ = await store.list("/k/")
    assert set(acknowledged) <= {kv.key for kv in items}
    assert store.revision == len(items)
    await store.close()


def _row(revision: int, name: str) -> dict[str, object]:
    return {
        "id": revision,
        "name": name,
        "deleted": False,
        "create_revision": revision,
        "prev_revision": 0,
        "expires_at": None,
        "value": b"v",
    }


async def test_transactions_commit_or_roll_back(tmp_path: Path, connector: Connector) -> None:
    db = await connector(url(tmp_path))
    try:
        await db.create_schema()
        await db.create_schema()  # idempotent
        latest = {"at": 2**62}
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.executemany(sql.INSERT, [_row(1, "/a"), _row(2, "/b")])
                await tx.execute(sql.INIT_COMPACT)
                assert await tx.scalar(sql.MAX_REVISION) == 2  # visible inside
                raise RuntimeError("abandon")
        assert await db.execute(sql.ALL_LIVE, latest) == []
        assert await db.scalar(sql.LOAD_COMPACT) is None
        async with db.transaction() as tx:
            await tx.executemany(sql.INSERT, [_row(1, "/a"), _row(2, "/b")])
            await tx.execute(sql.INIT_COMPACT)
            await tx.execute(sql.RECORD_COMPACT, {"revision": 7})
        rows = await db.execute(
            sql.list_at(frozenset({"lo"}), limited=True), {"lo": "/b", **latest, "limit": 5}
        )
        assert [(row["id"], row["name"]) for row in rows] == [(2, "/b")]
        assert await db.scalar(sql.LOAD_COMPACT) == 7
        assert await db.scalar(sql.GET_AT, {"key": "/missing", **latest}) is None
    finally:
        await db.close()


def test_compiled_sqlite_statements_are_current() -> None:
    """The SQLite text shipped in the package is what SQLAlchemy compiles from the Core
    definitions now (regenerate with scripts/gen_sqlite_statements.py)."""
    shipped = json.loads((REPO / "datastore" / "sqlite_statements.json").read_text())
    assert shipped == sqlite_statements()


def test_every_statement_the_store_names_is_defined() -> None:
    names = {sql.INSERT, sql.MAX_REVISION, sql.MIN_REVISION, sql.ALL_LIVE, sql.GET_AT}
    names |= {sql.COMPACT, sql.LOAD_COMPACT, sql.INIT_COMPACT, sql.RECORD_COMPACT}
    for bounds in sql.bound_sets():
        names |= {sql.history(bounds), sql.list_at(bounds, False), sql.list_at(bounds, True)}
    assert names == set(sqlite_statements()["statements"])


_LEFT_OPEN = textwrap.dedent(
    """
    import asyncio, sys
    from datastore import Datastore, database

    KEPT = []

    async def main() -> None:
        store = await Datastore.open(sys.argv[1], connector=getattr(database, sys.argv[2]))
        await store.create("/k", b"v")
        KEPT.append(store)  # never closed, never collected

    asyncio.run(main())
    print("exiting", flush=True)
    """
)


def test_a_store_left_open_does_not_block_exit(tmp_path: Path, impl: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _LEFT_OPEN, url(tmp_path), CONNECTORS[impl]],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout == "exiting\n"


_IMPORTS = textwrap.dedent(
    """
    import asyncio, sys
    import datastore
    from datastore import database

    HEAVY = ("sqlalchemy", "sqlalchemy.ext.asyncio", "sqlalchemy.orm")

    async def main() -> None:
        store = await datastore.Datastore.open(sys.argv[1])
        kv = await store.create("/a", b"1")
        await store.update("/a", b"2", expected_revision=kv.mod_revision)
        await store.get("/a", revision=1)
        await store.compact(1)
        await store.close()
        print(sorted(m for m in sys.modules if m in HEAVY))
        store = await datastore.Datastore.open(sys.argv[1], connector=database.connect_engine)
        await store.close()
        print(sorted(m for m in sys.modules if m in HEAVY))

    asyncio.run(main())
    """
)


def test_sqlite_store_never_imports_sqlalchemy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS, url(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout.splitlines()
    assert out == ["[]", "['sqlalchemy', 'sqlalchemy.ext.asyncio', 'sqlalchemy.orm']"]


def test_sqlite_urls_read_as_sqlalchemy_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import make_url

    monkeypatch.chdir(tmp_path)
    for u in [
        f"sqlite:///{tmp_path}/a%20b/x.db",
        "sqlite:///rel/x.db?mode=ro",
        "sqlite+aiosqlite:///y.db",
    ]:
        assert database._sqlite_path(u) == (Path(str(make_url(u).database)), None)
    for throwaway in ["sqlite://", "sqlite:///:memory:"]:
        path, temp_dir = database._sqlite_path(throwaway)
        assert temp_dir is not None and path.parent == temp_dir
        database._remove(temp_dir)
    for bad in ["state.db", "://x", "mysql://db/edgek"]:
        with pytest.raises(ValueError, match="unsupported datastore url"):
            database._sqlite_path(bad)


async def test_urls() -> None:
    with pytest.raises(ValueError, match="unsupported datastore url"):
        await Datastore.open("mysql://db/edgek")
    # PostgreSQL goes through SQLAlchemy's engine with asyncpg (not installed here): a
    # one-line error naming the extra to install
    with pytest.raises(ValueError, match=r"needs asyncpg.*'edgek\[postgres\]'"):
        await Datastore.open("postgresql://edgek@localhost/edgek")
