"""Sample and dead-letter storage: a sample batch from the samples queue as `(sid, points)` written into the
`SampleStore`'s hourly buckets (deduplicated by `(sid, t)`), and a dead letter as its `deadletters` document."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Counter
from pydantic import ValidationError

from tributary_common import deadletters
from tributary_common.amqp import SAMPLES
from tributary_common.amqp.delivery import Delivery
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import SampleBatch
from tributary_common.tasks import cancel_and_wait

from .batch_writer import DUPLICATES, RECORDED, BatchWriter, Refusal, Row, document_refusal, refusal_reason
from .deadletters import letter_document
from .partitions import Layout
from .recording import ToDocs, Unrecordable, refusal
from .sample_buckets import time_text, to_us
from .sample_days import days_ahead
from .sample_decoding import decode
from .sample_staging import Entry, SampleStaging, staged_apart
from .sample_store import SampleStore
from .series import Point

log = logging.getLogger("tributary_hub.recorder")  # the recorders' log, whichever part writes

DEAD_LETTERS_RECORDED = Counter(
    "tributary_hub_deadletters_total",
    "Dead letters recorded by the hub (from every consumer), by reason",
    ["reason"],
)


INT64 = 1 << 63


def _storable(x: Any) -> bool:
    return not isinstance(x, int) or isinstance(x, bool) or -INT64 <= x < INT64


def _too_long(x: Any, limit: int) -> bool:
    return isinstance(x, str) and len(x) > limit // 4 and len(x.encode()) > limit


def _suspect(column: list[Any], limit: int) -> bool:
    """Whether a column may hold an integer past 64 bits or a string over `limit` bytes (column-wise: a Python
    call per sample was a fifth of the conversion)."""
    ints = [x for x in column if type(x) is int]
    if ints and not (min(ints) >= -INT64 and max(ints) < INT64):
        return True
    return any(len(x) > limit // 4 for x in column if type(x) is str)


def samples_to_docs(max_value_bytes: int = 1024 * 1024) -> ToDocs:
    """A batch as one `{sid, points}`. Integers past 64 bits can never be stored (BSON, the packed buckets); a
    string value or quality over `max_value_bytes` (UTF-8) is refused whole, before anything of it is stored."""

    async def convert(message: Delivery) -> list[dict[str, Any]]:
        fast = decode(message.body)
        if fast is None:
            try:
                sb = SampleBatch.model_validate_json(message.body)
            except ValidationError as exc:
                raise refusal(exc, "sample_batch") from exc
            except TypeError as exc:  # the order check comparing a naive time with an aware one
                raise Unrecordable("not_a_sample_batch", "samples: a time without a UTC offset") from exc
            naive = [i for i, s in enumerate(sb.samples) if s.t.tzinfo is None]
            if naive:
                raise Unrecordable("not_a_sample_batch", f"samples.{naive[0]}.t: no UTC offset")
            fast = sb.sid, [Point(to_us(s.t), s.v, s.q) for s in sb.samples]
        sid, points = fast
        if _suspect([p.v for p in points], max_value_bytes) or _suspect([p.q for p in points], max_value_bytes):
            for i, p in enumerate(points):  # which one, and why
                if not (_storable(p.v) and _storable(p.q)):
                    raise Unrecordable("not_a_sample_batch", f"samples.{i}: integer out of the 64-bit range")
                if _too_long(p.v, max_value_bytes) or _too_long(p.q, max_value_bytes):
                    raise Unrecordable(deadletters.TOO_LARGE, f"samples.{i}: a string over {max_value_bytes} bytes")
        return [{"sid": sid, "points": points, "key": message.routing_key or ""}]

    return convert


@dataclass(eq=False)
class SampleWriter(BatchWriter):
    """The batch writer of samples: the same retries and dead letters, the writes through the `SampleStore`, or
    staged and merged in a loop (`sample_staging`, FerretDB's layouts) when built with `staged=True`. The merge loop
    runs either way, so that what was staged before staging was turned off (or the database moved to MongoDB) is
    still merged, as another process's leftovers are."""

    store: SampleStore | None = None
    staged: bool = False
    staging: SampleStaging | None = field(init=False, default=None)
    _days: asyncio.Task[None] | None = field(init=False, default=None)  # `sample_days`: tomorrow made ahead

    def __post_init__(self) -> None:
        if self.store is not None:
            self.staging = SampleStaging(
                self.store,
                merged=self._count,
                refused=self._refused,
                retry_min_s=self.retry_min_s,
                retry_max_s=self.retry_max_s,
            )

    @property
    def stages(self) -> bool:
        """Whether batches are staged (else the merge loop only merges what was staged before)."""
        return self.staged and self.store is not None and self.store.partitions.layout is not Layout.INDEXED

    async def start(self) -> None:
        if self.staging is not None:
            self.staging.start()
        if self.store is not None and self.store.partitions.dedicated:
            self._days = asyncio.create_task(days_ahead(self.store), name="samples-days-ahead")

    async def stop(self, timeout_s: float) -> None:
        await cancel_and_wait(self._days)
        if self.staging is not None:
            await self.staging.stop(timeout_s)

    async def _insert(self, rows: list[Row]) -> list[Refusal]:
        assert self.store is not None
        entries = [(d["sid"], d["points"], d["key"]) for _, docs in rows for d in docs]
        if self.staging is not None and self.stages:
            entries, later = staged_apart(entries)
            if later:
                await self.staging.stage(later)  # counted when merged
        batches = [(sid, points) for sid, points, _ in entries]
        total = sum(len(points) for _, points in batches)
        if total:
            self._count(total, await self.store.write(batches))
        return []

    def _count(self, total: int, added: int) -> None:
        DUPLICATES.labels(self.kind).inc(total - added)
        RECORDED.labels(self.kind).inc(total)
        self.written += total

    async def _refused(self, entry: Entry, exc: BaseException) -> None:
        """A staged message's samples the database refused at merge time (the message is acked already): dead-lettered
        as the sample batch rebuilt from them, replayable to the samples exchange with the message's routing key."""
        sid, points, key = entry
        if document_refusal(exc):
            reason, detail = refusal_reason(exc)
        else:
            reason, detail = deadletters.UNEXPECTED_ERROR, type(exc).__name__
        source = key[: -len(sid) - 1] if key.endswith(f".{sid}") else key
        body = {"sid": sid, "source": source, "samples": [{"t": time_text(p.t), "v": p.v, "q": p.q} for p in points]}
        await self.dead_letter(Staged(orjson.dumps(body), routing_key=key), reason, detail)


@dataclass(frozen=True)
class Staged:
    """A `Delivery` for samples refused after their message was acked: the batch rebuilt from what was staged."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    exchange: str | None = SAMPLES.name
    routing_key: str | None = None


def letters_to_docs(body_max_bytes: int, throttle: LogThrottle) -> ToDocs:
    async def convert(message: Delivery) -> list[dict[str, Any]]:
        doc = letter_document(message, body_max_bytes=body_max_bytes)
        DEAD_LETTERS_RECORDED.labels(doc["reason"] if doc["reason"] in deadletters.REASONS else "other").inc()
        throttle.log(
            log,
            logging.WARNING,
            ("deadletter", doc["reason"]),
            "dead letter from %s (%s): %s",
            doc["queue"],
            doc["reason"],
            doc["detail"],
        )
        return [doc]

    return convert
