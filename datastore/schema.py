"""Tables of the datastore and the statements on its settings.

The SQL is dialect-neutral (SQLAlchemy Core); ``datastore.database`` runs it (and holds what
is SQLite-specific: the per-connection PRAGMAs and the space reclamation after a compaction).
"""

from __future__ import annotations

import sqlalchemy as sa

from datastore.database import Transaction

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

_LOAD_COMPACT = sa.select(meta.c.value).where(meta.c.name == COMPACT_REVISION)
_INIT_COMPACT = sa.insert(meta).values(name=COMPACT_REVISION, value=0)
_RECORD_COMPACT = (
    sa.update(meta)
    .where(meta.c.name == COMPACT_REVISION)
    .values(value=sa.bindparam("revision", type_=sa.BigInteger))
)


async def load_compact_revision(tx: Transaction) -> int:
    """Return the recorded compact revision, recording 0 on a new database."""
    stored = await tx.scalar(_LOAD_COMPACT)
    if stored is None:
        await tx.execute(_INIT_COMPACT)
        return 0
    return int(stored)


async def record_compact_revision(tx: Transaction, revision: int) -> None:
    """Record ``revision`` as the compact revision (in the caller's transaction)."""
    await tx.execute(_RECORD_COMPACT, {"revision": revision})
