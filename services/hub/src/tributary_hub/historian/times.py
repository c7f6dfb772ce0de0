"""Wire times (RFC 3339, `datetime`) to and from the integer microseconds the series are read in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tributary_common.timeutil import format_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
FIRST_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // ONE_US
LAST_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // ONE_US


def to_us(t: datetime) -> int:
    return (t - EPOCH) // ONE_US


def to_datetime(us: int) -> datetime:
    """Clamped to what `datetime` holds: a bound one µs past the last instant (an end after a query's
    `9999-12-31T23:59:59.999999Z`) still compares as intended against every stored time."""
    return EPOCH + timedelta(microseconds=min(max(us, FIRST_US), LAST_US))


def iso(us: int) -> str:
    return format_time(to_datetime(us))


def from_iso(text: str) -> int:
    """A stored time (`format_time`'s shape, always UTC) in µs, without the general parser's work."""
    return to_us(datetime.fromisoformat(text))
