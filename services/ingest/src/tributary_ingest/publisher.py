"""Publishing from ingest: sample batches on `tributary.samples` (one span per batch, its traceparent in the AMQP
headers), confirmed by the shared `ConfirmedPublisher`; every message marked with the instance id (`app_id`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tributary_common.amqp import SAMPLES, ConfirmedPublisher, sample_key
from tributary_common.samples import SAMPLE_BATCH_MAX_BYTES
from tributary_common.telemetry import inject_headers, messaging_attributes
from tributary_common.timeutil import format_time

from .pipeline import Row


def _utc_text(t: datetime) -> str:
    """`format_time` without strftime (the hot path of publishing): always UTC, always six fractional digits."""
    if t.tzinfo is not UTC:
        return format_time(t)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def encode_batch(source: str, sid: str, rows: Sequence[Row]) -> bytes:
    """The `SampleBatch` JSON body (`q` only when set), built without a model per sample for speed.

    A plain UTC datetime with a fraction of a second goes to orjson as it is: its `OPT_UTC_Z` text is then exactly
    `_utc_text`'s, formatted in C. orjson leaves out a zero fraction, so whole seconds (and anything that is not a
    plain UTC datetime) are formatted here, keeping the six digits every body has.
    """
    samples: list[dict[str, Any]] = []
    append = samples.append
    for t, v, q in rows:
        ts: datetime | str = t if t.microsecond and type(t) is datetime and t.tzinfo is UTC else _utc_text(t)
        append({"t": ts, "v": v} if q is None else {"t": ts, "v": v, "q": q})
    return orjson.dumps({"sid": sid, "source": source, "samples": samples}, option=orjson.OPT_UTC_Z)


def outgoing(
    body: bytes,
    *,
    app_id: str,
    persistent: bool,
    headers: dict[str, Any] | None = None,
    correlation_id: str | None = None,
) -> aio_pika.Message:
    """A JSON message from this instance: `app_id` tells consumers which instance published a batch (failover
    tests and operators follow a sid across instances by it), so every message carries it."""
    return aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT,
        headers=headers or None,
        correlation_id=correlation_id,
        timestamp=datetime.now(UTC),
        app_id=app_id,
    )


class SamplePublisher:
    """Sample batches through `confirmed`: `publish` returns once the broker confirmed the batch and raises
    `PublishFailed` when it did not (the sid's pipeline sends the batch again)."""

    def __init__(self, confirmed: ConfirmedPublisher, tracer: trace.Tracer, *, app_id: str, persistent: bool) -> None:
        self._confirmed = confirmed
        self._tracer = tracer
        self._app_id = app_id
        self._persistent = persistent

    async def publish(self, source: str, sid: str, rows: Sequence[Row]) -> None:
        body = encode_batch(source, sid, rows)
        if len(body) > SAMPLE_BATCH_MAX_BYTES and len(rows) > 1:
            # Long texts: halves, in order, each confirmed before the next (a retry of the whole batch sends a half
            # again, which the hub's recorder keeps once: samples are keyed by (sid, t)).
            half = len(rows) // 2
            await self.publish(source, sid, rows[:half])
            await self.publish(source, sid, rows[half:])
            return
        routing_key = sample_key(source, sid)
        with self._tracer.start_as_current_span(
            "ingest read batch",
            kind=SpanKind.PRODUCER,
            attributes={
                **messaging_attributes("publish", SAMPLES.name, routing_key),
                "tributary.source": source,
                "tributary.sid": sid,
                "tributary.samples": len(rows),
            },
        ):
            message = outgoing(
                body,
                app_id=self._app_id,
                persistent=self._persistent,
                headers=inject_headers(),
            )
            await self._confirmed.publish_message(SAMPLES, routing_key, message)
