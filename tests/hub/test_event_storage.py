"""Event storage in both layouts (`partitioned`, `indexed`) on the real FerretDB (a database per test), through
its own write path (`EventStore.write`, what the recorder calls) and read path (`EventHistory`): exactly once per
(topic, id) whatever time a copy carries, pages across day partitions and topics in position order with cursors
that continue across them, latest per subject, event by id, retention by partition, topic deletion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tributary_common.matcher import matches
from tributary_hub.documents import event_key
from tributary_hub.event_retention import EventRetention
from tributary_hub.event_store import EventStore
from tributary_hub.history import EventHistory, EventQuery
from tributary_hub.partitions import PREFIX, Layout, Partitions, id_place

T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
SUBJECTS = [None, "a", "a.b", "b"]


@dataclass
class Storage:
    partitions: Partitions
    store: EventStore
    history: EventHistory
    retention: EventRetention

    async def topic(self, name: str, uid: str) -> None:
        await self.partitions.db["topics"].insert_one({"_id": name, "uid": uid})

    async def names(self) -> list[str]:
        return sorted(await self.partitions.db.list_collection_names())


def event(topic: str, eid: str, at: datetime, subject: str | None = None, **extra: Any) -> dict[str, Any]:
    """A document as `event_records.event_document` makes it."""
    return {
        "_id": event_key(topic, eid),
        "eid": eid,
        "key": f"{topic}.{subject}" if subject else topic,
        "type": topic,
        "subject": subject,
        "time": at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "source": "/test",
        "dataschema": f"/topics/{topic}/schemas/1",
        "data_json": "{}",
        "traceparent": None,
        "publisher": None,
        "publisher_exposed": False,
        "expire_at": None,
        **extra,
    }


@pytest.fixture(params=[Layout.PARTITIONED, Layout.PACKED, Layout.INDEXED])
async def storage(request: pytest.FixtureRequest, mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> Storage:
    partitions = Partitions(mongo_client[mongo_db_name], request.param, id_shards=4)
    await partitions.prepare()
    topics = partitions.db["topics"]
    history = EventHistory(partitions, topics, chunk_rows=5, latest_max_subjects=100)
    return Storage(partitions, EventStore(partitions, topics), history, EventRetention(partitions, history.reader))


async def all_pages(s: Storage, q: EventQuery, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        sel = await s.history.select(EventQuery(**{**q.__dict__, "cursor": cursor}))
        page, cursor = await s.history.page(sel, limit)
        assert len(page) <= limit
        items += page
        if cursor is None:
            return items
    raise AssertionError("pages never ended")


async def seed(s: Storage) -> list[dict[str, Any]]:
    """Two topics, events every 20 minutes over four UTC days (several partitions each), in shuffled order."""
    await s.topic("plant", "aaaaaaaaaaaa")
    await s.topic("other", "bbbbbbbbbbbb")
    docs = [
        event(topic, f"e{n}", T0 + timedelta(minutes=20 * n + (7 if topic == "other" else 0)), SUBJECTS[n % 4])
        for n in range(200)
        for topic in ("plant", "other")
    ]
    shuffled = docs[1::2] + docs[::2]
    for i in range(0, len(shuffled), 64):
        outcome = await s.store.write(shuffled[i : i + 64])
        assert not outcome.duplicates and not outcome.refused and not outcome.orphans
    return sorted(docs, key=lambda d: (d["time"], d["_id"]))


async def test_pages_span_days_and_topics_and_cursors_continue_across_them(storage: Storage) -> None:
    docs = await seed(storage)
    assert len({d["time"][:10] for d in docs}) >= 3  # several day partitions
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=50)
    for pattern, limit in (("#", 7), ("plant.#", 10), ("plant.a.*", 3), ("*.a", 4), ("other", 50)):
        want = [
            d["eid"]
            for d in docs
            if matches(pattern, d["key"]) and start.isoformat()[:19] <= d["time"][:19] < end.isoformat()[:19]
        ]
        got = await all_pages(storage, EventQuery(pattern=pattern, start=start, end=end), limit)
        assert [e["id"] for e in got] == want, pattern
        assert want  # the case tests something
    # Export (stream) reads in chunks across partitions: the whole selection, in order, once.
    sel = await storage.history.select(EventQuery(pattern="#"))
    assert [(e["type"], e["id"]) for e in [x async for x in storage.history.stream(sel)]] == [
        (d["type"], d["eid"]) for d in docs
    ]


async def test_after_id_latest_and_event_by_id(storage: Storage) -> None:
    docs = await seed(storage)
    mid = [d for d in docs if d["type"] == "plant"][100]
    sel = await storage.history.select(EventQuery(pattern="plant.#", after_id=mid["eid"]))
    page, _ = await storage.history.page(sel, 5)
    want = [d["eid"] for d in docs if d["type"] == "plant" and d["time"] > mid["time"]][:5]
    assert [e["id"] for e in page] == want
    found = await storage.history.event("plant", mid["eid"])
    assert found is not None and found["time"] == mid["time"]
    assert await storage.history.event("plant", "nope") is None
    latest = await storage.history.latest("plant", "plant.#")
    newest = {d["subject"]: d["eid"] for d in docs if d["type"] == "plant"}  # the last one wins
    assert [(e.get("subject"), e["id"]) for e in latest] == [(s, newest[s]) for s in SUBJECTS]
    only_a = await storage.history.latest("plant", "plant.a.#")
    assert [e.get("subject") for e in only_a] == ["a", "a.b"]


async def test_exactly_once_under_redelivery_and_a_retry_at_another_time(storage: Storage) -> None:
    await storage.topic("plant", "cccccccccccc")
    first = event("plant", "x1", T0, "a")
    retry = event("plant", "x1", T0 + timedelta(days=3), "a", data_json='{"retry": true}')
    outcome = await storage.store.write([first, first])  # the same batch twice over
    assert outcome.duplicates == [1]
    for copy in (first, retry, retry):
        assert (await storage.store.write([copy])).duplicates == [0]
    sel = await storage.history.select(EventQuery(pattern="#"))
    page, _ = await storage.history.page(sel, 100)
    assert [(e["id"], e["time"], e["data"]) for e in page] == [("x1", first["time"], {})]
    # A crash between the directory entry and the event: the retry (another time) is stored where it says.
    directory = storage.partitions.ids("cccccccccccc", "x2")
    await directory.insert_one({"_id": "cccccccccccc/x2", "tu": "cccccccccccc", "day": "20260301", "exp": None})
    assert (await storage.store.write([event("plant", "x2", T0 + timedelta(days=5))])).duplicates == []
    late = await storage.history.select(EventQuery(pattern="plant", start=T0 + timedelta(days=4)))
    assert [e["id"] for e in (await storage.history.page(late, 10))[0]] == ["x2"]
    assert (await storage.store.write([event("plant", "x2", T0)])).duplicates == [0]
    # An event whose topic is gone is not stored anywhere.
    assert (await storage.store.write([event("gone", "y", T0)])).orphans == [0]


async def test_retention_drops_expired_partitions_and_sweeps_the_boundary_day(storage: Storage) -> None:
    uid = "dddddddddddd"
    await storage.topic("plant", uid)
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    keep = timedelta(days=2)
    times = [datetime(2026, 3, 6, tzinfo=UTC) + timedelta(hours=h) for h in range(0, 96, 3)]  # four days
    docs = [event("plant", f"e{at.day}-{at.hour}", at, "s", expire_at=at + keep) for at in times]
    await storage.store.write(docs)
    await storage.store.write([event("plant", "forever", datetime(2026, 3, 6, 1, tzinfo=UTC))])
    deleted = await storage.retention.sweep_once(now)
    cut = now - keep
    assert deleted == sum(1 for d in docs if d["expire_at"] < now)
    left = [e["id"] async for e in storage.history.stream(await storage.history.select(EventQuery(pattern="#")))]
    assert left == ["forever"] + [d["eid"] for d in docs if d["time"] >= cut.isoformat()[:19]]
    days = [e["day"] for e in await storage.partitions.catalog(uid).find({"tu": uid}).to_list()]
    assert sorted(days) == ["20260306", "20260308", "20260309"]  # 03-07 dropped whole; 03-06 holds "forever"
    if storage.partitions.layout is Layout.PARTITIONED:
        assert f"{PREFIX}{uid}.d20260307" not in await storage.names()
        assert f"{PREFIX}{uid}.d20260308" in await storage.names()
    # The dropped day's ids are forgotten: an id of it may be recorded again (as it could after expiry before).
    assert (await storage.store.write([event("plant", "e7-6", now)])).duplicates == []
    page, _ = await storage.history.page(await storage.history.select(EventQuery(pattern="#", start=now)), 5)
    assert [e["id"] for e in page] == ["e7-6"]
    assert await storage.retention.sweep_once(now) == 0  # nothing more is due


async def test_directory_entries_are_small_and_entries_older_releases_wrote_are_read_and_forgotten(
    storage: Storage,
) -> None:
    uid, layout = "eeeeeeeeeeee", storage.partitions.layout
    await storage.topic("plant", uid)
    at = datetime(2026, 3, 2, 1, tzinfo=UTC)
    await storage.store.write([event("plant", eid, at, "s", expire_at=at + timedelta(days=1)) for eid in ("a1", "a2")])
    fields = {
        Layout.PACKED: {"_id", "day", "blk"},
        Layout.PARTITIONED: {"_id", "day"},
        Layout.INDEXED: {"_id", "tu", "day"},
    }
    entry = await storage.partitions.ids(uid, "a1").find_one({"_id": f"{uid}/a1"})
    assert entry is not None and set(entry) == fields[layout]
    # What the release before reads (`day`, and `blk` with its whole name), so both run side by side in an upgrade.
    assert entry["day"] == "20260302"
    assert layout is not Layout.PACKED or entry["blk"].startswith(f"{uid}/20260302/")
    # a2's entry as an older release wrote it (every field, the block's whole name): read, and forgotten alike.
    directory = storage.partitions.ids(uid, "a2")
    new = await directory.find_one({"_id": f"{uid}/a2"})
    assert new is not None
    day, blk = id_place(new)
    old = {"_id": f"{uid}/a2", "tu": uid, "day": day, "exp": None, **({"blk": blk} if blk else {})}
    await directory.replace_one({"_id": f"{uid}/a2"}, old)
    found = await storage.history.event("plant", "a2")
    assert found is not None and found["id"] == "a2"
    retry = event("plant", "a2", at + timedelta(hours=2), expire_at=at + timedelta(days=1))
    assert (await storage.store.write([retry])).duplicates == [0]
    assert await storage.retention.sweep_once(datetime(2026, 3, 10, tzinfo=UTC)) == 2
    assert await storage.partitions.ids(uid, "a1").count_documents({}) == 0
    assert await directory.count_documents({}) == 0
    again = await storage.store.write([event("plant", eid, datetime(2026, 3, 10, tzinfo=UTC)) for eid in ("a1", "a2")])
    assert again.duplicates == []


async def test_dropping_a_topic_removes_all_its_storage(storage: Storage) -> None:
    await seed(storage)
    plant = "aaaaaaaaaaaa"
    assert await storage.store.count(plant) == 200
    await storage.partitions.drop_topic(plant)
    assert await storage.store.count(plant) == 0
    if storage.partitions.layout is Layout.PARTITIONED:
        names = await storage.names()
        assert not [n for n in names if n.startswith(f"{PREFIX}{plant}.")]
        assert [n for n in names if n.startswith(f"{PREFIX}bbbbbbbbbbbb.")]
    else:
        for name in ("event_log", "event_ids", "event_latest", "event_partitions"):
            assert await storage.partitions.db[name].count_documents({"tu": plant}) == 0
    assert await storage.store.count("bbbbbbbbbbbb") == 200
