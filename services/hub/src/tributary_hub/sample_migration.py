"""Moving one-document-per-sample `samples` into hourly buckets (part of `tributary-hub migrate`).

Chunk by chunk in `_id` order (`<sid>|<t>`, so a chunk is mostly a few sids' consecutive hours): write the
samples through `SampleStore.write` (a merge: what the buckets already hold stays, so a re-run or a sample the
recorder stored meanwhile counts once), then delete exactly the documents of the chunk. A crash between the two
leaves them to be merged again. When the collection is empty it is dropped. Only find / delete_many / drop.
On FerretDB's layouts, also current values kept a document per sid before `sample_currents` (`migrate_currents`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tributary_common.timeutil import parse_time

from .documents import LEGACY_SAMPLES
from .partitions import Layout
from .sample_buckets import to_us
from .sample_partitions import CURRENT
from .sample_store import SampleStore
from .series import Point

log = logging.getLogger(__name__)


@dataclass
class SampleMigration:
    moved: int = 0  # old documents written into buckets and deleted
    added: int = 0  # of which new to the buckets (the rest were there already)
    skipped: int = 0  # unreadable (no sid or time): left in place, listed in the log
    dropped: bool = False  # the old collection was empty at the end and is gone
    currents: int = 0  # current values moved from a document per sid into shards (FerretDB's layouts)


def _point(doc: dict[str, Any]) -> tuple[str, Point] | None:
    sid, t = doc.get("sid"), doc.get("t")
    if not isinstance(sid, str) or not sid:
        return None
    try:
        when = t if isinstance(t, datetime) else parse_time(t) if isinstance(t, str) else None
    except ValueError:
        return None
    return (sid, Point(to_us(when), doc.get("v"), doc.get("q"))) if when is not None else None


async def migrate_samples(db: AsyncDatabase[Any], store: SampleStore, *, batch_size: int = 1000) -> SampleMigration:
    report = SampleMigration()
    if LEGACY_SAMPLES not in await db.list_collection_names():
        return report
    old = db[LEGACY_SAMPLES]
    last: Any = None
    while True:
        docs = await old.find({} if last is None else {"_id": {"$gt": last}}).sort("_id", 1).limit(batch_size).to_list()
        if not docs:
            break
        last = docs[-1]["_id"]
        batches: list[tuple[str, list[Point]]] = []
        done = []
        for doc in docs:
            got = _point(doc)
            if got is None:
                report.skipped += 1
                log.warning("sample document %r has no usable sid or time: left as it is", doc.get("_id"))
                continue
            batches.append((got[0], [got[1]]))
            done.append(doc["_id"])
        report.added += await store.write(batches)
        await old.delete_many({"_id": {"$in": done}})  # only now: every sample of the chunk is in a bucket
        report.moved += len(done)
        log.info("migrate: %d samples moved into buckets so far", report.moved)
    if not report.skipped and await old.count_documents({}) == 0:
        await db.drop_collection(LEGACY_SAMPLES)
        report.dropped = True
    return report


async def migrate_currents(db: AsyncDatabase[Any], store: SampleStore, *, batch_size: int = 1000) -> int:
    """On FerretDB's layouts, current values kept one document per sid (`sample_current`, before the shards of
    `sample_currents`) moved into the shards, where newer, then the collection dropped; how many were read.
    MongoDB's `indexed` layout keeps a document per sid."""
    if store.partitions.layout is Layout.INDEXED or CURRENT not in await db.list_collection_names():
        return 0
    moved = 0
    chunk: dict[str, Point] = {}
    async for doc in db[CURRENT].find({}):
        sid, t = doc.get("_id"), doc.get("t")
        if not isinstance(sid, str) or not isinstance(t, int) or isinstance(t, bool):
            log.warning("current value %r has no usable sid or time: dropped with its collection", sid)
            continue
        chunk[sid] = Point(t, doc.get("v"), doc.get("q"))
        if len(chunk) >= batch_size:
            await store.currents.advance(chunk)
            moved, chunk = moved + len(chunk), {}
    if chunk:
        await store.currents.advance(chunk)
        moved += len(chunk)
    await db.drop_collection(CURRENT)  # only now: every value is in a shard
    return moved
