"""Server-sent events: the routes, one subscription per stream, `Last-Event-ID` resume (the response itself, its
keep-alives and its end: sse_response.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from tributary_common.auth import Forbidden
from tributary_common.events import EVENT_ID_MAX
from tributary_common.http_errors import ApiError
from tributary_common.names import MAX_ROUTING_KEY, UNITOP_RE, validate_pattern, validate_unitop_name
from tributary_common.openapi import error_responses
from tributary_common.stream_frames import UnitopSinceMark

from . import protocol
from .clients import MAX_ERROR_MESSAGE, Client
from .limits import Ticket
from .service import StreamService
from .sse_response import SseResponse, respond

router = APIRouter(tags=["stream"])
SSE_SUB_ID = "sse"
ERRORS = error_responses(
    (422, "Bad pattern, name, since or Last-Event-ID (`invalid_request`, as the hub answers)"),
    (401, "No or invalid token"),
    (403, "Token lacks the scope or pattern"),
    (429, "Too many open streams of this principal"),
    (503, "Too many connections, shutting down, or credentials cannot be checked now"),
)
# What each parameter accepts, in the document: each a 422 naming it otherwise (the checks stay ours, so the
# answer is the hub's `invalid_request` with the parameter's location).
TIME_MAX = 64
# A unitop stream's Last-Event-ID at most (our ids are `{"items": {item: time}}`).
UNITOP_ID_MAX = 16384
TIME = {"format": "date-time"}
PATTERN_SCHEMA = {"pattern": r"^(\*|#|[A-Za-z0-9_-]+)(\.(\*|#|[A-Za-z0-9_-]+))*$", "maxLength": MAX_ROUTING_KEY}
# A unitop stream's SSE id: `{"items": {item: time}}` (JSON), or a bare time.
UNITOP_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": UNITOP_ID_MAX,
    "anyOf": [
        TIME,
        {
            "pattern": r"^\{",
            "contentMediaType": "application/json",
            "contentSchema": UnitopSinceMark.model_json_schema(),
        },
    ],
}


@router.get(
    "/events/{pattern}",
    summary="Events whose routing key matches `pattern`, as server-sent events",
    response_class=StreamingResponse,
    responses=ERRORS,
)
async def events_stream(
    request: Request,
    pattern: str = Path(
        description="AMQP pattern over `<topic>.<subject>`, e.g. `orders.eu.#`", json_schema_extra=PATTERN_SCHEMA
    ),
    since: str | None = Query(
        default=None,
        min_length=1,
        max_length=EVENT_ID_MAX,
        description="A time (RFC 3339: events from it) or the last event id seen (events after it)",
    ),
    last_event_id: str | None = Header(
        default=None,
        alias="Last-Event-ID",
        min_length=1,
        max_length=EVENT_ID_MAX,
        description="The `id` of the last record received: resume after it (wins over `since`)",
    ),
) -> StreamingResponse:
    return await respond(request, lambda s, c, t: _events(s, c, t, pattern, since, last_event_id))


def _events(
    service: StreamService,
    client: Client,
    ticket: Ticket,
    pattern: str,
    since: str | None,
    last_event_id: str | None,
) -> StreamingResponse:
    with _invalid_at("/path/pattern"):
        protocol.checked_name(pattern, validate_pattern, "invalid_pattern")
    client.principal.require("events:read")
    if not client.principal.may_pattern(pattern):
        raise Forbidden(f"pattern {pattern!r} is outside the token's topics")
    resume = last_event_id or since
    where = "/header/Last-Event-ID" if last_event_id else "/query/since"
    with _invalid_at(where):
        parsed = None if resume is None else protocol.events_since(resume, where=where)
    response = SseResponse(service, client, ticket)
    service.fanout.subscribe_events(client, protocol.SubscribeEvents(id=SSE_SUB_ID, pattern=pattern, since=parsed))
    return response


@router.get(
    "/unitops/{name}/stream",
    summary="Samples of a unitop's items, as server-sent events",
    response_class=StreamingResponse,
    responses=ERRORS,
)
async def unitop_stream(
    request: Request,
    name: str = Path(description="Unitop name", json_schema_extra={"pattern": UNITOP_RE.pattern}),
    items: str | None = Query(default=None, max_length=16384, description="Comma-separated item names (default: all)"),
    since: str | None = Query(
        default=None,
        min_length=1,
        max_length=TIME_MAX,
        description="A time (RFC 3339): samples after it",
        json_schema_extra=TIME,
    ),
    last_event_id: str | None = Header(
        default=None,
        alias="Last-Event-ID",
        min_length=1,
        max_length=UNITOP_ID_MAX,
        description='The `id` of the last record received (`{"items": {item: time}}`) or a time: resume after it',
        json_schema_extra=UNITOP_ID_SCHEMA,
    ),
) -> StreamingResponse:
    return await respond(request, lambda s, c, t: _unitop(s, c, t, name, items, since, last_event_id))


def _unitop(
    service: StreamService,
    client: Client,
    ticket: Ticket,
    name: str,
    items: str | None,
    since: str | None,
    last_event_id: str | None,
) -> StreamingResponse:
    with _invalid_at("/path/name"):
        protocol.checked_name(name, validate_unitop_name, "invalid_unitop")
    client.principal.require("unitops:read")
    if not client.principal.may_unitop(name):
        raise Forbidden(f"unitop {name!r} is outside the token's unitops")
    wanted = tuple(i for i in (items or "").split(",") if i) or None
    parsed = None
    # Both are checked when both are given (a bad `since` is a 422 even though Last-Event-ID wins).
    if since is not None:
        with _invalid_at("/query/since"):
            parsed = protocol.unitop_since(since, where="/query/since")
    if last_event_id is not None:
        where = "/header/Last-Event-ID"
        with _invalid_at(where):
            parsed = protocol.unitop_since(_unitop_position(last_event_id), where=where)
    response = SseResponse(service, client, ticket)
    service.fanout.subscribe_unitop(
        client, protocol.SubscribeUnitop(id=SSE_SUB_ID, name=name, items=wanted, since=parsed)
    )
    return response


def _unitop_position(last_event_id: str) -> Any:
    # Our SSE ids for samples are `{"items": {item: time}}`; a bare time works too.
    if not last_event_id.startswith("{"):
        return last_event_id
    try:
        return orjson.loads(last_event_id)
    except orjson.JSONDecodeError as exc:
        raise protocol.FrameError("invalid_since", f"not valid JSON: {exc}") from None


@contextmanager
def _invalid_at(loc: str) -> Iterator[None]:
    """A `FrameError` about the request part at `loc` becomes the hub's answer to the same mistakes (a bad
    pattern, name or time): 422 `invalid_request`, one contract for both edges."""
    try:
        yield
    except protocol.FrameError as exc:
        # Cut as in an error frame: the message may quote what was sent (a whole unitop name from the path).
        message = exc.message if len(exc.message) <= MAX_ERROR_MESSAGE else exc.message[:MAX_ERROR_MESSAGE] + "..."
        raise ApiError(422, "invalid_request", message, [{"loc": loc, "msg": message}]) from None
