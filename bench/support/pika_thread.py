"""pika consuming a queue in a thread of its own, for the benches that measure a receive on pika against aio-pika
(`amqp_consume.py`, `recorder_receive.py`): what each `process_data_events` read goes to the event loop as one list
(`call_soon_threadsafe`), and acks go back to the thread (`add_callback_threadsafe`: pika is not thread-safe). A
prototype: no reconnection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

T = TypeVar("T")
Wrap = Callable[[Basic.Deliver, BasicProperties, bytes], T]


class PikaThread(Generic[T]):
    def __init__(self, url: str, queue: str, prefetch: int, wrap: Wrap[T]) -> None:
        self.url, self.queue, self.prefetch, self.wrap = url, queue, prefetch, wrap
        self.inbox: asyncio.Queue[list[T]] = asyncio.Queue()
        self._stop = threading.Event()
        self._thread: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Connect (before the thread starts, so nothing else uses the connection meanwhile), then consume."""
        self._connection = await asyncio.to_thread(pika.BlockingConnection, pika.URLParameters(self.url))
        self._channel: BlockingChannel = self._connection.channel()
        self._thread = asyncio.ensure_future(asyncio.to_thread(self._consume, asyncio.get_running_loop()))

    def ack(self, delivery_tag: int) -> None:
        """Everything up to `delivery_tag` (`multiple`), sent from the consuming thread."""
        channel = self._channel
        self._connection.add_callback_threadsafe(lambda: channel.basic_ack(delivery_tag, multiple=True))

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await self._thread

    def _consume(self, loop: asyncio.AbstractEventLoop) -> None:
        connection, channel = self._connection, self._channel
        channel.basic_qos(prefetch_count=self.prefetch)
        received: list[T] = []

        def on_message(ch: object, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            received.append(self.wrap(method, properties, body))

        channel.basic_consume(self.queue, on_message)
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.01)
            if received:
                loop.call_soon_threadsafe(self.inbox.put_nowait, received)
                received = []
        connection.close()
