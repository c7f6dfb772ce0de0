"""The `packed` layout on the real FerretDB: events in compressed blocks, each (topic, id) stored once through a
crash between the directory entry and its block, a raced block and a batch repeating an id; partitions the
`partitioned` layout wrote read and extended in place; the query matcher against what the server answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient

from tests.hub.test_event_storage import T0, event
from tributary_common.matcher import pattern_to_regex
from tributary_hub.event_blocks import PAYLOAD, matches, pack, unpack, unpack_one
from tributary_hub.event_retention import EventRetention
from tributary_hub.event_store import EventStore
from tributary_hub.history import EventHistory, EventQuery
from tributary_hub.partitions import Layout, Partitions

UID = "ffffffffffff"
DAY = "20260301"


def stack(db: Any, layout: Layout) -> tuple[Partitions, EventStore, EventHistory]:
    partitions = Partitions(db, layout, id_shards=2)
    history = EventHistory(partitions, db["topics"], chunk_rows=7, latest_max_subjects=100)
    return partitions, EventStore(partitions, db["topics"]), history


async def ids_in_history(history: EventHistory) -> list[str]:
    return [e["id"] async for e in history.stream(await history.select(EventQuery(pattern="#")))]


async def test_blocks_hold_many_events_and_each_id_once_through_crashes_and_races(
    mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    await db["topics"].insert_one({"_id": "plant", "uid": UID})
    partitions, store, history = stack(db, Layout.PACKED)
    docs = [event("plant", f"e{n}", T0 + timedelta(minutes=n), f"s{n % 3}") for n in range(50)]
    outcome = await store.write(docs + docs[:5])  # a batch that repeats ids
    assert sorted(outcome.duplicates) == list(range(50, 55))
    stored = await partitions.events(UID, DAY).find({}).to_list()
    assert len(stored) < 5 and all(PAYLOAD in d for d in stored)  # blocks, not one document per event
    # A crash after the directory entry, before its block: the redelivery writes the block it names.
    await partitions.ids(UID, "c1").insert_one({"_id": f"{UID}/c1", "tu": UID, "day": DAY, "blk": f"{UID}/{DAY}/x"})
    assert (await store.write([event("plant", "c1", T0 + timedelta(hours=2))])).duplicates == []
    assert (await store.write([event("plant", "c1", T0 + timedelta(days=2))])).duplicates == [0]
    # A block written by another writer without this id (a race): the copy goes alone beside it, once.
    other = event("plant", "o1", T0 + timedelta(hours=3))
    await partitions.events(UID, DAY).insert_one(pack(f"{UID}/{DAY}/y", UID, DAY, [{**other, "tu": UID, "day": DAY}]))
    await partitions.ids(UID, "r1").insert_one({"_id": f"{UID}/r1", "tu": UID, "day": DAY, "blk": f"{UID}/{DAY}/y"})
    for duplicates in ([], [0]):
        assert (await store.write([event("plant", "r1", T0 + timedelta(hours=4))])).duplicates == duplicates
    ids = await ids_in_history(history)
    assert ids == [d["eid"] for d in docs] + ["c1", "o1", "r1"]
    for eid in ("e7", "c1", "r1"):
        found = await history.event("plant", eid)
        assert found is not None and found["id"] == eid
    assert await history.event("plant", "o1") is None  # in no directory: not an event this store wrote
    latest = await history.latest("plant", "plant.#")
    assert [(e.get("subject"), e["id"]) for e in latest] == [(None, "r1"), ("s0", "e48"), ("s1", "e49"), ("s2", "e47")]
    # Retention rewrites a boundary block without its expired events.
    now = datetime(2026, 3, 2, tzinfo=UTC)
    await history.collection.update_one({"_id": "plant/e3"}, {"$set": {"expire_at": now - timedelta(hours=1)}})
    assert await EventRetention(partitions, history.reader).sweep_once(now) == 1
    assert "e3" not in await ids_in_history(history) and len(await ids_in_history(history)) == len(ids) - 1


async def test_partitions_the_partitioned_layout_wrote_are_read_and_extended(
    mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    db = mongo_client[mongo_db_name]
    await db["topics"].insert_one({"_id": "plant", "uid": UID})
    before = [event("plant", f"old{n}", T0 + timedelta(minutes=2 * n), "a") for n in range(20)]
    after = [event("plant", f"new{n}", T0 + timedelta(minutes=2 * n + 1), "b") for n in range(20)]
    _, old_store, _ = stack(db, Layout.PARTITIONED)
    await old_store.write(before)
    _, store, history = stack(db, Layout.PACKED)
    assert sorted((await store.write(after + before[:3])).duplicates) == [20, 21, 22]  # old ids stay single
    want = [d["eid"] for d in sorted(before + after, key=lambda d: d["time"])]
    assert await ids_in_history(history) == want
    for eid in ("old5", "new5"):
        assert (await history.event("plant", eid)) is not None
    assert [e["id"] for e in await history.latest("plant", "plant.#")] == ["old19", "new19"]
    assert await store.count(UID) == 40


def test_matcher_answers_what_the_server_would() -> None:
    doc = event("plant", "e1", T0, "line1.m0")
    regex = pattern_to_regex("plant.line1.#", atomic=False)
    assert matches(doc, {"$and": [{"type": "plant"}, {"key": {"$regex": regex}}]})
    assert not matches(doc, {"key": {"$regex": pattern_to_regex("plant.line2.#", atomic=False)}})
    t = doc["time"]
    assert matches(doc, {"time": {"$gte": t, "$lt": t + "Z"}}) and not matches(doc, {"time": {"$gt": t}})
    assert matches(doc, {"$or": [{"time": {"$gt": t}}, {"time": t, "_id": {"$gt": "plant/e0"}}]})
    assert not matches(doc, {"$or": [{"time": {"$gt": t}}, {"time": t, "_id": {"$gt": "plant/e1"}}]})
    assert matches(doc, {"subject": {"$in": [None, "line1.m0"]}}) and matches(doc, {"traceparent": None})
    assert not matches(doc, {"expire_at": {"$lt": datetime.now(UTC)}})  # none: kept forever


def test_one_event_is_unpacked_alone_as_the_whole_block_would_give_it() -> None:
    codec: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
    docs = [{**event("t", f"e{i}", T0 + timedelta(seconds=i), "s"), "tu": UID, "day": DAY} for i in range(50)]
    block = bson.decode(bson.encode(pack(f"{UID}/{DAY}/b", UID, DAY, docs)), codec_options=codec)
    whole = {e["_id"]: e for e in unpack(block, codec)}
    assert len(whole) == 50
    for key, expected in whole.items():
        assert unpack_one(block, key, codec) == expected
    assert unpack_one(block, "t/missing", codec) is None
    single = whole["t/e7"]
    assert unpack_one(single, "t/e7", codec) == single
    assert unpack_one(single, "t/e8", codec) is None
