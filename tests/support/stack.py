"""The platform as real processes (hub, ingest, stream) in their own vhost, database and cache namespace, with
per-service settings: for tests that attack the running services from outside."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pymongo

from tests.support import platform
from tests.support.processes import ServiceProcess, start_all
from tests.support.tokens import Minter

SECRET = "stack-secret-0123456789-0123456789-abcdef"
MINT = Minter(SECRET)
MODULES = {"hub": "tributary_hub", "ingest": "tributary_ingest", "stream": "tributary_stream"}


@dataclass
class Stack:
    procs: dict[str, ServiceProcess]
    env: dict[str, str]
    vhost: str
    db: str
    token: str
    logs: Path
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    mint: ClassVar[Minter] = MINT  # tokens the stack's services accept

    def url(self, name: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.procs[name].port}"

    @property
    def hub_url(self) -> str:
        return self.url("hub")

    @property
    def stream_url(self) -> str:
        return self.url("stream", "ws")

    @property
    def stream_http_url(self) -> str:
        return self.url("stream")


@contextlib.contextmanager
def run_stack(
    logs: Path,
    services: tuple[str, ...] = ("hub", "ingest", "stream"),
    env: dict[str, str] | None = None,
    per_service: dict[str, dict[str, str]] | None = None,
) -> Iterator[Stack]:
    """Start `services` as processes sharing one vhost, database and cache namespace; stop and clean up after.
    `env` is added to every process, `per_service[name]` to that one."""
    platform.require_services()
    vhost = platform.unique("sec")
    amqp = platform.create_vhost(vhost)
    db = platform.unique("sec").replace("-", "_")
    common = {
        "TRIBUTARY_AMQP_URL": amqp,
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique("sec"),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_DEMAND_INTERVAL_S": "1",
        "TRIBUTARY_DEMAND_TTL_S": "4",
        **(env or {}),
    }
    per_service = per_service or {}
    procs: dict[str, ServiceProcess] = {}
    for name in services:
        # A port given in per_service is kept: another process's settings may need it before the start.
        port = int(per_service.get(name, {}).get("TRIBUTARY_HTTP_PORT") or platform.free_port())
        penv = {**common, **per_service.get(name, {}), "TRIBUTARY_HTTP_PORT": str(port)}
        procs[name] = ServiceProcess(MODULES[name], ["serve"], penv, logs / f"{name}.log", port)
    try:
        start_all(list(procs.values()))
        yield Stack(procs, common, vhost, db, MINT(subject="sec-admin"), logs, per_service)
    finally:
        for p in reversed(list(procs.values())):
            p.terminate()
        platform.delete_vhost(vhost)
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(platform.mongodb_url()) as client:
            client.drop_database(db)


@contextlib.contextmanager
def serving_hub(amqp_url: str, logs: Path, prefix: str, env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    """`tributary-hub serve` (recorders in-process) on `amqp_url` (one URL or several), with a database and cache
    namespace of its own and demand off; ready before it is yielded, stopped and its database dropped after."""
    platform.require_services()
    db = platform.unique(prefix).replace("-", "_")
    port = platform.free_port()
    settings = {
        "TRIBUTARY_AMQP_URL": amqp_url,
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique(prefix),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_DEMAND_ENABLED": "false",
        **(env or {}),
    }
    proc = ServiceProcess("tributary_hub", ["serve"], settings, logs / "hub.log", port)
    try:
        proc.start(timeout=60)
        proc.wait_healthy(60, path="/readyz")
        yield proc
    finally:
        proc.terminate()
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(platform.mongodb_url()) as client:
            client.drop_database(db)
