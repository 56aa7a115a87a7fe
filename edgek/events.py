"""core/v1 Event <-> events.k8s.io/v1 Event: two views of one stored object.

Upstream converts both versions through one internal type with a plain field mapping
(``pkg/apis/events/v1/conversion.go``): ``involvedObject``/``regarding``,
``message``/``note``, ``source``/``deprecatedSource``, ``firstTimestamp``,
``lastTimestamp`` and ``count`` to their ``deprecated*`` names, ``reportingComponent``/
``reportingController``; every other field keeps its name. The conversion has no
fallbacks: an event that only sets ``source`` has no ``reportingController`` in the new
API (the "source falls back to reportingController" rule lives in field selectors and
printers, not here). Values are copied as they are (``metav1.Time`` stays whole seconds,
``metav1.MicroTime`` keeps its six fractional digits).

The result is rendered as the apiserver's typed round trip renders it: fields Go never
omits carry their zero value when unset (``eventTime: null``, ``regarding: {}``,
``reportingComponent: ""``...), and ``omitempty`` scalars and pointers that are zero or
null are left out. Fields unknown to the target version are dropped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

from edgek.objects import Obj

CORE_API_VERSION: Final = "v1"
EVENTS_API_VERSION: Final = "events.k8s.io/v1"


class _Omit:
    """Zero marker of an ``omitempty`` scalar or pointer: a zero or null value is dropped."""

    def __repr__(self) -> str:
        return "OMIT"


_OMIT: Final = _Omit()


@dataclass(frozen=True)
class _Field:
    """One field under its name in each version, with the zero each version renders."""

    core: str
    events: str
    core_zero: Any
    events_zero: Any
    series: bool = False


#: In core/v1 struct order. ``{}`` marks a non-pointer struct, ``None`` a Time/MicroTime
#: (Go renders both even when unset), ``""`` a string without ``omitempty``.
_FIELDS: Final = (
    _Field("metadata", "metadata", {}, {}),
    _Field("involvedObject", "regarding", {}, {}),
    _Field("reason", "reason", _OMIT, _OMIT),
    _Field("message", "note", _OMIT, _OMIT),
    _Field("source", "deprecatedSource", {}, {}),
    _Field("firstTimestamp", "deprecatedFirstTimestamp", None, None),
    _Field("lastTimestamp", "deprecatedLastTimestamp", None, None),
    _Field("count", "deprecatedCount", _OMIT, _OMIT),
    _Field("type", "type", _OMIT, _OMIT),
    _Field("eventTime", "eventTime", None, None),
    _Field("series", "series", _OMIT, _OMIT, series=True),
    _Field("action", "action", _OMIT, _OMIT),
    _Field("related", "related", _OMIT, _OMIT),
    _Field("reportingComponent", "reportingController", "", _OMIT),
    _Field("reportingInstance", "reportingInstance", "", _OMIT),
)

#: EventSeries fields and their zeros: ``count`` is ``omitempty`` only in core/v1.
_CORE_SERIES: Final = {"count": _OMIT, "lastObservedTime": None}
_EVENTS_SERIES: Final = {"count": 0, "lastObservedTime": None}


def _is_zero(value: Any) -> bool:
    """Whether Go's ``omitempty`` drops ``value`` (null, empty string, integer zero)."""
    return value is None or value == "" or (type(value) is int and value == 0)


def _put(out: Obj, key: str, value: Any, zero: Any) -> None:
    """Set ``out[key]`` to a copy of ``value`` as Go renders a field whose zero is ``zero``."""
    if zero is _OMIT:
        if not _is_zero(value):
            out[key] = copy.deepcopy(value)
    elif value is None:
        out[key] = copy.deepcopy(zero)
    else:
        out[key] = copy.deepcopy(value)


def _series(value: Any, zeros: dict[str, Any]) -> Any:
    """An EventSeries with only its known fields, rendered with ``zeros``."""
    if not isinstance(value, dict):
        return value
    out: Obj = {}
    for key, zero in zeros.items():
        _put(out, key, value.get(key), zero)
    return out


def _convert(obj: Obj, api_version: str, to_events: bool) -> Obj:
    out: Obj = {"kind": "Event", "apiVersion": api_version}
    for f in _FIELDS:
        src, dst, zero = (
            (f.core, f.events, f.events_zero) if to_events else (f.events, f.core, f.core_zero)
        )
        value = obj.get(src)
        if f.series:
            value = _series(value, _EVENTS_SERIES if to_events else _CORE_SERIES)
        _put(out, dst, value, zero)
    return out


def core_to_events_v1(obj: Obj) -> Obj:
    """A core/v1 Event (JSON dict) as an events.k8s.io/v1 Event; ``obj`` is not modified."""
    return _convert(obj, EVENTS_API_VERSION, to_events=True)


def events_v1_to_core(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event (JSON dict) as a core/v1 Event; ``obj`` is not modified."""
    return _convert(obj, CORE_API_VERSION, to_events=False)
