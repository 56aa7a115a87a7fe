"""Snapshots of an SQLite datastore: consistent copies taken while the server writes,
restored into a stopped or new data dir, and pruned to a retention count.

A snapshot is ``VACUUM INTO`` run on its own connection: one read transaction, so the copy
holds exactly the writes committed when it began (every acknowledged object), compacted.
A running server holds ``lock_database``'s lock; ``restore`` refuses a locked database.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

#: Snapshot files: ``<name>-<unix milliseconds>.db``.
SUFFIX = ".db"


class SnapshotError(Exception):
    """A snapshot or restore that cannot be done (the message says why)."""


def lock_database(db: Path) -> int:
    """Take the lock a running server holds on its database ``db`` (a file beside it) and
    return its descriptor, held until closed. SnapshotError when another process holds
    it."""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.with_name(db.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SnapshotError(f"{db} is in use by a running server") from None
    return fd


def take(db: Path, directory: Path, name: str = "snapshot") -> Path:
    """Copy the database ``db`` (live or not) to ``directory/<name>-<time>.db``, written
    under a temporary name and renamed when complete; returns the file."""
    if not db.is_file():
        raise SnapshotError(f"no datastore at {db}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = time.time_ns() // 1_000_000
    while (target := directory / f"{name}-{stamp}{SUFFIX}").exists():
        stamp += 1  # two in the same millisecond
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("VACUUM INTO ?", (str(partial),))
    except sqlite3.Error as e:
        partial.unlink(missing_ok=True)
        raise SnapshotError(f"snapshot of {db} failed: {e}") from None
    finally:
        conn.close()
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    return target


def restore(snapshot: Path, db: Path) -> None:
    """Make the snapshot file the database ``db`` (its WAL discarded), which no running
    server may hold; SnapshotError when it is in use or the file is not a sound
    database."""
    _check(snapshot)
    fd = lock_database(db)
    try:
        partial = db.with_name(f".{db.name}.restoring")
        conn = sqlite3.connect(snapshot)
        try:
            conn.execute("VACUUM INTO ?", (str(partial),))
        finally:
            conn.close()
        for extra in ("-wal", "-shm"):
            db.with_name(db.name + extra).unlink(missing_ok=True)
        os.chmod(partial, 0o600)
        os.replace(partial, db)
    finally:
        os.close(fd)


def _check(snapshot: Path) -> None:
    """SnapshotError unless ``snapshot`` is an intact SQLite file."""
    if not snapshot.is_file():
        raise SnapshotError(f"no snapshot at {snapshot}")
    try:
        conn = sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)
        try:
            (result,) = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise SnapshotError(f"{snapshot} is not a datastore snapshot: {e}") from None
    if result != "ok":
        raise SnapshotError(f"{snapshot} is damaged: {result}")


def prune(directory: Path, name: str, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` snapshots called ``name`` in ``directory``;
    returns the removed files."""
    mine = sorted(
        (p for p in directory.glob(f"{name}-*{SUFFIX}") if p.stem[len(name) + 1 :].isdigit()),
        key=lambda p: int(p.stem[len(name) + 1 :]),
    )
    removed = mine[: max(len(mine) - keep, 0)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
