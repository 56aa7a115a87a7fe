"""Names of the datastore's SQL statements, and their SQLite text.

Every statement is defined once, dialect-neutral, in SQLAlchemy Core (``datastore.schema``)
and referred to by the name given here. SQLite runs the text SQLAlchemy compiled from those
definitions ahead of time (``sqlite_statements.json``, written by
``scripts/gen_sqlite_statements.py``; a unit test checks it is current), so the default
datastore never imports SQLAlchemy: that saves about 13 MB of resident memory and its import
time at every start. Other databases run the Core definitions through SQLAlchemy's engine.

This module must not import SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from itertools import combinations
from typing import Any

#: The optional conditions on the key a range read can take, by parameter name:
#: ``name >= :lo``, ``name < :hi``, ``name > :after_key``.
KEY_BOUNDS = ("lo", "hi", "after_key")

INSERT = "insert"  # one kv row, every column bound by name
MAX_REVISION = "max_revision"
MIN_REVISION = "min_revision"
ALL_LIVE = "all_live"  # live rows at ``:at``
GET_AT = "get_at"  # the newest row of ``:key`` at ``:at``
COMPACT = (
    "compact"  # rows in (``:low``, ``:high``] that are tombstones or superseded at ``:target``
)
LOAD_COMPACT = "load_compact_revision"
INIT_COMPACT = "init_compact_revision"
RECORD_COMPACT = "record_compact_revision"  # to ``:revision``


def _suffix(bounds: frozenset[str]) -> str:
    return "".join(f":{b}" for b in KEY_BOUNDS if b in bounds)


def list_at(bounds: frozenset[str], limited: bool) -> str:
    """Live keys within ``bounds`` at ``:at`` by key (at most ``:limit`` if ``limited``)."""
    return "list_at" + _suffix(bounds) + (":limit" if limited else "")


def history(bounds: frozenset[str]) -> str:
    """Events within ``bounds`` with ``:after`` < revision <= ``:upto``, at most ``:limit``."""
    return "history" + _suffix(bounds)


def bound_sets() -> list[frozenset[str]]:
    """Every combination of :data:`KEY_BOUNDS` (a statement exists for each)."""
    return [frozenset(c) for n in range(len(KEY_BOUNDS) + 1) for c in combinations(KEY_BOUNDS, n)]


class SQLiteStatement:
    """A statement's SQLite text and the values it binds itself (its literals, such as a
    ``LIMIT 1``, are parameters too)."""

    __slots__ = ("fixed", "sql")

    def __init__(self, sql: str, fixed: dict[str, Any]) -> None:
        self.sql = sql
        self.fixed = fixed

    def bind(self, params: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """The parameters to execute with: the statement's own, then the caller's."""
        if not self.fixed:
            return params or {}
        return {**self.fixed, **(params or {})}


@functools.cache
def _sqlite() -> dict[str, Any]:
    text = resources.files("datastore").joinpath("sqlite_statements.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def sqlite_schema() -> str:
    """The SQLite script creating the tables and indexes that do not exist yet."""
    script: str = _sqlite()["schema"]
    return script


@functools.cache
def sqlite(name: str) -> SQLiteStatement:
    """The SQLite form of the statement called ``name``."""
    sql, fixed = _sqlite()["statements"][name]
    return SQLiteStatement(sql, fixed)
