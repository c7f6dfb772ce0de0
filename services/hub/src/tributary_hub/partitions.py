"""Where a stored thing lives: the one map from a partition key to a collection, for both storage layouts.

`partitioned` (FerretDB, the default): a collection per (topic generation, UTC day) of events, K small id
directories (K fixed for the generation: `ID_SHARD_CHOICES` below), one subject registry and one partition
catalog per topic (and the latest-per-subject copies an older release wrote, still read). FerretDB 1.24 scans a
whole collection for every query, so a read costs what the collections it visits hold: keeping them small keeps
reads fast.
`indexed` (MongoDB): one collection per kind, compound indexes led by the partition fields.

Both layouts store the same documents and run the same queries: every query carries its partition fields
(`tu` = the topic's `uid`, `day`), so only the collection a key maps to differs. Names use the topic's `uid`
(12 hex digits), not its name: a topic deleted and created again never sees the old generation's events. They
are short and plain (`[a-z0-9.]`), far under MongoDB's 255-byte namespace and FerretDB's name rules.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pymongo
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

PREFIX = "evp."  # every partitioned-layout collection of events starts so
DAY_LEN = 8  # YYYYMMDD
# How many collections a topic generation's id directory is split into. Fewer shards make fewer commands per
# recorder batch (one per topic and shard it touches, each ~0.6 ms of FerretDB's CPU whatever its size) and longer
# scans per read by id (a shard's rows). Recorded on the topic document (`id_shards`) when a generation is created,
# because an id's shard must never change; generations created before it was recorded have 8.
ID_SHARD_CHOICES = (1, 2, 4, 8)
LEGACY_ID_SHARDS = 8


class Layout(StrEnum):
    PARTITIONED = "partitioned"
    PACKED = "packed"  # `partitioned`, with events in compressed blocks (event_blocks.py); samples as partitioned
    INDEXED = "indexed"


def samples_layout(layout: Layout) -> Layout:
    """Samples have no packed variant of their own: `packed` stores them as `partitioned`."""
    return Layout.PARTITIONED if layout is Layout.PACKED else layout


def day_of(time_text: str) -> str:
    """`YYYYMMDD` of a stored time (`format_time`: `YYYY-MM-DDT...Z`, always UTC)."""
    return time_text[0:4] + time_text[5:7] + time_text[8:10]


def day_start(day: str) -> str:
    """The first stored time of `day`, in the stored time format (so it compares with stored times)."""
    return f"{day[0:4]}-{day[4:6]}-{day[6:8]}T00:00:00.000000Z"


def shard_of(event_id: str, shards: int) -> int:
    """A stable hash (CRC-32: the same in every process and release) of the id, modulo the shard count."""
    return zlib.crc32(event_id.encode()) % shards


GENERATION_FIELDS = {"uid": 1, "id_shards": 1}  # what `generation` reads of a topic document


def generation_shards(value: Any, default: int) -> int:
    """A topic document's `id_shards` (any raw value), or `default` where it names none of the choices."""
    return value if type(value) is int and value in ID_SHARD_CHOICES else default


def generation(topic_doc: dict[str, Any], default_shards: int) -> tuple[str, int] | None:
    """(uid, id directory shards) of a raw topic document, None where it has no readable uid."""
    uid = topic_doc.get("uid")
    return (uid, generation_shards(topic_doc.get("id_shards"), default_shards)) if isinstance(uid, str) else None


# More ids than this: one `_id $in` query rather than a lookup each (`by_ids`).
EQ_LOOKUPS_MAX = 16


async def by_ids(
    coll: AsyncCollection[Any], ids: list[str], projection: dict[str, Any], layout: Layout
) -> list[dict[str, Any]]:
    """The documents of `coll` with these `_id`s (those that exist). FerretDB 1.24 answers `_id` equality by a scan
    that reads the one field and stops at the match, but `_id $in` by decoding every document of the collection
    (100,000 directory entries: 165 ms against 1.6 s for one id, and `$in` ~27 ns more a document per id): a few
    ids there are looked up one by one. MongoDB (`indexed`, real indexes): one `$in`."""
    if layout is Layout.INDEXED or len(ids) > EQ_LOOKUPS_MAX:
        found: list[dict[str, Any]] = await coll.find({"_id": {"$in": ids}}, projection).to_list()
        return found
    return [doc for key in ids if (doc := await coll.find_one({"_id": key}, projection)) is not None]


def id_key(uid: str, event_id: str) -> str:
    """A directory entry's `_id`: unique across topics even where one collection holds them all."""
    return f"{uid}/{event_id}"


def id_entry(layout: Layout, uid: str, event_id: str, day: str, blk: str | None) -> dict[str, Any]:
    """A new directory entry, as small as its layout allows (FerretDB's cost per entry follows its fields: 5 fields
    cost ~55 us of its CPU each, `_id` + one ~33 us) while every release reads it (`day`, and `blk` when packed:
    a hub not yet upgraded meets these entries during a rolling upgrade). `indexed` (one shared collection): the
    topic generation too."""
    key = id_key(uid, event_id)
    if layout is Layout.INDEXED:
        return {"_id": key, "tu": uid, "day": day}
    if blk is not None:
        return {"_id": key, "day": day, "blk": blk}
    return {"_id": key, "day": day}


def id_place(entry: dict[str, Any]) -> tuple[str, str | None]:
    """(day, block or None) of a directory entry, as any release wrote it."""
    return entry["day"], entry.get("blk") or None


def ids_of_day(layout: Layout, uid: str, day: str) -> dict[str, Any]:
    """The filter of a topic generation's directory entries naming `day` (older releases also wrote `tu`)."""
    if layout is Layout.INDEXED:
        return {"tu": uid, "day": day}
    return {"day": day}  # the collection is the generation's own


def partition_key(uid: str, day: str) -> str:
    return f"{uid}/{day}"


def subject_key(uid: str, subject: str | None) -> str:
    """A latest-per-subject document's `_id`; `-` for the events without a subject (subjects are never empty)."""
    return f"{uid}/-" if subject is None else f"{uid}/s/{subject}"


@dataclass(frozen=True)
class Partitions:
    db: AsyncDatabase[Any]
    layout: Layout = Layout.PARTITIONED
    id_shards: int = LEGACY_ID_SHARDS  # of a generation whose topic document names none

    def events(self, uid: str, day: str) -> AsyncCollection[Any]:
        if self.layout is Layout.INDEXED:
            return self.db["event_log"]
        return self.db[f"{PREFIX}{uid}.d{day}"]

    def ids(self, uid: str, event_id: str, shards: int | None = None) -> AsyncCollection[Any]:
        """The id directory shard of `event_id` in a generation of `shards` shards (None: `id_shards`)."""
        return self.db[self.ids_name(uid, event_id, shards)]

    def ids_name(self, uid: str, event_id: str, shards: int | None = None) -> str:
        """The name of `ids(uid, event_id, shards)`: one collection for every topic in the indexed layout."""
        if self.layout is Layout.INDEXED:
            return "event_ids"
        return f"{PREFIX}{uid}.id{shard_of(event_id, shards or self.id_shards)}"

    def id_directories(self, uid: str, shards: int) -> list[AsyncCollection[Any]]:
        """Every shard of a generation's directory of `shards` shards."""
        if self.layout is Layout.INDEXED:
            return [self.db["event_ids"]]
        return [self.db[f"{PREFIX}{uid}.id{k}"] for k in range(shards)]

    def latest(self, uid: str) -> AsyncCollection[Any]:
        if self.layout is Layout.INDEXED:
            return self.db["event_latest"]
        return self.db[f"{PREFIX}{uid}.latest"]

    def subjects(self, uid: str) -> AsyncCollection[Any]:
        """The subject registry (event_subjects.py)."""
        if self.layout is Layout.INDEXED:
            return self.db["event_subjects"]
        return self.db[f"{PREFIX}{uid}.subjects"]

    def catalog(self, uid: str) -> AsyncCollection[Any]:
        if self.layout is Layout.INDEXED:
            return self.db["event_partitions"]
        return self.db[f"{PREFIX}{uid}.parts"]

    async def prepare(self) -> None:
        """The indexes of the `indexed` layout (one command each: see `tributary_common.mongo.connect`)."""
        if self.layout is not Layout.INDEXED:
            return
        asc = pymongo.ASCENDING
        wanted: dict[str, list[IndexModel]] = {
            "event_log": [
                IndexModel([("tu", asc), ("day", asc), ("time", asc), ("_id", asc)], name="partition_pos"),
                IndexModel([("tu", asc), ("day", asc), ("expire_at", asc)], name="partition_expiry"),
            ],
            "event_latest": [IndexModel([("tu", asc), ("subject", asc)], name="topic_subject")],
            "event_subjects": [IndexModel([("tu", asc), ("day", asc)], name="topic_day")],
            "event_partitions": [IndexModel([("tu", asc), ("min_t", asc)], name="topic_time")],
            "event_ids": [IndexModel([("tu", asc)], name="topic")],
        }
        for name, indexes in wanted.items():
            for index in indexes:
                await self.db[name].create_indexes([index])

    async def drop_topic(self, uid: str) -> None:
        """Everything stored for one topic generation: its collections, or its documents where shared."""
        if self.layout is Layout.INDEXED:
            for name in ("event_log", "event_ids", "event_latest", "event_subjects", "event_partitions"):
                await self.db[name].delete_many({"tu": uid})
            return
        mine = f"{PREFIX}{uid}."
        # The catalog last: while anything is left, a retry of the delete finds it again.
        names = sorted((n for n in await self.db.list_collection_names() if n.startswith(mine)), key=_catalog_last)
        for name in names:
            await self.db.drop_collection(name)

    async def drop_partition(self, uid: str, day: str) -> None:
        """One day of one topic: the whole collection, or its documents where shared."""
        if self.layout is Layout.INDEXED:
            await self.events(uid, day).delete_many({"tu": uid, "day": day})
        else:
            await self.db.drop_collection(self.events(uid, day).name)


def _catalog_last(name: str) -> bool:
    return name.endswith(".parts")
