"""Latest event per subject, found at read from the newest partitions through the subject registry (both
layouts, real FerretDB): subjects silent for days, an event stored in an older day partition with a later time,
copies an older release wrote in the `latest` collection, and registry entries going with their partitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.hub.test_event_storage import T0, Storage, event, storage  # noqa: F401  (the fixture)
from tributary_hub.partitions import subject_key

UID = "eeeeeeeeeeee"


async def test_latest_across_days_older_partitions_and_older_releases(storage: Storage) -> None:  # noqa: F811
    await storage.topic("plant", UID)
    day = timedelta(days=1)
    # "a" speaks on the first day only; "b" every day; "c" on day 2, and once (a crash's retry) in day 1's partition
    # with a time of day 3: it is the newest "c" although its partition is older.
    await storage.store.write([event("plant", "a1", T0, "a"), event("plant", "b1", T0, "b")])
    await storage.store.write([event("plant", f"b{n}", T0 + n * day, "b") for n in (2, 3)])
    await storage.store.write([event("plant", "c2", T0 + 2 * day, "c")])
    directory = storage.partitions.ids(UID, "c9")
    await directory.insert_one({"_id": f"{UID}/c9", "tu": UID, "day": "20260301", "exp": None})
    await storage.store.write([event("plant", "c9", T0 + 3 * day + timedelta(minutes=1), "c")])
    # What an older release left: a copy per subject; "b"'s is older than what is stored since, "old" only there.
    stale = event("plant", "b0", T0 - day, "b")
    old = event("plant", "o1", T0 - day, "old")
    await storage.partitions.latest(UID).insert_many(
        [{**doc, "_id": subject_key(UID, doc["subject"]), "event_id": doc["_id"], "tu": UID} for doc in (stale, old)]
    )
    latest = await storage.history.latest("plant", "plant.#")
    assert [(e["subject"], e["id"]) for e in latest] == [("a", "a1"), ("b", "b3"), ("c", "c9"), ("old", "o1")]
    assert [e["id"] for e in await storage.history.latest("plant", "plant.c")] == ["c9"]
    found = await storage.history.event("plant", "c9")
    assert found is not None and found["subject"] == "c"


async def test_registry_entries_go_with_their_partitions(storage: Storage) -> None:  # noqa: F811
    await storage.topic("plant", UID)
    now = datetime(2026, 3, 20, tzinfo=UTC)
    short, kept = timedelta(days=1), timedelta(days=30)
    await storage.store.write(
        [
            event("plant", "gone", T0, "x", expire_at=T0 + short),
            event("plant", "stays", T0 + timedelta(days=10), "y", expire_at=T0 + kept),
        ]
    )
    registry = storage.partitions.subjects(UID)
    assert sorted(e["subject"] for e in await registry.find({"tu": UID}).to_list()) == ["x", "y"]
    await storage.retention.sweep_once(now)
    # "x" had events only in the dropped day: its entry goes; "y" keeps its own.
    assert [e["subject"] for e in await registry.find({"tu": UID}).to_list()] == ["y"]
    assert [e["id"] for e in await storage.history.latest("plant", "plant.#")] == ["stays"]
    # Written again later, "x" is registered again (this process rechecks what it wrote).
    storage.store.subjects._known.clear()
    await storage.store.write([event("plant", "back", now, "x")])
    assert [e["id"] for e in await storage.history.latest("plant", "plant.#")] == ["back", "stays"]
