"""A connector that hands the sink garbage (times past year 9999 or not times at all, values no encoder takes):
each bad sample is refused and counted, the read is never restarted, and real samples keep flowing. A far-future
watermark left in Memcached (by a bad sample before the time window existed) does not silence the sid either.
Failed on the code before: the sink raised TypeError (the read restarted forever) and the year-9999 watermark
dropped every real sample."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.timeutil import utcnow
from tributary_ingest.leases import Leases
from tributary_ingest.sdk import Connector

FAR = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


class HostileParams(BaseModel):
    tag: str


class HostileSource(Connector[HostileParams]):
    params_model = HostileParams

    async def read(self, sid: str, params: HostileParams) -> None:
        now = utcnow()
        garbage: list[tuple[Any, Any]] = [
            (FAR, 1.0),
            (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))), 1.0),
            (now + timedelta(days=1), 1.0),
            (datetime(1970, 1, 1, tzinfo=UTC), 1.0),
            (1e20, 1.0),
            (float("inf"), 1.0),
            ("2026-01-01T00:00:00Z", 1.0),
            (now - timedelta(seconds=5), float("nan")),
            (now - timedelta(seconds=5), 2**70),
            (now - timedelta(seconds=5), "\ud800"),
            (now - timedelta(seconds=5), object()),
        ]
        for t, v in garbage:
            self.sink.emit(sid, t, v)
        i = 0
        while True:
            i += 1
            self.sink.emit(sid, utcnow(), i)
            await asyncio.sleep(0.05)


async def test_garbage_from_a_connector_is_refused_and_real_samples_keep_flowing(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    settings = make_settings(amqp_url, cache_namespace)
    s = sub("hostile", {"tag": "a"})
    async with engine(settings, {"hostile": HostileSource}) as e:
        poisoned = Leases(e.lease_io.cache, "hostile", "someone-before", settings.lease_ttl_s)
        await e.lease_io.run(poisoned.set_watermark(s.sid, FAR))
        amqp_bus.demand("hostile", [s])
        await eventually(lambda: len(amqp_bus.values(s.sid)) >= 10, 20, "ten real samples")

        def count(name: str, **labels: str) -> float:
            return e.metrics.registry.get_sample_value(name, {"source": "hostile", **labels}) or 0.0

        dropped = "tributary_ingest_samples_dropped_total"
        assert count(dropped, reason="too_far_ahead") == 3
        assert count(dropped, reason="too_old") == 1
        assert count(dropped, reason="bad_time") == 3
        assert count(dropped, reason="not_finite") == 1
        assert count(dropped, reason="bad_value") == 3
        assert count("tributary_ingest_reads_total") == 1, "the read was never restarted"
        assert count("tributary_ingest_errors_total", kind="connector") == 0
    values = [v for _, v in amqp_bus.values(s.sid)]
    assert values[:10] == list(range(1, 11))
