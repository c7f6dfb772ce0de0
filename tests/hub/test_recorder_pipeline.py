"""The recorder's two stages on the real broker and database, with either receiver: the next batch is converted
while the current one is written, batches are acked in order once written, and a converter that ends takes the
recorder (and its readiness) with it, returning what it held to the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from tests.support.polling import eventually
from tributary_common.amqp import HUB_RECORDER_EVENTS
from tributary_common.amqp.delivery import Delivery
from tributary_hub.pika_receiver import PikaReceiver
from tributary_hub.recorder import Recorder

BATCH = 10


class GatedCollection:
    """The real collection, whose writes wait for `gate` (so a test can hold a batch in the middle of its write)."""

    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self.collection = collection
        self.gate = asyncio.Event()

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> Any:
        await self.gate.wait()
        return await self.collection.insert_many(documents, ordered=ordered)


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    conn = await aio_pika.connect_robust(amqp_url)
    yield conn
    await conn.close()


@pytest.fixture
def collection(mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> AsyncCollection[Any]:
    return mongo_client[mongo_db_name]["pipeline"]


def recorder(amqp_url: str, sink: GatedCollection, converted: list[bytes], receiver: str) -> Recorder:
    async def to_docs(message: Delivery) -> list[dict[str, Any]]:
        converted.append(message.body)
        return [{"_id": message.body.decode()}]

    return Recorder(
        "events",
        HUB_RECORDER_EVENTS,
        sink,
        to_docs,
        batch_size=BATCH,
        # Batches always full: a loaded machine must not cut the first one short (then two batches are fewer than
        # 2 x BATCH messages, and the third waits behind them, as it should).
        max_delay_ms=5000,
        prefetch=100,
        retry_min_s=0.1,
        retry_max_s=0.5,
        receiver=PikaReceiver(amqp_url, HUB_RECORDER_EVENTS.name, prefetch=100, name="test")
        if receiver == "pika"
        else None,
    )


async def publish(connection: AbstractRobustConnection, count: int) -> None:
    channel = await connection.channel(publisher_confirms=True)
    for n in range(count):
        await channel.default_exchange.publish(
            aio_pika.Message(f"{n:03}".encode()), routing_key=HUB_RECORDER_EVENTS.name
        )
    await channel.close()


async def waiting(connection: AbstractRobustConnection) -> int:
    channel = await connection.channel()
    queue = await channel.declare_queue(HUB_RECORDER_EVENTS.name, passive=True)
    await channel.close()
    return queue.declaration_result.message_count or 0


@contextlib.asynccontextmanager
async def running(
    amqp_url: str, connection: AbstractRobustConnection, collection: AsyncCollection[Any], receiver: str, drain_s: float
) -> AsyncIterator[tuple[Recorder, GatedCollection, list[bytes]]]:
    """A recorder on the gated collection, started, and stopped (draining up to `drain_s`) on the way out."""
    sink, converted = GatedCollection(collection), list[bytes]()
    rec = recorder(amqp_url, sink, converted, receiver)
    await rec.start(connection)
    try:
        yield rec, sink, converted
    finally:
        await rec.stop(drain_timeout_s=drain_s)


RECEIVERS = pytest.mark.parametrize("receiver", ["pika", "aio-pika"])


@RECEIVERS
async def test_the_next_batch_is_converted_while_one_is_written(
    amqp_url: str, connection: AbstractRobustConnection, collection: AsyncCollection[Any], receiver: str
) -> None:
    async with running(amqp_url, connection, collection, receiver, 5) as (rec, sink, converted):
        await publish(connection, 3 * BATCH)
        # The first batch waits in its write; the second is converted meanwhile (and no more: one ahead).
        await eventually(lambda: len(converted) >= 2 * BATCH, 10, what="a second batch converted")
        await asyncio.sleep(0.2)
        assert await collection.count_documents({}) == 0
        assert len(converted) <= 3 * BATCH
        sink.gate.set()
        await eventually(lambda: rec.writer.written == 3 * BATCH, 10, what="all written")
        assert sorted(d["_id"] for d in await collection.find().to_list()) == [f"{n:03}" for n in range(30)]
    assert await waiting(connection) == 0  # all acked


@RECEIVERS
async def test_a_converter_that_ends_ends_the_recorder_and_returns_what_it_held(
    amqp_url: str, connection: AbstractRobustConnection, collection: AsyncCollection[Any], receiver: str
) -> None:
    async with running(amqp_url, connection, collection, receiver, 1) as (rec, _, converted):
        await publish(connection, 2 * BATCH)
        await eventually(lambda: len(converted) >= 2 * BATCH, 10, what="two batches taken")
        assert await rec.alive()
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "recorder-events-convert"]
        task.cancel()  # whatever ends it
        await eventually(lambda: _not_alive(rec), 5, what="the recorder not alive")
        # Back in the queue at once, for another replica, not only once the recorder is stopped.
        await eventually(lambda: _count_is(waiting(connection), 2 * BATCH), 10, what="both batches back in the queue")
    assert await collection.count_documents({}) == 0


async def _not_alive(rec: Recorder) -> bool:
    return not await rec.alive()


async def _count_is(count: Any, expected: int) -> bool:
    return bool(await count == expected)
