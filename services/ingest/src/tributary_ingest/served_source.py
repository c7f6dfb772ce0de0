"""One source served on one instance: demand in, leases taken by fair share, the connector's reads, samples out.

This is the framework side of the SDK (the connector sees only `subscribe`/`unsubscribe` and a `Sink`), composed
of: `demand_intake` (what is demanded), `fair_share` (what this instance takes and what it hands over),
`ownership` (the leases held and their reads), `lease_renewal` (on the lease thread) and `sample_sink` (samples
in, batches published).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from tributary_common.control import Demand, SourceAnnouncement
from tributary_common.timeutil import utcnow

from .admission import SampleAdmission
from .demand_intake import DemandIntake
from .fair_share import FairShare
from .lease_renewal import LeaseRenewal
from .lease_thread import LeaseThread
from .leases import Leases
from .metrics import IngestMetrics
from .owned import Owned
from .ownership import Ownership
from .publisher import SamplePublisher
from .refusals import RefusalLog
from .sample_sink import WARN_EVERY_S, PublishedSamples, SampleSink
from .sdk import Connector
from .secret_store import SecretStore
from .settings import IngestSettings

log = logging.getLogger(__name__)


class ServedSource:
    """Driven by the engine: demand and announcements in, `reconcile()` ticks, `renew_forever()` on the lease loop."""

    def __init__(
        self,
        name: str,
        connector_cls: type[Connector[Any]],
        *,
        settings: IngestSettings,
        leases: Leases,
        lease_io: LeaseThread,
        publisher: SamplePublisher,
        metrics: IngestMetrics,
    ) -> None:
        self.name = name
        self.capacity = int(settings.capacity.get(name, connector_cls.capacity))
        self.settings = settings
        self.leases = leases
        self.lease_io = lease_io
        self.metrics = metrics
        self.wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.secrets = SecretStore(settings.secrets_dir)
        self.demand = DemandIntake(name, connector_cls, self.secrets, metrics)
        # Hysteresis of the rebalancing: one lease TTL between sheddings, as long as a handover may take.
        # A peer ticks at least once per reconcile interval: three of them to take a free sid before we do.
        self.fair = FairShare(
            settings.instance_id, self.capacity, settings.lease_ttl_s, 3 * settings.reconcile_interval_s
        )
        self.owned: dict[str, Owned] = {}
        self.published = PublishedSamples(name, publisher, metrics)
        refusals = RefusalLog(name, metrics, WARN_EVERY_S, self._loop.time)
        self.sink = SampleSink(name, self.owned, settings.max_buffer_per_sid, metrics, refusals, self._fail, self._loop)
        self.connector = connector_cls(self.sink)
        admission = SampleAdmission(settings.max_sample_age_s, settings.max_sample_skew_s)
        self.ownership = Ownership(
            name,
            self.owned,
            self.connector,
            settings,
            leases,
            lease_io,
            metrics,
            admission,
            refusals,
            self.published.publish,
        )
        self.renewal = LeaseRenewal(
            name, self.owned, leases, settings.renew_interval_s, self.ownership.lost, self._loop
        )
        metrics.capacity.labels(name).set(self.capacity)
        metrics.leases_held.labels(name).set(0)
        # Every per-source series exists from the start (at 0), so dashboards and alerts see it before it moves.
        for counter in (metrics.reads, metrics.leases_lost, metrics.leases_handed_over):
            counter.labels(name)

    def _fail(self, sid: str, error: BaseException) -> None:
        # Late-bound: the sink (and the connector holding it) exists before the ownership that handles failures.
        self.ownership.fail(sid, error)

    def on_demand(self, demand: Demand) -> None:
        if self.demand.on_demand(demand, self._loop.time()):
            self.wake.set()

    def on_announcement(self, announcement: SourceAnnouncement) -> None:
        self.fair.on_announcement(announcement, self._loop.time())

    async def reconcile(self) -> None:
        """One tick: release lapsed, retry failed, shed what is over the fair share, acquire free sids up to the
        capacity and the fair share."""
        now = self._loop.time()
        active = self.demand.tracker.active(now)
        self.metrics.demanded.labels(self.name).set(len(active))
        self.ownership.tick(self.demand.tracker, now)
        keeping = {sid: e.state for sid, e in self.owned.items() if sid in active and e.state != "releasing"}
        shed = self.fair.to_shed(keeping, len(active), now)
        if shed:
            log.info("%s: handing over %d of %d leases to %s", self.name, len(shed), len(keeping), self.fair.alive(now))
            self.ownership.shed(shed)
            self.metrics.leases_handed_over.labels(self.name).inc(len(shed))
        free = self.capacity - len(self.owned)
        candidates = [sid for sid in active if sid not in self.owned]
        skipped: dict[str, float] = {}
        if free > 0 and candidates:
            random.shuffle(candidates)  # instances racing for the same sids start at different ends
            holders = await self.lease_io.run(self.leases.holders(candidates))
            wanted, skipped = self.fair.choose(candidates, holders, len(self.owned), len(active), now)
            if wanted:
                taken = await self.lease_io.run(self.leases.acquire_many(wanted, free))
                for sid, watermark in taken.items():
                    params = self.demand.tracker.params(sid)
                    if sid in self.owned or params is None:  # cannot happen: reconcile is the only taker
                        continue
                    self.ownership.take(sid, params, watermark)
        self.fair.end_tick(skipped, now)
        self.demand.forget(now, self.settings.release_grace_s + 60.0, keep=set(self.owned))
        self.published.update_rate()

    async def renew_forever(self) -> None:
        """Runs on the lease thread's loop."""
        await self.renewal.forever()

    async def start(self) -> None:
        await self.connector.start()

    async def stop(self) -> None:
        """Graceful: stop every read, publish what is buffered, hand the leases back so others take over at once."""
        await self.ownership.stop()
        try:
            await self.connector.stop()
        except Exception:
            log.exception("stopping connector %s failed", self.name)

    def announcement(self, interval_s: float, *, leaving: bool = False) -> SourceAnnouncement:
        """What this instance serves; `leaving` (at shutdown) announces capacity 0, so the peers' fair shares leave
        it out at once and they take its leases as it hands them back."""
        capacity = 0 if leaving else self.capacity
        return SourceAnnouncement(
            source=self.name,
            instance_id=self.settings.instance_id,
            subscription_schema=self.demand.schema,
            capacity=capacity,
            free=max(0, capacity - len(self.owned)),
            leases=len(self.owned),
            ttl_s=3 * interval_s,
            sent_at=utcnow(),
        )

    def status(self) -> dict[str, Any]:
        now = self._loop.time()
        return {
            "capacity": self.capacity,
            "free": max(0, self.capacity - len(self.owned)),
            "peers": self.fair.alive(now),
            "target": self.fair.share(len(self.demand.tracker.active(now)), now),
            "demanded": len(self.demand.tracker.active(now)),
            "samples_published": self.published.count,
            "leases": {sid: e.state for sid, e in self.owned.items()},
            "failing": {sid: e.last_error for sid, e in self.owned.items() if e.state == "backoff"},
            "rejected": {sid: msg for sid, (msg, _) in self.demand.rejected.items()},
            "noncanonical": dict(self.demand.noncanonical),
        }
