"""Kine-style datastore: an append-only SQL log of key-value events (row id = revision).

See ``datastore.datastore`` for the semantics; this package exports the public API.
"""

from datastore.datastore import Datastore
from datastore.types import (
    CompactedError,
    ConflictError,
    DatastoreError,
    Event,
    FutureRevisionError,
    KeyExistsError,
    KeyValue,
    NotFoundError,
)
from datastore.watch import Watcher

__all__ = [
    "CompactedError",
    "ConflictError",
    "Datastore",
    "DatastoreError",
    "Event",
    "FutureRevisionError",
    "KeyExistsError",
    "KeyValue",
    "NotFoundError",
    "Watcher",
]
