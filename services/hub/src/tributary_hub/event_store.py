"""Writing events into their partitions, exactly once per (topic, id), whatever time a copy carries.

Per batch: resolve each topic's generation (`uid`, read fresh: a topic deleted and created again must not get
the old one), then
1. the id directory (`_id` = `<uid>/<id>`, unique): a new entry names the day of this copy's time; an entry
   already there (a redelivery, a client's retry, perhaps with another time) names the partition to use;
2. the partition catalog: `$min`/`$max` of the times and expiries a partition holds, widened before the events
   are written, so that a reader never misses a partition that has events;
3. the subject registry (event_subjects.py: a subject new to this process, or reaching a later day);
4. the events into their partitions (`insert_many(ordered=False)`): a duplicate `_id` there is a copy already
   stored. Latest per subject is found at read from the newest partitions (no write per event).
A crash between two steps leaves a directory entry, catalog widening or subject entry without its event: the
redelivery finds the entry and writes the event where it says. Every step is idempotent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from tributary_common.mongo import DUPLICATE_KEY, write_errors
from tributary_common.timeutil import format_time

from .block_writes import assign_blocks, insert_singles, write_blocks
from .event_blocks import events_in
from .event_subjects import SubjectRegistry
from .partitions import (
    GENERATION_FIELDS,
    Layout,
    Partitions,
    by_ids,
    day_of,
    day_start,
    generation,
    id_entry,
    id_key,
    id_place,
    partition_key,
)

NEVER = datetime(9999, 12, 31, tzinfo=UTC)  # `max_exp` of a partition holding an event kept forever
CATALOG_RECHECK_S = 60.0  # a catalog entry this process wrote is written again after this (another may drop it)
CATALOG_KNOWN_MAX = 100_000
# Events placed between two turns of the event loop: a batch of thousands in one go held it for milliseconds on
# end, which the API waits for when the recorders run in its process.
TURN_EVERY = 256


@dataclass
class WriteOutcome:
    """By index into the documents written: duplicates (already stored) and refusals (the server's message)."""

    duplicates: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    orphans: list[int] = field(default_factory=list)  # their topic no longer exists: nothing to store them in


async def one_at_a_time(writes: Iterable[Coroutine[Any, Any, None]]) -> None:
    """In turn: FerretDB's SQLite takes one writer per database (concurrent writes fail with SQLITE_BUSY)."""
    for write in writes:
        await write


@dataclass
class Bounds:
    """What a catalog entry says of a partition: the least and greatest time and expiry it may hold."""

    min_t: str
    max_t: str
    min_exp: datetime | None = None
    max_exp: datetime | None = None

    @classmethod
    def of_day(cls, day: str) -> Bounds:
        start = datetime.fromisoformat(day_start(day))
        return cls(day_start(day), format_time(start + timedelta(days=1) - timedelta(microseconds=1)))

    def widen(self, time_text: str, expire_at: datetime | None) -> None:
        self.min_t, self.max_t = min(self.min_t, time_text), max(self.max_t, time_text)
        # Up to the next UTC day: the partition is dropped at most a day late, written at most once a day.
        end = NEVER if expire_at is None else expire_at.replace(hour=0, minute=0, second=0, microsecond=0)
        end = end if expire_at is None else end + timedelta(days=1)
        self.max_exp = end if self.max_exp is None else max(self.max_exp, end)
        if expire_at is not None:
            self.min_exp = expire_at if self.min_exp is None else min(self.min_exp, expire_at)

    def covers(self, other: Bounds) -> bool:
        return (
            self.min_t <= other.min_t
            and self.max_t >= other.max_t
            and (other.min_exp is None or (self.min_exp is not None and self.min_exp <= other.min_exp))
            and (other.max_exp is None or (self.max_exp is not None and self.max_exp >= other.max_exp))
        )

    def update(self) -> dict[str, Any]:
        lows = {"min_t": self.min_t, **({"min_exp": self.min_exp} if self.min_exp else {})}
        return {"$min": lows, "$max": {"max_t": self.max_t, "max_exp": self.max_exp}}


class EventStore:
    def __init__(self, partitions: Partitions, topics: AsyncCollection[Any]) -> None:
        self.partitions = partitions
        self.topics = topics
        # Catalog entries this process wrote recently, to write one again only when its bounds grow.
        self._catalog_known: dict[tuple[str, str], tuple[Bounds, float]] = {}
        self.subjects = SubjectRegistry(partitions)

    async def generations(self, names: set[str]) -> dict[str, tuple[str, int]]:
        """topic name -> (uid, id directory shards), for the topics that exist."""
        found = await by_ids(self.topics, sorted(names), GENERATION_FIELDS, self.partitions.layout)
        return {d["_id"]: g for d in found if (g := generation(d, self.partitions.id_shards)) is not None}

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool = False) -> None:
        """The recorder's sink (`batch_writer`): pymongo's contract, duplicates and refusals as a
        `BulkWriteError` naming the indexes of `docs`."""
        outcome = await self.write(docs)
        errors = [{"index": i, "code": DUPLICATE_KEY, "errmsg": "already stored"} for i in outcome.duplicates]
        errors += [{"index": i, "code": 2, "errmsg": msg} for i, msg in outcome.refused.items()]
        if errors:
            raise BulkWriteError({"writeErrors": sorted(errors, key=lambda e: e["index"])})

    async def write(self, docs: list[dict[str, Any]]) -> WriteOutcome:
        outcome = WriteOutcome()
        generations = await self.generations({d["type"] for d in docs})
        shards = dict(generations.values())  # uid -> its directory's shards
        placed: list[tuple[int, dict[str, Any]]] = []
        for i, doc in enumerate(docs):
            if i % TURN_EVERY == TURN_EVERY - 1:
                await asyncio.sleep(0)
            generation = generations.get(doc["type"])
            if generation is None:
                outcome.orphans.append(i)
                continue
            placed.append((i, {**doc, "tu": generation[0], "day": day_of(doc["time"])}))
        if not placed:
            return outcome
        packed = self.partitions.layout is Layout.PACKED
        if packed:
            assign_blocks([d for _, d in placed])
        claimed, fresh = await self._claim_ids([d for _, d in placed], shards)
        for _, doc in placed:
            doc["day"], blk = claimed[id_key(doc["tu"], doc["eid"])]
            if packed:
                doc["blk"] = blk
        await self._widen_catalog([d for _, d in placed])
        await self.subjects.register([d for _, d in placed])
        if packed:
            await write_blocks(self.partitions, placed, fresh, outcome.duplicates, outcome.refused)
        else:
            await insert_singles(self.partitions, placed, outcome.duplicates, outcome.refused)
        return outcome

    async def _claim_ids(
        self, docs: list[dict[str, Any]], shards: dict[str, int]
    ) -> tuple[dict[str, tuple[str, str | None]], set[str]]:
        """The place (day partition, and block when packed) of each id: its own for a new one (returned as fresh
        too), the recorded one for an id seen before. `shards`: each generation's directory shards."""
        layout = self.partitions.layout
        # one collection object and one insert per directory collection, not per event
        by_coll: dict[str, tuple[AsyncCollection[Any], dict[str, dict[str, Any]]]] = {}
        places: dict[str, tuple[str, str | None]] = {}
        for i, doc in enumerate(docs):
            if i % TURN_EVERY == TURN_EVERY - 1:
                await asyncio.sleep(0)
            key = id_key(doc["tu"], doc["eid"])
            if key in places:  # the first copy in the batch claims it; later copies follow the entry
                continue
            name = self.partitions.ids_name(doc["tu"], doc["eid"], shards[doc["tu"]])
            if name not in by_coll:
                by_coll[name] = (self.partitions.db[name], {})
            blk = doc.get("blk")
            by_coll[name][1][key] = id_entry(layout, doc["tu"], doc["eid"], doc["day"], blk)
            places[key] = (doc["day"], blk)
        fresh: set[str] = set()

        async def claim(coll: AsyncCollection[Any], entries: dict[str, dict[str, Any]]) -> None:
            taken: list[str] = []
            try:
                await coll.insert_many(list(entries.values()), ordered=False)
            except BulkWriteError as exc:
                duplicates, refused = write_errors(exc)
                if refused:
                    raise
                keys = list(entries)
                taken = [keys[k] for k in duplicates]
            fresh.update(set(entries) - set(taken))
            if taken:
                for entry in await by_ids(coll, taken, {"day": 1, "blk": 1}, layout):
                    places[entry["_id"]] = id_place(entry)

        await one_at_a_time(claim(coll, entries) for coll, entries in by_coll.values())
        return places, fresh

    async def _widen_catalog(self, docs: list[dict[str, Any]]) -> None:
        """Bounds rounded outwards (the partition's whole day; expiries to the next day), so that a topic's
        partition is written at most about once a day per process; a superset only makes a read visit more."""
        bounds: dict[tuple[str, str], Bounds] = {}
        for doc in docs:
            key = (doc["tu"], doc["day"])
            b = bounds.get(key)
            if b is None:
                b = bounds[key] = Bounds.of_day(doc["day"])
            b.widen(doc["time"], doc.get("expire_at"))
        now = time.monotonic()
        for (uid, day), b in bounds.items():
            known = self._catalog_known.get((uid, day))
            if known is not None and now - known[1] < CATALOG_RECHECK_S and known[0].covers(b):
                continue
            await self.partitions.catalog(uid).update_one(
                {"_id": partition_key(uid, day)}, {"$set": {"tu": uid, "day": day}, **b.update()}, upsert=True
            )
            if len(self._catalog_known) > CATALOG_KNOWN_MAX:
                self._catalog_known.clear()
            self._catalog_known[(uid, day)] = (b, now)

    async def count(self, uid: str) -> int:
        """Events of a topic generation, partition by partition (the catalog can name an emptied one)."""
        total = 0
        for entry in await self.partitions.catalog(uid).find({"tu": uid}).to_list():
            total += len(await events_in(self.partitions, uid, entry["day"], {}))
        return total
