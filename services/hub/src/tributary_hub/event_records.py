"""Event storage: a CloudEvent from the events queue as its history document, with the expiry of its topic's
retention and who published it."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from tributary_common import deadletters
from tributary_common.amqp.delivery import Delivery
from tributary_common.events import PUBLISHER_HEADER, PUBLISHER_MAX, CloudEvent
from tributary_common.timeutil import format_time
from tributary_common.ttl_cache import TtlCache

from .documents import TopicDoc, event_key
from .recording import ToDocs, Unrecordable, refusal

log = logging.getLogger("tributary_hub.recorder")  # the recorders' log, whichever part writes


class TopicRetention:
    """`expire_at` for a topic's events, from its `retention_days` (read at most every `ttl_s`)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._known: TtlCache[str, float | None] = TtlCache(ttl_s)

    async def days(self, topic: str) -> float | None:
        hit = self._known.get(topic)
        if hit is not None:
            return hit.value
        # The raw field, so that a topic document that no longer parses cannot stop the recorder.
        raw = await TopicDoc.get_pymongo_collection().find_one({"_id": topic}, {"retention_days": 1})
        value = raw.get("retention_days") if raw is not None else None
        days = float(value) if isinstance(value, int | float) and value > 0 else None
        self._known.put(topic, days)
        return days

    async def expire_at(self, topic: str, time_: datetime) -> datetime | None:
        days = await self.days(topic)
        return None if days is None else time_ + timedelta(days=days)


def publisher_header(headers: Any) -> str | None:
    """The `tributary-publisher` header the hub sets; anything else (absent, not text, unbounded) is None."""
    value = headers.get(PUBLISHER_HEADER) if isinstance(headers, dict) else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) and 0 < len(value) <= PUBLISHER_MAX else None


def event_document(event: CloudEvent, expire_at: datetime | None, publisher: str | None = None) -> dict[str, Any]:
    """`publisher` (who published it, from the AMQP header) is kept beside the envelope; `publisher_exposed`
    says whether subscribers saw it (the envelope carried it): history shows it to others only then."""
    return {
        "_id": event_key(event.type, event.id),
        "eid": event.id,
        "key": event.routing_key,
        "type": event.type,
        "subject": event.subject,
        "time": format_time(event.time),
        "source": event.source,
        "dataschema": event.dataschema,
        "data_json": orjson.dumps(event.data).decode(),
        "traceparent": event.traceparent,
        "publisher": publisher or event.publisher,
        "publisher_exposed": event.publisher is not None,
        "expire_at": expire_at,
    }


def events_to_docs(retention: TopicRetention, max_event_bytes: int) -> ToDocs:
    async def convert(message: Delivery) -> list[dict[str, Any]]:
        # The hub refuses such events at publish; this catches anything that reached the exchange otherwise.
        if len(message.body) > max_event_bytes:
            raise Unrecordable(deadletters.TOO_LARGE, f"{len(message.body)} bytes, over the limit of {max_event_bytes}")
        try:
            event = CloudEvent.model_validate_json(message.body)
        except ValidationError as exc:
            raise refusal(exc, "cloudevent") from exc
        while True:
            try:
                expire_at = await retention.expire_at(event.type, event.time)
                break
            except PyMongoError as exc:
                log.warning("events recorder: topic lookup failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1)
        return [event_document(event, expire_at, publisher_header(message.headers))]

    return convert
