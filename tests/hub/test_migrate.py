"""`tributary-hub migrate` (issue 11): event documents recorded before ids were per topic (`_id` = id, no `eid`)
are re-keyed to `<topic>/<id>` with `eid`, so that an old id sent again after the upgrade is recorded once.
Against a database seeded with old-shape documents, the hub as a real process and the command as a real process
(FerretDB; the command uses only find / insert_many / delete_many, which MongoDB serves the same).

Failed before: there was no `migrate` command, and the old id resent after the upgrade was in history twice.
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


def test_old_event_documents_are_rekeyed_once_and_resent_ids_stay_single(stack: Stack) -> None:
    http = httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
    topics = [f"mig{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for topic in topics:
        assert http.post("/topics", json={"name": topic, "schema": {"type": "object"}}).status_code == 201
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        events: pymongo.collection.Collection[dict[str, Any]] = client[stack.db]["events"]
        events.insert_many([old_document(topics[n % 2], n) for n in range(OLD)])
        events.insert_one({"_id": "broken-old", "key": "x", "time": "2026-01-01T00:00:00.000000Z"})  # no type

        # The bug: an old id sent again after the upgrade is a second document.
        r = http.post(f"/topics/{topics[0]}/events", json={"id": "old-4", "data": {"n": 4}})
        assert r.status_code == 202, r.text
        wait_for(lambda: history(http, topics[0]).count("old-4") == 2, timeout=20, what="the resend")

        out = migrate(stack, "--batch-size", "250")
        print(f"\n{out.strip()}")
        assert f"{OLD - 1} event documents re-keyed, 1 already there" in out and "1 skipped" in out, out

        assert events.count_documents({"eid": {"$exists": False}}) == 1  # only the one naming no topic
        for n in (0, 1, 5, OLD - 1):
            doc = events.find_one({"_id": f"{topics[n % 2]}/old-{n}"})
            assert doc is not None and doc["eid"] == f"old-{n}" and doc["data_json"] == f'{{"n": {n}}}', doc
        for i, topic in enumerate(topics):
            ids = history(http, topic)
            assert len(ids) == len(set(ids)) == OLD // 2, (topic, len(ids))
            assert set(ids) == {f"old-{n}" for n in range(i, OLD, 2)}
        # Of old-4 the document under the new key is kept (the resend: the same event sent again).
        assert events.count_documents({"eid": "old-4"}) == 1

        # Resending old ids now is a duplicate, recorded once.
        for n in (0, 2, 6):
            assert http.post(f"/topics/{topics[0]}/events", json={"id": f"old-{n}", "data": {}}).status_code == 202
        time.sleep(1.5)
        assert len(history(http, topics[0])) == OLD // 2

        # Idempotent: a second run finds nothing to do (and leaves the broken document alone).
        out = migrate(stack)
        assert "0 event documents re-keyed, 0 already there, 1 skipped" in out, out
    http.close()


def test_a_run_interrupted_after_writing_copies_is_finished_by_the_next(stack: Stack) -> None:
    """A crash between inserting the re-keyed copies and deleting the old documents leaves both: the next run
    removes the old ones and writes no second copy."""
    topic = f"mig{uuid.uuid4().hex[:8]}"
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        events: pymongo.collection.Collection[dict[str, Any]] = client[stack.db]["events"]
        olds = [{**old_document(topic, n), "_id": f"{topic}-old-{n}"} for n in range(300)]
        events.insert_many(olds)
        events.insert_many([{**d, "_id": f"{topic}/{d['_id']}", "eid": d["_id"]} for d in olds[:120]])
        out = migrate(stack, "--batch-size", "100")
        assert "180 event documents re-keyed, 120 already there" in out, out
        assert events.count_documents({"type": topic}) == 300
        assert events.count_documents({"type": topic, "eid": {"$exists": False}}) == 0


def test_a_bad_batch_size_is_refused(stack: Stack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tributary_hub", "migrate", "--batch-size", "0"],
        env={**os.environ, **stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "--batch-size" in out.stderr, out.stderr
