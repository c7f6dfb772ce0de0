"""Event retention over partitions: each event keeps its `expire_at` (from its topic's retention when it was
recorded), and each partition's catalog entry the least and greatest of them (`min_exp`, `max_exp`). A sweep
visits only partitions with something expired: one whose every event has expired is dropped whole (with its
id-directory entries), the boundary one has its expired events deleted (and their entries, unless the day is
dropped within a day anyway) and is swept again when the least expiry left is due: an hour later at the soonest, a
day later at most. Latest-per-subject documents (an older release's) that expired go too, and subject registry
entries older than every partition left. The same in every layout, so that it needs no TTL index.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tributary_common.mongo import Retention, RetentionMode

from .event_blocks import events_in, rewrite
from .event_reads import EventReader, Topic, where
from .partitions import Layout, Partitions, id_key, ids_of_day, partition_key

# A boundary day is swept again after this at the latest: an event written while it was swept could not lower
# the `min_exp` the sweep replaces (its widening saw the old, lower value), so it is deleted at most this late.
LOOK_AGAIN = timedelta(days=1)
# ... and this at the soonest: a topic's day expires over a whole day, event by event, and each sweep of it reads the
# day whole (every block unpacked); an expired event there is deleted within this.
SWEEP_STEP = timedelta(hours=1)
FORGET_CHUNK = 1_000  # directory keys per delete (FerretDB matches `$in` against every entry of the shard)


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
        catalog = self.partitions.catalog(uid)
        if entry.get("max_exp") is not None and entry["max_exp"] < now:
            count = len(await events_in(self.partitions, uid, day, {}))
            await self.partitions.drop_partition(uid, day)
            await self._forget_ids(topic, day)
            # Only if nothing was written meanwhile (a late event widens the entry: the next sweep sees it).
            await catalog.delete_one({"_id": partition_key(uid, day), "max_exp": entry["max_exp"]})
            return count
        # The ids of events deleted from a day dropped within a day go with the drop (one delete by day); otherwise
        # (a day holding events kept longer or for ever) now, or they would stay as long as the day.
        forget = entry.get("max_exp") is None or entry["max_exp"] > now + LOOK_AGAIN
        deleted, expired, least_left = await self._sweep_day(uid, day, now, forget)
        if forget:
            await self._forget_ids(topic, day, expired)
        look_again = now + LOOK_AGAIN if least_left is None else min(least_left, now + LOOK_AGAIN)
        # Only if no concurrent write lowered `min_exp` meanwhile (then the next sweep comes back for it).
        await catalog.update_one(
            {"_id": partition_key(uid, day), "min_exp": entry["min_exp"]},
            {"$set": {"min_exp": max(look_again, now + SWEEP_STEP)}},
        )
        return deleted

    async def _sweep_day(
        self, uid: str, day: str, now: datetime, forget: bool
    ) -> tuple[int, list[str], datetime | None]:
        """Delete a partition's expired events: how many, their ids (when `forget`) and the least expiry left."""
        events = self.partitions.events(uid, day)
        if self.partitions.layout is Layout.PACKED:
            expired: list[str] = []
            least_left: datetime | None = None

            def keep(event: dict[str, Any]) -> dict[str, Any] | None:
                nonlocal least_left
                if _expired(event, now):
                    expired.append(event["eid"])
                    return None
                if event.get("expire_at") is not None:
                    least_left = min(least_left or event["expire_at"], event["expire_at"])
                return event

            return await rewrite(events, uid, day, keep), expired, least_left
        due = where(uid, day, {"expire_at": {"$lt": now}})
        # An event written between the two commands, already expired, is deleted with its entry left (harmless).
        ids = [d["eid"] for d in await events.find(due, {"eid": 1}).to_list()] if forget else []
        deleted = int((await events.delete_many(due)).deleted_count)
        later = where(uid, day, {"expire_at": {"$gte": now}})
        least = await events.find(later, {"expire_at": 1}).sort("expire_at", 1).limit(1).to_list()
        return deleted, ids, least[0]["expire_at"] if least else None

    async def _forget_ids(self, topic: Topic, day: str, eids: list[str] | None = None) -> None:
        """The directory entries of `eids` (None: of every event of the day) naming `day`, after their events are
        gone (the other way round, a crash between the two would let a copy be stored twice)."""
        of_day = ids_of_day(self.partitions.layout, topic.uid, day)
        if eids is None:
            for coll in self.partitions.id_directories(topic.uid, topic.id_shards):
                await coll.delete_many(of_day)
            return
        keys: dict[str, list[str]] = defaultdict(list)
        for eid in eids:
            keys[self.partitions.ids_name(topic.uid, eid, topic.id_shards)].append(id_key(topic.uid, eid))
        for name, named in keys.items():
            for i in range(0, len(named), FORGET_CHUNK):
                await self.partitions.db[name].delete_many({"_id": {"$in": named[i : i + FORGET_CHUNK]}, **of_day})
