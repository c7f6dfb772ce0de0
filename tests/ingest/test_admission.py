"""Times a connector reads from text, and how refused samples are counted and logged (pure logic, no services)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from tributary_ingest.admission import BOUNDS_TTL_S, Refusal, SampleAdmission
from tributary_ingest.metrics import IngestMetrics
from tributary_ingest.refusals import RefusalLog
from tributary_ingest.values import parse_timestamp


@pytest.mark.parametrize(
    "raw",
    [
        1e20,
        float("inf"),
        float("-inf"),
        float("nan"),
        10**30,
        -(10**30),
        "1e20",
        "inf",
        "-inf",
        "nan",
        "1e400",
        "9999-12-31T23:00:00-05:00",  # year 10000 in UTC
        "0001-01-01T00:00:00+05:00",  # year 0 in UTC
        "2026-13-01T00:00:00Z",
        "9" * 10_000,
        True,
        None,
        [1],
    ],
)
def test_a_bad_time_is_a_value_error_never_an_overflow(raw: object) -> None:
    """Connectors skip a row on ValueError; anything else ended the read and restarted it at the same row."""
    try:
        parse_timestamp(raw)
    except ValueError:
        return  # an OverflowError or TypeError goes through and fails the test
    pytest.fail(f"{raw!r} parsed")


def test_good_times_still_parse() -> None:
    assert parse_timestamp("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_timestamp(" 1767225600.5 ") == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert parse_timestamp(253402300799) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # refused later, by age


def test_refusals_are_all_counted_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    metrics = IngestMetrics()
    now = [0.0]
    refusals = RefusalLog("csv", metrics, 30.0, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tributary_ingest.refusals"):
        for i in range(1000):
            refusals.refused(f"sid{i % 3}", Refusal("too_far_ahead", f"time number {i}"))
            refusals.refused("sid0", Refusal("not_increasing"))
        now[0] = 31.0
        refusals.refused("sid1", Refusal("too_far_ahead", "the last one"))
        refusals.refused("sid1", Refusal("bad_time", "not a time"))

    def count(reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "tributary_ingest_samples_dropped_total", {"source": "csv", "reason": reason}
        )

    assert count("too_far_ahead") == 1001
    assert count("not_increasing") == 1000
    assert count("bad_time") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "refused 1 sample(s) (too_far_ahead)" in lines[0] and "time number 0" in lines[0]
    assert "refused 1000 sample(s) (too_far_ahead)" in lines[1] and "the last one" in lines[1]
    assert "(bad_time)" in lines[2]


def test_the_window_moves_with_the_clock() -> None:
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    now = [t0]
    admission = SampleAdmission(max_age_s=60, max_skew_s=10, clock=lambda: now[0])
    assert admission.time(t0) == t0
    now[0] = t0 + timedelta(seconds=30)
    # The cached upper bound (t0 + 10 s) is stale: a time past it is judged against the clock again.
    assert admission.time(t0 + timedelta(seconds=35)) == t0 + timedelta(seconds=35)
    refused = admission.time(t0 + timedelta(seconds=41))
    assert isinstance(refused, Refusal) and refused.reason == "too_far_ahead"
    now[0] = t0 + timedelta(seconds=100)
    time.sleep(BOUNDS_TTL_S * 1.5)  # the lower bound is at most this stale
    refused = admission.time(t0 + timedelta(seconds=39))
    assert isinstance(refused, Refusal) and refused.reason == "too_old"
