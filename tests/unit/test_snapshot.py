"""Datastore snapshots: copies, retention, restore only into an unlocked database, and the
scheduled snapshot."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from datastore import snapshot
from server.storage.snapshots import SCHEDULED_NAME, SnapshotSchedule, snapshot_dir


def _db(path: Path, rows: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT)")
        conn.executemany("INSERT INTO kv VALUES (?)", [(str(i),) for i in range(rows)])
    return path


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])


def test_take_and_restore(tmp_path: Path) -> None:
    db = _db(tmp_path / "a" / "state.db", 10)
    taken = snapshot.take(db, tmp_path / "snaps", "n")
    assert taken.name.startswith("n-") and _rows(taken) == 10
    assert taken.stat().st_mode & 0o777 == 0o600
    target = tmp_path / "b" / "state.db"
    snapshot.restore(taken, target)
    assert _rows(target) == 10
    _db(target, 5)  # the restored database is an ordinary one
    snapshot.restore(taken, target)  # and is replaced by a new restore, WAL and all
    assert _rows(target) == 10


def test_restore_refuses_a_locked_database(tmp_path: Path) -> None:
    db = _db(tmp_path / "state.db", 1)
    taken = snapshot.take(db, tmp_path / "snaps")
    fd = snapshot.lock_database(db)
    try:
        with pytest.raises(snapshot.SnapshotError, match="running server"):
            snapshot.restore(taken, db)
    finally:
        os.close(fd)
    snapshot.restore(taken, db)


def test_restore_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 100)
    with pytest.raises(snapshot.SnapshotError):
        snapshot.restore(junk, tmp_path / "state.db")
    assert not (tmp_path / "state.db").exists()


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for stamp in (5, 40, 300, 2000):
        (tmp_path / f"scheduled-{stamp}.db").write_bytes(b"")
    (tmp_path / "on-demand-1.db").write_bytes(b"")
    removed = snapshot.prune(tmp_path, "scheduled", 2)
    assert sorted(p.name for p in removed) == ["scheduled-40.db", "scheduled-5.db"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["on-demand-1.db", "scheduled-2000.db", "scheduled-300.db"]


async def test_scheduled_snapshot_prunes_to_retention(tmp_path: Path) -> None:
    db = _db(tmp_path / "db" / "state.db", 3)
    schedule = SnapshotSchedule(db, "@every 1h", retention=2)
    for _ in range(3):
        await schedule.snapshot_now()
    kept = sorted(snapshot_dir(db).glob(f"{SCHEDULED_NAME}-*.db"))
    assert len(kept) == 2 and all(_rows(p) == 3 for p in kept)
