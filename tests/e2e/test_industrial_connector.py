"""An industrial source end to end with real hub and ingest processes: a unitop with an opcua item created through
the hub API (the OPC UA server runs in the test process on loopback, allowed by TRIBUTARY_HTTP_ALLOW), its samples
recorded and read back from `GET /unitops/{name}/samples`, and the server browsed through `GET /sources/opcua/browse`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest.opcua_server import plant
from tests.support import platform
from tests.support.stack import Stack, run_stack

pytestmark = pytest.mark.timeout(120)
NODE = "ns=1;s=Line1.Counter"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {"TRIBUTARY_HTTP_ALLOW": "127.0.0.1"}  # hub and ingest: the test's server is on loopback
    ingest = {"TRIBUTARY_ENABLED_SOURCES": "opcua", "TRIBUTARY_LEASE_TTL_S": "3"}
    with run_stack(tmp_path / "logs", ("hub", "ingest"), env=env, per_service={"ingest": ingest}) as s:
        yield s


async def _until(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_opcua_unitop_samples_and_browse_through_the_hub(stack: Stack) -> None:
    port = platform.free_port()
    auth = {"Authorization": f"Bearer {stack.token}"}
    async with plant(port) as p, httpx.AsyncClient(base_url=stack.hub_url, headers=auth, timeout=40) as hub:

        async def announced() -> bool:
            r = await hub.get("/sources")
            return r.status_code == 200 and any(s["name"] == "opcua" for s in r.json()["items"])

        await _until(announced, "the opcua source announced")
        params = {"endpoint": p.endpoint, "node": NODE, "publishing_interval_ms": 200, "sampling_interval_ms": 100}
        r = await hub.post(
            "/unitops",
            json={"name": "line1-e2e", "record": True, "items": {"counter": {"source": "opcua", "params": params}}},
        )
        assert r.status_code in (200, 201), r.text

        async def recorded() -> list[dict[str, Any]] | None:
            r = await hub.get("/unitops/line1-e2e/samples", params={"limit": 100})
            assert r.status_code == 200, r.text
            rows: list[dict[str, Any]] = r.json()["items"]
            return rows if len(rows) >= 5 else None

        rows = await _until(recorded, "recorded OPC UA samples")
        values = [row["v"] for row in rows if row["item"] == "counter"]
        assert values == sorted(values) and all(isinstance(v, int) for v in values)  # the server's counter

        # Browsing, answered over RPC by the ingest process: the folder, then the variables under it.
        r = await hub.get("/sources/opcua/browse", params={"params": json.dumps({"endpoint": p.endpoint})})
        assert r.status_code == 200, r.text
        line = next(i for i in r.json()["items"] if i["name"] == "Line1")
        r = await hub.get(
            "/sources/opcua/browse", params={"path": line["path"], "params": json.dumps({"endpoint": p.endpoint})}
        )
        assert r.status_code == 200, r.text
        counter = next(i for i in r.json()["items"] if i["name"] == "Counter")
        assert counter["params"] == {"endpoint": p.endpoint, "node": NODE}
        # A metadata address is refused by the hub's egress policy before any RPC.
        r = await hub.get(
            "/sources/opcua/browse", params={"params": json.dumps({"endpoint": "opc.tcp://169.254.169.254/"})}
        )
        assert r.status_code == 422, r.text
