"""`tributary-hub migrate` (issues 11 and 14): the events of the old single `events` collection (some recorded
before ids were per topic: `_id` = id, no `eid`) move into the partitioned storage through the recorder's write
path, so that an id already there (resent after the upgrade, perhaps at another time) stays single, and the old
collection is dropped. Against a database seeded with old documents, the hub and the command as real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pymongo
import pytest

from tests.support import platform
from tests.support.polling import wait_for
from tests.support.stack import Stack, run_stack

OLD = 1200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_RECORDER_BATCH_MAX_DELAY_MS": "20"}
    with run_stack(tmp_path_factory.mktemp("migrate"), services=("hub",), env=env) as s:
        yield s


def old_document(topic: str, n: int) -> dict[str, Any]:
    """What the recorder wrote before ids were per topic."""
    return {
        "_id": f"old-{n}",
        "key": f"{topic}.s{n % 3}",
        "type": topic,
        "subject": f"s{n % 3}",
        "time": f"2026-01-01T00:00:{n // 100:02d}.{n % 100:06d}Z",
        "source": "/old",
        "dataschema": f"/topics/{topic}/schemas/1",
        "data_json": f'{{"n": {n}}}',
        "traceparent": None,
        "expire_at": None,
    }


def migrate(stack: Stack, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "tributary_hub", "migrate", *args],
        env={**os.environ, **stack.env, "TRIBUTARY_LOG_JSON": "false"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def history(http: httpx.Client, topic: str) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/topics/{topic}/events", params=params).json()
        ids += [e["id"] for e in page["items"]]
        if (cursor := page["next"]) is None:
            return ids


def test_old_events_move_into_partitions_once_and_resent_ids_stay_single(stack: Stack) -> None:
    http = httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
    topics = [f"mig{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for topic in topics:
        assert http.post("/topics", json={"name": topic, "schema": {"type": "object"}}).status_code == 201
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        db: pymongo.database.Database[dict[str, Any]] = client[stack.db]
        events: pymongo.collection.Collection[dict[str, Any]] = db["events"]
        # Half recorded before ids were per topic (`_id` = id), half after (`<topic>/<id>` with `eid`).
        olds = [old_document(topics[n % 2], n) for n in range(OLD)]
        events.insert_many(
            [d if n % 4 < 2 else {**d, "_id": f"{d['type']}/{d['_id']}", "eid": d["_id"]} for n, d in enumerate(olds)]
        )
        events.insert_one({"_id": "broken-old", "key": "x", "time": "2026-01-01T00:00:00.000000Z"})  # no type

        # Resent after the upgrade, before the migration: recorded now, at another time (another day).
        r = http.post(f"/topics/{topics[0]}/events", json={"id": "old-4", "data": {"n": 4}})
        assert r.status_code == 202, r.text
        wait_for(lambda: history(http, topics[0]) == ["old-4"], timeout=20, what="the resend")

        out = migrate(stack, "--batch-size", "250")
        print(f"\n{out.strip()}")
        assert f"{OLD - 1} events moved into partitions, 1 already there, 1 kept aside" in out, out
        assert "events" not in db.list_collection_names()
        assert [d["_id"] for d in db["events_unmigrated"].find()] == ["broken-old"]
        for i, topic in enumerate(topics):
            ids = history(http, topic)
            assert len(ids) == len(set(ids)) == OLD // 2, (topic, len(ids))
            assert set(ids) == {f"old-{n}" for n in range(i, OLD, 2)}
        # Latest per subject comes from the moved events (their subjects registered on the way).
        latest = http.get(f"/topics/{topics[1]}/events:latest").json()["items"]
        newest = {f"s{n % 3}": f"old-{n}" for n in range(1, OLD, 2)}  # in time order: the last one wins
        assert [(e["subject"], e["id"]) for e in latest] == sorted(newest.items())
        # The copy recorded first (the resend) is the one kept.
        page = http.get(f"/topics/{topics[0]}/events", params={"limit": 1000}).json()["items"]
        (four,) = [e for e in page if e["id"] == "old-4"]
        assert four["source"] != "/old" and four["time"] > "2026-01-02"

        # Resending old ids now is a duplicate, recorded once.
        for n in (0, 2, 6):
            assert http.post(f"/topics/{topics[0]}/events", json={"id": f"old-{n}", "data": {}}).status_code == 202
        time.sleep(1.5)
        assert len(history(http, topics[0])) == OLD // 2

        # Idempotent: a second run finds nothing to do.
        out = migrate(stack)
        assert "0 events moved into partitions, 0 already there, 0 kept aside" in out, out
    http.close()


def test_a_run_interrupted_before_the_drop_is_finished_by_the_next(stack: Stack) -> None:
    """A crash after moving part or all of the documents leaves the old collection whole: the next run moves
    them again, each one a duplicate of the copy already there, and drops it."""
    topic = f"mig{uuid.uuid4().hex[:8]}"
    http = httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
    assert http.post("/topics", json={"name": topic, "schema": {"type": "object"}}).status_code == 201
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        events: pymongo.collection.Collection[dict[str, Any]] = client[stack.db]["events"]
        olds = [{**old_document(topic, n), "_id": f"{topic}-old-{n}"} for n in range(300)]
        events.insert_many(olds[:120])
        assert "120 events moved into partitions, 0 already there" in migrate(stack, "--batch-size", "100")
        events.insert_many(olds)  # as if the first run had stopped before its drop, with more to move
        out = migrate(stack, "--batch-size", "100")
        assert "180 events moved into partitions, 120 already there" in out, out
        ids = history(http, topic)
        assert len(ids) == len(set(ids)) == 300
    http.close()


def test_a_bad_batch_size_is_refused(stack: Stack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tributary_hub", "migrate", "--batch-size", "0"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--batch-size" in out.stderr, out.stderr
