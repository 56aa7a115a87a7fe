"""The datastore's connection layer: run the datastore's named statements on its database.

Statements are defined once, dialect-neutral, in SQLAlchemy Core (``datastore.schema``) and
named in ``datastore.statements``. Two implementations run them behind one interface:

* SQLite (the default) uses aiosqlite connections directly: a writer and a separate reader,
  running the SQL text compiled ahead of time (``datastore.statements``), so SQLAlchemy is
  never imported (about 13 MB of resident memory in an idle server, and its import time at
  every start). A statement runs in one hop to the connection's thread (execute and fetch
  together); a batch insert and its commit take two.
* Other databases (``postgres://``) go through SQLAlchemy's asyncio engine, imported only on
  that path. ``connect_engine`` selects it for SQLite too, so tests cover both.
"""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import aiosqlite

from datastore import statements

if TYPE_CHECKING:
    from sqlalchemy import Executable
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Params = Mapping[str, Any]

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

# Return freed pages to the OS and truncate the WAL. A script steps each statement to
# completion; a plain execute would free one page (the pragma returns no columns, so the
# driver stops after one step).
_SQLITE_RECLAIM = "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);"


class Row(Protocol):
    """A result row; columns by name (sqlite3.Row or SQLAlchemy's RowMapping)."""

    def __getitem__(self, key: str, /) -> Any: ...


class Transaction(ABC):
    """Statements on the writer connection, committed together when the transaction ends.

    Statements are given by their name in ``datastore.statements``."""

    @abstractmethod
    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        """Run ``stmt`` and return its rows (none for a write)."""

    @abstractmethod
    async def executemany(self, stmt: str, rows: Sequence[Params]) -> None:
        """Run the write ``stmt`` once per parameter set in ``rows``."""

    @abstractmethod
    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        """The first column of the first row of ``stmt`` (None without rows)."""


class Database(ABC):
    """A datastore database: reads, write transactions on one writer, and maintenance."""

    @abstractmethod
    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        """Run the read ``stmt`` on a reader connection and return its rows."""

    @abstractmethod
    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        """The first column of the first row of the read ``stmt`` (None without rows)."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction on the writer connection: committed on exit, rolled back on error.

        One task at a time may use the writer (the datastore's writer task does).
        """

    @abstractmethod
    async def create_schema(self) -> None:
        """Create the tables and indexes that do not exist yet."""

    @abstractmethod
    async def reclaim_space(self) -> None:
        """Return freed pages to the OS and truncate the WAL (SQLite; others vacuum
        themselves)."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connections and remove a throwaway database."""


_POSTGRES = ("postgres", "postgresql")

Connector = Callable[[str], Awaitable[Database]]
"""Opens the database at a datastore URL (``connect`` or ``connect_engine``)."""


def _backend(url: str) -> str:
    """The database of a datastore URL: its scheme without a ``+driver`` suffix."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"unsupported datastore url: {url!r}")
    return scheme.split("+", 1)[0].lower()


async def connect(url: str) -> Database:
    """Open the database at ``url``: SQLite on aiosqlite directly, others via SQLAlchemy.

    ``sqlite:///path`` follows SQLAlchemy's convention (four slashes for an absolute path);
    missing parent directories are created. ``sqlite://`` is a private throwaway database: a
    file in a new temporary directory removed on close (an SQLite ``:memory:`` database is per
    connection, and the datastore uses separate reader and writer connections). ``postgres://``
    and ``postgresql://`` map to the asyncpg driver, which must be installed.
    """
    if _backend(url) in _POSTGRES:
        return await connect_engine(url)
    path, temp_dir = _sqlite_path(url)
    try:
        return await _SQLiteDatabase.open(path, temp_dir)
    except BaseException:
        _remove(temp_dir)
        raise


async def connect_engine(url: str) -> Database:
    """Open the database at ``url`` (as ``connect`` reads it) through SQLAlchemy's asyncio
    engine, which is imported only now."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    if _backend(url) in _POSTGRES:
        require_driver("asyncpg", "postgres")
        parsed = sa.make_url(url).set(drivername="postgresql+asyncpg")
        return await _EngineDatabase.open(create_async_engine(parsed), None)
    path, temp_dir = _sqlite_path(url)
    try:
        engine = create_async_engine(sa.URL.create("sqlite+aiosqlite", database=str(path)))
        sa.event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return await _EngineDatabase.open(engine, temp_dir)
    except BaseException:
        _remove(temp_dir)
        raise


def require_driver(module: str, extra: str) -> None:
    """Raise ValueError (one line naming the ``edgek[extra]`` to install) when
    ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"the {extra} datastore needs {module}, which is not installed: "
            f"pip install 'edgek[{extra}]'"
        )


def _sqlite_path(url: str) -> tuple[Path, Path | None]:
    """The database file of an SQLite URL and the temporary directory holding it, if any.

    Read as SQLAlchemy reads it: the path follows ``sqlite:///`` (percent-escapes decoded,
    any ``?query`` ignored)."""
    if _backend(url) != "sqlite":
        raise ValueError(f"unsupported datastore url: {url!r}")
    rest = url.partition("://")[2].partition("?")[0]
    database = unquote(rest[1:]) if rest.startswith("/") else unquote(rest)
    if database in ("", ":memory:"):
        temp_dir = Path(tempfile.mkdtemp(prefix="edgek-store-"))
        return temp_dir / "state.db", temp_dir
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, None


def _remove(temp_dir: Path | None) -> None:
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------ SQLite


async def _sqlite_rows(
    conn: aiosqlite.Connection, stmt: str, params: Params | None
) -> list[sqlite3.Row]:
    """Run ``stmt`` and fetch its rows: one hop to the connection's thread."""
    compiled = statements.sqlite(stmt)
    return list(await conn.execute_fetchall(compiled.sql, compiled.bind(params)))


async def _sqlite_scalar(conn: aiosqlite.Connection, stmt: str, params: Params | None) -> Any:
    rows = await _sqlite_rows(conn, stmt, params)
    return rows[0][0] if rows else None


class _SQLiteTransaction(Transaction):
    """Statements on the writer. sqlite3 begins the transaction before the first write, so
    reads before it see the latest commit rather than a snapshot: the same thing, with one
    writer."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        return await _sqlite_rows(self._conn, stmt, params)

    async def executemany(self, stmt: str, rows: Sequence[Params]) -> None:
        if not rows:
            return
        compiled = statements.sqlite(stmt)
        if compiled.fixed:
            rows = [compiled.bind(row) for row in rows]
        await self._conn.executemany(compiled.sql, rows)

    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        return await _sqlite_scalar(self._conn, stmt, params)


class _SQLiteDatabase(Database):
    """SQLite through aiosqlite: one writer and one reader connection (WAL: reads never wait
    for the writer)."""

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, temp_dir: Path | None
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._temp_dir = temp_dir
        self._transaction = _SQLiteTransaction(writer)

    @classmethod
    async def open(cls, path: Path, temp_dir: Path | None) -> _SQLiteDatabase:
        # The writer first: its PRAGMAs set up a new file before anything else touches it.
        writer = await cls._connect(path)
        try:
            reader = await cls._connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, temp_dir)

    @staticmethod
    async def _connect(path: Path) -> aiosqlite.Connection:
        pending = aiosqlite.connect(path)
        # A daemon thread (as SQLAlchemy's aiosqlite dialect makes it): a datastore left open, say
        # by a failed start, must not keep the process from exiting. Until aiosqlite 0.22 the
        # connection is itself the thread; later it keeps one in a private attribute, so
        # this is best effort (the server also closes its store when start-up fails).
        thread = (
            pending if isinstance(pending, threading.Thread) else getattr(pending, "_thread", None)
        )
        if isinstance(thread, threading.Thread):
            thread.daemon = True
        conn = await pending
        try:
            conn.row_factory = sqlite3.Row
            await conn.executescript(";".join(_SQLITE_PRAGMAS))
        except BaseException:
            await conn.close()
            raise
        return conn

    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        return await _sqlite_rows(self._reader, stmt, params)

    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        return await _sqlite_scalar(self._reader, stmt, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        # A transaction that read but never wrote has nothing to commit: no thread hop then.
        try:
            yield self._transaction
            if self._writer.in_transaction:
                await self._writer.commit()
        except BaseException:
            if self._writer.in_transaction:
                await self._writer.rollback()
            raise

    async def create_schema(self) -> None:
        await self._writer.executescript(statements.sqlite_schema())

    async def reclaim_space(self) -> None:
        await self._writer.executescript(_SQLITE_RECLAIM)

    async def close(self) -> None:
        try:
            await self._reader.close()
        finally:
            try:
                await self._writer.close()
            finally:
                _remove(self._temp_dir)


# --------------------------------------------------------------------- SQLAlchemy engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


class _EngineTransaction(Transaction):
    def __init__(self, conn: AsyncConnection, core: Mapping[str, Executable]) -> None:
        self._conn = conn
        self._core = core

    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        result = await self._conn.execute(self._core[stmt], params)
        return list(result.mappings()) if result.returns_rows else []

    async def executemany(self, stmt: str, rows: Sequence[Params]) -> None:
        if rows:
            await self._conn.execute(self._core[stmt], list(rows))

    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        return await self._conn.scalar(self._core[stmt], params)


class _EngineDatabase(Database):
    """Any database SQLAlchemy's asyncio engine reaches: reads on pooled connections, writes
    on one held writer connection; statements are the Core definitions in ``schema``."""

    def __init__(self, engine: AsyncEngine, writer: AsyncConnection, temp_dir: Path | None):
        from datastore import schema

        self._engine = engine
        self._writer = writer
        self._temp_dir = temp_dir
        self._metadata = schema.metadata
        self._core = schema.definitions()

    @classmethod
    async def open(cls, engine: AsyncEngine, temp_dir: Path | None) -> _EngineDatabase:
        try:
            writer = await engine.connect()
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, writer, temp_dir)

    async def execute(self, stmt: str, params: Params | None = None) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(self._core[stmt], params)).mappings())

    async def scalar(self, stmt: str, params: Params | None = None) -> Any:
        async with self._engine.connect() as conn:
            return await conn.scalar(self._core[stmt], params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._writer.begin():
            yield _EngineTransaction(self._writer, self._core)

    async def create_schema(self) -> None:
        async with self._writer.begin():
            await self._writer.run_sync(self._metadata.create_all)

    async def reclaim_space(self) -> None:
        if self._engine.dialect.name != "sqlite":
            return
        async with self._engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            await driver.executescript(_SQLITE_RECLAIM)

    async def close(self) -> None:
        try:
            await self._writer.close()
            await self._engine.dispose()
        finally:
            _remove(self._temp_dir)
