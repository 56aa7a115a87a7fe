"""Tables of the datastore and every statement on them, in SQLAlchemy Core (dialect-neutral).

Statements are named as ``datastore.statements`` lists them. Other databases run these
definitions through SQLAlchemy's engine; for SQLite :func:`sqlite_statements` compiles them
ahead of time into ``sqlite_statements.json`` (``scripts/gen_sqlite_statements.py``), so only
that path runs without importing this module.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.compiler import SQLCompiler

from datastore import statements as names

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

# Datastore-wide settings that must survive restarts (the compact revision).
meta = sa.Table(
    "kv_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

COMPACT_REVISION = "compact_revision"


def _key_conditions(bounds: frozenset[str]) -> list[sa.ColumnElement[bool]]:
    """Conditions on the key for the parameters named in ``bounds``."""
    name = kv.c.name
    conds: list[sa.ColumnElement[bool]] = []
    if "lo" in bounds:
        conds.append(name >= sa.bindparam("lo"))
    if "hi" in bounds:
        conds.append(name < sa.bindparam("hi"))
    if "after_key" in bounds:
        conds.append(name > sa.bindparam("after_key"))
    return conds


def _live_at(conds: Sequence[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    """Rows that are the live version of their key at revision ``:at``, among keys in
    ``conds``."""
    newest = (
        sa.select(sa.func.max(kv.c.id).label("id"))
        .where(*conds, kv.c.id <= sa.bindparam("at"))
        .group_by(kv.c.name)
        .subquery()
    )
    return sa.select(kv).join(newest, kv.c.id == newest.c.id).where(sa.not_(kv.c.deleted))


def _list_at(bounds: frozenset[str], limited: bool) -> sa.Select[Any]:
    stmt = _live_at(_key_conditions(bounds)).order_by(kv.c.name)
    if limited:
        stmt = stmt.limit(sa.bindparam("limit", type_=sa.Integer))
    return stmt


def _history(bounds: frozenset[str]) -> sa.Select[Any]:
    prev = kv.alias("prev")
    joined = kv.outerjoin(prev, sa.and_(prev.c.id == kv.c.prev_revision, sa.not_(kv.c.deleted)))
    return (
        sa.select(kv, prev.c.value.label("prev_value"))
        .select_from(joined)
        .where(
            kv.c.id > sa.bindparam("after"),
            kv.c.id <= sa.bindparam("upto"),
            *_key_conditions(bounds),
        )
        .order_by(kv.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _compact() -> sa.Delete:
    newer = kv.alias("newer")
    superseded = (
        sa.select(newer.c.id)
        .where(
            newer.c.name == kv.c.name,
            newer.c.id > kv.c.id,
            newer.c.id <= sa.bindparam("target"),
        )
        .exists()
    )
    return sa.delete(kv).where(
        kv.c.id > sa.bindparam("low"),
        kv.c.id <= sa.bindparam("high"),
        sa.or_(kv.c.deleted, superseded),
    )


@functools.cache
def definitions() -> dict[str, sa.Executable]:
    """Every statement of the datastore by name."""
    out: dict[str, sa.Executable] = {
        names.INSERT: sa.insert(kv),
        names.MAX_REVISION: sa.select(sa.func.max(kv.c.id)),
        names.MIN_REVISION: sa.select(sa.func.min(kv.c.id)),
        names.ALL_LIVE: _live_at([]),
        names.GET_AT: sa.select(kv)
        .where(kv.c.name == sa.bindparam("key"), kv.c.id <= sa.bindparam("at"))
        .order_by(kv.c.id.desc())
        .limit(1),
        names.COMPACT: _compact(),
        names.LOAD_COMPACT: sa.select(meta.c.value).where(meta.c.name == COMPACT_REVISION),
        names.INIT_COMPACT: sa.insert(meta).values(name=COMPACT_REVISION, value=0),
        names.RECORD_COMPACT: sa.update(meta)
        .where(meta.c.name == COMPACT_REVISION)
        .values(value=sa.bindparam("revision", type_=sa.BigInteger)),
    }
    for bounds in names.bound_sets():
        out[names.history(bounds)] = _history(bounds)
        for limited in (False, True):
            out[names.list_at(bounds, limited)] = _list_at(bounds, limited)
    return out


_SQLITE_DIALECT = sqlite.dialect(paramstyle="named")  # ":name" placeholders, as sqlite3 takes


def _sqlite_text(stmt: sa.Executable) -> list[Any]:
    """``[sql, fixed parameters]`` of ``stmt`` compiled for SQLite."""
    compiled = stmt.compile(dialect=_SQLITE_DIALECT)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    fixed = {
        name: value for name, value in compiled.params.items() if not compiled.binds[name].required
    }
    return [str(compiled), fixed]


def sqlite_statements() -> dict[str, Any]:
    """The content of ``sqlite_statements.json``: the schema script and each statement's
    SQLite text. Values reach sqlite3 unconverted, so statements may only bind types it
    stores natively (int, float, str, bytes, bool, None); booleans read back as 0/1."""
    ddl: list[Any] = []
    for table in metadata.sorted_tables:
        ddl.append(sa.schema.CreateTable(table, if_not_exists=True))
        ddl.extend(sa.schema.CreateIndex(index, if_not_exists=True) for index in table.indexes)
    return {
        "schema": ";\n".join(str(element.compile(dialect=_SQLITE_DIALECT)) for element in ddl),
        "statements": {name: _sqlite_text(stmt) for name, stmt in sorted(definitions().items())},
    }
