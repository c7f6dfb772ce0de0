"""How fast a Python AMQP client on this machine can consume: the floor under the event recorder (issues 13, 14).

The recorder takes one message per event from a durable queue, so no recorder can store faster than its client
consumes. `--messages` (default 50,000) envelope-sized messages (`--size` bytes) are put into a quorum queue of a
vhost of the bench's own, then drained four times, each with manual acks, prefetch 2,000 and one
`ack(multiple=True)` per 500, nothing decoded:

- aio-pika (what the services use): a consumer callback into an `asyncio.Queue`, as the recorder's consumer does;
- aiormq, the protocol layer under aio-pika, without aio-pika's message objects;
- pika's `BlockingConnection` (a different, synchronous client) with `basic_consume`;
- the events recorder's own receiver (`tributary_hub.pika_receiver.PikaReceiver`): that pika consumer in a thread
  of its own, handing what each read received to the event loop in one call, the loop sending the acks back, with
  the event loop's share of the CPU (the GIL) included.

Reports messages/s and CPU µs per message of this process. `.venv/bin/python bench/amqp_consume.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import aiormq
import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import platform  # noqa: E402
from tributary_hub.pika_receiver import PikaDelivery, PikaReceiver  # noqa: E402

QUEUE, PREFETCH, ACK_EVERY = "bench.consume", 2000, 500


async def fill(url: str, messages: int, size: int) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    body = b"x" * size
    for start in range(0, messages, 1000):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(aio_pika.Message(body, delivery_mode=2), QUEUE)
                for _ in range(min(1000, messages - start))
            )
        )
    await connection.close()


async def with_aio_pika(url: str, messages: int) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
    await queue.consume(inbox.put)
    for n in range(1, messages + 1):
        message = await inbox.get()
        if n % ACK_EVERY == 0 or n == messages:
            await message.ack(multiple=True)
    await connection.close()


async def with_aiormq(url: str, messages: int) -> None:
    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.basic_qos(prefetch_count=PREFETCH)
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal count
        count += 1
        if count % ACK_EVERY == 0 or count == messages:
            assert message.delivery_tag is not None
            await channel.basic_ack(message.delivery_tag, multiple=True)
        if count == messages and not done.done():
            done.set_result(None)

    await channel.basic_consume(QUEUE, on_message)
    await done
    await connection.close()


def with_pika(url: str, messages: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    count = 0

    def on_message(ch: object, method: pika.spec.Basic.Deliver, properties: object, body: bytes) -> None:
        nonlocal count
        count += 1
        if count % ACK_EVERY == 0 or count == messages:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if count == messages:
            channel.stop_consuming()

    channel.basic_consume(QUEUE, on_message)
    channel.start_consuming()
    connection.close()


async def with_pika_receiver(url: str, messages: int, queue: str = QUEUE) -> None:
    """The hub's `PikaReceiver`: deliveries put in its inbox by its thread, an ack per 500 sent back to it."""
    receiver = PikaReceiver(url, queue, prefetch=PREFETCH, name="bench")
    await receiver.consume()
    batch: list[PikaDelivery] = []
    for count in range(1, messages + 1):
        batch.append(await receiver.inbox.get())
        if count % ACK_EVERY == 0 or count == messages:
            await receiver.ack(batch)
            batch = []
    await receiver.close()


async def measure(name: str, drain: Callable[[], Awaitable[None]], messages: int) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    await drain()
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    print(f"{name:<40} {messages / wall:>10,.0f} msg/s  {used / messages * 1e6:>6.0f} µs CPU per message", flush=True)


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    vhost = platform.unique("bench-consume")
    url = platform.create_vhost(vhost)
    try:
        print(f"{args.messages:,} messages of {args.size} bytes from a quorum queue, prefetch {PREFETCH}")
        for name, drain in (
            ("aio-pika (callback -> asyncio.Queue)", lambda: with_aio_pika(url, args.messages)),
            ("aiormq (callback)", lambda: with_aiormq(url, args.messages)),
            ("pika BlockingConnection", lambda: asyncio.to_thread(with_pika, url, args.messages)),
            ("PikaReceiver (pika thread -> asyncio)", lambda: with_pika_receiver(url, args.messages)),
        ):
            await fill(url, args.messages, args.size)
            await measure(name, drain, args.messages)
    finally:
        platform.delete_vhost(vhost)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=400, help="bytes per message (an envelope is about 400)")
    asyncio.run(main(parser.parse_args()))
