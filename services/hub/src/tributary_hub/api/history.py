"""`/topics/{topic}/events` (GET): history pages or exports by Accept; `/topics/{topic}/events:latest`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from tributary_common.auth import Principal
from tributary_common.http_errors import ErrorBody

from ..history import EventQuery, export_events
from .access import ERRORS, history_pattern, see_topic
from .contract import documented
from .deps import cursor_query, hub_of, negotiate, query_time, require, scope_doc, streamed, time_query
from .models import SUBJECT_MAX, SUBJECT_PATTERN, EventPage, LatestEvents

router = APIRouter(tags=["events"])


@router.get(
    "/topics/{topic}/events",
    response_model=EventPage,
    summary="History (a page of JSON), or an export streamed as CSV / JSON Lines / NDJSON chosen by Accept",
    description="Oldest first by position `(time, id)`. `subject` is an AMQP pattern under the topic (`*` one "
    "segment, `#` zero or more: the broker's semantics). `start` inclusive, `end` exclusive (RFC 3339). JSON answers "
    "`{items, next}`; pass `next` back as `cursor`. With `Accept: text/csv`, `application/jsonl` or "
    "`application/x-ndjson` the whole selection is streamed (from `cursor` if given; `limit` is ignored). Requires "
    "`events:read` and a topics ACL covering the pattern.",
    responses={
        **ERRORS,
        406: {"model": ErrorBody, "description": "Unsupported Accept"},
        200: {"content": {"text/csv": {}, "application/jsonl": {}, "application/x-ndjson": {}}},
    },
    openapi_extra=scope_doc("events:read"),
)
async def history(
    topic: str,
    request: Request,
    subject: str | None = Query(
        None,
        description="AMQP pattern over the subject",
        examples=["plant1.#"],
        max_length=SUBJECT_MAX,
        json_schema_extra=SUBJECT_PATTERN,
    ),
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    limit: int | None = Query(None, ge=1, description="Page size (JSON only)"),
    cursor: str | None = cursor_query(2),
    principal: Principal = Depends(require("events:read")),
) -> EventPage | StreamingResponse:
    hub = hub_of(request)
    see_topic(principal, topic)
    pattern = history_pattern(principal, topic, subject)
    fmt = negotiate(request)
    t0, t1 = query_time(start, "start"), query_time(end, "end")
    await hub.topics.resolve(topic)  # 404 for an unknown topic
    query = await hub.history.select(EventQuery(pattern=pattern, topic=topic, start=t0, end=t1, cursor=cursor))
    if fmt == "json":
        size = min(limit or hub.settings.history_default_limit, hub.settings.history_max_limit)
        items, nxt = await hub.history.page(query, size, admin=principal.is_admin)
        return EventPage(items=items, next=nxt)
    rows = hub.history.stream(query, admin=principal.is_admin)
    chunks = export_events(fmt, rows, hub.settings.export_chunk_rows, publisher=principal.is_admin)
    return streamed(chunks, fmt, f"{topic}.{fmt}")


@router.get(
    "/topics/{topic}/events:latest",
    response_model=LatestEvents,
    summary="The newest event of each subject (optionally under a subject pattern)",
    **documented("events:read", ERRORS),
)
async def latest(
    topic: str,
    request: Request,
    subject: str | None = Query(
        None, description="AMQP pattern over the subject", max_length=SUBJECT_MAX, json_schema_extra=SUBJECT_PATTERN
    ),
    principal: Principal = Depends(require("events:read")),
) -> LatestEvents:
    hub = hub_of(request)
    see_topic(principal, topic)
    pattern = history_pattern(principal, topic, subject)
    await hub.topics.resolve(topic)
    return LatestEvents(items=await hub.history.latest(topic, pattern, admin=principal.is_admin))
