"""Request/reply between services over RabbitMQ (e.g. the stream asks the hub for history pages).

A request is `{"method", "params"}` sent to a queue such as `tributary.rpc.hub`; the reply is
`{"ok": true, "result"}` or `{"ok": false, "error": {"code", "message"}}`. Handlers raise `RpcError`
for expected failures; anything else becomes an `internal` error reply, never a lost request.

A server works on up to `concurrency` requests at once (its prefetch is the same number; each request is acked
after its reply is sent), from any number of callers.

This module is the transport-free part; the transport is `amqp/rpc.py` (`serve_rpc`, `RpcClient`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
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


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__}")


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"ok": False, "error": {"code": code, "message": message}})


def encode_request(method: str, params: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"method": method, "params": params or {}}, default=_default)


def decode_reply(body: bytes) -> Any:
    """The result of a reply; `RpcError` with the remote code for an error reply."""
    reply = orjson.loads(body)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise RpcError(str(err.get("code", "internal")), str(err.get("message", "")))
    return reply.get("result")
