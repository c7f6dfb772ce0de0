"""Request/reply between services over RabbitMQ (e.g. the stream asks the hub for history pages).

A request is `{"method", "params"}` sent to a queue such as `tributary.rpc.hub`; the reply is
`{"ok": true, "result"}` or `{"ok": false, "error": {"code", "message"}}`. Handlers raise `RpcError`
for expected failures; anything else becomes an `internal` error reply, never a lost request.

Both ends work on many requests at once: a server runs up to `concurrency` handlers together (its prefetch is
the same number; each request is acked after its reply is sent), and callers sharing one broker connection
wait for their replies together, each matched to its request by correlation id.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustQueue
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
            async with self._slots:
                return await self.dispatch(message.body)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot encode {type(value).__name__}")


def _error(code: str, message: str) -> bytes:
    return orjson.dumps({"ok": False, "error": {"code": code, "message": message}})


class _Replies:
    """The replies to one broker connection's calls: one exclusive queue and consumer, each reply handed to the
    caller waiting for its correlation id. (FastStream's `broker.request` takes a lock per request: one call at
    a time per connection.)"""

    def __init__(self) -> None:
        self.queue = RabbitQueue(f"tributary.reply.{uuid.uuid4().hex}", exclusive=True, auto_delete=True)
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        self._consuming: AbstractRobustQueue | None = None
        self._lock = asyncio.Lock()

    async def ready(self, broker: RabbitBroker) -> None:
        # The declared queue is cached per connection: a new object after the broker reconnected from scratch.
        async with self._lock:
            declared = await broker.declare_queue(self.queue)
            if declared is not self._consuming:
                await declared.consume(self._deliver, no_ack=True)
                self._consuming = declared

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        waiter = self.waiting.pop(message.correlation_id or "", None)
        if waiter is not None and not waiter.done():
            waiter.set_result(message.body)
        # Otherwise a late reply to a call that gave up: nothing waits for it.


_REPLIES: weakref.WeakKeyDictionary[RabbitBroker, _Replies] = weakref.WeakKeyDictionary()


async def call(
    broker: RabbitBroker, queue: str, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0
) -> Any:
    """Call `method` on the service consuming `queue`; raise `RpcError` with the remote code on failure. Calls
    on one broker run side by side."""
    body = orjson.dumps({"method": method, "params": params or {}}, default=_default)
    replies = _REPLIES.get(broker)
    if replies is None:
        replies = _REPLIES[broker] = _Replies()
    correlation_id = uuid.uuid4().hex
    waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    replies.waiting[correlation_id] = waiter
    try:
        async with asyncio.timeout(timeout):
            await replies.ready(broker)
            # The expiration drops a request that no server picked up before the caller gave up.
            await broker.publish(
                body,
                queue=queue,
                reply_to=replies.queue.name,
                correlation_id=correlation_id,
                expiration=timeout,
                content_type="application/json",
            )
            raw = await waiter
    except TimeoutError as exc:
        raise RpcError("timeout", f"{method} on {queue}: no reply within {timeout} s") from exc
    finally:
        replies.waiting.pop(correlation_id, None)
    reply = orjson.loads(raw)
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise RpcError(str(err.get("code", "internal")), str(err.get("message", "")))
    return reply.get("result")
