"""The events recorder's pika receiver on the real broker: what it hands over, acks per batch and per channel,
reconnection (a lost connection, the next node of a list, a deleted queue), and stop returning what is unacked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from urllib.parse import quote

import aio_pika
import httpx
import pika
import pytest
from aio_pika.abc import AbstractConnection

from tests.support import platform
from tests.support.polling import eventually
from tributary_common.backoff import Backoff
from tributary_hub.pika_params import node_parameters
from tributary_hub.pika_receiver import (
    GATHER_MAX,
    GATHER_S,
    READ_INTERVAL_S,
    Gathering,
    PikaDelivery,
    PikaReceiver,
)
from tributary_hub.recorders import memory_window

QUEUE = "pika-receiver-test"


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await aio_pika.connect(amqp_url)
    channel = await conn.channel()
    await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.close()
    yield conn
    await conn.close()


async def publish(connection: AbstractConnection, count: int, start: int = 0, **properties: object) -> None:
    channel = await connection.channel(publisher_confirms=True)
    for n in range(start, start + count):
        message = aio_pika.Message(str(n).encode(), **properties)  # type: ignore[arg-type]
        await channel.default_exchange.publish(message, routing_key=QUEUE)
    await channel.close()


async def take(receiver: PikaReceiver, count: int) -> list[PikaDelivery]:
    return [await asyncio.wait_for(receiver.inbox.get(), 10) for _ in range(count)]


def receiver_for(url: str, name: str = "test-pika-receiver", prefetch: int = 100) -> PikaReceiver:
    return PikaReceiver(url, QUEUE, prefetch=prefetch, name=name, backoff=Backoff(0.05, 0.2))


async def ready(connection: AbstractConnection) -> int:
    """Messages waiting in the queue (not those delivered and unacked), as the broker says now."""
    channel = await connection.channel()
    declared = await channel.declare_queue(QUEUE, passive=True)
    await channel.close()
    assert declared.declaration_result.message_count is not None
    return declared.declaration_result.message_count


def close_connections(name: str) -> int:
    """Close, from the broker's side, every connection named `name` (as a lost network would)."""
    with httpx.Client(auth=platform.MGMT_AUTH, timeout=10) as http:
        mine = [
            c["name"]
            for c in http.get(platform.mgmt_url("/connections")).json()
            if c.get("client_properties", {}).get("connection_name") == name
        ]
        for conn in mine:
            http.delete(platform.mgmt_url(f"/connections/{quote(conn, safe='')}")).raise_for_status()
        return len(mine)


async def test_deliveries_carry_what_the_recorder_reads(amqp_url: str, connection: AbstractConnection) -> None:
    at = datetime(2026, 11, 30, 12, 0, 1, tzinfo=UTC)
    headers = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "n": 7, "at": at, "nested": {"at": at}}
    await publish(
        connection,
        3,
        headers=headers,
        message_id="m-1",
        correlation_id="c-1",
        content_type="application/json",
        content_encoding="utf-8",
    )
    receiver = receiver_for(amqp_url)
    await receiver.consume()
    try:
        got = await take(receiver, 3)
        assert [d.body for d in got] == [b"0", b"1", b"2"]
        first = got[0]
        assert (first.message_id, first.correlation_id) == ("m-1", "c-1")
        assert (first.content_type, first.content_encoding) == ("application/json", "utf-8")
        assert (first.exchange, first.routing_key) == ("", QUEUE)
        # As aio-pika gives them: strings as str, timestamps aware in UTC, also inside tables.
        assert first.headers == headers
        assert first.headers["at"].tzinfo is not None and first.headers["nested"]["at"].tzinfo is not None
        assert await receiver.alive()
    finally:
        await receiver.close()
    assert not await receiver.alive()


async def test_an_ack_is_up_to_the_batch_and_close_returns_the_rest(
    amqp_url: str, connection: AbstractConnection
) -> None:
    await publish(connection, 50)
    receiver = receiver_for(amqp_url)
    await receiver.consume()
    got = await take(receiver, 50)
    await receiver.ack(got[:30])
    await receiver.close()  # the 20 unacked go back, in order
    await eventually(lambda: _is(ready(connection), 20), 10)
    again = receiver_for(amqp_url)
    await again.consume()
    try:
        assert [d.body for d in await take(again, 20)] == [str(n).encode() for n in range(30, 50)]
    finally:
        await again.close()


async def test_a_lost_connection_comes_back_and_an_old_channels_ack_acks_nothing(
    amqp_url: str, connection: AbstractConnection
) -> None:
    """Delivery tags restart on the new channel: acking the old batch's last tag there would ack the redelivered
    copies, unwritten. It must be dropped."""
    await publish(connection, 10)
    receiver = receiver_for(amqp_url, name=platform.unique("pika-lost"))
    await receiver.consume()
    try:
        old = await take(receiver, 10)
        # The management API lists a connection once its statistics were collected (within seconds).
        await eventually(lambda: close_connections(receiver.name) == 1, 20, what="the connection listed and closed")
        again = await take(receiver, 10)  # redelivered on a new connection
        assert [d.body for d in again] == [d.body for d in old]
        assert {d.generation for d in again} != {d.generation for d in old}
        assert await receiver.alive()
        await receiver.ack(old)
        await asyncio.sleep(0.2)
    finally:
        await receiver.close()
    await eventually(lambda: _is(ready(connection), 10), 10, what="all 10 back in the queue")


async def test_a_node_that_does_not_answer_is_skipped(amqp_url: str, connection: AbstractConnection) -> None:
    await publish(connection, 1)
    nobody = amqp_url.replace(f":{platform.RABBIT_PORT}/", f":{platform.free_port()}/")
    receiver = receiver_for(f"{nobody},{amqp_url}")
    await receiver.consume()
    try:
        assert [d.body for d in await take(receiver, 1)] == [b"0"]
    finally:
        await receiver.close()


async def test_a_deleted_queue_is_not_alive_and_no_broker_fails_the_start(
    amqp_url: str, connection: AbstractConnection
) -> None:
    receiver = receiver_for(amqp_url)
    await receiver.consume()
    try:
        channel = await connection.channel()
        await channel.queue_delete(QUEUE)
        await eventually(lambda: _not(receiver.alive()), 10, what="not alive once the queue is gone")
    finally:
        await receiver.close()
    nobody = receiver_for(f"amqp://guest:guest@127.0.0.1:{platform.free_port()}/")
    with pytest.raises(RuntimeError, match="no consumer on pika-receiver-test within 1 s"):
        await nobody.consume(timeout_s=1)
    assert not await nobody.alive()


async def test_cancel_stops_deliveries_while_acks_still_go(amqp_url: str, connection: AbstractConnection) -> None:
    await publish(connection, 5)
    receiver = receiver_for(amqp_url)
    await receiver.consume()
    try:
        got = await take(receiver, 5)
        await receiver.cancel()
        await eventually(lambda: _not(receiver.alive()), 5)
        await publish(connection, 5, start=5)
        await receiver.ack(got)
        await asyncio.sleep(0.2)
        assert receiver.inbox.empty()
    finally:
        await receiver.close()
    await eventually(lambda: _is(ready(connection), 5), 10, what="the acked 5 gone, the 5 sent after the cancel kept")


async def _is(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def _not(alive: object) -> bool:
    assert asyncio.iscoroutine(alive)
    return not await alive


def test_deliveries_gather_for_a_moment_before_the_event_loop_is_woken() -> None:
    gathering = Gathering()
    assert gathering.wait(0.0) == READ_INTERVAL_S  # nothing held: read until the broker sends
    assert not gathering.due(0, 0.0, False)
    assert not gathering.due(1, 0.0, False)  # the first delivery starts the gathering
    assert gathering.wait(GATHER_S / 2) == pytest.approx(GATHER_S / 2)  # the next read waits only the rest
    assert not gathering.due(3, GATHER_S / 2, False)
    assert gathering.due(4, GATHER_S, False)  # GATHER_S after the first: they go
    assert gathering.wait(GATHER_S) == READ_INTERVAL_S  # and the next gathering starts afresh
    assert not gathering.due(1, 10.0, False)
    assert gathering.due(GATHER_MAX, 10.0, False)  # a full hand: at once
    assert not gathering.due(1, 20.0, False)
    assert gathering.due(2, 20.0, True)  # cancelling: what is held goes at once, for the recorder to drain


async def test_a_trickle_reaches_the_event_loop_in_few_wakeups_all_in_order(
    amqp_url: str, connection: AbstractConnection
) -> None:
    """40 deliveries a millisecond or so apart: one wake-up of the event loop each before the gathering."""
    receiver = PikaReceiver(amqp_url, QUEUE, prefetch=100, name="test-pika-trickle", gather_s=0.5)
    hand_overs = 0
    put = receiver._put

    def counted(received: list[PikaDelivery]) -> None:
        nonlocal hand_overs
        hand_overs += 1
        put(received)

    receiver._put = counted  # type: ignore[method-assign]
    await receiver.consume()
    channel = await connection.channel(publisher_confirms=False)
    try:
        for n in range(40):
            await channel.default_exchange.publish(aio_pika.Message(str(n).encode()), routing_key=QUEUE)
            await asyncio.sleep(0.001)
        assert [d.body for d in await take(receiver, 40)] == [str(n).encode() for n in range(40)]
        assert hand_overs <= 4
    finally:
        await channel.close()
        await receiver.close()


def test_node_parameters_read_urls_as_aio_pika_does() -> None:
    plain = node_parameters("amqp://u:p%2Cw@rabbit-0:5673/prod%2Fa?heartbeat=15", "hub-recorder-events")
    assert (plain.host, plain.port, plain.virtual_host) == ("rabbit-0", 5673, "prod/a")
    assert isinstance(plain.credentials, pika.PlainCredentials)
    assert (plain.credentials.username, plain.credentials.password) == ("u", "p,w")
    assert plain.heartbeat == 15 and plain.ssl_options is None
    assert plain.client_properties == {"connection_name": "hub-recorder-events"}
    assert node_parameters("amqp://rabbit/", "x").virtual_host == "/"
    tls = node_parameters("amqps://u:p@rabbit/", "x")
    assert tls.port == 5671 and tls.ssl_options is not None and tls.ssl_options.server_hostname == "rabbit"
    with pytest.raises(ValueError, match="not an AMQP URL") as refused:
        PikaReceiver("amqp://u:p@rabbit-0/,http://u:secret@rabbit/", QUEUE, prefetch=1, name="x")
    assert "secret" not in str(refused.value)


async def test_what_does_not_fit_the_memory_budget_stays_in_the_queue(
    amqp_url: str, connection: AbstractConnection
) -> None:
    """Twenty events of 256 KiB for a budget of 1 MiB (`memory_window`: a prefetch of four): the receiver holds
    four, unacked, and the rest wait in the queue until a batch is acked."""
    largest, budget = 256 * 1024, 1024 * 1024
    window, _ = memory_window(4000, 2000, budget, largest)
    assert window == 4
    channel = await connection.channel(publisher_confirms=True)
    for n in range(20):
        await channel.default_exchange.publish(aio_pika.Message(bytes([n]) * largest), routing_key=QUEUE)
    await channel.close()
    receiver = receiver_for(amqp_url, prefetch=window)
    await receiver.consume()
    try:
        held = await take(receiver, window)
        await asyncio.sleep(0.5)  # time for more, were the broker to send them
        assert receiver.inbox.qsize() == 0 and sum(len(d.body) for d in held) <= budget
        assert await ready(connection) == 16
        await receiver.ack(held)
        assert [d.body[0] for d in await take(receiver, window)] == [4, 5, 6, 7]
    finally:
        await receiver.close()
