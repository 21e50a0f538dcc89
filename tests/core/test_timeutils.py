"""core.timeutils: UTC everywhere, half-open windows [start, end), naive datetimes refused."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.timeutils import (
    NaiveDatetimeError,
    Window,
    ensure_utc,
    floor_hour,
    month_start,
    parse_rfc3339,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parse_rfc3339 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T08:00:00Z", utc(2026, 11, 1, 8)),
        ("2026-11-01t08:00:00z", utc(2026, 11, 1, 8)),
        ("2026-11-01T16:00:00+08:00", utc(2026, 11, 1, 8)),
        ("2026-11-01T03:00:00-05:00", utc(2026, 11, 1, 8)),
        ("2026-11-01T05:30:00+05:30", utc(2026, 11, 1, 0)),
        ("2026-11-01T00:30:00+08:00", utc(2026, 10, 31, 16, 30)),  # the offset moves the date too
        ("2026-11-01T08:00:00.250Z", utc(2026, 11, 1, 8, 0, 0, 250000)),
        ("2026-11-01T08:00:00.123456+00:00", utc(2026, 11, 1, 8, 0, 0, 123456)),
        ("  2026-11-01T08:00:00Z\n", utc(2026, 11, 1, 8)),
    ],
)
def test_parse_rfc3339_gives_aware_utc(text, expected):
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T08:00:00",  # no offset: the zone would be a guess
        "2026-11-01",
        "08:00:00Z",
        "20261101T080000Z",  # ISO 8601 basic format, not RFC 3339
        "2026-11-01T08:00Z",  # seconds are required
        "2026-11-01T08:00:00+0800",  # the offset needs its colon
        "2026-13-01T08:00:00Z",
        "yesterday",
        "",
    ],
)
def test_parse_rfc3339_refuses_what_is_not_rfc3339(text):
    with pytest.raises(ValueError):  # noqa: PT011
        parse_rfc3339(text)


def test_parse_rfc3339_refuses_non_strings():
    with pytest.raises(ValueError):  # noqa: PT011
        parse_rfc3339(T0)  # type: ignore[arg-type]


# --- naive datetimes -------------------------------------------------------------------------------


def test_naive_datetimes_are_refused_everywhere():
    naive = datetime(2026, 11, 1, 8)
    with pytest.raises(NaiveDatetimeError):
        ensure_utc(naive)
    with pytest.raises(NaiveDatetimeError):
        Window(naive, T0 + timedelta(hours=1))
    with pytest.raises(NaiveDatetimeError):
        Window(T0, naive + timedelta(hours=1))
    with pytest.raises(NaiveDatetimeError):
        Window(T0, T0 + timedelta(hours=1)).contains(naive)
    with pytest.raises(NaiveDatetimeError):
        floor_hour(naive)
    with pytest.raises(NaiveDatetimeError):
        month_start(naive)


def test_aware_datetimes_are_converted_to_utc():
    local = datetime(2026, 11, 1, 16, 0, tzinfo=SHANGHAI)
    assert ensure_utc(local) == T0
    assert ensure_utc(local).tzinfo is UTC
    window = Window(local, local + timedelta(hours=2))
    assert window.start.tzinfo is UTC
    assert window.start == T0


# --- Window: half-open -----------------------------------------------------------------------------


def test_window_contains_its_start_but_not_its_end():
    window = Window(T0, T0 + timedelta(hours=1))
    assert window.contains(T0)
    assert window.contains(T0 + timedelta(minutes=59, seconds=59, microseconds=999999))
    assert not window.contains(T0 + timedelta(hours=1))
    assert not window.contains(T0 - timedelta(microseconds=1))
    # The same instant in another zone is the same instant.
    assert window.contains(datetime(2026, 11, 1, 16, 30, tzinfo=SHANGHAI))


def test_adjacent_windows_do_not_overlap():
    first = Window(T0, T0 + timedelta(hours=1))
    second = Window(T0 + timedelta(hours=1), T0 + timedelta(hours=2))
    assert not first.overlaps(second)
    assert not second.overlaps(first)
    assert first.intersection(second) is None


def test_overlapping_windows():
    first = Window(T0, T0 + timedelta(hours=1))
    barely = Window(T0 + timedelta(minutes=59, seconds=59, microseconds=999999), T0 + timedelta(hours=3))
    inside = Window(T0 + timedelta(minutes=10), T0 + timedelta(minutes=20))
    assert first.overlaps(barely)
    assert barely.overlaps(first)
    assert first.intersection(barely) == Window(barely.start, first.end)
    assert first.overlaps(inside)
    assert first.covers(inside)
    assert not inside.covers(first)
    assert first.intersection(inside) == inside


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(seconds=-1)])
def test_empty_and_inverted_windows_are_refused(delta):
    with pytest.raises(ValueError):  # noqa: PT011
        Window(T0, T0 + delta)


def test_window_duration():
    window = Window(T0, T0 + timedelta(hours=2, minutes=30))
    assert window.duration == timedelta(hours=2, minutes=30)
    assert window.seconds == 9000


# --- Window.hours ----------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2030, 12, 31),
    timezones=st.sampled_from([UTC, SHANGHAI, ZoneInfo("Asia/Kolkata"), timezone(timedelta(hours=-3, minutes=-15))]),
)


@given(start=instants, length=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(hours=30)))
def test_hours_tile_the_window_exactly_and_cut_at_whole_utc_hours(start, length):
    window = Window(start, start + length)
    pieces = list(window.hours())
    assert pieces[0].start == window.start
    assert pieces[-1].end == window.end
    for before, after in itertools.pairwise(pieces):
        assert before.end == after.start  # contiguous, no gap, no overlap
        assert after.start == floor_hour(after.start)  # every cut is on a whole UTC hour
    for piece in pieces:
        assert piece.duration <= timedelta(hours=1)
        assert floor_hour(piece.start) == floor_hour(piece.end - timedelta(microseconds=1))  # inside one hour
    assert sum((p.duration for p in pieces), timedelta(0)) == window.duration
    first_hour = floor_hour(window.start)
    last_hour = floor_hour(window.end - timedelta(microseconds=1))
    assert len(pieces) == (last_hour - first_hour) // timedelta(hours=1) + 1


def test_hours_examples():
    window = Window(utc(2026, 11, 1, 8, 30), utc(2026, 11, 1, 10, 15))
    assert list(window.hours()) == [
        Window(utc(2026, 11, 1, 8, 30), utc(2026, 11, 1, 9)),
        Window(utc(2026, 11, 1, 9), utc(2026, 11, 1, 10)),
        Window(utc(2026, 11, 1, 10), utc(2026, 11, 1, 10, 15)),
    ]
    assert list(Window(T0, T0 + timedelta(hours=1)).hours()) == [Window(T0, T0 + timedelta(hours=1))]


def test_hours_are_utc_hours_even_for_half_hour_zones():
    # 08:00-10:00 in India (+05:30) is 02:30-04:30 UTC: cut at 03:00 and 04:00 UTC.
    kolkata = ZoneInfo("Asia/Kolkata")
    window = Window(datetime(2026, 11, 1, 8, tzinfo=kolkata), datetime(2026, 11, 1, 10, tzinfo=kolkata))
    assert [p.start for p in window.hours()] == [utc(2026, 11, 1, 2, 30), utc(2026, 11, 1, 3), utc(2026, 11, 1, 4)]


# --- Window.month ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "days"),
    [(2024, 29), (2023, 28), (2000, 29), (1900, 28), (2100, 28), (2028, 29)],
)
def test_february_has_the_right_length(year, days):
    window = Window.month(year, 2)
    assert window.start == utc(year, 2, 1)
    assert window.end == utc(year, 3, 1)
    assert window.duration == timedelta(days=days)
    assert window.contains(utc(year, 2, days, 23, 59, 59))
    assert not window.contains(utc(year, 3, 1))


def test_december_ends_at_new_year():
    window = Window.month(2026, 12)
    assert window.end == utc(2027, 1, 1)


def test_consecutive_months_tile_the_year():
    months = [Window.month(2024, m) for m in range(1, 13)]
    for before, after in itertools.pairwise(months):
        assert before.end == after.start
    assert sum((m.duration for m in months), timedelta(0)) == timedelta(days=366)


def test_floor_hour_and_month_start_work_in_utc():
    local = datetime(2026, 11, 1, 0, 30, tzinfo=SHANGHAI)  # 2026-10-31 16:30 UTC
    assert floor_hour(local) == utc(2026, 10, 31, 16)
    assert month_start(local) == utc(2026, 10, 1)
