"""Datastore benchmark: create throughput at concurrency 16, reads at an older revision and
watch catch-up from the table, and disk use after compaction.

Run as ``python tests/bench/bench_datastore.py [--creates N] [--updates N] [--reads N]``. Uses
a real SQLite file (WAL, synchronous=FULL) in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from datastore import Datastore

VALUE = b'{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"},"data":{"k":"%s"}}'


def disk_bytes(directory: Path) -> int:
    """Size of the database with its WAL and shared-memory files."""
    return sum(f.stat().st_size for f in directory.iterdir() if f.name.startswith("state.db"))


async def bench_creates(directory: Path, total: int, concurrency: int) -> float:
    """Create ``total`` keys from ``concurrency`` workers; return creates per second."""
    store = await Datastore.open(f"sqlite:///{directory / 'state.db'}")
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await store.create(f"/registry/configmaps/default/cm-{i:07}", VALUE % str(i).encode())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await store.close()
    return total / elapsed


async def bench_reads(directory: Path, reads: int, concurrency: int) -> None:
    """Reads that go to the table (at an older revision, and a watch replaying history)."""
    store = await Datastore.open(f"sqlite:///{directory / 'state.db'}")
    keys = 1000
    await asyncio.gather(
        *(
            store.create(f"/registry/configmaps/default/cm-{i:07}", VALUE % b"0")
            for i in range(keys)
        )
    )
    at = store.revision
    await asyncio.gather(
        *(store.create(f"/registry/configmaps/other/cm-{i:07}", VALUE % b"0") for i in range(keys))
    )

    async def timed(count: int, read: Callable[[int], Awaitable[object]]) -> float:
        counter = iter(range(count))

        async def worker() -> None:
            for i in counter:
                await read(i)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return count / (time.perf_counter() - started)

    gets = await timed(
        reads, lambda i: store.get(f"/registry/configmaps/default/cm-{i % keys:07}", revision=at)
    )
    lists = await timed(
        reads // 10,
        lambda i: store.list(
            "/registry/configmaps/default/",
            start_after=f"/registry/configmaps/default/cm-{i % keys:07}",
            limit=10,
            revision=at,
        ),
    )
    started = time.perf_counter()
    replayed = 0
    async for _ in store.watch("/registry/configmaps/", 1):
        replayed += 1
        if replayed == 2 * keys - 1:
            break
    replay = replayed / (time.perf_counter() - started)
    await store.close()
    print(f"gets/s at an older revision:  {gets:10.0f}")
    print(f"lists/s at an older revision: {lists:10.0f}")
    print(f"watch history events/s:       {replay:10.0f}")


async def bench_compaction(directory: Path, updates: int, keys: int) -> None:
    """Apply ``updates`` guarded updates spread over ``keys`` keys, compact, print sizes."""
    store = await Datastore.open(f"sqlite:///{directory / 'state.db'}")
    names = [f"/registry/configmaps/default/hot-{i:03}" for i in range(keys)]
    for name in names:
        await store.create(name, VALUE % b"0")

    async def worker(name: str, count: int) -> None:
        kv = await store.get(name)
        assert kv is not None
        for i in range(count):
            kv = await store.update(
                name, VALUE % str(i).encode(), expected_revision=kv.mod_revision
            )

    started = time.perf_counter()
    await asyncio.gather(*(worker(name, updates // keys) for name in names))
    elapsed = time.perf_counter() - started
    before = disk_bytes(directory)
    started_compact = time.perf_counter()
    await store.compact(store.revision)
    compact_seconds = time.perf_counter() - started_compact
    after = disk_bytes(directory)
    items, _, _ = await store.list("/registry/configmaps/")
    live = sum(len(kv.key) + len(kv.value) for kv in items)
    await store.close()
    print(f"updates/s ({keys} writers):     {updates / elapsed:10.0f}")
    print(f"store size before compaction: {before:10d} bytes")
    print(f"compaction took:              {compact_seconds:10.2f} s")
    print(f"store size after compaction:  {after:10d} bytes (db + wal + shm)")
    print(f"live data (keys + values):    {live:10d} bytes")


async def main() -> None:
    """Run both benchmarks in fresh temporary directories."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--creates", type=int, default=20_000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as first:
        rate = await bench_creates(Path(first), args.creates, 16)
        print(f"creates/s (concurrency 16):   {rate:10.0f}")
    with tempfile.TemporaryDirectory() as reads:
        await bench_reads(Path(reads), args.reads, 16)
    with tempfile.TemporaryDirectory() as second:
        await bench_compaction(Path(second), args.updates, args.keys)


if __name__ == "__main__":
    asyncio.run(main())
