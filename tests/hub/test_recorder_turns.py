"""A recorder gives the event loop a turn while it converts and places a large batch: when the recorders run in the
hub's process (the default), the API's requests wait for every stretch it runs without one
(`bench/recorder_receive.py` measures how long; bench/README.md). These tests count the turns another task gets
while a batch goes through steps that never wait on anything: without the turns it gets none."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from tributary_common.amqp import HUB_RECORDER_SAMPLES
from tributary_hub import event_store, recorder
from tributary_hub.event_store import EventStore
from tributary_hub.partitions import Layout, Partitions
from tributary_hub.recorder import Recorder


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

    async def no_generations(names: set[str]) -> dict[str, str]:
        return {}

    store.generations = no_generations  # type: ignore[method-assign]
    docs = [{"type": "gone", "eid": str(n), "time": "2026-12-01T00:00:00.000000Z"} for n in range(2000)]
    async with turns_counted() as turns:
        outcome = await store.write(docs)
    assert outcome.orphans == list(range(2000))
    assert turns[0] >= 2000 // event_store.TURN_EVERY - 1
