"""RPC over aio-pika: replies and error replies, timeouts, the server's concurrency, one call at a time by
default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aio_pika.abc import AbstractConnection

from tests.support import platform
from tributary_common import rpc
from tributary_common.amqp import QueueSpec, RpcClient, connect, serve_rpc


def _server(concurrency: int = 4) -> rpc.RpcServer:
    server = rpc.RpcServer(concurrency=concurrency)

    async def echo(params: dict[str, Any]) -> Any:
        await asyncio.sleep(float(params.get("sleep", 0)))
        return {"echo": params.get("x")}

    async def refuse(params: dict[str, Any]) -> Any:
        raise rpc.RpcError("not_found", "no such thing")

    server.register("echo", echo)
    server.register("refuse", refuse)
    return server


@pytest.fixture
async def connection(amqp_url: str) -> AsyncIterator[AbstractConnection]:
    conn = await connect(amqp_url, name="test-rpc")
    yield conn
    await conn.close()


async def test_calls_replies_and_errors(connection: AbstractConnection) -> None:
    spec = QueueSpec(platform.unique("tributary.rpc.test"))
    consumer = await serve_rpc(_server(), connection, spec)
    client = RpcClient()
    await client.start(connection)
    assert await client.call(spec.name, "echo", {"x": 1}) == {"echo": 1}
    with pytest.raises(rpc.RpcError) as refused:
        await client.call(spec.name, "refuse")
    assert (refused.value.code, refused.value.message) == ("not_found", "no such thing")
    with pytest.raises(rpc.RpcError) as unknown:
        await client.call(spec.name, "nope")
    assert unknown.value.code == "unknown_method"
    await consumer.close()
    with pytest.raises(rpc.RpcError) as timeout:
        await client.call(spec.name, "echo", timeout=0.3)
    assert timeout.value.code == "timeout"
    await client.close()


async def test_server_concurrency_and_concurrent_client(connection: AbstractConnection) -> None:
    spec = QueueSpec(platform.unique("tributary.rpc.test"))
    consumer = await serve_rpc(_server(concurrency=4), connection, spec)
    client = RpcClient(concurrent=True)
    await client.start(connection)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(client.call(spec.name, "echo", {"x": i, "sleep": 0.3}) for i in range(8)))
    elapsed = loop.time() - started
    assert results == [{"echo": i} for i in range(8)]
    assert 0.55 < elapsed < 2.0  # 8 calls of 0.3 s, 4 at once: two rounds
    serial = RpcClient()
    await serial.start(connection)
    started = loop.time()
    await asyncio.gather(*(serial.call(spec.name, "echo", {"sleep": 0.2}) for _ in range(3)))
    assert loop.time() - started >= 0.55  # one call at a time
    await serial.close()
    await client.close()
    await consumer.close()
