"""The sids one source holds the leases of, on the main loop: take a lease and start its read, retry a failed read
with backoff, release (publish what is buffered, hand the lease and its watermark back), or drop a lost one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tributary_common.backoff import Backoff

from .admission import Refusal, SampleAdmission
from .backfill import Backfill
from .demand import DemandTracker
from .lease_thread import LeaseThread
from .leases import Leases
from .metrics import IngestMetrics
from .owned import Owned
from .pipeline import Row, SidPipeline
from .refusals import RefusalLog
from .sdk import Connector, Refused
from .settings import IngestSettings

log = logging.getLogger(__name__)

UNSUBSCRIBE_TIMEOUT_S = 10.0


@dataclass(eq=False)
class Ownership:
    name: str
    owned: dict[str, Owned]
    connector: Connector[Any]
    settings: IngestSettings
    leases: Leases
    lease_io: LeaseThread
    metrics: IngestMetrics
    admission: SampleAdmission
    refusals: RefusalLog
    publish: Callable[[str, Sequence[Row]], Awaitable[None]]
    _loop: asyncio.AbstractEventLoop = field(init=False, default_factory=asyncio.get_running_loop)
    _tasks: set[asyncio.Task[Any]] = field(init=False, default_factory=set)
    backfill: Backfill = field(init=False)

    def __post_init__(self) -> None:
        self.backfill = Backfill(self.name, self.connector, self.settings, self.metrics, self.holds)

    def holds(self, sid: str, entry: Owned) -> bool:
        return self.owned.get(sid) is entry

    def fail(self, sid: str, error: BaseException) -> None:
        """The connector's read of `sid` broke (`Sink.fail`)."""
        entry = self.owned.get(sid)
        if entry is not None:
            self._spawn(self._on_failure(sid, entry, error))

    def tick(self, tracker: DemandTracker, now: float) -> None:
        """Release the sids whose demand lapsed longer than the grace ago; retry failed reads whose backoff ran out."""
        for sid, entry in list(self.owned.items()):
            lapsed = tracker.lapsed_since(sid, now)
            if lapsed is not None and lapsed >= self.settings.release_grace_s and entry.state != "releasing":
                entry.state = "releasing"
                self._spawn(self._release(sid, entry))
            elif entry.state == "backoff" and entry.retry_at <= now:
                entry.state = "starting"
                self._spawn(self._subscribe(sid, entry))

    def shed(self, sids: list[str]) -> None:
        """Hand `sids` over to the other instances (rebalancing): each read stops, publishes what it buffered, writes
        its watermark and deletes its lease, in that order, so the next owner starts after the last sample sent."""
        for sid in sids:
            entry = self.owned.get(sid)
            if entry is not None and entry.state != "releasing":
                entry.state = "releasing"
                self._spawn(self._release(sid, entry, "rebalanced"))

    def take(self, sid: str, params: Any, watermark: datetime | None) -> None:
        """The lease of `sid` is ours: start its pipeline (resuming after `watermark`) and its read."""
        checked = None if watermark is None else self.admission.time(watermark)
        if isinstance(checked, Refusal) and checked.reason == "too_far_ahead":
            # Left by a far-future sample before the time window existed: keeping it would drop every real one.
            log.warning("%s/%s: ignoring the stored watermark %s (in the future)", self.name, sid, watermark)
            watermark = None
        pipeline = SidPipeline(
            sid,
            self.publish,
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
        self._count_held()
        log.info("took the lease of %s/%s", self.name, sid)
        self._spawn(self._subscribe(sid, entry))

    async def _subscribe(self, sid: str, entry: Owned) -> None:
        entry.started_at = self._loop.time()
        since = self.backfill.since(entry)
        if since is not None:
            entry.held = []  # from the first live sample on, until the history is in
        try:
            await self.connector.subscribe(sid, entry.params)
        except Exception as exc:  # noqa: BLE001 - the connector's failure is retried with backoff
            entry.held = None
            await self._on_failure(sid, entry, exc)
            return
        if not self.holds(sid, entry) or entry.state != "starting":
            # Lost, released, or failed while subscribing: whatever cleaned up ran before this read existed.
            await self._unsubscribe(sid)
            return
        entry.state = "running"
        self.metrics.reads.labels(self.name).inc()
        if since is not None:
            await self.backfill.run(sid, entry, since)

    async def _on_failure(self, sid: str, entry: Owned, exc: BaseException) -> None:
        if not self.holds(sid, entry) or entry.state in ("backoff", "releasing"):
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
        """Stop reading, publish what is buffered, give the lease back (demand lapsed, rebalanced, or shutdown)."""
        await self._unsubscribe(sid)
        await entry.pipeline.drain(timeout=self.settings.publish_timeout_s)
        if not self.holds(sid, entry):
            return
        del self.owned[sid]
        self._count_held()
        try:
            # Even with nothing published: the lease must go now, or the next owner waits for it to expire.
            await self.lease_io.run(self._give_back(sid, entry.pipeline.published_t))
        except Exception:  # noqa: BLE001 - the lease then simply expires
            log.warning("releasing %s/%s failed; it expires on its own", self.name, sid)
        log.info("released %s/%s (%s)", self.name, sid, why)

    async def _give_back(self, sid: str, published_t: datetime | None) -> None:
        if published_t is not None:
            await self.leases.set_watermark(sid, published_t)
        await self.leases.release(sid)

    def lost(self, sid: str, entry: Owned) -> None:
        """The lease of `sid` could not be renewed (called on the main loop from the lease thread)."""
        if self.holds(sid, entry):
            del self.owned[sid]  # at once: from here on, its samples are ignored
            self.metrics.leases_lost.labels(self.name).inc()
            self.metrics.errors.labels(self.name, "lease").inc()
            log.warning("lost the lease of %s/%s; stopped reading it", self.name, sid)
            self._spawn(self._drop(sid, entry))

    async def _drop(self, sid: str, entry: Owned) -> None:
        """The lease is gone: stop at once, forget the buffer."""
        if self.holds(sid, entry):
            del self.owned[sid]
        self._count_held()
        await entry.pipeline.close()
        await self._unsubscribe(sid)

    def _count_held(self) -> None:
        self.metrics.leases_held.labels(self.name).set(len(self.owned))

    def _spawn(self, coro: Coroutine[Any, Any, None] | Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.name, exc_info=task.exception())

    async def stop(self) -> None:
        """Graceful: stop every read, publish what is buffered, hand the leases back so others take over at once."""
        entries = list(self.owned.items())
        for _, entry in entries:
            entry.state = "releasing"
        await asyncio.gather(*(self._release(sid, e, "shutdown") for sid, e in entries), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
