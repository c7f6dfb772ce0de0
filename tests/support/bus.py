"""The test's own AMQP connection to the platform's exchanges: publishes as the hub (events) and ingest (samples)
do, sends demand heartbeats as the hub does, and collects the samples and source announcements on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from tributary_common.amqp import CONTROL, EVENTS, SAMPLES, demand_key
from tributary_common.control import Demand, DemandedSubscription, SourceAnnouncement
from tributary_common.ids import new_event_id
from tributary_common.samples import SampleBatch
from tributary_common.timeutil import format_time, utcnow


def envelope(topic: str, subject: str | None, data: Any = None, eid: str | None = None) -> dict[str, Any]:
    """A CloudEvents envelope as the hub puts it on the events exchange."""
    return {
        "specversion": "1.0",
        "id": eid or new_event_id(),
        "source": "test",
        "type": topic,
        "subject": subject,
        "time": format_time(utcnow()),
        "dataschema": f"/topics/{topic}/schemas/1",
        "datacontenttype": "application/json",
        "data": data,
    }


@dataclass
class Received:
    batch: SampleBatch
    app_id: str | None
    headers: dict[str, Any]
    at: float


@dataclass
class Bus:
    """Open with `async with Bus(url)` (or `bus(url)`); `collect=False` for a publisher that reads nothing."""

    url: str
    collect: bool = True
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    channel: aio_pika.abc.AbstractChannel | None = None
    exchanges: dict[str, AbstractExchange] = field(default_factory=dict)
    batches: list[Received] = field(default_factory=list)
    announcements: list[SourceAnnouncement] = field(default_factory=list)
    _demands: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def open(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel()
        for name in (EVENTS.name, SAMPLES.name, CONTROL.name):
            self.exchanges[name] = await self.channel.declare_exchange(name, "topic", durable=True)
        if self.collect:
            await self._consume(self.samples_ex, "#", self._on_sample)
            await self._consume(self.control_ex, "source.#", self._on_announcement)

    async def _consume(self, exchange: AbstractExchange, key: str, callback: Any) -> None:
        assert self.channel is not None
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=key)
        await queue.consume(callback, no_ack=True)

    async def close(self) -> None:
        for source in list(self._demands):
            self.stop_demand(source)
        if self.connection is not None:
            await self.connection.close()

    async def __aenter__(self) -> Bus:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def events_ex(self) -> AbstractExchange:
        return self.exchanges[EVENTS.name]

    @property
    def samples_ex(self) -> AbstractExchange:
        return self.exchanges[SAMPLES.name]

    @property
    def control_ex(self) -> AbstractExchange:
        return self.exchanges[CONTROL.name]

    # -- publishing --------------------------------------------------------------------------------------------

    async def raw(self, exchange: str, key: str, body: bytes, headers: dict[str, Any] | None = None) -> None:
        await self.exchanges[exchange].publish(aio_pika.Message(body, headers=headers or {}), routing_key=key)

    async def event(self, topic: str, subject: str | None = None, data: Any = None) -> dict[str, Any]:
        env = envelope(topic, subject, data)
        await self.raw(EVENTS.name, f"{topic}.{subject}" if subject else topic, orjson.dumps(env))
        return env

    async def send_demand(self, source: str, subs: list[DemandedSubscription], ttl_s: float = 2.0) -> None:
        demand = Demand(source=source, requester="test", subscriptions=subs, ttl_s=ttl_s, sent_at=utcnow())
        await self.control_ex.publish(
            aio_pika.Message(demand.model_dump_json().encode(), content_type="application/json"),
            routing_key=demand_key(source),
        )

    def demand(
        self, source: str, subs: list[DemandedSubscription], *, interval_s: float = 0.5, ttl_s: float = 2.0
    ) -> None:
        """Keep sending demand heartbeats for `subs` (replacing any earlier demand of this source) until stopped."""
        self.stop_demand(source)

        async def beat() -> None:
            while True:
                with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
                    await self.send_demand(source, subs, ttl_s)  # a broker outage skips beats, it does not end them
                await asyncio.sleep(interval_s)

        self._demands[source] = asyncio.create_task(beat())

    def stop_demand(self, source: str) -> None:
        task = self._demands.pop(source, None)
        if task is not None:
            task.cancel()

    # -- what arrived ------------------------------------------------------------------------------------------

    async def _on_sample(self, message: AbstractIncomingMessage) -> None:
        batch = SampleBatch.model_validate_json(message.body)
        assert message.routing_key == f"{batch.source}.{batch.sid}"
        self.batches.append(Received(batch, message.app_id, dict(message.headers or {}), time.monotonic()))

    async def _on_announcement(self, message: AbstractIncomingMessage) -> None:
        self.announcements.append(SourceAnnouncement.model_validate_json(message.body))

    def by_sid(self, since: float = 0.0) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = defaultdict(list)
        for r in self.batches:
            if r.at >= since:
                out[r.batch.sid].append(r)
        return out

    def values(self, sid: str) -> list[tuple[str, Any]]:
        return [(format_time(s.t), s.v) for r in self.batches if r.batch.sid == sid for s in r.batch.samples]

    def assert_strictly_increasing(self, per_publisher: bool = False) -> int:
        """Per sid (and publisher), over every batch on the wire in arrival order; returns the samples checked."""
        last: dict[tuple[str, str | None], Any] = {}
        n = 0
        for r in self.batches:
            key = (r.batch.sid, r.app_id if per_publisher else None)
            for s in r.batch.samples:
                prev = last.get(key)
                assert prev is None or s.t > prev, f"{key}: {s.t} after {prev} on the wire"
                last[key] = s.t
                n += 1
        return n


@contextlib.asynccontextmanager
async def bus(url: str, collect: bool = True) -> AsyncIterator[Bus]:
    async with Bus(url, collect) as b:
        yield b
