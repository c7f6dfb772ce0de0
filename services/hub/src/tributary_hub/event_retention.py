"""Event retention over partitions: each event keeps its `expire_at` (from its topic's retention when it was
recorded), and each partition's catalog entry the least and greatest of them (`min_exp`, `max_exp`). A sweep
visits only partitions with something expired: one whose every event has expired is dropped whole (with its
id-directory entries), the boundary one has its expired events deleted. Latest-per-subject documents (an older
release's) that expired go too, and subject registry entries older than every partition left. The same on both
layouts, so that it needs no TTL index.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tributary_common.mongo import Retention, RetentionMode

from .event_blocks import events_in, rewrite
from .event_reads import EventReader, Topic, where
from .partitions import Layout, Partitions, ids_of_day, partition_key


def _expired(doc: dict[str, Any], now: datetime) -> bool:
    return doc.get("expire_at") is not None and doc["expire_at"] < now


class EventRetention(Retention):
    """`Retention`'s sweeper (its loop, logs and stop) with a sweep over partitions."""

    def __init__(self, partitions: Partitions, reader: EventReader, sweep_interval_s: float = 60) -> None:
        # The collection only names the sweep in logs: every event is in a partition.
        super().__init__(partitions.db["events"], sweep_interval_s=sweep_interval_s)
        self.partitions = partitions
        self.reader = reader

    async def start(self) -> RetentionMode:
        self.mode = "sweeper"
        await self.sweep_once()
        self._task = asyncio.create_task(self._sweep_forever(), name="retention-events")
        return self.mode

    async def sweep_once(self, now: datetime | None = None) -> int:
        """Events deleted (those of dropped partitions included)."""
        now = now or datetime.now(UTC)
        deleted = 0
        for topic in await self.reader.topics_for("#"):
            catalog = self.partitions.catalog(topic.uid)
            due = await catalog.find({"tu": topic.uid, "min_exp": {"$lt": now}}).to_list()
            for entry in due:
                deleted += await self._expire(topic, entry, now)
            if due:
                await self.partitions.latest(topic.uid).delete_many({"tu": topic.uid, "expire_at": {"$lt": now}})
                await self._forget_subjects(topic.uid)
        return deleted

    async def _forget_subjects(self, uid: str) -> None:
        """Registry entries older than every partition left: all their events were in dropped partitions."""
        days = [e["day"] for e in await self.partitions.catalog(uid).find({"tu": uid}, {"day": 1}).to_list()]
        gone: dict[str, Any] = {"tu": uid, "day": {"$lt": min(days)}} if days else {"tu": uid}
        await self.partitions.subjects(uid).delete_many(gone)

    async def _expire(self, topic: Topic, entry: dict[str, Any], now: datetime) -> int:
        uid, day = topic.uid, entry["day"]
        events = self.partitions.events(uid, day)
        catalog = self.partitions.catalog(uid)
        if entry.get("max_exp") is not None and entry["max_exp"] < now:
            count = len(await events_in(self.partitions, uid, day, {}))
            await self.partitions.drop_partition(uid, day)
            await self._forget_ids(topic, day)
            # Only if nothing was written meanwhile (a late event widens the entry: the next sweep sees it).
            await catalog.delete_one({"_id": partition_key(uid, day), "max_exp": entry["max_exp"]})
            return count
        if self.partitions.layout is Layout.PACKED:
            deleted = await rewrite(events, uid, day, lambda e: None if _expired(e, now) else e)
        else:
            deleted = int((await events.delete_many(where(uid, day, {"expire_at": {"$lt": now}}))).deleted_count)
        # Everything left expires later; a concurrent write lowering `min_exp` again keeps its value.
        await catalog.update_one(
            {"_id": partition_key(uid, day), "min_exp": entry["min_exp"]}, {"$set": {"min_exp": now}}
        )
        return deleted

    async def _forget_ids(self, topic: Topic, day: str) -> None:
        for coll in self.partitions.id_directories(topic.uid, topic.id_shards):
            await coll.delete_many(ids_of_day(self.partitions.layout, topic.uid, day))
