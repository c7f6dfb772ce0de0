"""The confirmed publisher: one channel with publisher confirms, at most `window` publishes unconfirmed at once.

    publisher = ConfirmedPublisher(window=256, timeout_s=5.0)
    await publisher.start(connection, EVENTS, SAMPLES)       # opens its channel, declares the exchanges
    await publisher.publish(EVENTS, event.routing_key, body, message_id=event.id,
                            content_type="application/cloudevents+json")
    failures = await publisher.publish_many([(EVENTS, key, body) ...])   # None per confirmed publish

Each publish returns once the broker confirmed it, and raises `PublishFailed` on a nack, a timeout or a lost
connection: the broker may or may not hold the message, so the caller retries (with the same id) or reports.
Messages are persistent unless `persistent=False`; the current trace context is carried in the headers
(`traceparent`), unless the caller's headers carry one already. Nothing is published `mandatory` (an unroutable
message is dropped by the broker, as everywhere in Tributary), so no returns are handled.

A nack also replaces the channel (at most once per RENEW_INTERVAL_S): RabbitMQ 3.10 nacks every publish, for
good, of a channel that first published to a quorum queue while the queue's leader was unreachable (a node just
lost; measured with tests/cluster), and a new channel is not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from pamqp.commands import Basic

from ..ratelog import LogThrottle
from ..telemetry import inject_headers
from .topology import ExchangeSpec, declare_exchange

log = logging.getLogger(__name__)

Target = ExchangeSpec | str  # a spec, or the name of a topic exchange ("" for the default exchange)
Outgoing = tuple[Target, str, bytes]  # (exchange, routing key, body)
RENEW_INTERVAL_S = 1.0
PERSISTENT, NOT_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT), int(aio_pika.DeliveryMode.NOT_PERSISTENT)
RETIRE_AFTER_S = 30.0  # a replaced channel's publishes in flight get their confirms meanwhile
# A publish hands its frames to the connection's writer without waiting for them to be written (the confirm says
# more; the wait cost ~15 % of a publish's CPU). So that what lies unsent stays bounded, a body over this waits for
# its write as aio-pika does, and so does every publish after a failure (a broker that stopped reading, under a
# memory alarm, times publishes out while their frames stay buffered) until one is confirmed again.
WRITE_WAIT_BYTES = 64 * 1024


class PublishFailed(Exception):
    """The broker did not confirm: `cause` says why (nack, timeout, lost connection)."""

    def __init__(self, exchange: str, routing_key: str, cause: BaseException) -> None:
        super().__init__(f"publish to {exchange!r} with key {routing_key!r} not confirmed: {type(cause).__name__}")
        self.exchange = exchange
        self.routing_key = routing_key
        self.cause = cause


class ConfirmedPublisher:
    def __init__(self, *, window: int, timeout_s: float, log_interval_s: float = 10.0) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.window = window
        self.timeout_s = timeout_s
        self.in_flight = 0
        self._slots = asyncio.Semaphore(window)
        self._channel: AbstractChannel | None = None
        self._connection: AbstractConnection | None = None
        self._declared: tuple[ExchangeSpec, ...] = ()
        self._renewing = asyncio.Lock()
        self._renewed_at = 0.0
        self._retiring: set[asyncio.Task[None]] = set()
        self._exchanges: dict[str, AbstractExchange] = {}
        self._unsettled = False  # a publish failed and none was confirmed since: wait for writes (WRITE_WAIT_BYTES)
        # A broker outage fails every publish in flight: one line per kind of failure per interval.
        self._throttle = LogThrottle(log_interval_s)

    async def start(self, connection: AbstractConnection, *exchanges: ExchangeSpec) -> None:
        """Open the confirmed channel (on a robust connection it comes back with it) and declare `exchanges`."""
        self._connection, self._declared = connection, exchanges
        await self._open(connection)

    async def _open(self, connection: AbstractConnection) -> None:
        self._channel = await connection.channel(publisher_confirms=True)
        self._exchanges.clear()
        for spec in self._declared:
            self._exchanges[spec.name] = await declare_exchange(self._channel, spec)

    async def _renew(self, nacked_on: AbstractChannel | None) -> None:
        """A new channel in place of the one that nacked (see the module docstring); publishes in flight on the
        old one fail (and are retried by their callers)."""
        async with self._renewing:
            now = time.monotonic()
            if nacked_on is not self._channel or self._connection is None or now - self._renewed_at < RENEW_INTERVAL_S:
                return
            self._renewed_at = now
            old = self._channel
            await self._open(self._connection)
            log.info("publisher channel replaced after a nack")
        if old is not None:
            # Publishes in flight on the old channel still get their own ack or nack: close it only later.
            task = asyncio.create_task(_close_later(old, RETIRE_AFTER_S))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError("publisher not started")
        return self._channel

    @property
    def ready(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def _exchange(self, target: Target) -> AbstractExchange:
        name = target.name if isinstance(target, ExchangeSpec) else target
        exchange = self._exchanges.get(name)
        if exchange is None:
            if name == "":
                exchange = self.channel.default_exchange
            else:
                spec = target if isinstance(target, ExchangeSpec) else ExchangeSpec(name)
                exchange = await declare_exchange(self.channel, spec)
            self._exchanges[name] = exchange
        return exchange

    async def publish(
        self,
        exchange: Target,
        routing_key: str,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        persistent: bool = True,
        trace: bool = True,
    ) -> None:
        carried: dict[str, Any] = dict(headers or {})
        if trace and "traceparent" not in carried:
            carried = inject_headers(carried)
        # The properties aio-pika's `Message` would make (an empty header table included), made directly: the
        # Message and its per-field locking cost about a fifth of a publish's CPU (bench/README, batch publish).
        properties = Basic.Properties(
            content_type=content_type,
            delivery_mode=PERSISTENT if persistent else NOT_PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            headers=carried,
        )
        await self._publish(exchange, routing_key, body, properties)

    async def publish_message(self, exchange: Target, routing_key: str, message: aio_pika.Message) -> None:
        """A message as it is (e.g. a dead letter's replay), confirmed; `PublishFailed` when not."""
        await self._publish(exchange, routing_key, message.body, message.properties)

    async def _publish(self, exchange: Target, routing_key: str, body: bytes, properties: Basic.Properties) -> None:
        name = exchange.name if isinstance(exchange, ExchangeSpec) else exchange
        async with self._slots:
            self.in_flight += 1
            channel = self._channel
            try:
                if channel is None or channel.is_closed:
                    raise aio_pika.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
                await self._exchange(exchange)  # declared once per channel (an undeclared one breaks the channel)
                underlay = await channel.get_underlay_channel()
                if not isinstance(underlay, aiormq.Channel):  # what aio-pika opens; `wait` is its own
                    raise TypeError(f"not an aiormq channel: {type(underlay).__name__}")
                # aiormq's own publish, as aio-pika's `Exchange.publish` calls it, but small bodies do not wait for
                # their write (WRITE_WAIT_BYTES).
                await underlay.basic_publish(
                    body,
                    exchange=name,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=False,
                    timeout=self.timeout_s,
                    wait=self._unsettled or len(body) > WRITE_WAIT_BYTES,
                )
                self._unsettled = False
            except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                self._unsettled = True
                if isinstance(exc, aio_pika.exceptions.DeliveryError):
                    with contextlib.suppress(Exception):  # the broker away: its own recovery reopens the channel
                        await self._renew(channel)
                self._throttle.log(
                    log,
                    logging.WARNING,
                    type(exc).__name__,
                    "publish to %s %r not confirmed: %s",
                    name,
                    routing_key,
                    exc,
                )
                raise PublishFailed(name, routing_key, exc) from exc
            finally:
                self.in_flight -= 1

    async def publish_many(self, messages: Sequence[Outgoing], **options: Any) -> list[PublishFailed | None]:
        """All of them concurrently (bounded by the window), each waited for; per message None when confirmed,
        else why not. `options` are `publish`'s keyword arguments, the same for every message."""
        results = await asyncio.gather(
            *(self.publish(x, key, body, **options) for x, key, body in messages), return_exceptions=True
        )
        outcome: list[PublishFailed | None] = []
        for result in results:
            if isinstance(result, PublishFailed):
                outcome.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                outcome.append(None)
        return outcome


async def _close_later(channel: AbstractChannel, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    if not channel.is_closed:
        with contextlib.suppress(Exception):
            await channel.close()
