"""`/healthz`, `/readyz` and `/metrics`, the same three on every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

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
        responses={503: {"description": "Some dependency does not answer; `checks` says which"}},
    )
    async def readyz() -> JSONResponse:
        async def run(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), timeout_s)
                return "ok"
            except Exception as exc:  # noqa: BLE001 - the reason is reported, not raised
                return f"failed: {type(exc).__name__}: {exc}"[:300]

        results = dict(zip(checks, await asyncio.gather(*(run(c) for c in checks.values())), strict=True))
        ok = all(r == "ok" for r in results.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503
        )

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
