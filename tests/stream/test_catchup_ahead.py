"""History ahead of the live feed (pure logic, no services: the hub's pages and the broker's messages are handed to
the fan-out as its adapters would). On a busy instance the recorder can have stored events that this instance's
consumer has not delivered yet: the replay sends them from history, then their live copies arrive after it went
live. They must not be sent again (R5 saw every client get ~150 events twice, out of order, under load)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import orjson

from tributary_common.amqp import EVENTS
from tributary_common.auth import Principal
from tributary_common.timeutil import format_time, utcnow
from tributary_stream.clients import Client
from tributary_stream.fanout import Fanout
from tributary_stream.frames import WsEncoder
from tributary_stream.metrics import StreamMetrics
from tributary_stream.protocol import EventsSince, SubscribeEvents
from tributary_stream.settings import StreamSettings
from tributary_stream.subscriptions import LIVE, EventsSubscription

TOPIC = "t"


class Bindings:
    async def acquire(self, exchange: str, key: str, timeout: float = 10.0) -> None:
        return None

    def release(self, exchange: str, key: str) -> None:
        return None


class Hub:
    """History as the recorder has stored it: everything after the id asked for, in one page."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    async def events_page_raw(
        self, pattern: str, *, since: datetime | None, after_id: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        ids = [e["id"] for e in self.events]
        start = ids.index(after_id) + 1 if after_id in ids else 0
        return self.events[start : start + limit], None


def event(n: int, t: str, topic: str = TOPIC, eid: str | None = None) -> dict[str, Any]:
    eid = eid or f"e{n:04d}"
    return {"specversion": "1.0", "id": eid, "source": "/s", "type": topic, "time": t, "data": {"n": n}}


def key(e: dict[str, Any]) -> str:
    return f"{e['type']}/{e['id']}"


def setup(stored: list[dict[str, Any]], replay_settle_s: float = 0.0) -> tuple[Fanout, Client]:
    settings = StreamSettings(dev_mode=True, replay_settle_s=replay_settle_s)
    fanout = Fanout(settings, Bindings(), Hub(stored), StreamMetrics())  # type: ignore[arg-type]
    principal = Principal(subject="u", scopes=frozenset({"events:read"}))
    client = Client(principal, WsEncoder(), StreamMetrics(), max_queue=10_000, max_bytes=1 << 24, slow_timeout_s=30)
    fanout.add_client(client)
    return fanout, client


def live(fanout: Fanout, e: dict[str, Any]) -> None:
    fanout.on_message(EVENTS.name, e["type"], orjson.dumps(e), {})


def sent(client: Client) -> list[str]:
    frames = [orjson.loads(f) for f, _, _ in client.queue]
    return [key(f["event"]) for f in frames if f.get("type") == "event"]


def subscription(client: Client) -> EventsSubscription:
    sub = client.subs["s"]
    assert isinstance(sub, EventsSubscription)
    return sub


async def subscribed(fanout: Fanout, client: Client, after: str, pattern: str = f"{TOPIC}.#") -> None:
    """Subscribed with `since` = `after`, replayed, and live."""
    assert fanout.subscribe_events(client, SubscribeEvents("s", pattern, EventsSince(after_id=after)))
    sub = subscription(client)
    for _ in range(500):
        if sub.state == LIVE:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the subscription did not go live")


async def test_live_copies_of_what_the_replay_sent_are_not_sent_again() -> None:
    t = format_time(utcnow())
    events = [event(n, t) for n in range(1, 101)]  # one batch: the same time, as the hub's batch publish gives
    fanout, client = setup(events)
    # The client saw e0010 before it reconnected; the live feed has delivered only e0041..e0050 to the new
    # subscription when the replay starts, while history already holds e0011..e0100.
    sub_started = asyncio.create_task(subscribed(fanout, client, "e0010"))
    await asyncio.sleep(0)  # bound and buffering
    for e in events[40:50]:
        live(fanout, e)
    await sub_started
    for e in events[50:]:  # the live feed catches up after the replay went live
        live(fanout, e)
    assert sent(client) == [key(e) for e in events[10:]]
    later = event(101, format_time(utcnow()))
    live(fanout, later)  # past what history held: sent live
    assert sent(client)[-1] == "t/e0101"
    # Each replayed id comes live once at most: those that came are let go (the rest at the end of the margin).
    replayed = subscription(client).replayed
    assert replayed is not None and not replayed & {(e["type"], e["id"]) for e in events[50:]}


async def test_live_events_history_did_not_hold_are_sent() -> None:
    t = format_time(utcnow())
    events = [event(n, t) for n in range(1, 31)]
    fanout, client = setup(events[:20])  # the recorder has stored up to e0020
    sub_started = asyncio.create_task(subscribed(fanout, client, "e0005"))
    await asyncio.sleep(0)
    for e in events[10:12]:
        live(fanout, e)
    await sub_started
    for e in events[12:]:
        live(fanout, e)
    assert sent(client) == [key(e) for e in events[5:]]


async def test_replayed_ids_are_forgotten_after_the_seam_margin() -> None:
    t = format_time(utcnow())
    events = [event(n, t) for n in range(1, 11)]
    fanout, client = setup(events)
    sub_started = asyncio.create_task(subscribed(fanout, client, "e0002"))
    await asyncio.sleep(0)
    live(fanout, events[2])
    await sub_started
    sub = subscription(client)
    assert sub.replayed is not None
    sub.replayed_until = 0.0  # the margin has passed: a copy arriving now is the publisher's repeat, sent live
    live(fanout, events[5])
    assert sent(client) == [key(e) for e in events[2:]] + ["t/e0006"]
    assert sub.replayed is None


async def test_the_same_id_in_two_topics_is_two_events_in_the_replay_at_the_seam_and_live() -> None:
    # Ids are unique per topic only: client-given ids such as sequence numbers repeat across topics.
    t = format_time(utcnow())
    a0, c2, a1, b1, a2 = (
        event(n, t, topic, eid)
        for n, (topic, eid) in enumerate([("a", "x0"), ("c", "x2"), ("a", "x1"), ("b", "x1"), ("a", "x2")])
    )
    fanout, client = setup([a0, c2, a1, b1, a2])
    sub_started = asyncio.create_task(subscribed(fanout, client, "x0", pattern="#"))
    await asyncio.sleep(0)
    live(fanout, c2)  # the live feed's first: history holds it and more
    await sub_started
    for e in (a1, b1, a2):  # the feed catches up: all sent by the replay already
        live(fanout, e)
    b2 = event(5, t, "b", "x2")
    live(fanout, b2)  # another topic's x2: new
    assert sent(client) == ["c/x2", "a/x1", "b/x1", "a/x2", "b/x2"]


async def test_nothing_is_kept_once_the_feed_has_passed_what_history_sent() -> None:
    t = format_time(utcnow())
    events = [event(n, t) for n in range(1, 31)]
    fanout, client = setup(events[:20])
    sub_started = asyncio.create_task(subscribed(fanout, client, "e0005"))
    await asyncio.sleep(0)
    for e in events[10:25]:  # the feed is ahead of the recorder: it brought e0020, history's last
        live(fanout, e)
    await sub_started
    assert subscription(client).replayed is None
    assert sent(client) == [key(e) for e in events[5:25]]


async def test_what_the_feed_delivered_before_the_subscription_existed_is_not_kept() -> None:
    now = utcnow()
    old = [event(n, format_time(now - timedelta(seconds=30))) for n in range(1, 11)]
    new = [event(n, format_time(now)) for n in range(11, 21)]
    fanout, client = setup(old + new)
    sub_started = asyncio.create_task(subscribed(fanout, client, "e0001"))
    await asyncio.sleep(0)
    live(fanout, new[3])  # the feed's first for this subscription: e0014
    await sub_started
    replayed = subscription(client).replayed
    assert replayed == {(e["type"], e["id"]) for e in new if e is not new[3]}
