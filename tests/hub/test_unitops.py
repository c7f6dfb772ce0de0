"""Unitops and sources: announcements recorded, items validated against the announced model, CRUD and search,
changes and demand heartbeats on `tributary.control`, sample history raw and aligned (LOCF)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from pydantic import BaseModel, Field

from tests.support.polling import eventually
from tributary_common.control import Demand, SourceAnnouncement, UnitopChange
from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import utcnow
from tributary_common.unitops import MAX_PARAMS_DEPTH, Subscription
from tributary_hub.composition import Hub


class SimulatorParams(BaseModel):
    signal: str = Field(pattern="^(sine|random_walk|step)$")
    period_s: float = Field(default=60, gt=0)
    seed: int = 0


PUMP: dict[str, Any] = {
    "name": "pump-101",
    "items": {
        "flow": {"source": "simulator", "params": {"signal": "sine", "period_s": 30}},
        "pressure": {"source": "simulator", "params": {"signal": "random_walk", "seed": 7}},
    },
    "meta": {"site": "plant1", "kind": "pump", "line": 3},
    "record": True,
}


@pytest.fixture
async def control(
    amqp_url: str, app: Any
) -> AsyncIterator[tuple[aio_pika.abc.AbstractExchange, aio_pika.abc.AbstractQueue]]:
    """The control exchange, and a queue on it receiving unitop changes and demand heartbeats."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.get_exchange("tributary.control")
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="unitop.#")
    await queue.bind(exchange, routing_key="demand.#")
    yield exchange, queue
    await connection.close()


async def announce(
    exchange: aio_pika.abc.AbstractExchange, source: str = "simulator", instance: str = "ingest-1"
) -> None:
    ann = SourceAnnouncement(
        source=source,
        instance_id=instance,
        subscription_schema=SimulatorParams.model_json_schema(),
        capacity=100,
        free=90,
        leases=10,
        ttl_s=30,
        sent_at=utcnow(),
    )
    await exchange.publish(
        aio_pika.Message(ann.model_dump_json().encode(), content_type="application/json"),
        routing_key=f"source.{source}",
    )


async def announced(client: httpx.AsyncClient, exchange: aio_pika.abc.AbstractExchange) -> list[dict[str, Any]]:
    await announce(exchange)

    async def listed() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await client.get("/sources")).json()["items"]
        return items

    return list(await eventually(listed, what="the announced source listed", interval=0.05))


async def messages(queue: aio_pika.abc.AbstractQueue, key_prefix: str, n: int) -> list[bytes]:
    got: list[bytes] = []

    async def more() -> bool:
        msg = await queue.get(no_ack=True, fail=False)
        if msg is not None and (msg.routing_key or "").startswith(key_prefix):
            got.append(msg.body)
        return len(got) >= n

    await eventually(more, what=f"{n} messages {key_prefix}*", interval=0.05)
    return got


async def test_sources_and_validated_unitops(client: httpx.AsyncClient, control: Any) -> None:
    exchange, queue = control
    sources = await announced(client, exchange)
    assert sources[0]["name"] == "simulator"
    assert sources[0]["subscription_schema"]["properties"]["signal"]["pattern"]
    assert [i["instance_id"] for i in sources[0]["instances"]] == ["ingest-1"]

    r = await client.post("/unitops", json=PUMP)
    assert r.status_code == 201, r.text
    body = r.json()
    # The sid hashes the canonical params: `period_s` is a float in the model.
    assert (
        body["items"]["flow"]["sid"]
        == Subscription(source="simulator", params={"signal": "sine", "period_s": 30.0}).sid
    )
    (change_raw,) = await messages(queue, "unitop.pump-101", 1)
    change = UnitopChange.model_validate_json(change_raw)
    assert change.action == "created"
    assert change.unitop is not None
    assert change.unitop.items["flow"].params == {"signal": "sine", "period_s": 30}

    bad = {
        **PUMP,
        "name": "pump-bad",
        "items": {
            "flow": {"source": "simulator", "params": {"signal": "square", "period_s": -1}},
            "ghost": {"source": "nosuch", "params": {}},
            "ok": {"source": "simulator", "params": {"signal": "step"}},
        },
    }
    r = await client.post("/unitops", json=bad)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_items"
    assert sorted(d["loc"] for d in err["details"]) == [
        "/items/flow/params/period_s",
        "/items/flow/params/signal",
        "/items/ghost/source",
    ]
    assert "has not been announced" in next(d["msg"] for d in err["details"] if d["loc"] == "/items/ghost/source")
    assert (await client.get("/unitops/pump-bad")).status_code == 404

    assert (await client.post("/unitops", json=PUMP)).status_code == 409
    for not_a_boolean in ("yes", "true", 1, None, [True]):
        r = await client.post("/unitops", json={**PUMP, "name": "pump-lax", "record": not_a_boolean})
        assert r.status_code == 422, (not_a_boolean, r.text)
        assert [d["loc"] for d in r.json()["error"]["details"]] == ["/record"], r.text
    assert (await client.get("/unitops/pump-lax")).status_code == 404
    r = await client.post("/unitops", json={**PUMP, "name": "bad name"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "/name"
    r = await client.post(
        "/unitops", json={**PUMP, "name": "x", "items": {"a": {"source": "simulator", "params": {}, "extra": 1}}}
    )
    assert r.status_code == 422
    # Params nested past what anything walks them to (300 levels: the schema validator raised, a 500).
    for levels in (MAX_PARAMS_DEPTH + 1, 300):
        params = '{"signal": "sine", "x": ' + '{"a": ' * (levels - 1) + "1" + "}" * (levels - 1) + "}"
        body = f'{{"name": "deep", "items": {{"a": {{"source": "simulator", "params": {params}}}}}}}'
        r = await client.post("/unitops", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (levels, r.text[:300])
        assert [d["loc"] for d in r.json()["error"]["details"]] == ["/items/a/params"], r.text[:300]
    assert (await client.get("/unitops/deep")).status_code == 404

    got = (await client.get("/unitops/pump-101")).json()
    assert got["meta"] == PUMP["meta"]
    assert got["record"] is True

    updated = {**PUMP, "items": {"flow": PUMP["items"]["flow"]}, "record": False}
    r = await client.put("/unitops/pump-101", json=updated)
    assert r.status_code == 200, r.text
    assert list(r.json()["items"]) == ["flow"]
    r = await client.put("/unitops/pump-101", json={**updated, "name": "other"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "name_mismatch"
    assert (await client.put("/unitops/nope", json={**updated, "name": "nope"})).status_code == 404
    assert (await client.delete("/unitops/pump-101")).status_code == 204
    assert (await client.get("/unitops/pump-101")).status_code == 404
    assert (await client.delete("/unitops/pump-101")).status_code == 404
    actions = [UnitopChange.model_validate_json(b).action for b in await messages(queue, "unitop.pump-101", 2)]
    assert actions == ["updated", "deleted"]


async def test_search(client: httpx.AsyncClient, control: Any) -> None:
    exchange, _ = control
    await announced(client, exchange)
    for i in range(7):
        unitop = {
            "name": f"{'pump' if i < 5 else 'valve'}-{i}",
            "items": {},
            "meta": {"site": "plant1" if i % 2 else "plant2", "line": i, "active": i < 3},
        }
        assert (await client.post("/unitops", json=unitop)).status_code == 201

    async def names(**params: Any) -> list[str]:
        r = await client.get("/unitops", params=params)
        assert r.status_code == 200, r.text
        return [u["name"] for u in r.json()["items"]]

    assert await names(prefix="pump-") == [f"pump-{i}" for i in range(5)]
    assert await names(**{"meta.site": "plant1"}) == ["pump-1", "pump-3", "valve-5"]
    assert await names(**{"meta.line": "4"}) == ["pump-4"]
    assert await names(**{"meta.active": "true", "prefix": "pump"}) == ["pump-0", "pump-1", "pump-2"]
    assert await names(prefix=".*") == []  # a prefix is text, never a pattern
    pages: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = (await client.get("/unitops", params=params)).json()
        pages += [u["name"] for u in page["items"]]
        if not page["next"]:
            break
        params["cursor"] = page["next"]
    assert pages == sorted(pages) and len(pages) == 7
    r = await client.get("/unitops", params={"filter": '{"$where": "1"}'})
    assert r.status_code == 422
    r = await client.get("/unitops", params={"meta.$where": "1"})
    assert r.status_code == 422


async def test_demand_heartbeats_for_recorded_unitops(client: httpx.AsyncClient, hub: Hub, control: Any) -> None:
    exchange, queue = control
    await announced(client, exchange)
    assert (await client.post("/unitops", json=PUMP)).status_code == 201
    assert (
        await client.post(
            "/unitops",
            json={
                **PUMP,
                "name": "not-recorded",
                "record": False,
                "items": {"x": {"source": "simulator", "params": {"signal": "step"}}},
            },
        )
    ).status_code == 201
    bodies = await messages(queue, "demand.simulator", 3)  # heartbeats keep coming
    demands = [Demand.model_validate_json(b) for b in bodies]
    expected = {item["sid"] for item in (await client.get("/unitops/pump-101")).json()["items"].values()}
    for d in demands:
        assert d.source == "simulator"
        assert d.requester == hub.settings.instance_id
        assert d.ttl_s == hub.settings.demand_ttl_s
        assert {s.sid for s in d.subscriptions} == expected
    assert {s.params["signal"] for s in demands[-1].subscriptions} == {"sine", "random_walk"}

    # No recorded unitop left: one empty heartbeat says so, then none for the source.
    assert (await client.delete("/unitops/pump-101")).status_code == 204

    async def emptied() -> bool:
        msg = await queue.get(no_ack=True, fail=False)
        return bool(
            msg is not None
            and msg.routing_key == "demand.simulator"
            and not Demand.model_validate_json(msg.body).subscriptions
        )

    await eventually(emptied, what="an empty demand after the last recorded unitop went", interval=0.05)


async def test_sample_history_raw_and_aligned(client: httpx.AsyncClient, hub: Hub, control: Any, amqp_url: str) -> None:
    exchange, _ = control
    await announced(client, exchange)
    assert (await client.post("/unitops", json=PUMP)).status_code == 201
    sids = {k: v["sid"] for k, v in (await client.get("/unitops/pump-101")).json()["items"].items()}
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    flow = SampleBatch(
        sid=sids["flow"],
        source="simulator",
        samples=[Sample(t=t0 + timedelta(seconds=s), v=float(s)) for s in (0, 2, 5)],
    )
    pressure = SampleBatch(
        sid=sids["pressure"],
        source="simulator",
        samples=[Sample(t=t0 + timedelta(seconds=s), v=10 + s, q="good") for s in (1, 4)],
    )
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    samples_ex = await channel.get_exchange("tributary.samples")
    for b in (flow, pressure):
        await samples_ex.publish(aio_pika.Message(b.model_dump_json().encode()), routing_key=b.routing_key)
    await connection.close()

    async def stored() -> bool:
        return await hub.samples.collection.count_documents({}) == 5

    await eventually(stored, what="samples recorded", interval=0.05)
    start, end = "2026-01-01T00:00:00Z", "2026-01-01T00:00:06Z"
    r = await client.get("/unitops/pump-101/samples", params={"start": start, "end": end, "limit": 3})
    assert r.status_code == 200, r.text
    page = r.json()
    assert [(x["item"], x["v"]) for x in page["items"]] == [("flow", 0.0), ("pressure", 11), ("flow", 2.0)]
    rest = (
        await client.get("/unitops/pump-101/samples", params={"start": start, "end": end, "cursor": page["next"]})
    ).json()
    assert [(x["item"], x["v"], x["q"]) for x in rest["items"]] == [("pressure", 14, "good"), ("flow", 5.0, None)]
    assert rest["next"] is None
    only = (await client.get("/unitops/pump-101/samples", params={"items": "pressure"})).json()["items"]
    assert {x["item"] for x in only} == {"pressure"}

    r = await client.get(
        "/unitops/pump-101/samples", params={"start": start, "end": end}, headers={"Accept": "text/csv"}
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["item"], row["v"]) for row in rows] == [
        ("flow", "0.0"),
        ("pressure", "11"),
        ("flow", "2.0"),
        ("pressure", "14"),
        ("flow", "5.0"),
    ]

    aligned = await client.get(
        "/unitops/pump-101/samples", params={"start": "2026-01-01T00:00:00.5Z", "end": end, "interval_s": 1.5}
    )
    assert aligned.status_code == 200, aligned.text
    # Streamed row by row (no length known in advance), so points × items never sit in memory at once.
    assert "content-length" not in aligned.headers
    grid = [(x["t"], x["values"]["flow"], x["values"]["pressure"]) for x in aligned.json()["items"]]
    assert grid == [
        ("2026-01-01T00:00:00.500000Z", 0.0, None),  # carried from t=0; pressure has no value yet
        ("2026-01-01T00:00:02.000000Z", 2.0, 11),
        ("2026-01-01T00:00:03.500000Z", 2.0, 11),
        ("2026-01-01T00:00:05.000000Z", 5.0, 14),
    ]
    r = await client.get(
        "/unitops/pump-101/samples",
        params={"start": "2026-01-01T00:00:00.5Z", "end": end, "interval_s": 1.5},
        headers={"Accept": "text/csv"},
    )
    grid_rows = list(csv.reader(io.StringIO(r.text)))
    assert grid_rows[0] == ["t", "flow", "pressure"]
    assert grid_rows[1] == ["2026-01-01T00:00:00.500000Z", "0.0", ""]
    r = await client.get(
        "/unitops/pump-101/samples",
        params={"start": start, "end": end, "interval_s": 1},
        headers={"Accept": "application/x-ndjson"},
    )
    lines = [orjson.loads(x) for x in r.content.splitlines()]
    assert len(lines) == 6
    assert lines[-1]["values"] == {"flow": 5.0, "pressure": 14}

    assert (await client.get("/unitops/pump-101/samples", params={"interval_s": 1})).status_code == 422
    r = await client.get("/unitops/pump-101/samples", params={"start": start, "end": end, "interval_s": 0.00001})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "too_many_points"
    r = await client.get("/unitops/pump-101/samples", params={"items": "flow,nope"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "unknown_item"
    assert (await client.get("/unitops/nope/samples")).status_code == 404

    # Hostile intervals: infinite, not a number, past what a time can hold, and under 1 µs, where the grid never
    # moved on (one request streamed the same row forever and held the hub's event loop).
    just_after = "2026-01-01T00:00:00.000001Z"
    hostile = [("inf", end), ("nan", end), ("1e300", end), ("1e-7", just_after), ("0.0000009", just_after)]
    for interval, until in hostile:
        r = await client.get("/unitops/pump-101/samples", params={"start": start, "end": until, "interval_s": interval})
        assert r.status_code == 422, (interval, r.text)
        assert [d["loc"] for d in r.json()["error"]["details"]] == ["/query/interval_s"], (interval, r.text)
    r = await client.get("/unitops/pump-101/samples", params={"start": start, "end": just_after, "interval_s": 1e-6})
    assert [x["t"] for x in r.json()["items"]] == ["2026-01-01T00:00:00.000000Z"]
    r = await client.get("/unitops/pump-101/samples", params={"start": start, "end": end, "interval_s": 3e11})
    assert [x["values"]["flow"] for x in r.json()["items"]] == [0.0]

    # A range in years below 1000 holds none of these samples (its times were written `999-…`, which no reader
    # parsed, so the range read as unbounded and answered everything).
    for early in [{"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T00:00:01Z"}, {"end": "0999-12-31T00:00:00Z"}]:
        r = await client.get("/unitops/pump-101/samples", params=early)
        assert r.json()["items"] == [], (early, r.text)
        r = await client.get("/unitops/pump-101/samples", params={**early, "boundary": "outside"})
        assert [(x["item"], x["v"]) for x in r.json()["items"]] == [("flow", 0.0), ("pressure", 11)], early

    # An item named twice is one item; unknown names are counted past the first ten, not all echoed back.
    twice = await client.get("/unitops/pump-101/samples", params={"start": start, "end": end, "items": "flow,flow"})
    assert [x["v"] for x in twice.json()["items"]] == [0.0, 2.0, 5.0]
    r = await client.get("/unitops/pump-101/samples", params={"items": ",".join(f"x{i}" for i in range(400))})
    assert r.status_code == 404
    assert "and 390 more" in r.json()["error"]["message"] and len(r.text) < 1_000
    r = await client.get("/unitops/pump-101/samples", params={"items": "flow," * 1_000})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/query/items"


async def test_an_update_racing_a_delete_never_brings_the_unitop_back(client: httpx.AsyncClient, control: Any) -> None:
    """Either order is a valid history (update then delete: gone; delete then update: 404, gone), but never both
    answered yes with the unitop there afterwards."""
    exchange, _ = control
    await announced(client, exchange)
    for round_ in range(8):
        name = f"race-{round_}"
        assert (await client.post("/unitops", json={**PUMP, "name": name})).status_code == 201
        update, delete = await asyncio.gather(
            client.put(f"/unitops/{name}", json={**PUMP, "name": name, "meta": {"site": "moved"}}),
            client.delete(f"/unitops/{name}"),
        )
        assert delete.status_code == 204, delete.text
        assert update.status_code in (200, 404), update.text
        assert (await client.get(f"/unitops/{name}")).status_code == 404, (round_, update.status_code)


async def test_browse_params_nested_past_a_subscriptions_are_refused(client: httpx.AsyncClient, control: Any) -> None:
    """They were encoded for the ingest's RPC, which orjson refuses past 254 levels: a 500."""
    exchange, _ = control
    await announced(client, exchange)
    for levels in (MAX_PARAMS_DEPTH + 1, 300):
        params = '{"folder": ' + '{"a": ' * (levels - 1) + "1" + "}" * (levels - 1) + "}"
        r = await client.get("/sources/simulator/browse", params={"params": params})
        assert r.status_code == 422, (levels, r.text[:300])
        assert r.json()["error"]["details"] == [
            {"loc": "/query/params", "msg": f"nests deeper than {MAX_PARAMS_DEPTH} levels"}
        ]
