"""A batch that encodes over `SAMPLE_BATCH_MAX_BYTES` (long texts) goes to the broker as several messages, each
within the bound, in time order, together exactly the batch; the hub sizes its samples recorder's prefetch by that
bound. A batch of numbers stays one message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from opentelemetry import trace

from tributary_common.amqp import SAMPLES, ConfirmedPublisher
from tributary_common.samples import SAMPLE_BATCH_MAX_BYTES, SampleBatch
from tributary_ingest.pipeline import Row
from tributary_ingest.publisher import SamplePublisher, encode_batch

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
async def wire(amqp_url: str) -> AsyncIterator[tuple[SamplePublisher, asyncio.Queue[AbstractIncomingMessage]]]:
    connection: AbstractRobustConnection = await aio_pika.connect_robust(amqp_url)
    confirmed = ConfirmedPublisher(window=8, timeout_s=10)
    await confirmed.start(connection, SAMPLES)
    channel = await connection.channel()
    exchange = await channel.get_exchange(SAMPLES.name)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")
    seen: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(seen.put, no_ack=True)
    yield SamplePublisher(confirmed, trace.get_tracer("test"), app_id="test", persistent=False), seen
    await connection.close()


async def bodies(seen: asyncio.Queue[AbstractIncomingMessage]) -> list[bytes]:
    got = [(await asyncio.wait_for(seen.get(), 10)).body]
    await asyncio.sleep(0.3)  # anything else of the same publish
    while not seen.empty():
        got.append(seen.get_nowait().body)
    return got


async def test_long_texts_are_split_within_the_bound_in_order(
    wire: tuple[SamplePublisher, asyncio.Queue[AbstractIncomingMessage]],
) -> None:
    publisher, seen = wire
    rows: list[Row] = [(T0 + timedelta(seconds=i), f"{i:05}" + "\u00e9\n" * 4_000, "ok") for i in range(301)]
    assert len(encode_batch("sim", "s1", rows)) > 2 * SAMPLE_BATCH_MAX_BYTES
    await publisher.publish("sim", "s1", rows)
    got = await bodies(seen)
    assert len(got) >= 3 and all(len(b) <= SAMPLE_BATCH_MAX_BYTES for b in got), [len(b) for b in got]
    batches = [SampleBatch.model_validate_json(b) for b in got]
    assert [(s.t, s.v, s.q) for b in batches for s in b.samples] == rows  # all, once, in order
    assert {(b.sid, b.source) for b in batches} == {("s1", "sim")}


async def test_a_batch_of_numbers_stays_one_message(
    wire: tuple[SamplePublisher, asyncio.Queue[AbstractIncomingMessage]],
) -> None:
    publisher, seen = wire
    rows: list[Row] = [(T0 + timedelta(milliseconds=i), i * 0.5, None) for i in range(500)]
    await publisher.publish("sim", "s2", rows)
    (body,) = await bodies(seen)
    assert [s["v"] for s in orjson.loads(body)["samples"]] == [i * 0.5 for i in range(500)]
