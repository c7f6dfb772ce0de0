"""The small HTTP server of an ingest instance: health, readiness, metrics and a JSON status page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from tributary_common.edge_sampling import fastapi_telemetry
from tributary_common.health import health_router
from tributary_common.health_server import ops_server
from tributary_common.tasks import cancel_and_wait

from .engine import Engine

log = logging.getLogger(__name__)


def create_app(engine: Engine) -> FastAPI:
    """The engine starts with the app (connecting in the background) and stops, drained, when the app stops."""
    settings = engine.settings
    checks = {"engine": engine.check_started, "broker": engine.check_broker, "memcached": engine.check_cache}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # With TRIBUTARY_OPS_PORT, health and metrics are served there (probes, Prometheus), /status stays here.
        async with ops_server(
            checks,
            host=settings.http_host,
            port=settings.ops_port,
            registry=engine.metrics.registry,
            title="Tributary ingest",
        ):
            starting = asyncio.create_task(engine.start(), name="engine-start")
            starting.add_done_callback(_exit_if_failed)
            try:
                yield
            finally:
                if not starting.done():
                    await cancel_and_wait(starting)
                await engine.stop()

    def _exit_if_failed(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # Not a state to limp along in: exit (non-zero, see __main__) and let the orchestrator restart us.
        engine.failed = task.exception()
        log.critical("ingest engine failed to start; shutting down", exc_info=engine.failed)
        os.kill(os.getpid(), signal.SIGTERM)

    app = FastAPI(title="Tributary ingest", lifespan=lifespan, telemetry=fastapi_telemetry())
    if settings.ops_port is None:  # otherwise on the ops port (the lifespan above)
        app.include_router(health_router(checks, registry=engine.metrics.registry))

    @app.get("/status", summary="Sources served, leases held, failing and rejected subscriptions")
    async def status() -> dict[str, Any]:
        return engine.status()

    return app
