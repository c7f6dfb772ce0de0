"""The next UTC day's sample partitions, made an hour ahead (FerretDB's layouts).

FerretDB makes a collection at its first write, slowly, and a thousand made at once crashed it, so the writes of
sids whose partitions are new to the catalog go one at a time (`sample_writes`). At midnight UTC every sid's day is
new: the first merge of a day at 1,000 sids took 42 s alone and ~85 s beside live staging, where later ones took
25 s. So at 23:00 UTC each samples writer lists the next day's partitions of every sid that has one today and makes
their collections, one at a time; at midnight the catalog lists them and the writes go several at once as on any
other hour. Two processes doing it at once make each collection once (the second is refused, which is fine).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pymongo.errors import CollectionInvalid, OperationFailure, PyMongoError

from .sample_partitions import CATALOG, DAY_US, KINDS, partition_key
from .sample_store import SampleStore

log = logging.getLogger(__name__)

DAY_S = 86_400
AHEAD_S = 3_600  # the next day's partitions are made this long before it starts
RETRY_S = 60.0


def seconds_until_ahead(now_s: float) -> float:
    """How long from `now_s` (Unix seconds) until the next day is to be prepared: 0 within its last hour."""
    return max(0.0, (now_s // DAY_S + 1) * DAY_S - AHEAD_S - now_s)


async def prepare_day(store: SampleStore, day_start: int) -> int:
    """The partitions of the UTC day starting at `day_start` (µs) for every sid with a bucket partition the day
    before: listed in the catalog, their collections made one at a time. Returns how many collections were made."""
    yesterday = partition_key("raw", day_start - DAY_US)
    sids = [doc["_id"] async for doc in store.db[CATALOG].find({"raw": yesterday}, {"_id": 1})]
    existing = set(await store.db.list_collection_names())
    made = 0
    for sid in sids:
        await store.note_partitions(sid, [day_start])
        for kind in KINDS:
            name = store.partitions.holding(kind, sid, day_start)
            if name in existing:
                continue
            with contextlib.suppress(CollectionInvalid, OperationFailure):  # another process made it first
                await store.db.create_collection(name)
                made += 1
            existing.add(name)
    return made


async def days_ahead(store: SampleStore, clock: Callable[[], float] = time.time) -> None:
    """Prepare each next day within the last hour of the one before, until cancelled."""
    while True:
        await asyncio.sleep(seconds_until_ahead(clock()))
        tomorrow = int(clock() // DAY_S + 1) * DAY_S
        try:
            made = await prepare_day(store, tomorrow * 1_000_000)
        except PyMongoError as exc:
            log.warning("preparing tomorrow's sample partitions failed (%s); retrying in %.0f s", exc, RETRY_S)
            await asyncio.sleep(RETRY_S)
            continue
        log.info("tomorrow's sample partitions prepared: %d collections made", made)
        await asyncio.sleep(max(0.0, tomorrow - clock()))  # into the new day, then wait for its last hour
