"""The composition root: builds every adapter and service of a hub process from `HubSettings`, starts them in
order and stops them in reverse. `api=True` for `serve` (HTTP, RPC, control, demand), recorders as configured;
`api=False` for `recorder` (the recorders and retention alone)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from tributary_common.amqp import connect_robust
from tributary_common.backoff import Backoff
from tributary_common.cache import Cache
from tributary_common.control import Demand, UnitopChange
from tributary_common.health import ReadinessCheck
from tributary_common.http_auth import Authenticator
from tributary_common.mongo import Retention, connect, ping

from .amqp import EventPublisher, upgrade_topology
from .apikeys import ApiKeyService
from .audit import AuditLog
from .broker_wiring import BrokerWiring
from .deadletters import DeadLetterStore
from .demand import DemandLoop
from .documents import ALL_DOCUMENTS, DeadLetterDoc, TopicDoc
from .event_retention import EventRetention
from .event_store import EventStore
from .historian.reads import Historian
from .history import EventHistory
from .partitions import Partitions, samples_layout
from .publishing import EventFactory
from .queue_depth import QueueDepth
from .recorder import Recorder
from .recorders import make_recorders
from .sample_retention import SampleRetention
from .sample_store import SampleStore
from .samples_history import SampleHistory
from .series import SeriesStore
from .settings import HubSettings
from .sources import SourceRegistry
from .tokens import CachingJwtVerifier
from .topics import TopicService
from .unitop_samples import UnitopSamples
from .unitops import UnitopService

log = logging.getLogger("tributary_hub.runtime")  # the name operators know these messages by


@dataclass
class Hub:
    settings: HubSettings
    api: bool = True
    recorders_enabled: bool = True
    mongo: AsyncMongoClient[Any] | None = None
    cache: Cache | None = None
    broker: BrokerWiring | None = None
    publisher: EventPublisher | None = None
    recorders: list[Recorder] = field(default_factory=list)
    retention: list[Retention] = field(default_factory=list)
    demand: DemandLoop | None = None
    _recorder_connection: AbstractRobustConnection | None = None
    queue_depth: QueueDepth | None = None
    started: bool = False  # start() completed: everything connected, indexes created

    # Services (set by start)
    topics: TopicService = field(init=False)
    events: EventFactory = field(init=False)
    history: EventHistory = field(init=False)
    event_store: EventStore = field(init=False)
    samples: SampleHistory = field(init=False)
    sample_store: SampleStore = field(init=False)
    sources: SourceRegistry = field(init=False)
    unitops: UnitopService = field(init=False)
    apikeys: ApiKeyService = field(init=False)
    audit: AuditLog = field(init=False)
    auth: Authenticator = field(init=False)
    deadletters: DeadLetterStore = field(init=False)
    unitop_samples: UnitopSamples = field(init=False)
    series: SeriesStore = field(init=False)
    historian: Historian = field(init=False)

    async def start(self) -> None:
        s = self.settings
        self.mongo = await self._connect_mongo()
        self.cache = Cache(s.memcached_host, s.memcached_port, s.cache_namespace, pool_size=s.memcached_pool_size)
        partitions = Partitions(self.mongo[s.mongodb_db], s.storage_layout)
        await partitions.prepare()
        topics_coll = TopicDoc.get_pymongo_collection()
        self.event_store = EventStore(partitions, topics_coll)
        self.topics = TopicService(
            self.cache,
            self.event_store,
            max_schema_bytes=s.max_schema_bytes,
            max_schema_depth=s.max_schema_depth,
            cache_ttl_s=s.topic_cache_ttl_s,
            local_ttl_s=s.topic_local_ttl_s,
            id_shards=s.event_id_shards,
        )
        self.events = EventFactory(self.topics, max_event_bytes=s.max_event_bytes)
        self.sample_store = SampleStore(self.mongo[s.mongodb_db], samples_layout(s.storage_layout))
        await self.sample_store.create_indexes()
        letters_coll = DeadLetterDoc.get_pymongo_collection()
        self.deadletters = DeadLetterStore(letters_coll)
        self.history = EventHistory(
            partitions, topics_coll, chunk_rows=s.export_chunk_rows, latest_max_subjects=s.latest_max_subjects
        )
        self.samples = SampleHistory(self.sample_store, chunk_rows=s.export_chunk_rows)
        self.unitop_samples = UnitopSamples(
            self.samples,
            chunk_rows=s.export_chunk_rows,
            aligned_max_points=s.aligned_max_points,
            grid_max_values=s.grid_max_values,
        )
        self.series = self.sample_store
        self.historian = Historian(self.series, block_cells=s.historian_block_cells)
        self.sources = SourceRegistry(s.egress_policy())
        self.unitops = UnitopService(self.sources, self._notify_unitop)
        self.apikeys = ApiKeyService(s.api_key_cache_s)
        self.audit = AuditLog()

        if self.api:
            # Only the API verifies tokens: the recorder process has no secret to check.
            jwt = CachingJwtVerifier.from_settings(s)
            self.auth = Authenticator(jwt, enabled=s.auth_enabled, api_keys=self.apikeys.verify)
            self.publisher = EventPublisher(s.amqp_url, window=s.publish_window, timeout_s=s.publish_timeout_s)
            await self.publisher.start()
            self.broker = self._make_broker()
            await self.broker.start()
            if s.demand_enabled:
                self.demand = DemandLoop(
                    self.unitops,
                    self._send_demand,
                    requester=s.instance_id,
                    interval_s=s.demand_interval_s,
                    ttl_s=s.demand_ttl_s,
                )
                self.demand.start()
        if self.recorders_enabled:
            interval = s.retention_sweep_interval_s
            retention = EventRetention(partitions, self.history.reader, sweep_interval_s=interval)
            await retention.start()
            self.retention.append(retention)
            samples = SampleRetention(
                self.sample_store,
                s.samples_retention_days,
                s.samples_summary_retention_days,
                sweep_interval_s=interval,
            )
            await samples.start()
            self.retention.append(samples)
            self._recorder_connection = await connect_robust(s.amqp_url, name="hub-recorders")
            await upgrade_topology(self._recorder_connection)
            self.recorders = make_recorders(s, self.event_store, self.sample_store, letters_coll)
            for recorder in self.recorders:
                await recorder.start(self._recorder_connection)
            self.queue_depth = QueueDepth()
            self.queue_depth.start(self._recorder_connection)
        self.started = True
        log.info("hub started (api=%s, recorders=%s)", self.api, self.recorders_enabled)

    async def _connect_mongo(self) -> AsyncMongoClient[Any]:
        """Connect and create indexes, retrying while the database is not reachable yet (or drops us)."""
        s = self.settings
        deadline = asyncio.get_running_loop().time() + s.startup_timeout_s
        backoff = Backoff(0.2, 5.0, jitter=False)
        while True:
            try:
                return await connect(
                    s.mongodb_url,
                    s.mongodb_db,
                    ALL_DOCUMENTS,
                    timeout_ms=s.mongodb_timeout_ms,
                    options=s.mongodb_options(),
                )
            except PyMongoError as exc:
                delay = backoff.next_delay()
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                log.warning("database not ready (%s: %s); retrying in %.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    def _make_broker(self) -> BrokerWiring:
        s = self.settings
        return BrokerWiring(
            s.amqp_url,
            graceful_s=s.shutdown_grace_seconds,
            rpc_concurrency=s.rpc_concurrency,
            history=self.history,
            series=self.series,
            unitops=self.unitops,
            apikeys=self.apikeys,
            sources=self.sources,
        )

    async def _notify_unitop(self, change: UnitopChange) -> None:
        if self.broker is not None:
            await self.broker.publish_control(change)
        if self.demand is not None:
            self.demand.poke()

    async def _send_demand(self, demand: Demand) -> None:
        assert self.broker is not None
        await self.broker.publish_control(demand)

    async def stop(self) -> None:
        """Reverse order: stop taking work (RPC, control, demand), drain the recorders, then close."""
        if self.demand is not None:
            await self.demand.stop()
        if self.broker is not None:
            await self.broker.stop()
        if self.queue_depth is not None:
            await self.queue_depth.stop()
        for recorder in self.recorders:
            await recorder.stop(drain_timeout_s=self.settings.shutdown_grace_seconds / 2)
        if self._recorder_connection is not None:
            await self._recorder_connection.close()
        for retention in self.retention:
            await retention.stop()
        if self.publisher is not None:
            await self.publisher.stop()
        if self.cache is not None:
            await self.cache.close()
        if self.mongo is not None:
            await self.mongo.close()
        log.info("hub stopped")

    # Readiness checks

    def readiness(self) -> dict[str, ReadinessCheck]:
        """What `/readyz` checks: only what this process cannot serve without. The API alone (recorders in
        their own Deployment) needs the broker to publish, nothing else: topics fall back from Memcached to the
        database, and a database away is a 503 per request that needs it, not a reason to take every API pod out
        of the Service. A process that records cannot record without the database and its consumers."""
        checks: dict[str, ReadinessCheck] = {"started": self.check_started, "broker": self.check_broker}
        if self.recorders_enabled:
            checks["mongodb"] = self.check_mongodb
            checks["recorders"] = self.check_recorders
        return checks

    async def check_started(self) -> None:
        # Until then the database (indexes) or the broker is still being reached: alive, not ready.
        if not self.started:
            raise ConnectionError("starting: connecting to the database and the broker")

    async def check_broker(self) -> None:
        if self.publisher is not None and not self.publisher.connected:
            raise ConnectionError("publisher connection closed")
        if self.broker is not None and not await self.broker.ping(timeout_s=2):
            raise ConnectionError("broker does not answer")
        if self._recorder_connection is not None and self._recorder_connection.is_closed:
            raise ConnectionError("recorder connection closed")

    async def check_recorders(self) -> None:
        stopped = [r.kind for r in self.recorders if not await r.alive()]
        if stopped:
            raise ConnectionError(f"recorders not consuming: {', '.join(stopped)}")

    async def check_mongodb(self) -> None:
        assert self.mongo is not None
        await ping(self.mongo)

    async def check_memcached(self) -> None:
        assert self.cache is not None
        await self.cache.ping()
