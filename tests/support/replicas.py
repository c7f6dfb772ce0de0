"""Several replicas of each service side by side on loopback, in one vhost, database and cache namespace of their
own (`platform.isolated_env`): hub `serve` processes (recorders off), hub `recorder` processes, stream and ingest
processes, each with an instance id and a port of its own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import platform
from tests.support.processes import ServiceProcess, start_all
from tests.support.tokens import Minter

SECRET = "replicas-secret-0123456789-0123456789-ab"
MINT = Minter(SECRET)
LEASE_TTL_S = 3.0
# Short lease and announcement cycles, so that leases settle in seconds.
INGEST_ENV = {
    "TRIBUTARY_LEASE_TTL_S": str(LEASE_TTL_S),
    "TRIBUTARY_RELEASE_GRACE_S": "1.5",
    "TRIBUTARY_RECONCILE_INTERVAL_S": "0.25",
    "TRIBUTARY_BATCH_MAX_DELAY_S": "0.1",
    "TRIBUTARY_ANNOUNCE_INTERVAL_S": "1",
    "TRIBUTARY_ENABLED_SOURCES": "simulator",
}


@dataclass
class Replicas:
    env: dict[str, str]
    hubs: list[ServiceProcess]
    recorders: list[ServiceProcess]
    streams: list[ServiceProcess]
    ingests: list[ServiceProcess]
    token: str

    def all(self) -> list[ServiceProcess]:
        return [*self.hubs, *self.recorders, *self.streams, *self.ingests]

    @staticmethod
    def http(proc: ServiceProcess) -> str:
        return f"http://127.0.0.1:{proc.port}"

    @staticmethod
    def ws(proc: ServiceProcess) -> str:
        return f"ws://127.0.0.1:{proc.port}"


@contextlib.contextmanager
def run_replicas(
    logs: Path, *, hubs: int = 2, recorders: int = 2, streams: int = 2, ingests: int = 3
) -> Iterator[Replicas]:
    with platform.isolated_env("rep", SECRET) as base:
        common = {**base, "TRIBUTARY_DEMAND_INTERVAL_S": "1", "TRIBUTARY_DEMAND_TTL_S": "4"}

        def make(module: str, command: str, name: str, extra: dict[str, str] | None = None) -> ServiceProcess:
            port = platform.free_port()
            env = {**common, **(extra or {}), "TRIBUTARY_INSTANCE_ID": name, "TRIBUTARY_HTTP_PORT": str(port)}
            return ServiceProcess(module, [command], env, logs / f"{name}.log", port)

        made = Replicas(
            common,
            [make("tributary_hub", "serve", f"hub-{i}", {"TRIBUTARY_RECORDERS_ENABLED": "false"}) for i in range(hubs)],
            [make("tributary_hub", "recorder", f"recorder-{i}") for i in range(recorders)],
            [make("tributary_stream", "serve", f"stream-{i}") for i in range(streams)],
            [make("tributary_ingest", "serve", f"ingest-{i}", INGEST_ENV) for i in range(ingests)],
            MINT(subject="replicas"),
        )
        try:
            start_all(made.all(), 120)  # nine processes booting at once on a small machine
            yield made
        finally:
            for p in reversed(made.all()):
                p.terminate()
