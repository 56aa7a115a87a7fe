"""Kubernetes time formats: RFC3339 timestamps and kubectl-style human durations.

``metav1.Time`` travels as RFC3339 with second precision and a ``Z`` suffix,
``metav1.MicroTime`` with exactly six fractional digits. Parsing accepts what Go's
``time.RFC3339`` parser accepts: optional fractional seconds (up to nanoseconds, kept to
microseconds here) and either ``Z`` or a ``+hh:mm`` offset.

:func:`human_duration` reproduces apimachinery's ``HumanDuration``: about two to three
significant figures, e.g. ``"45s"``, ``"2m10s"``, ``"15m"``, ``"3h4m"``, ``"20h"``,
``"5d3h"``, ``"200d"``, ``"2y100d"``, ``"9y"``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)

_MINUTE = 60


def format_time(when: datetime) -> str:
    """``metav1.Time`` text: RFC3339 in UTC, whole seconds, ``Z`` suffix."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(when: datetime) -> str:
    """``metav1.MicroTime`` text: RFC3339 in UTC with exactly six fractional digits."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC3339 timestamp into an aware datetime; ``ValueError`` when malformed."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = match.group(7) or ""
    micros = int((fraction + "000000")[:6])
    zone = match.group(8)
    tz: timezone = UTC
    if zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tz = timezone(sign * offset)
    return datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)


def human_duration(delta: timedelta) -> str:
    """A short human form of ``delta`` exactly as kubectl's AGE column shows it.

    Up to one second in the future counts as ``"0s"`` (clock skew); further in the
    future is ``"<invalid>"``.
    """
    micros = delta // timedelta(microseconds=1)
    # Whole seconds truncated toward zero, as Go's int(d.Seconds()) does.
    seconds = micros // 1_000_000 if micros >= 0 else -((-micros) // 1_000_000)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * _MINUTE:
        return f"{seconds}s"
    minutes = seconds // _MINUTE
    if minutes < 10:
        return _two_units(minutes, "m", seconds % _MINUTE, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"
    return _hours_and_longer(minutes)


def _hours_and_longer(minutes: int) -> str:
    """:func:`human_duration` from three hours on: hours, days, then years."""
    hours = minutes // 60
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return _two_units(days, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        return _two_units(years, "y", days % 365, "d")
    return f"{years}y"


def _two_units(big: int, big_unit: str, rest: int, rest_unit: str) -> str:
    """``3d4h``, or ``3d`` when the rest is zero."""
    return f"{big}{big_unit}{rest}{rest_unit}" if rest else f"{big}{big_unit}"
