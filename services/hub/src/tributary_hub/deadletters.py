"""Dead letters kept for admins: what lands on `tributary.deadletters` becomes a document of the `deadletters`
collection (written by a recorder like events), listed, shown, replayed, deleted and purged through the API.

A stored letter (see `letter_document`):
- `_id`: the letter's `x-death-id` (32 hex, new at every dead-lettering; see tributary_common.deadletters), so a
  redelivered letter is kept once; a letter without one gets a hash of what it holds.
- `time` (when the hub recorded it; lists, cursors and time filters use it), `first_failure` (the header),
  `reason`, `detail`, `queue` (the queue it was consumed from: the letter's routing key), `exchange` and
  `routing_key` (where it had been published), `message_id`, `content_type`, `content_encoding`, `headers`
  (the original ones as JSON text, bounded), `replayed_from` (the letter a replay of which failed again).
- The body: kept whole up to `dead_letter_body_max_bytes` (default 1 MiB). A larger body keeps its `size`,
  `sha256` and its first PREVIEW_BYTES bytes (`truncated: true`); such a letter is replayed only with a
  corrected body given in the replay request.
- `replayed_at` / `replays`: a replay republishes, with publisher confirms, to the original exchange and
  routing key (only the exchanges of REPLAYABLE), then marks the letter replayed; it is kept until deleted
  or purged (`replayed=false` lists what is still to handle). A replay that fails again comes back as a new
  letter (new id, `replayed_from` = this one, same `first_failure`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from typing import Any

import aio_pika
import orjson
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from tributary_common import deadletters as dl
from tributary_common.amqp import CONTROL, EVENTS, SAMPLES
from tributary_common.amqp.delivery import Delivery
from tributary_common.timeutil import format_time, utcnow

from . import cursors
from .errors import Conflict, NotFound

LETTER_ID_RE = re.compile(r"^[0-9a-f]{32}$")
PREVIEW_BYTES = 4096
# Where a replay may publish: the exchanges consumers read from, never the default exchange (which would let a
# forged letter address any queue) nor tributary.dead itself.
REPLAYABLE = frozenset({EVENTS.name, SAMPLES.name, CONTROL.name})
REPLAYED_FROM = "x-replayed-from"
# Bounds on what is kept of headers: they come from any producer.
HEADER_KEYS_MAX = 64
HEADER_TEXT_MAX = 4096
HEADER_DEPTH_MAX = 8
FIELD_MAX = 255
SORT = [("time", 1), ("_id", 1)]
# What a listing shows (the body and headers only in the letter itself).
SUMMARY_FIELDS = (
    "time",
    "reason",
    "detail",
    "queue",
    "exchange",
    "routing_key",
    "first_failure",
    "message_id",
    "content_type",
    "size",
    "truncated",
    "replayed_at",
    "replays",
    "replayed_from",
)


def _text(value: Any, limit: int = FIELD_MAX) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:limit]


def _json_safe(value: Any, depth: int = 0) -> Any:
    """An AMQP header value as bounded JSON (bytes, decimals and times as text)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= HEADER_DEPTH_MAX:
        return "…"
    if isinstance(value, dict):
        return {str(k)[:FIELD_MAX]: _json_safe(v, depth + 1) for k, v in list(value.items())[:HEADER_KEYS_MAX]}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in value[:HEADER_KEYS_MAX]]
    if isinstance(value, dt.datetime):
        return format_time(value)
    return _text(value, HEADER_TEXT_MAX)


def _letter_id(message: Delivery, headers: dict[str, Any], sha256: str) -> str:
    given = headers.get(dl.LETTER_ID)
    if isinstance(given, str) and LETTER_ID_RE.fullmatch(given):
        return given
    # Not sent through tributary_common.deadletters: what it holds names it (a redelivery maps to the same).
    parts = [message.routing_key, message.message_id, *(str(headers.get(h)) for h in dl.HEADERS), sha256]
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:32]


def reason_of(headers: dict[str, Any]) -> str:
    raw = headers.get(dl.REASON)
    return raw if isinstance(raw, str) and dl.is_reason(raw) else "unknown"


def letter_document(message: Delivery, *, body_max_bytes: int) -> dict[str, Any]:
    headers: dict[str, Any] = dict(message.headers or {})
    # Our own dead-letter headers, else what the broker says of a letter it dead-lettered (delivery limit).
    fields = dl.broker_death(headers) | {h: headers[h] for h in dl.HEADERS if h in headers}
    body = message.body
    sha256 = hashlib.sha256(body).hexdigest()
    truncated = len(body) > body_max_bytes
    kept = {k: v for k, v in headers.items() if k not in dl.HEADERS}
    replayed_from = kept.get(REPLAYED_FROM)
    return {
        "_id": _letter_id(message, headers, sha256),
        "time": format_time(utcnow()),
        "reason": reason_of(fields),
        "detail": _text(fields.get(dl.DETAIL), dl.DETAIL_MAX),
        "queue": _text(message.routing_key) or "",
        "exchange": _text(fields.get(dl.ORIGINAL_EXCHANGE)) or "",
        "routing_key": _text(fields.get(dl.ORIGINAL_ROUTING_KEY)) or "",
        "first_failure": _text(fields.get(dl.FIRST_FAILURE), 64),
        "message_id": _text(message.message_id),
        "correlation_id": _text(message.correlation_id),
        "content_type": _text(message.content_type),
        "content_encoding": _text(message.content_encoding),
        "headers_json": orjson.dumps(_json_safe(dict(list(kept.items())[:HEADER_KEYS_MAX]))).decode(),
        "size": len(body),
        "sha256": sha256,
        "body": body[:PREVIEW_BYTES] if truncated else body,
        "truncated": truncated,
        "replayed_from": replayed_from
        if isinstance(replayed_from, str) and LETTER_ID_RE.fullmatch(replayed_from)
        else None,
        "replayed_at": None,
        "replays": 0,
    }


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": doc["_id"], **{f: doc.get(f) for f in SUMMARY_FIELDS}}


def full(doc: dict[str, Any]) -> dict[str, Any]:
    """The letter with its headers and body: as text when it is UTF-8, else base64."""
    out = summary(doc)
    body = bytes(doc.get("body") or b"")
    try:
        out["body_text"], out["body_base64"] = body.decode("utf-8"), None
    except UnicodeDecodeError:
        out["body_text"], out["body_base64"] = None, base64.b64encode(body).decode()
    out["sha256"] = doc.get("sha256")
    out["content_encoding"] = doc.get("content_encoding")
    out["correlation_id"] = doc.get("correlation_id")
    out["headers"] = orjson.loads(doc.get("headers_json") or "{}")
    return out


def letter_filter(
    *,
    reason: str | None = None,
    queue: str | None = None,
    start: str | None = None,
    end: str | None = None,
    replayed: bool | None = None,
    position: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Equality and range clauses only (FerretDB serves them all from indexes or cheaply)."""
    clauses: list[dict[str, Any]] = []
    if reason is not None:
        clauses.append({"reason": reason})
    if queue is not None:
        clauses.append({"queue": queue})
    time_range = {op: v for op, v in (("$gte", start), ("$lt", end)) if v is not None}
    if time_range:
        clauses.append({"time": time_range})
    if replayed is not None:
        clauses.append({"replays": {"$gt": 0}} if replayed else {"replays": 0})
    if position is not None:
        t, id_ = position
        clauses.append({"$or": [{"time": {"$gt": t}}, {"time": t, "_id": {"$gt": id_}}]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class DeadLetterStore:
    def __init__(self, collection: AsyncCollection[Any]) -> None:
        self.collection = collection

    async def page(self, query: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], str | None]:
        projection = {"body": 0, "headers_json": 0}
        docs = await self.collection.find(query, projection).sort(SORT).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = cursors.encode(docs[-1]["time"], docs[-1]["_id"]) if more and docs else None
        return [summary(d) for d in docs], nxt

    async def get(self, letter_id: str) -> dict[str, Any]:
        doc: dict[str, Any] | None = await self.collection.find_one({"_id": letter_id})
        if doc is None:
            raise NotFound(f"no dead letter {letter_id!r}", code="unknown_dead_letter")
        return doc

    async def delete(self, letter_id: str) -> None:
        result = await self.collection.delete_one({"_id": letter_id})
        if result.deleted_count == 0:
            raise NotFound(f"no dead letter {letter_id!r}", code="unknown_dead_letter")

    async def purge(self, query: dict[str, Any]) -> int:
        result = await self.collection.delete_many(query)
        return int(result.deleted_count)

    async def mark_replayed(self, letter_id: str) -> dict[str, Any]:
        doc: dict[str, Any] | None = await self.collection.find_one_and_update(
            {"_id": letter_id},
            {"$set": {"replayed_at": format_time(utcnow())}, "$inc": {"replays": 1}},
            # No projection: FerretDB 1.24 does not implement one on findAndModify.
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # deleted while it was being replayed: the replay stands
            raise NotFound(f"dead letter {letter_id!r} was deleted during its replay", code="unknown_dead_letter")
        return doc


def replay_message(
    doc: dict[str, Any], body: bytes | None = None, content_type: str | None = None
) -> tuple[str, str, aio_pika.Message]:
    """The exchange, routing key and message that republish a letter (`body`: a corrected one instead)."""
    exchange = doc.get("exchange") or ""
    if exchange not in REPLAYABLE:
        raise Conflict(
            f"dead letters from exchange {exchange!r} cannot be replayed (only {sorted(REPLAYABLE)})",
            code="not_replayable",
        )
    if body is None and doc.get("truncated"):
        raise Conflict(
            f"only the first {PREVIEW_BYTES} of the letter's {doc.get('size')} bytes were kept; "
            "replay it with a corrected body",
            code="body_truncated",
        )
    headers: dict[str, Any] = orjson.loads(doc.get("headers_json") or "{}")
    headers[REPLAYED_FROM] = doc["_id"]
    if doc.get("first_failure"):
        # A replay that fails again keeps the time of the first failure.
        headers[dl.FIRST_FAILURE] = doc["first_failure"]
    message = aio_pika.Message(
        bytes(doc.get("body") or b"") if body is None else body,
        headers=headers,
        content_type=content_type if body is not None else doc.get("content_type"),
        content_encoding=None if body is not None else doc.get("content_encoding"),
        message_id=doc.get("message_id"),
        correlation_id=doc.get("correlation_id"),
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    return exchange, doc.get("routing_key") or "", message
