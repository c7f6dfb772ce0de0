"""Streamed answers (JSON, JSON Lines, CSV): whole and in order, and never holding the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from tributary_hub.exports import export, json_items

Row = dict[str, Any]


async def listed(rows: list[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


async def endless() -> AsyncIterator[Row]:
    """Rows computed from memory, as an interpolated grid's are: nothing in here ever waits."""
    t = 0
    while True:
        yield {"t": t}
        t += 1


async def joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest.mark.parametrize("count", [0, 1, 2, 499, 500, 501, 1_234])
async def test_a_json_answer_holds_every_row_in_order(count: int) -> None:
    rows = [{"t": i, "v": f"x{i}"} for i in range(count)]
    assert orjson.loads(await joined(json_items(listed(rows)))) == {"items": rows, "next": None}
    assert orjson.loads(await joined(json_items(listed(rows), chunk_rows=7))) == {"items": rows, "next": None}


async def test_a_json_answer_is_written_in_chunks_not_row_by_row() -> None:
    chunks = [c async for c in json_items(listed([{"t": i} for i in range(1_000)]), chunk_rows=250)]
    assert len(chunks) == 2 + 4  # the opening, four chunks of 250 rows, the closing


StreamOf = Callable[[AsyncIterator[Row]], AsyncIterator[bytes]]
STREAMS: dict[str, StreamOf] = {
    "json": lambda rows: json_items(rows, chunk_rows=10),
    "ndjson": lambda rows: export("ndjson", rows, 10, ["t"], lambda r: [r["t"]]),
    "csv": lambda rows: export("csv", rows, 10, ["t"], lambda r: [r["t"]]),
}


@pytest.mark.parametrize("fmt", list(STREAMS))
async def test_a_streamed_answer_gives_the_event_loop_a_turn_per_chunk(fmt: str) -> None:
    """Without a turn, an answer computed from memory kept the process to itself until its last row: nobody else
    was answered, and the cancel sent when its client went away never reached it (a grid that never ended held
    the hub for good)."""
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    try:
        chunks = STREAMS[fmt](endless())
        for _ in range(50):
            await anext(chunks)
        assert turns >= 40, turns
    finally:
        other.cancel()


async def test_a_streamed_answer_stops_where_it_is_cancelled() -> None:
    """What Starlette does when the client disconnects: cancel the task writing the answer."""
    written = 0

    async def write() -> None:
        nonlocal written
        async for _ in json_items(endless(), chunk_rows=10):
            written += 1

    task = asyncio.create_task(write())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1)
    assert written > 0
