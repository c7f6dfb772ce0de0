"""`/deadletters` (admin): what consumers could not use, listed, shown, replayed, deleted and purged.

What is stored, the body limit and the replay semantics: see ../deadletters.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor

from tributary_common.auth import Principal
from tributary_common.deadletters import REASON_PATTERN
from tributary_common.http_errors import ErrorBody
from tributary_common.timeutil import format_time

from .. import cursors
from ..deadletters import LETTER_ID_RE, full, letter_filter, replay_message, summary
from ..errors import Invalid, UnsupportedMedia
from .contract import documented
from .deps import cursor_query, hub_of, media_type, query_time, read_body, require, scope_doc, time_query

router = APIRouter(tags=["dead letters"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid credentials"},
    403: {"model": ErrorBody, "description": "Not an admin"},
    422: {"model": ErrorBody, "description": "A malformed id, filter or cursor"},
    503: {"model": ErrorBody, "description": "The database (or, for a replay, the broker) did not answer"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such dead letter"}}
QUEUE_MAX = 255  # an AMQP short string
# A corrected body's Content-Type becomes the message's `content_type`, an AMQP short string (at most 255 bytes):
# `type/subtype` in the characters RFC 9110 allows (parameters are dropped, as `media_type` reads it).
REPLAY_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


class LetterIdConvertor(Convertor[str]):
    """Routes match only well-formed ids, so `/deadletters/{id}` never takes `<id>:replay` (a 405 for it would
    name GET and DELETE); any other segment is a 404."""

    regex = LETTER_ID_RE.pattern.strip("^$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("deadletter_id", LetterIdConvertor())

LetterId = Annotated[
    str, Path(description="The letter's id (32 hex)", pattern=LETTER_ID_RE.pattern, min_length=32, max_length=32)
]


class DeadLetterSummary(BaseModel):
    id: str
    time: str
    reason: str
    detail: str | None = None
    queue: str
    exchange: str
    routing_key: str
    first_failure: str | None = None
    message_id: str | None = None
    content_type: str | None = None
    size: int
    truncated: bool
    replayed_at: str | None = None
    replays: int
    replayed_from: str | None = None


class DeadLetter(DeadLetterSummary):
    content_encoding: str | None = None
    correlation_id: str | None = None
    sha256: str | None = None
    headers: dict[str, Any]
    body_text: str | None = None
    body_base64: str | None = None


class DeadLetterPage(BaseModel):
    items: list[DeadLetterSummary]
    next: str | None = None


class Purged(BaseModel):
    deleted: int


def bound(value: str | None, name: str) -> datetime | None:
    """A time bound: absent is no bound, but an empty string is not a date-time (the document says so)."""
    if value == "":
        raise Invalid(
            f"{name} is empty; leave it out or give an RFC 3339 time",
            [{"loc": f"/query/{name}", "msg": "not a date-time"}],
            code="invalid_request",
        )
    return query_time(value, name)


def _filters(
    reason: str | None = Query(
        None, description="A reason, e.g. not_a_cloudevent", pattern=REASON_PATTERN.pattern, max_length=64
    ),
    queue: str | None = Query(None, description="The queue the letter was consumed from", max_length=QUEUE_MAX),
    replayed: bool | None = Query(None, description="Only letters replayed (true) or not yet (false)"),
) -> dict[str, Any]:
    return {"reason": reason, "queue": queue, "replayed": replayed}


@router.get(
    "/deadletters",
    response_model=DeadLetterPage,
    summary="Dead letters, oldest first (cursor pages)",
    **documented("admin", ERRORS),
)
async def list_letters(
    request: Request,
    filters: dict[str, Any] = Depends(_filters),
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    limit: int | None = Query(None, ge=1, le=10_000, description="Page size (at most the history maximum)"),
    cursor: str | None = cursor_query(2),
    principal: Principal = Depends(require("admin")),
) -> DeadLetterPage:
    """Messages that a consumer could not use, by the time the hub recorded them, without their bodies.
    Filters: `reason`, `queue`, `start` (inclusive) and `end` (exclusive) RFC 3339 times, `replayed`. Pass `next`
    back as `cursor`. Requires `admin`."""
    hub = hub_of(request)
    t0, t1 = bound(start, "start"), bound(end, "end")
    position = cursors.decode(cursor) if cursor is not None else None  # "" is not a cursor either
    query = letter_filter(
        **filters,
        start=format_time(t0) if t0 else None,
        end=format_time(t1) if t1 else None,
        position=(position[0], position[1]) if position else None,
    )
    size = min(limit or hub.settings.history_default_limit, hub.settings.history_max_limit)
    items, nxt = await hub.deadletters.page(query, size)
    return DeadLetterPage.model_validate({"items": items, "next": nxt})


@router.delete(
    "/deadletters",
    response_model=Purged,
    summary="Purge dead letters",
    **documented("admin", ERRORS),
)
async def purge_letters(
    request: Request,
    filters: dict[str, Any] = Depends(_filters),
    before: str = Query(
        description="RFC 3339: letters recorded before this time",
        min_length=1,
        max_length=64,
        json_schema_extra={"format": "date-time"},
    ),
    principal: Principal = Depends(require("admin")),
) -> Purged:
    """Deletes every letter recorded before `before` (required, RFC 3339: a purge is always bounded; the current
    time purges everything) that matches the optional `reason`, `queue` and `replayed`. Answers how many were
    deleted. Requires `admin`."""
    t1 = bound(before, "before")
    assert t1 is not None  # bound() refuses the empty string
    query = letter_filter(**filters, end=format_time(t1))
    return Purged(deleted=await hub_of(request).deadletters.purge(query))


@router.get(
    "/deadletters/{letter_id:deadletter_id}",
    response_model=DeadLetter,
    summary="One dead letter with its headers and body",
    description="The body as `body_text` when it is UTF-8, else `body_base64`; for a `truncated` letter only its "
    "first bytes (its `size` and `sha256` are the whole body's). Requires `admin`.",
    **documented("admin", {**ERRORS, **NOT_FOUND}),
)
async def get_letter(
    request: Request, letter_id: LetterId, principal: Principal = Depends(require("admin"))
) -> DeadLetter:
    return DeadLetter.model_validate(full(await hub_of(request).deadletters.get(letter_id)))


@router.post(
    "/deadletters/{letter_id:deadletter_id}:replay",
    response_model=DeadLetterSummary,
    summary="Republish a dead letter to where it was published",
    description="Publishes the letter, with publisher confirms, to its original exchange and routing key (its "
    "headers kept, plus `x-replayed-from`), then marks it replayed (`replayed_at`, `replays`); it stays listed "
    "until deleted or purged. A request body, if any, is published instead of the stored one (a corrected "
    "message; its Content-Type is the message's). If it fails again it comes back as a new letter. Requires "
    "`admin`.",
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "Not replayable: truncated body without a correction, or an "
            "exchange replays may not publish to",
        },
        413: {"model": ErrorBody, "description": "The corrected body is over the limit"},
        415: {"model": ErrorBody, "description": "The corrected body's Content-Type is not a `type/subtype`"},
    },
    openapi_extra={
        **scope_doc("admin"),
        "requestBody": {
            "required": False,
            "content": {
                "application/cloudevents+json": {
                    "schema": {"type": "object"},
                    "example": {
                        "specversion": "1.0",
                        "id": "reading-0001",
                        "source": "/plant1/line3",
                        "type": "sensor-reading",
                        "subject": "plant1.line3",
                        "time": "2026-11-30T10:00:00.000000Z",
                        "dataschema": "/topics/sensor-reading/schemas/1",
                        "datacontenttype": "application/json",
                        "data": {"value": 21.5, "unit": "C"},
                    },
                },
                "*/*": {},
            },
        },
    },
)
async def replay_letter(
    request: Request, letter_id: LetterId, principal: Principal = Depends(require("admin"))
) -> DeadLetterSummary:
    hub = hub_of(request)
    body = await read_body(request, hub.settings.dead_letter_body_max_bytes) or None
    kind = media_type(request) or None
    if body is not None and kind is not None and not REPLAY_MEDIA_TYPE.fullmatch(kind):
        # Else the broker client cannot encode the message (over 255 bytes, or not ASCII): a 500.
        raise UnsupportedMedia(
            f"Content-Type {kind[:64]!r} cannot be a message's content type: send type/subtype, at most 255 "
            "ASCII characters",
            [{"loc": "/headers/content-type", "msg": "expected type/subtype"}],
        )
    doc = await hub.deadletters.get(letter_id)
    exchange, routing_key, message = replay_message(doc, body, kind)
    assert hub.publisher is not None
    await hub.publisher.republish(exchange, routing_key, message)
    return DeadLetterSummary.model_validate(summary(await hub.deadletters.mark_replayed(letter_id)))


@router.delete(
    "/deadletters/{letter_id:deadletter_id}",
    status_code=204,
    summary="Delete a dead letter",
    **documented("admin", {**ERRORS, **NOT_FOUND}),
)
async def delete_letter(
    request: Request, letter_id: LetterId, principal: Principal = Depends(require("admin"))
) -> Response:
    await hub_of(request).deadletters.delete(letter_id)
    return Response(status_code=204)
