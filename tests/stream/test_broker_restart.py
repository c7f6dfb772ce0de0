"""A private RabbitMQ node is restarted under a live stream: the instance queue and every binding come back,
and every subscription gets a `gap` frame covering the outage."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stream.support import Publisher, connect, recv, recv_until, settings_for, start_stream, subscribe
from tests.support import platform
from tests.support.processes import ROOT

pytestmark = pytest.mark.timeout(240)


@dataclass
class PrivateRabbit:
    port: int
    mgmt_port: int
    dist_port: int
    node: str

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_PORT": str(self.port),
            "RABBITMQ_MGMT_PORT": str(self.mgmt_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODE": self.node,
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def run(self, action: str) -> None:
        subprocess.run(
            [str(ROOT / "deploy/local/services.sh"), action, "rabbitmq"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=150,
        )

    def bindings(self, queue: str) -> list[str]:
        r = httpx.get(
            f"http://127.0.0.1:{self.mgmt_port}/api/queues/%2F/{queue}/bindings", auth=platform.MGMT_AUTH, timeout=10
        )
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return sorted(f"{b['source']}:{b['routing_key']}" for b in r.json() if b["source"])


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(
        platform.free_port(), platform.free_port(), platform.free_port(), f"stream{uuid.uuid4().hex[:8]}@localhost"
    )
    try:
        node.run("up")
        yield node
    finally:
        node.run("down")
        local = Path(os.environ.get("TRIBUTARY_LOCAL_DIR", ROOT / ".local"))
        for path in (local / "data" / f"rabbitmq-{node.port}", local / "log" / f"rabbitmq-{node.port}"):
            shutil.rmtree(path, ignore_errors=True)


async def _wait(predicate, what: str, timeout: float = 60) -> None:
    for _ in range(int(timeout * 10)):
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_broker_restart_restores_bindings_and_reports_gap(rabbit):
    running = await start_stream(settings_for(rabbit.url))
    queue = f"tributary.stream.{running.settings.instance_id}"
    expected = ["tributary.events:idle.*", "tributary.events:r.#"]
    try:
        ws = await connect(running)
        await subscribe(ws, "r", events={"pattern": "r.#"})
        await subscribe(ws, "idle", events={"pattern": "idle.*"})
        async with Publisher(rabbit.url) as pub:
            before = await pub.event("r", "a")
        frame = await recv(ws)
        assert frame["event"]["id"] == before["id"]
        assert await asyncio.to_thread(rabbit.bindings, queue) == expected

        await asyncio.to_thread(rabbit.run, "down")
        await _wait(lambda: not running.service.link.connected, "the stream to notice the outage")
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
        async with Publisher(rabbit.url) as pub:
            after = await pub.event("r", "b")
        frame, others = await recv_until(ws, lambda f: f["type"] == "event")
        assert frame["event"]["id"] == after["id"] and others == []
        await ws.close()
    finally:
        await running.stop()
