"""cancel_and_wait: a cancelled task's end is not an error; what else it raises on the way out is."""

from __future__ import annotations

import asyncio

import pytest

from tributary_common.tasks import cancel_and_wait


async def test_a_running_task_is_cancelled_and_awaited() -> None:
    cleaned = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned.is_set()
    await cancel_and_wait(task)  # again: nothing happens
    await cancel_and_wait(None)


async def test_an_error_raised_while_stopping_is_not_swallowed() -> None:
    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)
