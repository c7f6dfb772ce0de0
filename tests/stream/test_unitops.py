"""Unitop subscriptions with the real hub: resolution over RPC, demand heartbeats on the broker, live samples,
catch-up from sample history, unitop changes, and SSE with `Last-Event-ID`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import orjson

from tests.stream.support import SseReader, connect, recv, recv_until, send, subscribe, token
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.control import Demand
from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import format_time, parse_time, utcnow

ITEMS = {
    "flow": {"source": "simulator", "params": {"signal": "sine", "period_s": 60}},
    "pressure": {"source": "simulator", "params": {"signal": "random_walk", "seed": 7}},
}


async def _unitop(hub, amqp_url: str, name: str, items: dict[str, Any] | None = None) -> dict[str, str]:
    """Create the unitop through the hub's API; return item -> sid."""
    await hub.announce_simulator(amqp_url)
    view = await hub.ok("POST", "/unitops", json={"name": name, "items": items or ITEMS})
    return {item: spec["sid"] for item, spec in view["items"].items()}


def _batch(sid: str, start, n: int, v0: float = 0.0) -> SampleBatch:
    return SampleBatch(
        sid=sid,
        source="simulator",
        samples=[Sample(t=start + timedelta(milliseconds=10 * i), v=v0 + i) for i in range(n)],
    )


async def _publish_batch(pub: Bus, batch: SampleBatch) -> None:
    await pub.raw("tributary.samples", batch.routing_key, batch.model_dump_json().encode())


async def _recorded(hub: Any, unitop: str, count: int) -> bool:
    page = await hub.ok("GET", f"/unitops/{unitop}/samples", params={"limit": 1000})
    return len(page["items"]) == count


async def test_unitop_subscription_sends_demand_and_samples_arrive(amqp_url, hub, stream, publisher):
    sids = await _unitop(hub, amqp_url, "pump-1")
    # Watch the demand heartbeats on the broker, as an ingest instance would.
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    control = await channel.declare_exchange("tributary.control", aio_pika.ExchangeType.TOPIC, durable=True)
    demand_q = await channel.declare_queue(exclusive=True)
    await demand_q.bind(control, "demand.simulator")

    async def ours() -> Demand | None:
        """The next message, if it is this stream's demand (others are skipped)."""
        msg = await demand_q.get(no_ack=True, fail=False)
        d = None if msg is None else Demand.model_validate_json(msg.body)
        return d if d is not None and d.requester == stream.settings.instance_id else None

    async def next_demand(timeout: float = 30) -> Demand:
        demand: Demand = await eventually(ours, timeout, "a demand heartbeat")
        return demand

    try:
        async with await connect(stream) as ws:
            frame = await subscribe(ws, "u", unitop={"name": "pump-1"})
            assert frame == {"type": "subscribed", "id": "u", "unitop": {"name": "pump-1", "items": sids}}
            demand = await next_demand()
            assert demand.source == "simulator" and demand.ttl_s == stream.settings.demand_ttl_s
            assert {s.sid: s.params for s in demand.subscriptions} == {
                sids[i]: spec["params"] for i, spec in ITEMS.items()
            }
            # Heartbeats repeat while the client watches.
            assert {s.sid for s in (await next_demand()).subscriptions} == set(sids.values())

            batch = _batch(sids["flow"], utcnow(), 3)
            await _publish_batch(publisher, batch)
            frame = await recv(ws)
            assert frame == {
                "type": "samples",
                "sub": "u",
                "unitop": "pump-1",
                "item": "flow",
                "sid": sids["flow"],
                "samples": orjson.loads(batch.model_dump_json())["samples"],
            }
            # A subscription to some items only.
            assert (await subscribe(ws, "p", unitop={"name": "pump-1", "items": ["pressure"]}))["unitop"]["items"] == {
                "pressure": sids["pressure"]
            }
            await _publish_batch(publisher, _batch(sids["pressure"], utcnow(), 2))
            frames = [await recv(ws), await recv(ws)]
            assert sorted(f["sub"] for f in frames) == ["p", "u"]
            assert all(f["item"] == "pressure" and len(f["samples"]) == 2 for f in frames)

            await send(ws, {"op": "unsubscribe", "id": "u"})
            await send(ws, {"op": "unsubscribe", "id": "p"})
            await recv_until(ws, lambda f: f["type"] == "unsubscribed" and f["id"] == "p")
        # Nobody watches any more: the heartbeats stop (checked over several intervals).
        await asyncio.sleep(stream.settings.demand_interval_s * 2)
        await demand_q.purge()
        await asyncio.sleep(stream.settings.demand_interval_s * 4)
        leftover = await demand_q.get(no_ack=True, fail=False)
        assert leftover is None or Demand.model_validate_json(leftover.body).requester != stream.settings.instance_id
    finally:
        await connection.close()


async def test_unitop_since_replays_sample_history_then_live(amqp_url, hub, stream, publisher):
    sids = await _unitop(hub, amqp_url, "pump-2")
    t0 = utcnow() - timedelta(minutes=5)
    old = [_batch(sids["flow"], t0, 50), _batch(sids["pressure"], t0 + timedelta(seconds=1), 30, 100)]
    for b in old:
        await _publish_batch(publisher, b)
    # Wait until the hub's samples recorder has them.
    await eventually(lambda: _recorded(hub, "pump-2", 80), 60, "the samples recorded", 0.25)

    async with await connect(stream) as ws:
        since = format_time(t0 + timedelta(milliseconds=195))  # exclusive: flow from sample 20 on
        frame = await subscribe(ws, "u", unitop={"name": "pump-2", "since": since})
        assert frame["type"] == "subscribed"
        # Live batches right away (during or after the replay), one overlapping what history has.
        overlap = _batch(sids["flow"], t0 + timedelta(milliseconds=400), 20, 40)  # samples 40..59
        await _publish_batch(publisher, overlap)
        fresh = _batch(sids["pressure"], utcnow(), 5, 500)
        await _publish_batch(publisher, fresh)

        got: dict[str, list[tuple[str, Any]]] = {"flow": [], "pressure": []}
        while len(got["flow"]) < 40 or len(got["pressure"]) < 35:
            f = await recv(ws, 30)
            assert f["type"] == "samples" and f["sub"] == "u", f
            got[f["item"]] += [(s["t"], s["v"]) for s in f["samples"]]
    flow_times = [parse_time(t) for t, _ in got["flow"]]
    assert flow_times == sorted(set(flow_times)), "flow samples repeated or out of order"
    assert [v for _, v in got["flow"]] == [float(i) for i in range(20, 60)]
    assert [v for _, v in got["pressure"]] == [100.0 + i for i in range(30)] + [500.0 + i for i in range(5)]


async def test_unitop_errors_changes_and_deletion(amqp_url, hub, stream):
    sids = await _unitop(hub, amqp_url, "pump-3")
    async with await connect(stream) as ws:
        frame = await subscribe(ws, "x", unitop={"name": "no-such-unitop"})
        assert frame["type"] == "error" and frame["code"] == "not_found" and "/unitop/name" in frame["message"]
        frame = await subscribe(ws, "y", unitop={"name": "pump-3", "items": ["flow", "nope"]})
        assert frame["type"] == "error" and frame["code"] == "unknown_item" and "'nope'" in frame["message"]
        await subscribe(ws, "u", unitop={"name": "pump-3"})

        # The hub announces the change on tributary.control; the subscription follows it.
        new_items = {**ITEMS, "temp": {"source": "simulator", "params": {"signal": "constant", "value": 20}}}
        view = await hub.ok("PUT", "/unitops/pump-3", json={"name": "pump-3", "items": new_items})
        frame, _ = await recv_until(ws, lambda f: f["type"] == "subscribed" and f["id"] == "u")
        assert frame["unitop"]["items"] == {i: spec["sid"] for i, spec in view["items"].items()}
        assert set(frame["unitop"]["items"]) == {"flow", "pressure", "temp"}
        assert frame["unitop"]["items"]["flow"] == sids["flow"]

        await hub.ok("DELETE", "/unitops/pump-3")
        frame, _ = await recv_until(ws, lambda f: f["type"] == "unsubscribed")
        assert frame == {"type": "unsubscribed", "id": "u", "reason": "unitop_deleted"}


async def test_unitop_sse_with_last_event_id(amqp_url, hub, stream, publisher):
    sids = await _unitop(hub, amqp_url, "pump-4")
    t0 = utcnow() - timedelta(minutes=1)
    await _publish_batch(publisher, _batch(sids["flow"], t0, 10))
    await eventually(lambda: _recorded(hub, "pump-4", 10), 60, "the samples recorded", 0.25)
    headers = {
        "Authorization": f"Bearer {token()}",
        "Last-Event-ID": orjson.dumps({"items": {"flow": format_time(t0 + timedelta(milliseconds=45))}}).decode(),
    }
    async with (
        httpx.AsyncClient(base_url=stream.base, timeout=30) as http,
        http.stream("GET", "/unitops/pump-4/stream", params={"items": "flow"}, headers=headers) as r,
    ):
        assert r.status_code == 200
        sse = SseReader(r)
        assert (await sse.next_event())["event"] == "subscribed"
        record = await sse.next_event()
        assert record["event"] == "samples"
        data = orjson.loads(record["data"])
        assert data["item"] == "flow" and [s["v"] for s in data["samples"]] == [5.0, 6.0, 7.0, 8.0, 9.0]
        # The record's id is the position to resume from.
        assert orjson.loads(record["id"]) == {"items": {"flow": format_time(t0 + timedelta(milliseconds=90))}}


async def test_api_key_from_the_hub(hub, stream):
    created = await hub.ok("POST", "/apikeys", json={"name": "reader", "scopes": ["events:read"], "topics": ["k.#"]})
    async with await connect(stream, created["key"]) as ws:
        assert (await subscribe(ws, "ok", events={"pattern": "k.a"}))["type"] == "subscribed"
        frame = await subscribe(ws, "no", events={"pattern": "other.#"})
        assert frame["type"] == "error" and frame["code"] == "forbidden"
    import websockets

    ws = await websockets.connect(stream.ws_url(), additional_headers={"Authorization": "Bearer trk_unknown"})
    frame = await recv(ws)
    assert frame["code"] == "unauthorized" and "API key" in frame["message"]
    await ws.wait_closed()
    assert ws.close_code == 1008
