"""The simulator's bursts (values of a range of grid steps at once, rows made by zip) are exactly the samples of
one call per grid step: same times, bit-identical values, for every signal. Pure: no services."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from tributary_ingest.connectors.signals import make_signal, make_values
from tributary_ingest.connectors.simulator import EPOCH, _burst

KINDS = ("sine", "ramp", "random_walk", "step")


@pytest.mark.parametrize("kind", KINDS)
def test_values_of_a_burst_are_those_of_one_call_per_step(kind: str) -> None:
    rnd = random.Random(kind)
    for _ in range(20):
        seed = rnd.randrange(100)
        shape = {
            "offset": rnd.uniform(-1e3, 1e3),
            "amplitude": rnd.uniform(-50, 50),
            "period_s": rnd.choice([0.5, 3.0, 10.0, rnd.uniform(0.01, 1e4)]),
            "phase": rnd.uniform(-7, 7),
            "step": rnd.uniform(0, 1),
        }
        interval_us = rnd.choice([1, 7, 3333, 50_000, 1_000_000])
        k = rnd.randrange(0, 2_000_000_000_000 // interval_us)
        end = k + rnd.randrange(0, 600)
        one = make_signal(kind, seed=seed, **shape)
        expected = [one(i, i * interval_us / 1e6) for i in range(k, end + 1)]
        # Bit-identical: a reader taking a sid over from another instance must see the very same numbers.
        assert make_values(kind, interval_us, seed=seed, **shape)(k, end) == expected


def test_burst_rows_are_on_the_grid_in_order() -> None:
    interval_us = 3333
    k = 1_764_500_000_000_000 // interval_us
    values = [float(i) for i in range(500)]
    rows = _burst(values, k, interval_us, timedelta(microseconds=interval_us))
    assert [v for _, v, _ in rows] == values
    assert all(q is None for _, _, q in rows)
    assert [t for t, _, _ in rows] == [EPOCH + timedelta(microseconds=(k + j) * interval_us) for j in range(500)]
    assert _burst([2.5], k, interval_us, timedelta(microseconds=interval_us)) == [
        (EPOCH + timedelta(microseconds=k * interval_us), 2.5, None)
    ]
