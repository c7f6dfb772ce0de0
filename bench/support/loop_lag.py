"""How late the event loop runs a 1 ms timer while a measured part runs: what every other task of the process
waits for (the API's requests, when the recorders run in the hub's process).

    async with loop_lateness() as lags:
        ...  # the measured part
    print(describe(lags))   # sorted once the block ends
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

TICK_S = 0.001


@asynccontextmanager
async def loop_lateness() -> AsyncIterator[list[float]]:
    """How late each tick fired (s), sorted when the block ends."""
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - start - TICK_S)

    tick = asyncio.create_task(ticker())
    try:
        yield lags
    finally:
        tick.cancel()
        lags.sort()


def describe(lags: list[float]) -> str:
    if not lags:
        return "no tick"
    return f"p99 {lags[int(len(lags) * 0.99)] * 1e3:.1f} ms, max {lags[-1] * 1e3:.1f} ms"
