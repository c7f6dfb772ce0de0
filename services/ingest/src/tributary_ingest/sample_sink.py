"""Samples of one source: what the connector hands over (its `Sink`) into the owned sids' pipelines, and the
batches those publish, counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .admission import BUFFER_FULL
from .metrics import IngestMetrics
from .owned import Owned
from .pipeline import Row
from .publisher import SamplePublisher
from .refusals import RefusalLog
from .sdk import Quality, SampleValue

log = logging.getLogger(__name__)

WARN_EVERY_S = 30.0


class PublishedSamples:
    """Publishes the batches of one source's pipelines and counts them (total, and the per-second gauge)."""

    def __init__(self, name: str, publisher: SamplePublisher, metrics: IngestMetrics) -> None:
        self.name = name
        self.publisher = publisher
        self.metrics = metrics
        self.count = 0
        self._rate_at = time.monotonic()
        self._rate_count = 0
        # Labelled children looked up once: labels() costs more than the increment on the per-batch path.
        self._m_batches = metrics.batches.labels(name)
        self._m_samples = metrics.samples.labels(name)

    async def publish(self, sid: str, rows: Sequence[Row]) -> None:
        try:
            await self.publisher.publish(self.name, sid, rows)
        except Exception:
            self.metrics.errors.labels(self.name, "publish").inc()
            raise
        self._m_batches.inc()
        self._m_samples.inc(len(rows))
        self.count += len(rows)

    def update_rate(self) -> None:
        now = time.monotonic()
        if now - self._rate_at >= 1.0:
            self.metrics.samples_per_s.labels(self.name).set((self.count - self._rate_count) / (now - self._rate_at))
            self._rate_at, self._rate_count = now, self.count


@dataclass(eq=False)
class SampleSink:
    """Implements the connector's `Sink`: samples of the sids held go to their pipelines, others are ignored."""

    name: str
    owned: dict[str, Owned]
    max_buffer_per_sid: int
    metrics: IngestMetrics
    refusals: RefusalLog
    on_fail: Callable[[str, BaseException], None]
    loop: asyncio.AbstractEventLoop

    def emit(self, sid: str, t: datetime, v: SampleValue, q: Quality = None) -> None:
        entry = self.owned.get(sid)
        if entry is None or entry.state == "backoff":
            return  # a late sample after unsubscribe or a lost lease: somebody else reads this sid now
        if entry.held is not None:  # backfilling: live samples wait behind the history
            if len(entry.held) >= self.max_buffer_per_sid:
                self.refusals.refused(sid, BUFFER_FULL)
            else:
                entry.held.append((t, v, q))
            return
        # Never raises: a bad time or value is refused and counted there, and the read goes on with the next one.
        entry.pipeline.add(t, v, q)

    def emit_many(self, sid: str, rows: Iterable[tuple[datetime, SampleValue, Quality]]) -> None:
        entry = self.owned.get(sid)
        if entry is None or entry.state == "backoff":
            return
        if entry.held is not None:  # backfilling: one by one, as `emit` holds them
            for t, v, q in rows:
                self.emit(sid, t, v, q)
            return
        entry.pipeline.add_many(rows)

    async def room(self, sid: str) -> None:
        entry = self.owned.get(sid)
        if entry is not None:
            await entry.pipeline.room()

    def warn(self, sid: str, message: str) -> None:
        self.metrics.errors.labels(self.name, "data").inc()
        entry = self.owned.get(sid)
        now = self.loop.time()
        if entry is not None and now - entry.last_warn_at >= WARN_EVERY_S:
            entry.last_warn_at = now
            log.warning("%s/%s: %s", self.name, sid, message)

    def fail(self, sid: str, error: BaseException) -> None:
        self.on_fail(sid, error)
