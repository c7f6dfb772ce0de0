"""Retention of a boundary day (a partition holding events that expire at different times, or never), in every
layout on the real FerretDB: the events it deletes leave the id directory with them unless the day is dropped
within a day anyway, and the day is swept again when the least expiry left is due (an hour later at the soonest, a
day later at most), not at every sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.hub.test_event_storage import Storage, event, storage  # noqa: F401  (the fixture)
from tributary_hub import event_retention
from tributary_hub.event_retention import LOOK_AGAIN, SWEEP_STEP
from tributary_hub.event_store import EventStore
from tributary_hub.history import EventQuery
from tributary_hub.partitions import partition_key

UID = "f00000000000"
DAY = datetime(2026, 3, 6, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)


async def directory(s: Storage) -> dict[str, str]:
    """The topic generation's directory: key -> the day its entry names."""
    found: dict[str, str] = {}
    for coll in s.partitions.id_directories(UID, s.partitions.id_shards):
        for entry in await coll.find({}).to_list():
            if entry["_id"].startswith(f"{UID}/"):
                found[entry["_id"].removeprefix(f"{UID}/")] = entry["day"]
    return found


async def min_exp(s: Storage) -> datetime:
    entry = await s.partitions.catalog(UID).find_one({"_id": partition_key(UID, "20260306")})
    assert entry is not None
    value: datetime = entry["min_exp"]
    return value


async def found(s: Storage, eid: str) -> dict[str, Any] | None:
    return await s.history.event("plant", eid)


async def test_a_boundary_day_forgets_the_ids_it_deletes_and_is_swept_again_when_due(
    storage: Storage,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_retention, "FORGET_CHUNK", 7)  # several deletes per directory shard
    await storage.topic("plant", UID)
    gone = [
        event("plant", f"old{n}", DAY + timedelta(minutes=n), "s", expire_at=NOW - timedelta(hours=1))
        for n in range(40)
    ]
    later = event("plant", "later", DAY + timedelta(hours=1), "s", expire_at=NOW + timedelta(hours=5))
    forever = event("plant", "forever", DAY + timedelta(hours=2), "s")
    await storage.store.write([*gone[:20], later, forever, *gone[20:]])
    assert await storage.retention.sweep_once(NOW) == len(gone)
    assert await directory(storage) == {"later": "20260306", "forever": "20260306"}
    assert await found(storage, "old3") is None and await found(storage, "later") is not None
    # Looked at again when `later` expires, not at the next sweep (it would read the whole day every minute).
    assert await min_exp(storage) == later["expire_at"]
    assert await storage.retention.sweep_once(NOW + timedelta(hours=1)) == 0
    assert await min_exp(storage) == later["expire_at"]
    # An expired id is free again: a copy at another time is a new event, in its own day.
    assert (await storage.store.write([event("plant", "old3", NOW)])).duplicates == []
    copy = await found(storage, "old3")
    assert copy is not None and copy["time"].startswith("2026-03-10")
    assert (await directory(storage))["old3"] == "20260310"
    # `later` expires; only `forever` is left, and the day is looked at again a day later.
    then = NOW + timedelta(hours=6)
    assert await storage.retention.sweep_once(then) == 1
    assert await found(storage, "later") is None and await found(storage, "forever") is not None
    assert await directory(storage) == {"forever": "20260306", "old3": "20260310"}
    assert await min_exp(storage) == then + LOOK_AGAIN


async def test_a_later_write_still_lowers_the_next_look_and_none_waits_more_than_a_day(storage: Storage) -> None:  # noqa: F811
    await storage.topic("plant", UID)
    await storage.store.write(
        [
            event("plant", "old", DAY, "s", expire_at=NOW - timedelta(hours=1)),
            event("plant", "forever", DAY + timedelta(hours=1), "s"),
        ]
    )
    assert await storage.retention.sweep_once(NOW) == 1
    assert await min_exp(storage) == NOW + LOOK_AGAIN
    # Another recorder writes an event expiring before that: its widening lowers `min_exp`, the sweep finds it.
    soon = event("plant", "soon", DAY + timedelta(hours=2), "s", expire_at=NOW + timedelta(hours=1))
    assert (await EventStore(storage.partitions, storage.partitions.db["topics"]).write([soon])).duplicates == []
    assert await min_exp(storage) == soon["expire_at"]
    assert await storage.retention.sweep_once(NOW + timedelta(hours=2)) == 1
    # One this process wrote (its catalog write remembered, as during a sweep racing it) waits a day at most.
    soon2 = event("plant", "soon2", DAY + timedelta(hours=3), "s", expire_at=NOW + timedelta(hours=3))
    await storage.store.write([soon2])
    assert await storage.retention.sweep_once(NOW + timedelta(hours=4)) == 0
    assert await found(storage, "soon2") is not None
    assert await storage.retention.sweep_once(NOW + timedelta(hours=2, minutes=1) + LOOK_AGAIN) == 1
    assert await found(storage, "soon2") is None
    assert await directory(storage) == {"forever": "20260306"}


async def test_a_day_dropped_within_a_day_is_swept_hourly_and_its_ids_go_with_the_drop(storage: Storage) -> None:  # noqa: F811
    """A topic's day expires event by event over a whole day: sweeping it every minute read the day whole each
    time, and forgetting ids one by one costs FerretDB a scan of the shard per delete; the drop takes them at once."""
    await storage.topic("plant", UID)
    expiring = [
        event("plant", f"e{n}", DAY + timedelta(minutes=10 * n), "s", expire_at=NOW + timedelta(minutes=10 * n))
        for n in range(12)
    ]
    await storage.store.write(expiring)
    assert await storage.retention.sweep_once(NOW + timedelta(minutes=25)) == 3
    assert len(await directory(storage)) == len(expiring)
    assert await min_exp(storage) == NOW + timedelta(minutes=25) + SWEEP_STEP  # not at e3's expiry, 5 minutes on
    assert await storage.retention.sweep_once(NOW + timedelta(minutes=30)) == 0
    assert await storage.retention.sweep_once(NOW + timedelta(minutes=86)) == 6
    assert [e["id"] async for e in storage.history.stream(await storage.history.select(EventQuery(pattern="#")))] == [
        "e9",
        "e10",
        "e11",
    ]
    assert await storage.retention.sweep_once(NOW + timedelta(days=2)) == 3  # the day dropped, its entries with it
    assert await directory(storage) == {}
