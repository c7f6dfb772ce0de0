"""Writing samples into buckets: read the hour's bucket, merge, write it back only if nobody else did meanwhile
(optimistic concurrency on `version`), then the summary document of that version, then the sid's current value.

Why read-modify-write with a version rather than append-only batch documents compacted later: a read then finds
one document per hour, never a pile of overlapping batches to merge, and the summary of an hour is always that of
one stored bucket version. It costs rewriting the hour on every batch that touches it (the recorder groups a
whole batch of messages per hour first, so a bulk load writes each hour about once).

Crash-safety without transactions: the recorder acks only after `write` returns, so a crash anywhere here means a
redelivery; merging it again adds nothing, and then a summary older than its bucket is rewritten (the summary's
conditional replace keeps the newest version). Every step is idempotent and conditional, so concurrent recorders
and replays never count a sample twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

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
from .sample_partitions import SamplePartitions
from .sample_summaries import hour_row, minute_rows
from .series import Point


class SampleStore(Protocol):
    """What writing needs of `sample_store.SampleStore`."""

    partitions: SamplePartitions
    concurrency: int
    current: AsyncCollection[Any]

    def collection(self, name: str) -> AsyncCollection[Any]: ...

    def lock(self, key: str) -> asyncio.Lock: ...

    async def note_partitions(self, sid: str, hours: Iterable[int]) -> None: ...


async def write(store: SampleStore, batches: Iterable[tuple[str, Sequence[Point]]]) -> int:
    hours: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for sid, points in batches:
        for p in points:
            hours[(sid, hour_of(p.t))].append(p)
    if not hours:
        return 0
    by_sid: dict[str, list[int]] = defaultdict(list)
    for sid, hour in hours:
        by_sid[sid].append(hour)
    await asyncio.gather(*(store.note_partitions(sid, hs) for sid, hs in by_sid.items()))
    gate = asyncio.Semaphore(store.concurrency)

    async def one(key: tuple[str, int]) -> tuple[int, Point]:
        async with gate:
            return await write_hour(store, key[0], key[1], hours[key])

    keys = sorted(hours)
    results = await asyncio.gather(*(one(k) for k in keys))
    newest: dict[str, Point] = {}
    for (sid, _), (_, last) in zip(keys, results, strict=True):
        if sid not in newest or last.t > newest[sid].t:
            newest[sid] = last
    await asyncio.gather(*(set_current(store, sid, p) for sid, p in newest.items()))
    return sum(added for added, _ in results)


async def write_hour(store: SampleStore, sid: str, hour: int, new: Sequence[Point]) -> tuple[int, Point]:
    """Merge `new` into the bucket of (sid, hour); returns how many were added and the hour's last sample."""
    raw = store.collection(store.partitions.holding("raw", sid, hour))
    minutes = store.collection(store.partitions.holding("sum", sid, hour))
    hours = store.collection(store.partitions.holding("hrs", sid, hour))
    _id = bucket_id(sid, hour)
    async with store.lock(_id):  # one writer per bucket in this process; other processes: versions, below
        while True:
            doc = await raw.find_one({"_id": _id})
            stored = unpack_points(doc["data"], hour) if doc else []
            version = int(doc["version"]) if doc else 0
            merged, added = merge(stored, new)
            if not added:
                break  # a replay: nothing new, but the summary may lag behind a crash (below)
            version += 1
            mine = bucket_doc(sid, hour, merged, version)
            # A bucket we created cannot have been overwritten by one who had not read it: only a replace is checked.
            if await _swap(raw, doc, mine) and (doc is None or await _kept(raw, mine, new)):
                break
        for coll, value in ((minutes, minute_rows), (hours, hour_row)):
            if added or await _version(coll, sid, hour) < version:
                await write_day_field(store, coll, sid, hour, version, value(merged, hour))
    return added, merged[-1]


async def _version(coll: AsyncCollection[Any], sid: str, hour: int) -> int:
    """The bucket version the hour's summary in `coll` was computed from (0: none)."""
    day = await coll.find_one({"_id": day_id(sid, hour - hour % DAY_US)}) or {}
    return int((day.get(hour_field(hour)) or {}).get("v", 0))


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


async def write_day_field(
    store: SampleStore, coll: AsyncCollection[Any], sid: str, hour: int, version: int, value: Any
) -> None:
    """An hour's summaries into its field of the sid's day document (a month is 31 documents to read, not 744),
    unless a newer version's are there; read back, since FerretDB's update is not atomic across processes."""
    day = hour - hour % DAY_US
    _id, field = day_id(sid, day), hour_field(hour)
    fields = {"sid": sid, "start": day, "end": day + DAY_US, field: {"v": version, "s": value}}
    async with store.lock(f"{coll.name}|{_id}"):
        while await _version(coll, sid, hour) < version:
            with contextlib.suppress(DuplicateKeyError):  # two first upserts of the day raced
                await coll.update_one({"_id": _id}, {"$set": fields}, upsert=True)


async def set_current(store: SampleStore, sid: str, p: Point) -> None:
    """The sid's newest sample, only ever moved forward."""
    with contextlib.suppress(DuplicateKeyError):  # as new or newer already there
        await store.current.update_one(
            {"_id": sid, "t": {"$lt": p.t}}, {"$set": {"t": p.t, "v": p.v, "q": p.q}}, upsert=True
        )
