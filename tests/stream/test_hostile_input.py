"""Hostile input at the stream's edge: what a client sends (frames, control frames, request heads, SSE parameters)
never grows the process's memory without bound, never leaves state behind, and is never echoed back at length."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
import warnings

import httpx
from websockets.frames import Frame, Opcode

from tests.stream.support import RunningStream, connect, recv_until, send, subscribe, token
from tests.support.polling import eventually
from tests.support.raw_http import endless_head_answer, response_head
from tributary_common.amqp import EVENTS
from tributary_common.http_head import MAX_HEAD_BYTES
from tributary_stream.transports import StreamWebSocketProtocol


async def test_a_binding_whose_subscription_went_while_it_was_made_is_released(stream: RunningStream) -> None:
    link = stream.service.link
    key = (EVENTS.name, "cancelled.#")
    task = asyncio.create_task(link.acquire(*key))
    await asyncio.sleep(0)  # it counts the reference and waits for the broker
    assert key in link.wanted
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert key not in link.wanted
    await eventually(lambda: key not in link.bound, 10, "the binding removed")


async def test_subscribe_then_unsubscribe_at_once_leaves_no_binding(stream: RunningStream) -> None:
    # Unsubscribing while the binding was being made left it bound for good, one per pattern the client chose.
    # And a subscription cancelled before its task first ran left its start coroutine never awaited (a warning).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with await connect(stream) as ws:
            for i in range(40):
                await send(ws, {"op": "subscribe", "id": f"s{i}", "events": {"pattern": f"leak{i}.#"}})
                await asyncio.sleep(0.001 * (i % 5))
                await send(ws, {"op": "unsubscribe", "id": f"s{i}"})
            await send(ws, {"op": "ping", "id": "end"})
            await recv_until(ws, lambda f: f.get("type") == "pong" and f.get("id") == "end")
        link = stream.service.link

        def leaked() -> list[tuple[str, str]]:
            return [k for k in (*link.wanted, *link.bound) if k[1].startswith("leak")]

        await eventually(lambda: not leaked(), 10, "no binding left behind")
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)], [str(w.message) for w in caught]


async def _raw_websocket(stream: RunningStream) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", stream.port)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token()}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_pings_of_a_peer_that_does_not_read_do_not_grow_the_buffer(stream: RunningStream) -> None:
    # Control frames never reach the application: each ping was answered into the transport's buffer, unbounded.
    _, writer = await _raw_websocket(stream)
    try:
        pings = Frame(Opcode.PING, b"p" * 125).serialize(mask=True, extensions=[]) * 8000  # ~1 MB
        for _ in range(20):
            writer.write(pings)
            await writer.drain()
        await asyncio.sleep(0.5)
        sockets = [p for p in stream.server.server_state.connections if isinstance(p, StreamWebSocketProtocol)]
        assert sockets
        assert max(p.transport.get_write_buffer_size() for p in sockets) < 1024 * 1024
    finally:
        writer.close()


async def test_an_endless_request_head_is_refused_with_431(stream: RunningStream) -> None:
    # httptools collected a never-ending header in memory (300 MB of it grew the process by 300 MB).
    assert (await endless_head_answer(stream.port, "/healthz")).startswith(b"HTTP/1.1 431")


async def test_large_heads_within_the_bound_still_work_also_pipelined(stream: RunningStream) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", stream.port)
    try:
        big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES * 3 // 4) + b"\r\n\r\n"
        writer.write(big + big)  # two requests in one write: more than the bound together, each within it
        await writer.drain()
        for _ in range(2):
            head = await response_head(reader)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            await reader.readexactly(length)
    finally:
        writer.close()


async def test_sse_refusals_quote_little_of_what_was_sent(stream: RunningStream) -> None:
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=stream.base, timeout=10, headers=headers) as http:
        r = await http.get("/unitops/" + "a" * 5000 + "/stream")
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/path/name"
        assert len(r.content) < 2000
        r = await http.get("/unitops/pump/stream", headers={"Last-Event-ID": "x" * 40_000})
        assert r.status_code == 422 and "Last-Event-ID" in r.json()["error"]["details"][0]["loc"]
        assert len(r.content) < 2000


async def test_a_since_id_longer_than_any_event_id_is_refused_at_once(stream: RunningStream) -> None:
    # It was asked of the hub again and again (or, without a hub, the subscription went live with a gap).
    async with await connect(stream) as ws:
        for n, since in enumerate(["x" * 300, {"id": "y" * 300}]):
            frame = await subscribe(ws, f"s{n}", events={"pattern": "t.#", "since": since})
            assert frame["type"] == "error" and frame["code"] == "invalid_since", frame
            assert "at most 256 characters" in frame["message"]
