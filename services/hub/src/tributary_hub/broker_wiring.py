"""The API process's wiring to the broker, on one connection: the hub's RPC server, the source announcements,
what the hub sends on `tributary.control` (unitop changes, demand heartbeats) and its RPC calls to ingest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from tributary_common.amqp import (
    CONTROL,
    EXCHANGES,
    HUB_SOURCES,
    RPC_HUB,
    ConfirmedPublisher,
    Consumer,
    RpcClient,
    connect_robust,
    ensure_queues,
    serve_rpc,
)
from tributary_common.control import ControlMessage, SourceAnnouncement, control_key
from tributary_common.rpc import RpcServer

from .apikeys import ApiKeyService
from .history import EventHistory
from .rpc_handlers import register_rpc
from .series import SeriesStore
from .sources import SourceRegistry
from .unitops import UnitopService

log = logging.getLogger("tributary_hub.runtime")  # the name operators know these messages by

SOURCES_QUEUE = HUB_SOURCES.name
# Control messages in flight at once (each awaits its confirm).
CONTROL_WINDOW = 256


class _InFlight:
    """Messages being handled, so that a stop lets them finish (within the grace period) before closing."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def track(self) -> AsyncIterator[None]:
        self.count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def idle(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)


class _TrackedRpcServer(RpcServer):
    def __init__(self, concurrency: int, in_flight: _InFlight) -> None:
        super().__init__(concurrency=concurrency)
        self._in_flight = in_flight

    async def handle(self, body: bytes) -> bytes:
        async with self._in_flight.track():
            return await super().handle(body)


class BrokerWiring:
    def __init__(
        self,
        amqp_url: str,
        *,
        graceful_s: float,
        rpc_concurrency: int,
        history: EventHistory,
        series: SeriesStore,
        unitops: UnitopService,
        apikeys: ApiKeyService,
        sources: SourceRegistry,
    ) -> None:
        self.amqp_url = amqp_url
        self.graceful_s = graceful_s
        self.sources = sources
        self._in_flight = _InFlight()
        self.rpc = _TrackedRpcServer(rpc_concurrency, self._in_flight)
        register_rpc(self.rpc, history, series, unitops, apikeys)
        # Confirmed, not persistent: control messages are heartbeats and notices, for queues that come and go.
        self.publisher = ConfirmedPublisher(window=CONTROL_WINDOW, timeout_s=10.0)
        self.client = RpcClient()
        self._connection: AbstractRobustConnection | None = None
        self._consumers: list[Consumer] = []

    async def start(self) -> None:
        self._connection = connection = await connect_robust(self.amqp_url, name="hub")
        await self.publisher.start(connection, *EXCHANGES)  # every exchange, declared before anything uses it
        await self.client.start(connection)
        self._consumers.append(await serve_rpc(self.rpc, connection, RPC_HUB))
        await ensure_queues(connection, HUB_SOURCES)  # quorum, moved from a classic one (amqp/upgrade)
        announcements = Consumer(HUB_SOURCES, self._on_announcement)
        await announcements.start(connection)
        self._consumers.append(announcements)

    async def _on_announcement(self, message: AbstractIncomingMessage) -> None:
        # Acked once handled, rejected (not requeued) when handling fails.
        async with self._in_flight.track():
            try:
                await self._record(message.body)
            except Exception as exc:  # noqa: BLE001 - the next announcement (every few seconds) says it again
                log.warning("recording a source announcement failed: %s", exc)
                await message.reject(requeue=False)
                return
            await message.ack()

    async def _record(self, body: bytes) -> None:
        try:
            announcement = SourceAnnouncement.model_validate_json(body)
        except ValueError:
            log.warning("ignoring a malformed source announcement")
            return
        await self.sources.record(announcement)

    async def publish_control(self, message: ControlMessage) -> None:
        await self.publisher.publish(
            CONTROL, control_key(message), message.model_dump_json().encode(), persistent=False
        )

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """Connected, or connected again within `timeout_s` (a robust connection reconnects by itself)."""
        if self._connection is None:
            return False
        try:
            await asyncio.wait_for(self._connection.connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Stop taking requests and announcements, let those in hand finish (within the grace), then close."""
        for consumer in self._consumers:
            await consumer.cancel()
        await self._in_flight.idle(self.graceful_s)
        for consumer in self._consumers:
            await consumer.close()
        self._consumers.clear()
        await self.client.close()
        await self.publisher.close()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
