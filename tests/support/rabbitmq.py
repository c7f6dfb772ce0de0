"""A private RabbitMQ node for tests that stop and restart the broker (the shared one is never touched)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from .platform import MGMT_AUTH, free_port
from .processes import ROOT


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
        """`up` (waits until it answers) or `down`, through the local platform's own script."""
        script = str(ROOT / "deploy/local/services.sh")
        subprocess.run([script, action, "rabbitmq"], env=self.env, check=True, capture_output=True, timeout=150)

    def bindings(self, queue: str) -> list[str]:
        """`<exchange>:<routing key>` of every binding of `queue` in the default vhost."""
        r = httpx.get(f"http://127.0.0.1:{self.mgmt_port}/api/queues/%2F/{queue}/bindings", auth=MGMT_AUTH, timeout=10)
        if r.status_code == 404:
            return []
        r.raise_for_status()
        return sorted(f"{b['source']}:{b['routing_key']}" for b in r.json() if b["source"])


@contextmanager
def private_rabbit(prefix: str) -> Iterator[PrivateRabbit]:
    """A node on free ports, started, and stopped with its data removed afterwards."""
    node = PrivateRabbit(free_port(), free_port(), free_port(), f"{prefix}{uuid.uuid4().hex[:8]}@localhost")
    try:
        node.run("up")
        yield node
    finally:
        node.run("down")
        local = Path(os.environ.get("TRIBUTARY_LOCAL_DIR", ROOT / ".local"))
        for path in (local / "data" / f"rabbitmq-{node.port}", local / "log" / f"rabbitmq-{node.port}"):
            shutil.rmtree(path, ignore_errors=True)
