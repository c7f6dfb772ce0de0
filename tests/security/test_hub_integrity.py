"""Hub data integrity (issue 10, items 1, 2, 6 and the partial-batch point), against the hub as a real process on
the real broker, FerretDB and Memcached.

1. A null for a field that cannot be null is a 422 naming the field, never stored; a stored document that no
   longer parses is skipped by every listing (logged and counted once), and the topic can still be repaired.
2. Event ids are unique per topic: the same id on two topics is two events in history.
6. A per-event encoded size limit at publish (413 with the index); what a recorder cannot write goes to the
   `tributary.dead` exchange and the `tributary.deadletters` queue, the recorder carries on, and a recorder
   whose consumer stops turns /readyz red.
Partial batches: a batch the broker confirmed only in part answers 503 with every id and which were confirmed,
and resending it with the same ids is exactly-once in history.

Each failed on the code before its fix: the PATCH answered 500 and broke GET /topics; b's event was missing
from history; no dead-letter queue existed and /readyz stayed green; the partial batch answered a bare 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import orjson
import pymongo
import pytest

from tests.support import platform
from tests.support.polling import wait_for
from tests.support.processes import ServiceProcess
from tests.support.stack import SECRET, Stack, run_stack
from tests.support.stored_samples import stored_samples

MAX_EVENT = 64 * 1024
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"v": {}}}
EVENTS_QUEUE = "tributary.hub.recorder.events"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_MAX_EVENT_BYTES": str(MAX_EVENT), "TRIBUTARY_RECORDER_BATCH_MAX_DELAY_MS": "20"}
    with run_stack(tmp_path_factory.mktemp("hub-integrity"), services=("hub",), env=env) as s:
        yield s


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.hub_url, headers=headers, timeout=30) as c:
        yield c


def new_topic(http: httpx.Client, **extra: Any) -> str:
    name = f"t{uuid.uuid4().hex[:10]}"
    r = http.post("/topics", json={"name": name, "schema": SCHEMA, **extra})
    assert r.status_code == 201, r.text
    return name


def history_ids(http: httpx.Client, topic: str) -> list[str]:
    r = http.get(f"/topics/{topic}/events", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [e["id"] for e in r.json()["items"]]


def metric(http: httpx.Client, name: str, **labels: str) -> float:
    text = http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


@contextlib.contextmanager
def database(name: str) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        yield client[name]


# 1. Nulls and unreadable documents


def test_null_for_a_field_that_cannot_be_null_is_a_422_naming_it(stack: Stack, http: httpx.Client) -> None:
    topic = new_topic(http, compatibility="backward", retention_days=7, description="d")
    r = http.patch(f"/topics/{topic}", json={"compatibility": None})
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["error"]["details"]] == ["/compatibility"]
    assert "null" in r.json()["error"]["details"][0]["msg"]
    # Hostile values of the right shape are refused too; nothing was stored.
    assert http.patch(f"/topics/{topic}", json={"compatibility": "sideways"}).status_code == 422
    assert http.patch(f"/topics/{topic}", json={"retention_days": -1}).status_code == 422
    assert http.get("/topics").status_code == 200
    assert http.get(f"/topics/{topic}").json()["compatibility"] == "backward"
    # Fields that may be null still clear.
    r = http.patch(f"/topics/{topic}", json={"retention_days": None, "description": None})
    assert r.status_code == 200, r.text
    assert (r.json()["retention_days"], r.json()["description"], r.json()["compatibility"]) == (None, None, "backward")


def test_an_unreadable_stored_document_never_takes_a_listing_down(stack: Stack, http: httpx.Client) -> None:
    good, broken = new_topic(http), new_topic(http)
    now = datetime.now(UTC)
    with database(stack.db) as db:
        # What the old PATCH left behind, and documents of the other listings spoiled the same way.
        db["topics"].update_one({"_id": broken}, {"$set": {"compatibility": None}})
        db["unitops"].insert_one({"_id": f"{broken}-unitop", "items": "spoiled", "created_at": now, "updated_at": now})
        db["api_keys"].insert_one(
            {"_id": f"{broken}-key", "name": "k", "key_hash": broken, "scopes": "spoiled", "created_by": "x"}
        )
    for _ in range(3):
        r = http.get("/topics")
        assert r.status_code == 200, r.text
        names = [t["name"] for t in r.json()["items"]]
        assert good in names and broken not in names
        assert http.get("/unitops").status_code == 200
        assert http.get("/apikeys").status_code == 200
    # Logged and counted once per document, not once per request.
    for collection in ("topics", "unitops", "api_keys"):
        assert metric(http, "tributary_hub_unreadable_documents_total", collection=collection) == 1.0
    log = (stack.logs / "hub.log").read_text(errors="replace")
    assert len(re.findall(rf"unreadable.*'{broken}'", log)) == 1, log[-3000:]
    # The topic itself says what is wrong, and can be repaired or deleted.
    r = http.get(f"/topics/{broken}")
    assert r.status_code == 409 and r.json()["error"]["code"] == "unreadable_topic", r.text
    r = http.patch(f"/topics/{broken}", json={"compatibility": "none"})
    assert r.status_code == 200, r.text
    assert broken in [t["name"] for t in http.get("/topics").json()["items"]]
    assert http.delete(f"/topics/{broken}").status_code == 204


# 2. Event ids are per topic


def test_the_same_event_id_on_two_topics_is_two_events(stack: Stack, http: httpx.Client) -> None:
    a, b = new_topic(http), new_topic(http)
    duplicates_before = metric(http, "tributary_hub_recorder_duplicates_total", kind="events")
    for topic in (a, b):
        r = http.post(f"/topics/{topic}/events", json={"id": "reading-0001", "data": {"v": topic}, "subject": "s"})
        assert r.status_code == 202, r.text
    wait_for(lambda: history_ids(http, b) == ["reading-0001"], timeout=20, what="b's event in history")
    assert history_ids(http, a) == ["reading-0001"]
    page = http.get(f"/topics/{b}/events").json()["items"]
    assert page[0]["data"] == {"v": b} and page[0]["type"] == b
    assert http.get(f"/topics/{b}/events:latest").json()["items"][0]["data"] == {"v": b}
    # A true duplicate (same topic, same id) is ignored and counted.
    r = http.post(f"/topics/{a}/events", json={"id": "reading-0001", "data": {"v": "again"}, "subject": "s"})
    assert r.status_code == 202
    wait_for(
        lambda: metric(http, "tributary_hub_recorder_duplicates_total", kind="events") > duplicates_before,
        timeout=20,
        what="the duplicate counted",
    )
    assert history_ids(http, a) == ["reading-0001"]
    assert http.get(f"/topics/{a}/events").json()["items"][0]["data"] == {"v": a}


def test_history_pages_through_events_of_one_time_across_topics(stack: Stack, http: httpx.Client) -> None:
    topic = new_topic(http)
    ids = [f"e{i:02d}" for i in range(7)]
    r = http.post(f"/topics/{topic}/events:batch", json=[{"id": i, "data": {"v": i}} for i in ids])
    assert r.status_code == 202, r.text
    wait_for(lambda: len(history_ids(http, topic)) == 7, timeout=20, what="the batch in history")
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = http.get(f"/topics/{topic}/events", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids


# 6. Event size limit, dead letters, readiness


def test_an_event_over_the_encoded_size_limit_is_a_413_naming_its_index(stack: Stack, http: httpx.Client) -> None:
    topic = new_topic(http)
    big = "x" * (MAX_EVENT + 1)
    r = http.post(f"/topics/{topic}/events", json={"data": {"v": big}})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "event_too_large"
    # Numbers that re-encode longer: a body under the limit whose envelope is over it.
    numbers = b'{"data": {"v": [' + b",".join([b"1e15"] * (MAX_EVENT // 6)) + b"]}}"
    assert len(numbers) < MAX_EVENT
    r = http.post(f"/topics/{topic}/events", content=numbers, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    r = http.post(f"/topics/{topic}/events:batch", json=[{"data": {"v": 1}}, {"data": {"v": 2}}, {"data": {"v": big}}])
    assert r.status_code == 413, r.text
    assert [d["loc"] for d in r.json()["error"]["details"]] == ["/2"]
    time.sleep(0.5)
    assert history_ids(http, topic) == []


async def _publish_raw(stack: Stack, bodies: list[tuple[str, bytes]], exchange: str = "tributary.events") -> None:
    """Straight to the exchange, past every check of the hub's API."""
    connection = await aio_pika.connect(stack.env["TRIBUTARY_AMQP_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        for key, body in bodies:
            await target.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), key)


def _dead_letters(http: httpx.Client, routing_key: str, queue: str = EVENTS_QUEUE) -> list[dict[str, Any]]:
    """The letters of one routing key from `queue`, as the hub recorded them from `tributary.deadletters`
    (issue 11)."""
    r = http.get("/deadletters", params={"queue": queue, "limit": 1000})
    assert r.status_code == 200, r.text
    return [d for d in r.json()["items"] if d["routing_key"] == routing_key]


def test_what_a_recorder_cannot_write_is_dead_lettered_and_the_recorder_carries_on(
    stack: Stack, http: httpx.Client
) -> None:
    topic = new_topic(http)
    envelope = {
        "specversion": "1.0",
        "id": f"huge-{uuid.uuid4().hex[:6]}",
        "source": "/bypass",
        "type": topic,
        "time": "2026-01-01T00:00:00Z",
        "dataschema": f"/topics/{topic}/schemas/1",
        "data": {"v": "x" * (2 * MAX_EVENT)},
    }
    marker = uuid.uuid4().hex
    bad = [
        (topic, orjson.dumps(envelope)),
        (topic, orjson.dumps({"not": "a cloudevent", "marker": marker})),
        (topic, b"\xff\xfe not even json " + marker.encode()),
    ]
    asyncio.run(_publish_raw(stack, bad))
    r = http.post(f"/topics/{topic}/events", json={"id": "after", "data": {"v": 1}})
    assert r.status_code == 202
    wait_for(lambda: history_ids(http, topic) == ["after"], timeout=20, what="a later event recorded")
    letters = wait_for(lambda: len(found := _dead_letters(http, topic)) == 3 and found, timeout=10, what="dead letters")
    reasons = sorted(d["reason"] for d in letters)
    assert reasons == ["not_a_cloudevent", "too_large", "undecodable"], reasons
    for letter in letters:
        assert letter["exchange"] == "tributary.events"
        assert letter["routing_key"] == topic
        assert letter["queue"] == EVENTS_QUEUE
        assert letter["first_failure"]
    assert http.get("/readyz").status_code == 200


def _delete_queue(vhost: str, queue: str) -> None:
    with httpx.Client(auth=platform.MGMT_AUTH, timeout=10) as mgmt:
        mgmt.delete(platform.mgmt_url(f"/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")).raise_for_status()


@pytest.mark.parametrize("command", ["serve", "recorder"])
def test_a_recorder_whose_consumer_stops_turns_readyz_red(services: None, command: str, tmp_path: Path) -> None:
    vhost = platform.unique("rec")
    port = platform.free_port()
    db = platform.unique("rec").replace("-", "_")
    env = {
        "TRIBUTARY_AMQP_URL": platform.create_vhost(vhost),
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique("rec"),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_HTTP_PORT": str(port),
    }
    proc = ServiceProcess("tributary_hub", [command], env, tmp_path / "hub.log", port)
    try:
        proc.start(timeout=60)
        proc.wait_healthy(60, path="/readyz")
        _delete_queue(vhost, EVENTS_QUEUE)  # the broker cancels the recorder's consumer
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 503,
            timeout=10,
            what="/readyz red",
        )
        body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert body["checks"]["recorders"] != "ok"
    finally:
        proc.terminate()
        platform.delete_vhost(vhost)
        with database(db) as spent:
            spent.client.drop_database(db)


# Partly confirmed batches


async def _reject_subject(stack: Stack, topic: str, subject: str, queue: str) -> None:
    """A queue that refuses every message (max-length 0, reject-publish): the broker nacks what routes to it."""
    connection = await aio_pika.connect(stack.env["TRIBUTARY_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(queue, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
        await q.bind("tributary.events", routing_key=f"{topic}.{subject}")


async def _drop_queue(stack: Stack, queue: str) -> None:
    connection = await aio_pika.connect(stack.env["TRIBUTARY_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue, if_unused=False, if_empty=False)


def test_a_partly_confirmed_batch_says_which_and_a_retry_is_exactly_once(stack: Stack, http: httpx.Client) -> None:
    topic = new_topic(http)
    queue = f"nacker-{topic}"
    asyncio.run(_reject_subject(stack, topic, "nack", queue))
    batch = [
        {"id": "p-0", "data": {"v": 0}, "subject": "ok"},
        {"id": "p-1", "data": {"v": 1}, "subject": "nack"},
        {"id": "p-2", "data": {"v": 2}, "subject": "ok"},
        {"data": {"v": 3}, "subject": "nack"},  # the hub names it: the answer gives its id for the retry
    ]
    r = http.post(f"/topics/{topic}/events:batch", json=batch)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["error"]["code"] == "partially_confirmed"
    assert body["ids"][:3] == ["p-0", "p-1", "p-2"] and len(body["ids"]) == 4
    assert body["confirmed"] == [True, False, True, False]
    assert [d["loc"] for d in body["error"]["details"]] == ["/1", "/3"]
    # The retry: the same events with the ids the hub answered, once the broker takes them.
    asyncio.run(_drop_queue(stack, queue))
    retry = [{**e, "id": i} for e, i in zip(batch, body["ids"], strict=True)]
    r = http.post(f"/topics/{topic}/events:batch", json=retry)
    assert r.status_code == 202, r.text
    wait_for(lambda: len(history_ids(http, topic)) >= 4, timeout=20, what="the batch in history")
    time.sleep(1.0)
    assert sorted(history_ids(http, topic)) == sorted(body["ids"])


def test_a_sample_the_driver_refuses_is_dead_lettered_and_later_ones_recorded(stack: Stack, http: httpx.Client) -> None:
    """A 49 MB sample value passes the broker, but pymongo raises DocumentTooLarge (over its 48 MB message size)
    before sending: that ended the samples recorder silently."""
    sid = f"sid-{uuid.uuid4().hex[:8]}"
    t = "2026-01-01T00:00:00Z"
    huge = orjson.dumps({"sid": f"{sid}-huge", "source": "x", "samples": [{"t": t, "v": "x" * (49 * 1024 * 1024)}]})
    fine = orjson.dumps({"sid": sid, "source": "x", "samples": [{"t": t, "v": 1.5}]})
    asyncio.run(_publish_raw(stack, [(f"x.{sid}-huge", huge), (f"x.{sid}", fine)], exchange="tributary.samples"))

    def recorded() -> bool:
        return len(asyncio.run(stored_samples(stack.db, sid))) == 1

    wait_for(recorded, timeout=30, what="the later sample recorded")
    letters = wait_for(
        lambda: _dead_letters(http, f"x.{sid}-huge", "tributary.hub.recorder.samples"),
        timeout=10,
        what="the refused sample dead-lettered",
    )
    assert [d["reason"] for d in letters] == ["too_large"]
    # Kept as its size and a preview (over TRIBUTARY_DEAD_LETTER_BODY_MAX_BYTES).
    assert letters[0]["size"] == len(huge) and letters[0]["truncated"]


def test_documents_the_driver_refuses_are_classified_as_unwritable() -> None:
    """Over 48 MB the driver raises DocumentTooLarge (not a PyMongoError) before sending: it ended the recorder."""
    from bson.errors import InvalidDocument
    from pymongo.errors import AutoReconnect, DocumentTooLarge, OperationFailure

    from tributary_hub.batch_writer import document_refusal

    assert document_refusal(DocumentTooLarge("BSON document too large"))
    assert document_refusal(InvalidDocument("cannot encode object"))
    assert document_refusal(OperationFailure("too large", code=10334))
    assert not document_refusal(AutoReconnect("connection refused"))
    assert not document_refusal(OperationFailure("not primary", code=10107))
