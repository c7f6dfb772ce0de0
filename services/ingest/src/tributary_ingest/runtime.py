"""One source on one instance: demand in, leases, the connector's subscriptions, samples out.

This is the framework side of the SDK: the connector sees only `subscribe`/`unsubscribe` and a `Sink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tributary_common.canonical import canonical_sid
from tributary_common.control import Demand, SourceAnnouncement
from tributary_common.timeutil import utcnow

from .admission import BUFFER_FULL, Refusal, SampleAdmission
from .backoff import Backoff
from .demand import DemandTracker
from .lease_thread import LeaseThread
from .leases import Leases
from .metrics import IngestMetrics
from .pipeline import Row, SidPipeline
from .publisher import SamplePublisher
from .refusals import RefusalLog
from .sdk import BadParams, Connector, Quality, Refused, SampleValue, SecretRefused
from .secret_store import SecretStore
from .settings import IngestSettings

log = logging.getLogger(__name__)

UNSUBSCRIBE_TIMEOUT_S = 10.0
WARN_EVERY_S = 30.0


@dataclass
class Owned:
    """A sid this instance holds the lease of."""

    params: Any
    pipeline: SidPipeline
    backoff: Backoff
    state: str = "starting"  # starting | running | backoff | releasing
    retry_at: float = 0.0
    started_at: float = 0.0
    last_error: str | None = None
    wm_written: datetime | None = None
    last_warn_at: float = field(default=-1e9)
    # Live samples held while the history since the watermark is read (None: not backfilling).
    held: list[Row] | None = None


class SourceRuntime:
    """Implements the connector's `Sink`; driven by `reconcile()` and `renew()` ticks from the engine."""

    def __init__(
        self,
        name: str,
        connector_cls: type[Connector[Any]],
        settings: IngestSettings,
        leases: Leases,
        lease_io: LeaseThread,
        publisher: SamplePublisher,
        metrics: IngestMetrics,
    ) -> None:
        self.name = name
        self.connector_cls = connector_cls
        self.connector = connector_cls(self)
        self.settings = settings
        self.leases = leases
        self.lease_io = lease_io
        self.publisher = publisher
        self.metrics = metrics
        self.capacity = int(settings.capacity.get(name, connector_cls.capacity))
        self.tracker = DemandTracker()
        self.owned: dict[str, Owned] = {}
        self.rejected: dict[str, tuple[str, float]] = {}
        # The announced schema, from which the hub makes params canonical; demanded sid -> its canonical sid.
        self.schema = connector_cls.params_schema()
        self.noncanonical: dict[str, str] = {}
        self.wake = asyncio.Event()
        self.peers: dict[str, float] = {}  # other instances serving this source -> when their announcement lapses
        self._skipped: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._published = 0
        self._rate_at = time.monotonic()
        self._rate_count = 0
        self._loop = asyncio.get_running_loop()
        # Labelled children looked up once: labels() costs more than the increment on the per-batch path.
        self._m_batches = metrics.batches.labels(name)
        self._m_samples = metrics.samples.labels(name)
        self.admission = SampleAdmission(settings.max_sample_age_s, settings.max_sample_skew_s)
        self.refusals = RefusalLog(name, metrics, WARN_EVERY_S, self._loop.time)
        self.secrets = SecretStore(settings.secrets_dir)
        metrics.capacity.labels(name).set(self.capacity)
        metrics.leases_held.labels(name).set(0)
        # Every per-source series exists from the start (at 0), so dashboards and alerts see it before it moves.
        for counter in (metrics.reads, metrics.leases_lost):
            counter.labels(name)

    # -- Sink: what the connector calls -------------------------------------------------------------------------

    def emit(self, sid: str, t: datetime, v: SampleValue, q: Quality = None) -> None:
        entry = self.owned.get(sid)
        if entry is None or entry.state == "backoff":
            return  # a late sample after unsubscribe or a lost lease: somebody else reads this sid now
        if entry.held is not None:  # backfilling: live samples wait behind the history
            if len(entry.held) >= self.settings.max_buffer_per_sid:
                self.refusals.refused(sid, BUFFER_FULL)
            else:
                entry.held.append((t, v, q))
            return
        # Never raises: a bad time or value is refused and counted there, and the read goes on with the next one.
        entry.pipeline.add(t, v, q)

    async def room(self, sid: str) -> None:
        entry = self.owned.get(sid)
        if entry is not None:
            await entry.pipeline.room()

    def warn(self, sid: str, message: str) -> None:
        self.metrics.errors.labels(self.name, "data").inc()
        entry = self.owned.get(sid)
        now = self._loop.time()
        if entry is not None and now - entry.last_warn_at >= WARN_EVERY_S:
            entry.last_warn_at = now
            log.warning("%s/%s: %s", self.name, sid, message)

    def fail(self, sid: str, error: BaseException) -> None:
        entry = self.owned.get(sid)
        if entry is not None:
            self._spawn(self._on_failure(sid, entry, error))

    # -- demand --------------------------------------------------------------------------------------------------

    def on_demand(self, demand: Demand) -> None:
        now = self._loop.time()
        new = False
        for sub in demand.subscriptions:
            if self.tracker.knows(sub.sid):
                new |= self.tracker.heartbeat(sub.sid, self.tracker.params(sub.sid), demand.ttl_s, now)
                continue
            try:
                params = self.connector_cls.parse_params(sub.params, self.secrets)
            except BadParams as exc:
                if sub.sid not in self.rejected:
                    log.warning("rejected subscription %s/%s from %s: %s", self.name, sub.sid, demand.requester, exc)
                    kind = "secret" if isinstance(exc, SecretRefused) else "bad_params"
                    self.metrics.errors.labels(self.name, kind).inc()
                self.rejected[sub.sid] = (str(exc), now + demand.ttl_s)
                continue
            new |= self.tracker.heartbeat(sub.sid, params, demand.ttl_s, now)
            self._check_sid(sub.sid, sub.params, demand.requester)
        if new:
            self.wake.set()

    def _check_sid(self, sid: str, params: dict[str, Any], requester: str) -> None:
        """Served as demanded (the requester listens on that sid), but a sid that is not the canonical one of its
        params (a unitop stored before sids were canonical) may be a second read of a tag: say so, once."""
        try:
            canonical = canonical_sid(self.name, self.schema, params)
        except ValueError:
            return
        if canonical != sid and sid not in self.noncanonical:
            self.noncanonical[sid] = canonical
            log.warning(
                "%s/%s from %s is not the canonical sid of its params (%s): rewrite its unitop to read it once",
                self.name,
                sid,
                requester,
                canonical,
            )

    def on_announcement(self, announcement: SourceAnnouncement) -> None:
        if announcement.instance_id != self.settings.instance_id:
            self.peers[announcement.instance_id] = self._loop.time() + announcement.ttl_s

    def fair_share(self, demanded: int, now: float) -> int:
        """Demanded sids divided by the instances alive (by their announcements), rounded up."""
        alive = 1 + sum(1 for until in self.peers.values() if until > now)
        return -(-demanded // alive)

    # -- the reconcile tick: release lapsed, retry failed, acquire free ----------------------------------------

    async def reconcile(self) -> None:
        now = self._loop.time()
        active = self.tracker.active(now)
        self.metrics.demanded.labels(self.name).set(len(active))
        for sid, entry in list(self.owned.items()):
            lapsed = self.tracker.lapsed_since(sid, now)
            if lapsed is not None and lapsed >= self.settings.release_grace_s and entry.state != "releasing":
                entry.state = "releasing"
                self._spawn(self._release(sid, entry))
            elif entry.state == "backoff" and entry.retry_at <= now:
                entry.state = "starting"
                self._spawn(self._subscribe(sid, entry))
        free = self.capacity - len(self.owned)
        candidates = [sid for sid in active if sid not in self.owned]
        skipped: set[str] = set()
        if free > 0 and candidates:
            random.shuffle(candidates)  # instances racing for the same sids start at different ends
            holders = await self.lease_io.run(self.leases.holders(candidates))
            me = self.settings.instance_id
            share = self.fair_share(len(active), now)
            wanted: list[str] = []
            for sid in candidates:
                if holders.get(sid, me) != me:
                    continue
                # Beyond our fair share, leave a sid to the others for one tick; if nobody took it, take it.
                if len(self.owned) + len(wanted) >= share and sid not in self._skipped:
                    skipped.add(sid)
                    continue
                wanted.append(sid)
            if wanted:
                taken = await self.lease_io.run(self.leases.acquire_many(wanted, free))
                for sid, watermark in taken.items():
                    params = self.tracker.params(sid)
                    if sid in self.owned or params is None:  # cannot happen: reconcile is the only taker
                        continue
                    self._take(sid, params, watermark)
        self._skipped = skipped
        for peer in [p for p, until in self.peers.items() if until <= now]:
            del self.peers[peer]
        self.tracker.forget_lapsed(now, self.settings.release_grace_s + 60.0, keep=set(self.owned))
        for sid in [s for s, (_, exp) in self.rejected.items() if exp <= now]:
            del self.rejected[sid]
        for sid in [s for s in self.noncanonical if not self.tracker.knows(s)]:
            del self.noncanonical[sid]
        self._update_rate()

    def _take(self, sid: str, params: Any, watermark: datetime | None) -> None:
        checked = None if watermark is None else self.admission.time(watermark)
        if isinstance(checked, Refusal) and checked.reason == "too_far_ahead":
            # Left by a far-future sample before the time window existed: keeping it would drop every real one.
            log.warning("%s/%s: ignoring the stored watermark %s (in the future)", self.name, sid, watermark)
            watermark = None
        pipeline = SidPipeline(
            sid,
            self._publish,
            lambda refusal: self.refusals.refused(sid, refusal),
            max_size=self.settings.batch_max_size,
            max_delay_s=self.settings.batch_max_delay_s,
            max_buffer=self.settings.max_buffer_per_sid,
            retry=Backoff(0.2, self.settings.backoff_max_s),
            last_t=watermark,
            admission=self.admission,
        )
        pipeline.start()
        entry = Owned(params, pipeline, Backoff(self.settings.backoff_min_s, self.settings.backoff_max_s))
        entry.wm_written = watermark
        self.owned[sid] = entry
        self.metrics.leases_held.labels(self.name).set(len(self.owned))
        log.info("took the lease of %s/%s", self.name, sid)
        self._spawn(self._subscribe(sid, entry))

    async def _subscribe(self, sid: str, entry: Owned) -> None:
        entry.started_at = self._loop.time()
        since = self._backfill_since(entry)
        if since is not None:
            entry.held = []  # from the first live sample on, until the history is in
        try:
            await self.connector.subscribe(sid, entry.params)
        except Exception as exc:  # noqa: BLE001 - the connector's failure is retried with backoff
            entry.held = None
            await self._on_failure(sid, entry, exc)
            return
        if self.owned.get(sid) is not entry or entry.state != "starting":
            # Lost, released, or failed while subscribing: whatever cleaned up ran before this read existed.
            await self._unsubscribe(sid)
            return
        entry.state = "running"
        self.metrics.reads.labels(self.name).inc()
        if since is not None:
            await self._backfill(sid, entry, since)

    def _backfill_since(self, entry: Owned) -> datetime | None:
        """Where a (re)started read resumes: the watermark, no further back than `backfill_max_s`; None when the
        connector keeps no history or there is nothing to resume from."""
        last = entry.pipeline.last_t
        if last is None or self.settings.backfill_max_s <= 0 or not self.connector_cls.has_history():
            return None
        return max(last, utcnow() - timedelta(seconds=self.settings.backfill_max_s))

    async def _backfill(self, sid: str, entry: Owned, since: datetime) -> None:
        """Read the history from the watermark to now, then the live samples held meanwhile: those not after the
        last historical one are dropped by the pipeline, so the seam has neither a gap nor a duplicate."""
        until = utcnow()
        count = 0
        try:
            async with asyncio.timeout(self.settings.backfill_timeout_s):
                async for t, v, q in self.connector.history(sid, entry.params, since, until):
                    if self.owned.get(sid) is not entry or entry.state != "running":
                        return  # failed, lost or released meanwhile: the next read backfills again
                    entry.pipeline.add(t, v, q)
                    count += 1
                    await entry.pipeline.room()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - no history is no reason to stop the live read
            self.metrics.errors.labels(self.name, "refused" if isinstance(exc, Refused) else "backfill").inc()
            log.warning("backfill of %s/%s from %s failed: %s: %s", self.name, sid, since, type(exc).__name__, exc)
        finally:
            held, entry.held = entry.held or [], None
            if self.owned.get(sid) is entry:
                for row in held:
                    entry.pipeline.add(*row)
        log.info("backfilled %d samples of %s/%s since %s", count, self.name, sid, since)

    async def _on_failure(self, sid: str, entry: Owned, exc: BaseException) -> None:
        if self.owned.get(sid) is not entry or entry.state in ("backoff", "releasing"):
            return
        now = self._loop.time()
        if now - entry.started_at > self.settings.backoff_max_s:
            entry.backoff.reset()  # it ran fine for a long while: this is a new failure, not a streak
        delay = entry.backoff.next_delay()
        entry.state = "backoff"
        entry.retry_at = now + delay
        entry.last_error = f"{type(exc).__name__}: {exc}"
        self.metrics.errors.labels(self.name, "refused" if isinstance(exc, Refused) else "connector").inc()
        log.warning(
            "read of %s/%s failed (%s, failure %d); retrying in %.2f s",
            self.name,
            sid,
            entry.last_error,
            entry.backoff.failures,
            delay,
            exc_info=exc if entry.backoff.failures == 1 else None,
        )
        await self._unsubscribe(sid)

    async def _unsubscribe(self, sid: str) -> None:
        try:
            async with asyncio.timeout(UNSUBSCRIBE_TIMEOUT_S):
                await self.connector.unsubscribe(sid)
        except Exception:  # a connector that fails to stop must not stop the instance
            log.exception("unsubscribe of %s/%s failed", self.name, sid)

    async def _release(self, sid: str, entry: Owned, why: str = "demand lapsed") -> None:
        """Stop reading, publish what is buffered, give the lease back (demand lapsed, or shutdown)."""
        await self._unsubscribe(sid)
        await entry.pipeline.drain(timeout=self.settings.publish_timeout_s)
        if self.owned.get(sid) is not entry:
            return
        del self.owned[sid]
        self.metrics.leases_held.labels(self.name).set(len(self.owned))
        try:
            if entry.pipeline.published_t is not None:
                await self.lease_io.run(self._give_back(sid, entry.pipeline.published_t))
        except Exception:  # noqa: BLE001 - the lease then simply expires
            log.warning("releasing %s/%s failed; it expires on its own", self.name, sid)
        log.info("released %s/%s (%s)", self.name, sid, why)

    async def _give_back(self, sid: str, published_t: datetime | None) -> None:
        if published_t is not None:
            await self.leases.set_watermark(sid, published_t)
        await self.leases.release(sid)

    async def _drop(self, sid: str, entry: Owned) -> None:
        """The lease is gone: stop at once, forget the buffer."""
        if self.owned.get(sid) is entry:
            del self.owned[sid]
        self.metrics.leases_held.labels(self.name).set(len(self.owned))
        await entry.pipeline.close()
        await self._unsubscribe(sid)

    # -- renewals: run on the lease thread's loop, never waiting for this (possibly busy) loop ----------------

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.renew_interval_s)
            try:
                await self.renew()
            except Exception:
                log.exception("renewing leases of %s failed", self.name)

    async def renew(self) -> None:
        """One pass over the held leases (on the lease loop); a lease that cannot be renewed stops its read."""
        sem = asyncio.Semaphore(32)

        async def one(sid: str, entry: Owned) -> None:
            async with sem:
                try:
                    ok = await self.leases.renew(sid)
                except Exception as exc:  # noqa: BLE001 - cannot prove we hold it: stop
                    log.warning("renewing the lease of %s/%s failed: %s", self.name, sid, exc)
                    ok = False
                if not ok:
                    self._loop.call_soon_threadsafe(self._lost, sid, entry)
                    return
                wm = entry.pipeline.published_t
                if wm is not None and wm != entry.wm_written:
                    with contextlib.suppress(Exception):
                        await self.leases.set_watermark(sid, wm)
                        entry.wm_written = wm

        # list() of a dict of str keys runs without releasing the GIL: a consistent snapshot across threads.
        await asyncio.gather(*(one(sid, e) for sid, e in list(self.owned.items())))

    def _lost(self, sid: str, entry: Owned) -> None:
        if self.owned.get(sid) is entry:
            del self.owned[sid]  # at once: from here on, its samples are ignored
            self.metrics.leases_lost.labels(self.name).inc()
            self.metrics.errors.labels(self.name, "lease").inc()
            log.warning("lost the lease of %s/%s; stopped reading it", self.name, sid)
            self._spawn(self._drop(sid, entry))

    # -- publishing ------------------------------------------------------------------------------------------

    async def _publish(self, sid: str, rows: list[Row]) -> None:
        try:
            await self.publisher.publish(self.name, sid, rows)
        except Exception:
            self.metrics.errors.labels(self.name, "publish").inc()
            raise
        self._m_batches.inc()
        self._m_samples.inc(len(rows))
        self._published += len(rows)

    def _update_rate(self) -> None:
        now = time.monotonic()
        if now - self._rate_at >= 1.0:
            self.metrics.samples_per_s.labels(self.name).set(
                (self._published - self._rate_count) / (now - self._rate_at)
            )
            self._rate_at, self._rate_count = now, self._published

    @property
    def published(self) -> int:
        return self._published

    # -- lifecycle and reporting -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None] | Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.name, exc_info=task.exception())

    async def start(self) -> None:
        await self.connector.start()

    async def stop(self) -> None:
        """Graceful: stop every read, publish what is buffered, hand the leases back so others take over at once."""
        entries = list(self.owned.items())
        for _, entry in entries:
            entry.state = "releasing"
        await asyncio.gather(*(self._release(sid, e, "shutdown") for sid, e in entries), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.connector.stop()
        except Exception:
            log.exception("stopping connector %s failed", self.name)

    def announcement(self, interval_s: float) -> SourceAnnouncement:
        return SourceAnnouncement(
            source=self.name,
            instance_id=self.settings.instance_id,
            subscription_schema=self.schema,
            capacity=self.capacity,
            free=max(0, self.capacity - len(self.owned)),
            leases=len(self.owned),
            ttl_s=3 * interval_s,
            sent_at=utcnow(),
        )

    def status(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "free": max(0, self.capacity - len(self.owned)),
            "peers": sorted(p for p, until in self.peers.items() if until > self._loop.time()),
            "demanded": len(self.tracker.active(self._loop.time())),
            "samples_published": self._published,
            "leases": {sid: e.state for sid, e in self.owned.items()},
            "failing": {sid: e.last_error for sid, e in self.owned.items() if e.state == "backoff"},
            "rejected": {sid: msg for sid, (msg, _) in self.rejected.items()},
            "noncanonical": dict(self.noncanonical),
        }
