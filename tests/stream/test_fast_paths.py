"""The stream's fast paths keep the slow paths' order and wake-ups: frames written at once by a client's sink,
one event frame shared by the subscriptions with the same id, and the lean Event and Queue of a websocket."""

from __future__ import annotations

import asyncio

from tributary_common.auth import Principal
from tributary_stream.clients import Client
from tributary_stream.frames import WsEncoder
from tributary_stream.metrics import StreamMetrics
from tributary_stream.subscriptions import LIVE, EventsSubscription
from tributary_stream.waiters import Flag, Inbox


def client(encoder: WsEncoder | None = None) -> Client:
    principal = Principal(subject="u", scopes=frozenset({"events:read"}))
    return Client(
        principal, encoder or WsEncoder(), StreamMetrics(), max_queue=100, max_bytes=1 << 20, slow_timeout_s=30
    )


async def test_the_sink_takes_a_frame_only_when_nothing_is_queued_or_in_the_writers_hands() -> None:
    c = client()
    written: list[str] = []
    open_ = True

    def sink(frame: str) -> bool:
        if open_:
            written.append(frame)
        return open_

    c.sink = sink
    c.put("a")
    assert written == ["a"] and not c.queue
    open_ = False  # the transport is paused: frames queue for the writer
    c.put("b")
    open_ = True
    c.put("c")  # behind "b": queued, not written ahead of it
    assert written == ["a"] and [f for f, _, _ in c.queue] == ["b", "c"]
    assert await c.next_frame() == "b"
    c.put("d")  # "b" is still being sent by the writer
    assert written == ["a"]
    assert await c.next_frame() == "c"
    assert await c.next_frame() == "d"
    writer = asyncio.create_task(c.next_frame())
    await asyncio.sleep(0)  # the writer asked for the next frame: nothing is in its hands
    c.put("e")
    assert written == ["a", "e"] and not writer.done()
    c.finish(1000)
    assert await writer is None


async def test_a_waiting_writer_wakes_for_a_queued_frame() -> None:
    c = client()
    writer = asyncio.create_task(c.next_frame())
    await asyncio.sleep(0)
    c.put("x")
    assert await asyncio.wait_for(writer, 1) == "x"
    assert await c.next_frame(timeout=0.01) is None


def test_one_event_frame_serves_every_subscription_with_the_same_id() -> None:
    encoder = WsEncoder()
    subs = [EventsSubscription(client(encoder), sid, "a.#", 10) for sid in ("s", "s", "t")]
    for sub in subs:
        sub.state = LIVE
    envelope = '{"id":"1"}'
    frames = [encoder.event(sub, envelope, "1") for sub in subs]
    assert frames[0] is frames[1]
    assert frames[0] == '{"type":"event","sub":"s","event":{"id":"1"}}'
    assert frames[2] == '{"type":"event","sub":"t","event":{"id":"1"}}'
    other = '{"id":"2"}'
    assert encoder.event(subs[0], other, "2") == '{"type":"event","sub":"s","event":{"id":"2"}}'


async def test_flag_and_inbox_wake_their_waiters_like_asyncio() -> None:
    flag = Flag()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()  # one waiter gone does not lose the others' wake-up
    flag.set()
    assert await asyncio.gather(*waiters[1:]) == [True, True]
    flag.clear()
    assert not flag.is_set()

    inbox: Inbox[int] = Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert inbox.empty()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert await getter == 1
    assert inbox.qsize() == 1 and await inbox.get() == 2 and inbox.empty()
