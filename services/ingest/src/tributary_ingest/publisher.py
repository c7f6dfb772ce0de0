"""Publishing sample batches on `tributary.samples`, one span per batch, its traceparent in the AMQP headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from faststream.rabbit import RabbitBroker
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from tributary_common.exchanges import SAMPLES
from tributary_common.telemetry import inject_headers, messaging_attributes
from tributary_common.timeutil import format_time

from .pipeline import Row


class PublishRefused(RuntimeError):
    pass


def _utc_text(t: datetime) -> str:
    """`format_time` without strftime (the hot path of publishing): always UTC, always six fractional digits."""
    if t.tzinfo is not UTC:
        return format_time(t)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"


def encode_batch(source: str, sid: str, rows: list[Row]) -> bytes:
    """The `SampleBatch` JSON body (`q` only when set), built without a model per sample for speed."""
    samples: list[dict[str, Any]] = []
    for t, v, q in rows:
        s: dict[str, Any] = {"t": _utc_text(t), "v": v}
        if q is not None:
            s["q"] = q
        samples.append(s)
    return orjson.dumps({"sid": sid, "source": source, "samples": samples})


class SamplePublisher:
    def __init__(self, broker: RabbitBroker, tracer: trace.Tracer, *, persistent: bool, timeout_s: float) -> None:
        self._broker = broker
        self._tracer = tracer
        self._persistent = persistent
        self._timeout = timeout_s

    async def publish(self, source: str, sid: str, rows: list[Row]) -> None:
        routing_key = f"{source}.{sid}"
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
            confirm = await self._broker.publish(
                encode_batch(source, sid, rows),
                exchange=SAMPLES,
                routing_key=routing_key,
                headers=inject_headers(),
                content_type="application/json",
                persist=self._persistent,
                mandatory=False,
                timeout=self._timeout,
            )
        if confirm is not None and type(confirm).__name__ == "Nack":
            raise PublishRefused(f"broker refused the batch for {routing_key}")
