"""The ingest engine: the broker and Memcached adapters, the control queue, and one served source each."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from opentelemetry import trace

from tributary_common.amqp import (
    CONTROL,
    EXCHANGES,
    ConfirmedPublisher,
    Consumer,
    connect_retrying,
    ingest_instance_queue,
    source_key,
    source_rpc_queue,
)
from tributary_common.backoff import Backoff
from tributary_common.control import Demand
from tributary_common.deadletters import DeadLetters
from tributary_common.heartbeat import Heartbeat

from .browsing import Browser
from .control_messages import ControlDeadLetters, Unusable, decode
from .lease_thread import LeaseThread
from .leases import Leases
from .metrics import IngestMetrics
from .publisher import SamplePublisher, outgoing
from .registry import configure_sources
from .sdk import Connector
from .served_source import ServedSource
from .settings import IngestSettings

log = logging.getLogger(__name__)


# Publishes awaiting their confirm at once, all sources together. Each sid has at most one batch in flight, so this
# bounds only an instance publishing more sids at once (faststream had no bound); the throughput bench's widest
# case (1,000 sids) stays below it.
PUBLISH_WINDOW = 1024


class Engine:
    def __init__(
        self,
        settings: IngestSettings,
        connectors: Mapping[str, type[Connector[Any]]],
        *,
        tracer: trace.Tracer | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.connectors = configure_sources(dict(connectors), settings)  # bound to the operator's limits
        self.metrics = metrics or IngestMetrics()
        self.tracer = tracer or trace.get_tracer("tributary_ingest")
        self.connection: AbstractConnection | None = None
        # Samples, announcements and browse replies, each confirmed by the broker.
        self.publisher = ConfirmedPublisher(window=PUBLISH_WINDOW, timeout_s=settings.publish_timeout_s)
        self.lease_io = LeaseThread(
            settings.memcached_host, settings.memcached_port, settings.cache_namespace, settings.memcached_pool_size
        )
        self._renewals: list[Future[None]] = []
        self.runtimes: dict[str, ServedSource] = {}  # by source name
        self.started = asyncio.Event()
        self.failed: BaseException | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._announcer: Heartbeat | None = None
        self.control: Consumer | None = None
        self.dead = ControlDeadLetters(self.queue_name, self.metrics)

    @property
    def queue_name(self) -> str:
        return ingest_instance_queue(self.settings.instance_id).name

    async def start(self) -> None:
        """Connect (retrying with backoff until the broker answers), then serve every source."""
        await self.lease_io.start()
        backoff = Backoff(self.settings.backoff_min_s, min(self.settings.backoff_max_s, 10.0))
        connection = await connect_retrying(self.settings.amqp_url, name=self.settings.instance_id, backoff=backoff)
        self.connection = connection
        await self.publisher.start(connection, *EXCHANGES)
        samples = SamplePublisher(
            self.publisher, self.tracer, app_id=self.settings.instance_id, persistent=self.settings.publish_persistent
        )
        for name, cls in self.connectors.items():
            leases = Leases(self.lease_io.cache, name, self.settings.instance_id, self.settings.lease_ttl_s)
            served = ServedSource(
                name,
                cls,
                settings=self.settings,
                leases=leases,
                lease_io=self.lease_io,
                publisher=samples,
                metrics=self.metrics,
            )
            try:
                await served.start()
            except Exception:  # one broken connector must not keep the others down
                log.exception("connector %s failed to start; not serving it", name)
                continue
            self.runtimes[name] = served
        # Demand for the sources served, and peers' announcements of them (for a fair split of the leases).
        spec = ingest_instance_queue(self.settings.instance_id, tuple(self.runtimes))
        self.control = Consumer(spec, self._on_control, no_ack=True)
        await self.control.start(connection, consume=False)
        # Dead letters on a confirmed channel of their own (robust: restored with the connection), ready before
        # the first control message arrives.
        sender = DeadLetters(await connection.channel(publisher_confirms=True))
        await sender.start(connection)
        self.dead.sender = sender
        await self.control.consume()
        for name, served in self.runtimes.items():
            browser = Browser(
                name, served.connector, served.secrets, self.settings.instance_id, self.settings.browse_timeout_s
            )
            # Shared by the instances serving the source (one answers), gone with the last of them.
            browsing = Consumer(source_rpc_queue(name), functools.partial(self._on_browse, browser), no_ack=True)
            await browsing.start(connection)
        for served in self.runtimes.values():
            self._loops.append(asyncio.create_task(self._reconcile_loop(served), name=f"reconcile:{served.name}"))
            self._renewals.append(self.lease_io.submit(served.renew_forever()))
        self._announcer = Heartbeat(self._announce, interval_s=self.settings.announce_interval_s, name="announce")
        self._announcer.start()
        self.started.set()
        log.info("ingest %s serving %s", self.settings.instance_id, ", ".join(self.runtimes) or "nothing")

    async def _on_control(self, message: AbstractIncomingMessage) -> None:
        try:
            decoded = decode(message)
        except Unusable as exc:
            await self.dead.send(message, exc.reason, exc.detail)
            return
        served = self.runtimes.get(decoded.source)
        if served is None:
            return  # a source this instance does not serve (its queue binds only the ones it does)
        try:
            if isinstance(decoded, Demand):
                served.on_demand(decoded)
            else:
                served.on_announcement(decoded)
        except Exception as exc:  # noqa: BLE001 - a bug: logged, and the message kept where an operator sees it
            await self.dead.failed(message, exc)

    async def _on_browse(self, browser: Browser, message: AbstractIncomingMessage) -> None:
        if not message.reply_to:
            return
        reply = await browser.rpc.dispatch(message.body)
        answer = outgoing(
            reply, app_id=self.settings.instance_id, persistent=False, correlation_id=message.correlation_id
        )
        try:
            await self.publisher.publish_message("", message.reply_to, answer)
        except Exception as exc:  # noqa: BLE001 - the caller times out and says so
            log.warning("replying to a browse of %s failed: %s", browser.source, exc)

    async def _reconcile_loop(self, served: ServedSource) -> None:
        # Not a `Heartbeat`: a wake during a reconcile is cleared after it (that reconcile saw the change), where
        # a Heartbeat would run one more.
        while True:
            try:
                await served.reconcile()
            except Exception:  # Memcached may be down; try again next tick
                self.metrics.errors.labels(served.name, "lease").inc()
                log.warning("reconcile of %s failed", served.name, exc_info=True)
            served.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.reconcile_interval_s):
                    await served.wake.wait()

    async def _announce(self, leaving: bool = False) -> None:
        interval = self.settings.announce_interval_s
        for served in self.runtimes.values():
            announcement = served.announcement(interval, leaving=leaving).model_dump_json().encode()
            message = outgoing(announcement, app_id=self.settings.instance_id, persistent=False)
            try:
                await self.publisher.publish_message(CONTROL, source_key(served.name), message)
            except Exception as exc:  # noqa: BLE001 - the next one will do
                log.warning("announcing %s failed: %s", served.name, exc)

    async def stop(self) -> None:
        """Stop consuming demand, stop every read, drain the buffers, release the leases, close the connections."""
        if self.control is not None:
            await self.control.cancel()
        if self._announcer is not None:
            await self._announcer.stop()
            # Before the leases go back: the peers then take them by shares that no longer count this instance.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._announce(leaving=True)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        # Leases stay renewed while the buffers drain, so nobody takes over before the watermark is written.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.shutdown_grace_seconds):
                await asyncio.gather(*(r.stop() for r in self.runtimes.values()), return_exceptions=True)
        for renewal in self._renewals:
            renewal.cancel()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()  # its channels (consumers, publisher, dead letters) with it
        await self.lease_io.stop()

    # -- health ----------------------------------------------------------------------------------------------

    async def check_started(self) -> None:
        if not self.started.is_set():
            raise RuntimeError("still starting (connecting to the broker)")

    async def check_broker(self) -> None:
        # Connected, or back within 2 s (a robust connection reconnects by itself).
        connection = self.connection
        if connection is None:
            raise ConnectionError("RabbitMQ does not answer")
        try:
            await asyncio.wait_for(connection.connected.wait(), 2.0)
        except TimeoutError:
            raise ConnectionError("RabbitMQ does not answer") from None

    async def check_cache(self) -> None:
        await self.lease_io.run(self.lease_io.cache.ping())

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": self.settings.instance_id,
            "started": self.started.is_set(),
            "sources": {name: r.status() for name, r in self.runtimes.items()},
        }
