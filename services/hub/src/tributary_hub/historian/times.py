"""Wire times (RFC 3339, `datetime`) to and from the integer microseconds the series are read in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tributary_common.timeutil import format_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    return (t - EPOCH) // ONE_US


def to_datetime(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    return format_time(to_datetime(us))


def from_iso(text: str) -> int:
    """A stored time (`format_time`'s shape, always UTC) in µs, without the general parser's work."""
    return to_us(datetime.fromisoformat(text))
