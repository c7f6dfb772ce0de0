"""Upgrading the durable queues of a broker that holds them as classic queues (Tributary before quorum queues):
every message confirmed before, during and after the upgrade ends in the quorum queue, none is lost, routing
keys and properties are kept, publishes go on meanwhile, and a queue an old process still consumes waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection

from tests.support import platform
from tributary_common.amqp import topology as t
from tributary_common.amqp.topology import upgrade_holding as holding
from tributary_common.amqp.upgrade import UpgradeStuck, _still_old, ensure_queues, move

N = 500


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await aio_pika.connect_robust(amqp_url)
    yield conn
    await conn.close()


async def _old_topology(connection: AbstractConnection) -> None:
    """What Tributary declared before: classic durable queues bound to their exchanges."""
    channel = await connection.channel()
    for spec in t.DURABLE_QUEUES:
        queue = await channel.declare_queue(spec.name, durable=True)
        for exchange, key in spec.bindings:
            await channel.declare_exchange(exchange.name, exchange.type, durable=True)
            await queue.bind(exchange.name, routing_key=key)
    await channel.close()


async def _publish(connection: AbstractConnection, exchange: str, keys: list[str]) -> None:
    channel = await connection.channel(publisher_confirms=True)
    target = await channel.get_exchange(exchange)
    await asyncio.gather(
        *(
            target.publish(
                aio_pika.Message(key.encode(), message_id=key, headers={"h": key}, content_type="text/plain"),
                routing_key=key,
            )
            for key in keys
        )
    )
    await channel.close()


async def _drain(connection: AbstractConnection, name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await connection.channel()
    queue = await channel.declare_queue(name, passive=True)
    got = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        got.append(message)
    await channel.close()
    return got


def _type(vhost: str, name: str) -> object:
    info = platform.queue_info(vhost, name)
    return None if info is None else info["type"]


async def test_classic_queues_become_quorum_queues_with_every_message(
    vhost: str, connection: AbstractConnection
) -> None:
    await _old_topology(connection)
    before = [f"before.{i}" for i in range(N)]
    await _publish(connection, t.EVENTS.name, before)
    await _publish(connection, t.DEAD.name, ["tributary.hub.recorder.events"])  # a dead letter's key: its queue

    # Publishing goes on while the hub upgrades.
    during = [f"during.{i}" for i in range(N)]
    upgrading = asyncio.create_task(ensure_queues(connection, *t.DURABLE_QUEUES))
    await _publish(connection, t.EVENTS.name, during)
    await upgrading
    after = [f"after.{i}" for i in range(N)]
    await _publish(connection, t.EVENTS.name, after)

    for spec in t.DURABLE_QUEUES:
        assert _type(vhost, spec.name) == "quorum", spec.name
        assert platform.queue_info(vhost, holding(spec).name) is None
        info = platform.queue_info(vhost, spec.name)
        assert info is not None and info["arguments"] == dict(spec.arguments or {})
    events = await _drain(connection, t.HUB_RECORDER_EVENTS.name)
    keys = [m.routing_key for m in events]
    # Every one is there; an upgrade may duplicate (the recorders are idempotent), never lose.
    assert set(keys) == set(before + during + after)
    assert len(keys) <= 2 * N + N + N
    first = next(m for m in events if m.routing_key == "before.0")
    # (A quorum queue with a delivery limit adds its count of deliveries.)
    headers = {k: v for k, v in (first.headers or {}).items() if k != "x-delivery-count"}
    assert (first.body, first.message_id, headers, first.content_type) == (
        b"before.0",
        "before.0",
        {"h": "before.0"},
        "text/plain",
    )
    letters = await _drain(connection, t.DEADLETTERS.name)
    assert [m.routing_key for m in letters] == ["tributary.hub.recorder.events"]
    # Bindings: the quorum queues only; no mover exchange left behind.
    events_bound = {(b["destination"], b["routing_key"]) for b in platform.bindings(vhost, t.EVENTS.name)}
    assert events_bound == {(t.HUB_RECORDER_EVENTS.name, "#")}

    # Again: nothing to do, nothing changes.
    await ensure_queues(connection, *t.DURABLE_QUEUES)
    assert _type(vhost, t.HUB_RECORDER_EVENTS.name) == "quorum"


async def test_an_old_consumer_holds_the_upgrade_until_it_leaves(vhost: str, connection: AbstractConnection) -> None:
    await _old_topology(connection)
    old_channel = await connection.channel()
    old_queue = await old_channel.declare_queue(t.HUB_RECORDER_SAMPLES.name, passive=True)

    async def old_recorder(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    await old_queue.consume(old_recorder)
    with pytest.raises(UpgradeStuck):
        await ensure_queues(connection, t.HUB_RECORDER_SAMPLES, wait_s=0.5)
    # Meanwhile what is published is held, not lost.
    await _publish(connection, t.SAMPLES.name, ["src.sid-1"])
    assert _type(vhost, holding(t.HUB_RECORDER_SAMPLES).name) == "quorum"
    await old_channel.close()
    await ensure_queues(connection, t.HUB_RECORDER_SAMPLES, wait_s=5)
    assert _type(vhost, t.HUB_RECORDER_SAMPLES.name) == "quorum"
    assert platform.queue_info(vhost, holding(t.HUB_RECORDER_SAMPLES).name) is None
    assert [m.routing_key for m in await _drain(connection, t.HUB_RECORDER_SAMPLES.name)] == ["src.sid-1"]


async def test_the_upgrade_goes_on_when_the_callers_connection_goes_away(
    vhost: str, amqp_url: str, connection: AbstractConnection
) -> None:
    """The upgrade runs on a connection of its own: the caller's (the hub's robust connection) is used only to
    declare, so losing it midway stops nothing, and a reconnect of it has none of the upgrade's channels to
    restore (their passive declarations of a holding queue another process removed failed every reconnect)."""
    await _old_topology(connection)
    spec = t.HUB_RECORDER_SAMPLES
    old_channel = await connection.channel()
    old_queue = await old_channel.declare_queue(spec.name, passive=True)

    async def old_recorder(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    await old_queue.consume(old_recorder)  # holds the upgrade (the old queue cannot be deleted while in use)
    caller = await aio_pika.connect_robust(amqp_url)
    upgrading = asyncio.create_task(ensure_queues(caller, spec, wait_s=30))
    for _ in range(100):
        if platform.queue_info(vhost, holding(spec).name) is not None:
            break
        await asyncio.sleep(0.1)
    assert platform.queue_info(vhost, holding(spec).name) is not None, "the upgrade did not start"
    await caller.close()
    await _publish(connection, t.SAMPLES.name, ["src.sid-2"])  # held meanwhile
    await old_channel.close()  # the old recorder stops: the upgrade can finish
    await asyncio.wait_for(upgrading, 30)
    assert _type(vhost, spec.name) == "quorum"
    assert platform.queue_info(vhost, holding(spec).name) is None
    assert [m.routing_key for m in await _drain(connection, spec.name)] == ["src.sid-2"]


async def test_move_keeps_routing_keys_and_acks_only_what_was_copied(connection: AbstractConnection) -> None:
    channel = await connection.channel()
    source = await channel.declare_queue(platform.unique("src"), durable=True)
    target = await channel.declare_queue(platform.unique("dst"), durable=True, arguments={"x-queue-type": "quorum"})
    for i in range(10):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=source.name)
    assert await move(connection, source.name, target.name) == 10
    got = await _drain(connection, target.name)
    assert [m.body for m in got] == [str(i).encode() for i in range(10)]
    assert {m.routing_key for m in got} == {source.name}
    assert await _drain(connection, source.name) == []
    await channel.close()


async def test_a_move_stops_once_its_source_was_replaced_instead_of_pumping_back_and_forth(
    connection: AbstractConnection,
) -> None:
    # Two upgrading processes: one still moves the (replaced) queue into the holding queue while the other moves
    # the holding queue back into it. The first must stop once its source is no longer the queue it meant.
    channel = await connection.channel()
    queue = await channel.declare_queue(platform.unique("replaced"), durable=True, arguments={"x-queue-type": "quorum"})
    hold = await channel.declare_queue(platform.unique("hold"), durable=True, arguments={"x-queue-type": "quorum"})
    for i in range(200):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=queue.name)
    replaced_at = asyncio.get_running_loop().time() + 1.0

    async def still_meant() -> bool:
        return asyncio.get_running_loop().time() < replaced_at

    retiring = move(connection, queue.name, hold.name, window=10, still=still_meant)
    draining = move(connection, hold.name, queue.name, window=10)
    await asyncio.wait_for(asyncio.gather(retiring, draining), 60)
    # Whatever the retiring move took last is drained once more, as a restart of the other process would.
    await move(connection, hold.name, queue.name)
    got = await _drain(connection, queue.name)
    assert sorted(int(m.body) for m in got) == list(range(200))
    await channel.close()


async def test_two_hub_processes_upgrading_at_once_lose_nothing(
    vhost: str, amqp_url: str, connection: AbstractConnection
) -> None:
    await _old_topology(connection)
    keys = [f"k.{i}" for i in range(N)]
    await _publish(connection, t.EVENTS.name, keys)
    other = await aio_pika.connect_robust(amqp_url)
    try:
        results = await asyncio.gather(
            ensure_queues(connection, *t.HUB_RECORDER_TOPOLOGY),
            ensure_queues(other, *t.HUB_RECORDER_TOPOLOGY),
            return_exceptions=True,
        )
    finally:
        await other.close()
    # One may give up on a step the other finished (its next start completes it): run once more, as a restart.
    if any(isinstance(r, BaseException) for r in results):
        await ensure_queues(connection, *t.HUB_RECORDER_TOPOLOGY)
    for spec in t.HUB_RECORDER_TOPOLOGY:
        assert _type(vhost, spec.name) == "quorum"
        assert platform.queue_info(vhost, holding(spec).name) is None
    assert set(m.routing_key for m in await _drain(connection, t.HUB_RECORDER_EVENTS.name)) == set(keys)


async def test_asking_whether_the_old_queue_stands_never_re_creates_it(
    vhost: str, connection: AbstractConnection
) -> None:
    """The question a move asks while another process may have just deleted the old queue: answered without
    declaring the old queue again (which would make that process's upgrade start over)."""
    await _old_topology(connection)
    spec = t.HUB_RECORDER_EVENTS
    assert await _still_old(connection, spec)
    assert _type(vhost, spec.name) == "classic"
    channel = await connection.channel()
    await channel.queue_delete(spec.name)  # the other process retired it
    await channel.close()
    assert not await _still_old(connection, spec)
    assert _type(vhost, spec.name) == "quorum"
    assert not await _still_old(connection, spec)
