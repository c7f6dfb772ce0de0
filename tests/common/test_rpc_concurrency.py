"""RPC on the real broker: a server works on up to `concurrency` requests at once and never more, and every reply
reaches the request it answers (correlation ids). Callers are several `RpcClient`s (each makes one call at a time,
on its own channel) or raw AMQP publishes.

The handlers hold at a gate that opens only once `concurrency` of them run together, so "slow requests complete
in about one handler's time, not one after the other" is checked as a structural fact: the most handlers ever
running at once reaches the limit and never exceeds it. Serialised requests would never open the gate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractConnection

from tributary_common.amqp import QueueSpec, RpcClient, connect, serve_rpc
from tributary_common.rpc import RpcServer

QUEUE = "tributary.rpc.test"
LIMIT = 4


class Gate:
    """Counts the handlers running at once; each waits until `limit` run together (or gives up: a failure)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self.peak = 0
        self.opened = asyncio.Event()

    async def handler(self, params: dict[str, Any]) -> dict[str, Any]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if self.running >= self.limit:
                self.opened.set()
            async with asyncio.timeout(5):
                await self.opened.wait()
            await asyncio.sleep(0.01)  # still busy while others are delivered: they must wait for a slot
            return {"echo": params["n"]}
        finally:
            self.running -= 1


CALLERS = 2 * LIMIT


@pytest.fixture
async def served(amqp_url: str) -> AsyncIterator[tuple[Gate, list[RpcClient]]]:
    gate = Gate(LIMIT)
    server = RpcServer(concurrency=LIMIT)
    server.register("slow", gate.handler)
    # The server and its callers on connections of their own, as between services.
    server_connection: AbstractConnection = await connect(amqp_url, name="test-rpc-server")
    consumer = await serve_rpc(server, server_connection, QueueSpec(QUEUE))
    callers_connection = await connect(amqp_url, name="test-rpc-callers")
    callers = [RpcClient() for _ in range(CALLERS)]
    for caller in callers:
        await caller.start(callers_connection)
    yield gate, callers
    for caller in callers:
        await caller.close()
    await callers_connection.close()
    await consumer.close()
    await server_connection.close()


async def test_slow_calls_run_together_up_to_the_limit(served: tuple[Gate, list[RpcClient]]) -> None:
    gate, callers = served
    results = await asyncio.gather(*(callers[n].call(QUEUE, "slow", {"n": n}, timeout=15) for n in range(LIMIT)))
    assert gate.opened.is_set() and gate.peak == LIMIT
    assert [r["echo"] for r in results] == list(range(LIMIT))


async def test_a_burst_over_the_limit_never_exceeds_it(served: tuple[Gate, list[RpcClient]]) -> None:
    gate, callers = served
    n = 5 * CALLERS
    results = await asyncio.gather(*(callers[i % CALLERS].call(QUEUE, "slow", {"n": i}, timeout=30) for i in range(n)))
    assert [r["echo"] for r in results] == list(range(n))  # each caller got the reply to its own request
    assert gate.peak == LIMIT
    print(f"rpc: {n} requests from {CALLERS} clients, at most {gate.peak} handlers at once (limit {LIMIT})")


async def test_the_server_bounds_requests_from_any_client(served: tuple[Gate, list[RpcClient]], amqp_url: str) -> None:
    """Requests published straight to the queue, more than the limit, each with its own correlation id: the
    server holds to its limit and every reply carries the id of the request it answers; none stays unacked."""
    gate, _ = served
    n = 8 * LIMIT
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        replies = await channel.declare_queue(exclusive=True)
        got: dict[str, Any] = {}
        all_in = asyncio.Event()

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            got[message.correlation_id or ""] = orjson.loads(message.body)
            if len(got) == n:
                all_in.set()

        await replies.consume(on_reply, no_ack=True)
        for i in range(n):
            body = orjson.dumps({"method": "slow", "params": {"n": i}})
            await channel.default_exchange.publish(
                aio_pika.Message(body, correlation_id=f"c{i}", reply_to=replies.name), routing_key=QUEUE
            )
        async with asyncio.timeout(30):
            await all_in.wait()
        assert got == {f"c{i}": {"ok": True, "result": {"echo": i}} for i in range(n)}
        assert gate.peak == LIMIT
        queue = await channel.declare_queue(QUEUE, passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()
