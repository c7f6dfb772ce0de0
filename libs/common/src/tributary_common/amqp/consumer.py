"""One queue consumed on a channel of its own: declare → bind → consume → cancel → close.

    consumer = Consumer(HUB_RECORDER_EVENTS, prefetch=1000)          # no callback: messages go to `inbox`
    await consumer.start(connection)
    message = await consumer.inbox.get()
    ...
    await consumer.cancel()                                           # stop deliveries; idempotent
    await consumer.close()                                            # and the channel (unacked ones return)

With a callback, deliveries are awaited one by one in broker order (`no_ack=True` for fire-and-forget queues such
as the stream's and ingest's control queue). Bindings may change at run time (`bind`/`unbind`); `bindings` is
what is bound now. `closed()` returns when the channel or its connection is gone: on a robust connection
aio-pika restores channel, queue, bindings and consumer itself; on a plain one, reconnect and `start` again,
passing the bindings wanted (`start(connection, bindings=...)`), all made before the first delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from .topology import ExchangeSpec, QueueSpec, declare_exchange, declare_queue

log = logging.getLogger(__name__)

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[Any]]
Exchange = ExchangeSpec | str  # a spec, or the name of a durable topic exchange


class Consumer:
    def __init__(
        self, spec: QueueSpec, on_message: OnMessage | None = None, *, prefetch: int = 0, no_ack: bool = False
    ) -> None:
        self.spec = spec
        self.prefetch = prefetch
        self.no_ack = no_ack
        # Without a callback the consumer fills this; the owner takes from it at its own pace (prefetch bounds it).
        self.inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._on_message: OnMessage = on_message or self.inbox.put
        self.bindings: set[tuple[str, str]] = set()
        self._exchanges: dict[str, AbstractExchange] = {}
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self.consumer_tag: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def channel(self) -> AbstractChannel:
        if self._channel is None:
            raise RuntimeError(f"consumer of {self.name} not started")
        return self._channel

    @property
    def queue(self) -> AbstractQueue:
        if self._queue is None:
            raise RuntimeError(f"consumer of {self.name} not started")
        return self._queue

    async def start(
        self,
        connection: AbstractConnection,
        *,
        bindings: Iterable[tuple[Exchange, str]] = (),
        consume: bool = True,
    ) -> None:
        """Open the channel, declare the queue with the spec's bindings and `bindings`, and (unless
        `consume=False`) consume it. Again after a lost plain connection: a new channel, queue and consumer."""
        self._connection = connection
        self.consumer_tag = None
        channel = await connection.channel(publisher_confirms=False)
        if self.prefetch:
            await channel.set_qos(prefetch_count=self.prefetch)
        self._channel = channel
        self._exchanges.clear()
        self._queue = await declare_queue(channel, self.spec)
        self.bindings = {(exchange.name, key) for exchange, key in self.spec.bindings}
        for exchange, key in bindings:
            await self.bind(exchange, key)
        if consume:
            await self.consume()

    async def consume(self) -> None:
        """Start deliveries (after extra bindings were made, when they must be in place first)."""
        if self.consumer_tag is None:
            self.consumer_tag = await self.queue.consume(self._on_message, no_ack=self.no_ack)

    async def bind(self, exchange: Exchange, key: str) -> None:
        """Bind `key` on `exchange` (declared first, once per channel; a name is a durable topic exchange)."""
        spec = exchange if isinstance(exchange, ExchangeSpec) else ExchangeSpec(exchange)
        target = self._exchanges.get(spec.name)
        if target is None:
            target = self._exchanges[spec.name] = await declare_exchange(self.channel, spec)
        await self.queue.bind(target, routing_key=key)
        self.bindings.add((spec.name, key))

    async def unbind(self, exchange: Exchange, key: str) -> None:
        name = exchange.name if isinstance(exchange, ExchangeSpec) else exchange
        self.bindings.discard((name, key))
        await self.queue.unbind(name, routing_key=key)

    async def cancel(self) -> None:
        """Stop deliveries (graceful shutdown); bindings and unacked messages stay. Idempotent, never raises."""
        tag, self.consumer_tag = self.consumer_tag, None
        if tag is None or self._queue is None or self._channel is None or self._channel.is_closed:
            return
        try:
            await self._queue.cancel(tag)
        except Exception as exc:  # noqa: BLE001 - shutting down (or the broker is away): log and go on
            log.warning("cancelling the consumer of %s failed: %s", self.name, exc)

    async def close(self) -> None:
        """`cancel`, then close the channel: unacked messages go back to the queue. Idempotent."""
        await self.cancel()
        channel, self._channel, self._queue = self._channel, None, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception as exc:  # noqa: BLE001 - it is closing anyway
                log.debug("closing the channel of %s: %s", self.name, exc)

    async def alive(self) -> bool:
        """The broker still delivers to this consumer: it cancels it when the queue is deleted, and the channel
        is closed while the connection is lost."""
        if self._channel is None or self.consumer_tag is None:
            return False
        try:
            underlay = await self._channel.get_underlay_channel()
        except Exception:  # noqa: BLE001 - a closed channel says "not alive", whatever the client raises
            return False
        consumers: dict[str, Any] = getattr(underlay, "consumers", {})
        return not underlay.is_closed and self.consumer_tag in consumers

    async def closed(self) -> None:
        """Return once the channel or its connection is closed (by the broker, the network or `close`)."""
        channel, connection = self._channel, self._connection
        if channel is None or connection is None:
            return
        waits = [asyncio.ensure_future(connection.closed()), asyncio.ensure_future(channel.closed())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
