"""A connected client (websocket or SSE): its subscriptions and its bounded send queue.

Everything queued for a client counts against one budget in bytes (`max_send_buffer_bytes`), beside a bound on
the number of frames (`send_queue_max`):

- Live data frames are *offered*: data may fill three quarters of the budget (the rest is kept for replies and
  gap frames). A frame that does not fit is not queued and its subscription is marked as lagging; once the queue
  has drained to half, each lagging subscription gets one `gap` frame naming the last position it was sent, then
  live frames flow again. A client whose queue stays full for `slow_client_timeout_s` is closed with 1013 (try
  again later). Nothing blocks the broker consumer, so a slow client never stalls the others.
- History replay *waits* for room (it is pulled, not pushed).
- Control frames (pong, error, subscribed, unsubscribed, gap) are queued while they fit the whole budget. One
  that does not fit closes the connection at once: with 1008 (policy violation) when replies to the client's own
  frames hold at least half of the queued bytes (it sends requests and does not read the answers), else with
  1013 (a slow reader of data).

A frame is always admitted into an empty queue, so one frame larger than the budget still goes through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tributary_common.auth import Principal
from tributary_common.close_codes import POLICY_VIOLATION, TRY_AGAIN_LATER

from . import protocol
from .frames import Encoder, SubscriptionView
from .metrics import StreamMetrics

log = logging.getLogger(__name__)

# What one queued frame costs beyond its bytes (the str object and its queue slot), so that many tiny frames
# cannot hide behind a byte count.
FRAME_OVERHEAD = 80
# Echoed text in error frames is cut to this many characters.
MAX_ERROR_MESSAGE = 300
# After `end`, a client whose writer is stuck on a peer that does not read is dropped after this long.
END_GRACE_S = 10.0


def frame_cost(frame: str) -> int:
    # `isascii` is O(1) in CPython (a flag on the string): most frames are ASCII JSON and need no encoding.
    return (len(frame) if frame.isascii() else len(frame.encode())) + FRAME_OVERHEAD


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Client:
    # Thousands of idle connections: no per-instance dict.
    __slots__ = (
        "_abort",
        "_full_since",
        "_held",
        "_room",
        "_sent",
        "_wake",
        "closed",
        "data_bytes",
        "encoder",
        "kill_code",
        "lagging",
        "max_bytes",
        "max_queue",
        "metrics",
        "on_abort",
        "principal",
        "queue",
        "queued_bytes",
        "reply_bytes",
        "sink",
        "slow_timeout_s",
        "subs",
    )

    def __init__(
        self,
        principal: Principal,
        encoder: Encoder,
        metrics: StreamMetrics,
        *,
        max_queue: int,
        max_bytes: int,
        slow_timeout_s: float,
    ) -> None:
        self.principal = principal
        self.encoder = encoder
        self.metrics = metrics
        self.max_queue = max_queue
        self.max_bytes = max_bytes
        self.data_bytes = max_bytes - max_bytes // 4
        self.slow_timeout_s = slow_timeout_s
        self.subs: dict[str, SubscriptionView] = {}
        # (frame, cost, is a reply to the client's own frame)
        self.queue: deque[tuple[str, int, bool]] = deque()
        self.queued_bytes = 0
        self.reply_bytes = 0
        self.lagging: dict[str, SubscriptionView] = {}
        self.closed = False
        # Set when the client must go: the endpoint closes the socket with this code.
        self.kill_code: int | None = None
        self._abort = False
        # Called on `kill`: the endpoint stops its writer at once (it may be stuck in a send that never ends).
        self.on_abort: Callable[[], object] | None = None
        # Writes a frame at once if the transport takes it now (websockets under our server): a frame that finds
        # the queue empty and no frame in the writer's hands skips the queue and the writer's task switch.
        self.sink: Callable[[str], bool] | None = None
        self._held = False  # the writer has taken a frame and not asked for the next one yet
        self._sent = metrics.messages_out.labels(encoder.transport)
        # Futures made only while someone waits (an idle connection keeps no event objects).
        self._wake: asyncio.Future[None] | None = None  # the writer, for a frame
        self._room: asyncio.Future[None] | None = None  # history replay, for room in the queue
        self._full_since: float | None = None

    # ---- producers ----------------------------------------------------------------------------------------

    def _data_fits(self, cost: int) -> bool:
        if not self.queue:
            return True
        return len(self.queue) < self.max_queue and self.queued_bytes + cost <= self.data_bytes

    def _append(self, frame: str, cost: int, reply: bool) -> None:
        if not self.queue and not self._held and self.sink is not None and self.sink(frame):
            self._sent.inc()
            return
        self.queue.append((frame, cost, reply))
        self.queued_bytes += cost
        if reply:
            self.reply_bytes += cost
        _wake(self._wake)

    def offer(self, frame: str, sub: SubscriptionView) -> bool:
        """Queue a live frame for `sub` unless the client is behind; False when it was not queued."""
        if self.closed:
            return False
        cost = frame_cost(frame)
        if not self._data_fits(cost):
            self.lagging[sub.id] = sub
            now = time.monotonic()
            if self._full_since is None:
                self._full_since = now
            elif now - self._full_since > self.slow_timeout_s:
                self.metrics.refused.labels("slow_client").inc()
                self.kill(TRY_AGAIN_LATER)
            return False
        if sub.id in self.lagging:
            return False  # its gap frame goes first, once the queue has drained
        self._append(frame, cost, reply=False)
        return True

    def put(self, frame: str, *, reply: bool = True) -> None:
        """Queue a control frame (subscribed, error, gap, ...): over the budget, the connection is closed."""
        if self.closed:
            return
        cost = frame_cost(frame)
        if self.queue and self.queued_bytes + cost > self.max_bytes:
            replies = self.reply_bytes + (cost if reply else 0)
            code = POLICY_VIOLATION if 2 * replies >= self.queued_bytes + cost else TRY_AGAIN_LATER
            self.metrics.refused.labels("send_buffer_full").inc()
            log.info(
                "closing a client (%s) with %d: %d bytes queued, %d of them replies",
                self.principal.subject,
                code,
                self.queued_bytes,
                self.reply_bytes,
            )
            self.kill(code)
            return
        self._append(frame, cost, reply)

    async def put_wait(self, frame: str) -> None:
        """Queue a history frame, waiting for room: replay follows the client's pace."""
        cost = frame_cost(frame)
        while not self.closed and not self._data_fits(cost):
            if self._room is None or self._room.done():
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)  # several replays may wait on it; one cancelled spares the others
        if not self.closed:
            self._append(frame, cost, reply=False)

    def send_message(self, kind: str, payload: dict[str, Any], *, reply: bool = True) -> None:
        self.put(self.encoder.message(kind, payload), reply=reply)

    def error(self, code: str, message: str, frame_id: str | None = None, *, reply: bool = True) -> None:
        self.metrics.refused.labels(code).inc()
        # Echoed values are bounded: the client may have sent anything.
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[:MAX_ERROR_MESSAGE] + "..."
        if frame_id is not None and len(frame_id) > protocol.MAX_SUB_ID:
            frame_id = frame_id[: protocol.MAX_SUB_ID]
        self.send_message("error", {"id": frame_id, "code": code, "message": message}, reply=reply)

    # ---- the writer ---------------------------------------------------------------------------------------

    async def next_frame(self, timeout: float | None = None) -> str | None:
        """The next frame to write (None on timeout or when the client is closed)."""
        self._held = False
        if self._abort:
            return None
        while not self.queue:
            if self.closed:
                return None
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._wake, timeout)
            except TimeoutError:
                return None
            finally:
                self._wake = None
        self._held = True
        frame, cost, reply = self.queue.popleft()
        self.queued_bytes -= cost
        if reply:
            self.reply_bytes -= cost
        if len(self.queue) <= self.max_queue // 2 and self.queued_bytes <= self.data_bytes // 2:
            self._full_since = None
            if self.lagging:
                lagging, self.lagging = self.lagging, {}
                for sub in lagging.values():
                    sub.gap("slow_client")
            _wake(self._room)
        self._sent.inc()
        return frame

    def _drop_queue(self) -> None:
        self.queue.clear()
        self.queued_bytes = self.reply_bytes = 0

    def kill(self, code: int) -> None:
        """Give up on this client now (too slow, over budget); the endpoint closes the socket with `code`."""
        self._abort = True
        self._drop_queue()
        self.finish(code)
        if self.on_abort is not None:
            self.on_abort()

    def finish(self, code: int) -> None:
        """Accept nothing more; the writer sends what is queued, then the endpoint closes with `code`."""
        if self.kill_code is None:
            self.kill_code = code
        self.closed = True
        _wake(self._wake)
        _wake(self._room)

    def close_soon(self, code: int) -> None:
        """`finish`, and `kill` if the client has not gone after a grace (its writer may be stuck)."""
        self.finish(code)
        asyncio.get_running_loop().call_later(END_GRACE_S, self.kill, code)

    def end(self, code: int, reason: str, message: str) -> None:
        """Its credentials ended: what is queued is no longer its to receive; an error frame, then close."""
        if self.closed:
            return
        self._drop_queue()
        self.error(reason, message, reply=False)
        self.close_soon(code)

    @property
    def killed(self) -> bool:
        return self._abort
