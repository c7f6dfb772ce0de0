"""A private RabbitMQ node restarted under a running engine: demand is heard again and samples resume, in order."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ingest.helpers import bus, engine, eventually, make_settings, sub
from tests.support import platform
from tests.support.processes import ROOT
from tributary_ingest.connectors.simulator import SimulatorSource

pytestmark = pytest.mark.timeout(240)


@dataclass
class PrivateRabbit:
    port: int
    mgmt_port: int
    dist_port: int
    node: str

    def run(self, action: str) -> None:
        env = {
            **os.environ,
            "RABBITMQ_PORT": str(self.port),
            "RABBITMQ_MGMT_PORT": str(self.mgmt_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODE": self.node,
        }
        script = str(ROOT / "deploy/local/services.sh")
        subprocess.run([script, action, "rabbitmq"], env=env, check=True, capture_output=True, timeout=150)


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    free = platform.free_port
    node = PrivateRabbit(free(), free(), free(), f"ingest{uuid.uuid4().hex[:8]}@localhost")
    try:
        node.run("up")
        yield node
    finally:
        node.run("down")
        local = Path(os.environ.get("TRIBUTARY_LOCAL_DIR", ROOT / ".local"))
        for path in (local / "data" / f"rabbitmq-{node.port}", local / "log" / f"rabbitmq-{node.port}"):
            shutil.rmtree(path, ignore_errors=True)


async def test_samples_resume_after_a_broker_restart(rabbit: PrivateRabbit, cache_namespace: str) -> None:
    url = platform.amqp_url("/", port=rabbit.port)
    s = sub("simulator", {"signal": "ramp", "rate_hz": 20})
    later = sub("simulator", {"signal": "sine", "rate_hz": 20})
    async with bus(url) as b, engine(make_settings(url, cache_namespace), {"simulator": SimulatorSource}) as e:
        # A demand TTL longer than the outage: the lease and the read must survive it (only publishing pauses).
        b.demand("simulator", [s], ttl_s=90)
        await eventually(lambda: len(b.values(s.sid)) >= 10, what="samples before the restart")
        await asyncio.to_thread(rabbit.run, "down")
        await asyncio.to_thread(rabbit.run, "up")
        after = time.monotonic()
        # The engine's control queue is back (new demand is heard) and both sids flow again.
        b.demand("simulator", [s, later], ttl_s=90)
        await eventually(lambda: later.sid in b.by_sid(after), 90, "the sid demanded after the restart")
        await eventually(lambda: s.sid in b.by_sid(after), 60, "the first sid flowing again")
        assert set(e.status()["sources"]["simulator"]["leases"]) == {s.sid, later.sid}
        lost = e.metrics.registry.get_sample_value("tributary_ingest_leases_lost_total", {"source": "simulator"})
        assert lost == 0
    b.assert_strictly_increasing()
