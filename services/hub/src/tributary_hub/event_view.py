"""Every stored event at once, as a collection-like view over all partitions of all topics: for maintenance
tools and tests, never a request path (it visits every partition). A change through it keeps each partition's
catalog entry true (a lowered `expire_at` lowers the partition's `min_exp`, so that the sweep finds it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .event_blocks import events_in, matches, rewrite
from .event_reads import EventReader, Part, where
from .partitions import Layout, Partitions, partition_key


def first_set(query: dict[str, Any], update: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """A `rewrite` change: `update`'s `$set` (the only operator the packed layout takes) on the first match."""
    done = False

    def change(doc: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal done
        if done or not matches(doc, query):
            return doc
        done = True
        return {**doc, **update["$set"]}

    return change


class Found:
    """`find(...)`'s result: `sort(...)` then `to_list()`, like a cursor."""

    def __init__(self, view: AllEvents, query: dict[str, Any]) -> None:
        self.view = view
        self.query = query
        self.keys: list[tuple[str, int]] = []

    def sort(self, keys: list[tuple[str, int]]) -> Found:
        self.keys = keys
        return self

    async def to_list(self) -> list[dict[str, Any]]:
        docs = [d for part in await self.view.parts() for d in await self.view.find_in(part, self.query)]
        for field, direction in reversed(self.keys):
            docs.sort(key=lambda d: d.get(field) or "", reverse=direction < 0)
        return docs


class AllEvents:
    def __init__(self, partitions: Partitions, reader: EventReader) -> None:
        self.partitions = partitions
        self.reader = reader

    async def parts(self) -> list[Part]:
        return await self.reader.parts(await self.reader.topics_for("#"), None, None)

    async def find_in(self, part: Part, query: dict[str, Any]) -> list[dict[str, Any]]:
        return await events_in(self.partitions, part.topic.uid, part.day, query)

    def find(self, query: dict[str, Any]) -> Found:
        return Found(self, query)

    async def count_documents(self, query: dict[str, Any]) -> int:
        return len(await self.find(query).to_list())

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> bool:
        """The first matching event, wherever it is; whether one was."""
        for part in await self.parts():
            coll = self.partitions.events(part.topic.uid, part.day)
            if self.partitions.layout is Layout.PACKED:
                matched = await rewrite(coll, part.topic.uid, part.day, first_set(query, update))
            else:
                matched = (await coll.update_one(where(part.topic.uid, part.day, query), update)).matched_count
            if matched:
                expire_at = update.get("$set", {}).get("expire_at")
                if expire_at is not None:
                    await self.partitions.catalog(part.topic.uid).update_one(
                        {"_id": partition_key(part.topic.uid, part.day)}, {"$min": {"min_exp": expire_at}}
                    )
                return True
        return False
