"""Kinds that are views of another kind's storage.

events.k8s.io/v1 Events and core/v1 Events are one stored object (kept in the core/v1
shape, as upstream does); each API converts on the way in and out.
"""

from __future__ import annotations

from typing import Any

from edgek.events import core_to_events_v1, events_v1_to_core
from edgek.kinds import Kind

_EVENTS_API = ("events.k8s.io", "events")


def storage_group(kind: Kind) -> str:
    """The API group whose keys hold this kind's objects."""
    return "" if (kind.group, kind.resource) == _EVENTS_API else kind.group


def to_storage(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored shape of an object written through ``kind``."""
    if (kind.group, kind.resource) == _EVENTS_API:
        return events_v1_to_core(obj)
    return obj


def from_storage(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    """How ``kind`` shows a stored object."""
    if (kind.group, kind.resource) == _EVENTS_API:
        return core_to_events_v1(obj)
    return obj
