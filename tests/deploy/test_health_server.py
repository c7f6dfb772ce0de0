"""tributary_common.health_server: the probe endpoints for a worker process that serves no other HTTP."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.support import platform
from tributary_common.health_server import HealthServer, ops_server


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("broker unreachable")


async def test_probes_metrics_and_a_clean_stop() -> None:
    registry = CollectorRegistry()
    Counter("worker_things", "Things done", registry=registry).inc(3)
    port = platform.free_port()
    server = HealthServer({"broker": _down, "mongodb": _ok}, host="127.0.0.1", port=port, registry=registry)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"broker": "failed", "mongodb": "ok"}  # the reason is logged only
            assert "worker_things_total 3.0" in (await http.get("/metrics")).text
    finally:
        await server.stop()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


async def test_ops_server_serves_for_the_block_or_not_at_all() -> None:
    port = platform.free_port()
    async with ops_server({"broker": _ok}, host="127.0.0.1", port=port) as server:
        assert server is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/readyz")).json() == {"status": "ok", "checks": {"broker": "ok"}}
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    # No ops port configured: nothing is served (health stays on the service's own port).
    async with ops_server({}, host="127.0.0.1", port=None) as server:
        assert server is None


async def test_a_port_in_use_is_an_oserror_not_an_exit() -> None:
    port = platform.free_port()
    first = HealthServer({}, host="127.0.0.1", port=port)
    await first.start()
    try:
        with pytest.raises(OSError, match="in use"):
            await HealthServer({}, host="127.0.0.1", port=port).start()
    finally:
        await first.stop()


async def test_it_leaves_the_process_signal_handlers_alone() -> None:
    loop = asyncio.get_running_loop()
    got = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, got.set)
    server = HealthServer({}, host="127.0.0.1", port=platform.free_port())
    await server.start()
    try:
        before = signal.getsignal(signal.SIGTERM)
        signal.raise_signal(signal.SIGUSR1)
        await asyncio.wait_for(got.wait(), 10)
        assert signal.getsignal(signal.SIGTERM) == before
    finally:
        await server.stop()
        loop.remove_signal_handler(signal.SIGUSR1)
