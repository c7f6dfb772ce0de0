"""The transport of `tributary_common.rpc` (its wire format, the server's dispatch), over aio-pika:

    server = RpcServer(concurrency=16); register_rpc(server, hub)
    consumer = await serve_rpc(server, connection, RPC_HUB)       # prefetch = concurrency, ack after the reply
    ...
    client = RpcClient()
    await client.start(connection)                                 # direct reply-to on a channel of its own
    page = await client.call(RPC_HUB.name, "events.history", {...}, timeout=10.0)

The client makes one call at a time by default (the stream's replay relies on that order); `concurrent=True`
lets calls overlap, replies matched by correlation id.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import uuid_utils
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from ..rpc import RpcError, RpcServer, decode_reply, encode_request
from .consumer import Consumer
from .topology import QueueSpec

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


async def serve_rpc(server: RpcServer, connection: AbstractConnection, spec: QueueSpec) -> Consumer:
    """Consume `spec` and reply to each request; each is acked once its reply is out (rejected if that fails)."""
    consumer: Consumer

    async def on_request(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False, ignore_processed=True):
            reply = await server.handle(message.body)
            if message.reply_to:
                await consumer.channel.default_exchange.publish(
                    aio_pika.Message(reply, correlation_id=message.correlation_id, content_type="application/json"),
                    routing_key=message.reply_to,
                )

    consumer = Consumer(spec, on_request, prefetch=server.concurrency)
    await consumer.start(connection)
    return consumer


class RpcClient:
    def __init__(self, *, concurrent: bool = False) -> None:
        self._channel: AbstractChannel | None = None
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._one_at_a_time = None if concurrent else asyncio.Lock()

    async def start(self, connection: AbstractConnection) -> None:
        channel = await connection.channel(publisher_confirms=False)
        # Direct reply-to: consumed (no ack) on the channel that publishes the requests.
        replies = await channel.get_queue(DIRECT_REPLY_TO, ensure=False)
        await replies.consume(self._on_reply, no_ack=True)
        self._channel = channel

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        for future in self._pending.values():
            future.cancel()
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is not None and not future.done():
            future.set_result(message.body)

    async def call(self, queue: str, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """Call `method` on the service consuming `queue`; `RpcError` with the remote code on failure."""
        if self._one_at_a_time is None:
            return await self._call(queue, method, params, timeout)
        async with self._one_at_a_time:
            return await self._call(queue, method, params, timeout)

    async def _call(self, queue: str, method: str, params: dict[str, Any] | None, timeout: float) -> Any:
        if self._channel is None:
            raise RpcError("unavailable", "the RPC client is not started")
        correlation_id = uuid_utils.uuid7().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            # The expiration drops a request that no server picked up before the caller gave up.
            request = aio_pika.Message(
                encode_request(method, params),
                content_type="application/json",
                correlation_id=correlation_id,
                reply_to=DIRECT_REPLY_TO,
                expiration=timeout,
            )
            await self._channel.default_exchange.publish(request, routing_key=queue)
            try:
                body = await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                raise RpcError("timeout", f"{method} on {queue}: no reply within {timeout} s") from exc
        finally:
            self._pending.pop(correlation_id, None)
            with contextlib.suppress(asyncio.InvalidStateError):
                future.cancel()
        return decode_reply(body)
