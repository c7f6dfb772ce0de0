"""Publishes that fail mid-stream against the real RabbitMQ: the broker closes the engine's publishing channel
while batches of several sids are in flight. Each sid's batches must still arrive in time order with nothing
lost: the failed batch is sent again (whole, so a copy of the one before is the only duplicate allowed) before
anything after it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.simulator import SimulatorSource

pytestmark = pytest.mark.timeout(120)

RATE_HZ = 500
STEP = timedelta(microseconds=1_000_000 // RATE_HZ)


def publish_errors(e: Any) -> float | None:
    value: float | None = e.metrics.registry.get_sample_value(
        "tributary_ingest_errors_total", {"source": "simulator", "kind": "publish"}
    )
    return value


def received(b: Bus, sid: str) -> list[list[datetime]]:
    return [[s.t for s in r.batch.samples] for r in b.batches if r.batch.sid == sid]


def check_order_and_gaps(batches: list[list[datetime]]) -> int:
    """Every batch starts right after the one before (no gap, no overlap), or repeats it exactly; the number of
    samples once the repeats are left out."""
    last: list[datetime] = []
    count = 0
    for times in batches:
        assert times == sorted(set(times)), "a batch in time order"
        assert all(b - a == STEP for a, b in itertools.pairwise(times)), "a batch without gaps"
        if times == last:
            continue  # sent again after a failure that the broker had in fact received
        if last:
            assert times[0] == last[-1] + STEP, f"after {last[-1]} came {times[0]}: lost or out of order"
        last = times
        count += len(times)
    return count


async def test_batches_stay_in_order_with_nothing_lost_when_the_channel_fails(
    amqp_bus: Bus, amqp_url: str, cache_namespace: str
) -> None:
    subs = [sub("simulator", {"signal": "ramp", "rate_hz": RATE_HZ, "seed": i}) for i in range(3)]
    settings = make_settings(amqp_url, cache_namespace, batch_max_size=25, batch_max_delay_s=0.02)
    async with engine(settings, {"simulator": SimulatorSource}) as e:
        amqp_bus.demand("simulator", subs, ttl_s=30)
        await eventually(lambda: all(len(received(amqp_bus, s.sid)) >= 5 for s in subs), 30, "batches flowing")
        # At least 4 failures, and more (up to 20) until one of them has failed a publish in flight: whether a
        # batch is in flight at the instant the broker closes the channel is up to timing.
        failure = 0
        while failure < 4 or (not publish_errors(e) and failure < 20):
            failure += 1
            before = {s.sid: len(received(amqp_bus, s.sid)) for s in subs}
            # A passive declare of a missing exchange: the broker closes the channel (404) under the publishes in
            # flight; the robust channel is reopened and the pipelines send their batches again.
            with contextlib.suppress(Exception):
                await e.publisher.channel.declare_exchange(f"missing-{failure}", passive=True)
            await eventually(
                lambda before=before: all(len(received(amqp_bus, s.sid)) >= before[s.sid] + 5 for s in subs),
                30,
                "batches flowing again after the channel failed",
            )
            await asyncio.sleep(0.2)
        amqp_bus.stop_demand("simulator")
    errors = publish_errors(e)
    assert errors, "the channel's failures failed publishes in flight (else this test proved nothing)"
    for s in subs:
        # Everything published in order up to the end, then drained at the stop.
        assert check_order_and_gaps(received(amqp_bus, s.sid)) >= 100


def test_the_check_catches_a_lost_batch_and_a_reordered_one() -> None:
    t0 = datetime(2026, 1, 1)
    a = [t0 + STEP * i for i in range(3)]
    b = [t0 + STEP * i for i in range(3, 6)]
    c = [t0 + STEP * i for i in range(6, 9)]
    assert check_order_and_gaps([a, b, b, c]) == 9
    with pytest.raises(AssertionError):
        check_order_and_gaps([a, c])
    with pytest.raises(AssertionError):
        check_order_and_gaps([a, c, b])
