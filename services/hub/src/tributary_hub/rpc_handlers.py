"""The hub's RPC methods on `tributary.rpc.hub` (models in `tributary_common.rpc_contracts`).

`events.history`: `since` inclusive, `until` inclusive, `after_id` resumes after that event's position (an
unknown id is `not_found`), `cursor` continues a previous page. `samples.history`: `since` exclusive, `until`
inclusive, rows by `(t, sid)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tributary_common import rpc_contracts as rc
from tributary_common.events import CloudEvent
from tributary_common.names import NameError_, validate_pattern
from tributary_common.rpc import RpcError, RpcServer
from tributary_common.timeutil import format_time

from . import cursors
from .errors import HubError
from .samples_history import build_filter as samples_filter

if TYPE_CHECKING:
    from .runtime import Hub


def _rpc_error(exc: HubError) -> RpcError:
    return RpcError("not_found" if exc.status == 404 else "invalid", exc.message)


def register_rpc(server: RpcServer, hub: Hub) -> None:
    async def events_history(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.EventsHistoryRequest.model_validate(params)
        try:
            validate_pattern(req.pattern)
            position: tuple[str, ...] | None = None
            if req.cursor:
                position = cursors.decode(req.cursor)
            elif req.after_id:
                position = await hub.history.position_of(req.after_id, req.pattern)
            query = await hub.history.filter(
                pattern=req.pattern,
                start=format_time(req.since) if req.since and position is None else None,
                end=format_time(req.until) if req.until else None,
                end_inclusive=True,
                position=(position[0], position[1]) if position else None,
            )
            items, nxt = await hub.history.page(query, req.limit)
        except NameError_ as exc:
            raise RpcError("invalid", str(exc)) from exc
        except HubError as exc:
            raise _rpc_error(exc) from exc
        page = rc.EventsHistoryPage(items=[CloudEvent.model_validate(i) for i in items], next=nxt)
        # Catch-up replays what subscribers saw live: `publisher` only where the topic exposed it, never as null
        # (`page` leaves it out for everyone else: no admin view over RPC).
        events = [e.model_dump(mode="json", exclude=None if e.publisher else {"publisher"}) for e in page.items]
        return {"items": events, "next": page.next}

    async def samples_history(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.SamplesHistoryRequest.model_validate(params)
        try:
            position = cursors.decode(req.cursor) if req.cursor else None
            query = samples_filter(
                req.sids,
                start=format_time(req.since) if req.since else None,
                start_exclusive=True,
                end=format_time(req.until) if req.until else None,
                end_inclusive=True,
                position=(position[0], position[1]) if position else None,
            )
            rows, nxt = await hub.samples.page(query, req.limit)
        except HubError as exc:
            raise _rpc_error(exc) from exc
        return rc.SamplesHistoryPage(items=[rc.SampleRow.model_validate(r) for r in rows], next=nxt).model_dump(
            mode="json"
        )

    async def unitop_resolve(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.UnitopResolveRequest.model_validate(params)
        try:
            resolved = await hub.unitops.resolve(req.name)
        except HubError as exc:
            raise _rpc_error(exc) from exc
        return resolved.model_dump(mode="json")

    async def apikey_verify(params: dict[str, Any]) -> dict[str, Any]:
        req = rc.ApiKeyVerifyRequest.model_validate(params)
        return rc.ApiKeyVerified(claims=await hub.apikeys.claims(req.key, fresh=req.fresh)).model_dump(mode="json")

    server.register(rc.EVENTS_HISTORY, events_history)
    server.register(rc.SAMPLES_HISTORY, samples_history)
    server.register(rc.UNITOP_RESOLVE, unitop_resolve)
    server.register(rc.APIKEY_VERIFY, apikey_verify)
