"""The rules behind the stream's limits, on their own: the inbound frame rate, the output budget and its close
codes, connection admission. (tests/security/test_stream_limits.py drives the same through real processes.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.stream.support import RunningStream
from tributary_common.auth import Principal
from tributary_stream.clients import FRAME_OVERHEAD, Client, frame_cost
from tributary_stream.frames import WsEncoder
from tributary_stream.limits import Admission, FrameRate, Refused, Verdict
from tributary_stream.metrics import StreamMetrics
from tributary_stream.subscriptions import LIVE, EventsSubscription


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def client(max_bytes: int = 16 * 1024, max_queue: int = 1000) -> Client:
    principal = Principal(subject="u", scopes=frozenset({"events:read"}))
    return Client(principal, WsEncoder(), StreamMetrics(), max_queue=max_queue, max_bytes=max_bytes, slow_timeout_s=30)


def test_frame_rate_drops_over_the_rate_then_closes_a_client_that_keeps_sending() -> None:
    clock = Clock()
    rate = FrameRate(10, 5, clock)
    assert [rate.take() for _ in range(5)] == [Verdict.OK] * 5
    assert rate.take() is Verdict.WARN  # told once
    assert [rate.take() for _ in range(4)] == [Verdict.DROP] * 4
    clock.now += 0.1  # one frame's worth
    assert rate.take() is Verdict.OK
    assert rate.take() is Verdict.CLOSE  # more than burst (5) frames dropped without a pause


def test_frame_rate_forgives_a_client_that_pauses() -> None:
    clock = Clock()
    rate = FrameRate(10, 5, clock)
    for _ in range(9):
        rate.take()
    clock.now += 1.0  # the bucket refills completely: the strikes are forgiven
    assert [rate.take() for _ in range(5)] == [Verdict.OK] * 5
    assert rate.take() is Verdict.WARN


def test_frame_cost_counts_utf8_bytes_and_overhead() -> None:
    assert frame_cost("abc") == 3 + FRAME_OVERHEAD
    assert frame_cost("é") == 2 + FRAME_OVERHEAD


async def test_unread_replies_over_the_budget_close_with_1008() -> None:
    c = client()
    pong = '{"type":"pong","id":"' + "p" * 100 + '"}'
    while not c.closed:
        c.put(pong)
    assert c.kill_code == 1008
    assert not c.queue and c.queued_bytes == 0  # dropped at once


async def test_live_data_stops_at_three_quarters_then_a_gap_over_the_budget_is_a_slow_reader() -> None:
    c = client()
    sub = EventsSubscription(c, "s", "t.#", 100)
    sub.state = LIVE
    event = c.encoder.event(sub, '{"id":"e","time":"t","data":"' + "x" * 1000 + '"}', "e")
    queued = 0
    while sub.client.offer(event, sub):
        queued += 1
    assert c.queued_bytes <= c.data_bytes < c.max_bytes
    assert "s" in c.lagging and not c.closed
    # Replies still fit in the reserve; a data-filled queue that overflows is the reader's slowness: 1013.
    c.put('{"type":"pong","id":"1"}')
    assert not c.closed
    while not c.closed:
        c.put(c.encoder.message("gap", {"sub": "s", "last": None, "reason": "x" * 500}), reply=False)
    assert c.kill_code == 1013


async def test_one_frame_larger_than_the_budget_still_goes_through() -> None:
    c = client()
    sub = EventsSubscription(c, "s", "t.#", 100)
    big = "x" * (c.max_bytes * 2)
    assert c.offer(big, sub)
    assert not c.offer("small", sub)  # behind that one, nothing fits


def test_admission_counts_in_all_and_per_principal() -> None:
    a = Admission(max_total=3, max_per_principal=2)
    t1, t2 = a.enter(), a.enter()
    t1.admit("p")
    t2.admit("p")
    t3 = a.enter()
    with pytest.raises(Refused) as refused:
        t3.admit("p")
    assert refused.value.status == 429 and refused.value.close_code == 1013
    t3.release()
    t3.release()  # once only
    assert a.total == 2
    t4 = a.enter()
    with pytest.raises(Refused) as refused:
        a.enter()
    assert refused.value.status == 503 and refused.value.code == "too_many_connections"
    t1.release()
    t4.admit("p")  # p's slot came back
    assert a.per_principal == {"p": 2}


async def test_api_keys_of_open_streams_are_checked_once_per_key_not_per_connection(
    stream: RunningStream, hub: Any
) -> None:
    """Three sockets on one key, one on another: a round of checks asks the hub twice; a deleted key ends its own."""
    from tests.stream.support import connect, recv, subscribe

    keys = [await hub.ok("POST", "/apikeys", json={"name": f"k{i}", "scopes": ["events:read"]}) for i in range(2)]
    sockets = [await connect(stream, keys[0]["key"]) for _ in range(3)] + [await connect(stream, keys[1]["key"])]
    for i, ws in enumerate(sockets):
        assert (await subscribe(ws, f"s{i}", events={"pattern": "x.#"}))["type"] == "subscribed"
    watch = stream.service.credentials
    await watch.stop()  # no periodic round meanwhile: this test runs the rounds itself
    asked: list[str] = []
    verify = stream.service.hub.verify_api_key

    async def counting(key: str, *, fresh: bool = False) -> Principal | None:
        asked.append(key)
        return await verify(key, fresh=fresh)

    stream.service.hub.verify_api_key = counting  # type: ignore[method-assign]
    await watch.check_keys()
    assert sorted(asked) == sorted(k["key"] for k in keys)
    await hub.ok("DELETE", f"/apikeys/{keys[0]['id']}")
    await watch.check_keys()
    for ws in sockets[:3]:
        frame = await recv(ws)
        assert frame["type"] == "error" and frame["code"] == "credentials_revoked"
        await ws.wait_closed()
        assert ws.close_code == 1008
    await sockets[3].send('{"op": "ping", "id": "still"}')
    assert await recv(sockets[3]) == {"type": "pong", "id": "still"}
    await sockets[3].close()
