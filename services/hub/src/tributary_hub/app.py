"""The FastAPI application: routers, error handlers, health, and a lifespan that starts and stops the `Hub`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tributary_common.access_log import AccessLog, parse_networks
from tributary_common.asyncapi import asyncapi_router
from tributary_common.asyncapi_apis import HUB
from tributary_common.cors import install_cors
from tributary_common.edge_sampling import fastapi_telemetry
from tributary_common.health import health_router
from tributary_common.health_server import ops_server
from tributary_common.http_errors import install_error_handlers
from tributary_common.http_metrics import HttpMetrics
from tributary_common.openapi import install_openapi

from .api import apikeys, audit, console, deadletters, events, historian, history, identity, sources, topics, unitops
from .api.contract import add_links, operation_id
from .api.errors import install_hub_errors
from .composition import Hub
from .settings import HubSettings

DESCRIPTION = """
The Tributary hub: topics with versioned JSON Schemas (Draft 2020-12), validated durable publishing
(CloudEvents, publisher confirms), history and exports, unitops and sources.

**Auth**: `Authorization: Bearer <JWT or API key>`. Each route names its scope (`x-required-scope`): `topics:read`,
`topics:write`, `events:publish`, `events:read`, `unitops:read`, `unitops:write`, `admin`. No or bad credentials
are a 401, a missing scope or a name outside the token's `topics`/`unitops` ACL a 403.

**Errors** always have the shape `{"error": {"code", "message", "details": [{"loc", "msg"}]}}`, `loc` a JSON
pointer into the request.

**Batches are all or nothing**: if any event of a batch is invalid, none is published and every violation is
reported by index (`/3/data/temperature`).
"""


def create_app(settings: HubSettings | None = None) -> FastAPI:
    settings = settings or HubSettings()
    hub = Hub(settings, api=True, recorders_enabled=settings.recorders_enabled)
    host, ops_port = settings.http_host, settings.ops_port

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The ops port answers /healthz before the hub reaches its database and broker (an index build or an
        # election may take long): the kubelet sees a live process that is not ready yet, and does not kill it.
        async with ops_server(hub.readiness(), host=host, port=ops_port, title="Tributary hub"):
            await hub.start()
            # What start-up made (routes, models, the OpenAPI document, clients) lives as long as the app: kept out
            # of the collector, whose full passes over it cost a loaded hub ~3 % of its CPU.
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                await hub.stop()

    app = FastAPI(
        title="Tributary hub",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # FastAPI's own OpenTelemetry metrics and logs would go to providers no service sets (only a tracer
        # provider: tributary_common.telemetry): off, so that a request does not look them up every time. Its
        # spans per dependency and endpoint too: the request's server span and the publish span say where the
        # time went, and they cost 12 % of the hub's CPU per request at 100 % sampling.
        # The requests whose new trace is not sampled skip its telemetry altogether (edge_sampling).
        telemetry=fastapi_telemetry(metrics=False, logs=False, operation_spans=False),
        # The documentation's sections in this order (the routers are included publishing first, for speed).
        openapi_tags=[
            {"name": "topics", "description": "Topics, their schema versions and compatibility"},
            {"name": "events", "description": "Publishing events and reading them back"},
        ],
    )
    app.state.hub = hub
    install_error_handlers(app)
    install_hub_errors(app)

    # Publishing first: routes are matched in order, and a publish is most of the requests.
    app.include_router(events.router)
    if ops_port is None:  # otherwise on the ops port (the lifespan above), never on the API port
        app.include_router(health_router(hub.readiness()))
    app.include_router(topics.router)
    app.include_router(history.router)
    app.include_router(unitops.router)
    app.include_router(historian.router)
    app.include_router(sources.router)
    app.include_router(apikeys.router)
    app.include_router(deadletters.router)
    app.include_router(identity.router)
    app.include_router(audit.router)
    app.include_router(asyncapi_router(HUB))
    console.mount(app, settings)
    install_openapi(app, extend=add_links)
    app.add_middleware(HttpMetrics)
    app.add_middleware(
        AccessLog, trusted_proxies=parse_networks(settings.trusted_proxies), sample=settings.access_log_sample
    )
    install_cors(app, settings.cors_origins)  # outermost: preflights are answered before anything else
    return app
