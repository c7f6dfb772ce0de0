"""Catch-up from the hub's history over RPC, with the real hub recording events published through its API.

`since` replays history, then live, with no gap and no duplicate at the seam: events published before, during
and after the replay each arrive exactly once, in the hub's history order.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.stream.support import (
    SseReader,
    connect,
    quiet,
    recv,
    recv_until,
    send,
    settings_for,
    start_stream,
    subscribe,
    token,
)
from tributary_common.matcher import matches
from tributary_stream.subscriptions import REPLAYING

BIG = "x" * 32 * 1024  # large events fill the socket buffers, so the replay waits for the reader


async def _events_until(ws, sub_id: str, last_id: str, timeout: float = 90) -> list[dict[str, Any]]:
    frame, before = await recv_until(
        ws, lambda f: f.get("type") == "event" and f.get("sub") == sub_id and f["event"]["id"] == last_id, timeout
    )
    others = [f for f in before if f.get("type") != "event" or f.get("sub") != sub_id]
    assert others == [], others[:3]
    return [f["event"] for f in before] + [frame["event"]]


async def test_since_replays_then_goes_live_exactly_once_in_order(amqp_url, hub):
    running = await start_stream(settings_for(amqp_url, history_page_size=20, send_queue_max=8))
    try:
        await hub.create_topic("cu")
        before = await hub.publish_batch("cu", [{"data": {"i": i, "big": BIG}, "subject": "a"} for i in range(300)])
        recorded = await hub.wait_recorded("cu", before)
        first_time = recorded[0]["time"]

        ws = await connect(running, max_queue=2, max_size=None)
        assert (await subscribe(ws, "s", events={"pattern": "cu.#", "since": first_time}))["type"] == "subscribed"
        # The client has not read yet: the replay is stalled on it. Publish "during" events now.
        sub = running.service.fanout.patterns["cu.#"]
        during = []
        for i in range(20):
            during.append(await hub.publish("cu", {"during": i}, "b"))
            assert all(s.state == REPLAYING for s in sub), "the replay ended before the 'during' events"
        await hub.wait_recorded("cu", during)  # some of them now also appear in later history pages
        got = await _events_until(ws, "s", during[-1])
        after = [await hub.publish("cu", {"after": i}, "c") for i in range(10)]
        got += await _events_until(ws, "s", after[-1])

        ids = [e["id"] for e in got]
        assert len(ids) == len(set(ids)), "duplicates at the seam"
        assert ids == before + during + after
        history = [e["id"] for e in await hub.wait_recorded("cu", after)]
        assert ids == history  # the hub's own order, (time, id)
        assert all(s.state == "live" for s in sub)
        assert await quiet(ws, 0.5) == []
        await ws.close()
    finally:
        await running.stop()


async def test_since_event_id_resumes_after_it(stream, hub):
    await hub.create_topic("rs")
    ids = await hub.publish_batch("rs", [{"data": {"i": i}, "subject": "x"} for i in range(30)])
    await hub.wait_recorded("rs", ids)
    async with await connect(stream) as ws:
        await subscribe(ws, "s", events={"pattern": "rs.*", "since": ids[9]})
        got = await _events_until(ws, "s", ids[-1])
        assert [e["id"] for e in got] == ids[10:]
        # The same with a gap frame's `last` object.
        await subscribe(ws, "t", events={"pattern": "rs.*", "since": {"id": ids[27], "time": "ignored"}})
        got = await _events_until(ws, "t", ids[-1])
        assert [e["id"] for e in got] == ids[28:]
        live = await hub.publish("rs", {"live": True}, "x")
        frames = [await recv(ws), await recv(ws)]
        assert sorted(f["sub"] for f in frames) == ["s", "t"] and {f["event"]["id"] for f in frames} == {live}


async def test_unknown_since_id_is_refused(stream, hub):
    await hub.create_topic("uk")
    async with await connect(stream) as ws:
        frame = await subscribe(ws, "s", events={"pattern": "uk.#", "since": "no-such-event"})
        assert frame["type"] == "error" and frame["code"] == "not_found" and frame["id"] == "s"
        assert "/events/since" in frame["message"]
        assert "s" not in [s for c in stream.service.fanout.clients for s in c.subs]


async def test_history_and_live_follow_the_same_pattern_semantics(stream, hub):
    """What the hub's history returns for a pattern equals what live delivery routes, equals the matcher."""
    await hub.create_topic("ps")
    subjects = [None, "a", "b", "a.b", "a.a", "b.a", "a.b.c", "c.a.b"]
    patterns = ["ps.#", "ps.*", "ps.a.#", "ps.#.a", "ps.*.a", "#.b", "ps.a.*.c", "*.a.#", "ps"]

    async def publish_all() -> list[tuple[str, str]]:
        out = []
        for s in subjects:
            eid = await hub.publish("ps", {"s": s}, s)
            out.append((eid, f"ps.{s}" if s else "ps"))
        return out

    old = await publish_all()
    recorded = await hub.wait_recorded("ps", [e for e, _ in old])
    async with await connect(stream) as ws:
        for i, p in enumerate(patterns):
            await send(ws, {"op": "subscribe", "id": f"p{i}", "events": {"pattern": p, "since": recorded[0]["time"]}})
        await send(ws, {"op": "subscribe", "id": "end", "events": {"pattern": "zz-end"}})
        frames: list[dict[str, Any]] = []
        while sum(f["type"] == "subscribed" for f in frames) < len(patterns) + 1:
            frames.append(await recv(ws))
        await hub.create_topic("zz-end")
        new = await publish_all()
        end = await hub.publish("zz-end", {})
        _, more = await recv_until(ws, lambda f: f.get("type") == "event" and f["event"]["id"] == end)
        frames += more
        # A replaying subscription goes live once history holds its buffered live events: it may finish after `end`.
        expected = {f"p{i}": [e for e, key in old + new if matches(p, key)] for i, p in enumerate(patterns)}
        while any(sum(f.get("sub") == sub for f in frames) < len(ids) for sub, ids in expected.items()):
            frames.append(await recv(ws))
    for i, p in enumerate(patterns):
        got = [f["event"]["id"] for f in frames if f.get("sub") == f"p{i}"]
        assert got == expected[f"p{i}"], f"pattern {p!r}"


async def test_sse_last_event_id_resume(stream, hub):
    await hub.create_topic("sse")
    ids = await hub.publish_batch("sse", [{"data": {"i": i}, "subject": "q"} for i in range(12)])
    await hub.wait_recorded("sse", ids)
    headers = {"Authorization": f"Bearer {token()}", "Last-Event-ID": ids[4]}
    async with (
        httpx.AsyncClient(base_url=stream.base, timeout=30) as http,
        http.stream("GET", "/events/sse.%23", headers=headers) as r,
    ):
        assert r.status_code == 200
        sse = SseReader(r)
        assert (await sse.next_event())["event"] == "subscribed"
        got: list[str] = []
        while len(got) < 7:
            record = await sse.next_event()
            assert record["event"] == "event"
            assert orjson.loads(record["data"])["id"] == record["id"]
            got.append(record["id"])
        assert got == ids[5:]


async def test_history_unavailable_is_a_gap_and_live_goes_on(amqp_url, publisher):
    """No hub answers (it is down): the subscription is live anyway and says where history is missing."""
    running = await start_stream(settings_for(amqp_url, rpc_timeout_s=1.0))
    try:
        async with await connect(running) as ws:
            frame = await subscribe(ws, "s", events={"pattern": "hd.#", "since": "2026-01-01T00:00:00Z"})
            assert frame["type"] == "subscribed"
            frame = await recv(ws)
            assert frame["type"] == "gap" and frame["reason"] == "history_unavailable" and frame["last"] is None
            assert "no reply" in frame["message"]
            live = await publisher.event("hd", "x")
            frame = await recv(ws)
            assert frame["type"] == "event" and frame["event"]["id"] == live["id"]
    finally:
        await running.stop()
