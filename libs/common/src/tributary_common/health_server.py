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

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator, Mapping

import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry

from .health import ReadinessCheck, health_router


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The owning process handles SIGTERM (drain first, then stop this server).
        yield


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
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        """Listening when this returns; an OSError when the port cannot be bound."""
        config = self._server.config
        # Bound here, not by uvicorn: its bind failure is a SystemExit that would end the whole process.
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="health-server")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._server.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise TimeoutError(f"health server did not start on {config.host}:{config.port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await self._task
        self._task = None


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
