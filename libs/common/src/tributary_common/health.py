"""`/healthz`, `/readyz` and `/metrics`, the same three on every service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[object]]


def health_router(
    checks: Mapping[str, ReadinessCheck],
    registry: CollectorRegistry = REGISTRY,
    timeout_s: float = 2.0,
) -> APIRouter:
    """`checks` name the external dependencies `/readyz` must reach (broker, database, cache)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive (checks nothing external)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Every dependency this service needs answers",
        responses={503: {"description": "Some dependency does not answer; `checks` says which (detail in the log)"}},
    )
    async def readyz() -> JSONResponse:
        async def run(name: str, check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), timeout_s)
                return "ok"
            except Exception as exc:  # noqa: BLE001 - reported as failed, never raised
                # The probe is unauthenticated: exception text (URLs, hosts, credentials) stays in the log.
                log.warning("readiness check %s failed: %s: %s", name, type(exc).__name__, exc)
                return "failed"

        results = dict(zip(checks, await asyncio.gather(*(run(n, c) for n, c in checks.items())), strict=True))
        ok = all(r == "ok" for r in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
