"""Deduplication and batching of one sid, with a publish function standing in for the broker adapter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.ingest.helpers import eventually
from tributary_ingest.backoff import Backoff
from tributary_ingest.pipeline import Row, SidPipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_drops_non_increasing_splits_batches_and_retries_in_order() -> None:
    published: list[list[Row]] = []
    drops: list[str] = []
    failures = [2]

    async def publish(sid: str, rows: list[Row]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("broker away")
        published.append(list(rows))

    p = SidPipeline("s1", publish, drops.append, max_size=3, max_delay_s=0.05, max_buffer=6, retry=Backoff(0.01, 0.02))
    p.start()
    assert p.add(T0, 1.0, None)
    assert not p.add(T0, 2.0, None)  # same time
    assert not p.add(T0 - timedelta(seconds=1), 3.0, None)  # earlier
    assert p.add(T0.replace(tzinfo=None) + timedelta(seconds=1), 4, "good")  # naive means UTC
    assert not p.add(T0 + timedelta(seconds=2), float("nan"), None)
    for i in range(3, 6):
        assert p.add(T0 + timedelta(seconds=i), i, None)
    await eventually(lambda: sum(len(b) for b in published) >= 5, 10, "everything published")
    flat = [r for b in published for r in b]
    times = [t for t, _, _ in flat]
    assert times == sorted(set(times)), "strictly increasing across batches"
    assert all(len(b) <= 3 for b in published)
    assert flat[1] == (T0 + timedelta(seconds=1), 4, "good")
    assert drops[:3] == ["not_increasing", "not_increasing", "not_finite"]
    await p.close()


async def test_buffer_limit_and_drain() -> None:
    release = asyncio.Event()
    published: list[list[Row]] = []

    async def slow(sid: str, rows: list[Row]) -> None:
        await release.wait()
        published.append(list(rows))

    drops: list[str] = []
    p = SidPipeline("s2", slow, drops.append, max_size=2, max_delay_s=0.01, max_buffer=4, retry=Backoff(0.01, 0.02))
    p.start()
    accepted = [p.add(T0 + timedelta(seconds=i), i, None) for i in range(6)]
    assert accepted == [True] * 4 + [False] * 2 and drops == ["buffer_full", "buffer_full"]
    release.set()
    await p.drain(timeout=5)
    assert [v for b in published for _, v, _ in b] == [0, 1, 2, 3]
    assert p.published_t == T0 + timedelta(seconds=3)


async def test_drain_waits_for_the_publish_in_flight_instead_of_sending_it_twice() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls: list[list[Row]] = []

    async def slow(sid: str, rows: list[Row]) -> None:
        calls.append(list(rows))
        started.set()
        await release.wait()

    p = SidPipeline("s3", slow, lambda _r: None, max_size=2, max_delay_s=0.01, max_buffer=10, retry=Backoff(0.01, 0.02))
    p.start()
    for i in range(3):
        p.add(T0 + timedelta(seconds=i), i, None)
    await started.wait()  # the first batch is in flight
    draining = asyncio.create_task(p.drain(timeout=10))
    await asyncio.sleep(0.1)
    release.set()
    await draining
    assert [[v for _, v, _ in c] for c in calls] == [[0, 1], [2]]
