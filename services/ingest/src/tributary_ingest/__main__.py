"""`tributary-ingest serve`: the composition root of the ingest service."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

from pydantic import ValidationError

from tributary_common.http_server import Server, server_config
from tributary_common.logs import setup_logging
from tributary_common.telemetry import setup_tracing, shutdown_tracing

from .engine import Engine
from .gc_tuning import tune_gc
from .http_app import create_app
from .registry import RegistryError, configure_sources, load_sources
from .settings import IngestSettings


async def serve(settings: IngestSettings) -> bool:
    """Serve until SIGTERM; False when the engine could not start."""
    sources = load_sources(settings.enabled_sources or None)
    engine = Engine(settings, sources)
    config = server_config(create_app(engine), host=settings.http_host, port=settings.http_port, lifespan="on")
    # SIGTERM ends serve() normally once the engine has drained (uvicorn would re-raise it).
    await Server(config, signals="quiet").serve()
    return engine.failed is None


def _run(coro: Coroutine[Any, Any, bool]) -> bool:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tributary-ingest", description="Tributary ingest: connectors and leases")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="read demanded subscriptions and publish sample batches (health on http_port)")
    sub.add_parser("sources", help="list the registered sources and their subscription JSON Schemas")
    args = parser.parse_args(argv)
    try:
        return _command(args.command)
    except (RegistryError, ValidationError) as exc:
        print(f"tributary-ingest: {exc}", file=sys.stderr)
        return 2


def _command(command: str) -> int:
    settings = IngestSettings()
    setup_logging(settings.service_name, settings.log_level, settings.log_json)
    if command == "sources":
        import json

        for name, cls in configure_sources(load_sources(settings.enabled_sources or None), settings).items():
            capacity = settings.capacity.get(name, cls.capacity)
            print(json.dumps({"source": name, "capacity": capacity, "schema": cls.params_schema()}))
        return 0
    setup_tracing(settings.service_name, settings.instance_id)
    tune_gc()
    try:
        ok = _run(serve(settings))
    finally:
        shutdown_tracing()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
