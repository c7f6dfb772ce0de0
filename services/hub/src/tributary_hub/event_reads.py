"""Reading events from their partitions: which topics a pattern names, which of their day partitions a time
range needs (from each topic's catalog), pages merged across partitions and topics in position order
`(time, _id)` that stop visiting partitions once the page is full, and an event by id through the id directory
(the latest event per subject: event_subjects.py). A read costs what it returns plus one small catalog read per topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from tributary_common.ttl_cache import TtlCache

from .documents import event_key
from .event_blocks import events_in, unpack_one
from .partitions import GENERATION_FIELDS, Layout, Partitions, generation, id_key, id_place

SORT_ASC = [("time", 1), ("_id", 1)]


@dataclass(frozen=True)
class Topic:
    name: str
    uid: str
    id_shards: int  # its generation's id directory shards (partitions.generation)


@dataclass(frozen=True)
class Part:
    topic: Topic
    day: str
    min_t: str
    max_t: str


def order(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["time"], doc["_id"]


def where(uid: str, day: str, query: dict[str, Any]) -> dict[str, Any]:
    """`query` within one partition: its fields first, in both layouts."""
    fields = {"tu": uid, "day": day}
    return {"$and": [fields, query]} if query else fields


class EventReader:
    def __init__(self, partitions: Partitions, topics: AsyncCollection[Any], *, topic_ttl_s: float = 1.0) -> None:
        self.partitions = partitions
        self.topics = topics
        # A topic's generation, remembered as long as the hub's own topic cache (`TOPIC_LOCAL_TTL_S`).
        self._generations: TtlCache[str, list[Topic]] = TtlCache(topic_ttl_s)

    async def topics_for(self, pattern: str, topic: str | None = None) -> list[Topic]:
        """The existing topics a pattern can match: the one it names first, or all for a leading wildcard."""
        first = topic or pattern.split(".", 1)[0]
        hit = self._generations.get(first)
        if hit is not None:
            return hit.value
        query: dict[str, Any] = {} if first in ("*", "#") else {"_id": first}
        docs = await self.topics.find(query, GENERATION_FIELDS).to_list()
        found = [Topic(d["_id"], *g) for d in docs if (g := generation(d, self.partitions.id_shards)) is not None]
        if found and "_id" in query:  # one topic that exists: a new topic is seen at once
            self._generations.put(first, found)
        return found

    async def parts(self, topics: list[Topic], lower: str | None, upper: str | None) -> list[Part]:
        """The partitions that can hold a time in `[lower, upper]`, oldest first."""
        found: list[Part] = []
        for t in topics:
            for entry in await self.partitions.catalog(t.uid).find({"tu": t.uid}).to_list():
                part = Part(t, entry["day"], entry["min_t"], entry["max_t"])
                if (lower is None or part.max_t >= lower) and (upper is None or part.min_t <= upper):
                    found.append(part)
        return sorted(found, key=lambda p: (p.min_t, p.topic.uid, p.day))

    async def first(self, parts: list[Part], query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """The first `limit` matches in position order. A partition whose earliest time is after the last
        of `limit` matches already found cannot change them: the visit stops there."""
        found: list[dict[str, Any]] = []
        for part in parts:
            if len(found) >= limit and part.min_t > found[limit - 1]["time"]:
                break
            found = sorted(found + await self._read(part, query, limit), key=order)[:limit]
        return found

    async def _read(self, part: Part, query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        if self.partitions.layout is Layout.PACKED:
            return (await events_in(self.partitions, part.topic.uid, part.day, query))[:limit]
        coll = self.partitions.events(part.topic.uid, part.day)
        docs: list[dict[str, Any]] = (
            await coll.find(where(part.topic.uid, part.day, query)).sort(SORT_ASC).limit(limit).to_list()
        )
        return docs

    async def by_id(self, topic: Topic, event_id: str) -> dict[str, Any] | None:
        """Through the directory: one small `_id` lookup, then one in the day partition it names. Each is an
        equality on `_id` alone, which FerretDB hands to SQLite (an `$in` or a second field makes it decode
        every document of the collection: every block of a busy day)."""
        directory = self.partitions.ids(topic.uid, event_id, topic.id_shards)
        entry = await directory.find_one({"_id": id_key(topic.uid, event_id)})
        if entry is None:
            return None
        day, blk = id_place(entry)
        coll = self.partitions.events(topic.uid, day)
        key = event_key(topic.name, event_id)
        if blk is not None:  # packed: in its block, or alone beside it (event_blocks.py)
            for home in (blk, f"{blk}/{event_id}"):
                block = await coll.find_one({"_id": home})
                found = None if block is None else unpack_one(block, key, coll.codec_options)
                if found is not None:
                    return found
            return None
        # The indexed layout's one collection holds every generation and day: its index answers the rest.
        shared = self.partitions.layout is Layout.INDEXED
        doc: dict[str, Any] | None = await coll.find_one(
            {"_id": key, "tu": topic.uid, "day": day} if shared else {"_id": key}
        )
        return doc
