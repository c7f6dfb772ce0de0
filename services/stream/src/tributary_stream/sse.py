"""Server-sent events: one subscription per stream, `Last-Event-ID` resume, keep-alive comments.

A stream ends (after an `event: error` record when there is something to say) when its token expires or its API
key is revoked, when the subscription is refused or ends, and when the client does not read: its queue is bounded
like a websocket's (clients.py), and a stuck stream is cut off, its connection aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tributary_common.auth import Forbidden
from tributary_common.events import EVENT_ID_MAX
from tributary_common.http_auth import bearer_token
from tributary_common.http_errors import ApiError
from tributary_common.names import MAX_ROUTING_KEY, UNITOP_RE, NameError_, validate_pattern, validate_unitop_name
from tributary_common.openapi import error_responses
from tributary_common.stream_frames import UnitopSinceMark

from . import protocol
from .clients import Client, SseEncoder
from .limits import Refused, Ticket
from .service import StreamService
from .transports import abort_handle

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
TIME = {"format": "date-time"}
PATTERN_SCHEMA = {"pattern": r"^(\*|#|[A-Za-z0-9_-]+)(\.(\*|#|[A-Za-z0-9_-]+))*$", "maxLength": MAX_ROUTING_KEY}
# A unitop stream's SSE id: `{"items": {item: time}}` (JSON), or a bare time.
UNITOP_ID_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": 16384,
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
    service, client, ticket = await _open(request)
    try:
        return _events(service, client, ticket, pattern, since, last_event_id)
    except BaseException:
        _undo(service, client, ticket)
        raise


def _events(
    service: StreamService,
    client: Client,
    ticket: Ticket,
    pattern: str,
    since: str | None,
    last_event_id: str | None,
) -> StreamingResponse:
    try:
        validate_pattern(pattern)
    except NameError_ as exc:
        raise _invalid(str(exc), "/path/pattern") from None
    client.principal.require("events:read")
    if not client.principal.may_pattern(pattern):
        raise Forbidden(f"pattern {pattern!r} is outside the token's topics")
    resume = last_event_id or since
    where = "/header/Last-Event-ID" if last_event_id else "/query/since"
    try:
        parsed = None if resume is None else protocol.events_since(resume, where=where)
    except protocol.FrameError as exc:
        raise _invalid(exc.message, where) from None
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
        description='The `id` of the last record received (`{"items": {item: time}}`) or a time: resume after it',
        json_schema_extra=UNITOP_ID_SCHEMA,
    ),
) -> StreamingResponse:
    service, client, ticket = await _open(request)
    try:
        return _unitop(service, client, ticket, name, items, since, last_event_id)
    except BaseException:
        _undo(service, client, ticket)
        raise


def _unitop(
    service: StreamService,
    client: Client,
    ticket: Ticket,
    name: str,
    items: str | None,
    since: str | None,
    last_event_id: str | None,
) -> StreamingResponse:
    try:
        validate_unitop_name(name)
    except NameError_ as exc:
        raise _invalid(str(exc), "/path/name") from None
    client.principal.require("unitops:read")
    if not client.principal.may_unitop(name):
        raise Forbidden(f"unitop {name!r} is outside the token's unitops")
    wanted = tuple(i for i in (items or "").split(",") if i) or None
    parsed = None
    # Both are checked when both are given (a bad `since` is a 422 even though Last-Event-ID wins).
    where = "/query/since"
    try:
        if since is not None:
            parsed = protocol.unitop_since(since, where=where)
        if last_event_id is not None:
            where = "/header/Last-Event-ID"
            # Our SSE ids for samples are `{"items": {item: time}}`; a bare time works too.
            value = orjson.loads(last_event_id) if last_event_id.startswith("{") else last_event_id
            parsed = protocol.unitop_since(value, where=where)
    except (protocol.FrameError, orjson.JSONDecodeError) as exc:
        msg = exc.message if isinstance(exc, protocol.FrameError) else f"not valid JSON: {exc}"
        raise _invalid(msg, where) from None
    response = SseResponse(service, client, ticket)
    service.fanout.subscribe_unitop(
        client, protocol.SubscribeUnitop(id=SSE_SUB_ID, name=name, items=wanted, since=parsed)
    )
    return response


def _invalid(message: str, loc: str) -> ApiError:
    # The hub's answer to the same mistakes (a bad pattern, name or time): one contract for both edges.
    return ApiError(422, "invalid_request", message, [{"loc": loc, "msg": message}])


def _undo(service: StreamService, client: Client, ticket: Ticket) -> None:
    # A refused request gives everything back; an accepted one keeps it until its response ends.
    service.close_client(client)
    ticket.release()


async def _open(request: Request) -> tuple[StreamService, Client, Ticket]:
    service: StreamService = request.app.state.service
    settings = service.settings
    if service.draining:
        raise ApiError(503, "shutting_down", "the server is restarting; reconnect")
    try:
        ticket = service.admission.enter()
    except Refused as exc:
        service.metrics.refused.labels(exc.code).inc()
        raise ApiError(exc.status, exc.code, exc.message) from None
    try:
        principal, api_key = await service.authenticate(bearer_token(request, allow_query=True))
        request.state.principal = principal.subject  # for the access log
        ticket.admit(principal.subject)
    except Refused as exc:
        ticket.release()
        service.metrics.refused.labels(exc.code).inc()
        raise ApiError(exc.status, exc.code, exc.message) from None
    except BaseException:
        ticket.release()
        raise
    client = Client(
        principal,
        SseEncoder(),
        service.metrics,
        max_queue=settings.send_queue_max,
        max_bytes=settings.max_send_buffer_bytes,
        slow_timeout_s=settings.slow_client_timeout_s,
    )
    service.open_client(client, api_key)
    return service, client, ticket


async def _records(client: Client, keepalive_s: float) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    while True:
        frame = await client.next_frame(timeout=keepalive_s)
        if frame is not None:
            yield frame
            if not client.subs and not client.queue:
                return  # the subscription was refused or ended; its last event went out
            continue
        if client.closed or not client.subs:
            # Shut down, too slow, credentials ended, or the subscription was refused (its error went out).
            return
        yield ": keep-alive\n\n"


class SseResponse(StreamingResponse):
    """The records of one client. It owns the client: released however the response ends, and cut off (its
    connection aborted) when the client is killed, e.g. while stuck on a send to a peer that does not read."""

    def __init__(self, service: StreamService, client: Client, ticket: Ticket) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(
            _records(client, service.settings.sse_keepalive_s), media_type="text/event-stream", headers=headers
        )
        self.service = service
        self.client = client
        self.ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client
        abort: Callable[[], None] | None = abort_handle(scope)
        task = asyncio.ensure_future(super().__call__(scope, receive, send))
        client.on_abort = task.cancel
        try:
            await task
        except asyncio.CancelledError:
            if not client.killed:
                raise  # the server is stopping, not this client
            # Killed mid-send: nothing more can be written in order; drop the connection (buffer and all).
            if abort is not None:
                abort()
                await asyncio.sleep(0.05)  # let the transport report the loss before the server checks
        finally:
            client.on_abort = None
            _undo(self.service, client, self.ticket)
