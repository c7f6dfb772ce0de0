"""The instance queue on RabbitMQ: one exclusive auto-delete queue whose bindings follow what clients want.

Bindings are reference-counted (`acquire`/`release`); a single worker reconciles what is bound with what is
wanted, so a release racing an acquire of the same key can never leave the binding missing. The link owns its
connection and reconnects with backoff: after a broker restart or a lost connection it declares the queue
again, binds every wanted key, and reports the outage (`on_restored(started, ended)`), so that every affected
client gets a `gap` frame. A message the consumer cannot use (`Unusable`) goes to the dead-letter outbox, sent on a
confirmed channel of the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from tributary_common.deadletters import DeadLetters
from tributary_common.exchanges import CONTROL, EVENTS, SAMPLES
from tributary_common.timeutil import utcnow

from .dead_letters import DeadLetterOutbox, Unusable

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (exchange, binding key)
OnMessage = Callable[[str, str, bytes, dict[str, Any]], None]
OnRestored = Callable[[datetime, datetime], None]

# What the instance queue is bound to (declared here too: the link may connect before the service declared them).
EXCHANGES = tuple(exchange.name for exchange in (EVENTS, SAMPLES, CONTROL))


class BrokerUnavailable(Exception):
    """A binding could not be made in time: the broker is down or unreachable."""


class BrokerLink:
    def __init__(
        self,
        url: str,
        queue_name: str,
        on_message: OnMessage,
        on_restored: OnRestored,
        dead_letters: DeadLetterOutbox,
        *,
        prefetch: int = 1000,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        self.url = url
        self.queue_name = queue_name
        self.on_message = on_message
        self.on_restored = on_restored
        self.dead_letters = dead_letters
        self.prefetch = prefetch
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.wanted: dict[Key, int] = {}
        self.bound: set[Key] = set()
        self._dirty: set[Key] = set()
        self._dirty_event = asyncio.Event()
        self._bound_event = asyncio.Event()
        self._connected = asyncio.Event()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.connected_once = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- lifecycle ----------------------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        self._tasks = [asyncio.create_task(self._supervise()), asyncio.create_task(self._reconcile())]
        self.dead_letters.start()
        await asyncio.wait_for(self.connected_once.wait(), timeout)

    async def stop_consuming(self) -> None:
        """Stop taking messages (graceful shutdown); bindings stay until the connection closes."""
        if self._queue is not None and self._consumer_tag is not None and self.connected:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception as exc:  # noqa: BLE001 - shutting down: log and go on
                log.warning("cancelling the consumer failed: %s", exc)
            self._consumer_tag = None

    async def close(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.dead_letters.close(2.0)
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.close()

    async def check(self) -> None:
        """Readiness: the queue is consumed on a live connection."""
        if not self.connected or self._connection is None or self._connection.is_closed:
            raise ConnectionError("instance queue not connected to the broker")

    # ---- bindings -----------------------------------------------------------------------------------------

    async def acquire(self, exchange: str, key: str, timeout: float = 10.0) -> None:
        """Want `key` on `exchange` bound; return once it is (reference-counted)."""
        k = (exchange, key)
        self.wanted[k] = self.wanted.get(k, 0) + 1
        if k in self.bound:
            return
        self._mark(k)
        try:
            async with asyncio.timeout(timeout):
                while k not in self.bound:
                    self._bound_event.clear()
                    await self._bound_event.wait()
        except TimeoutError:
            self.release(exchange, key)
            raise BrokerUnavailable(f"could not bind {key!r} on {exchange} within {timeout} s") from None

    def release(self, exchange: str, key: str) -> None:
        k = (exchange, key)
        n = self.wanted.get(k, 0) - 1
        if n > 0:
            self.wanted[k] = n
            return
        self.wanted.pop(k, None)
        self._mark(k)

    def _mark(self, k: Key) -> None:
        self._dirty.add(k)
        self._dirty_event.set()

    async def _reconcile(self) -> None:
        while True:
            await self._dirty_event.wait()
            self._dirty_event.clear()
            await self._connected.wait()
            while self._dirty and self.connected:
                k = self._dirty.pop()
                try:
                    await self._apply(k)
                except Exception as exc:  # noqa: BLE001 - the supervisor reconnects; retry after
                    log.warning("binding %s failed: %s; retrying after reconnect", k, exc)
                    self._dirty.add(k)
                    await asyncio.sleep(0.2)
            if self._dirty:
                self._dirty_event.set()

    async def _apply(self, k: Key) -> None:
        queue = self._queue
        if queue is None:
            raise ConnectionError("no queue")
        exchange, key = k
        if k in self.wanted and k not in self.bound:
            await queue.bind(exchange, routing_key=key)
            self.bound.add(k)
            self._bound_event.set()
        elif k not in self.wanted and k in self.bound:
            self.bound.discard(k)
            await queue.unbind(exchange, routing_key=key)

    # ---- connection ---------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.reconnect_initial_s
        lost_at: datetime | None = None
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                log.warning("broker connection failed: %s; retrying in %.1f s", exc, delay)
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            delay = self.reconnect_initial_s
            self._connected.set()
            self._bound_event.set()
            if lost_at is not None:
                log.info("broker connection restored; %d bindings restored", len(self.bound))
                self.on_restored(lost_at, utcnow())
            self.connected_once.set()
            self._dirty_event.set()
            assert self._connection is not None and self._channel is not None
            await asyncio.wait(
                [asyncio.ensure_future(self._connection.closed()), asyncio.ensure_future(self._channel.closed())],
                return_when=asyncio.FIRST_COMPLETED,
            )
            self._connected.clear()
            self.dead_letters.attach(None)
            self.bound.clear()
            if self._stopping:
                return
            lost_at = utcnow()
            log.warning("broker connection lost; reconnecting")
            await self._drop_connection()

    async def _connect(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=10)
        self._connection = connection
        channel = await connection.channel(publisher_confirms=False)
        self._channel = channel
        await channel.set_qos(prefetch_count=self.prefetch)
        for name in EXCHANGES:
            await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
        self._queue = queue
        # Everything wanted is bound before messages flow, and before the outage is reported.
        self.bound.clear()
        for exchange, key in list(self.wanted):
            await queue.bind(exchange, routing_key=key)
            self.bound.add((exchange, key))
        dead = DeadLetters(await connection.channel(publisher_confirms=True))
        await dead.start()
        self.dead_letters.attach(dead)
        self._consumer_tag = await queue.consume(self._deliver, no_ack=True)

    async def _drop_connection(self) -> None:
        self.dead_letters.attach(None)
        conn, self._connection, self._channel, self._queue = self._connection, None, None, None
        if conn is not None and not conn.is_closed:
            with contextlib.suppress(Exception):  # it is already broken
                await conn.close()

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        # Synchronous inside: deliveries are dispatched in the order the broker sent them.
        try:
            self.on_message(
                message.exchange or "", message.routing_key or "", message.body, dict(message.headers or {})
            )
        except Unusable as exc:
            self.dead_letters.put(message, exc.reason, exc.detail)
