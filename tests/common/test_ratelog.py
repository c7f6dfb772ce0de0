"""LogThrottle: one line per key per interval, each counting what it stands for; bounded in keys."""

from __future__ import annotations

import logging

import pytest

from tributary_common.ratelog import LogThrottle

log = logging.getLogger("tests.ratelog")


def test_one_line_per_key_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = LogThrottle(10, lambda: now[0])
    with caplog.at_level(logging.INFO, logger="tests.ratelog"):
        for i in range(2000):
            throttle.log(log, logging.ERROR, "undecodable", "bad message %d", i)
            throttle.log(log, logging.ERROR, "too_large", "big message %d", i)
        now[0] = 10.0
        throttle.log(log, logging.ERROR, "undecodable", "bad message %d", 2000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "bad message 0 [1 like this since the last such line]",
        "big message 0 [1 like this since the last such line]",
        "bad message 2000 [2000 like this since the last such line]",
    ]


def test_keys_are_bounded() -> None:
    throttle = LogThrottle(10, lambda: 0.0, max_keys=3)
    assert [throttle.hit(k) for k in "abcd"] == [1, 1, 1, 1]
    assert len(throttle._logged_at) == 3 and "a" not in throttle._logged_at
    assert throttle.hit("d") is None and throttle.hit("a") == 1  # "a" was forgotten: it may log again
