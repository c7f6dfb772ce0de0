"""Moving one-document-per-sample `samples` into hourly buckets (part of `tributary-hub migrate`).

Chunk by chunk in `_id` order (`<sid>|<t>`, so a chunk is mostly a few sids' consecutive hours): write the
samples through `SampleStore.write` (a merge: what the buckets already hold stays, so a re-run or a sample the
recorder stored meanwhile counts once), then delete exactly the documents of the chunk. A crash between the two
leaves them to be merged again. When the collection is empty it is dropped. Only find / delete_many / drop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tributary_common.timeutil import parse_time

from .documents import LEGACY_SAMPLES
from .sample_buckets import to_us
from .sample_store import SampleStore
from .series import Point

log = logging.getLogger(__name__)


@dataclass
class SampleMigration:
    moved: int = 0  # old documents written into buckets and deleted
    added: int = 0  # of which new to the buckets (the rest were there already)
    skipped: int = 0  # unreadable (no sid or time): left in place, listed in the log
    dropped: bool = False  # the old collection was empty at the end and is gone


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
