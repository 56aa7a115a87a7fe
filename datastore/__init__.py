"""Kine-style datastore: an append-only SQL log of key-value events (row id = revision).

See ``datastore.store`` for the semantics; this package exports the public API.
"""

from datastore.store import Store
from datastore.types import (
    CompactedError,
    ConflictError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyValue,
    NotFoundError,
    StoreError,
)
from datastore.watch import Watcher

__all__ = [
    "CompactedError",
    "ConflictError",
    "Event",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyValue",
    "NotFoundError",
    "Store",
    "StoreError",
    "Watcher",
]
