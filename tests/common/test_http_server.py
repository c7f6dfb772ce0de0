"""The one uvicorn runner: quiet config, background start/stop, SIGTERM handled by uvicorn, quietly, by the owner,
or with a drain first."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import httpx
import pytest

from tests.support import platform
from tests.support.raw_http import endless_head_answer, response_head
from tributary_common import http_head
from tributary_common.http_head import MAX_HEAD_BYTES, BoundedHeadProtocol
from tributary_common.http_server import Server, server_config


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _config(port: int, **options: Any) -> Any:
    return server_config(app, host="127.0.0.1", port=port, lifespan="off", **options)


def test_config_is_quiet_and_bounded() -> None:
    config = _config(8000, graceful_s=7.5)
    assert (config.log_config, config.access_log, config.proxy_headers) == (None, False, False)
    assert config.timeout_graceful_shutdown == 7
    assert _config(8000).timeout_graceful_shutdown is None
    assert _config(8000, proxy_headers=True, ws_max_size=10).ws_max_size == 10


async def test_background_start_serves_and_stop_is_idempotent() -> None:
    port = platform.free_port()
    server = Server(_config(port), signals="owner")
    await server.start()
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/")).text == "ok"
    await server.stop()
    await server.stop()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/", timeout=2)


async def test_port_in_use_is_an_oserror() -> None:
    port = platform.free_port()
    first = Server(_config(port), signals="owner")
    await first.start()
    try:
        with pytest.raises(OSError, match="in use"):
            await Server(_config(port), signals="owner").start()
    finally:
        await first.stop()


async def test_quiet_sigterm_ends_serve_normally() -> None:
    port = platform.free_port()
    server = Server(_config(port), signals="quiet")
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn's flag, no event to wait on
            await asyncio.sleep(0.01)
    signal.raise_signal(signal.SIGTERM)
    await asyncio.wait_for(serving, 10)  # returned, nothing re-raised
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_the_first_signal_drains_then_stops_and_a_second_stops_at_once() -> None:
    drained = asyncio.Event()
    release = asyncio.Event()

    async def drain() -> None:
        drained.set()
        await release.wait()

    server = Server(_config(platform.free_port()), signals="owner", drain=drain)
    await server.start()
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.wait_for(drained.wait(), 5)
    assert not server.should_exit  # still serving while the drain runs
    release.set()
    async with asyncio.timeout(5):
        while not server.should_exit:  # noqa: ASYNC110 - uvicorn's flag
            await asyncio.sleep(0.01)
    await server.stop()

    held = asyncio.Event()
    stuck = Server(_config(platform.free_port()), signals="owner", drain=held.wait)
    await stuck.start()
    stuck.handle_exit(signal.SIGTERM, None)
    await asyncio.sleep(0.05)
    assert not stuck.should_exit
    stuck.handle_exit(signal.SIGTERM, None)  # a second signal: exit now
    assert stuck.should_exit
    await stuck.stop()
    held.set()


async def test_every_service_bounds_a_request_head() -> None:
    """The hub, ingest and stream all run through `server_config`: a header without end was collected in memory
    by httptools (hundreds of MB for one connection); beyond the bound it is a 431 and the connection closes."""
    assert _config(8000).http is BoundedHeadProtocol
    port = platform.free_port()
    server = Server(_config(port), signals="owner")
    await server.start()
    try:
        assert (await endless_head_answer(port)).startswith(b"HTTP/1.1 431")

        # Within the bound, two pipelined heads that are over it together are both answered.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES * 3 // 4) + b"\r\n\r\n"
        writer.write(big + big)
        await writer.drain()
        for _ in range(2):
            assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
            assert await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10) == b"2\r\nok\r\n0\r\n\r\n"  # chunked
        writer.close()
    finally:
        await server.stop()


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A response written over a second: longer than the head timeout of the test below."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    for part in (b"sl", b"ow"):
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": part, "more_body": part == b"sl"})


async def test_a_head_that_never_completes_closes_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that sent nothing, or a byte now and then, was held open for good (enough of them take every
    file descriptor); a response that takes longer than the wait is not cut by it."""
    monkeypatch.setattr(http_head, "HEAD_TIMEOUT_S", 0.3)
    port = platform.free_port()
    server = Server(server_config(slow_app, host="127.0.0.1", port=port, lifespan="off"), signals="owner")
    await server.start()
    try:
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)
        drip_reader, drip = await asyncio.open_connection("127.0.0.1", port)
        drip.write(b"GET / HTTP/1.1\r\n")
        for _ in range(3):
            await asyncio.sleep(0.1)
            drip.write(b"X")
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""  # closed by the server
        assert await asyncio.wait_for(drip_reader.read(), 5) == b""

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"slow"  # 1 s, past the 0.3 s wait
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection serves the next request
        assert (await response_head(reader)).startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"slow"
        for w in (idle, drip, writer):
            w.close()
    finally:
        await server.stop()
