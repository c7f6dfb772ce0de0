"""Protocol round trips on a real server and broker: every op, every server frame type, and refusals."""

from __future__ import annotations

import orjson

from tests.stream.support import connect, quiet, recv, recv_until, send, subscribe


async def test_ping_pong(stream):
    async with await connect(stream) as ws:
        await send(ws, {"op": "ping", "id": "p1"})
        assert await recv(ws) == {"type": "pong", "id": "p1"}
        await send(ws, {"op": "ping"})
        assert await recv(ws) == {"type": "pong", "id": None}


async def test_subscribe_event_unsubscribe_round_trip(stream, publisher):
    async with await connect(stream) as ws:
        assert await subscribe(ws, "s1", events={"pattern": "orders.#"}) == {
            "type": "subscribed",
            "id": "s1",
            "events": {"pattern": "orders.#"},
        }
        sent = await publisher.event("orders", "eu.x", {"n": 1})
        frame = await recv(ws)
        assert frame == {"type": "event", "sub": "s1", "event": sent}

        await send(ws, {"op": "unsubscribe", "id": "s1"})
        assert await recv(ws) == {"type": "unsubscribed", "id": "s1"}
        await publisher.event("orders", "eu.x", {"n": 2})
        await send(ws, {"op": "ping", "id": "after"})
        # Nothing but the pong: the unsubscribed pattern delivers no more.
        assert await recv(ws) == {"type": "pong", "id": "after"}
        assert await quiet(ws, 0.5) == []


async def test_unsubscribe_unknown_and_duplicate_ids(stream):
    async with await connect(stream) as ws:
        await send(ws, {"op": "unsubscribe", "id": "nope"})
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["code"] == "unknown_subscription" and frame["id"] == "nope"
        assert (await subscribe(ws, "a", events={"pattern": "x.#"}))["type"] == "subscribed"
        frame = await subscribe(ws, "a", events={"pattern": "y.#"})
        assert frame["type"] == "error" and frame["code"] == "duplicate_id"


async def test_bad_frames_get_error_frames_and_the_connection_stays_up(stream):
    cases = [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_frame", "must be a JSON object"),
        ('{"id": "x"}', "invalid_frame", "/op"),
        ('{"op": "dance", "id": "x"}', "unknown_op", "dance"),
        ('{"op": "subscribe", "id": "x"}', "invalid_frame", "exactly one of /events or /unitop"),
        ('{"op": "subscribe", "id": "x", "events": {"pattern": "a..b"}}', "invalid_pattern", "segment 1"),
        ('{"op": "subscribe", "id": "x", "events": {"pattern": "a.b*"}}', "invalid_pattern", "/events/pattern"),
        ('{"op": "subscribe", "id": "x", "events": {"pattern": 5}}', "invalid_frame", "/events/pattern"),
        ('{"op": "subscribe", "id": "x", "events": {"pattern": "a", "extra": 1}}', "invalid_frame", "/events/extra"),
        ('{"op": "subscribe", "id": "x", "events": {"pattern": "a", "since": 12}}', "invalid_since", "since"),
        ('{"op": "subscribe", "id": "x", "unitop": {"name": "-bad"}}', "invalid_unitop", "/unitop/name"),
        ('{"op": "subscribe", "id": "x", "unitop": {"name": "u", "items": []}}', "invalid_frame", "/unitop/items"),
        ('{"op": "subscribe", "id": "", "events": {"pattern": "a"}}', "invalid_frame", "/id"),
        ('{"op": "subscribe", "id": "' + "i" * 200 + '", "events": {"pattern": "a"}}', "invalid_frame", "/id"),
        ('{"op": "unsubscribe"}', "invalid_frame", "/id"),
    ]
    async with await connect(stream) as ws:
        for raw, code, needle in cases:
            await ws.send(raw)
            frame = await recv(ws)
            assert frame["type"] == "error", raw
            assert frame["code"] == code, (raw, frame)
            if needle:
                assert needle in frame["message"], (raw, frame)
        # Binary frames are refused, oversized frames too; the connection is still usable.
        await ws.send(b'{"op": "ping"}')
        assert (await recv(ws))["code"] == "binary_frame"
        big = orjson.dumps({"op": "ping", "id": "x" * (stream.settings.max_frame_bytes + 10)}).decode()
        await ws.send(big)
        frame = await recv(ws)
        assert frame["code"] == "frame_too_large" and str(stream.settings.max_frame_bytes) in frame["message"]
        await send(ws, {"op": "ping", "id": "still-here"})
        assert await recv(ws) == {"type": "pong", "id": "still-here"}


async def test_subscription_limit_per_connection(amqp_url):
    from tests.stream.support import settings_for, start_stream

    running = await start_stream(settings_for(amqp_url, max_subscriptions_per_connection=3))
    try:
        async with await connect(running) as ws:
            for i in range(3):
                assert (await subscribe(ws, f"s{i}", events={"pattern": f"t{i}.#"}))["type"] == "subscribed"
            frame = await subscribe(ws, "s3", events={"pattern": "t3.#"})
            assert frame["type"] == "error" and frame["code"] == "too_many_subscriptions" and "3" in frame["message"]
            # Freeing one makes room again.
            await send(ws, {"op": "unsubscribe", "id": "s0"})
            await recv_until(ws, lambda f: f["type"] == "unsubscribed")
            assert (await subscribe(ws, "s3", events={"pattern": "t3.#"}))["type"] == "subscribed"
    finally:
        await running.stop()


async def test_connection_limit(amqp_url):
    from tests.stream.support import settings_for, start_stream

    running = await start_stream(settings_for(amqp_url, max_connections=2))
    try:
        a, b = await connect(running), await connect(running)
        c = await connect(running)
        frame = await recv(c)
        assert frame["type"] == "error" and frame["code"] == "too_many_connections"
        await c.wait_closed()
        assert c.close_code == 1013
        await a.close()
        await b.close()
    finally:
        await running.stop()


async def test_multiplexed_subscriptions_on_one_socket(stream, publisher):
    async with await connect(stream) as ws:
        await subscribe(ws, "orders", events={"pattern": "orders.#"})
        await subscribe(ws, "alarms", events={"pattern": "alarms.*"})
        o = await publisher.event("orders", "eu")
        a = await publisher.event("alarms", "pump1")
        await publisher.event("alarms", "pump1.deep")  # not matched by alarms.*
        first, second = await recv(ws), await recv(ws)
        assert (first["sub"], first["event"]["id"]) == ("orders", o["id"])
        assert (second["sub"], second["event"]["id"]) == ("alarms", a["id"])
        assert await quiet(ws, 0.5) == []
