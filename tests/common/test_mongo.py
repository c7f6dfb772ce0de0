"""beanie on the MongoDB-compatible server (FerretDB here), and the retention mechanism that runs here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest
from beanie import Document
from pymongo import AsyncMongoClient, IndexModel
from pymongo.errors import BulkWriteError, DuplicateKeyError

from tributary_common.mongo import Retention, connect, write_errors


class Reading(Document):
    tag: str
    site: str
    t: datetime
    value: float
    expire_at: datetime | None = None

    class Settings:
        name = "readings"
        indexes = [
            IndexModel([("tag", pymongo.ASCENDING)], unique=True, name="tag_unique"),
            IndexModel([("site", pymongo.ASCENDING), ("t", pymongo.DESCENDING)], name="site_t"),
        ]


async def test_beanie_round_trip(mongo_url: str, mongo_db_name: str, mongo_client: AsyncMongoClient[Any]) -> None:
    client = await connect(mongo_url, mongo_db_name, [Reading])
    try:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        for i in range(5):
            await Reading(tag=f"T{i}", site="p1" if i % 2 else "p2", t=t0 + timedelta(seconds=i), value=i).insert()
        with pytest.raises(DuplicateKeyError):
            await Reading(tag="T0", site="p9", t=t0, value=9).insert()

        rows = await Reading.find(Reading.site == "p2").sort("-t").limit(2).to_list()
        assert [r.tag for r in rows] == ["T4", "T2"]
        assert await Reading.find(Reading.site == "p1").count() == 2

        r = await Reading.find_one(Reading.tag == "T1")
        assert r is not None
        r.value = 42
        await r.save()
        assert (await Reading.find_one(Reading.tag == "T1")).value == 42  # type: ignore[union-attr]

        # One accumulator per $group: FerretDB 1.24 returns 0 for every accumulator after the first.
        totals = await Reading.aggregate(
            [
                {"$match": {"value": {"$gte": 0}}},
                {"$group": {"_id": "$site", "total": {"$sum": "$value"}}},
                {"$sort": {"_id": 1}},
            ]
        ).to_list()
        assert totals == [{"_id": "p1", "total": 42 + 3}, {"_id": "p2", "total": 0 + 2 + 4}]
        counts = await Reading.aggregate(
            [{"$group": {"_id": "$site", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
        ).to_list()
        assert counts == [{"_id": "p1", "n": 2}, {"_id": "p2", "n": 3}]

        await r.delete()
        assert await Reading.find_one(Reading.tag == "T1") is None
        names = {ix["name"] async for ix in await Reading.get_pymongo_collection().list_indexes()}
        assert {"tag_unique", "site_t"} <= names
    finally:
        await client.close()

    # A restart on the existing database re-creates the indexes without losing the connection (FerretDB).
    again = await connect(mongo_url, mongo_db_name, [Reading])
    try:
        assert await Reading.find(Reading.site == "p2").count() == 3
    finally:
        await again.close()


async def test_retention_detects_server_and_expires(mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> None:
    coll = mongo_client[mongo_db_name]["retained"]
    now = datetime.now(UTC)
    await coll.insert_many(
        [{"_id": "old", "expire_at": now - timedelta(minutes=1)}, {"_id": "new", "expire_at": now + timedelta(days=1)}]
    )
    retention = Retention(coll, sweep_interval_s=3600)
    mode = await retention.start()
    try:
        info = await mongo_client.server_info()
        if "ferretdbVersion" in info:
            assert mode == "sweeper"  # FerretDB refuses TTL indexes: the sweeper path runs here
            # start() swept once: the expired document is gone, the live one stays.
            assert {d["_id"] async for d in coll.find({})} == {"new"}
            await coll.insert_one({"_id": "later", "expire_at": now - timedelta(seconds=1)})
            assert await retention.sweep_once() == 1
            assert {d["_id"] async for d in coll.find({})} == {"new"}
        else:
            assert mode == "ttl-index"
            names = {ix["name"] async for ix in await coll.list_indexes()}
            assert "retention_ttl" in names
    finally:
        await retention.stop()


async def test_write_errors_tells_duplicates_from_refusals(
    mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    coll = mongo_client[mongo_db_name]["write_errors"]
    await coll.insert_one({"_id": "a"})
    with pytest.raises(BulkWriteError) as caught:
        await coll.insert_many([{"_id": "b"}, {"_id": "a"}, {"_id": "c", "$bad": 1}, {"_id": "d"}], ordered=False)
    duplicates, refused = write_errors(caught.value)
    assert duplicates == [1]
    assert list(refused) == [2] and refused[2]
    assert sorted(d["_id"] for d in await coll.find({}).to_list()) == ["a", "b", "d"]
