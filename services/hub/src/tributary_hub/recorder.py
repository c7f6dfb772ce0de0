"""The recorders: durable queue -> batched `insert_many(ordered=False)` -> ack.

A batch is written when it holds `batch_size` messages or its first message waited `max_delay_ms`. Messages
are acknowledged only after their batch is written; duplicates (a redelivery, or a client resending an id) are
the unique `_id` refusing the insert, which counts as written. While the database is unreachable the same batch
is retried with backoff and nothing is acked, so the queue holds everything. A message that can never be
stored (not a valid envelope) is logged, counted and acked, so that it cannot block the queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from tributary_common.events import CloudEvent
from tributary_common.samples import SampleBatch
from tributary_common.telemetry import extract_context, tracer
from tributary_common.timeutil import format_time, utcnow

from .amqp import EVENTS_RECORDER_QUEUE, SAMPLES_RECORDER_QUEUE, declare_topology
from .documents import TopicDoc

log = logging.getLogger(__name__)
_tracer = tracer("tributary_hub.recorder")

RECORDED = Counter("tributary_hub_recorded_total", "Documents written (duplicates included)", ["kind"])
DUPLICATES = Counter("tributary_hub_recorder_duplicates_total", "Documents already present", ["kind"])
POISON = Counter("tributary_hub_recorder_dropped_total", "Messages that can never be stored", ["kind"])
RETRIES = Counter("tributary_hub_recorder_retries_total", "Failed writes retried", ["kind"])
BATCH = Histogram(
    "tributary_hub_recorder_batch_size", "Messages per write", ["kind"], buckets=(1, 10, 50, 100, 500, 1000, 5000)
)

DUPLICATE_KEY = 11000
ToDocs = Callable[[list[AbstractIncomingMessage]], Awaitable[list[dict[str, Any]]]]


class Recorder:
    def __init__(
        self,
        kind: str,
        queue: str,
        collection: AsyncCollection[Any],
        to_docs: ToDocs,
        *,
        batch_size: int,
        max_delay_ms: int,
        prefetch: int,
        retry_min_s: float,
        retry_max_s: float,
    ) -> None:
        self.kind = kind
        self.queue_name = queue
        self.collection = collection
        self.to_docs = to_docs
        self.batch_size = batch_size
        self.max_delay_s = max_delay_ms / 1000
        self.prefetch = prefetch
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._batch_done = asyncio.Event()
        self._consumer_tag: str | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self.written = 0

    async def start(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await declare_topology(channel)
        self._queue = await channel.declare_queue(self.queue_name, durable=True)
        self._consumer_tag = await self._queue.consume(self._inbox.put)
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.kind}")

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop consuming, write what is already here (within `drain_timeout_s`), return the rest to the queue."""
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        deadline = time.monotonic() + drain_timeout_s
        while (self._writing or not self._inbox.empty()) and (remaining := deadline - time.monotonic()) > 0:
            self._batch_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_done.wait(), remaining)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        batch = [await self._inbox.get()]
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self._inbox.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        batch: list[AbstractIncomingMessage] = []
        try:
            while True:
                batch = await self._next_batch()
                self._writing = True
                await self._write_until_done(batch)
                # Acknowledge only now that the batch is stored.
                for message in batch:
                    # A closed channel means the broker redelivers these: harmless, the writes are idempotent.
                    with contextlib.suppress(Exception):
                        await message.ack()
                batch = []
                self._writing = False
                self._batch_done.set()
        except asyncio.CancelledError:
            # Unwritten messages go back to the queue (they would be redelivered anyway on close).
            pending = batch + [self._inbox.get_nowait() for _ in range(self._inbox.qsize())]
            for message in pending:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            raise

    async def _write_until_done(self, batch: list[AbstractIncomingMessage]) -> None:
        docs = await self.to_docs(batch)
        BATCH.labels(self.kind).observe(len(batch))
        delay = self.retry_min_s
        while True:
            try:
                ctx = extract_context(batch[0].headers) if batch else None
                with _tracer.start_as_current_span(
                    f"record {self.kind}", context=ctx, kind=trace.SpanKind.CONSUMER
                ) as span:
                    span.set_attribute("messaging.batch.message_count", len(docs))
                    await self._insert(docs)
                return
            except PyMongoError as exc:
                RETRIES.labels(self.kind).inc()
                log.warning(
                    "%s recorder: write of %d failed (%s); retrying in %.1f s",
                    self.kind,
                    len(docs),
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _insert(self, docs: list[dict[str, Any]]) -> None:
        if not docs:
            return
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            duplicates = [e for e in errors if e.get("code") == DUPLICATE_KEY]
            others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            DUPLICATES.labels(self.kind).inc(len(duplicates))
            if others:
                # The server refused these documents themselves: retrying cannot help.
                POISON.labels(self.kind).inc(len(others))
                log.error("%s recorder: %d documents refused: %s", self.kind, len(others), others[0].get("errmsg"))
        RECORDED.labels(self.kind).inc(len(docs))
        self.written += len(docs)


class TopicRetention:
    """`expire_at` for a topic's events, from its `retention_days` (read at most every `ttl_s`)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[float, float | None]] = {}

    async def days(self, topic: str) -> float | None:
        now = time.monotonic()
        hit = self._known.get(topic)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        doc = await TopicDoc.get(topic)
        days = doc.retention_days if doc is not None else None
        self._known[topic] = (now, days)
        return days

    async def expire_at(self, topic: str, time_: datetime) -> datetime | None:
        days = await self.days(topic)
        return None if days is None else time_ + timedelta(days=days)


def event_document(event: CloudEvent, expire_at: datetime | None) -> dict[str, Any]:
    return {
        "_id": event.id,
        "key": event.routing_key,
        "type": event.type,
        "subject": event.subject,
        "time": format_time(event.time),
        "source": event.source,
        "dataschema": event.dataschema,
        "data_json": orjson.dumps(event.data).decode(),
        "traceparent": event.traceparent,
        "expire_at": expire_at,
    }


def events_to_docs(retention: TopicRetention) -> ToDocs:
    async def convert(batch: list[AbstractIncomingMessage]) -> list[dict[str, Any]]:
        docs = []
        for message in batch:
            try:
                event = CloudEvent.model_validate_json(message.body)
            except ValidationError as exc:
                POISON.labels("events").inc()
                log.error("events recorder: dropping a message that is not a CloudEvent: %s", exc.errors()[0])
                continue
            while True:
                try:
                    expire_at = await retention.expire_at(event.type, event.time)
                    break
                except PyMongoError as exc:
                    log.warning("events recorder: topic lookup failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(1)
            docs.append(event_document(event, expire_at))
        return docs

    return convert


def samples_to_docs(retention_days: float | None) -> ToDocs:
    async def convert(batch: list[AbstractIncomingMessage]) -> list[dict[str, Any]]:
        docs = []
        expire_at = utcnow() + timedelta(days=retention_days) if retention_days else None
        for message in batch:
            try:
                sb = SampleBatch.model_validate_json(message.body)
            except ValidationError as exc:
                POISON.labels("samples").inc()
                log.error("samples recorder: dropping a message that is not a sample batch: %s", exc.errors()[0])
                continue
            for s in sb.samples:
                t = format_time(s.t)
                docs.append(
                    {
                        "_id": f"{sb.sid}|{t}",
                        "sid": sb.sid,
                        "source": sb.source,
                        "t": t,
                        "v": s.v,
                        "q": s.q,
                        "expire_at": expire_at,
                    }
                )
        return docs

    return convert


def make_recorders(settings: Any, events: AsyncCollection[Any], samples: AsyncCollection[Any]) -> list[Recorder]:
    common = dict(
        batch_size=settings.recorder_batch_size,
        max_delay_ms=settings.recorder_batch_max_delay_ms,
        prefetch=settings.recorder_prefetch,
        retry_min_s=settings.recorder_retry_min_s,
        retry_max_s=settings.recorder_retry_max_s,
    )
    retention = TopicRetention(settings.recorder_topic_cache_s)
    return [
        Recorder("events", EVENTS_RECORDER_QUEUE, events, events_to_docs(retention), **common),
        Recorder(
            "samples", SAMPLES_RECORDER_QUEUE, samples, samples_to_docs(settings.samples_retention_days), **common
        ),
    ]
