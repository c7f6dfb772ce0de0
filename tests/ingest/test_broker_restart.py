"""A private RabbitMQ node restarted under a running engine: demand is heard again and samples resume, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support import platform
from tests.support.bus import bus
from tests.support.polling import eventually
from tests.support.rabbitmq import PrivateRabbit, private_rabbit
from tributary_ingest.connectors.simulator import SimulatorSource

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    with private_rabbit("ingest") as node:
        yield node


async def test_samples_resume_after_a_broker_restart(rabbit: PrivateRabbit, cache_namespace: str) -> None:
    url = platform.amqp_url("/", port=rabbit.port)
    s = sub("simulator", {"signal": "ramp", "rate_hz": 20})
    later = sub("simulator", {"signal": "sine", "rate_hz": 20})
    async with bus(url) as b, engine(make_settings(url, cache_namespace), {"simulator": SimulatorSource}) as e:
        # A demand TTL longer than the outage: the lease and the read must survive it (only publishing pauses).
        b.demand("simulator", [s], ttl_s=90)
        await eventually(lambda: len(b.values(s.sid)) >= 10, what="samples before the restart")
        await asyncio.to_thread(rabbit.run, "down")
        await asyncio.to_thread(rabbit.run, "up")
        after = time.monotonic()
        # The engine's control queue is back (new demand is heard) and both sids flow again.
        b.demand("simulator", [s, later], ttl_s=90)
        await eventually(lambda: later.sid in b.by_sid(after), 90, "the sid demanded after the restart")
        await eventually(lambda: s.sid in b.by_sid(after), 60, "the first sid flowing again")
        assert set(e.status()["sources"]["simulator"]["leases"]) == {s.sid, later.sid}
        lost = e.metrics.registry.get_sample_value("tributary_ingest_leases_lost_total", {"source": "simulator"})
        assert lost == 0
    b.assert_strictly_increasing()
