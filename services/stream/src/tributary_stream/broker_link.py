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

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from tributary_common.amqp import STREAM_EXCHANGES, Consumer, QueueSpec, connect, declare
from tributary_common.backoff import Backoff
from tributary_common.deadletters import DeadLetters
from tributary_common.timeutil import utcnow

from .dead_letters import DeadLetterOutbox, Unusable

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (exchange, binding key)
OnMessage = Callable[[str, str, bytes, dict[str, Any]], None]
OnRestored = Callable[[datetime, datetime], None]


class BrokerUnavailable(Exception):
    """A binding could not be made in time: the broker is down or unreachable."""


class BrokerLink:
    def __init__(
        self,
        url: str,
        queue: QueueSpec,
        on_message: OnMessage,
        on_restored: OnRestored,
        dead_letters: DeadLetterOutbox,
        *,
        prefetch: int = 1000,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 5.0,
    ) -> None:
        self.url = url
        self.on_message = on_message
        self.on_restored = on_restored
        self.dead_letters = dead_letters
        self.backoff = Backoff(reconnect_initial_s, reconnect_max_s, jitter=False)
        self.wanted: dict[Key, int] = {}
        self._dirty: set[Key] = set()
        self._dirty_event = asyncio.Event()
        self._bound_event = asyncio.Event()
        self._connected = asyncio.Event()
        self._connection: AbstractConnection | None = None
        # Started again on each new connection; its `bindings` are what is bound now.
        self.consumer = Consumer(queue, self._deliver, prefetch=prefetch, no_ack=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.connected_once = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queue_name(self) -> str:
        return self.consumer.name

    @property
    def bound(self) -> set[Key]:
        """What the instance queue is bound to now (nothing while disconnected: all is bound again on reconnect)."""
        return self.consumer.bindings if self.connected else set()

    # ---- lifecycle ----------------------------------------------------------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        self._tasks = [asyncio.create_task(self._supervise()), asyncio.create_task(self._reconcile())]
        self.dead_letters.start()
        await asyncio.wait_for(self.connected_once.wait(), timeout)

    async def stop_consuming(self) -> None:
        """Stop taking messages (graceful shutdown); bindings stay until the connection closes."""
        if self.connected:
            await self.consumer.cancel()

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
        except asyncio.CancelledError:
            # The subscription went (unsubscribed, client gone) while its binding was being made: no one holds
            # this reference, so it is given back here, or the binding stayed for good (a client could leave
            # any number of patterns bound, `#` among them, by unsubscribing right after subscribing).
            self.release(exchange, key)
            raise

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
        if not self.connected:
            raise ConnectionError("no queue")
        exchange, key = k
        if k in self.wanted and k not in self.bound:
            await self.consumer.bind(exchange, key)
            self._bound_event.set()
        elif k not in self.wanted and k in self.bound:
            await self.consumer.unbind(exchange, key)

    # ---- connection ---------------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        lost_at: datetime | None = None
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                delay = self.backoff.next_delay()
                log.warning("broker connection failed: %s; retrying in %.1f s", exc, delay)
                await self._drop_connection()
                await asyncio.sleep(delay)
                continue
            self.backoff.reset()
            self._connected.set()
            self._bound_event.set()
            if lost_at is not None:
                log.info("broker connection restored; %d bindings restored", len(self.bound))
                self.on_restored(lost_at, utcnow())
            self.connected_once.set()
            self._dirty_event.set()
            await self.consumer.closed()
            self._connected.clear()
            self.dead_letters.attach(None)
            if self._stopping:
                return
            lost_at = utcnow()
            log.warning("broker connection lost; reconnecting")
            await self._drop_connection()

    async def _connect(self) -> None:
        # A plain connection: this link reconnects itself, to report the outage to the clients.
        connection = await connect(self.url, name=f"tributary-stream ({self.queue_name})", robust=False)
        self._connection = connection
        # The exchanges first: the link may connect before the service declared them.
        dead_channel = await connection.channel(publisher_confirms=True)
        await declare(dead_channel, *STREAM_EXCHANGES)
        dead = DeadLetters(dead_channel)
        await dead.start(connection)
        # Everything wanted is bound before messages flow, and before the outage is reported.
        await self.consumer.start(connection, bindings=list(self.wanted), consume=False)
        self.dead_letters.attach(dead)
        await self.consumer.consume()

    async def _drop_connection(self) -> None:
        self.dead_letters.attach(None)
        conn, self._connection = self._connection, None
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
