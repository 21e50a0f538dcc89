"""Time: everything is stored and computed in UTC; windows are half-open [start, end)."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)


class NaiveDatetimeError(ValueError):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """An aware datetime converted to UTC; a naive one is a bug (its zone is a guess) and is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(f"naive datetime {value!r}: give a timezone")
    return value.astimezone(UTC)


# RFC 3339 section 5.6 date-time: full-date "T" full-time, seconds and an offset (Z or +hh:mm) required.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 timestamp ('2026-11-01T08:00:00Z' or with an offset) as an aware UTC datetime.

    Anything else is refused with ValueError: a timestamp without an offset (its zone would be a guess),
    ISO 8601's basic format, a missing seconds field.
    """
    if not isinstance(text, str):
        raise ValueError("timestamp must be a string")
    candidate = text.strip()
    if not _RFC3339.fullmatch(candidate):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    value = datetime.fromisoformat(candidate)
    return ensure_utc(value)


def floor_hour(value: datetime) -> datetime:
    return ensure_utc(value).replace(minute=0, second=0, microsecond=0)


def month_start(value: datetime) -> datetime:
    return ensure_utc(value).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC interval [start, end). Empty and inverted windows are refused."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start))
        object.__setattr__(self, "end", ensure_utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after start {self.start.isoformat()}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def seconds(self) -> int:
        return int(self.duration.total_seconds())

    def contains(self, instant: datetime) -> bool:
        return self.start <= ensure_utc(instant) < self.end

    def covers(self, other: Window) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end

    def intersection(self, other: Window) -> Window | None:
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Window(start, end) if start < end else None

    def hours(self) -> Iterator[Window]:
        """The window cut at whole UTC hours (the first and last pieces may be partial)."""
        cursor = self.start
        while cursor < self.end:
            next_hour = floor_hour(cursor) + HOUR
            piece_end = min(next_hour, self.end)
            yield Window(cursor, piece_end)
            cursor = piece_end

    @classmethod
    def month(cls, year: int, month: int) -> Window:
        start = datetime(year, month, 1, tzinfo=UTC)
        days = calendar.monthrange(year, month)[1]
        return cls(start, start + timedelta(days=days))
