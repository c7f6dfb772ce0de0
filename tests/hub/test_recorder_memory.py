"""The events recorder's memory bound: clients choose their events' size and the broker counts messages, not
bytes, so the prefetch (and the batch with it) is lowered until that many events of the largest size allowed fit
in `TRIBUTARY_RECORDER_EVENT_MEMORY_MB`; on the real broker, what does not fit stays in the queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from pydantic import ValidationError

from tributary_hub.pika_receiver import PikaReceiver
from tributary_hub.recorder import event_window, make_recorders
from tributary_hub.settings import HubSettings

MiB = 1024 * 1024
QUEUE = "recorder-memory-test"


def test_the_window_fits_the_budget_and_keeps_the_batch_in_proportion() -> None:
    assert event_window(4000, 2000, 4096 * MiB, MiB) == (4000, 2000)  # the defaults: unchanged
    assert event_window(4000, 2000, 128 * MiB, MiB) == (128, 64)
    assert event_window(4000, 2000, 128 * MiB, 64 * 1024) == (2048, 1024)
    assert event_window(4000, 4000, 10 * MiB, MiB) == (10, 10)  # no pipelining asked: none made
    assert event_window(4000, 2000, MiB, 8 * MiB) == (1, 1)  # never nothing
    for prefetch, batch, memory, largest in [(4000, 2000, 300 * MiB, 3 * MiB), (7, 3, 20, 3), (1, 1, 1, 1)]:
        window, size = event_window(prefetch, batch, memory, largest)
        assert 1 <= size <= window <= prefetch and (window == 1 or window * largest <= memory)


def test_the_recorders_take_the_lowered_window_from_the_settings(amqp_url: str) -> None:
    settings = HubSettings(dev_mode=True, amqp_url=amqp_url, recorder_event_memory_mb=16, max_event_bytes=MiB // 2)
    events, samples, letters = make_recorders(settings, Any, Any, Any)  # type: ignore[arg-type]
    assert (events.prefetch, events.batch_size) == (32, 16)
    assert isinstance(events.receiver, PikaReceiver) and events.receiver.prefetch == 32
    assert (samples.prefetch, letters.prefetch) == (settings.recorder_prefetch, settings.recorder_prefetch)
    on_aio_pika = make_recorders(settings.model_copy(update={"recorder_event_receiver": "aio-pika"}), Any, Any, Any)  # type: ignore[arg-type]
    assert on_aio_pika[0].consumer.prefetch == 32


@pytest.mark.parametrize("value", [0, -5, 10**7, "lots"])
def test_a_budget_out_of_range_is_refused_by_name(value: object) -> None:
    with pytest.raises(ValidationError, match="recorder_event_memory_mb"):
        HubSettings.model_validate({"dev_mode": True, "recorder_event_memory_mb": value})


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await aio_pika.connect(amqp_url)
    channel = await conn.channel()
    await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.close()
    yield conn
    await conn.close()


async def test_what_does_not_fit_stays_in_the_queue(amqp_url: str, connection: AbstractConnection) -> None:
    """Twenty large events for a window of four: the receiver holds four, unacked; the rest wait in the queue
    until a batch is acked."""
    largest = 256 * 1024
    window, _ = event_window(4000, 2000, MiB, largest)
    assert window == 4
    channel = await connection.channel(publisher_confirms=True)
    for n in range(20):
        await channel.default_exchange.publish(aio_pika.Message(bytes([n]) * largest), routing_key=QUEUE)
    receiver = PikaReceiver(amqp_url, QUEUE, prefetch=window, name="test-recorder-memory")
    await receiver.consume()
    try:
        held = [await asyncio.wait_for(receiver.inbox.get(), 10) for _ in range(window)]
        await asyncio.sleep(0.5)  # time for more, were the broker to send them
        assert receiver.inbox.qsize() == 0
        assert sum(len(d.body) for d in held) <= MiB
        assert (await channel.declare_queue(QUEUE, passive=True)).declaration_result.message_count == 16
        await receiver.ack(held)
        more = [await asyncio.wait_for(receiver.inbox.get(), 10) for _ in range(window)]
        assert [d.body[0] for d in more] == [4, 5, 6, 7]
    finally:
        await receiver.close()
        await channel.close()
