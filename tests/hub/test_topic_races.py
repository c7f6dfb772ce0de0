"""Concurrent changes of one topic: each either lands as its own version or is refused with a 409, never a 500,
and the versions stay a gapless sequence whose current one is readable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from tests.hub.conftest import SCHEMA, make_topic


async def test_concurrent_schema_updates_get_a_version_each_or_a_409(client: httpx.AsyncClient) -> None:
    await make_topic(client, "race", compatibility="none")
    bodies = [
        {"schema": {**SCHEMA, "properties": {**SCHEMA["properties"], f"f{k}": {"type": "string"}}}} for k in range(8)
    ]
    answers = await asyncio.gather(*(client.put("/topics/race/schema", json=b) for b in bodies))
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    landed = [r.json() for r in answers if r.status_code == 200]
    assert landed
    assert all(r.json()["error"]["code"] == "concurrent_update" for r in answers if r.status_code == 409)
    versions = (await client.get("/topics/race/schemas")).json()["items"]
    assert [v["version"] for v in versions] == list(range(1, len(landed) + 2))
    current = (await client.get("/topics/race")).json()
    assert current["version"] == len(landed) + 1
    assert current["schema"] == (await client.get(f"/topics/race/schemas/{current['version']}")).json()["schema"]


async def test_concurrent_creates_make_one_topic_and_leave_no_other_schema(
    client: httpx.AsyncClient, mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    answers = await asyncio.gather(*(client.post("/topics", json={"name": "twin", "schema": SCHEMA}) for _ in range(6)))
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409, 409], [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"topic_exists"}
    assert await mongo_client[mongo_db_name]["schemas"].count_documents({"topic": "twin"}) == 1


async def test_a_version_left_by_an_interrupted_update_is_taken_over(
    client: httpx.AsyncClient, mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    """An update that stopped between writing the next version and moving the topic to it (a crash, the
    database lost) must not block the topic's schema for ever: once it is clearly abandoned, the next update takes
    its place. While it may still be finishing, the next update is told to retry."""
    await make_topic(client, "stuck", compatibility="none")
    db = mongo_client[mongo_db_name]
    uid = (await db["topics"].find_one({"_id": "stuck"}) or {})["uid"]
    schemas = db["schemas"]
    left = {"_id": f"stuck/{uid}/2", "topic": "stuck", "uid": uid, "version": 2}
    left |= {"schema_text": '{"type": "string"}', "created_by": "crashed"}
    wanted = {"schema": {**SCHEMA, "properties": {**SCHEMA["properties"], "note": {"type": "string"}}}}

    await schemas.insert_one({**left, "created_at": datetime.now(UTC) - timedelta(seconds=5)})
    busy = await client.put("/topics/stuck/schema", json=wanted)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "concurrent_update", busy.text
    assert (await client.get("/topics/stuck")).json()["version"] == 1
    assert [v["version"] for v in (await client.get("/topics/stuck/schemas")).json()["items"]] == [1]  # not listed
    assert (await client.get("/topics/stuck/schemas/2")).status_code == 404

    await schemas.update_one({"_id": left["_id"]}, {"$set": {"created_at": datetime.now(UTC) - timedelta(minutes=5)}})
    taken = await client.put("/topics/stuck/schema", json=wanted)
    assert taken.status_code == 200, taken.text
    assert taken.json()["version"] == 2 and taken.json()["schema"] == wanted["schema"]
    assert (await client.get("/topics/stuck/schemas/2")).json()["schema"] == wanted["schema"]
    assert [v["version"] for v in (await client.get("/topics/stuck/schemas")).json()["items"]] == [1, 2]
