"""Stream connection capacity: hold N idle subscribed websockets (default 15,000) on one stream process and report
its RSS (in all and per connection) and whether every connection was held.

The load generator speaks the websocket handshake and frames over raw asyncio sockets (a few hundred bytes per
connection, where a `websockets` client takes tens of KiB), so one process holds them within the open-file limit.
Run against the local services: `.venv/bin/python bench/stream_connections.py [--connections N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stream_fanout import SECRET, rss_kib, stop  # noqa: E402
from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402

BATCH = 250  # handshakes in flight at once (below uvicorn's listen backlog)


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (masked, as the protocol requires of clients)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def frames(buffer: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete server frames (opcode, payload) at the start of `buffer`, and what is left of it."""
    out: list[tuple[int, bytes]] = []
    while len(buffer) >= 2:
        n, head = buffer[1] & 0x7F, 2
        if n == 126:
            if len(buffer) < 4:
                break
            n, head = int.from_bytes(buffer[2:4], "big"), 4
        elif n == 127:
            if len(buffer) < 10:
                break
            n, head = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < head + n:
            break
        out.append((buffer[0] & 0x0F, buffer[head : head + n]))
        buffer = buffer[head + n :]
    return out, buffer


class IdleClient(asyncio.Protocol):
    """Handshake, one subscribe frame, then wait for `subscribed` and stay idle (answering pings)."""

    def __init__(self, host: str, port: int, token: str, ready: asyncio.Future[bool]) -> None:
        self.request = (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        self.ready = ready
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.upgraded:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                if not self.ready.done():
                    self.ready.set_result(False)
                return
            self.upgraded, self.buffer = True, rest
            frame = {"op": "subscribe", "id": "s", "events": {"pattern": "idle.#"}}
            self.transport.write(masked(0x1, orjson.dumps(frame)))
        received, self.buffer = frames(self.buffer)
        for opcode, payload in received:
            if opcode == 0x9:  # the server's keep-alive ping: an idle client still answers it
                self.transport.write(masked(0xA, payload))
            elif opcode == 0x1 and not self.ready.done():
                kind = orjson.loads(payload).get("type")
                if kind in ("subscribed", "error"):
                    self.ready.set_result(kind == "subscribed")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(False)


async def hold(port: int, token: str, n: int) -> tuple[int, list[asyncio.Transport]]:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    held = 0

    async def one() -> bool:
        ready: asyncio.Future[bool] = loop.create_future()
        try:
            transport, _ = await loop.create_connection(
                lambda: IdleClient("127.0.0.1", port, token, ready), "127.0.0.1", port
            )
        except OSError:
            return False
        transports.append(transport)
        try:
            return await asyncio.wait_for(ready, 60)
        except TimeoutError:
            return False

    for start in range(0, n, BATCH):
        held += sum(await asyncio.gather(*(one() for _ in range(start, min(n, start + BATCH)))))
    return held, transports


async def main(n: int, hold_s: float) -> None:
    platform.require_services()
    vhost = platform.unique("bench-conns")
    amqp = platform.create_vhost(vhost)
    port = platform.free_port()
    env = {
        **os.environ,
        "TRIBUTARY_AMQP_URL": amqp,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_LOG_LEVEL": "WARNING",
        # One principal and more than the default 10,000 connections: the limits are not what is measured.
        "TRIBUTARY_MAX_CONNECTIONS": str(n + 100),
        "TRIBUTARY_MAX_CONNECTIONS_PER_PRINCIPAL": str(n + 100),
    }
    cmd = [sys.executable, "-m", "tributary_stream", "serve"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not platform.port_open(port):
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the stream did not start")
            await asyncio.sleep(0.1)
        token = mint_token(SECRET, scopes=["events:read"])
        await asyncio.sleep(1.0)
        before = rss_kib(proc.pid)
        t0 = time.monotonic()
        held, transports = await hold(port, token, n)
        took = time.monotonic() - t0
        # Past the server's keep-alive ping and its timeout (20 s + 20 s): held means answered, not just open.
        await asyncio.sleep(hold_s)
        after = rss_kib(proc.pid)
        alive = sum(1 for t in transports if not t.is_closing())
        print(f"connections: {held}/{n} subscribed in {took:.0f} s, {alive} still open {hold_s:.0f} s later")
        print(f"stream RSS: {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB with them")
        print(f"memory per idle connection: {(after - before) / max(held, 1):.1f} KiB")
        record("stream_connections.py", f"connections held of {n:,}", alive, "", None, f">= {n}")
        for t in transports:
            t.close()
    finally:
        await stop(proc)
        platform.delete_vhost(vhost)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=15000)
    parser.add_argument("--hold", type=float, default=45.0, help="seconds to hold them once all are subscribed")
    args = parser.parse_args()
    asyncio.run(main(args.connections, args.hold))
