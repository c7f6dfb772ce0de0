"""Sample retention: whole expired partitions dropped (a day of raw buckets, a month of summaries), never
documents one by one; summaries may be kept longer than the raw samples they summarise (a rollup).

A partition goes when all of it is older than the cutoff, so samples live up to a day (raw) or a month
(summaries) past their retention. In the indexed layout the same partitions are deleted by `(sid, start)` range.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from tributary_common.mongo import Retention, RetentionMode
from tributary_common.timeutil import utcnow

from .partitions import Layout
from .sample_buckets import to_us
from .sample_partitions import Kind, partition_span
from .sample_store import SampleStore
from .series import HOUR_US

DAY_US = 24 * HOUR_US
Days = dict[Kind, float | None]


def days_kept(raw_days: float | None, summary_days: float | None) -> Days:
    """Days kept per kind (None: forever). Summaries never go before the samples they summarise."""
    keep = max(summary_days, raw_days) if summary_days and raw_days else summary_days or raw_days
    return {"raw": raw_days, "sum": keep, "hrs": keep}


async def sweep(store: SampleStore, days: Days, now: int) -> int:
    """Drop every partition wholly before its cutoff (`now` in µs), and current values older than the raw
    retention; returns how many partitions went."""
    dropped = 0
    # The whole catalog in one read, not a read per sid and kind: at 1,000 sids that was 3,000 commands a minute.
    for doc in await store.catalog.find({}).to_list():
        for kind, kept in days.items():
            if kept:
                listed = sorted(doc.get(kind) or [])
                dropped += await _expire(store, doc["_id"], kind, listed, now - int(kept * DAY_US))
    if days["raw"]:
        before = now - int(days["raw"] * DAY_US)
        if store.partitions.layout is Layout.INDEXED:
            await store.current.delete_many({"t": {"$lt": before}})
        else:
            await store.currents.expire(before)
    return dropped


async def _expire(store: SampleStore, sid: str, kind: Kind, listed: list[int], cutoff: int) -> int:
    keys = [k for k in listed if partition_span(kind, k)[1] <= cutoff]
    for key in keys:
        name = store.partitions.collection(kind, sid, key)
        if store.partitions.dedicated:
            await store.db.drop_collection(name)
        else:
            lo, hi = partition_span(kind, key)
            await store.db[name].delete_many({"sid": sid, "start": {"$gte": lo, "$lt": hi}})
    if keys:
        # Only after the data: a crash in between leaves a listed partition to drop again next time.
        await store.catalog.update_one({"_id": sid}, {"$pullAll": {kind: keys}})
        store.forget(sid, kind, keys)
    return len(keys)


class SampleRetention(Retention):
    """`Retention`'s sweeper (its loop, logs and stop) running `sweep`, as `EventRetention` does for events."""

    def __init__(
        self, store: SampleStore, raw_days: float | None, summary_days: float | None, *, sweep_interval_s: float
    ) -> None:
        super().__init__(store.catalog, sweep_interval_s=sweep_interval_s)  # the catalog names it in logs
        self.store = store
        self.days = days_kept(raw_days, summary_days)

    async def start(self) -> RetentionMode:
        self.mode = "sweeper"
        if any(self.days.values()):
            await self.sweep_once()
            self._task = asyncio.create_task(self._sweep_forever(), name="retention-samples")
        return self.mode

    async def sweep_once(self, now: datetime | int | None = None) -> int:
        """Partitions dropped; `now` a time or µs since the epoch (None: now)."""
        at = to_us(utcnow()) if now is None else now if isinstance(now, int) else to_us(now)
        return await sweep(self.store, self.days, at)
