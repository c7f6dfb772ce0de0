"""SIGUSR1 to a service logs where each of its asyncio tasks waits (tributary_common.task_dump)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from tests.common.test_http_server import _config
from tests.support import platform
from tributary_common.http_server import Server
from tributary_common.task_dump import await_chain, dump_tasks


async def parked_inner(event: asyncio.Event) -> None:
    await event.wait()


async def parked_outer(event: asyncio.Event) -> None:
    await parked_inner(event)


async def test_the_chain_names_each_coroutine_down_to_the_future() -> None:
    event = asyncio.Event()
    task = asyncio.create_task(parked_outer(event), name="parked")
    await asyncio.sleep(0)
    chain = await_chain(task)
    assert [line.rsplit(" in ", 1)[-1] for line in chain[:3]] == ["parked_outer", "parked_inner", "Event.wait"]
    assert chain[-1] == "awaits a future"
    assert "1 task(s) parked:" in dump_tasks()
    twins = [asyncio.create_task(parked_outer(event), name=f"twin{i}") for i in range(7)]
    await asyncio.sleep(0)
    assert "8 task(s) parked, twin0, twin1, twin2, twin3 and 3 more:" in dump_tasks()  # one place, one entry
    event.set()
    await asyncio.gather(task, *twins)
    assert await_chain(task) == ["parked_outer (not running)"]


async def test_a_server_logs_every_task_on_sigusr1(caplog: pytest.LogCaptureFixture) -> None:
    server = Server(_config(platform.free_port()), signals="quiet")
    await server.start()
    event = asyncio.Event()
    task = asyncio.create_task(parked_outer(event), name="parked")
    try:
        with caplog.at_level(logging.WARNING, logger="tributary_common.task_dump"):
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(50):
                if "task dump" in caplog.text:
                    break
                await asyncio.sleep(0.02)
        assert "task dump (SIGUSR1)" in caplog.text
        assert "1 task(s) parked:" in caplog.text and "in parked_inner" in caplog.text
    finally:
        event.set()
        await task
        await server.stop()
