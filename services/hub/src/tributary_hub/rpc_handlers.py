"""The hub's RPC methods on `tributary.rpc.hub` (models in `tributary_common.rpc_contracts`).

`events.history`: `since` inclusive, `until` inclusive, `after_id` resumes after that event's position (an
unknown id is `not_found`), `cursor` continues a previous page. `samples.history`: `since` exclusive, `until`
inclusive, rows by `(t, sid)`, read through the historian's `SeriesStore` (`historian.catchup`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tributary_common import rpc_contracts as rc
from tributary_common.events import CloudEvent
from tributary_common.names import InvalidName, validate_pattern
from tributary_common.rpc import RpcError, RpcServer

from . import cursors
from .apikeys import ApiKeyService
from .errors import ErrorKind, HubError
from .historian.catchup import sample_page
from .historian.times import from_iso, iso, to_datetime, to_us
from .history import EventHistory, EventQuery
from .series import SeriesStore
from .unitops import UnitopService

# The RPC edge of the domain errors: what is not listed is the caller's `invalid` request.
RPC_CODES: dict[ErrorKind, str] = {ErrorKind.NOT_FOUND: "not_found"}

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _rpc_error(exc: HubError) -> RpcError:
    return RpcError(RPC_CODES.get(exc.kind, "invalid"), exc.message)


def _mapped(handler: Handler) -> Handler:
    """`handler` answering its domain errors with their RPC codes."""

    async def run(params: dict[str, Any]) -> dict[str, Any]:
        try:
            return await handler(params)
        except HubError as exc:
            raise _rpc_error(exc) from exc

    return run


def _position(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    t, sid = cursors.decode(cursor)
    try:
        return from_iso(t), sid
    except ValueError as exc:
        raise RpcError("invalid", f"cursor is not one this method returned: {exc}") from exc


def register_rpc(
    server: RpcServer,
    history: EventHistory,
    series: SeriesStore,
    unitops: UnitopService,
    apikeys: ApiKeyService,
) -> None:
    async def events_history(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.EventsHistoryRequest.model_validate(params)
        try:
            validate_pattern(req.pattern)
        except InvalidName as exc:
            raise RpcError("invalid", str(exc)) from exc
        resumed = bool(req.cursor or req.after_id)
        query = await history.select(
            EventQuery(
                pattern=req.pattern,
                start=req.since if not resumed else None,
                end=req.until,
                end_inclusive=True,
                cursor=req.cursor,
                after_id=req.after_id,
            )
        )
        items, nxt = await history.page(query, req.limit)
        page = rc.EventsHistoryPage(items=[CloudEvent.model_validate(i) for i in items], next=nxt)
        # Catch-up replays what subscribers saw live: `publisher` only where the topic exposed it, never as null
        # (`page` leaves it out for everyone else: no admin view over RPC).
        events = [e.model_dump(mode="json", exclude=None if e.publisher else {"publisher"}) for e in page.items]
        return {"items": events, "next": page.next}

    async def samples_history(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.SamplesHistoryRequest.model_validate(params)
        rows, nxt = await sample_page(
            series,
            req.sids,
            since=to_us(req.since) if req.since else None,
            until=to_us(req.until) if req.until else None,
            position=_position(req.cursor),
            limit=req.limit,
        )
        items = [rc.SampleRow(sid=sid, t=to_datetime(p.t), v=p.v, q=p.q) for sid, p in rows]
        page = rc.SamplesHistoryPage(items=items, next=cursors.encode(iso(nxt[0]), nxt[1]) if nxt else None)
        return page.model_dump(mode="json")

    async def unitop_resolve(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.UnitopResolveRequest.model_validate(params)
        return (await unitops.resolve(req.name)).model_dump(mode="json")

    async def apikey_verify(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.ApiKeyVerifyRequest.model_validate(params)
        return rc.ApiKeyVerified(claims=await apikeys.claims(req.key, fresh=req.fresh)).model_dump(mode="json")

    server.register(rc.EVENTS_HISTORY, _mapped(events_history))
    server.register(rc.SAMPLES_HISTORY, _mapped(samples_history))
    server.register(rc.UNITOP_RESOLVE, _mapped(unitop_resolve))
    server.register(rc.APIKEY_VERIFY, apikey_verify)
