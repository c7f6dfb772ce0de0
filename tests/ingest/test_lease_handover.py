"""Handing a lease over (in-process engines, real RabbitMQ and Memcached): a release deletes the lease at once, even
for a read that has published nothing yet, so the next owner need not wait for it to expire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.cache import Cache
from tributary_ingest.connectors.simulator import SimulatorSource
from tributary_ingest.sdk import Connector

pytestmark = pytest.mark.timeout(120)

LONG_TTL_S = 60.0  # a lease that disappears within the test was deleted, not expired


class QuietParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


class QuietSource(Connector[QuietParams]):
    """Subscribes fine and never emits (a sensor that has nothing to say yet)."""

    params_model = QuietParams

    async def read(self, sid: str, params: QuietParams) -> None:
        await asyncio.Event().wait()


async def lease_of(cache: Cache, source: str, sid: str) -> str | None:
    found = await cache.get_many([f"lease:{source}:{sid}"])
    value = found.get(f"lease:{source}:{sid}")
    return None if value is None else value.decode()


async def test_a_release_with_nothing_published_deletes_the_lease(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    quiet = sub("quiet", {"n": 1})
    settings = make_settings(amqp_url, cache_namespace, lease_ttl_s=LONG_TTL_S, instance_id="quiet-a")
    cache = Cache("127.0.0.1", 11211, cache_namespace)
    try:
        async with engine(settings, {"quiet": QuietSource}) as e:
            amqp_bus.demand("quiet", [quiet])
            await eventually(lambda: quiet.sid in e.runtimes["quiet"].owned, 30, "the lease taken")
            assert await lease_of(cache, "quiet", quiet.sid) == "quiet-a"
            amqp_bus.stop_demand("quiet")  # demand lapses (2 s), then the grace (1 s): released
            await eventually(lambda: not e.runtimes["quiet"].owned, 30, "the lease released")

            async def gone() -> bool:
                return await lease_of(cache, "quiet", quiet.sid) is None

            await eventually(gone, 10, "the lease deleted, long before its TTL")
    finally:
        await cache.close()


async def test_a_second_instance_takes_its_share_from_the_first_without_a_duplicate(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    subs = [sub("simulator", {"signal": "ramp", "seed": n, "rate_hz": 20.0}) for n in range(1, 9)]
    first = make_settings(amqp_url, cache_namespace, lease_ttl_s=LONG_TTL_S, instance_id="hand-a")
    second = make_settings(amqp_url, cache_namespace, lease_ttl_s=LONG_TTL_S, instance_id="hand-b")
    connectors: dict[str, type[Connector[Any]]] = {"simulator": SimulatorSource}
    async with engine(first, connectors) as a:
        amqp_bus.demand("simulator", subs)
        await eventually(lambda: len(a.runtimes["simulator"].owned) == 8, 30, "the first instance holding all")
        await eventually(lambda: len(amqp_bus.by_sid()) == 8, 30, "every sid on the wire")
        async with engine(second, connectors) as b:
            # The leases live 60 s: only a handover (release, then take) can move them within the wait.
            await eventually(
                lambda: len(a.runtimes["simulator"].owned) == 4 and len(b.runtimes["simulator"].owned) == 4,
                30,
                "four leases each",
            )
            moved = set(b.runtimes["simulator"].owned)
            await eventually(
                lambda: all(any(r.app_id == "hand-b" for r in amqp_bus.by_sid()[s]) for s in moved),
                30,
                "the moved sids published by the second instance",
            )
            by_sid = amqp_bus.by_sid()  # before the second one stops (and hands them back)
            handed = "tributary_ingest_leases_handed_over_total"
            assert a.metrics.registry.get_sample_value(handed, {"source": "simulator"}) == 4
            assert b.metrics.registry.get_sample_value(handed, {"source": "simulator"}) == 0
    for sid in moved:
        publishers = [r.app_id for r in by_sid[sid]]
        # One handover: the first instance's batches, then the second's, never interleaved.
        switch = publishers.index("hand-b")
        assert set(publishers[:switch]) == {"hand-a"} and set(publishers[switch:]) == {"hand-b"}, publishers
    # Each new owner (also the first again, after the second stopped) started after the watermark: no sample twice.
    assert amqp_bus.assert_strictly_increasing() > 8 * 5
