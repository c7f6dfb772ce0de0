"""A private RabbitMQ node is restarted under a live stream: the instance queue and every binding come back,
and every subscription gets a `gap` frame covering the outage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.stream.support import connect, recv, recv_until, settings_for, start_stream, subscribe
from tests.support.bus import Bus
from tests.support.polling import eventually
from tests.support.rabbitmq import PrivateRabbit, private_rabbit

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    with private_rabbit("stream") as node:
        yield node


async def test_broker_restart_restores_bindings_and_reports_gap(rabbit):
    running = await start_stream(settings_for(rabbit.url))
    queue = f"tributary.stream.{running.settings.instance_id}"
    expected = ["tributary.events:idle.*", "tributary.events:r.#"]
    try:
        ws = await connect(running)
        await subscribe(ws, "r", events={"pattern": "r.#"})
        await subscribe(ws, "idle", events={"pattern": "idle.*"})
        async with Bus(rabbit.url, collect=False) as pub:
            before = await pub.event("r", "a")
        frame = await recv(ws)
        assert frame["event"]["id"] == before["id"]
        assert await asyncio.to_thread(rabbit.bindings, queue) == expected

        await asyncio.to_thread(rabbit.run, "down")
        await eventually(lambda: not running.service.link.connected, 60, "the stream to notice the outage")
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{running.base}/readyz")
            assert r.status_code == 503 and "broker" in r.json()["checks"]
        await asyncio.to_thread(rabbit.run, "up")

        gaps: dict[str, dict[str, Any]] = {}
        while len(gaps) < 2:
            frame, _ = await recv_until(ws, lambda f: f["type"] == "gap", timeout=90)
            gaps[frame["sub"]] = frame
        assert gaps["r"]["reason"] == "broker_reconnect"
        assert gaps["r"]["last"] == {"id": before["id"], "time": before["time"]}
        assert gaps["idle"]["last"] is None
        outage = gaps["r"]["outage"]
        assert outage["from"] < outage["to"]
        # The queue and both bindings are back, and live delivery resumes.
        assert await asyncio.to_thread(rabbit.bindings, queue) == expected
        async with Bus(rabbit.url, collect=False) as pub:
            after = await pub.event("r", "b")
        frame, others = await recv_until(ws, lambda f: f["type"] == "event")
        assert frame["event"]["id"] == after["id"] and others == []
        await ws.close()
    finally:
        await running.stop()
