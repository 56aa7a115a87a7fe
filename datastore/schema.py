"""Tables of the datastore and the engine that reaches them.

The SQL is dialect-neutral (SQLAlchemy Core). Everything SQLite-specific lives here: the
per-connection PRAGMAs (WAL, synchronous=FULL, incremental auto-vacuum) and the space
reclamation that follows a compaction.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

metadata = sa.MetaData()

# Keys compare by code point everywhere (prefix ranges, ordering, start_after); PostgreSQL
# needs the "C" collation for that, SQLite's default BINARY collation already does it.
_KeyType = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
_RevisionType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# One row per event; ``id`` is the global revision, assigned by the single writer.
kv = sa.Table(
    "kv",
    metadata,
    sa.Column("id", _RevisionType, primary_key=True, autoincrement=False),
    sa.Column("name", _KeyType, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("create_revision", _RevisionType, nullable=False),
    sa.Column("prev_revision", _RevisionType, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Index("kv_name_id", "name", "id"),
)

# Store-wide settings that must survive restarts (the compact revision).
meta = sa.Table(
    "kv_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

COMPACT_REVISION = "compact_revision"

_SQLITE_PRAGMAS = (
    # Must precede the first table of a new file; a no-op on an existing one.
    "PRAGMA auto_vacuum=INCREMENTAL",
    "PRAGMA journal_mode=WAL",
    # Sync the WAL on every commit: an acknowledged write survives power loss.
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    # Truncate the WAL file back to this size after checkpoints.
    "PRAGMA journal_size_limit=16777216",
)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def create_engine(url: str) -> tuple[AsyncEngine, Path | None]:
    """Create the async engine for ``url``; return it and a temporary directory to remove.

    ``sqlite:///path`` follows SQLAlchemy's convention (four slashes for an absolute path);
    missing parent directories are created. ``sqlite://`` is a private throwaway database: a
    file in a new temporary directory that the caller removes on close (an SQLite ``:memory:``
    database is per connection, and the store uses separate reader and writer connections).
    ``postgres://`` and ``postgresql://`` map to the asyncpg driver, which must be installed.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return create_async_engine(parsed.set(drivername="postgresql+asyncpg")), None
    if backend != "sqlite":
        raise ValueError(f"unsupported datastore url: {parsed.render_as_string()}")
    temp_dir: Path | None = None
    if parsed.database in (None, "", ":memory:"):
        temp_dir = Path(tempfile.mkdtemp(prefix="edgek-store-"))
        path = temp_dir / "state.db"
    else:
        path = Path(parsed.database)
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(sa.URL.create("sqlite+aiosqlite", database=str(path)))
    event.listen(engine.sync_engine, "connect", _tune_sqlite)
    return engine, temp_dir


def remove_temp_dir(temp_dir: Path | None) -> None:
    """Remove the directory of a throwaway database, if there is one."""
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


async def load_compact_revision(conn: AsyncConnection) -> int:
    """Return the recorded compact revision, recording 0 on a new database."""
    stored = await conn.scalar(sa.select(meta.c.value).where(meta.c.name == COMPACT_REVISION))
    if stored is None:
        await conn.execute(sa.insert(meta).values(name=COMPACT_REVISION, value=0))
        return 0
    return int(stored)


async def record_compact_revision(conn: AsyncConnection, revision: int) -> None:
    """Record ``revision`` as the compact revision (in the caller's transaction)."""
    await conn.execute(
        sa.update(meta).where(meta.c.name == COMPACT_REVISION).values(value=revision)
    )


async def reclaim_space(engine: AsyncEngine) -> None:
    """Return freed pages to the OS and truncate the WAL (SQLite; other databases vacuum
    themselves)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        # executescript steps each statement to completion; a plain execute would free only
        # one page (the pragma returns no columns, so the driver stops after one step).
        await driver.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
