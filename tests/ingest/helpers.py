"""Test helpers for the ingest suites: demand heartbeats, a samples collector, ingest processes, an engine."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage

from tests.support import platform
from tests.support.processes import ServiceProcess
from tributary_common.control import Demand, DemandedSubscription, SourceAnnouncement
from tributary_common.exchanges import CONTROL, SAMPLES, demand_key
from tributary_common.samples import SampleBatch
from tributary_common.sid import compute_sid
from tributary_common.timeutil import utcnow
from tributary_ingest.engine import Engine
from tributary_ingest.sdk import Connector
from tributary_ingest.settings import IngestSettings

LEASE_TTL_S = 3.0


def sub(source: str, params: dict[str, Any]) -> DemandedSubscription:
    return DemandedSubscription(sid=compute_sid(source, params), params=params)


@dataclass
class Received:
    batch: SampleBatch
    app_id: str | None
    headers: dict[str, Any]
    at: float


@dataclass
class Bus:
    """One AMQP connection of the test: sends demand, collects samples and announcements."""

    url: str
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    channel: aio_pika.abc.AbstractChannel | None = None
    batches: list[Received] = field(default_factory=list)
    announcements: list[SourceAnnouncement] = field(default_factory=list)
    _demands: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def open(self) -> None:
        self.connection = await aio_pika.connect_robust(self.url)
        self.channel = await self.connection.channel()
        self.samples_ex = await self.channel.declare_exchange(SAMPLES.name, "topic", durable=True)
        self.control_ex = await self.channel.declare_exchange(CONTROL.name, "topic", durable=True)
        q = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await q.bind(self.samples_ex, routing_key="#")
        await q.consume(self._on_sample, no_ack=True)
        a = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await a.bind(self.control_ex, routing_key="source.#")
        await a.consume(self._on_announcement, no_ack=True)

    async def _on_sample(self, message: AbstractIncomingMessage) -> None:
        batch = SampleBatch.model_validate_json(message.body)
        assert message.routing_key == f"{batch.source}.{batch.sid}"
        self.batches.append(Received(batch, message.app_id, dict(message.headers or {}), time.monotonic()))

    async def _on_announcement(self, message: AbstractIncomingMessage) -> None:
        self.announcements.append(SourceAnnouncement.model_validate_json(message.body))

    async def send_demand(self, source: str, subs: list[DemandedSubscription], ttl_s: float = 2.0) -> None:
        assert self.channel is not None
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

    async def close(self) -> None:
        for source in list(self._demands):
            self.stop_demand(source)
        if self.connection is not None:
            await self.connection.close()

    # -- views of what arrived --------------------------------------------------------------------------------

    def by_sid(self, since: float = 0.0) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = defaultdict(list)
        for r in self.batches:
            if r.at >= since:
                out[r.batch.sid].append(r)
        return out

    def values(self, sid: str) -> list[tuple[str, Any]]:
        from tributary_common.timeutil import format_time

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
async def bus(url: str) -> AsyncIterator[Bus]:
    b = Bus(url)
    await b.open()
    try:
        yield b
    finally:
        await b.close()


async def eventually(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.1
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def make_settings(amqp_url: str, namespace: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "cache_namespace": namespace,
        "lease_ttl_s": LEASE_TTL_S,
        "release_grace_s": 1.0,
        "reconcile_interval_s": 0.25,
        "batch_max_delay_s": 0.1,
        "backoff_min_s": 0.3,
        "backoff_max_s": 3.0,
        "announce_interval_s": 1.0,
        "shutdown_grace_seconds": 5.0,
        **overrides,
    }
    return IngestSettings(**values)


@contextlib.asynccontextmanager
async def engine(
    settings: IngestSettings, connectors: dict[str, type[Connector[Any]]], **kw: Any
) -> AsyncIterator[Engine]:
    e = Engine(settings, connectors, **kw)
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


def ingest_process(
    tmp_path: Path, amqp_url: str, namespace: str, name: str, extra_env: dict[str, str] | None = None
) -> ServiceProcess:
    port = platform.free_port()
    env = {
        "TRIBUTARY_AMQP_URL": amqp_url,
        "TRIBUTARY_CACHE_NAMESPACE": namespace,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_INSTANCE_ID": name,
        "TRIBUTARY_LEASE_TTL_S": str(LEASE_TTL_S),
        "TRIBUTARY_RELEASE_GRACE_S": "1.5",
        "TRIBUTARY_RECONCILE_INTERVAL_S": "0.25",
        "TRIBUTARY_BATCH_MAX_DELAY_S": "0.1",
        "TRIBUTARY_ANNOUNCE_INTERVAL_S": "1",
        "TRIBUTARY_SHUTDOWN_GRACE_SECONDS": "5",
        "TRIBUTARY_ENABLED_SOURCES": "simulator",
        **(extra_env or {}),
    }
    return ServiceProcess("tributary_ingest", ["serve"], env, tmp_path / f"{name}.log", port)


async def http_get(proc: ServiceProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"http://127.0.0.1:{proc.port}{path}")


async def status(proc: ServiceProcess) -> dict[str, Any]:
    return dict((await http_get(proc, "/status")).json())
