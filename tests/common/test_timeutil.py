"""RFC 3339 parsing: every bad input is a ValueError (a 422 at the edges), never an OverflowError (a 500)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_common.timeutil import format_time, parse_time


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("9999-12-31T23:00:00-05:00", "out of range"),  # past the last representable instant once in UTC
        ("0001-01-01T00:30:00+01:00", "out of range"),  # before the first
        ("2026-01-01T00:00:00", "no UTC offset"),
        ("not a time", "Invalid isoformat"),
        ("2026-13-01T00:00:00Z", "month must be"),
    ],
)
def test_bad_times_are_value_errors(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_time(value)


def test_round_trip_in_utc() -> None:
    t = parse_time("2026-11-30T05:00:00.000001+01:00")
    assert t == datetime(2026, 11, 30, 4, 0, 0, 1, tzinfo=UTC)
    assert format_time(t) == "2026-11-30T04:00:00.000001Z"


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), st.integers(-23 * 60, 23 * 60))
def test_format_time_is_rfc_3339_in_utc_and_parses_back(t: datetime, offset_min: int) -> None:
    for aware in (t, t.replace(tzinfo=UTC), t.replace(tzinfo=timezone(timedelta(minutes=offset_min)))):
        utc = (aware if aware.tzinfo else aware.replace(tzinfo=UTC)).astimezone(UTC)
        text = format_time(aware)
        assert text == f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.%fZ")
        assert parse_time(text) == utc


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "0999-12-31T23:59:59.999999Z"),
        (datetime(1000, 1, 1, tzinfo=UTC), "1000-01-01T00:00:00.000000Z"),
    ],
)
def test_years_below_1000_have_four_digits(t: datetime, text: str) -> None:
    """strftime wrote `999-12-31T…`: not RFC 3339, unreadable by `parse_time`, and sorted after `2026-…` as text."""
    assert format_time(t) == text
    assert parse_time(text) == t
