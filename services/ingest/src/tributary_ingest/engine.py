"""The ingest engine: the broker and Memcached adapters, the control queue, and one served source each."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from faststream.rabbit import RabbitBroker, RabbitQueue
from opentelemetry import trace

from tributary_common.control import Demand
from tributary_common.deadletters import DeadLetters
from tributary_common.exchanges import CONTROL, declare_exchanges, demand_key, source_key
from tributary_common.rpc_contracts import source_queue

from .backoff import Backoff
from .browsing import Browser
from .control_messages import ControlDeadLetters, Unusable, decode
from .lease_thread import LeaseThread
from .leases import Leases
from .metrics import IngestMetrics
from .publisher import SamplePublisher
from .registry import configure_sources
from .sdk import Connector
from .served_source import ServedSource
from .settings import IngestSettings

log = logging.getLogger(__name__)


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
        self.broker = RabbitBroker(settings.amqp_url, logger=None, app_id=settings.instance_id)
        self.lease_io = LeaseThread(
            settings.memcached_host, settings.memcached_port, settings.cache_namespace, settings.memcached_pool_size
        )
        self._renewals: list[Future[None]] = []
        self.runtimes: dict[str, ServedSource] = {}  # by source name
        self.started = asyncio.Event()
        self.failed: BaseException | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._consumer_tag: str | None = None
        self.dead = ControlDeadLetters(self.queue_name, self.metrics)
        self._queue: Any = None

    @property
    def queue_name(self) -> str:
        return f"tributary.ingest.{self.settings.instance_id}"

    async def start(self) -> None:
        """Connect (retrying with backoff until the broker answers), then serve every source."""
        await self.lease_io.start()
        await self._connect()
        await declare_exchanges(self.broker)
        publisher = SamplePublisher(
            self.broker,
            self.tracer,
            persistent=self.settings.publish_persistent,
            timeout_s=self.settings.publish_timeout_s,
        )
        for name, cls in self.connectors.items():
            leases = Leases(self.lease_io.cache, name, self.settings.instance_id, self.settings.lease_ttl_s)
            served = ServedSource(name, cls, self.settings, leases, self.lease_io, publisher, self.metrics)
            try:
                await served.start()
            except Exception:  # one broken connector must not keep the others down
                log.exception("connector %s failed to start; not serving it", name)
                continue
            self.runtimes[name] = served
        control = await self.broker.declare_exchange(CONTROL)
        self._queue = await self.broker.declare_queue(RabbitQueue(self.queue_name, exclusive=True, auto_delete=True))
        # On the queue's channel (publisher confirms on): a robust one, restored with the connection.
        sender = DeadLetters(self._queue.channel)
        await sender.start()
        self.dead.sender = sender
        for name in self.runtimes:
            await self._queue.bind(control, routing_key=demand_key(name))
            # Peers' announcements tell each instance how many share a source, for a fair split of the leases.
            await self._queue.bind(control, routing_key=source_key(name))
        self._consumer_tag = await self._queue.consume(self._on_control, no_ack=True)
        for name, served in self.runtimes.items():
            browser = Browser(
                name, served.connector, served.secrets, self.settings.instance_id, self.settings.browse_timeout_s
            )
            # Shared by the instances serving the source (one answers), gone with the last of them.
            queue = await self.broker.declare_queue(RabbitQueue(source_queue(name), auto_delete=True))
            await queue.consume(functools.partial(self._on_browse, browser), no_ack=True)
        for served in self.runtimes.values():
            self._loops.append(asyncio.create_task(self._reconcile_loop(served), name=f"reconcile:{served.name}"))
            self._renewals.append(self.lease_io.submit(served.renew_forever()))
        self._loops.append(asyncio.create_task(self._announce_loop(), name="announce"))
        self.started.set()
        log.info("ingest %s serving %s", self.settings.instance_id, ", ".join(self.runtimes) or "nothing")

    async def _connect(self) -> None:
        backoff = Backoff(self.settings.backoff_min_s, min(self.settings.backoff_max_s, 10.0))
        while True:
            try:
                await self.broker.connect()
                return
            except Exception as exc:  # noqa: BLE001 - keep trying; /readyz says what is wrong meanwhile
                delay = backoff.next_delay()
                log.warning("broker not reachable (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

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
        try:
            await self.broker.publish(
                reply,
                routing_key=message.reply_to,
                correlation_id=message.correlation_id,
                content_type="application/json",
                timeout=self.settings.publish_timeout_s,
            )
        except Exception as exc:  # noqa: BLE001 - the caller times out and says so
            log.warning("replying to a browse of %s failed: %s", browser.source, exc)

    async def _reconcile_loop(self, served: ServedSource) -> None:
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

    async def _announce_loop(self) -> None:
        interval = self.settings.announce_interval_s
        while True:
            for served in self.runtimes.values():
                try:
                    await self.broker.publish(
                        served.announcement(interval).model_dump_json().encode(),
                        exchange=CONTROL,
                        routing_key=source_key(served.name),
                        content_type="application/json",
                        mandatory=False,
                        timeout=self.settings.publish_timeout_s,
                    )
                except Exception as exc:  # noqa: BLE001 - the next one will do
                    log.warning("announcing %s failed: %s", served.name, exc)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        """Stop consuming demand, stop every read, drain the buffers, release the leases, close the connections."""
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
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
        with contextlib.suppress(Exception):
            await self.broker.stop()
        await self.lease_io.stop()

    # -- health ----------------------------------------------------------------------------------------------

    async def check_started(self) -> None:
        if not self.started.is_set():
            raise RuntimeError("still starting (connecting to the broker)")

    async def check_broker(self) -> None:
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("RabbitMQ does not answer")

    async def check_cache(self) -> None:
        await self.lease_io.run(self.lease_io.cache.ping())

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": self.settings.instance_id,
            "started": self.started.is_set(),
            "sources": {name: r.status() for name, r in self.runtimes.items()},
        }
