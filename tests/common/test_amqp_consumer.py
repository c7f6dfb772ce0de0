"""The consumer lifecycle on the real broker: declare → bind/unbind at run time → consume (callback or inbox,
prefetch, ack or not) → cancel (idempotent) → close; `alive` and `closed` for readiness and supervisors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from tests.support import platform
from tests.support.polling import eventually
from tributary_common.amqp import Consumer, ExchangeSpec, QueueSpec, connect, declare_exchange

X = ExchangeSpec("tributary.events")
OTHER = ExchangeSpec("tributary.control")


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await connect(amqp_url, name="test-consumer")
    yield conn
    await conn.close()


async def _publish(connection: AbstractConnection, exchange: ExchangeSpec, key: str, body: bytes) -> None:
    channel = await connection.channel(publisher_confirms=True)
    target = await declare_exchange(channel, exchange)
    await target.publish(aio_pika.Message(body), routing_key=key)
    await channel.close()


def _binding_keys(vhost: str, exchange: str, queue: str) -> set[str]:
    return {str(b["routing_key"]) for b in platform.bindings(vhost, exchange) if b["destination"] == queue}


async def test_declare_bind_unbind_at_run_time(vhost: str, connection: AbstractConnection) -> None:
    got: list[tuple[str, bytes]] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        got.append((message.routing_key or "", message.body))

    spec = QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True, bindings=((X, "a.#"),))
    consumer = Consumer(spec, on_message, no_ack=True)
    await consumer.start(connection)
    assert consumer.bindings == {(X.name, "a.#")}
    await consumer.bind(OTHER, "unitop.u1")
    await consumer.bind(OTHER, "unitop.u1")  # binding twice is one binding
    assert _binding_keys(vhost, OTHER.name, spec.name) == {"unitop.u1"}
    await _publish(connection, X, "a.b", b"1")
    await _publish(connection, OTHER, "unitop.u1", b"2")
    await eventually(lambda: len(got) == 2, 5.0, interval=0.02)
    assert got == [("a.b", b"1"), ("unitop.u1", b"2")]

    await consumer.unbind(OTHER, "unitop.u1")
    await consumer.unbind(OTHER, "unitop.u1")  # unbinding what is not bound is harmless
    assert consumer.bindings == {(X.name, "a.#")}
    assert _binding_keys(vhost, OTHER.name, spec.name) == set()
    await _publish(connection, OTHER, "unitop.u1", b"3")
    await _publish(connection, X, "a.c", b"4")
    await eventually(lambda: len(got) == 3, 5.0, interval=0.02)
    assert got[2] == ("a.c", b"4")
    await consumer.close()


async def test_callback_deliveries_in_order(connection: AbstractConnection) -> None:
    got: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        await asyncio.sleep(0)  # awaited one by one: order holds across awaits
        got.append(message.body)

    spec = QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True, bindings=((X, "#"),))
    consumer = Consumer(spec, on_message, prefetch=50, no_ack=True)
    await consumer.start(connection)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await declare_exchange(channel, X)
    for i in range(200):
        await exchange.publish(aio_pika.Message(str(i).encode()), routing_key="k")
    await eventually(lambda: len(got) == 200, 5.0, interval=0.02)
    assert got == [str(i).encode() for i in range(200)]
    await consumer.close()


async def test_inbox_with_prefetch_and_manual_ack(connection: AbstractConnection) -> None:
    spec = QueueSpec(platform.unique("q"), durable=True, bindings=((X, "#"),))
    consumer = Consumer(spec, prefetch=3)
    await consumer.start(connection)
    for i in range(10):
        await _publish(connection, X, "k", str(i).encode())
    await eventually(lambda: consumer.inbox.qsize() == 3, 5.0, interval=0.02)
    await asyncio.sleep(0.2)
    assert consumer.inbox.qsize() == 3  # no more than the prefetch while nothing is acked
    first = await consumer.inbox.get()
    assert first.body == b"0"
    await first.ack()
    await eventually(lambda: consumer.inbox.qsize() == 3, 5.0, interval=0.02)  # one acked, one more delivered
    # Closing returns the unacked ones to the queue.
    await consumer.close()
    probe = await connection.channel()
    ready = await probe.declare_queue(spec.name, passive=True)
    assert ready.declaration_result.message_count == 9
    await probe.close()
    again = Consumer(spec, prefetch=1)
    await again.start(connection)
    assert (await asyncio.wait_for(again.inbox.get(), 5)).body == b"1"
    await again.close()


async def test_cancel_and_close_are_idempotent(connection: AbstractConnection) -> None:
    got: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        got.append(message.body)

    never_started = Consumer(QueueSpec("unused"))
    await never_started.cancel()
    await never_started.close()
    assert not await never_started.alive()

    spec = QueueSpec(platform.unique("q"), bindings=((X, "#"),), auto_delete=False)
    consumer = Consumer(spec, on_message, no_ack=True)
    await consumer.start(connection)
    assert await consumer.alive()
    await consumer.cancel()
    await consumer.cancel()
    assert consumer.consumer_tag is None
    assert not await consumer.alive()
    await _publish(connection, X, "k", b"after cancel")
    await asyncio.sleep(0.3)
    assert got == []  # cancelled: nothing delivered, the queue keeps it
    await consumer.consume()  # deliveries resume on the same channel
    await eventually(lambda: got == [b"after cancel"], 5.0, interval=0.02)
    await consumer.close()
    await consumer.close()
    await consumer.cancel()
    assert not await consumer.alive()
    with pytest.raises(RuntimeError):
        consumer.queue  # noqa: B018 - closed: no queue to use


async def test_alive_turns_false_when_the_queue_is_deleted(connection: AbstractConnection) -> None:
    spec = QueueSpec(platform.unique("q"), bindings=((X, "#"),))
    consumer = Consumer(spec, prefetch=10)
    await consumer.start(connection)
    assert await consumer.alive()
    channel = await connection.channel()
    await channel.queue_delete(spec.name)
    await eventually(lambda: _not(consumer.alive()), 5.0, interval=0.02)
    await consumer.close()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def test_closed_returns_when_the_connection_goes(amqp_url: str) -> None:
    conn = await connect(amqp_url, name="test-closed", robust=False)
    consumer = Consumer(QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True), no_ack=True)
    await consumer.start(conn)
    waiter = asyncio.create_task(consumer.closed())
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await conn.close()
    await asyncio.wait_for(waiter, 5)
    await consumer.cancel()  # on a closed channel: nothing to do, no error
    await consumer.close()


async def test_start_again_on_a_new_connection_with_the_wanted_bindings(vhost: str, amqp_url: str) -> None:
    """What the stream does after a lost plain connection: a new queue, every wanted key bound before delivery."""
    got: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        got.append(message.body)

    spec = QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True)
    consumer = Consumer(spec, on_message, no_ack=True, prefetch=100)
    first = await connect(amqp_url, name="test-first", robust=False)
    await consumer.start(first, bindings=[(X, "a"), ("tributary.control", "unitop.u")])
    assert consumer.bindings == {(X.name, "a"), (OTHER.name, "unitop.u")}
    await first.close()
    await consumer.closed()
    second = await connect(amqp_url, name="test-second", robust=False)
    try:
        await consumer.start(second, bindings=sorted(consumer.bindings))
        assert consumer.consumer_tag is not None and await consumer.alive()
        assert _binding_keys(vhost, OTHER.name, spec.name) == {"unitop.u"}
        await _publish(second, X, "a", b"again")
        await eventually(lambda: got == [b"again"], 5.0, interval=0.02)
        await consumer.unbind("tributary.events", "a")
        assert consumer.bindings == {(OTHER.name, "unitop.u")}
    finally:
        await consumer.close()
        await second.close()
