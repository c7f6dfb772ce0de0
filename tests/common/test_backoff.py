"""The one Backoff of libs/common: equal jitter within [d/2, d], doubling ceilings capped, reset, no jitter."""

from __future__ import annotations

import random

import pytest

from tributary_common.backoff import Backoff


def test_ceilings_double_up_to_the_maximum() -> None:
    b = Backoff(0.5, 5.0)
    assert [b.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert b.ceiling(0) == 0.5
    assert b.ceiling(10_000) == 5.0  # no overflow after a very long outage


def test_each_delay_lies_in_the_upper_half_of_its_ceiling() -> None:
    b = Backoff(0.1, 2.0, random.Random(7))
    for n in range(1, 40):
        d = b.next_delay()
        assert b.failures == n
        assert b.ceiling(n) / 2 <= d <= b.ceiling(n)


def test_the_same_seed_gives_the_same_delays_and_reset_starts_over() -> None:
    a, b = Backoff(0.1, 2.0, random.Random(3)), Backoff(0.1, 2.0, random.Random(3))
    assert [a.next_delay() for _ in range(5)] == [b.next_delay() for _ in range(5)]
    a.reset()
    assert a.failures == 0
    assert a.next_delay() <= 0.1


def test_without_jitter_the_delays_are_the_ceilings() -> None:
    b = Backoff(0.2, 5.0, jitter=False)
    assert [b.next_delay() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


async def test_sleep_waits_the_delay_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("tributary_common.backoff.asyncio.sleep", fake_sleep)
    b = Backoff(0.01, 0.04, jitter=False)
    assert [await b.sleep() for _ in range(3)] == [0.01, 0.02, 0.04]
    assert slept == [0.01, 0.02, 0.04]
