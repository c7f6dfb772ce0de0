"""The recorders: durable queue -> batched `insert_many(ordered=False)` -> ack.

A batch is written when it holds `batch_size` messages or its first message waited `max_delay_ms`. Messages
are acknowledged only after their batch is written; duplicates (a redelivery, or a client resending an id on the
same topic: events are keyed by `(topic, id)`, samples by `(sid, t)`) are the unique `_id` refusing the insert,
which counts as written. While the database is unreachable the same batch is retried with backoff and nothing
is acked, so the queue holds everything.

No message ends a recorder. One that can never be written (undecodable, not a valid envelope, over
`max_event_bytes`, or refused by the database for what it is) goes to the dead-letter exchange with its reason,
confirmed before the original is acked, and the recorder carries on; it is logged at most once per reason per
`dead_letter_log_interval_s` with a count. The dead letters themselves are recorded by a recorder of
`tributary.deadletters` into the `deadletters` collection (see deadletters.py); what that one cannot write is
logged and counted (sending it to tributary.dead again would loop). `alive` turns false if the consume loop or
the broker's consumer is gone anyway, which turns /readyz red.
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
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from bson.errors import InvalidDocument
from opentelemetry import trace
from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from tributary_common import deadletters
from tributary_common.deadletters import DeadLetters
from tributary_common.events import PUBLISHER_HEADER, PUBLISHER_MAX, CloudEvent
from tributary_common.exchanges import DEADLETTERS_QUEUE
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import SampleBatch
from tributary_common.telemetry import extract_context, tracer
from tributary_common.timeutil import format_time, utcnow

from .amqp import EVENTS_RECORDER_QUEUE, SAMPLES_RECORDER_QUEUE, declare_topology
from .deadletters import letter_document
from .documents import TopicDoc, event_key
from .errors import dotted

log = logging.getLogger(__name__)
_tracer = tracer("tributary_hub.recorder")

RECORDED = Counter("tributary_hub_recorded_total", "Documents written (duplicates included)", ["kind"])
DUPLICATES = Counter(
    "tributary_hub_recorder_duplicates_total", "Documents already present (a redelivery or a resent id)", ["kind"]
)
DEAD_LETTERED = Counter(
    "tributary_hub_recorder_dead_lettered_total",
    "Messages that can never be stored, sent to tributary.dead",
    ["kind", "reason"],
)
DEAD_LETTERS_RECORDED = Counter(
    "tributary_hub_deadletters_total",
    "Dead letters recorded by the hub (from every consumer), by reason",
    ["reason"],
)
DEAD_LETTERS_LOST = Counter(
    "tributary_hub_deadletters_unrecordable_total", "Dead letters the database refused (logged, then dropped)"
)
RETRIES = Counter("tributary_hub_recorder_retries_total", "Failed writes retried", ["kind"])
BATCH = Histogram(
    "tributary_hub_recorder_batch_size", "Messages per write", ["kind"], buckets=(1, 10, 50, 100, 500, 1000, 5000)
)

DUPLICATE_KEY = 11000
# Server errors that refuse a document for what it is (retrying cannot help), unlike the database being away:
# BadValue, TypeMismatch, DollarPrefixedFieldName, DottedFieldName, KeyTooLong, BSONObjectTooLarge.
DOCUMENT_ERRORS = frozenset({2, 14, 52, 57, 17280, 10334})
DETAIL_MAX = 300


class Unrecordable(Exception):
    """A message that can never be written; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


ToDocs = Callable[[AbstractIncomingMessage], Awaitable[list[dict[str, Any]]]]
Row = tuple[AbstractIncomingMessage, list[dict[str, Any]]]
Refusal = tuple[AbstractIncomingMessage, str, str]


def _document_refusal(exc: BaseException) -> bool:
    """Whether the database refused the documents themselves (isolate and dead-letter) rather than being away."""
    if isinstance(exc, InvalidDocument):  # includes DocumentTooLarge, raised by the driver before sending
        return True
    return isinstance(exc, OperationFailure) and exc.code in DOCUMENT_ERRORS


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
        throttle: LogThrottle | None = None,
        dead_letters: bool = True,
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
        self.throttle = throttle or LogThrottle(60)
        # False for the recorder of dead letters: what it cannot write is logged and dropped, not sent round again.
        self.dead_letters = dead_letters
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._writing = False
        self._batch_done = asyncio.Event()
        self._consumer_tag: str | None = None
        self._channel: AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._dead: DeadLetters | None = None
        self.written = 0

    async def start(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        await declare_topology(channel)
        if self.dead_letters:
            self._dead = DeadLetters(
                await connection.channel(publisher_confirms=True),
                retry_min_s=self.retry_min_s,
                retry_max_s=self.retry_max_s,
            )
            await self._dead.start()
        self._channel = channel
        self._queue = await channel.declare_queue(self.queue_name, durable=True)
        self._consumer_tag = await self._queue.consume(self._inbox.put)
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.kind}")

    async def alive(self) -> bool:
        """The consume loop runs and the broker still delivers to our consumer (it cancels it when the queue
        is deleted, and the channel is closed while the connection is lost)."""
        if self._task is None or self._task.done() or self._channel is None:
            return False
        try:
            underlay = await self._channel.get_underlay_channel()
        except Exception:  # noqa: BLE001 - a closed channel says "not alive", whatever the client raises
            return False
        consumers: dict[str, Any] = getattr(underlay, "consumers", {})
        return not underlay.is_closed and self._consumer_tag in consumers

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
                while True:
                    try:
                        await self._record(batch)
                        break
                    except Exception:
                        # Not a message's fault (those are dead-lettered): keep the batch and try again.
                        log.exception("%s recorder: batch failed; retrying in %.1f s", self.kind, self.retry_max_s)
                        await asyncio.sleep(self.retry_max_s)
                # Acknowledge only now that the batch is stored (or dead-lettered).
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

    async def _record(self, batch: list[AbstractIncomingMessage]) -> None:
        rows: list[Row] = []
        refused: list[Refusal] = []
        for message in batch:
            try:
                rows.append((message, await self.to_docs(message)))
            except Unrecordable as exc:
                refused.append((message, exc.reason, exc.detail))
            except Exception as exc:
                if self.throttle.hit((self.kind, "conversion")) is not None:
                    log.exception("%s recorder: converting a message failed", self.kind)
                refused.append((message, deadletters.UNEXPECTED_ERROR, type(exc).__name__))
        BATCH.labels(self.kind).observe(len(batch))
        if rows:
            ctx = extract_context(batch[0].headers)
            with _tracer.start_as_current_span(
                f"record {self.kind}", context=ctx, kind=trace.SpanKind.CONSUMER
            ) as span:
                span.set_attribute("messaging.batch.message_count", len(batch))
                refused += await self._write(rows)
        # Concurrently (one channel, many confirms in flight): a flood of bad messages is not one round trip each.
        await asyncio.gather(*(self._dead_letter(message, reason, detail) for message, reason, detail in refused))

    async def _write(self, rows: list[Row]) -> list[Refusal]:
        """Write every row, retrying while the database is away; what it refuses for what it is is returned."""
        delay = self.retry_min_s
        while True:
            try:
                return await self._insert(rows)
            except Exception as exc:
                if _document_refusal(exc):
                    if len(rows) == 1:
                        too_large = "too large" in str(exc).lower()
                        reason = deadletters.TOO_LARGE if too_large else deadletters.REFUSED_BY_DATABASE
                        return [(rows[0][0], reason, str(exc)[:DETAIL_MAX])]
                    # One document spoils the whole call: write them one message at a time to find it.
                    return [r for row in rows for r in await self._write([row])]
                if not isinstance(exc, PyMongoError):
                    raise
                RETRIES.labels(self.kind).inc()
                log.warning(
                    "%s recorder: write of %d messages failed (%s); retrying in %.1f s",
                    self.kind,
                    len(rows),
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)

    async def _insert(self, rows: list[Row]) -> list[Refusal]:
        docs = [doc for _, row_docs in rows for doc in row_docs]
        owners = [message for message, row_docs in rows for _ in row_docs]
        if not docs:
            return []
        refused: dict[int, Refusal] = {}
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            duplicates = [e for e in errors if e.get("code") == DUPLICATE_KEY]
            DUPLICATES.labels(self.kind).inc(len(duplicates))
            for e in errors:
                if e.get("code") != DUPLICATE_KEY:
                    # The server refused this document itself: retrying cannot help.
                    owner = owners[e["index"]]
                    refused[id(owner)] = (owner, deadletters.REFUSED_BY_DATABASE, str(e.get("errmsg", ""))[:DETAIL_MAX])
        RECORDED.labels(self.kind).inc(len(docs))
        self.written += len(docs)
        return list(refused.values())

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str, detail: str) -> None:
        """Until the broker confirms it: the original is acked only after."""
        DEAD_LETTERED.labels(self.kind, reason).inc()
        if self._dead is None:
            DEAD_LETTERS_LOST.inc()
            self.throttle.log(
                log,
                logging.ERROR,
                (self.kind, reason),
                "%s recorder: dropping a dead letter it cannot store (%s): %s",
                self.kind,
                reason,
                detail,
            )
            return
        self.throttle.log(
            log,
            logging.ERROR,
            (self.kind, reason),
            "%s recorder: dead-lettered message %s (%s): %s",
            self.kind,
            message.message_id,
            reason,
            detail,
        )
        await self._dead.send_until_confirmed(message, queue=self.queue_name, reason=reason, detail=detail)


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
        # The raw field, so that a topic document that no longer parses cannot stop the recorder.
        raw = await TopicDoc.get_pymongo_collection().find_one({"_id": topic}, {"retention_days": 1})
        value = raw.get("retention_days") if raw is not None else None
        days = float(value) if isinstance(value, int | float) and value > 0 else None
        self._known[topic] = (now, days)
        return days

    async def expire_at(self, topic: str, time_: datetime) -> datetime | None:
        days = await self.days(topic)
        return None if days is None else time_ + timedelta(days=days)


def publisher_header(headers: Any) -> str | None:
    """The `tributary-publisher` header the hub sets; anything else (absent, not text, unbounded) is None."""
    value = headers.get(PUBLISHER_HEADER) if isinstance(headers, dict) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and 0 < len(value) <= PUBLISHER_MAX else None


def event_document(event: CloudEvent, expire_at: datetime | None, publisher: str | None = None) -> dict[str, Any]:
    """`publisher` (who published it, from the AMQP header) is kept beside the envelope; `publisher_exposed`
    says whether subscribers saw it (the envelope carried it): history shows it to others only then."""
    return {
        "_id": event_key(event.type, event.id),
        "eid": event.id,
        "key": event.routing_key,
        "type": event.type,
        "subject": event.subject,
        "time": format_time(event.time),
        "source": event.source,
        "dataschema": event.dataschema,
        "data_json": orjson.dumps(event.data).decode(),
        "traceparent": event.traceparent,
        "publisher": publisher or event.publisher,
        "publisher_exposed": event.publisher is not None,
        "expire_at": expire_at,
    }


def _refusal(exc: ValidationError, what: str) -> Unrecordable:
    """`undecodable` (not JSON) or `not_a_<what>`, with the first problem but not the input (it may be huge)."""
    first = exc.errors()[0]
    reason = deadletters.UNDECODABLE if first["type"] in ("json_invalid", "json_type") else f"not_a_{what}"
    return Unrecordable(reason, dotted(exc, 1)[0])


def events_to_docs(retention: TopicRetention, max_event_bytes: int) -> ToDocs:
    async def convert(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
        # The hub refuses such events at publish; this catches anything that reached the exchange otherwise.
        if len(message.body) > max_event_bytes:
            raise Unrecordable(deadletters.TOO_LARGE, f"{len(message.body)} bytes, over the limit of {max_event_bytes}")
        try:
            event = CloudEvent.model_validate_json(message.body)
        except ValidationError as exc:
            raise _refusal(exc, "cloudevent") from exc
        while True:
            try:
                expire_at = await retention.expire_at(event.type, event.time)
                break
            except PyMongoError as exc:
                log.warning("events recorder: topic lookup failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1)
        return [event_document(event, expire_at, publisher_header(message.headers))]

    return convert


def samples_to_docs(retention_days: float | None) -> ToDocs:
    async def convert(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
        expire_at = utcnow() + timedelta(days=retention_days) if retention_days else None
        try:
            sb = SampleBatch.model_validate_json(message.body)
        except ValidationError as exc:
            raise _refusal(exc, "sample_batch") from exc
        docs = []
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


def letters_to_docs(body_max_bytes: int, throttle: LogThrottle) -> ToDocs:
    async def convert(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
        doc = letter_document(message, body_max_bytes=body_max_bytes)
        DEAD_LETTERS_RECORDED.labels(doc["reason"] if doc["reason"] in deadletters.REASONS else "other").inc()
        throttle.log(
            log,
            logging.WARNING,
            ("deadletter", doc["reason"]),
            "dead letter from %s (%s): %s",
            doc["queue"],
            doc["reason"],
            doc["detail"],
        )
        return [doc]

    return convert


def make_recorders(
    settings: Any, events: AsyncCollection[Any], samples: AsyncCollection[Any], letters: AsyncCollection[Any]
) -> list[Recorder]:
    throttle = LogThrottle(settings.dead_letter_log_interval_s)
    common = dict(
        batch_size=settings.recorder_batch_size,
        max_delay_ms=settings.recorder_batch_max_delay_ms,
        prefetch=settings.recorder_prefetch,
        retry_min_s=settings.recorder_retry_min_s,
        retry_max_s=settings.recorder_retry_max_s,
        throttle=throttle,
    )
    retention = TopicRetention(settings.recorder_topic_cache_s)
    return [
        Recorder(
            "events", EVENTS_RECORDER_QUEUE, events, events_to_docs(retention, settings.max_event_bytes), **common
        ),
        Recorder(
            "samples", SAMPLES_RECORDER_QUEUE, samples, samples_to_docs(settings.samples_retention_days), **common
        ),
        Recorder(
            "deadletters",
            DEADLETTERS_QUEUE,
            letters,
            letters_to_docs(settings.dead_letter_body_max_bytes, throttle),
            dead_letters=False,
            **common,
        ),
    ]
