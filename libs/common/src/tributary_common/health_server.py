"""`/healthz`, `/readyz` and `/metrics` for a process that serves no other HTTP (a worker such as the hub's
`recorder`), so that its container can be probed and scraped like every other service.

    server = HealthServer({"broker": check_broker, "mongodb": check_mongodb}, host=s.http_host, port=s.http_port)
    await server.start()
    ...
    await server.stop()

The process keeps its own signal handling: this server installs none (uvicorn's would replace them).

`ops_server(...)` is the same for the life of a block, and for every service: with `TRIBUTARY_OPS_PORT` set, the
three answer on that port of their own (probes, Prometheus; an Ingress routes only the API port), from before
the service connects to anything, so that the process is seen alive while its dependencies are not ready.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from .health import ReadinessCheck, health_router
from .http_server import Server, server_config


class HealthServer:
    def __init__(
        self,
        checks: Mapping[str, ReadinessCheck],
        *,
        host: str,
        port: int,
        registry: CollectorRegistry = REGISTRY,
        title: str = "Tributary worker",
    ) -> None:
        app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(health_router(checks, registry=registry))
        self.app = app
        config = server_config(app, host=host, port=port, lifespan="off", proxy_headers=True)
        # The owning process handles SIGTERM (drain first, then stop this server).
        self._server = Server(config, signals="owner", name="health server")

    async def start(self, timeout_s: float = 10.0) -> None:
        """Listening when this returns; an OSError when the port cannot be bound."""
        await self._server.start(timeout_s)

    async def stop(self) -> None:
        await self._server.stop()


@contextlib.asynccontextmanager
async def ops_server(
    checks: Mapping[str, ReadinessCheck],
    *,
    host: str,
    port: int | None,
    registry: CollectorRegistry = REGISTRY,
    title: str = "Tributary",
) -> AsyncIterator[HealthServer | None]:
    """A HealthServer on `port` while the block runs; None (and nothing served) when `port` is None."""
    if port is None:
        yield None
        return
    server = HealthServer(checks, host=host, port=port, registry=registry, title=title)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
