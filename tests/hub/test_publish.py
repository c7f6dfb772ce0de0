"""Publishing: the wire format on `tributary.events`, validation with JSON pointers, limits, content types,
idempotent ids and the all-or-nothing batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from tests.hub.conftest import admin_client, make_topic, recorded
from tests.support import platform
from tests.support.polling import eventually
from tributary_common.events import MAX_DATA_DEPTH, CloudEvent
from tributary_common.timeutil import parse_time
from tributary_hub.app import create_app
from tributary_hub.composition import Hub


@pytest.fixture
async def tap(amqp_url: str, app: Any) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue on the real broker bound to every `readings` routing key."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("tributary.events", routing_key="readings.#")
    yield queue
    await connection.close()


async def take(queue: aio_pika.abc.AbstractQueue, n: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def more() -> bool:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is not None:
            got.append(msg)
        return len(got) >= n

    await eventually(more, what=f"{n} messages on the broker", interval=0.05)
    return got


async def test_wire_format(client: httpx.AsyncClient, tap: aio_pika.abc.AbstractQueue) -> None:
    await make_topic(client)
    r = await client.post(
        "/topics/readings/events",
        json={"data": {"temp": 21.5, "at": "2026-11-26T10:00:00Z"}, "subject": "p1.l3", "source": "/gateway/7"},
    )
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["dataschema"] == "/topics/readings/schemas/1"
    (msg,) = await take(tap, 1)
    assert msg.routing_key == "readings.p1.l3"
    assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert msg.content_type == "application/cloudevents+json"
    assert msg.message_id == accepted["id"]
    event = CloudEvent.model_validate_json(msg.body)
    assert event.id == accepted["id"]
    assert event.type == "readings"
    assert event.subject == "p1.l3"
    assert event.source == "/gateway/7"
    assert event.data == {"temp": 21.5, "at": "2026-11-26T10:00:00Z"}
    assert event.dataschema == "/topics/readings/schemas/1"
    raw = orjson.loads(msg.body)
    assert parse_time(raw["time"]) == event.time  # RFC 3339 set by the hub
    assert len(event.id) == 36  # UUIDv7 when the client gives none

    # No subject: the routing key is the topic alone.
    assert (await client.post("/topics/readings/events", json={"data": {"temp": 1}})).status_code == 202
    (bare,) = await take(tap, 1)
    assert bare.routing_key == "readings"


async def test_cloudevents_envelope(client: httpx.AsyncClient, tap: aio_pika.abc.AbstractQueue) -> None:
    await make_topic(client)
    envelope = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/plant1",
        "type": "readings",
        "subject": "p1",
        "time": "1999-01-01T00:00:00Z",
        "data": {"temp": 5},
    }
    r = await client.post(
        "/topics/readings/events",
        content=orjson.dumps(envelope),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["id"] == "ce-1"
    (msg,) = await take(tap, 1)
    event = CloudEvent.model_validate_json(msg.body)
    assert (event.id, event.source, event.subject, event.data) == ("ce-1", "/plant1", "p1", {"temp": 5})
    assert event.time.year > 2000  # the hub's time, not the client's

    wrong_type = {**envelope, "type": "other"}
    r = await client.post(
        "/topics/readings/events",
        content=orjson.dumps(wrong_type),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "/type"
    no_spec = {k: v for k, v in envelope.items() if k != "specversion"}
    r = await client.post(
        "/topics/readings/events",
        content=orjson.dumps(no_spec),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "/specversion"


async def test_invalid_events_name_every_violation(client: httpx.AsyncClient, tap: aio_pika.abc.AbstractQueue) -> None:
    await make_topic(client)
    r = await client.post(
        "/topics/readings/events", json={"data": {"temp": "hot", "unit": "K", "at": "yesterday", "extra": 1}}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_event"
    locs = sorted(d["loc"] for d in err["details"])
    assert locs == ["/data", "/data/at", "/data/temp", "/data/unit"]
    r = await client.post("/topics/readings/events", json={"data": {"temp": 1000}})
    assert r.json()["error"]["details"] == [{"loc": "/data/temp", "msg": "1000 is greater than the maximum of 150"}]
    bad_shapes: list[tuple[Any, str]] = [
        ({"subject": "p1"}, "/data"),
        ({"data": {"temp": 1}, "subject": "bad subject"}, "/subject"),
        ({"data": {"temp": 1}, "subject": "a..b"}, "/subject"),
        ({"data": {"temp": 1}, "id": ""}, "/id"),
        ({"data": {"temp": 1}, "unknown": 1}, "/unknown"),
        ([{"data": {"temp": 1}}], "/"),
    ]
    for body, loc in bad_shapes:
        r = await client.post("/topics/readings/events", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["details"][0]["loc"] == loc, (body, r.text)
    assert await tap.get(no_ack=True, fail=False) is None  # nothing invalid reached the broker


async def test_precise_4xx_for_bad_requests(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client)
    cases: list[tuple[str, bytes, str, int, str]] = [
        ("/topics/readings/events", b'{"data": ', "application/json", 400, "malformed_json"),
        ("/topics/readings/events", b"", "application/json", 400, "malformed_json"),
        ("/topics/readings/events", b'{"data": {"temp": 1}}', "text/plain", 415, "unsupported_media_type"),
        ("/topics/readings/events", b'{"data": {"temp": 1}}', "", 415, "unsupported_media_type"),
        (
            "/topics/readings/events",
            b'{"data": "' + b"x" * hub.settings.max_body_bytes + b'"}',
            "application/json",
            413,
            "body_too_large",
        ),
        ("/topics/nope/events", b'{"data": {"temp": 1}}', "application/json", 404, "unknown_topic"),
        ("/topics/NOPE!/events", b'{"data": {"temp": 1}}', "application/json", 404, "unknown_topic"),
        ("/topics/readings/events:batch", b"[1,", "application/json", 400, "malformed_json"),
        ("/topics/readings/events:batch", b'{"data": 1}', "application/json", 422, "invalid_batch"),
        ("/topics/readings/events:batch", b"[]", "application/json", 422, "invalid_batch"),
        (
            "/topics/readings/events:batch",
            b'{"data": {"temp": 1}}\n{"data": ',
            "application/x-ndjson",
            400,
            "malformed_json",
        ),
        ("/topics/readings/events:batch", b"[]", "text/csv", 415, "unsupported_media_type"),
        ("/topics/nope/events:batch", b'[{"data": {"temp": 1}}]', "application/json", 404, "unknown_topic"),
    ]
    for path, body, ctype, status, code in cases:
        headers = {"content-type": ctype} if ctype else {}
        r = await client.post(path, content=body, headers=headers)
        assert r.status_code == status, (path, body[:40], r.text[:300])
        assert r.json()["error"]["code"] == code, (path, body[:40], r.text[:300])


async def test_batch_limits(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client)
    limit = hub.settings.max_batch_events
    too_many = b"\n".join(b'{"data": {"temp": 1}}' for _ in range(limit + 1))
    r = await client.post(
        "/topics/readings/events:batch", content=too_many, headers={"content-type": "application/x-ndjson"}
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "batch_too_large"
    r = await client.post("/topics/readings/events:batch", json=[{"data": {"temp": 1}}] * (limit + 1))
    assert r.status_code == 413
    huge = b'[{"data": {"temp": 1, "pad": "' + b"x" * hub.settings.max_batch_bytes + b'"}}]'
    r = await client.post("/topics/readings/events:batch", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


async def test_batch_is_all_or_nothing(client: httpx.AsyncClient, hub: Hub, tap: aio_pika.abc.AbstractQueue) -> None:
    await make_topic(client)
    batch = [{"data": {"temp": 1}}, {"data": {"temp": "x"}}, {"data": {"temp": 2}, "subject": "s"}, {"nodata": 1}]
    r = await client.post("/topics/readings/events:batch", json=batch)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_event"
    assert "nothing was published" in err["message"]
    assert sorted(d["loc"] for d in err["details"]) == ["/1/data/temp", "/3/data", "/3/nodata"]
    assert await tap.get(no_ack=True, fail=False) is None

    good = [{"data": {"temp": i}, "subject": f"s{i % 3}", **({"id": f"given-{i}"} if i % 2 else {})} for i in range(50)]
    r = await client.post("/topics/readings/events:batch", json=good)
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    assert len(ids) == 50
    assert ids[1] == "given-1"
    assert r.json()["dataschema"] == "/topics/readings/schemas/1"
    on_broker = await take(tap, 50)
    assert sorted(m.message_id or "" for m in on_broker) == sorted(ids)

    ndjson = b'{"data": {"temp": 7}}\n\n{"data": {"temp": 8}, "subject": "n"}\n'
    r = await client.post(
        "/topics/readings/events:batch", content=ndjson, headers={"content-type": "application/x-ndjson"}
    )
    assert r.status_code == 202, r.text
    assert len(r.json()["ids"]) == 2
    await take(tap, 2)

    async def all_recorded() -> bool:
        return len(await recorded(hub, "readings")) == 52

    await eventually(all_recorded, what="52 recorded events", interval=0.05)


async def test_republishing_an_id_never_duplicates_history(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client)
    for _ in range(3):
        r = await client.post("/topics/readings/events", json={"data": {"temp": 1}, "id": "once", "subject": "a"})
        assert r.status_code == 202
        assert r.json()["id"] == "once"
    r = await client.post(
        "/topics/readings/events:batch",
        json=[
            {"data": {"temp": 2}, "id": "twice"},
            {"data": {"temp": 3}, "id": "twice"},
            {"data": {"temp": 4}, "id": "once"},
            {"data": {"temp": 5}, "id": "marker"},
        ],
    )
    assert r.status_code == 202

    async def marker_recorded() -> bool:
        return "marker" in {d["eid"] for d in await recorded(hub, "readings")}

    await eventually(marker_recorded, what="the marker event", interval=0.05)
    # The recorder drains in order; give any straggling duplicate the time of one more batch.
    await eventually(lambda: _queue_empty(hub), what="the recorder queue drained", interval=0.05)
    ids = [d["eid"] for d in await recorded(hub, "readings")]
    assert sorted(ids) == ["marker", "once", "twice"]
    page = (await client.get("/topics/readings/events")).json()["items"]
    assert sorted(e["id"] for e in page) == ["marker", "once", "twice"]


async def _queue_empty(hub: Hub) -> bool:
    recorder = hub.recorders[0]
    assert recorder.consumer.queue is not None
    declared = await recorder.consumer.queue.channel.declare_queue(recorder.queue_name, durable=True, passive=True)
    return declared.declaration_result.message_count == 0 and recorder._inbox.empty()


async def test_memcached_down_falls_back_to_the_database(hub_settings: Any, mongo_client: Any) -> None:
    settings = hub_settings.model_copy(update={"memcached_port": platform.free_port()})  # nothing listens there
    app = create_app(settings)
    async with app.router.lifespan_context(app), admin_client(app) as client:
        await make_topic(client)
        r = await client.post("/topics/readings/events", json={"data": {"temp": 1}})
        assert r.status_code == 202, r.text
        r = await client.post("/topics/readings/events", json={"data": {"temp": "x"}})
        assert r.status_code == 422
        # Memcached is a cache: without it the hub serves (from the database), so it stays ready.
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "memcached" not in ready.json()["checks"]


def nested(levels: int) -> Any:
    """`data` holding objects `levels` deep (`{"a": 1}` is one level)."""
    data: Any = 1
    for _ in range(levels):
        data = {"a": data}
    return data


async def test_data_nested_deeper_than_every_reader_decodes_is_refused(
    client: httpx.AsyncClient, tap: aio_pika.abc.AbstractQueue
) -> None:
    """Data 200-254 levels deep was accepted (202), then dead-lettered by the recorder, whose JSON parser stops at
    200 levels: an event that never reached history. Deeper still, the envelope could not be written (a 500)."""
    await make_topic(client, "readings", {"type": "object"})
    deepest = nested(MAX_DATA_DEPTH)
    r = await client.post("/topics/readings/events", json={"data": deepest, "subject": "deep"})
    assert r.status_code == 202, r.text
    kept = r.json()["id"]
    for levels in (MAX_DATA_DEPTH + 1, 199, 254, 300):
        data = b'{"a": ' * (levels - 1) + b"[1]" + b"}" * (levels - 1)  # as text: orjson writes 254 levels at most
        body = b'{"data": ' + data + b"}"
        r = await client.post("/topics/readings/events", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (levels, r.text[:300])
        assert r.json()["error"]["details"] == [{"loc": "/data", "msg": f"nests deeper than {MAX_DATA_DEPTH} levels"}]
    r = await client.post(
        "/topics/readings/events:batch", json=[{"data": nested(1)}, {"data": nested(MAX_DATA_DEPTH + 1)}]
    )
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["error"]["details"]] == ["/1/data"]

    [message] = await take(tap, 1)  # only the one accepted event reached the broker
    assert message.message_id == kept

    async def in_history() -> bool:
        r = await client.get("/topics/readings/events")
        return [(e["id"], e["data"]) for e in r.json()["items"]] == [(kept, deepest)]

    await eventually(in_history, what="the deepest accepted event recorded", interval=0.05)
