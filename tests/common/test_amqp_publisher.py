"""The confirmed publisher on the real broker: a bounded window of publishes in flight, every one confirmed and
delivered in order; persistent messages with trace headers; a nack, or a closed connection, is `PublishFailed`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractConnection

from tests.support import platform
from tests.support.polling import eventually
from tributary_common.amqp import ConfirmedPublisher, Consumer, ExchangeSpec, PublishFailed, QueueSpec, connect
from tributary_common.amqp import publisher as publisher_module

X = ExchangeSpec("tributary.events")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await connect(amqp_url, name="test-publisher")
    yield conn
    await conn.close()


async def _collect(consumer: Consumer, n: int, timeout: float = 10.0) -> list[aio_pika.abc.AbstractIncomingMessage]:
    async with asyncio.timeout(timeout):
        return [await consumer.inbox.get() for _ in range(n)]


async def test_window_bounds_the_publishes_in_flight_and_all_arrive_in_order(connection: AbstractConnection) -> None:
    queue = Consumer(QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True, bindings=((X, "#"),)))
    await queue.start(connection)
    publisher = ConfirmedPublisher(window=8, timeout_s=10.0)
    await publisher.start(connection, X)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, publisher.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    n = 500
    outcome = await publisher.publish_many([(X, f"k.{i}", str(i).encode()) for i in range(n)])
    watcher.cancel()
    assert outcome == [None] * n
    assert 1 < peak <= 8
    assert publisher.in_flight == 0
    got = await _collect(queue, n)
    assert [m.body for m in got] == [str(i).encode() for i in range(n)]
    assert [m.routing_key for m in got] == [f"k.{i}" for i in range(n)]
    await publisher.close()
    await publisher.close()
    await queue.close()


async def test_message_properties_and_headers(connection: AbstractConnection) -> None:
    queue = Consumer(QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True, bindings=((X, "#"),)))
    await queue.start(connection)
    publisher = ConfirmedPublisher(window=4, timeout_s=5.0)
    await publisher.start(connection)  # the exchange is declared on first use
    await publisher.publish(
        X,
        "a.b",
        b"{}",
        content_type="application/cloudevents+json",
        message_id="e1",
        headers={"traceparent": TRACEPARENT, "tributary-publisher": "user:x"},
    )
    await publisher.publish(X, "a.c", b"{}", persistent=False, trace=False, correlation_id="c1")
    first, second = await _collect(queue, 2)
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (first.content_type, first.message_id) == ("application/cloudevents+json", "e1")
    assert first.headers == {"traceparent": TRACEPARENT, "tributary-publisher": "user:x"}
    assert second.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT
    assert (second.content_type, second.correlation_id, second.headers) == ("application/json", "c1", {})
    await publisher.close()
    await queue.close()


async def test_default_exchange_and_publish_message(connection: AbstractConnection) -> None:
    """Replies to an RPC go to the default exchange (""), routed by queue name; a replayed message goes as is."""
    queue = Consumer(QueueSpec(platform.unique("reply"), exclusive=True, auto_delete=True))
    await queue.start(connection)
    publisher = ConfirmedPublisher(window=2, timeout_s=5.0)
    await publisher.start(connection)
    await publisher.publish("", queue.name, b"reply", correlation_id="r1")
    await publisher.publish_message("", queue.name, aio_pika.Message(b"as is", headers={"x-death-reason": "r"}))
    reply, replayed = await _collect(queue, 2)
    assert (reply.body, reply.correlation_id) == (b"reply", "r1")
    assert (replayed.body, replayed.headers) == (b"as is", {"x-death-reason": "r"})
    await publisher.close()
    await queue.close()


async def test_a_nack_is_publish_failed_and_the_rest_still_confirmed(connection: AbstractConnection) -> None:
    # A full queue that rejects publishes: the broker nacks what it cannot take.
    full = QueueSpec(
        platform.unique("full"),
        exclusive=True,
        auto_delete=True,
        arguments={"x-max-length": 2, "x-overflow": "reject-publish"},
        bindings=((X, "full"),),
    )
    queue = Consumer(full)
    await queue.start(connection, consume=False)
    publisher = ConfirmedPublisher(window=4, timeout_s=5.0)
    await publisher.start(connection, X)
    outcome = await publisher.publish_many([(X, "full", b"1"), (X, "full", b"2"), (X, "full", b"3")])
    assert outcome[:2] == [None, None]
    failed = outcome[2]
    assert isinstance(failed, PublishFailed)
    assert (failed.exchange, failed.routing_key) == (X.name, "full")
    assert isinstance(failed.cause, aio_pika.exceptions.DeliveryError)
    await publisher.publish(X, "elsewhere", b"unroutable is confirmed, not returned")
    await publisher.close()
    await queue.close()


async def test_a_closed_connection_is_publish_failed(amqp_url: str) -> None:
    conn = await connect(amqp_url, name="test-publisher-closed", robust=False)
    publisher = ConfirmedPublisher(window=2, timeout_s=2.0)
    await publisher.start(conn, X)
    assert publisher.ready
    await conn.close()
    assert not publisher.ready
    with pytest.raises(PublishFailed):
        await publisher.publish(X, "k", b"x")
    await publisher.close()


def test_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        ConfirmedPublisher(window=0, timeout_s=1.0)


async def test_a_nack_replaces_the_channel_and_later_publishes_go_through(
    connection: AbstractConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ 3.10 nacks every later publish of a channel that met a quorum queue without a leader (see
    tests/cluster): after a nack the publisher takes a new channel, and closes the old one once its publishes in
    flight had time to get their confirms. Here a full queue makes the nack."""
    monkeypatch.setattr(publisher_module, "RETIRE_AFTER_S", 0.2)
    name = platform.unique("full")
    channel = await connection.channel()
    full = await channel.declare_queue(
        name, exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )
    publisher = ConfirmedPublisher(window=4, timeout_s=5.0)
    await publisher.start(connection)
    await publisher.publish("", name, b"1")
    first = publisher.channel
    with pytest.raises(PublishFailed):
        await publisher.publish("", name, b"2")
    assert publisher.channel is not first and publisher.ready
    await eventually(lambda: first.is_closed, 5, "the replaced channel closed")
    await full.purge()
    await publisher.publish("", name, b"3")  # on the new channel
    assert (await full.get(no_ack=True)).body == b"3"
    await publisher.close()
    await channel.close()


async def test_large_bodies_and_publishes_after_a_failure_wait_for_their_write(
    connection: AbstractConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small bodies are handed to the writer without waiting for the write; what may lie unsent stays bounded: a
    body over WRITE_WAIT_BYTES waits, and after a failed publish every publish waits until one is confirmed."""
    waits: list[bool] = []
    publish = aiormq.Channel.basic_publish

    async def spy(self: aiormq.Channel, body: bytes, **kwargs: Any) -> Any:
        waits.append(kwargs["wait"])
        return await publish(self, body, **kwargs)

    monkeypatch.setattr(aiormq.Channel, "basic_publish", spy)
    name = platform.unique("full")
    channel = await connection.channel()
    await channel.declare_queue(name, exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publisher = ConfirmedPublisher(window=4, timeout_s=5.0)
    await publisher.start(connection)
    await publisher.publish("", "nowhere", b"small")
    await publisher.publish("", "nowhere", b"x" * (publisher_module.WRITE_WAIT_BYTES + 1))
    await publisher.publish("", name, b"1")
    with pytest.raises(PublishFailed):
        await publisher.publish("", name, b"2")  # nacked: the queue is full
    await publisher.publish("", "nowhere", b"after the failure")
    await publisher.publish("", "nowhere", b"after a confirm")
    assert waits == [False, True, False, False, True, False]
    await publisher.close()
    await channel.close()
