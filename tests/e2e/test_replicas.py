"""Replicas side by side: two hub `serve`, two hub `recorder`, two stream and three ingest processes on loopback.

Events published to either hub reach the clients of either stream once (and history once, with two recorders
competing for the queue); catch-up with `since` works from either stream; unitop demand from clients of both
streams keeps one reader per sid (the leases in Memcached and every ingest's /status sampled meanwhile, the
samples' publishers on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.hub_clients import history_ids
from tests.reliability.stream_followers import Follower, figures
from tests.support.bus import bus
from tests.support.lease_watch import LeaseWatch, watching
from tests.support.polling import eventually
from tests.support.replicas import LEASE_TTL_S, Replicas, run_replicas
from tributary_client import HubClient, StreamClient
from tributary_common.cache import Cache
from tributary_common.sid import compute_sid

pytestmark = pytest.mark.timeout(300)

SCHEMA = {"type": "object", "required": ["i"], "properties": {"i": {"type": "integer"}}}
PER_HUB = 60


@pytest.fixture(scope="module")
def rep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with run_replicas(Path(tmp_path_factory.mktemp("replicas"))) as r:
        yield r


@pytest.fixture(scope="module")
def topic(rep: Replicas) -> str:
    name = f"rep-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{rep.http(rep.hubs[0])}/topics",
        json={"name": name, "schema": SCHEMA},
        headers={"Authorization": f"Bearer {rep.token}"},
        timeout=60,  # the local FerretDB is slow under load
    )
    assert r.status_code == 201, r.text
    return name


@contextlib.asynccontextmanager
async def following(followers: list[Follower]) -> Any:
    tasks = [asyncio.create_task(f.run()) for f in followers]
    try:
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), 30)
        yield followers
    finally:
        for f in followers:
            f.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)


async def publish(rep: Replicas, topic: str, hub: int, n: int) -> list[str]:
    """`n` events through one hub, one after the other (so each hub's events have an order to keep)."""
    async with HubClient(rep.http(rep.hubs[hub]), rep.token) as client:
        return [(await client.publish(topic, {"i": i}, subject=f"h{hub}"))["id"] for i in range(n)]


async def test_events_through_either_hub_reach_clients_of_either_stream_once(rep: Replicas, topic: str) -> None:
    followers = [Follower(f"{rep.ws(s)}/ws", rep.token, f"{topic}.#") for s in rep.streams for _ in range(2)]
    async with following(followers):
        sent = await asyncio.gather(*(publish(rep, topic, h, PER_HUB) for h in range(len(rep.hubs))))
        published = [eid for ids in sent for eid in ids]
        await eventually(
            lambda: all(len(set(f.ids)) >= len(published) for f in followers), 60, "every event at every client"
        )
        await asyncio.sleep(1.0)  # time for a duplicate to show up
    for f in followers:
        assert not f.errors and f.gaps == 0, (f.errors, f.gaps)
        found = figures([f], published)
        assert (found.lost, found.duplicated) == (0, 0), found
        for ids in sent:  # each hub's events in the order it published them
            assert [e for e in f.ids if e in set(ids)] == ids
    # Two recorders compete for the recorder queue: history holds each event once, whichever hub is asked.
    for hub in rep.hubs:
        async with httpx.AsyncClient(base_url=rep.http(hub), headers={"Authorization": f"Bearer {rep.token}"}) as http:

            async def recorded(http: httpx.AsyncClient = http) -> list[str]:
                ids = await history_ids(http, topic)
                return ids if len(set(ids)) >= len(published) else []

            ids = await eventually(recorded, 30, "every event in history")
        assert sorted(ids) == sorted(published), f"{len(ids)} in history, {len(set(ids))} distinct"
    print(
        f"\nreplicas: {len(published)} events through {len(rep.hubs)} hubs reached {len(followers)} clients of "
        f"{len(rep.streams)} streams once each, in each hub's order; history holds each once "
        f"({len(rep.recorders)} recorders)"
    )


async def test_catch_up_with_since_from_either_stream(rep: Replicas, topic: str) -> None:
    async with httpx.AsyncClient(base_url=rep.http(rep.hubs[1]), headers={"Authorization": f"Bearer {rep.token}"}) as h:
        history = await eventually(lambda: history_ids(h, topic), 30, "the first test's events in history")
    assert len(history) >= 2 * PER_HUB
    middle = history[len(history) // 2]
    for stream in rep.streams:
        client = StreamClient(rep.ws(stream), rep.token)
        # From a time before everything, then from an event id: history in its order, then live.
        for since, expected in (("2000-01-01T00:00:00Z", history), (middle, history[len(history) // 2 + 1 :])):
            got = await asyncio.wait_for(first_events(client, f"{topic}.#", since, len(expected)), 30)
            assert got == expected, f"{stream.env['TRIBUTARY_INSTANCE_ID']} since {since}"
    # Caught up, then live: an event through the other hub arrives after the replay, once.
    client = StreamClient(rep.ws(rep.streams[1]), rep.token)
    reading = asyncio.create_task(first_events(client, f"{topic}.#", middle, len(history) // 2))
    await asyncio.sleep(1.0)  # subscribed and replayed by now (the order is the same either way)
    tail = history[len(history) // 2 + 1 :]
    (new,) = await publish(rep, topic, 0, 1)
    got = await asyncio.wait_for(reading, 30)
    assert got == [*tail, new]


async def first_events(client: StreamClient, pattern: str, since: str, n: int) -> list[str]:
    ids: list[str] = []
    sub = client.events(pattern, since=since)
    async for frame in sub:
        if frame["type"] == "event":
            ids.append(frame["event"]["id"])
            if len(ids) >= n:
                sub.close()
                break
    return ids


async def test_unitop_demand_from_both_streams_keeps_one_reader_per_sid(rep: Replicas) -> None:
    name = f"rep-{uuid.uuid4().hex[:6]}"
    params: dict[str, dict[str, Any]] = {f"i{n}": {"signal": "sine", "rate_hz": 5.0, "seed": n} for n in range(1, 10)}
    items = {item: {"source": "simulator", "params": p} for item, p in params.items()}
    sids = sorted(compute_sid("simulator", p) for p in params.values())
    async with HubClient(rep.http(rep.hubs[0]), rep.token) as hub:

        async def announced() -> bool:
            return any(s["name"] == "simulator" and len(s["instances"]) == 3 for s in await hub.sources())

        await eventually(announced, 30, "three ingest instances announcing the simulator", interval=0.2)
        await hub.create_unitop({"name": name, "items": items})

    frames: dict[str, list[dict[str, Any]]] = {s.env["TRIBUTARY_INSTANCE_ID"]: [] for s in rep.streams}

    async def read(stream: Any) -> None:
        async for frame in StreamClient(rep.ws(stream), rep.token).unitop(name):
            frames[stream.env["TRIBUTARY_INSTANCE_ID"]].append(frame)

    cache = Cache("127.0.0.1", int(rep.env["TRIBUTARY_MEMCACHED_PORT"]), rep.env["TRIBUTARY_CACHE_NAMESPACE"])
    watch = LeaseWatch(cache, "simulator", sids, lambda: rep.ingests)
    readers = [asyncio.create_task(read(s)) for s in rep.streams]
    try:
        async with bus(rep.env["TRIBUTARY_AMQP_URL"]) as wire, watching(watch):

            async def balanced() -> bool:
                shares = await watch.shares()
                # Fair share +-1: within that band nobody sheds, so the window below sees no handover.
                return (
                    sum(shares.values()) == len(sids) and len(shares) == 3 and all(2 <= n <= 4 for n in shares.values())
                )

            try:
                await eventually(balanced, 30, "9 sids leased, 3 +-1 by each ingest instance")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {await watch.holders()}") from None
            start = time.monotonic()
            await asyncio.sleep(2 * LEASE_TTL_S)  # a steady window, watched
            held = await watch.holders()
            window = wire.by_sid(start + 0.5)  # batches in flight at the start belong to before
    finally:
        for t in readers:
            t.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await cache.close()

    print(
        f"\nreplicas: {len(sids)} sids demanded by clients of {len(rep.streams)} streams, leases "
        f"{dict(sorted(Counter(held.values()).items()))}; {len(watch.polls)} status polls and {len(watch.held)} Memcached "
        f"samples, two readers at once: {len(watch.double_readers())}"
    )
    assert not watch.double_readers(), watch.double_readers()[:5]
    assert sorted(held) == sids
    for sid in sids:
        assert {r.app_id for r in window[sid]} == {held[sid]}, f"{sid}: published by {[r.app_id for r in window[sid]]}"
    wire.assert_strictly_increasing()
    for stream, got in frames.items():
        seen = {f["sid"] for f in got if f["type"] == "samples"}
        assert seen == set(sids), f"{stream} got samples of {len(seen)} sids"
        times: dict[str, list[str]] = {}
        for f in got:
            if f["type"] == "samples":
                times.setdefault(f["sid"], []).extend(s["t"] for s in f["samples"])
        assert all(len(set(ts)) == len(ts) for ts in times.values()), f"{stream}: a sample twice"
    # Each ingest instance sees the demand of both streams (and of nobody else: the unitop is not recorded).
    async with httpx.AsyncClient() as http:
        for p in rep.ingests:
            body = (await http.get(f"{rep.http(p)}/status")).json()["sources"]["simulator"]
            assert body["demanded"] == len(sids), body
