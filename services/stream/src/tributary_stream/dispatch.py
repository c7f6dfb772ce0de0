"""Dispatch of broker messages to the subscriptions they reach.

Messages are dispatched synchronously (no awaits) so that order is kept and nothing blocks the consumer: each
message is decoded and encoded once, then offered to every interested subscription. A message the stream cannot
use raises `Unusable` (the broker link sends it to the dead letters).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from tributary_common.amqp import CONTROL, EVENTS, SAMPLES, is_unitop_key
from tributary_common.control import UnitopChange
from tributary_common.deadletters import (
    NOT_A_CLOUDEVENT,
    NOT_A_CONTROL_MESSAGE,
    NOT_A_SAMPLE_BATCH,
    TOO_LARGE,
    UNDECODABLE,
    UNEXPECTED_ERROR,
)
from tributary_common.ratelog import LogThrottle
from tributary_common.telemetry import extract_context, messaging_attributes
from tributary_common.timeutil import parse_time

from .dead_letters import Unusable
from .metrics import StreamMetrics
from .routing import Routes
from .settings import StreamSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tributary_stream")

# CloudEvents attributes every envelope has as non-empty strings (the stream reads `id` and `time`).
ENVELOPE_STRINGS = ("specversion", "id", "source", "type", "time")
DATA_EXCHANGES = (EVENTS.name, SAMPLES.name)


class Dispatcher:
    def __init__(
        self,
        settings: StreamSettings,
        routes: Routes,
        metrics: StreamMetrics,
        on_unitop_change: Callable[[UnitopChange], None],
        *,
        tracing: bool = False,
    ) -> None:
        self.max_event_bytes = settings.max_event_bytes
        self.routes = routes
        self.metrics = metrics
        self.on_unitop_change = on_unitop_change
        self.tracing = tracing
        self._unexpected = LogThrottle(settings.dead_letter_log_interval_s)

    def on_message(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        self.metrics.messages_in.labels(exchange).inc()
        try:
            if exchange in DATA_EXCHANGES and self.tracing and "traceparent" in headers:
                # Continue the publisher's trace (HTTP publish or connector read) through the websocket send.
                with tracer.start_as_current_span(
                    "stream.fanout",
                    context=extract_context(headers),
                    kind=SpanKind.CONSUMER,
                    attributes=messaging_attributes("process", exchange, routing_key),
                ):
                    self._dispatch(exchange, routing_key, body)
            elif exchange in DATA_EXCHANGES:
                self._dispatch(exchange, routing_key, body)
            elif exchange == CONTROL.name and is_unitop_key(routing_key):
                self.on_unitop_change(_unitop_change(body))
        except Unusable:
            raise  # the broker link sends it to the dead letters
        except Exception as exc:
            # A message that passed the checks below and still failed: a bug. It goes to the dead letters too
            # (nothing may take the consumer down); the traceback is logged, at most once per interval per kind.
            if self._unexpected.hit(type(exc).__name__) is not None:
                log.exception("unexpected failure on a message from %s %r", exchange, routing_key[:200])
            raise Unusable(UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}") from exc

    def _dispatch(self, exchange: str, routing_key: str, body: bytes) -> None:
        if exchange == EVENTS.name:
            self._on_event(routing_key, body)
        else:
            self._on_samples(body)

    def _on_event(self, routing_key: str, body: bytes) -> None:
        patterns = self.routes.matching(routing_key)
        if not patterns:
            return
        if len(body) > self.max_event_bytes:
            raise Unusable(TOO_LARGE, f"{len(body)} bytes, more than TRIBUTARY_MAX_EVENT_BYTES")
        envelope = _decode(body)
        if not isinstance(envelope, dict):
            raise Unusable(NOT_A_CLOUDEVENT, "not a JSON object")
        for attribute in ENVELOPE_STRINGS:
            value = envelope.get(attribute)
            if not isinstance(value, str) or not value:
                raise Unusable(NOT_A_CLOUDEVENT, f"{attribute!r} is not a non-empty string")
        eid, t, topic = envelope["id"], envelope["time"], envelope["type"]
        try:
            parse_time(t)  # the seam compares positions by time
        except ValueError as exc:
            raise Unusable(NOT_A_CLOUDEVENT, f"'time': {exc}") from None
        envelope_json = body.decode()
        for p in patterns:
            # No per-key ACL check here: the pattern was checked to be covered by the token at subscribe.
            for sub in self.routes.patterns.get(p, ()):
                sub.on_live(eid, t, envelope_json, topic)

    def _on_samples(self, body: bytes) -> None:
        batch = _decode(body)
        if not isinstance(batch, dict) or not isinstance(batch.get("sid"), str):
            raise Unusable(NOT_A_SAMPLE_BATCH, "no 'sid' string")
        sid = batch["sid"]
        subs = self.routes.by_sid.get(sid)
        if not subs:
            return
        samples = batch.get("samples")
        if not isinstance(samples, list) or not samples:
            raise Unusable(NOT_A_SAMPLE_BATCH, "'samples' is not a non-empty list")
        if not all(isinstance(sample, dict) and isinstance(sample.get("t"), str) for sample in samples):
            raise Unusable(NOT_A_SAMPLE_BATCH, "a sample without a 't' string")
        try:
            first_t, last_t = parse_time(samples[0]["t"]), parse_time(samples[-1]["t"])
        except ValueError as exc:
            raise Unusable(NOT_A_SAMPLE_BATCH, f"'t': {exc}") from None
        encoded = orjson.dumps(samples).decode()
        for sub in list(subs):
            sub.on_live(sid, samples, first_t, last_t, encoded)


def _unitop_change(body: bytes) -> UnitopChange:
    try:
        return UnitopChange.model_validate_json(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        reason = UNDECODABLE if error["type"] == "json_invalid" else NOT_A_CONTROL_MESSAGE
        raise Unusable(reason, f"{'/'.join(map(str, error['loc']))}: {error['msg']}") from None


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unusable(UNDECODABLE, f"not JSON: {exc}") from None
