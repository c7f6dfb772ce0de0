"""The hub's event publisher (the publishing hot path) and the topology every hub process declares, over the
shared AMQP layer (`tributary_common.amqp`): broker failures become the domain's `Unavailable`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection

from tributary_common.amqp import (
    DURABLE_QUEUES,
    EVENTS,
    HUB_RECORDER_EVENTS,
    HUB_RECORDER_SAMPLES,
    HUB_RECORDER_TOPOLOGY,
    SAMPLES,
    ConfirmedPublisher,
    PublishFailed,
    connect_robust,
    declare,
    ensure_queues,
)
from tributary_common.events import PUBLISHER_HEADER, CloudEvent

from .errors import Unavailable

# The recorders' queues by name (deployments and dashboards know them so).
EVENTS_RECORDER_QUEUE = HUB_RECORDER_EVENTS.name
SAMPLES_RECORDER_QUEUE = HUB_RECORDER_SAMPLES.name
CONTENT_TYPE = "application/cloudevents+json"


async def declare_topology(channel: AbstractChannel) -> None:
    """The events and samples exchanges, the recorders' durable queues bound to them with `#`, and the
    dead-letter exchange with the durable queue that keeps what lands there.

    Declared by every hub process at start-up, recorders enabled or not, so that nothing confirmed to a
    publisher is dropped for want of a queue while no recorder runs.
    """
    await declare(channel, EVENTS, SAMPLES, *HUB_RECORDER_TOPOLOGY)


async def upgrade_topology(connection: AbstractConnection) -> None:
    """Every durable queue as `amqp/topology` says (quorum), classic ones of an older Tributary moved in place
    (`amqp/upgrade`); run at start before anything declares or consumes them."""
    await ensure_queues(connection, *DURABLE_QUEUES)


def _not_open() -> Unavailable:
    return Unavailable("the broker connection is not open", code="broker_unavailable")


class EventPublisher:
    """Publishes envelopes persistent with publisher confirms; at most `window` unconfirmed at once."""

    def __init__(self, url: str, *, window: int, timeout_s: float) -> None:
        self.url = url
        self.window = window
        self.timeout_s = timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._publisher = ConfirmedPublisher(window=window, timeout_s=timeout_s)
        self._started = False

    async def start(self) -> None:
        self._connection = await connect_robust(self.url, name="hub-publisher")
        await upgrade_topology(self._connection)
        await self._publisher.start(self._connection, EVENTS, SAMPLES)
        await declare_topology(self._publisher.channel)
        self._started = True

    async def stop(self) -> None:
        self._started = False
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def publish(self, event: CloudEvent, body: bytes | None = None) -> None:
        """`body` is the encoded envelope when the caller has it already (it checked its size)."""
        if not self._started:
            raise _not_open()
        headers: dict[str, Any] = {} if event.traceparent is None else {"traceparent": event.traceparent}
        if event.publisher is not None:
            headers[PUBLISHER_HEADER] = event.publisher
        try:
            await self._publisher.publish(
                EVENTS,
                event.routing_key,
                body if body is not None else event.model_dump_json().encode(),
                content_type=CONTENT_TYPE,
                message_id=event.id,
                headers=headers,
            )
        except PublishFailed as exc:
            # A nack (a queue refused it), a timeout or a lost connection: the broker may or may not hold it,
            # so the client retries with the same id and the recorder keeps it once.
            raise Unavailable(
                f"the broker did not confirm event {event.id!r}: {type(exc.cause).__name__}; retry with the same id",
                code="broker_unavailable",
            ) from exc

    async def republish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """A message as it is (a dead letter's replay) to a topic exchange, confirmed; `Unavailable` when not."""
        if not self._started:
            raise _not_open()
        try:
            await self._publisher.publish_message(exchange, routing_key, message)
        except PublishFailed as exc:
            raise Unavailable(
                f"the broker did not confirm the republished message: {type(exc.cause).__name__}; retry",
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
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Unavailable):
                raise result
        return [result if isinstance(result, Unavailable) else None for result in results]
