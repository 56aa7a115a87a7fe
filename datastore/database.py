"""The store's connection layer: run SQLAlchemy Core statements on the datastore's database.

Statements are written once, dialect-neutral, in SQLAlchemy Core (tables in ``schema``), with
``bindparam`` placeholders for the values. Two implementations run them behind one interface:

* SQLite (the default) uses aiosqlite connections directly: a writer and a separate reader.
  SQLAlchemy's asyncio extension is not used because it imports the ORM (about 6.4 MB of
  resident memory in an idle server) and runs each statement through a greenlet and several
  thread hops (cursor, execute, fetch, close, commit). Here a statement is compiled once per
  statement object with the SQLite dialect (the SQL text is cached), and runs in one hop to
  the connection's thread (execute and fetch together); a batch insert and its commit take two.
  Values reach sqlite3 unconverted, so statements may only bind types it stores natively
  (int, float, str, bytes, bool, None); booleans read back as 0/1.
* Other databases (``postgres://``) go through SQLAlchemy's asyncio engine, imported only on
  that path. ``connect_engine`` selects it for SQLite too, so tests cover both.
"""

from __future__ import annotations

import functools
import shutil
import sqlite3
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiosqlite
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.sql.compiler import SQLCompiler

if TYPE_CHECKING:
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
    """Statements on the writer connection, committed together when the transaction ends."""

    @abstractmethod
    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        """Run ``stmt`` and return its rows (none for a write)."""

    @abstractmethod
    async def executemany(self, stmt: sa.Executable, rows: Sequence[Params]) -> None:
        """Run the write ``stmt`` once per parameter set in ``rows`` (all with the same keys)."""

    @abstractmethod
    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
        """The first column of the first row of ``stmt`` (None without rows)."""


class Database(ABC):
    """A datastore database: reads, write transactions on one writer, and maintenance."""

    @abstractmethod
    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        """Run the read ``stmt`` on a reader connection and return its rows."""

    @abstractmethod
    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
        """The first column of the first row of the read ``stmt`` (None without rows)."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction on the writer connection: committed on exit, rolled back on error.

        One task at a time may use the writer (the store's writer task does).
        """

    @abstractmethod
    async def create_all(self, metadata: sa.MetaData) -> None:
        """Create the tables and indexes of ``metadata`` that do not exist yet."""

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


async def connect(url: str) -> Database:
    """Open the database at ``url``: SQLite on aiosqlite directly, others via SQLAlchemy.

    ``sqlite:///path`` follows SQLAlchemy's convention (four slashes for an absolute path);
    missing parent directories are created. ``sqlite://`` is a private throwaway database: a
    file in a new temporary directory removed on close (an SQLite ``:memory:`` database is per
    connection, and the store uses separate reader and writer connections). ``postgres://``
    and ``postgresql://`` map to the asyncpg driver, which must be installed.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() in _POSTGRES:
        return await connect_engine(url)
    path, temp_dir = _sqlite_path(parsed)
    try:
        return await _SQLiteDatabase.open(path, temp_dir)
    except BaseException:
        _remove(temp_dir)
        raise


async def connect_engine(url: str) -> Database:
    """Open the database at ``url`` (as ``connect`` reads it) through SQLAlchemy's asyncio
    engine, which is imported only now: it loads the ORM."""
    parsed = make_url(url)
    if parsed.get_backend_name() in _POSTGRES:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(parsed.set(drivername="postgresql+asyncpg"))
        return await _EngineDatabase.open(engine, None)
    path, temp_dir = _sqlite_path(parsed)
    try:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(sa.URL.create("sqlite+aiosqlite", database=str(path)))
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return await _EngineDatabase.open(engine, temp_dir)
    except BaseException:
        _remove(temp_dir)
        raise


def _sqlite_path(parsed: sa.URL) -> tuple[Path, Path | None]:
    """The database file of an SQLite URL and the temporary directory holding it, if any."""
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"unsupported datastore url: {parsed.render_as_string()}")
    if parsed.database in (None, "", ":memory:"):
        temp_dir = Path(tempfile.mkdtemp(prefix="edgek-store-"))
        return temp_dir / "state.db", temp_dir
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, None


def _remove(temp_dir: Path | None) -> None:
    if temp_dir is not None:
        shutil.rmtree(temp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------ SQLite

_SQLITE_DIALECT = sqlite.dialect(paramstyle="named")  # ":name" placeholders, as sqlite3 takes


class _SQLiteStatement:
    """A statement compiled for SQLite: its text and the values it binds itself."""

    __slots__ = ("fixed", "sql")

    def __init__(self, stmt: sa.Executable, column_keys: tuple[str, ...] | None) -> None:
        assert isinstance(stmt, sa.ClauseElement)
        keys = None if column_keys is None else list(column_keys)
        compiled = stmt.compile(dialect=_SQLITE_DIALECT, column_keys=keys)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        # Literals in the statement (``.limit(1)``, ``column == "x"``) become parameters too.
        self.fixed = {
            name: value
            for name, value in compiled.params.items()
            if not compiled.binds[name].required
        }

    def bind(self, params: Params | None) -> Params:
        """The parameters to execute with: the statement's own, then the caller's."""
        if not self.fixed:
            return params or {}
        return {**self.fixed, **(params or {})}


@functools.lru_cache(maxsize=256)
def _sqlite_statement(
    stmt: sa.Executable, column_keys: tuple[str, ...] | None = None
) -> _SQLiteStatement:
    """``stmt`` compiled for SQLite (an INSERT lists ``column_keys``), once per statement."""
    return _SQLiteStatement(stmt, column_keys)


async def _sqlite_rows(
    conn: aiosqlite.Connection, stmt: sa.Executable, params: Params | None
) -> list[sqlite3.Row]:
    """Run ``stmt`` and fetch its rows: one hop to the connection's thread."""
    compiled = _sqlite_statement(stmt)
    return list(await conn.execute_fetchall(compiled.sql, compiled.bind(params)))


async def _sqlite_scalar(
    conn: aiosqlite.Connection, stmt: sa.Executable, params: Params | None
) -> Any:
    rows = await _sqlite_rows(conn, stmt, params)
    return rows[0][0] if rows else None


class _SQLiteTransaction(Transaction):
    """Statements on the writer. sqlite3 begins the transaction before the first write, so
    reads before it see the latest commit rather than a snapshot: the same thing, with one
    writer."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        return await _sqlite_rows(self._conn, stmt, params)

    async def executemany(self, stmt: sa.Executable, rows: Sequence[Params]) -> None:
        if not rows:
            return
        compiled = _sqlite_statement(stmt, tuple(rows[0]))
        if compiled.fixed:
            rows = [compiled.bind(row) for row in rows]
        await self._conn.executemany(compiled.sql, rows)

    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
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
        # A daemon thread (as SQLAlchemy's aiosqlite dialect makes it): a store left open, say
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

    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        return await _sqlite_rows(self._reader, stmt, params)

    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
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

    async def create_all(self, metadata: sa.MetaData) -> None:
        ddl: list[sa.ExecutableDDLElement] = []
        for table in metadata.sorted_tables:
            ddl.append(sa.schema.CreateTable(table, if_not_exists=True))
            ddl.extend(sa.schema.CreateIndex(index, if_not_exists=True) for index in table.indexes)
        script = ";\n".join(str(element.compile(dialect=_SQLITE_DIALECT)) for element in ddl)
        await self._writer.executescript(script)

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
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        result = await self._conn.execute(stmt, params)
        return list(result.mappings()) if result.returns_rows else []

    async def executemany(self, stmt: sa.Executable, rows: Sequence[Params]) -> None:
        if rows:
            await self._conn.execute(stmt, list(rows))

    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
        return await self._conn.scalar(stmt, params)


class _EngineDatabase(Database):
    """Any database SQLAlchemy's asyncio engine reaches: reads on pooled connections, writes
    on one held writer connection."""

    def __init__(self, engine: AsyncEngine, writer: AsyncConnection, temp_dir: Path | None):
        self._engine = engine
        self._writer = writer
        self._temp_dir = temp_dir

    @classmethod
    async def open(cls, engine: AsyncEngine, temp_dir: Path | None) -> _EngineDatabase:
        try:
            writer = await engine.connect()
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, writer, temp_dir)

    async def execute(self, stmt: sa.Executable, params: Params | None = None) -> Sequence[Row]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(stmt, params)).mappings())

    async def scalar(self, stmt: sa.Executable, params: Params | None = None) -> Any:
        async with self._engine.connect() as conn:
            return await conn.scalar(stmt, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._writer.begin():
            yield _EngineTransaction(self._writer)

    async def create_all(self, metadata: sa.MetaData) -> None:
        async with self._writer.begin():
            await self._writer.run_sync(metadata.create_all)

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
