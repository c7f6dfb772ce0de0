"""Test helpers for the ingest suites: demanded subscriptions, settings, ingest processes, an engine (the AMQP
test bus is `tests.support.bus`, waiting is `tests.support.polling`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import platform
from tests.support.processes import ServiceProcess
from tributary_common.control import DemandedSubscription
from tributary_common.sid import compute_sid
from tributary_ingest.engine import Engine
from tributary_ingest.sdk import Connector
from tributary_ingest.settings import IngestSettings

LEASE_TTL_S = 3.0


def sub(source: str, params: dict[str, Any]) -> DemandedSubscription:
    return DemandedSubscription(sid=compute_sid(source, params), params=params)


def make_settings(amqp_url: str, namespace: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "cache_namespace": namespace,
        "lease_ttl_s": LEASE_TTL_S,
        "release_grace_s": 1.0,
        "reconcile_interval_s": 0.25,
        "batch_max_delay_s": 0.1,
        "backoff_min_s": 0.3,
        "backoff_max_s": 3.0,
        "announce_interval_s": 1.0,
        "shutdown_grace_seconds": 5.0,
        **overrides,
    }
    return IngestSettings(**values)


@contextlib.asynccontextmanager
async def engine(
    settings: IngestSettings, connectors: dict[str, type[Connector[Any]]], **kw: Any
) -> AsyncIterator[Engine]:
    e = Engine(settings, connectors, **kw)
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


def ingest_process(
    tmp_path: Path, amqp_url: str, namespace: str, name: str, extra_env: dict[str, str] | None = None
) -> ServiceProcess:
    port = platform.free_port()
    env = {
        "TRIBUTARY_AMQP_URL": amqp_url,
        "TRIBUTARY_CACHE_NAMESPACE": namespace,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_INSTANCE_ID": name,
        "TRIBUTARY_LEASE_TTL_S": str(LEASE_TTL_S),
        "TRIBUTARY_RELEASE_GRACE_S": "1.5",
        "TRIBUTARY_RECONCILE_INTERVAL_S": "0.25",
        "TRIBUTARY_BATCH_MAX_DELAY_S": "0.1",
        "TRIBUTARY_ANNOUNCE_INTERVAL_S": "1",
        "TRIBUTARY_SHUTDOWN_GRACE_SECONDS": "5",
        "TRIBUTARY_ENABLED_SOURCES": "simulator",
        **(extra_env or {}),
    }
    return ServiceProcess("tributary_ingest", ["serve"], env, tmp_path / f"{name}.log", port)


async def http_get(proc: ServiceProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(f"http://127.0.0.1:{proc.port}{path}")


async def status(proc: ServiceProcess) -> dict[str, Any]:
    return dict((await http_get(proc, "/status")).json())
