"""`SampleStore`: sample storage in hourly buckets with summaries beside them (`series.SeriesStore`).

Per sid and UTC hour one bucket document holds the samples packed (`sample_buckets`); the hour's summary and its
minutes', computed from the bucket, go into field `h00`..`h23` of the sid's day documents (one of hours, one of
minutes, in separate collections), so that a month of summaries is 31 documents to read. Which collection holds
them is `sample_partitions`. A small catalog document per sid lists its partitions; each sid's newest sample is in
`sample_current` (`indexed`: a document per sid) or `sample_current_shards` (FerretDB: `sample_currents`). Writes
are in `sample_writes`, retention in `sample_retention`.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import pymongo
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from . import sample_writes
from .partitions import Layout, by_ids
from .sample_buckets import DAY_US, unpack_points
from .sample_currents import ShardedCurrents
from .sample_partitions import (
    CATALOG,
    CURRENT,
    CURRENT_SHARDS,
    HOURS,
    KINDS,
    RAW,
    SUMMARIES,
    Kind,
    SamplePartitions,
    partition_key,
)
from .sample_summaries import cut_times, decode_columns, made_whole
from .series import HOUR_US, RESOLUTIONS, Point, Row, SummaryColumns

FAR = 1 << 62  # past any time a sample can have (year 9999 is 2.5e17 µs)
SUMMARY_CHUNK = 1000


class SampleStore:
    def __init__(self, db: AsyncDatabase[Any], layout: Layout = Layout.PARTITIONED, *, concurrency: int = 8) -> None:
        self.db = db
        self.partitions = SamplePartitions(layout)
        self.concurrency = concurrency  # bucket writes in flight at once
        self.catalog: AsyncCollection[Any] = db[CATALOG]
        self.current: AsyncCollection[Any] = db[CURRENT]  # one document per sid (`indexed`)
        self.currents = ShardedCurrents(db[CURRENT_SHARDS], self.at_or_before)  # FerretDB's layouts
        self._known: set[tuple[str, Kind, int]] = set()  # partitions this process has put in the catalog
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def create_indexes(self) -> None:
        """The indexed layout's `(sid, start)` indexes (partitions need none: a read takes most of one)."""
        if self.partitions.layout == Layout.INDEXED:
            for name in (RAW, SUMMARIES, HOURS):
                await self.db[name].create_index(
                    [("sid", pymongo.ASCENDING), ("start", pymongo.ASCENDING)], name="sid_start"
                )

    def collection(self, name: str) -> AsyncCollection[Any]:
        return self.db[name]

    def lock(self, key: str) -> asyncio.Lock:
        """The lock of one bucket, while anyone holds it."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # Catalog

    async def note_partitions(self, sid: str, hours: Iterable[int]) -> bool:
        """Put the partitions of these hours in the catalog, before anything is written into them; whether any was
        new to the catalog (a process restarted finds its sids' partitions there: their collections exist)."""
        new = {(sid, kind, partition_key(kind, h)) for h in hours for kind in KINDS} - self._known
        if not new:
            return False
        add: dict[str, Any] = {}
        for kind in KINDS:
            keys = sorted(k for _, kd, k in new if kd == kind)
            if keys:
                add[kind] = {"$each": keys}
        async with self.lock(f"catalog|{sid}"):
            # Until read back: FerretDB's update is a find then a write, so one from another process may have
            # replaced ours; and two first upserts of a sid race on its `_id`.
            listed = True
            while not await self._listed(sid, new):
                listed = False
                with contextlib.suppress(DuplicateKeyError):
                    await self.catalog.update_one({"_id": sid}, {"$addToSet": add}, upsert=True)
        self._known |= new
        return not listed

    async def _listed(self, sid: str, wanted: set[tuple[str, Kind, int]]) -> bool:
        doc = await self.catalog.find_one({"_id": sid}) or {}
        return all(key in (doc.get(kind) or []) for _, kind, key in wanted)

    async def keys(self, sid: str, kind: Kind) -> list[int]:
        doc = await self.catalog.find_one({"_id": sid})
        return sorted(doc.get(kind) or []) if doc else []

    async def sids(self) -> list[str]:
        return sorted([d["_id"] async for d in self.catalog.find({})])

    def forget(self, sid: str, kind: Kind, keys: Iterable[int]) -> None:
        self._known -= {(sid, kind, k) for k in keys}

    # Writes

    async def write(self, batches: Iterable[tuple[str, Sequence[Point]]]) -> int:
        """Store `(sid, points)` batches (any order, overlapping or repeated); returns how many were new."""
        return await sample_writes.write(self, batches)

    # Reads

    async def _docs(
        self, kind: Kind, sid: str, start: int | None, end: int | None, descending: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """Bucket (raw), minute summary (sum) or day's hour summaries (hrs) documents of `sid` overlapping
        `[start, end)`, in time order."""
        span = HOUR_US if kind == "raw" else DAY_US
        lo = -FAR if start is None else start - start % span
        hi = FAR if end is None else end
        spans = self.partitions.spans(kind, sid, await self.keys(sid, kind), lo, hi)
        order = pymongo.DESCENDING if descending else pymongo.ASCENDING
        for name, a, b in reversed(spans) if descending else spans:
            cursor = self.db[name].find({"sid": sid, "start": {"$gte": a, "$lt": b}}).sort("start", order)
            try:
                async for doc in cursor:
                    yield doc
            finally:  # also when a reader stops early (`at_or_before`, a page): no cursor left open
                await cursor.close()

    async def points(
        self, sid: str, start: int | None = None, end: int | None = None, *, descending: bool = False
    ) -> AsyncIterator[list[Point]]:
        async for doc in self._docs("raw", sid, start, end, descending):
            pts = unpack_points(doc["data"], doc["start"])
            if (start is not None and pts[0].t < start) or (end is not None and pts[-1].t >= end):
                pts = [p for p in pts if (start is None or p.t >= start) and (end is None or p.t < end)]
            if descending:
                pts.reverse()
            if pts:
                yield pts

    async def _first(self, chunks: AsyncIterator[list[Point]]) -> Point | None:
        try:
            async for chunk in chunks:
                return chunk[0]
            return None
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def at_or_before(self, sid: str, t: int) -> Point | None:
        return await self._first(self.points(sid, None, t + 1, descending=True))

    async def at_or_after(self, sid: str, t: int) -> Point | None:
        return await self._first(self.points(sid, t, None))

    async def latest(self, sids: Sequence[str]) -> dict[str, Point]:
        if self.partitions.layout is not Layout.INDEXED:
            return await self.currents.read(sids)
        docs = await by_ids(self.current, list(sids), {"t": 1, "v": 1, "q": 1}, self.partitions.layout)
        return {d["_id"]: Point(d["t"], d.get("v"), d.get("q")) for d in docs}

    async def summaries(self, sid: str, start: int, end: int, resolution: int) -> AsyncIterator[SummaryColumns]:
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution {resolution} µs is not one of {RESOLUTIONS}")
        parts: list[SummaryColumns] = []
        size = 0
        async for doc in self._docs("hrs" if resolution == HOUR_US else "sum", sid, start, end, False):
            hours = [
                decode_columns(doc[f]["s"], doc["start"] + int(f[1:]) * HOUR_US)
                for f in sorted(k for k in doc if k[0] == "h" and k[1:].isdigit())
            ]
            cut = set().union(*(cut_times(cols) for cols, is_cut in hours if is_cut))
            whole = await self._whole(sid, cut) if cut else {}
            for cols, is_cut in hours:
                part = (made_whole(cols, whole) if is_cut else cols).within(start, end)
                if len(part):
                    parts.append(part)
                    size += len(part)
            if size >= SUMMARY_CHUNK:
                yield SummaryColumns.joined(parts)
                parts, size = [], 0
        if parts:
            yield SummaryColumns.joined(parts)

    async def _whole(self, sid: str, times: set[int]) -> dict[int, Row]:
        """The samples at these times, whole, from their buckets (a summary keeps long texts cut): one range read,
        as FerretDB passes over a partition's buckets for each query, a read a time cost seconds a day."""
        out: dict[int, Row] = {}
        async for chunk in self.points(sid, min(times), max(times) + 1):
            out.update((p.t, (p.t, p.v, p.q)) for p in chunk if p.t in times)
        return out

    async def count(self, sid: str | None = None) -> int:
        """Samples stored (of one sid, or all): what the recorder tests and the migration check."""
        total = 0
        for s in [sid] if sid is not None else await self.sids():
            async for doc in self._docs("raw", s, None, None, False):
                total += int(doc["count"])
        return total
