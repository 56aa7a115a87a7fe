"""Cron schedules as the CronJob controller reads them: robfig/cron v3's standard parser.

Five fields (minute, hour, day of month, month, day of week) with ``*``/``?``, ranges,
steps (``N/step`` means ``N-max/step``), lists, month names JAN-DEC and weekday names
SUN-SAT (case-insensitive); the descriptors ``@yearly @annually @monthly @weekly @daily
@midnight @hourly`` and ``@every <duration>``; an optional ``TZ=<zone>`` or
``CRON_TZ=<zone>`` prefix. Day of month and day of week combine as in cron: when either
field is unrestricted (``*`` or ``?``, or a ``*/1`` step) both must match, otherwise either
may. Error messages are robfig's, word for word.

Times are computed in the schedule's zone (the ``TZ=`` prefix, ``location`` passed to
:func:`parse`, or the server's local zone) and returned in the zone of the time passed in.
Wall-clock times skipped by a daylight-saving jump never fire; repeated ones may fire twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_STAR = 1 << 63

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_MINUTE = _Bounds(0, 59, {})
_HOUR = _Bounds(0, 23, {})
_DOM = _Bounds(1, 31, {})
_MONTH = _Bounds(1, 12, _MONTHS)
_DOW = _Bounds(0, 6, _WEEKDAYS)


class CronError(ValueError):
    """A schedule that does not parse (the message is robfig's)."""


class Schedule(Protocol):
    def next_after(self, t: datetime) -> datetime | None:
        """The first activation strictly after ``t`` (None if there is none)."""
        ...


def times_after(schedule: Schedule, t: datetime) -> Iterator[datetime]:
    """Every activation after ``t``, in order."""
    following = schedule.next_after(t)
    while following is not None:
        yield following
        following = schedule.next_after(following)


class _Zone:
    """Wall-clock arithmetic in one zone, with Go's ``time.Date`` normalisation (a time in
    a daylight-saving gap moves forward; an ambiguous one takes the first occurrence)."""

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz  # None: the server's local zone

    def local(self, t: datetime) -> datetime:
        return t.astimezone(self.tz)

    def at(self, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
        naive = datetime(year, month, 1) + timedelta(days=day - 1, hours=hour, minutes=minute)
        if self.tz is None:
            return naive.astimezone()
        return naive.replace(tzinfo=self.tz).astimezone(UTC).astimezone(self.tz)

    def add(self, t: datetime, delta: timedelta) -> datetime:
        """Absolute (elapsed-time) addition."""
        return (t.astimezone(UTC) + delta).astimezone(self.tz)


@dataclass(frozen=True)
class SpecSchedule:
    """A five-field schedule: one bit per allowed value (plus a star bit) per field."""

    minute: int
    hour: int
    dom: int
    month: int
    dow: int
    location: tzinfo | None = None  # None: the server's local zone

    def next_after(self, t: datetime) -> datetime | None:
        """robfig's SpecSchedule.Next: the first matching minute after ``t``."""
        zone = _Zone(self.location)
        out_tz = t.tzinfo
        t = zone.local(t)
        t = zone.add(t, timedelta(seconds=1, microseconds=-t.microsecond))
        added = False
        year_limit = t.year + 5
        while t.year <= year_limit:
            while not (1 << t.month) & self.month:
                if not added:
                    added = True
                    t = zone.at(t.year, t.month, 1)
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = zone.at(year, month, t.day, t.hour, t.minute)
                if t.month == 1:
                    break
            else:
                found, t, added = self._rest(zone, t, added)
                if found:
                    return t.astimezone(out_tz)
        return None

    def _rest(self, zone: _Zone, t: datetime, added: bool) -> tuple[bool, datetime, bool]:
        """Day, hour, minute and second search within a matching month; (found, t, added)
        where not found means the search wrapped into a new month or year."""
        for step in (self._to_day, self._to_hour, self._to_minute):
            found, t, added = step(zone, t, added)
            if not found:
                return False, t, added
        if t.second != 0:  # the standard parser fixes seconds at 0: on to the next minute
            t = zone.add(t, timedelta(seconds=60 - t.second))
            return False, t, True
        return True, t, added

    def _to_day(self, zone: _Zone, t: datetime, added: bool) -> tuple[bool, datetime, bool]:
        """On to a matching day; not found when that wraps into the next month."""
        while not self._day_matches(t):
            if not added:
                added = True
                t = zone.at(t.year, t.month, t.day)
            t = zone.at(t.year, t.month, t.day + 1, t.hour, t.minute)
            if t.hour != 0:  # a daylight-saving shift moved midnight
                shift = 24 - t.hour if t.hour > 12 else -t.hour
                t = zone.add(t, timedelta(hours=shift))
            if t.day == 1:
                return False, t, added
        return True, t, added

    def _to_hour(self, zone: _Zone, t: datetime, added: bool) -> tuple[bool, datetime, bool]:
        """On to a matching hour; not found when that wraps into the next day."""
        return _advance(
            t,
            added,
            lambda t: bool((1 << t.hour) & self.hour),
            lambda t: zone.at(t.year, t.month, t.day, t.hour),
            lambda t: zone.add(t, timedelta(hours=1)),
            lambda t: t.hour == 0,
        )

    def _to_minute(self, zone: _Zone, t: datetime, added: bool) -> tuple[bool, datetime, bool]:
        """On to a matching minute; not found when that wraps into the next hour."""
        return _advance(
            t,
            added,
            lambda t: bool((1 << t.minute) & self.minute),
            lambda t: t.replace(second=0, microsecond=0),
            lambda t: zone.add(t, timedelta(minutes=1)),
            lambda t: t.minute == 0,
        )

    def _day_matches(self, t: datetime) -> bool:
        dom = bool((1 << t.day) & self.dom)
        dow = bool((1 << (t.isoweekday() % 7)) & self.dow)
        if self.dom & _STAR or self.dow & _STAR:
            return dom and dow
        return dom or dow


def _advance(
    t: datetime,
    added: bool,
    matches: Callable[[datetime], bool],
    truncate: Callable[[datetime], datetime],
    step: Callable[[datetime], datetime],
    wrapped: Callable[[datetime], bool],
) -> tuple[bool, datetime, bool]:
    """Step ``t`` until it ``matches`` (truncated to the unit before the first step);
    (found, t, added) where not found means the steps wrapped into the next larger unit."""
    while not matches(t):
        if not added:
            added = True
            t = truncate(t)
        t = step(t)
        if wrapped(t):
            return False, t, added
    return True, t, added


@dataclass(frozen=True)
class ConstantDelaySchedule:
    """``@every <duration>``: whole seconds, at least one."""

    delay: timedelta

    def next_after(self, t: datetime) -> datetime | None:
        return t + self.delay - timedelta(microseconds=t.microsecond)


def parse(spec: str, location: tzinfo | None = None) -> Schedule:
    """Parse a standard cron spec (robfig ``ParseStandard``); ``location`` is the zone used
    when the spec has no ``TZ=``/``CRON_TZ=`` prefix (None: the server's local zone)."""
    if not spec:
        raise CronError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space, eq = spec.find(" "), spec.find("=")
        name = spec[eq + 1 : space] if space >= 0 else spec[eq + 1 :]
        location = load_location(name, f"provided bad location {name}: ")
        spec = spec[space:].strip() if space >= 0 else ""
    if spec.startswith("@"):
        return _descriptor(spec, location)
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    return SpecSchedule(
        minute=_field(fields[0], _MINUTE),
        hour=_field(fields[1], _HOUR),
        dom=_field(fields[2], _DOM),
        month=_field(fields[3], _MONTH),
        dow=_field(fields[4], _DOW),
        location=location,
    )


def load_location(name: str, prefix: str = "") -> tzinfo:
    """An IANA zone as Go's ``time.LoadLocation`` finds it ("" and "UTC" are UTC)."""
    if name in ("", "UTC"):
        return UTC
    try:
        if name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"{prefix}unknown time zone {name}") from None


def _all(bounds: _Bounds) -> int:
    return _bits(bounds.low, bounds.high, 1) | _STAR


def _bits(low: int, high: int, step: int) -> int:
    if step == 1:
        return ~(~0 << (high + 1)) & (~0 << low)
    value = 0
    for i in range(low, high + 1, step):
        value |= 1 << i
    return value


def _descriptor(spec: str, location: tzinfo | None) -> Schedule:
    one = 1 << 0
    every_dom, every_month, every_dow = _all(_DOM), _all(_MONTH), _all(_DOW)
    table = {
        "@yearly": (one, one, 1 << 1, 1 << 1, every_dow),
        "@annually": (one, one, 1 << 1, 1 << 1, every_dow),
        "@monthly": (one, one, 1 << 1, every_month, every_dow),
        "@weekly": (one, one, every_dom, every_month, one),
        "@daily": (one, one, every_dom, every_month, every_dow),
        "@midnight": (one, one, every_dom, every_month, every_dow),
        "@hourly": (one, _all(_HOUR), every_dom, every_month, every_dow),
    }
    fields = table.get(spec)
    if fields is not None:
        return SpecSchedule(*fields, location=location)
    if spec.startswith("@every "):
        text = spec[len("@every ") :]
        seconds = _go_duration(text, spec)
        return ConstantDelaySchedule(timedelta(seconds=max(int(seconds), 1)))
    raise CronError(f"unrecognized descriptor: {spec}")


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def _go_duration(text: str, spec: str) -> float:
    """Seconds of a Go duration such as ``1h30m`` or ``90s``."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        if body == "0":
            return 0.0
        raise CronError(f'failed to parse duration {spec}: time: invalid duration "{text}"')
    return sign * total


def _field(text: str, bounds: _Bounds) -> int:
    bits = 0
    for expr in (part for part in text.split(",") if part):
        bits |= _range(expr, bounds)
    return bits


def _range(expr: str, bounds: _Bounds) -> int:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    start, end, extra = _low_high(low_high, expr, bounds)
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _int(range_and_step[1])
        if len(low_high) == 1:  # "N/step" means "N-max/step"
            end = bounds.high
        if step > 1:
            extra = 0
    else:
        raise CronError(f"too many slashes: {expr}")
    _check_range(expr, start, end, step, bounds)
    return _bits(start, end, step) | extra


def _low_high(low_high: list[str], expr: str, bounds: _Bounds) -> tuple[int, int, int]:
    """(start, end, star bit) of a range's ``*``, ``N`` or ``N-M`` part."""
    if low_high[0] in ("*", "?"):
        return bounds.low, bounds.high, _STAR
    start = _int_or_name(low_high[0], bounds.names)
    if len(low_high) == 1:
        return start, start, 0
    if len(low_high) == 2:
        return start, _int_or_name(low_high[1], bounds.names), 0
    raise CronError(f"too many hyphens: {expr}")


def _check_range(expr: str, start: int, end: int, step: int, bounds: _Bounds) -> None:
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")


def _int_or_name(text: str, names: dict[str, int]) -> int:
    named = names.get(text.lower())
    return named if named is not None else _int(text)


def _int(text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise CronError(
            f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
        )
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value
