"""RFC 3339 UTC timestamps with microseconds, the one time format on the wire."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    """`2026-11-26T10:00:00.000001Z`: always UTC, always six fractional digits."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    # `isoformat`: half the cost of `strftime` (the recorder formats every event's time), and a four-digit year
    # below 1000 too, as RFC 3339 and `parse_time` want (strftime wrote `999-…`, which no reader could parse).
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset (`Z` or `±hh:mm`); naive input is refused."""
    t = datetime.fromisoformat(s.replace("z", "Z").replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"timestamp {s!r} has no UTC offset (add 'Z' or '+00:00')")
    try:
        return t.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past the last representable instant
        raise ValueError(f"timestamp {s!r} is out of range") from None
