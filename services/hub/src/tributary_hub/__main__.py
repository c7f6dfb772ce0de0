"""`tributary-hub serve` (HTTP API; recorders in-process unless TRIBUTARY_RECORDERS_ENABLED=false) and
`tributary-hub recorder` (the recorders alone)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from tributary_common import task_dump
from tributary_common.gc_tuning import raise_gc_thresholds
from tributary_common.health_server import HealthServer
from tributary_common.http_server import Server, server_config
from tributary_common.logs import setup_logging
from tributary_common.settings import InsecureSettings
from tributary_common.startup import load_settings
from tributary_common.tasks import cancel_and_wait
from tributary_common.telemetry import setup_tracing, shutdown_tracing

from .app import create_app
from .composition import Hub
from .settings import HubSettings

log = logging.getLogger("tributary_hub")

# Young collections every 7,000 net allocations of tracked objects (CPython: 700), middle ones every 50 young ones,
# full ones every 100 middle ones: at 3,000 requests a second the defaults ran ~165 young collections a second, 11 µs
# of GC a request untraced and 37 traced; after, ~0 and 4 (+2 % and +3 % requests a second, within the runs' noise:
# bench/README.md, Hub publish, eighth pass).
GC_THRESHOLDS = (7_000, 50, 100)


def serve(settings: HubSettings) -> None:
    app = create_app(settings)
    # uvicorn handles SIGTERM: stop accepting, finish requests, then the lifespan stops the hub.
    config = server_config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        graceful_s=settings.shutdown_grace_seconds,
        lifespan="on",
    )
    Server(config).run()


async def record(settings: HubSettings) -> None:
    hub = Hub(settings, api=False, recorders_enabled=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task_dump.install(loop)
    # The recorder has no API, but its probes and metrics need /healthz, /readyz and /metrics: served from the
    # start (ops port, else http_port), while the database and the broker are still being reached, so that a long
    # index build or an election reads as "alive, not ready" rather than a process that never answers.
    port = settings.ops_port or settings.http_port
    health = HealthServer(hub.readiness(), host=settings.http_host, port=port, title="Tributary recorder")
    await health.start()
    starting = asyncio.create_task(hub.start(), name="recorder-start")
    stopping = asyncio.create_task(stop.wait(), name="recorder-stop-signal")
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a start that failed ends the process, non-zero
            log.info("recorders running; health on %s:%d", settings.http_host, port)
            await stopping
        else:  # SIGTERM while starting: give up the start, close what it opened
            await cancel_and_wait(starting)
        log.info("stopping recorders")
        await asyncio.wait_for(hub.stop(), settings.shutdown_grace_seconds)
    finally:
        stopping.cancel()
        await health.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tributary-hub", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="HTTP API, RPC responders, demand heartbeats (and recorders unless disabled)")
    sub.add_parser("recorder", help="the events and samples recorders alone")
    migrate = sub.add_parser("migrate", help="move events of the old single collection into partitions (idempotent)")
    migrate.add_argument("--batch-size", type=int, default=1000, help="documents per batch (default 1000)")
    args = parser.parse_args(argv)
    settings = load_settings(HubSettings)
    setup_logging(settings.service_name, settings.log_level, settings.log_json)
    try:
        if args.command == "serve":  # the recorder verifies no tokens
            settings.check_auth_safety()
    except InsecureSettings as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None
    setup_tracing(settings.service_name, settings.instance_id)
    raise_gc_thresholds(*GC_THRESHOLDS)
    try:
        if args.command == "serve":
            serve(settings)
        elif args.command == "migrate":
            from .migrate import run

            if not 1 <= args.batch_size <= 100_000:
                parser.error("--batch-size must be between 1 and 100000")
            asyncio.run(run(settings, args.batch_size))
        else:
            asyncio.run(record(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
