"""`/audit`: administrative changes, newest first (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from tributary_common.auth import Principal

from .contract import documented, errors
from .deps import cursor_query, hub_of, query_time, require, time_query
from .models import AuditPage

router = APIRouter(tags=["audit"])
NAME = {"pattern": r"^[A-Za-z0-9_.:@/|-]{1,256}$"}


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Administrative changes: who, what, when, before and after",
    description="Creations, changes and deletions of topics (and their schema versions), unitops and API keys, "
    "newest first. `before`/`after` are the resource as the API showed it, secrets in unitop params masked; an API "
    "key's secret is never there. `action` is a full action (`unitop.updated`) or a kind (`unitop`). `start` "
    "inclusive, `end` exclusive. Pass `next` back as `cursor`. Requires `admin`.",
    **documented("admin", errors((403, "Not an admin"))),
)
async def list_audit(
    request: Request,
    actor: str | None = Query(None, max_length=256, description="Only changes by this subject"),
    action: str | None = Query(None, max_length=64, pattern=r"^(topic|unitop|apikey)(\.[a-z_]{1,32})?$"),
    target: str | None = Query(None, max_length=256, description="Only changes of this topic, unitop or key id"),
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = cursor_query(2),
    principal: Principal = Depends(require("admin")),
) -> AuditPage:
    items, nxt = await hub_of(request).audit.page(
        limit=limit,
        cursor=cursor,
        actor=actor,
        action=action,
        target=target,
        start=query_time(start, "start"),
        end=query_time(end, "end"),
    )
    return AuditPage.model_validate({"items": items, "next": nxt})
