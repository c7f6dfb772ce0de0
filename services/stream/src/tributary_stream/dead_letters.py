"""What the stream's consumer cannot use goes to `tributary.dead` (`tributary_common.deadletters`) with its reason,
counted per reason and logged at most once per reason per interval, instead of a log line per message and a drop.

The instance queue is consumed without acknowledgements (its messages are copies: the recorders keep their own),
so the outbox holds each letter in memory until the broker confirms it, across reconnects. It is bounded in bytes:
beyond, a letter is counted as lost (`tributary_stream_dead_letters_lost_total`) and logged, never kept unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter

from tributary_common.deadletters import DeadLetters
from tributary_common.ratelog import LogThrottle
from tributary_common.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RETRY_S = 0.5


class Unusable(Exception):
    """A broker message the stream can never use; `reason` is a word of `tributary_common.deadletters`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Letter = tuple[AbstractIncomingMessage, str, str]  # (message, reason, detail)


class DeadLetterOutbox:
    def __init__(
        self, queue: str, dead_lettered: Counter, lost: Counter, *, max_bytes: int, log_interval_s: float
    ) -> None:
        self.queue = queue  # the routing key of the letters: the queue they were consumed from
        self.dead_lettered = dead_lettered
        self.lost = lost
        self.max_bytes = max_bytes
        self._throttle = LogThrottle(log_interval_s)
        self._pending: deque[Letter] = deque()
        self._bytes = 0
        self._sender: DeadLetters | None = None
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._task: asyncio.Task[None] | None = None

    def put(self, message: AbstractIncomingMessage, reason: str, detail: str) -> None:
        """Synchronous (called from the consumer): queue the letter, count and maybe log it."""
        self.dead_lettered.labels(reason).inc()
        self._throttle.log(
            log,
            logging.WARNING,
            reason,
            "dead-lettering a message from %s %r (%s): %s",
            message.exchange,
            (message.routing_key or "")[:200],
            reason,
            detail[:300],
        )
        size = len(message.body)
        if self._pending and self._bytes + size > self.max_bytes:
            self._lose(reason, "the dead-letter outbox is full (the broker does not take them)")
            return
        self._pending.append((message, reason, detail))
        self._bytes += size
        self._empty.clear()
        self._wake.set()

    def attach(self, sender: DeadLetters | None) -> None:
        """The sender of the current broker connection (None while there is none)."""
        self._sender = sender
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dead-letters")

    async def close(self, timeout_s: float) -> None:
        """Send what is pending while the connection lasts (at most `timeout_s`); what is left is lost, counted."""
        if self._sender is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout_s)
        await cancel_and_wait(self._task)
        while self._pending:
            _, reason, _ = self._pending.popleft()
            self._lose(reason, "the stream stopped before the broker took it")
        self._bytes = 0

    def _lose(self, reason: str, why: str) -> None:
        self.lost.labels(reason).inc()
        self._throttle.log(log, logging.ERROR, ("lost", reason), "a dead letter (%s) is lost: %s", reason, why)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and (sender := self._sender) is not None:
                message, reason, detail = self._pending[0]
                try:
                    await sender.send(message, queue=self.queue, reason=reason, detail=detail)
                except ValueError as exc:  # not a valid reason: a bug here, the letter can never go
                    log.error("dead letter refused by the helper: %s", exc)
                except Exception as exc:  # noqa: BLE001 - not confirmed: kept, tried again (on the next connection)
                    self._throttle.log(log, logging.WARNING, "retry", "dead letter not confirmed (%s); retrying", exc)
                    await asyncio.sleep(RETRY_S)
                    continue
                self._pending.popleft()
                self._bytes -= len(message.body)
            if not self._pending:
                self._empty.set()
