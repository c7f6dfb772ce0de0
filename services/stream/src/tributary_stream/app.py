"""The FastAPI application: `/ws`, the SSE routes, health; the service starts and stops with the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tributary_common.access_log import AccessLog, parse_networks
from tributary_common.asyncapi import asyncapi_router
from tributary_common.asyncapi_apis import STREAM
from tributary_common.cors import install_cors
from tributary_common.edge_sampling import fastapi_telemetry
from tributary_common.health import health_router
from tributary_common.health_server import ops_server
from tributary_common.http_errors import install_error_handlers
from tributary_common.http_metrics import HttpMetrics
from tributary_common.openapi import install_openapi

from . import identity, sse
from .service import StreamService
from .settings import StreamSettings
from .ws import websocket_endpoint


def create_app(settings: StreamSettings | None = None, *, tracing: bool = False) -> FastAPI:
    settings = settings or StreamSettings()
    service = StreamService(settings, tracing=tracing)

    # Ready: the broker answers (live messages, and the hub over RPC); not while draining. History and API keys
    # from the hub are per request (a 503 or an `error` frame when the hub does not answer).
    checks = {"broker": service.ready}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The ops port (TRIBUTARY_OPS_PORT) answers before the broker is reached; the API port after.
        async with ops_server(
            checks,
            host=settings.http_host,
            port=settings.ops_port,
            registry=service.metrics.registry,
            title="Tributary stream",
        ):
            await service.start()
            try:
                yield
            finally:
                await service.drain(settings.shutdown_grace_seconds)
                await service.stop()

    app = FastAPI(
        title="Tributary stream",
        description="Websockets and server-sent events for events and unitops, with catch-up from history.",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=fastapi_telemetry(),  # edge_sampling: no span built for a request whose new trace is dropped
    )
    app.state.service = service
    install_error_handlers(app)
    install_openapi(app)
    if settings.ops_port is None:  # otherwise on the ops port (the lifespan above), never on the public port
        app.include_router(health_router(checks, registry=service.metrics.registry))
    app.include_router(sse.router)
    app.include_router(identity.router)
    app.include_router(asyncapi_router(STREAM))
    app.add_api_websocket_route("/ws", websocket_endpoint)
    app.add_middleware(HttpMetrics, registry=service.metrics.registry)
    app.add_middleware(
        AccessLog, trusted_proxies=parse_networks(settings.trusted_proxies), sample=settings.access_log_sample
    )
    install_cors(app, settings.cors_origins)  # outermost: preflights are answered before anything else
    return app
