"""HTTP over a raw socket, for what no client library sends: a request head without end."""

from __future__ import annotations

import asyncio
import contextlib

from tributary_common.http_head import MAX_HEAD_BYTES


async def response_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)


async def endless_head_answer(port: int, path: str = "/") -> bytes:
    """The status line and headers a server answers to a header that goes on past four times the bound."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Big: ".encode())
        with contextlib.suppress(ConnectionError):
            for _ in range(4):
                writer.write(b"a" * MAX_HEAD_BYTES)
                await writer.drain()
        return await response_head(reader)
    finally:
        writer.close()
