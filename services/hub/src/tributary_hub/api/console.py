"""The web console: static assets under `/console/` (no server-side rendering) and the little it must know that
is not in the API, `/console/config.json` (where browsers reach the stream). Neither is part of the API contract
(hidden from the OpenAPI document); the console itself only calls the public API, with the user's credentials."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.staticfiles import StaticFiles

from ..settings import HubSettings

ASSETS = Path(__file__).resolve().parent.parent / "console"
# uPlot, copied in by `make console` (gitignored): a dev checkout without it still serves the console, chart-less.
CHART = ASSETS / "vendor" / "uPlot.min.js"
# The console's own pages may only load their own scripts and talk to the hub and the configured stream.
CSP = "default-src 'self'; connect-src 'self' {stream}; img-src 'self' data:; object-src 'none'; base-uri 'none'"


def _stream_origin(url: str | None) -> str:
    """`wss://stream.example.com/ws` -> `wss://stream.example.com` for the CSP; nothing when unset."""
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


class ConsoleFiles(StaticFiles):
    """StaticFiles with headers fit for an app holding credentials: no framing, no sniffing, a strict CSP."""

    def __init__(self, csp: str) -> None:
        super().__init__(directory=ASSETS, html=True)
        self.csp = csp

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers["Content-Security-Policy"] = self.csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"  # revalidate: a new hub version serves new assets
        return response


def mount(app: FastAPI, settings: HubSettings) -> None:
    stream_url = settings.console_stream_url
    # Asked once: the console then never requests a chart library that is not there (a 404 is a console error).
    config = {"stream_url": stream_url, "chart": CHART.is_file()}

    @app.get("/console/config.json", include_in_schema=False)
    async def console_config() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    app.mount("/console", ConsoleFiles(CSP.format(stream=_stream_origin(stream_url))), name="console")
