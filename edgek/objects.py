"""Small pure helpers over Kubernetes objects in JSON (dict) shape."""

from __future__ import annotations

import pickle
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Characters upstream uses for generateName suffixes (no vowels, no confusables).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's metadata dict, created when missing."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts, lists, strings, numbers, booleans, None).

    Round-trips through pickle's C implementation: about three times faster than
    :func:`copy.deepcopy`, which the write path calls for every object it changes."""
    copied: _T = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return copied


def now() -> datetime:
    return datetime.now(UTC)


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_name(prefix: str) -> str:
    """``prefix`` plus five random characters, as upstream's name generator does."""
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
