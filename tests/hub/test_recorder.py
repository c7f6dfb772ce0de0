"""Recorders: what was published is written once; a database outage loses nothing; retention; samples."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from fastapi import FastAPI

from tests.hub.conftest import admin_client, filled_queue, make_topic, recorded
from tests.support.ferretdb import PrivateFerretDB
from tests.support.polling import eventually
from tributary_common.events import CloudEvent
from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import parse_time
from tributary_hub.app import create_app
from tributary_hub.batch_writer import RETRIES
from tributary_hub.composition import Hub
from tributary_hub.receivers import ack_all
from tributary_hub.settings import HubSettings


async def test_retention_sets_expire_at_per_topic(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client, "kept", retention_days=2)
    await make_topic(client, "forever")
    for topic in ("kept", "forever"):
        assert (await client.post(f"/topics/{topic}/events", json={"data": {"temp": 1}})).status_code == 202
    await eventually(lambda: recorded(hub, "kept"), what="kept recorded", interval=0.05)
    await eventually(lambda: recorded(hub, "forever"), what="forever recorded", interval=0.05)
    (kept,) = await recorded(hub, "kept")
    (forever,) = await recorded(hub, "forever")
    # BSON dates keep milliseconds only.
    assert abs(kept["expire_at"] - parse_time(kept["time"]) - timedelta(days=2)) < timedelta(milliseconds=1)
    assert forever["expire_at"] is None
    # The retention mechanism that runs here (a sweeper on FerretDB) deletes what has expired.
    events = hub.history.collection
    await events.update_one({"_id": kept["_id"]}, {"$set": {"expire_at": datetime.now(UTC) - timedelta(seconds=1)}})
    assert hub.retention[0].mode in ("sweeper", "ttl-index")
    if hub.retention[0].mode == "sweeper":
        assert await hub.retention[0].sweep_once() == 1
        assert await recorded(hub, "kept") == []
        assert len(await recorded(hub, "forever")) == 1


async def test_samples_recorded_once_per_sid_and_time(hub: Hub, amqp_url: str) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    batch = SampleBatch(
        sid="sid-a", source="simulator", samples=[Sample(t=t0 + timedelta(seconds=i), v=float(i)) for i in range(10)]
    )
    overlapping = SampleBatch(
        sid="sid-a", source="simulator", samples=[Sample(t=t0 + timedelta(seconds=i), v=float(i)) for i in range(5, 15)]
    )
    other = SampleBatch(sid="sid-b", source="simulator", samples=[Sample(t=t0, v=True, q="good")])
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("tributary.samples")
    for b in (batch, batch, overlapping, other):
        await exchange.publish(
            aio_pika.Message(b.model_dump_json().encode(), content_type="application/json"), routing_key=b.routing_key
        )
    await connection.close()
    samples = hub.samples.collection

    async def count() -> bool:
        return await samples.count_documents({}) == 16 and await samples.count_documents({"sid": "sid-b"}) == 1

    await eventually(count, what="16 samples", interval=0.05)
    docs = await samples.find({"sid": "sid-a"}).sort("t", 1).to_list()
    assert [d["v"] for d in docs] == [float(i) for i in range(15)]
    assert docs[0]["t"] == "2026-01-01T00:00:00.000000Z"
    only_b = await samples.find_one({"sid": "sid-b"})
    assert only_b is not None
    assert (only_b["v"], only_b["q"]) == (True, "good")


@pytest.fixture
async def private_db(tmp_path: Path) -> AsyncIterator[PrivateFerretDB]:
    db = PrivateFerretDB(tmp_path / "ferret")
    (tmp_path / "ferret").mkdir()
    db.start()
    yield db
    db.stop()


async def test_database_outage_mid_stream_loses_and_duplicates_nothing(
    hub_settings: HubSettings, private_db: PrivateFerretDB
) -> None:
    settings = hub_settings.model_copy(
        update={
            "mongodb_url": private_db.url,
            "mongodb_timeout_ms": 500,
            "recorder_retry_max_s": 0.5,
            "recorder_batch_size": 20,
            "recorder_event_batch_size": 20,  # the events recorder's own: several batches while the database is away
        }
    )
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.hub
        async with admin_client(app) as client:
            await make_topic(client, "readings")
            published: list[str] = []

            async def publish(n: int) -> None:
                for _ in range(n):
                    items = [{"data": {"temp": (len(published) + i) % 100}, "subject": f"s{i % 4}"} for i in range(10)]
                    r = await client.post("/topics/readings/events:batch", json=items)
                    assert r.status_code == 202, r.text
                    published.extend(r.json()["ids"])
                    await asyncio.sleep(0.01)

            await publish(10)
            await eventually(lambda: _count(hub, 1), what="the first events recorded", interval=0.05)
            retries_before = RETRIES.labels("events")._value.get()
            private_db.stop()  # the database goes away mid-stream
            await publish(10)  # publishing does not need the database: topic and schema come from the caches
            assert len(published) == 200
            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["mongodb"].startswith("failed")
            r = await client.get("/topics/readings/events")
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "database_unavailable"
            await eventually(lambda: _retried(retries_before), what="the recorder retrying its write", interval=0.05)
            private_db.start()
            await publish(5)

            async def everything() -> bool:
                return await _count(hub, len(published))

            await eventually(everything, timeout=60, what="every published event recorded", interval=0.05)
            ids = [d["eid"] for d in await recorded(hub, "readings")]
            assert len(ids) == len(set(ids)) == 250
            assert set(ids) == set(published)


async def _retried(before: float) -> bool:
    return bool(RETRIES.labels("events")._value.get() > before)


async def _count(hub: Hub, n: int) -> bool:
    return await hub.history.collection.count_documents({"type": "readings"}) >= n


async def test_restart_mid_stream_loses_nothing(hub_settings: HubSettings, mongo_client: object) -> None:
    """Stop the hub while the recorder has work in hand; a new instance finishes it, each event once."""
    published: list[str] = []
    for round_ in range(2):
        app: FastAPI = create_app(hub_settings)
        async with app.router.lifespan_context(app):
            hub: Hub = app.state.hub
            async with admin_client(app) as client:
                if round_ == 0:
                    await make_topic(client, "readings")
                    for _ in range(10):
                        items = [{"data": {"temp": i}} for i in range(50)]
                        r = await client.post("/topics/readings/events:batch", json=items)
                        assert r.status_code == 202
                        published.extend(r.json()["ids"])
                    # Leave at once: the recorder is mid-stream.
                else:

                    async def everything(hub: Hub = hub) -> bool:
                        return await _count(hub, len(published))

                    await eventually(
                        everything, timeout=60, what="every event recorded after the restart", interval=0.05
                    )
                    ids = [d["eid"] for d in await recorded(hub, "readings")]
                    assert len(ids) == len(set(ids)) == 500
                    assert set(ids) == set(published)


async def test_a_recorder_whose_loop_ends_turns_readyz_red(client: httpx.AsyncClient, hub: Hub) -> None:
    assert (await client.get("/readyz")).status_code == 200
    events = hub.recorders[0]
    assert events.kind == "events" and events._task is not None
    events._task.cancel()  # whatever ends it: the process must not look ready with a recorder gone
    await asyncio.sleep(0.05)
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["recorders"] != "ok"


async def test_a_redelivered_or_retried_event_is_recorded_once_whatever_its_time(
    client: httpx.AsyncClient, hub: Hub, amqp_url: str
) -> None:
    """The same (topic, id) through the real queue: twice as sent, then again days later (a client's retry with
    another time, in another day partition): one history entry, the first copy's."""
    await make_topic(client, "readings")
    first = CloudEvent(
        id="dup-1",
        source="/t",
        type="readings",
        subject="s",
        time=datetime(2026, 1, 1, tzinfo=UTC),
        dataschema="/topics/readings/schemas/1",
        data={"temp": 1},
    )
    retry = first.model_copy(update={"time": datetime(2026, 1, 4, tzinfo=UTC), "data": {"temp": 2}})
    marker = first.model_copy(update={"id": "after"})
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("tributary.events")
    for e in (first, first, retry, retry, marker):
        message = aio_pika.Message(e.model_dump_json().encode(), content_type="application/json")
        await exchange.publish(message, routing_key=e.routing_key)
    await connection.close()
    await eventually(lambda: _count(hub, 2), what="both ids recorded", interval=0.05)
    docs = await recorded(hub, "readings")
    assert [(d["eid"], d["time"], d["data_json"]) for d in docs] == [
        ("after", "2026-01-01T00:00:00.000000Z", '{"temp":1}'),
        ("dup-1", "2026-01-01T00:00:00.000000Z", '{"temp":1}'),
    ]
    r = await client.get("/topics/readings/events", params={"start": "2026-01-03T00:00:00Z"})
    assert r.json()["items"] == []


async def test_deleting_a_topic_removes_its_storage(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client, "readings")
    assert (await client.post("/topics/readings/events", json={"data": {"temp": 1}})).status_code == 202
    await eventually(lambda: _count(hub, 1), what="recorded", interval=0.05)
    assert (await client.delete("/topics/readings")).status_code == 409  # it has events
    mine = f"evp.{(await hub.history.reader.topics_for('readings'))[0].uid}."
    db = hub.history.partitions.db
    assert [n for n in await db.list_collection_names() if n.startswith(mine)]
    assert (await client.delete("/topics/readings", params={"force": "true"})).status_code in (200, 204)
    assert [n for n in await db.list_collection_names() if n.startswith(mine)] == []
    await make_topic(client, "readings")  # a new generation sees none of the old events
    assert (await client.get("/topics/readings/events")).json()["items"] == []


async def test_a_batch_is_acked_in_one_frame_and_only_the_batch(amqp_url: str) -> None:
    """`ack_all` acks up to the batch's last delivery (`multiple`): the messages after it, already prefetched,
    stay unacked and return to the queue when the channel closes."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await filled_queue(channel, "ack-all-test", 50)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=100)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await (await consumer.get_queue(queue.name)).consume(inbox.put)
        got = [await asyncio.wait_for(inbox.get(), 10) for _ in range(50)]
        await ack_all(got[:30])
        await consumer.close()  # the 20 unacked go back
        back = await channel.declare_queue("ack-all-test", passive=True)
        assert back.declaration_result.message_count == 20
        rest = [(await back.get(timeout=5)).body for _ in range(20)]
        assert rest == [str(n).encode() for n in range(30, 50)]
        await back.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
