"""A recorder's storage side: a batch of converted messages written with `insert_many(ordered=False)`,
duplicates counted as written, retried with backoff while the database is away; a document the database refuses
for what it is is isolated and its message dead-lettered (confirmed before the original is acked)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from aio_pika.abc import AbstractRobustConnection
from bson.errors import InvalidDocument
from prometheus_client import Counter
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from tributary_common import deadletters
from tributary_common.amqp.delivery import Delivery
from tributary_common.backoff import Backoff
from tributary_common.deadletters import DeadLetters
from tributary_common.mongo import write_errors
from tributary_common.ratelog import LogThrottle

log = logging.getLogger("tributary_hub.recorder")  # the recorders' log, whichever part writes

RECORDED = Counter("tributary_hub_recorded_total", "Documents written (duplicates included)", ["kind"])
DUPLICATES = Counter(
    "tributary_hub_recorder_duplicates_total", "Documents already present (a redelivery or a resent id)", ["kind"]
)
DEAD_LETTERED = Counter(
    "tributary_hub_recorder_dead_lettered_total",
    "Messages that can never be stored, sent to tributary.dead",
    ["kind", "reason"],
)
DEAD_LETTERS_LOST = Counter(
    "tributary_hub_deadletters_unrecordable_total", "Dead letters the database refused (logged, then dropped)"
)
RETRIES = Counter("tributary_hub_recorder_retries_total", "Failed writes retried", ["kind"])

# Server errors that refuse a document for what it is (retrying cannot help), unlike the database being away:
# BadValue, TypeMismatch, DollarPrefixedFieldName, DottedFieldName, KeyTooLong, BSONObjectTooLarge.
DOCUMENT_ERRORS = frozenset({2, 14, 52, 57, 17280, 10334})
DETAIL_MAX = 300

Row = tuple[Delivery, list[dict[str, Any]]]


class Sink(Protocol):
    """Where a recorder writes: a collection, or a store that partitions (pymongo's `insert_many` contract)."""

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = ...) -> Any: ...


Refusal = tuple[Delivery, str, str]


def document_refusal(exc: BaseException) -> bool:
    """Whether the database refused the documents themselves (isolate and dead-letter) rather than being away."""
    if isinstance(exc, InvalidDocument):  # includes DocumentTooLarge, raised by the driver before sending
        return True
    return isinstance(exc, OperationFailure) and exc.code in DOCUMENT_ERRORS


def refusal_reason(exc: BaseException) -> tuple[str, str]:
    """The dead letter's reason and detail for a document the database refused."""
    too_large = "too large" in str(exc).lower()
    return deadletters.TOO_LARGE if too_large else deadletters.REFUSED_BY_DATABASE, str(exc)[:DETAIL_MAX]


@dataclass(eq=False)
class BatchWriter:
    kind: str
    queue_name: str
    collection: Sink | None  # None: a subclass writes elsewhere (sample_records.SampleWriter)
    _: KW_ONLY
    retry_min_s: float
    retry_max_s: float
    throttle: LogThrottle
    _dead: DeadLetters | None = field(init=False, default=None)
    written: int = field(init=False, default=0)

    async def start_dead_letters(self, connection: AbstractRobustConnection) -> None:
        """Send what can never be written to the dead-letter exchange (without: log and drop it)."""
        self._dead = DeadLetters(
            await connection.channel(publisher_confirms=True),
            retry_min_s=self.retry_min_s,
            retry_max_s=self.retry_max_s,
        )
        await self._dead.start(connection)

    async def start(self) -> None:
        """What a writer runs beside the recorder (`SampleWriter`: its merge loop)."""

    async def stop(self, timeout_s: float) -> None:
        """Stop what `start` began, finishing within `timeout_s` what can be."""

    async def write(self, rows: list[Row]) -> list[Refusal]:
        """Write every row, retrying while the database is away; what it refuses for what it is is returned."""
        backoff = Backoff(self.retry_min_s, self.retry_max_s, jitter=False)
        while True:
            try:
                return await self._insert(rows)
            except Exception as exc:
                if document_refusal(exc):
                    if len(rows) == 1:
                        return [(rows[0][0], *refusal_reason(exc))]
                    # One document spoils the whole call: write them one message at a time to find it.
                    return [r for row in rows for r in await self.write([row])]
                if not isinstance(exc, PyMongoError):
                    raise
                RETRIES.labels(self.kind).inc()
                delay = backoff.next_delay()
                log.warning(
                    "%s recorder: write of %d messages failed (%s); retrying in %.1f s",
                    self.kind,
                    len(rows),
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _insert(self, rows: list[Row]) -> list[Refusal]:
        docs = [doc for _, row_docs in rows for doc in row_docs]
        owners = [message for message, row_docs in rows for _ in row_docs]
        if not docs:
            return []
        assert self.collection is not None
        refused: dict[int, Refusal] = {}
        try:
            await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            duplicates, refusals = write_errors(exc)
            DUPLICATES.labels(self.kind).inc(len(duplicates))
            for k, why in refusals.items():
                # The server refused this document itself: retrying cannot help.
                owner = owners[k]
                refused[id(owner)] = (owner, deadletters.REFUSED_BY_DATABASE, why[:DETAIL_MAX])
        RECORDED.labels(self.kind).inc(len(docs))
        self.written += len(docs)
        return list(refused.values())

    async def dead_letter(self, message: Delivery, reason: str, detail: str) -> None:
        """Until the broker confirms it: the original is acked only after."""
        DEAD_LETTERED.labels(self.kind, reason).inc()
        if self._dead is None:
            DEAD_LETTERS_LOST.inc()
            self.throttle.log(
                log,
                logging.ERROR,
                (self.kind, reason),
                "%s recorder: dropping a dead letter it cannot store (%s): %s",
                self.kind,
                reason,
                detail,
            )
            return
        self.throttle.log(
            log,
            logging.ERROR,
            (self.kind, reason),
            "%s recorder: dead-lettered message %s (%s): %s",
            self.kind,
            message.message_id,
            reason,
            detail,
        )
        await self._dead.send_until_confirmed(message, queue=self.queue_name, reason=reason, detail=detail)
