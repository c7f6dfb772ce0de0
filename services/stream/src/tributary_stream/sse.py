"""Server-sent events: one subscription per stream, `Last-Event-ID` resume, keep-alive comments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from tributary_common.auth import Forbidden
from tributary_common.http_auth import bearer_token
from tributary_common.http_errors import ApiError, ErrorBody
from tributary_common.names import NameError_, validate_pattern, validate_unitop_name

from . import protocol
from .clients import Client, SseEncoder
from .service import StreamService

router = APIRouter(tags=["stream"])
SSE_SUB_ID = "sse"
ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Bad pattern, name or since"),
        (401, "No or invalid token"),
        (403, "Token lacks the scope or pattern"),
        (503, "Too many connections, or shutting down"),
    )
}


@router.get(
    "/events/{pattern}",
    summary="Events whose routing key matches `pattern`, as server-sent events",
    response_class=StreamingResponse,
    responses=ERRORS,
)
async def events_stream(
    request: Request,
    pattern: str = Path(description="AMQP pattern over `<topic>.<subject>`, e.g. `orders.eu.#`"),
    since: str | None = Query(default=None, description="A time (RFC 3339) or the last event id seen"),
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
) -> StreamingResponse:
    service, client = await _open(request)
    try:
        validate_pattern(pattern)
    except NameError_ as exc:
        raise ApiError(400, "invalid_pattern", str(exc), [{"loc": "/path/pattern", "msg": str(exc)}]) from None
    client.principal.require("events:read")
    if not client.principal.may_pattern(pattern):
        raise Forbidden(f"pattern {pattern!r} is outside the token's topics")
    resume = last_event_id or since
    where = "/header/Last-Event-ID" if last_event_id else "/query/since"
    try:
        parsed = None if resume is None else protocol.events_since(resume, where=where)
    except protocol.FrameError as exc:
        raise ApiError(400, exc.code, exc.message, [{"loc": where, "msg": exc.message}]) from None
    service.fanout.add_client(client)
    service.fanout.subscribe_events(client, protocol.SubscribeEvents(id=SSE_SUB_ID, pattern=pattern, since=parsed))
    return _stream(request, service, client)


@router.get(
    "/unitops/{name}/stream",
    summary="Samples of a unitop's items, as server-sent events",
    response_class=StreamingResponse,
    responses=ERRORS,
)
async def unitop_stream(
    request: Request,
    name: str = Path(description="Unitop name"),
    items: str | None = Query(default=None, description="Comma-separated item names (default: all)"),
    since: str | None = Query(default=None, description="A time (RFC 3339): samples after it"),
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
) -> StreamingResponse:
    service, client = await _open(request)
    try:
        validate_unitop_name(name)
    except NameError_ as exc:
        raise ApiError(400, "invalid_unitop", str(exc), [{"loc": "/path/name", "msg": str(exc)}]) from None
    client.principal.require("unitops:read")
    if not client.principal.may_unitop(name):
        raise Forbidden(f"unitop {name!r} is outside the token's unitops")
    wanted = tuple(i for i in (items or "").split(",") if i) or None
    parsed = None
    where = "/header/Last-Event-ID" if last_event_id else "/query/since"
    try:
        if last_event_id:
            # Our SSE ids for samples are `{"items": {item: time}}`; a bare time works too.
            value = orjson.loads(last_event_id) if last_event_id.startswith("{") else last_event_id
            parsed = protocol.unitop_since(value, where=where)
        elif since:
            parsed = protocol.unitop_since(since, where=where)
    except (protocol.FrameError, orjson.JSONDecodeError) as exc:
        msg = exc.message if isinstance(exc, protocol.FrameError) else f"not valid JSON: {exc}"
        raise ApiError(400, "invalid_since", msg, [{"loc": where, "msg": msg}]) from None
    service.fanout.add_client(client)
    service.fanout.subscribe_unitop(
        client, protocol.SubscribeUnitop(id=SSE_SUB_ID, name=name, items=wanted, since=parsed)
    )
    return _stream(request, service, client)


async def _open(request: Request) -> tuple[StreamService, Client]:
    service: StreamService = request.app.state.service
    settings = service.settings
    if service.draining:
        raise ApiError(503, "shutting_down", "the server is restarting; reconnect")
    if len(service.fanout.clients) >= settings.max_connections:
        service.metrics.refused.labels("too_many_connections").inc()
        raise ApiError(503, "too_many_connections", f"at most {settings.max_connections} connections")
    principal = await service.auth.authenticate(bearer_token(request, allow_query=True))
    client = Client(
        principal,
        SseEncoder(),
        service.metrics,
        max_queue=settings.send_queue_max,
        slow_timeout_s=settings.slow_client_timeout_s,
    )
    return service, client


def _stream(request: Request, service: StreamService, client: Client) -> StreamingResponse:
    keepalive = service.settings.sse_keepalive_s

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            while True:
                frame = await client.next_frame(timeout=keepalive)
                if frame is not None:
                    yield frame
                    if not client.subs and not client.queue:
                        return  # the subscription was refused or ended; its last event went out
                    continue
                if client.closed or not client.subs:
                    # Shut down, too slow, or the subscription was refused (its error event went out).
                    return
                yield ": keep-alive\n\n"
        finally:
            service.fanout.remove_client(client)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
