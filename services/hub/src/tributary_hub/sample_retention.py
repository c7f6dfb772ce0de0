"""Sample retention: whole expired partitions dropped (a day of raw buckets, a month of summaries), never
documents one by one; summaries may be kept longer than the raw samples they summarise (a rollup).

A partition goes when all of it is older than the cutoff, so samples live up to a day (raw) or a month
(summaries) past their retention. In the indexed layout the same partitions are deleted by `(sid, start)` range.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tributary_common.timeutil import utcnow

from .sample_buckets import to_us
from .sample_partitions import Kind, partition_span
from .sample_store import SampleStore
from .series import HOUR_US

log = logging.getLogger("tributary_hub.recorder")
DAY_US = 24 * HOUR_US


class SampleRetention:
    def __init__(
        self, store: SampleStore, raw_days: float | None, summary_days: float | None, *, sweep_interval_s: float
    ) -> None:
        self.store = store
        # Summaries never go before the samples they summarise.
        keep = max(summary_days, raw_days) if summary_days and raw_days else summary_days or raw_days
        self.days: dict[Kind, float | None] = {"raw": raw_days, "sum": keep, "hrs": keep}
        self.sweep_interval_s = sweep_interval_s
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self, now: int) -> int:
        """Drop every partition wholly before its cutoff (`now` in µs); returns how many went."""
        dropped = 0
        for sid in await self.store.sids():
            for kind, days in self.days.items():
                if days:
                    dropped += await self._expire(sid, kind, now - int(days * DAY_US))
        await self._expire_current(now)
        return dropped

    async def _expire(self, sid: str, kind: Kind, cutoff: int) -> int:
        keys = [k for k in await self.store.keys(sid, kind) if partition_span(kind, k)[1] <= cutoff]
        for key in keys:
            name = self.store.partitions.collection(kind, sid, key)
            if self.store.partitions.dedicated:
                await self.store.db.drop_collection(name)
            else:
                lo, hi = partition_span(kind, key)
                await self.store.db[name].delete_many({"sid": sid, "start": {"$gte": lo, "$lt": hi}})
        if keys:
            # Only after the data: a crash in between leaves a listed partition to drop again next time.
            await self.store.catalog.update_one({"_id": sid}, {"$pullAll": {kind: keys}})
            self.store.forget(sid, kind, keys)
        return len(keys)

    async def _expire_current(self, now: int) -> None:
        days = self.days["raw"]
        if days:
            await self.store.current.delete_many({"t": {"$lt": now - int(days * DAY_US)}})

    def start(self) -> None:
        if any(self.days.values()):
            self._task = asyncio.create_task(self._sweep_forever(), name="retention-samples")

    async def _sweep_forever(self) -> None:
        while True:
            try:
                dropped = await self.sweep_once(to_us(utcnow()))
                if dropped:
                    log.info("sample retention dropped %d partitions", dropped)
            except Exception:
                log.warning("sample retention sweep failed", exc_info=True)
            await asyncio.sleep(self.sweep_interval_s)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
