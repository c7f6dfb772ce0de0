"""The events recorder's receive on pika, in a thread of its own.

Why: aio-pika spends about 110 µs of the event loop's CPU per delivered message on this machine, so a recorder fed
by it tops out near 8,500 messages/s before it converts or writes anything; pika's `BlockingConnection` needs about
25 µs (bench/amqp_consume.py), and the real recorder fed by it stored 1.7× as many events per second
(bench/recorder_receive.py).

How: the thread owns the connection (pika is not thread-safe) and does nothing but read. Deliveries reach the
event loop in one `call_soon_threadsafe` per `GATHER_S` (or `GATHER_MAX` deliveries): at a steady trickle a read
brings one or two, and waking the event loop for each cost more than the rest of the receive. Acks come back with
`add_callback_threadsafe`; a cancel is a flag the thread acts on between reads.

Reconnection: a lost connection (or a channel the broker closed, or our consumer cancelled by the broker because
the queue was deleted) is reopened on the next node of the URL list, in the robust connection's order
(`rotation`), waiting with `Backoff` only after a whole round of nodes failed to get to consume. Queue and bindings
are declared by the recorder's aio-pika channel, which its robust connection restores; this side only consumes,
and retries until the queue is there.

Delivery tags count per channel, so every delivery carries the generation of the channel it came on. An ack for
an older generation is dropped: that channel is gone and the broker redelivers what it held, which the recorder
absorbs (its writes are idempotent). `alive()` is true only while the broker delivers to our consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from tributary_common.amqp.connection import parse_urls, rotation
from tributary_common.amqp.delivery import Delivery
from tributary_common.backoff import Backoff

from .pika_params import headers_of, node_parameters

log = logging.getLogger(__name__)

# How long the thread waits for the broker before it looks at its flags (stop, cancel) again.
READ_INTERVAL_S = 0.05
# Deliveries gathered in the thread before the event loop is woken for them: at most this long (well within the
# recorder's batch delay) or this many.
GATHER_S = 0.005
GATHER_MAX = 500


@dataclass(slots=True, frozen=True)
class PikaDelivery:
    """A `Delivery` (what the recorder reads), with where it came from for the ack."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    correlation_id: str | None
    content_type: str | None
    content_encoding: str | None
    exchange: str | None
    routing_key: str | None
    delivery_tag: int
    generation: int


@dataclass(slots=True, frozen=True)
class _Link:
    generation: int
    connection: pika.BlockingConnection
    channel: BlockingChannel


@dataclass(slots=True)
class Gathering:
    """When the deliveries read so far go to the event loop: `GATHER_S` after the first of them, at `GATHER_MAX`,
    or at once when the consumer is being cancelled (the recorder then drains what it was handed)."""

    gather_s: float = GATHER_S
    first_at: float | None = None

    def wait(self, now: float) -> float:
        """How long the next read may wait for the broker."""
        return READ_INTERVAL_S if self.first_at is None else max(0.0, self.first_at + self.gather_s - now)

    def due(self, count: int, now: float, cancelling: bool) -> bool:
        """Whether `count` deliveries, read by `now`, go now (the gathering then starts again)."""
        if not count:
            return False
        if self.first_at is None:
            self.first_at = now
        if now - self.first_at >= self.gather_s or count >= GATHER_MAX or cancelling:
            self.first_at = None
            return True
        return False


class _Lost(Exception):
    """The consumer is gone while the connection stays (the broker cancelled it): open another."""


class PikaReceiver:
    def __init__(
        self,
        url: str,
        queue: str,
        *,
        prefetch: int,
        name: str,
        backoff: Backoff | None = None,
        gather_s: float = GATHER_S,
    ) -> None:
        # In the robust connection's order: from a random node (processes spread over them), then round-robin.
        self._nodes = [node_parameters(node, name) for node in rotation(parse_urls(url))]
        self.queue = queue
        self.prefetch = prefetch
        self.name = name
        self.gather_s = gather_s
        self.inbox: asyncio.Queue[PikaDelivery] = asyncio.Queue()
        self._backoff = backoff or Backoff(0.5, 10.0)
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._consuming = threading.Event()
        self._link: _Link | None = None
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def consume(self, timeout_s: float = 10.0) -> None:
        """Start the thread; return once the broker delivers to our consumer (RuntimeError after `timeout_s`)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"pika-{self.queue}", daemon=True)
        self._thread.start()
        deadline = self._loop.time() + timeout_s
        while not self._consuming.is_set():
            if self._loop.time() > deadline or not self._thread.is_alive():
                await self.close()
                raise RuntimeError(f"no consumer on {self.queue} within {timeout_s:.0f} s (see the log)")
            await asyncio.sleep(0.01)

    async def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._consuming.is_set()

    async def cancel(self) -> None:
        """Stop deliveries (graceful shutdown); the connection stays for the acks of what is in hand. Idempotent."""
        self._cancel.set()

    async def ack(self, batch: Sequence[Delivery]) -> None:
        """Everything up to the batch's last delivery on the current channel (`multiple`): the inbox is in delivery
        order, and earlier batches were acked before, so that is this batch. Older channels' deliveries are not
        acked (see the module docstring)."""
        link = self._link
        if link is None:
            return
        last = next(
            (d for d in reversed(batch) if isinstance(d, PikaDelivery) and d.generation == link.generation), None
        )
        if last is None:
            return
        tag = last.delivery_tag

        def send() -> None:
            if self._link is link and link.channel.is_open:
                link.channel.basic_ack(tag, multiple=True)

        # Raises when that connection is closed: its deliveries are redelivered, nothing to ack.
        with contextlib.suppress(Exception):
            link.connection.add_callback_threadsafe(send)

    async def release(self, pending: Sequence[Delivery]) -> None:
        """Unacked deliveries return to the queue when `close` closes the channel; nothing to send before."""

    async def close(self) -> None:
        """Stop the thread; its channel closes and unacked deliveries return to the queue."""
        self._stop.set()
        self._cancel.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # In the thread from here on.

    def _run(self) -> None:
        index = failures = 0
        while not self._stop.is_set():
            node = self._nodes[index]
            consumed = False
            try:
                connection = pika.BlockingConnection(node)
            except Exception as exc:  # noqa: BLE001 - any failure to connect: the next node
                log.warning("%s: node %s:%s not reachable: %s", self.name, node.host, node.port, exc)
            else:
                try:
                    self._serve(connection, node)
                except Exception as exc:  # noqa: BLE001 - lost (connection, channel or consumer): reconnect
                    log.warning("%s: consuming %s stopped: %s", self.name, self.queue, exc)
                finally:
                    consumed = self._link is not None
                    self._consuming.clear()
                    self._link = None
                    with contextlib.suppress(Exception):
                        if connection.is_open:
                            connection.close()
            index = (index + 1) % len(self._nodes)
            if consumed:  # a node that served us: the next one right away
                failures = 0
                self._backoff.reset()
                continue
            failures += 1
            # As the robust connection does: a pause only after a whole round of nodes failed.
            if failures % len(self._nodes) == 0 and not self._stop.is_set():
                self._stop.wait(self._backoff.next_delay())

    def _serve(self, connection: pika.BlockingConnection, node: pika.ConnectionParameters) -> None:
        """Consume until stopped; raises when the connection, channel or consumer is lost."""
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.prefetch)
        self._generation += 1
        generation = self._generation
        received: list[PikaDelivery] = []

        def on_message(_: object, method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
            received.append(
                PikaDelivery(
                    body,
                    headers_of(properties.headers),
                    properties.message_id,
                    properties.correlation_id,
                    properties.content_type,
                    properties.content_encoding,
                    method.exchange,
                    method.routing_key,
                    method.delivery_tag,
                    generation,
                )
            )

        cancelled_by_broker = threading.Event()
        channel.add_on_cancel_callback(lambda _: cancelled_by_broker.set())
        tag = channel.basic_consume(self.queue, on_message)
        self._link = _Link(generation, connection, channel)
        self._consuming.set()
        log.info("%s: consuming %s on %s:%s", self.name, self.queue, node.host, node.port)
        cancelled = False
        gathering = Gathering(self.gather_s)
        while not self._stop.is_set():
            connection.process_data_events(time_limit=gathering.wait(time.monotonic()))
            if gathering.due(len(received), time.monotonic(), self._cancel.is_set()):
                self._hand_over(received)
                received = []
            if cancelled_by_broker.is_set():
                raise _Lost(f"the broker cancelled the consumer of {self.queue} (was the queue deleted?)")
            if self._cancel.is_set() and not cancelled:
                cancelled = True
                self._consuming.clear()
                # Deliveries the broker sent before it took the cancel are nacked by pika: they go back.
                channel.basic_cancel(tag)
        # Stopped. Acks asked for before are callbacks that only a read runs: run them now, so that they reach the
        # broker before the close returns the rest (else an acked batch would come back to another consumer).
        with contextlib.suppress(Exception):  # the connection is gone: so are its deliveries' acks
            connection.process_data_events(time_limit=0)

    def _hand_over(self, received: list[PikaDelivery]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._put, received)
        except RuntimeError:  # the event loop is closed: nobody will take them; they return to the queue
            self._stop.set()

    def _put(self, received: list[PikaDelivery]) -> None:
        for delivery in received:
            self.inbox.put_nowait(delivery)
