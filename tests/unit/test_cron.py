"""The cron schedule parser and next-time computation (robfig/cron v3 standard parser)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from edgek.cron import CronError, parse, times_after

T = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # a Thursday
NEW_YORK = ZoneInfo("America/New_York")


def upcoming(spec: str, start: datetime = T, n: int = 4) -> list[str]:
    schedule = parse(spec, UTC)
    return [t.strftime("%Y-%m-%d %H:%M %a") for t in islice(times_after(schedule, start), n)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("*/1 * * * *", ["2026-01-01 12:01 Thu", "2026-01-01 12:02 Thu"]),
        ("* * * * *", ["2026-01-01 12:01 Thu", "2026-01-01 12:02 Thu"]),
        ("*/15 * * * *", ["2026-01-01 12:15 Thu", "2026-01-01 12:30 Thu"]),
        ("5/20 * * * *", ["2026-01-01 12:05 Thu", "2026-01-01 12:25 Thu"]),
        ("0,30 9-10 * * *", ["2026-01-02 09:00 Fri", "2026-01-02 09:30 Fri"]),
        ("0 0 1-10/3 * *", ["2026-01-04 00:00 Sun", "2026-01-07 00:00 Wed"]),
        ("0 9 * * MON-FRI", ["2026-01-02 09:00 Fri", "2026-01-05 09:00 Mon"]),
        ("0 9 * * sat,Sun", ["2026-01-03 09:00 Sat", "2026-01-04 09:00 Sun"]),
        ("0 0 1 jun-AUG ?", ["2026-06-01 00:00 Mon", "2026-07-01 00:00 Wed"]),
        ("0 0 ? * 5", ["2026-01-02 00:00 Fri", "2026-01-09 00:00 Fri"]),
        ("@hourly", ["2026-01-01 13:00 Thu", "2026-01-01 14:00 Thu"]),
        ("@daily", ["2026-01-02 00:00 Fri", "2026-01-03 00:00 Sat"]),
        ("@midnight", ["2026-01-02 00:00 Fri", "2026-01-03 00:00 Sat"]),
        ("@weekly", ["2026-01-04 00:00 Sun", "2026-01-11 00:00 Sun"]),
        ("@monthly", ["2026-02-01 00:00 Sun", "2026-03-01 00:00 Sun"]),
        ("@yearly", ["2027-01-01 00:00 Fri", "2028-01-01 00:00 Sat"]),
        ("@annually", ["2027-01-01 00:00 Fri", "2028-01-01 00:00 Sat"]),
        ("0 0 29 2 *", ["2028-02-29 00:00 Tue", "2032-02-29 00:00 Sun"]),
    ],
)
def test_next_times(spec: str, expected: list[str]) -> None:
    assert upcoming(spec, n=2) == expected


def test_day_of_month_or_day_of_week() -> None:
    """Both restricted: either may match; one a star: both must (robfig's star bit)."""
    assert upcoming("0 0 13 * FRI") == [
        "2026-01-02 00:00 Fri",
        "2026-01-09 00:00 Fri",
        "2026-01-13 00:00 Tue",
        "2026-01-16 00:00 Fri",
    ]
    assert upcoming("0 0 13 * *", n=2) == ["2026-01-13 00:00 Tue", "2026-02-13 00:00 Fri"]
    # "*/1" keeps the star bit, "*/2" does not: 1-31/2 OR Fridays
    assert upcoming("0 0 */1 * FRI", n=2) == ["2026-01-02 00:00 Fri", "2026-01-09 00:00 Fri"]
    assert upcoming("0 0 */2 * FRI", n=3) == [
        "2026-01-02 00:00 Fri",
        "2026-01-03 00:00 Sat",
        "2026-01-05 00:00 Mon",
    ]


def test_seconds_and_exact_times_move_on() -> None:
    schedule = parse("*/5 * * * *", UTC)
    assert schedule.next_after(T) == T + timedelta(minutes=5)
    assert schedule.next_after(T + timedelta(seconds=299, microseconds=5)) == T + timedelta(
        minutes=5
    )
    assert schedule.next_after(T + timedelta(minutes=5)) == T + timedelta(minutes=10)


def test_impossible_date_gives_none() -> None:
    assert parse("0 0 30 2 *", UTC).next_after(T) is None
    assert list(times_after(parse("0 0 31 4 *", UTC), T)) == []


def test_result_keeps_the_callers_zone() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = T.astimezone(plus_two)
    following = parse("@hourly", UTC).next_after(start)
    assert following is not None and following.tzinfo == plus_two
    assert following == T + timedelta(hours=1)


def test_schedule_zone() -> None:
    schedule = parse("0 9 * * *", NEW_YORK)
    assert schedule.next_after(T) == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)  # EST
    summer = datetime(2026, 7, 1, tzinfo=UTC)
    assert schedule.next_after(summer) == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)  # EDT
    prefixed = parse("TZ=Europe/Berlin 0 8 * * *")
    assert prefixed.next_after(T) == datetime(2026, 1, 2, 7, 0, tzinfo=UTC)
    assert parse("CRON_TZ=UTC 0 8 * * *").next_after(T) == datetime(2026, 1, 2, 8, tzinfo=UTC)


def test_daylight_saving_gap_is_skipped_and_overlap_repeats() -> None:
    spring = parse("30 2 * * *", NEW_YORK)  # 2026-03-08 02:30 does not exist in New York
    times = list(islice(times_after(spring, datetime(2026, 3, 7, 12, tzinfo=UTC)), 2))
    assert [t.astimezone(NEW_YORK).strftime("%m-%d %H:%M") for t in times] == [
        "03-09 02:30",
        "03-10 02:30",
    ]
    autumn = parse("30 1 * * *", NEW_YORK)  # 2026-11-01 01:30 happens twice
    times = list(islice(times_after(autumn, datetime(2026, 10, 31, 12, tzinfo=UTC)), 3))
    assert [t.strftime("%m-%d %H:%M") for t in times] == [
        "11-01 05:30",
        "11-01 06:30",
        "11-02 06:30",
    ]


def test_every() -> None:
    schedule = parse("@every 1h30m", UTC)
    assert schedule.next_after(T + timedelta(microseconds=7)) == T + timedelta(minutes=90)
    assert parse("@every 90s", UTC).next_after(T) == T + timedelta(seconds=90)
    assert parse("@every 100ms", UTC).next_after(T) == T + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("60 * * * *", "end of range (60) above maximum (59): 60"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ("5-2 * * * *", "beginning of range (5) beyond end of range (2): 5-2"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        (
            "x * * * *",
            'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax',
        ),
        (
            "* * * JANUARY *",
            'failed to parse int from JANUARY: strconv.Atoi: parsing "JANUARY": invalid syntax',
        ),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("@every soon", 'failed to parse duration @every soon: time: invalid duration "soon"'),
        (
            "TZ=Mars/Olympus * * * * *",
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus",
        ),
    ],
)
def test_errors(spec: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse(spec, UTC)
    assert str(info.value) == message
