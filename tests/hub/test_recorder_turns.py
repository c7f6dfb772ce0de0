"""A recorder gives the event loop a turn while it converts and places a large batch: when the recorders run in the
hub's process (the default), the API's requests wait for every stretch it runs without one
(`bench/recorder_receive.py` measures how long; bench/README.md). These tests count the turns another task gets
while a batch goes through steps that never wait on anything: without the turns it gets none. (The events
recorder's block packing gives a turn after each block too; the storage tests cover what it writes.)"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from pymongo import AsyncMongoClient

from tributary_common.amqp import HUB_RECORDER_SAMPLES
from tributary_hub import event_store, recorder
from tributary_hub.event_store import EventStore
from tributary_hub.partitions import Layout, Partitions
from tributary_hub.recorder import Recorder
from tributary_hub.sample_buckets import day_id, hour_field, to_us
from tributary_hub.sample_store import SampleStore
from tributary_hub.sample_summaries import minute_rows
from tributary_hub.sample_writes import write_day
from tributary_hub.series import HOUR_US, Point


@dataclass
class Message:
    body: bytes
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = None


@asynccontextmanager
async def turns_counted() -> AsyncIterator[list[int]]:
    """[n]: how many turns a task that only ever yields got meanwhile."""
    count = [0]
    running = asyncio.Event()

    async def other() -> None:
        running.set()
        while True:
            count[0] += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await running.wait()
    start = count[0]
    try:
        yield count
    finally:
        task.cancel()
        count[0] -= start


async def test_converting_a_batch_gives_the_loop_turns() -> None:
    async def to_docs(message: Any) -> list[dict[str, Any]]:
        # Never waits, like the real converters; works 1 ms (a batch of a thousand samples takes about that).
        done = time.perf_counter() + 0.001
        while time.perf_counter() < done:
            pass
        return [{"n": int(message.body)}]

    rec = Recorder(
        "samples", HUB_RECORDER_SAMPLES, None, to_docs,
        batch_size=1000, max_delay_ms=10, prefetch=1000, retry_min_s=0.1, retry_max_s=0.1,
    )  # fmt: skip
    batch = [Message(str(n).encode()) for n in range(30)]
    async with turns_counted() as turns:
        rows, refused = await rec._convert(cast(Any, batch))
    assert [docs[0]["n"] for _, docs in rows] == list(range(len(batch))) and refused == []
    # 30 ms or more in one go without turns; with them, one after every TURN_S (2 ms) at the latest
    assert turns[0] >= 30 * 0.001 / (recorder.TURN_S + 0.001) - 1


async def test_placing_a_batch_gives_the_loop_turns() -> None:
    """The placing step alone: no topic exists (the generations read answered at once, with none), so every event
    is an orphan and nothing is written."""
    store = EventStore(Partitions(cast(Any, None), Layout.PACKED), cast(Any, None))

    async def no_generations(names: set[str]) -> dict[str, tuple[str, int]]:
        return {}

    store.generations = no_generations  # type: ignore[method-assign]
    docs = [{"type": "gone", "eid": str(n), "time": "2026-12-01T00:00:00.000000Z"} for n in range(2000)]
    async with turns_counted() as turns:
        outcome = await store.write(docs)
    assert outcome.orphans == list(range(2000))
    assert turns[0] >= 2000 // event_store.TURN_EVERY - 1


async def test_a_days_summaries_give_the_loop_a_turn_between_hours(
    mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    """Each hour's summaries take milliseconds: a day's computed in one go held the loop for tens of them. The
    summaries of every hour start in a later turn of the loop than the previous hour's."""
    store = SampleStore(mongo_client[mongo_db_name], Layout.PARTITIONED)
    day = to_us(datetime(2026, 12, 1, tzinfo=UTC))
    hours = {day + h * HOUR_US: (1, [Point(day + h * HOUR_US, float(h), None)]) for h in range(24)}
    seen: list[int] = []
    async with turns_counted() as turns:

        def summarise(points: Sequence[Point], hour: int) -> bytes:
            seen.append(turns[0])
            return minute_rows(points, hour)

        await write_day(store, "sum", "s1", day, hours, summarise)
    assert len(seen) == 24
    assert all(later > earlier for earlier, later in itertools.pairwise(seen)), seen
    doc = await store.collection(store.partitions.holding("sum", "s1", day)).find_one({"_id": day_id("s1", day)})
    assert doc is not None and all(doc[hour_field(h)]["v"] == 1 for h in hours)
