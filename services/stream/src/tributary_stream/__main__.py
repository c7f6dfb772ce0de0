"""`tributary-stream serve`: the stream service under uvicorn, draining clients on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging

from tributary_common.http_server import Server, server_config
from tributary_common.logs import setup_logging
from tributary_common.settings import InsecureSettings
from tributary_common.startup import load_settings
from tributary_common.telemetry import setup_tracing, shutdown_tracing

from .app import create_app
from .service import StreamService
from .settings import StreamSettings
from .transports import StreamHttpProtocol, StreamWebSocketProtocol, direct_websockets
from .ws import direct_endpoint

log = logging.getLogger("tributary_stream")


def build_server(settings: StreamSettings, *, tracing: bool = False) -> Server:
    """On the first SIGTERM/SIGINT: stop consuming, send what is queued, close sockets with 1012, then exit."""
    app = create_app(settings, tracing=tracing)
    service: StreamService = app.state.service
    config = server_config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        graceful_s=5,
        # uvicorn's httptools and websockets-sansio protocols, able to drop peers that stop reading (transports.py).
        http=StreamHttpProtocol,
        # With tracing, through the application: FastAPI's own spans cover the websocket too.
        ws=StreamWebSocketProtocol if tracing else direct_websockets({"/ws": direct_endpoint(app)}),
        ws_max_size=settings.ws_max_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
    )
    return Server(config, drain=lambda: service.drain(settings.shutdown_grace_seconds), name="stream server")


def serve(settings: StreamSettings) -> None:
    setup_logging(settings.service_name, settings.log_level, settings.log_json)
    try:
        settings.check_auth_safety()
    except InsecureSettings as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None
    tracing = setup_tracing(settings.service_name, settings.instance_id) is not None
    log.info("stream %s listening on %s:%d", settings.instance_id, settings.http_host, settings.http_port)
    try:
        asyncio.run(build_server(settings, tracing=tracing).serve())
    finally:
        shutdown_tracing()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tributary-stream", description="Tributary stream service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_p = sub.add_parser("serve", help="serve /ws and the SSE routes")
    serve_p.add_argument("--host", help="override TRIBUTARY_HTTP_HOST")
    serve_p.add_argument("--port", type=int, help="override TRIBUTARY_HTTP_PORT")
    args = parser.parse_args(argv)
    settings = load_settings(StreamSettings)
    if args.host:
        settings.http_host = args.host
    if args.port:
        settings.http_port = args.port
    serve(settings)


if __name__ == "__main__":
    main()
