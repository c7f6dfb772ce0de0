"""A private RabbitMQ cluster for tests: nodes on free loopback ports, each with its own node name and data folder
(started by `deploy/local/services.sh` like `private_rabbit`), joined to the first; stopped and removed after.
The shared node on 5672 is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .platform import MGMT_AUTH, free_port
from .processes import ROOT
from .rabbitmq import PrivateRabbit

RABBITMQCTL = "/usr/sbin/rabbitmqctl" if Path("/usr/sbin/rabbitmqctl").exists() else "rabbitmqctl"
LOCAL = Path(os.environ.get("TRIBUTARY_LOCAL_DIR", ROOT / ".local"))


def ctl(node: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        [RABBITMQCTL, "-n", node, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl -n {node} {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


@dataclass
class Cluster:
    nodes: list[PrivateRabbit]

    @property
    def urls(self) -> str:
        """Every node's URL, comma-separated (`TRIBUTARY_AMQP_URL`)."""
        return ",".join(n.url for n in self.nodes)

    def node(self, name: str) -> PrivateRabbit:
        return next(n for n in self.nodes if n.node == name)

    def running(self) -> list[PrivateRabbit]:
        return [n for n in self.nodes if _pid(n) is not None]

    def queue(self, name: str) -> dict[str, Any]:
        """The management API's view of a queue of the default vhost, asked of any running node."""
        for n in self.running():
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{n.mgmt_port}/api/queues/%2F/{quote(name, safe='')}", auth=MGMT_AUTH, timeout=10
                )
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return dict(r.json())
        raise RuntimeError(f"no running node knows queue {name}")

    def kill(self, node: PrivateRabbit) -> None:
        """A node lost: its Erlang VM killed (no graceful hand-over of anything)."""
        pid = _pid(node)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


def _pidfile(node: PrivateRabbit) -> Path:
    return LOCAL / "run" / f"rabbitmq-{node.port}.pid"


def _pid(node: PrivateRabbit) -> int | None:
    try:
        pid = int(_pidfile(node).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _remove(node: PrivateRabbit) -> None:
    with suppress(subprocess.SubprocessError, OSError):
        node.run("down")
    pid = _pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    for path in (LOCAL / "data" / f"rabbitmq-{node.port}", LOCAL / "log" / f"rabbitmq-{node.port}"):
        subprocess.run(["rm", "-rf", str(path)], check=False)
    for suffix in ("pid", "plugins", "conf", "advanced.config"):
        (LOCAL / "run" / f"rabbitmq-{node.port}.{suffix}").unlink(missing_ok=True)


@contextmanager
def rabbit_cluster(size: int = 3, prefix: str = "tq") -> Iterator[Cluster]:
    """`size` nodes started side by side, the others joined to the first."""
    tag = uuid.uuid4().hex[:6]
    nodes = [
        PrivateRabbit(free_port(), free_port(), free_port(), f"{prefix}{i + 1}-{tag}@localhost") for i in range(size)
    ]
    try:
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(lambda n: n.run("up"), nodes))
        for n in nodes[1:]:
            ctl(n.node, "stop_app")
            ctl(n.node, "join_cluster", nodes[0].node)
            ctl(n.node, "start_app")
        yield Cluster(nodes)
    finally:
        with ThreadPoolExecutor(size) as pool:
            list(pool.map(_remove, nodes))
