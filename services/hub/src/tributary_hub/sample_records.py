"""Sample and dead-letter storage: a sample batch from the samples queue as one document per sample (keyed by
`(sid, t)`), and a dead letter as its `deadletters` document."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter
from pydantic import ValidationError

from tributary_common import deadletters
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import SampleBatch
from tributary_common.timeutil import format_time, utcnow

from .deadletters import letter_document
from .recording import ToDocs, refusal

log = logging.getLogger("tributary_hub.recorder")  # the recorders' log, whichever part writes

DEAD_LETTERS_RECORDED = Counter(
    "tributary_hub_deadletters_total",
    "Dead letters recorded by the hub (from every consumer), by reason",
    ["reason"],
)


def samples_to_docs(retention_days: float | None) -> ToDocs:
    async def convert(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
        expire_at = utcnow() + timedelta(days=retention_days) if retention_days else None
        try:
            sb = SampleBatch.model_validate_json(message.body)
        except ValidationError as exc:
            raise refusal(exc, "sample_batch") from exc
        docs = []
        for s in sb.samples:
            t = format_time(s.t)
            docs.append(
                {
                    "_id": f"{sb.sid}|{t}",
                    "sid": sb.sid,
                    "source": sb.source,
                    "t": t,
                    "v": s.v,
                    "q": s.q,
                    "expire_at": expire_at,
                }
            )
        return docs

    return convert


def letters_to_docs(body_max_bytes: int, throttle: LogThrottle) -> ToDocs:
    async def convert(message: AbstractIncomingMessage) -> list[dict[str, Any]]:
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
