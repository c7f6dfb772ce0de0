"""Request/reply between services over RabbitMQ (e.g. the stream asks the hub for history pages).

A request is `{"method", "params"}` sent to a queue such as `tributary.rpc.hub`; the reply is
`{"ok": true, "result"}` or `{"ok": false, "error": {"code", "message"}}`. Handlers raise `RpcError`
for expected failures; anything else becomes an `internal` error reply, never a lost request.

A server works on up to `concurrency` requests at once (its prefetch is the same number; each request is acked
after its reply is sent), from any number of callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

# Requests one server handles at once (TRIBUTARY_RPC_CONCURRENCY in the hub).
DEFAULT_CONCURRENCY = 16

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class RpcError(Exception):
    """An error the caller should see: `code` is machine-readable (`not_found`, `invalid`, `forbidden` ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RpcRequest(BaseModel):
    method: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] = Field(default_factory=dict)


class RpcServer:
    """Dispatches requests on its queues to registered handlers, at most `concurrency` at once."""

    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self._handlers: dict[str, Handler] = {}
        # The prefetch bounds each queue's deliveries; this bounds the server's handlers over all its queues.
        self._slots = asyncio.Semaphore(concurrency)

    def register(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    async def handle(self, body: bytes) -> bytes:
        """`dispatch` within the server's concurrency."""
        async with self._slots:
            return await self.dispatch(body)

    async def dispatch(self, body: bytes) -> bytes:
        try:
            req = RpcRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error("invalid", f"malformed request: {exc.errors()[0]['msg']}")
        handler = self._handlers.get(req.method)
        if handler is None:
            return _error("unknown_method", f"no method {req.method!r}")
        try:
            result = await handler(req.params)
        except RpcError as exc:
            return _error(exc.code, exc.message)
        except ValidationError as exc:
            return _error("invalid", str(exc))
        except Exception:
            log.exception("rpc handler %s failed", req.method)
            return _error("internal", f"{req.method} failed")
        return orjson.dumps({"ok": True, "result": result}, default=_default)

    def attach(self, broker: RabbitBroker, queue: str) -> None:
        """Consume `queue` on `broker` and reply to each request (acked once its reply is out)."""

        # Its own channel, so that the prefetch is this consumer's: no more requests held than can be worked on
        # (the others stay in the queue for another instance, and expire there if the caller gave up).
        # Take the raw message: a `body: bytes` parameter would receive the JSON already decoded (a dict).
        @broker.subscriber(
            RabbitQueue(queue, durable=False, auto_delete=False), channel=Channel(prefetch_count=self.concurrency)
        )
        async def _serve(message: RabbitMessage) -> bytes:
            return await self.handle(message.body)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__}")


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"ok": False, "error": {"code": code, "message": message}})


async def call(
    broker: RabbitBroker, queue: str, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0
) -> Any:
    """Call `method` on the service consuming `queue`; raise `RpcError` with the remote code on failure.

    FastStream's `broker.request` holds a lock per connection: one call in flight per broker. (A concurrent
    caller, replies matched by correlation id, made the R5 stream restart test see duplicated events: the
    stream's replay has relied on this order; left for its own change.)"""
    body = encode_request(method, params)
    try:
        # The expiration drops a request that no server picked up before the caller gave up.
        msg = await broker.request(
            body, queue=queue, timeout=timeout, expiration=timeout, content_type="application/json"
        )
    except TimeoutError as exc:
        raise RpcError("timeout", f"{method} on {queue}: no reply within {timeout} s") from exc
    return decode_reply(msg.body)


def encode_request(method: str, params: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"method": method, "params": params or {}}, default=_default)


def decode_reply(body: bytes) -> Any:
    """The result of a reply; `RpcError` with the remote code for an error reply."""
    reply = orjson.loads(body)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise RpcError(str(err.get("code", "internal")), str(err.get("message", "")))
    return reply.get("result")
