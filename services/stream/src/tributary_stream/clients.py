"""A connected client (websocket or SSE): its subscriptions and its bounded send queue.

Live frames are *offered*: when the queue is full the frame is not queued and the subscription is marked as
lagging; once the queue has drained to half, each lagging subscription gets one `gap` frame naming the last
position it was sent, then live frames flow again. Nothing blocks the broker consumer, so a slow client never
stalls the others. History replay instead *waits* for room (it is pulled, not pushed).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from tributary_common.auth import Principal

from . import protocol
from .metrics import StreamMetrics

if TYPE_CHECKING:
    from .subscriptions import Subscription


class Encoder(Protocol):
    """Turns deliveries into the transport's frames (websocket JSON text or SSE records)."""

    transport: str

    def event(self, sub: Subscription, envelope_json: str, event_id: str) -> str: ...

    def samples(self, sub: Subscription, body_json: str) -> str: ...

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str: ...


class WsEncoder:
    transport = "ws"

    def event(self, sub: Subscription, envelope_json: str, event_id: str) -> str:
        return protocol.event_frame(sub.id_json, envelope_json)

    def samples(self, sub: Subscription, body_json: str) -> str:
        return protocol.samples_frame(sub.id_json, body_json)

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str:
        return protocol.dumps({"type": kind, **payload})


class SseEncoder:
    transport = "sse"

    def event(self, sub: Subscription, envelope_json: str, event_id: str) -> str:
        return _sse("event", envelope_json, event_id)

    def samples(self, sub: Subscription, body_json: str) -> str:
        return _sse("samples", "{" + body_json + "}", sub.sse_position())

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str:
        return _sse(kind, protocol.dumps({"type": kind, **payload}), sse_id)


def _sse(kind: str, data: str, sse_id: str | None) -> str:
    # An id with a line break cannot be an SSE id (it would end the field); such events go without one.
    head = f"id: {sse_id}\n" if sse_id and "\n" not in sse_id and "\r" not in sse_id else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"


class Client:
    def __init__(
        self,
        principal: Principal,
        encoder: Encoder,
        metrics: StreamMetrics,
        *,
        max_queue: int,
        slow_timeout_s: float,
    ) -> None:
        self.principal = principal
        self.encoder = encoder
        self.metrics = metrics
        self.max_queue = max_queue
        self.slow_timeout_s = slow_timeout_s
        self.subs: dict[str, Subscription] = {}
        self.queue: deque[str] = deque()
        self.lagging: dict[str, Subscription] = {}
        self.closed = False
        # Set when the client must go: the endpoint closes the socket with this code.
        self.kill_code: int | None = None
        self._abort = False
        # Called on `kill`: the endpoint stops its writer at once (it may be stuck in a send that never ends).
        self.on_abort: Callable[[], object] | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._full_since: float | None = None

    # ---- producers ----------------------------------------------------------------------------------------

    def offer(self, frame: str, sub: Subscription) -> bool:
        """Queue a live frame for `sub` unless the client is behind; False when it was not queued."""
        if self.closed:
            return False
        if len(self.queue) >= self.max_queue:
            self.lagging[sub.id] = sub
            self._room.clear()
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since > self.slow_timeout_s:
                self.kill(1013)
            return False
        if sub.id in self.lagging:
            return False  # its gap frame goes first, once the queue has drained
        self.queue.append(frame)
        self._wake.set()
        return True

    def put(self, frame: str) -> None:
        """Queue a control frame (subscribed, error, gap, ...): small and rare, so never refused."""
        if self.closed:
            return
        self.queue.append(frame)
        self._wake.set()

    async def put_wait(self, frame: str) -> None:
        """Queue a history frame, waiting for room: replay follows the client's pace."""
        while not self.closed and len(self.queue) >= self.max_queue:
            self._room.clear()
            await self._room.wait()
        self.put(frame)

    def send_message(self, kind: str, payload: dict[str, Any]) -> None:
        self.put(self.encoder.message(kind, payload))

    def error(self, code: str, message: str, frame_id: str | None = None) -> None:
        self.metrics.refused.labels(code).inc()
        self.send_message("error", {"id": frame_id, "code": code, "message": message})

    # ---- the writer ---------------------------------------------------------------------------------------

    async def next_frame(self, timeout: float | None = None) -> str | None:
        """The next frame to write (None on timeout or when the client is closed)."""
        if self._abort:
            return None
        while not self.queue:
            if self.closed:
                return None
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        frame = self.queue.popleft()
        depth = len(self.queue)
        if depth <= self.max_queue // 2:
            self._full_since = None
            if self.lagging:
                lagging, self.lagging = self.lagging, {}
                for sub in lagging.values():
                    sub.gap("slow_client")
            self._room.set()
        self.metrics.messages_out.labels(self.encoder.transport).inc()
        return frame

    def kill(self, code: int) -> None:
        """Give up on this client now (too slow); the endpoint closes the socket with `code`."""
        self._abort = True
        self.finish(code)
        if self.on_abort is not None:
            self.on_abort()

    def finish(self, code: int) -> None:
        """Accept nothing more; the writer sends what is queued, then the endpoint closes with `code`."""
        if self.kill_code is None:
            self.kill_code = code
        self.closed = True
        self._wake.set()
        self._room.set()

    def drained(self) -> bool:
        return not self.queue
