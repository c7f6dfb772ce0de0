"""Writing samples into buckets: read the hour's bucket, merge, write it back only if nobody else did meanwhile
(optimistic concurrency on `version`), then the summaries of that version into the sid's day documents (one read
and one update per day and batch), then the sid's current value.

Why read-modify-write with a version rather than append-only batch documents compacted later: a read then finds
one document per hour, never a pile of overlapping batches to merge, and the summary of an hour is always that of
one stored bucket version. It costs rewriting the hour on every batch that touches it (the recorder groups a
whole batch of messages per hour first, so a bulk load writes each hour about once).

Crash-safety without transactions: the recorder acks only after `write` returns, so a crash anywhere here means a
redelivery; merging it again adds nothing, and then a summary older than its bucket is rewritten (a summary is
written only over an older version's). Every step is idempotent and conditional, so concurrent recorders
and replays never count a sample twice.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from .partitions import Layout
from .sample_buckets import (
    DAY_US,
    bucket_doc,
    bucket_id,
    day_id,
    hour_field,
    hour_of,
    merge,
    unpack_points,
)
from .sample_currents import ShardedCurrents
from .sample_partitions import Kind, SamplePartitions
from .sample_summaries import hour_row, minute_rows
from .series import HOUR_US, Point


class SampleStore(Protocol):
    """What writing needs of `sample_store.SampleStore`."""

    partitions: SamplePartitions
    concurrency: int
    current: AsyncCollection[Any]
    currents: ShardedCurrents

    def collection(self, name: str) -> AsyncCollection[Any]: ...

    def lock(self, key: str) -> asyncio.Lock: ...

    async def note_partitions(self, sid: str, hours: Iterable[int]) -> bool: ...


Hour = tuple[int, list[Point]]  # a bucket version and its samples
K = TypeVar("K", bound=tuple[str, int])  # (sid, hour) or (sid, day)
R = TypeVar("R")
SUMMARIES: tuple[tuple[Kind, Callable[[Sequence[Point], int], bytes]], ...] = (("sum", minute_rows), ("hrs", hour_row))


async def write(store: SampleStore, batches: Iterable[tuple[str, Sequence[Point]]]) -> int:
    hours: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for sid, points in batches:
        _by_hour(hours, sid, points)
    if not hours:
        return 0
    by_sid: dict[str, list[int]] = defaultdict(list)
    for sid, hour in hours:
        by_sid[sid].append(hour)
    gate = asyncio.Semaphore(store.concurrency)
    fresh: set[str] = set()  # sids with partitions new to the catalog

    async def note(sid: str, hs: list[int]) -> None:
        async with gate:
            if await store.note_partitions(sid, hs):
                fresh.add(sid)

    await asyncio.gather(*(note(sid, hs) for sid, hs in by_sid.items()))
    # FerretDB makes a collection at its first write: a thousand made at once (a new day's partitions of a thousand
    # sids) took two minutes where one at a time took 20 s, and crashed it (SIGBUS in SQLite's WAL index, after
    # "database schema has changed"). The writes of sids with new partitions go one at a time, before the others
    # (not those a restarted process meets first: the catalog lists them, so they exist).
    alone = fresh if store.partitions.dedicated else set()

    async def each(keys: list[K], write_one: Callable[[K], Awaitable[R]]) -> list[R]:
        async def gated(key: K) -> R:
            async with gate:
                return await write_one(key)

        first = {k: await write_one(k) for k in keys if k[0] in alone}
        rest = [k for k in keys if k[0] not in alone]
        done = dict(zip(rest, await asyncio.gather(*(gated(k) for k in rest)), strict=True))
        return [first[k] if k in first else done[k] for k in keys]

    async def bucket(key: tuple[str, int]) -> tuple[int, Hour]:
        return await write_hour(store, key[0], key[1], hours[key])

    keys = sorted(hours)
    results = await each(keys, bucket)
    days: dict[tuple[str, int], dict[int, Hour]] = defaultdict(dict)
    newest: dict[str, Point] = {}
    for (sid, hour), (_, written) in zip(keys, results, strict=True):
        days[(sid, hour - hour % DAY_US)][hour] = written
        last = written[1][-1]
        if sid not in newest or last.t > newest[sid].t:
            newest[sid] = last

    async def day(key: tuple[str, int]) -> None:
        for kind, summarise in SUMMARIES:
            await write_day(store, kind, key[0], key[1], days[key], summarise)

    await each(sorted(days), day)
    await set_currents(store, newest)
    return sum(added for added, _ in results)


async def set_currents(store: SampleStore, newest: dict[str, Point]) -> None:
    """Each sid's current value: a conditional update per sid, all at once, on MongoDB (`indexed`); a few shard
    documents on FerretDB (`sample_currents`), where an update per sid passes over every sid's document (and a
    thousand sent at once queued for seconds each, failed with SQLITE_BUSY and once crashed FerretDB)."""
    if store.partitions.layout is Layout.INDEXED:
        await asyncio.gather(*(set_current(store, sid, p) for sid, p in newest.items()))
    else:
        await store.currents.advance(newest)


def _by_hour(hours: dict[tuple[str, int], list[Point]], sid: str, points: Sequence[Point]) -> None:
    """`points` added to their hours' lists, in their order; a batch in time order (as ingest sends them) is
    cut into runs by bisection instead of a step per sample."""
    times = [p.t for p in points]
    if not all(map(int.__le__, times, times[1:])):
        for p in points:
            hours[(sid, hour_of(p.t))].append(p)
        return
    i = 0
    while i < len(times):
        hour = hour_of(times[i])
        j = bisect.bisect_left(times, hour + HOUR_US, lo=i)
        hours[(sid, hour)].extend(points[i:j])
        i = j


async def write_hour(store: SampleStore, sid: str, hour: int, new: Sequence[Point]) -> tuple[int, Hour]:
    """Merge `new` into the bucket of (sid, hour); returns how many were added, and the bucket's version and
    samples (those of a replay too: its summaries may lag behind a crash, `write_day` sees)."""
    raw = store.collection(store.partitions.holding("raw", sid, hour))
    _id = bucket_id(sid, hour)
    async with store.lock(_id):  # one writer per bucket in this process; other processes: versions, below
        while True:
            doc = await raw.find_one({"_id": _id})
            stored = unpack_points(doc["data"], hour) if doc else []
            version = int(doc["version"]) if doc else 0
            merged, added = merge(stored, new)
            if not added:
                return 0, (version, merged)
            mine = bucket_doc(sid, hour, merged, version + 1)
            # A bucket we created cannot have been overwritten by one who had not read it: only a replace is checked.
            if await _swap(raw, doc, mine) and (doc is None or await _kept(raw, mine, new)):
                return added, (version + 1, merged)


async def write_day(
    store: SampleStore,
    kind: Kind,
    sid: str,
    day: int,
    hours: dict[int, Hour],
    summarise: Callable[[Sequence[Point], int], bytes],
) -> None:
    """The summaries of these hours into their fields of the sid's day document (a month is 31 documents to
    read, not 744), each unless a newer version's is there: one read and one update per day and batch (one hour:
    an update conditional on the version). Read back until it holds, since FerretDB's update is not atomic across
    processes."""
    coll = store.collection(store.partitions.holding(kind, sid, day))
    _id = day_id(sid, day)
    done: dict[int, bytes] = {}
    async with store.lock(f"{coll.name}|{_id}"):
        if len(hours) == 1:  # a live sid's usual batch: the update's own filter checks the version, then a read back
            [(h, (version, points))] = hours.items()
            done[h] = summarise(points, h)
            field = hour_field(h)
            older = {"$or": [{field: {"$exists": False}}, {f"{field}.v": {"$lt": version}}]}
            one = {"sid": sid, "start": day, "end": day + DAY_US, field: {"v": version, "s": done[h]}}
            with contextlib.suppress(DuplicateKeyError):  # the day holds a newer version's (no match, so an insert)
                await coll.update_one({"_id": _id, **older}, {"$set": one}, upsert=True)
        while True:
            doc = await coll.find_one({"_id": _id}) or {}
            stale = [h for h, (v, _) in hours.items() if int((doc.get(hour_field(h)) or {}).get("v", 0)) < v]
            if not stale:
                return
            fields: dict[str, Any] = {"sid": sid, "start": day, "end": day + DAY_US}
            for h in stale:
                version, points = hours[h]
                if h not in done:
                    done[h] = summarise(points, h)
                    await asyncio.sleep(0)  # an hour's summaries take milliseconds; a day's, in one go, tens
                fields[hour_field(h)] = {"v": version, "s": done[h]}
            with contextlib.suppress(DuplicateKeyError):  # two first upserts of the day raced
                await coll.update_one({"_id": _id}, {"$set": fields}, upsert=True)


async def _swap(raw: AsyncCollection[Any], old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Create the bucket, or replace the version that was read; False if another writer got there first."""
    try:
        if old is None:
            await raw.insert_one(new)
            return True
        result = await raw.replace_one({"_id": new["_id"], "version": old["version"]}, new)
        return bool(result.matched_count)
    except DuplicateKeyError:
        return False


async def _kept(raw: AsyncCollection[Any], mine: dict[str, Any], new: Sequence[Point]) -> bool:
    """Whether the bucket still holds what was just written. FerretDB's conditional replace is a find then a
    write, not atomic: a writer in another process that read the same version can overwrite ours, which we then
    merge again. MongoDB's is atomic and this only confirms it."""
    now = await raw.find_one({"_id": mine["_id"]})
    if now is None:
        return False
    if now["writer"] == mine["writer"]:
        return True
    held = {p.t for p in unpack_points(now["data"], now["start"])}
    return all(p.t in held for p in new)


async def set_current(store: SampleStore, sid: str, p: Point) -> None:
    """The sid's newest sample (`indexed`), only ever moved forward: MongoDB's conditional update is atomic. One
    at a time per sid in this process all the same."""
    async with store.lock(f"current|{sid}"):
        with contextlib.suppress(DuplicateKeyError):  # as new or newer already there
            await store.current.update_one(
                {"_id": sid, "t": {"$lt": p.t}}, {"$set": {"t": p.t, "v": p.v, "q": p.q}}, upsert=True
            )
