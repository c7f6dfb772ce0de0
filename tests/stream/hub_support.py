"""The real hub as a process (tests/support/processes.ServiceProcess), and helpers to use its HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx

from tests.stream.support import SECRET
from tests.support import platform
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.tokens import Minter
from tributary_common.amqp import CONTROL, declare_exchange, source_key
from tributary_common.control import SourceAnnouncement
from tributary_common.timeutil import utcnow

ADMIN = Minter(SECRET, subject="test-admin")()


class Hub:
    def __init__(self, proc: ServiceProcess, port: int) -> None:
        self.proc = proc
        self.http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
        )

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = await self.http.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:500]}\n{self.proc.tail()}"
        return r.json() if r.content else None

    async def create_topic(self, name: str) -> None:
        await self.ok("POST", "/topics", json={"name": name, "schema": {"type": "object"}})

    async def publish(self, topic: str, data: Any, subject: str | None = None) -> str:
        body: dict[str, Any] = {"data": data}
        if subject:
            body["subject"] = subject
        return str((await self.ok("POST", f"/topics/{topic}/events", json=body))["id"])

    async def publish_batch(self, topic: str, items: list[dict[str, Any]]) -> list[str]:
        return list((await self.ok("POST", f"/topics/{topic}/events:batch", json=items))["ids"])

    async def history(self, topic: str, subject: str | None = None) -> list[dict[str, Any]]:
        """Every recorded event of `topic` (oldest first), page by page."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if subject:
                params["subject"] = subject
            if cursor:
                params["cursor"] = cursor
            page = await self.ok("GET", f"/topics/{topic}/events", params=params)
            out += page["items"]
            cursor = page.get("next")
            if not cursor:
                return out

    async def wait_recorded(self, topic: str, ids: list[str], timeout: float = 60) -> list[dict[str, Any]]:
        want = set(ids)

        async def recorded() -> list[dict[str, Any]] | None:
            items = await self.history(topic)
            return items if want <= {i["id"] for i in items} else None

        items: list[dict[str, Any]] = await eventually(recorded, timeout, f"the events of {topic} recorded", 0.25)
        return items

    async def announce_simulator(self, amqp_url: str) -> None:
        """What an ingest instance does: announce the `simulator` source, so that unitops may use it."""
        ann = SourceAnnouncement(
            source="simulator",
            instance_id="stream-tests",
            subscription_schema={"type": "object"},
            capacity=100,
            free=100,
            leases=0,
            ttl_s=600,
            sent_at=utcnow(),
        )
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            x = await declare_exchange(channel, CONTROL)

            async def registered() -> bool:
                await x.publish(aio_pika.Message(ann.model_dump_json().encode()), routing_key=source_key("simulator"))
                sources = await self.ok("GET", "/sources")
                return any(s["name"] == "simulator" for s in sources["items"])

            await eventually(registered, 30, "the hub to register the simulator source", 0.25)

    async def close(self) -> None:
        await self.http.aclose()


async def run_hub(amqp_url: str, mongo_url: str, db: str, cache_namespace: str, log_dir: Path) -> AsyncIterator[Hub]:
    port = platform.free_port()
    proc = ServiceProcess(
        "tributary_hub",
        ["serve"],
        {
            "TRIBUTARY_AMQP_URL": amqp_url,
            "TRIBUTARY_MONGODB_URL": mongo_url,
            "TRIBUTARY_MONGODB_DB": db,
            "TRIBUTARY_HTTP_PORT": str(port),
            "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
            "TRIBUTARY_CACHE_NAMESPACE": cache_namespace,
            "TRIBUTARY_JWT_SECRET": SECRET,
            "TRIBUTARY_RECORDER_BATCH_MAX_DELAY_MS": "20",
        },
        log_dir / "hub.log",
        port,
    )
    await asyncio.to_thread(proc.start, True, 90)
    hub = Hub(proc, port)
    try:
        yield hub
    finally:
        await hub.close()
        await asyncio.to_thread(proc.terminate, 30)
