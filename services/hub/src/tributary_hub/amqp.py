"""aio-pika adapters: the confirmed event publisher and the topology the recorders consume.

The hot path uses aio-pika directly (one channel with publisher confirms, many publishes in flight) rather
than going through faststream: fewer layers per message. faststream serves RPC and control messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from tributary_common.deadletters import declare_dead_letters
from tributary_common.events import PUBLISHER_HEADER, CloudEvent
from tributary_common.exchanges import EVENTS, SAMPLES
from tributary_common.ratelog import LogThrottle
from tributary_common.telemetry import inject_headers

from .errors import Unavailable

log = logging.getLogger(__name__)

EVENTS_RECORDER_QUEUE = "tributary.hub.recorder.events"
SAMPLES_RECORDER_QUEUE = "tributary.hub.recorder.samples"
CONTENT_TYPE = "application/cloudevents+json"


async def declare_topology(channel: AbstractChannel) -> tuple[AbstractExchange, AbstractExchange]:
    """The events and samples exchanges, and the recorders' durable queues bound to them with `#`; the
    dead-letter exchange and the durable queue that keeps what lands there.

    Declared by every hub process at start-up, recorders enabled or not, so that nothing confirmed to a
    publisher is dropped for want of a queue while no recorder runs.
    """
    events = await channel.declare_exchange(EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True)
    samples = await channel.declare_exchange(SAMPLES.name, aio_pika.ExchangeType.TOPIC, durable=True)
    await declare_dead_letters(channel)
    for queue_name, exchange in ((EVENTS_RECORDER_QUEUE, events), (SAMPLES_RECORDER_QUEUE, samples)):
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange, routing_key="#")
    return events, samples


class EventPublisher:
    """Publishes envelopes persistent with publisher confirms; at most `window` unconfirmed at once."""

    def __init__(self, url: str, *, window: int, timeout_s: float) -> None:
        self.url = url
        self.window = window
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(window)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        # A broker outage fails every publish in flight: one line per kind of failure per interval, not per event.
        self._throttle = LogThrottle(10.0)

    async def start(self) -> None:
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": "hub-publisher"}
        )
        channel = await self._connection.channel(publisher_confirms=True)
        self._exchange, _ = await declare_topology(channel)
        self._channel = channel

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def publish(self, event: CloudEvent, body: bytes | None = None) -> None:
        """`body` is the encoded envelope when the caller has it already (it checked its size)."""
        if self._exchange is None:
            raise Unavailable("the broker connection is not open", code="broker_unavailable")
        headers: dict[str, Any] = inject_headers() if event.traceparent is None else {"traceparent": event.traceparent}
        if event.publisher is not None:
            headers[PUBLISHER_HEADER] = event.publisher
        message = aio_pika.Message(
            body if body is not None else event.model_dump_json().encode(),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event.id,
            headers=headers or None,
        )
        async with self._slots:
            try:
                await self._exchange.publish(
                    message, routing_key=event.routing_key, mandatory=False, timeout=self.timeout_s
                )
            except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                # A nack (a queue refused it), a timeout or a lost connection: the broker may or may not
                # hold it, so the client retries with the same id and the recorder keeps it once.
                self._throttle.log(
                    log, logging.WARNING, type(exc).__name__, "publish of %s not confirmed: %s", event.id, exc
                )
                raise Unavailable(
                    f"the broker did not confirm event {event.id!r}: {type(exc).__name__}; retry with the same id",
                    code="broker_unavailable",
                ) from exc

    async def republish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """A message as it is (a dead letter's replay) to a topic exchange, confirmed; `Unavailable` when not."""
        if self._channel is None:
            raise Unavailable("the broker connection is not open", code="broker_unavailable")
        async with self._slots:
            try:
                target = self._exchanges.get(exchange)
                if target is None:
                    target = await self._channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
                    self._exchanges[exchange] = target
                await target.publish(message, routing_key=routing_key, mandatory=False, timeout=self.timeout_s)
            except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                self._throttle.log(
                    log, logging.WARNING, type(exc).__name__, "republish to %s not confirmed: %s", exchange, exc
                )
                raise Unavailable(
                    f"the broker did not confirm the republished message: {type(exc).__name__}; retry",
                    code="broker_unavailable",
                ) from exc

    async def publish_many(
        self, events: Sequence[CloudEvent], bodies: Sequence[bytes] | None = None
    ) -> list[Unavailable | None]:
        """All of them, concurrently (bounded by the window), each waited for to the end; per event, None when
        the broker confirmed it, else why not."""
        encoded: Sequence[bytes | None] = bodies if bodies is not None else [None] * len(events)
        results = await asyncio.gather(
            *(self.publish(e, b) for e, b in zip(events, encoded, strict=True)), return_exceptions=True
        )
        outcome: list[Unavailable | None] = []
        for result in results:
            if isinstance(result, Unavailable):
                outcome.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcome.append(None)
        return outcome
