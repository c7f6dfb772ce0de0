"""Live fan-out against the real broker: overlapping patterns, reference-counted bindings, matcher semantics,
and backpressure (a slow client gets a `gap`, a fast one keeps receiving)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stream.support import (
    collect_events,
    connect,
    recv,
    recv_until,
    send,
    settings_for,
    start_stream,
    subscribe,
)
from tests.support import platform
from tests.support.polling import eventually
from tributary_common.matcher import matches


def _instance_bindings(vhost: str, stream, exchange: str = "tributary.events") -> list[str]:
    queue = f"tributary.stream.{stream.settings.instance_id}"
    return sorted(str(b["routing_key"]) for b in platform.bindings(vhost, exchange) if b["destination"] == queue)


async def _bindings_eventually(vhost, stream, expected: list[str]) -> None:
    async def bound() -> bool:
        return await asyncio.to_thread(_instance_bindings, vhost, stream) == sorted(expected)

    await eventually(bound, 10, f"the bindings {sorted(expected)}")


async def _drain_until_sentinel(ws, sentinel_id: str) -> list[dict[str, Any]]:
    _, before = await recv_until(ws, lambda f: f.get("type") == "event" and f["event"]["id"] == sentinel_id)
    return before


async def test_two_clients_on_overlapping_patterns(stream, publisher, vhost):
    a, b = await connect(stream), await connect(stream)
    subs = {"a1": (a, "orders.#"), "a2": (a, "#.x"), "b1": (b, "orders.eu.*"), "b2": (b, "orders.#")}
    for sub_id, (ws, pattern) in subs.items():
        assert (await subscribe(ws, sub_id, events={"pattern": pattern}))["type"] == "subscribed"
    await subscribe(a, "end", events={"pattern": "end"})
    await subscribe(b, "end", events={"pattern": "end"})
    # One queue for the instance; `orders.#` is bound once although two clients want it.
    queue = platform.queue_info(vhost, f"tributary.stream.{stream.settings.instance_id}")
    assert queue is not None and queue["exclusive"] is True and queue["auto_delete"] is True
    await _bindings_eventually(vhost, stream, ["#.x", "end", "orders.#", "orders.eu.*"])

    keys = ["orders", "orders.eu.x", "orders.eu.y", "orders.us.x", "alarms.x", "orders.eu.x.y", "alarms"]
    sent = []
    for key in keys:
        topic, _, subject = key.partition(".")
        sent.append(await publisher.event(topic, subject or None))
    end = await publisher.event("end")
    for ws in (a, b):
        frames = await _drain_until_sentinel(ws, end["id"])
        assert all(f["type"] == "event" for f in frames), frames
        for sub_id, (sub_ws, pattern) in subs.items():
            if sub_ws is not ws:
                continue
            got = [f["event"]["id"] for f in frames if f["sub"] == sub_id]
            expected = [e["id"] for k, e in zip(keys, sent, strict=True) if matches(pattern, k)]
            assert got == expected, (sub_id, pattern)
    await a.close()
    await _bindings_eventually(vhost, stream, ["end", "orders.#", "orders.eu.*"])
    await b.close()
    await _bindings_eventually(vhost, stream, [])


async def test_many_clients_on_one_pattern_make_one_binding(stream, publisher, vhost):
    clients = [await connect(stream) for _ in range(40)]
    for i, ws in enumerate(clients):
        await send(ws, {"op": "subscribe", "id": f"c{i}", "events": {"pattern": "metrics.*"}})
    for ws in clients:
        await recv_until(ws, lambda f: f["type"] == "subscribed")
    await _bindings_eventually(vhost, stream, ["metrics.*"])
    sent = await publisher.event("metrics", "cpu", {"v": 1})
    for i, ws in enumerate(clients):
        frame = await recv(ws)
        assert frame == {"type": "event", "sub": f"c{i}", "event": sent}
    for ws in clients[:-1]:
        await ws.close()
    await asyncio.sleep(0.3)
    await _bindings_eventually(vhost, stream, ["metrics.*"])  # the last client still holds it
    await clients[-1].close()
    await _bindings_eventually(vhost, stream, [])


SEGS = ["a", "b", "c"]
pattern_st = st.lists(st.sampled_from([*SEGS, "*", "#"]), min_size=1, max_size=4).map(".".join)
key_st = st.lists(st.sampled_from(SEGS), min_size=1, max_size=4).map(".".join)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patterns=st.lists(pattern_st, min_size=1, max_size=6, unique=True),
    keys=st.lists(key_st, min_size=1, max_size=20),
)
async def test_delivery_follows_the_shared_matcher(stream, publisher, patterns, keys):
    """What a subscription receives is exactly what tributary_common.matcher.matches predicts."""
    run = uuid.uuid4().hex[:6]
    async with await connect(stream) as ws:
        for i, p in enumerate(patterns):
            assert (await subscribe(ws, f"{run}-{i}", events={"pattern": p}))["type"] == "subscribed"
        await subscribe(ws, f"{run}-end", events={"pattern": "zend"})
        sent = []
        for key in keys:
            topic, _, subject = key.partition(".")
            sent.append(await publisher.event(topic, subject or None))
        end = await publisher.event("zend")
        frames = await _drain_until_sentinel(ws, end["id"])
    for i, p in enumerate(patterns):
        got = [f["event"]["id"] for f in frames if f["sub"] == f"{run}-{i}"]
        expected = [e["id"] for k, e in zip(keys, sent, strict=True) if matches(p, k)]
        assert got == expected, f"pattern {p!r}"


async def test_slow_client_gets_gap_while_fast_client_keeps_receiving(amqp_url, publisher):
    # Room for 150 frames: the fast client has slack on a busy machine; the slow one fills it anyway.
    running = await start_stream(settings_for(amqp_url, send_queue_max=150))
    try:
        fast = await connect(running, max_size=None)
        # The slow client reads nothing: its socket buffers fill, then its send queue.
        slow = await connect(running, max_queue=1, max_size=None)
        await subscribe(fast, "f", events={"pattern": "bulk.#"})
        await subscribe(slow, "s", events={"pattern": "bulk.#"})
        blob = "x" * 64 * 1024
        total = 500
        reading = asyncio.create_task(collect_events(fast, "f", total, timeout=90))
        sent = [await publisher.event("bulk", f"n{i}", {"blob": blob, "i": i}) for i in range(total)]
        got = await reading
        assert [e["id"] for e in got] == [e["id"] for e in sent]

        # Now the slow client reads: some events in order, then a gap naming the last one it was sent.
        seen: list[str] = []
        while True:
            frame = await recv(slow, 30)
            if frame["type"] == "gap":
                break
            assert frame["type"] == "event"
            seen.append(frame["event"]["id"])
        assert frame["sub"] == "s" and frame["reason"] == "slow_client"
        assert 0 < len(seen) < total
        assert seen == [e["id"] for e in sent[: len(seen)]]
        assert frame["last"]["id"] == seen[-1]
        assert frame["last"]["time"] == sent[len(seen) - 1]["time"]
        # After the gap the slow client is live again.
        after = await publisher.event("bulk", "after")
        frame, _ = await recv_until(slow, lambda f: f.get("type") == "event" and f["event"]["id"] == after["id"])
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{running.base}/metrics")).text
        assert 'tributary_stream_gaps_total{reason="slow_client"} 1.0' in metrics
        await fast.close()
        await slow.close()
    finally:
        await running.stop()


async def test_stuck_client_is_dropped_and_others_unaffected(amqp_url, publisher):
    running = await start_stream(settings_for(amqp_url, send_queue_max=200, slow_client_timeout_s=5.0))
    try:
        fast = await connect(running, max_size=None)
        stuck = await connect(running, max_queue=1, max_size=None)
        await subscribe(fast, "f", events={"pattern": "flood.#"})
        await subscribe(stuck, "s", events={"pattern": "flood.#"})
        blob = "y" * 64 * 1024
        fast_frames: list[dict[str, Any]] = []
        stop_reading = asyncio.Event()

        async def read_fast() -> None:
            # It keeps reading; on a loaded machine it may itself fall behind now and then (a gap is fine here).
            # Stopped by a flag, not by cancel: a cancel landing as a frame arrives is lost inside wait_for (3.11),
            # and the reader then waited for frames that no longer came.
            while not stop_reading.is_set():
                with contextlib.suppress(TimeoutError):
                    fast_frames.append(await recv(fast, 1))

        reading = asyncio.create_task(read_fast())
        n = 0

        # Keep traffic flowing until the server gives up on the client that never reads.
        def stuck_connected() -> bool:
            return any("s" in c.subs for c in running.service.fanout.clients)

        while stuck_connected():
            await publisher.event("flood", f"n{n}", {"blob": blob})
            n += 1
            if n % 50 == 0:
                await asyncio.sleep(0.2)
            state = [(list(c.subs), len(c.queue), c.kill_code) for c in running.service.fanout.clients]
            assert n < 3000, f"the stuck client was never dropped: {state}, fast reader done: {reading.done()}"
        stop_reading.set()
        await asyncio.wait_for(reading, 30)
        assert fast_frames and all(f["sub"] == "f" for f in fast_frames)
        end = await publisher.event("flood", "end")
        frame, _ = await recv_until(fast, lambda f: f.get("type") == "event" and f["event"]["id"] == end["id"], 60)
        assert frame["sub"] == "f"
        assert len(running.service.fanout.clients) == 1  # the fast client is still there
        await fast.close()
        await stuck.close()
    finally:
        await running.stop()
