"""Values and errors of the datastore: key-value versions, watch events and store errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One version of a key: its value and the revisions that created and last wrote it."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """A change of one key: PUT (create or update) or DELETE.

    For DELETE, ``kv`` holds the last value with ``mod_revision`` set to the delete's revision.
    ``prev_kv`` is the version the change replaced (None when the PUT created the key).
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None

    @property
    def created(self) -> bool:
        """True for a PUT that created the key (no previous live value)."""
        return self.type == "PUT" and self.prev_kv is None


class DatastoreError(Exception):
    """Base class of every datastore error; also raised for a closed store."""


class KeyExistsError(DatastoreError):
    """A create named a key that is live."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class NotFoundError(DatastoreError):
    """An update or delete named a key that is not live."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(DatastoreError):
    """A guarded update or delete expected a revision that is not the key's current one."""

    def __init__(self, key: str, expected_revision: int, current: KeyValue) -> None:
        super().__init__(
            f"revision conflict on {key}: expected {expected_revision}, "
            f"current {current.mod_revision}"
        )
        self.key = key
        self.expected_revision = expected_revision
        self.current = current


class CompactedError(DatastoreError):
    """A read or watch asked for a revision older than the compact revision."""

    def __init__(self, revision: int, compact_revision: int) -> None:
        super().__init__(f"revision {revision} is compacted (compact revision {compact_revision})")
        self.revision = revision
        self.compact_revision = compact_revision


class FutureRevisionError(DatastoreError):
    """A read or compaction asked for a revision newer than the current revision."""

    def __init__(self, revision: int, current_revision: int) -> None:
        super().__init__(f"revision {revision} is newer than current revision {current_revision}")
        self.revision = revision
        self.current_revision = current_revision
