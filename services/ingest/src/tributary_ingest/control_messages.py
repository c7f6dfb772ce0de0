"""What arrives on an instance's control queue (demand heartbeats, peers' source announcements), decoded; what
cannot be used goes to `tributary.dead` (the shared `tributary_common.deadletters` helper) with its reason, the
original exchange and routing key and the first failure time, instead of being dropped.

The control queue is exclusive and consumed without acks (a heartbeat is repeated anyway), so a letter is sent
explicitly and awaited until the broker confirms it; at most `MAX_IN_FLIGHT` are awaited at once, the next ones
wait up to `SLOT_WAIT_S` for one of them (a burst of bad messages arrives at once: the queue has no prefetch
bound), and one the broker does not take (it is away, or slower than that) is counted as lost and logged, never
retried without bound. Dead letters are counted per reason and logged at most once per reason per `LOG_EVERY_S`,
with the count they stand for.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from tributary_common.amqp.topology import DEMAND_PREFIX, SOURCE_PREFIX
from tributary_common.control import Demand, SourceAnnouncement
from tributary_common.deadletters import NOT_A_CONTROL_MESSAGE, UNDECODABLE, UNEXPECTED_ERROR, DeadLetters
from tributary_common.ratelog import LogThrottle

from .metrics import IngestMetrics

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
MAX_IN_FLIGHT = 64
SLOT_WAIT_S = 5.0

ControlMessage = Demand | SourceAnnouncement
_MODELS: dict[str, type[ControlMessage]] = {DEMAND_PREFIX: Demand, SOURCE_PREFIX: SourceAnnouncement}


class Unusable(Exception):
    """A control message this instance can never use; `reason` is a word of `tributary_common.deadletters`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(message: AbstractIncomingMessage) -> ControlMessage:
    """The demand or announcement `message` carries; raises `Unusable` (never quoting the body)."""
    key = message.routing_key or ""
    kind, _, source = key.partition(".")
    model = _MODELS.get(f"{kind}.")  # the prefixes `demand_key` and `source_key` build
    if model is None:
        raise Unusable(NOT_A_CONTROL_MESSAGE, f"unexpected routing key {key[:200]!r}")
    try:
        decoded = model.model_validate_json(message.body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        reason = UNDECODABLE if first["type"] in ("json_invalid", "json_type") else NOT_A_CONTROL_MESSAGE
        where = "/" + "/".join(str(p) for p in first["loc"])
        raise Unusable(reason, f"not a {model.__name__}: {where}: {first['msg']}"[:300]) from None
    if decoded.source != source:
        raise Unusable(NOT_A_CONTROL_MESSAGE, f"/source: {decoded.source[:100]!r} under routing key {key[:200]!r}")
    return decoded


class ControlDeadLetters:
    """Sends unusable control messages to `tributary.dead`, bounded, counted and rate-limited in the log."""

    def __init__(self, queue: str, metrics: IngestMetrics) -> None:
        self.queue = queue  # the routing key of the letters: the queue they were consumed from
        self.metrics = metrics
        self.sender: DeadLetters | None = None
        self._throttle = LogThrottle(LOG_EVERY_S)
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def send(self, message: AbstractIncomingMessage, reason: str, detail: str) -> None:
        self.metrics.dead_lettered.labels(reason).inc()
        self._throttle.log(
            log,
            logging.WARNING,
            reason,
            "dead-lettering a control message from %r (%s): %s",
            (message.routing_key or "")[:200],
            reason,
            detail,
        )
        if self.sender is None:
            self._lose(reason, "not connected")
            return
        try:
            async with asyncio.timeout(SLOT_WAIT_S):
                await self._slots.acquire()
        except TimeoutError:
            self._lose(reason, f"{MAX_IN_FLIGHT} letters unconfirmed for {SLOT_WAIT_S:g} s")
            return
        try:
            await self.sender.send(message, queue=self.queue, reason=reason, detail=detail)
        except Exception as exc:  # noqa: BLE001 - the broker did not take it: counted, logged, not retried
            self._lose(reason, f"not confirmed ({type(exc).__name__})")
        finally:
            self._slots.release()

    async def failed(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        """Handling a decoded message raised (a bug): its traceback once per interval, the message dead-lettered."""
        if self._throttle.hit(("bug", type(exc).__name__)) is not None:
            log.error("handling a control message from %r failed", (message.routing_key or "")[:200], exc_info=exc)
        await self.send(message, UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}"[:300])

    def _lose(self, reason: str, why: str) -> None:
        self.metrics.dead_letters_lost.labels(reason).inc()
        self._throttle.log(log, logging.ERROR, ("lost", reason), "a dead letter (%s) is lost: %s", reason, why)
