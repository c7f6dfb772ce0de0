"""`/unitops` (CRUD and search), `/unitops/{name}/samples` (raw and aligned history), `/sources`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from tributary_common.auth import Principal
from tributary_common.names import SEGMENT_RE
from tributary_common.unitops import Unitop

from ..errors import Invalid
from ..exports import json_items
from ..historian.params import boundary_of
from ..unitop_samples import select_items
from .access import UNITOP, may_unitop
from .contract import JSON_BODY, documented, errors
from .deps import (
    body_doc,
    cursor_query,
    hub_of,
    json_model,
    negotiate,
    query_time,
    require,
    streamed,
    time_query,
)
from .historian import ITEMS, raw_extras
from .models import SourceList, UnitopList, UnitopView

router = APIRouter(tags=["unitops"])
ERRORS = errors(*UNITOP)
MAX_INTERVAL_S = 315_576_000_000  # 10,000 years: any range's one point
UNITOP_EXAMPLE = Unitop.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]


@router.post(
    "/unitops",
    status_code=201,
    response_model=UnitopView,
    summary="Create a unitop",
    description="Each item's `params` are validated against the subscription JSON Schema its source announced "
    "(422 `invalid_items` with JSON pointers; an unannounced source is an error too). The change is published on "
    "`tributary.control` as `unitop.<name>`; `record: true` unitops get demand heartbeats so ingest reads them. "
    'Fields the source marks `x-tributary-secret` (credentials) take `{"secret": "NAME"}`, resolved by ingest from '
    "its secrets folder or environment; a literal value there is a 422 naming the field, and views and change "
    'messages show any stored literal as `"***"`.',
    **documented(
        "unitops:write",
        errors(UNITOP[0], *JSON_BODY, (409, "Exists"), (422, "Invalid unitop or items")),
        body_doc(Unitop, {"pump": UNITOP_EXAMPLE}),
    ),
)
async def create_unitop(request: Request, principal: Principal = Depends(require("unitops:write"))) -> UnitopView:
    hub = hub_of(request)
    body = await json_model(request, Unitop, hub.settings.max_body_bytes)
    may_unitop(principal, body.name)
    view = await hub.unitops.create(body, by=principal.subject)
    await hub.audit.record(principal.subject, "unitop.created", body.name, None, view)
    return UnitopView.model_validate(view)


@router.get(
    "/unitops",
    response_model=UnitopList,
    summary="List and search unitops",
    description="`prefix` matches the start of the name; every other `meta.<key>=<value>` query parameter must equal "
    "that meta value (strings, numbers and booleans are matched by value). Pages by name; pass `next` as `cursor`.",
    **documented("unitops:read", errors(UNITOP[0])),
)
async def list_unitops(
    request: Request,
    prefix: str | None = Query(None, max_length=128, examples=["pump-"]),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = cursor_query(1),
    principal: Principal = Depends(require("unitops:read")),
) -> UnitopList:
    meta: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("meta."):
            name = key[5:]
            if not SEGMENT_RE.fullmatch(name):
                raise Invalid(
                    f"meta key {name!r} must be of A-Z a-z 0-9 _ -",
                    [{"loc": f"/query/{key}", "msg": "bad key"}],
                    code="invalid_request",
                )
            meta[name] = value
        elif key not in ("prefix", "limit", "cursor"):
            raise Invalid(
                f"unknown query parameter {key!r}", [{"loc": f"/query/{key}", "msg": "unknown"}], code="invalid_request"
            )
    items, nxt = await hub_of(request).unitops.search(
        prefix=prefix, meta=meta, limit=limit, cursor=cursor, allowed=principal.may_unitop
    )
    return UnitopList.model_validate({"items": items, "next": nxt})


@router.get(
    "/unitops/{name}",
    response_model=UnitopView,
    summary="One unitop (items with their sids)",
    **documented("unitops:read", ERRORS),
)
async def get_unitop(
    name: str, request: Request, principal: Principal = Depends(require("unitops:read"))
) -> UnitopView:
    may_unitop(principal, name)
    return UnitopView.model_validate(await hub_of(request).unitops.get(name))


@router.put(
    "/unitops/{name}",
    response_model=UnitopView,
    summary="Replace a unitop",
    **documented("unitops:write", errors(*UNITOP, *JSON_BODY), body_doc(Unitop, {"pump": UNITOP_EXAMPLE})),
)
async def put_unitop(
    name: str, request: Request, principal: Principal = Depends(require("unitops:write"))
) -> UnitopView:
    may_unitop(principal, name)
    hub = hub_of(request)
    body = await json_model(request, Unitop, hub.settings.max_body_bytes)
    before = await hub.unitops.get(name)
    after = await hub.unitops.update(name, body, by=principal.subject)
    await hub.audit.record(principal.subject, "unitop.updated", name, before, after)
    return UnitopView.model_validate(after)


@router.delete(
    "/unitops/{name}",
    status_code=204,
    summary="Delete a unitop",
    **documented("unitops:write", ERRORS),
)
async def delete_unitop(
    name: str, request: Request, principal: Principal = Depends(require("unitops:write"))
) -> Response:
    may_unitop(principal, name)
    hub = hub_of(request)
    before = await hub.unitops.get(name)  # the 404 of an unknown unitop
    await hub.unitops.delete(name)
    await hub.audit.record(principal.subject, "unitop.deleted", name, before, None)
    return Response(status_code=204)


@router.get(
    "/unitops/{name}/samples",
    summary="Sample history of a unitop's items: raw, or aligned to an interval (last value carried forward)",
    description="`items` (comma-separated) selects items, default all. Raw: rows `{item, sid, t, v, q}` ordered by "
    "`(t, sid)`, paged with `limit`/`cursor`. Aligned (`interval_s` given, `start` and `end` required): one row per "
    "grid time `start + k*interval_s < end`, each item's last value at or before it (null before the first). "
    "`start` inclusive, `end` exclusive. `last=N`: the newest N samples of each item in the range instead (one "
    "answer, ordered like raw rows). `boundary=outside` adds each item's sample just before `start` (unless one "
    "is at it) and the one at or after `end`; `interpolated` adds its value at `start` and at `end` (see "
    "`samples:interpolated`); the first page gets the start rows, the last one the end rows. JSON by default; `text/csv`, `application/jsonl` or `application/x-ndjson` "
    "by Accept (streamed).",
    **documented("unitops:read", errors(*UNITOP, 406)),
)
async def unitop_samples(
    name: str,
    request: Request,
    items: str | None = ITEMS,
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    # From 1 µs, the resolution of stored times (a step of 0 µs would never reach `end`), to 10,000 years.
    interval_s: float | None = Query(
        None, ge=0.000001, le=MAX_INTERVAL_S, allow_inf_nan=False, description="Align to this interval (seconds), LOCF"
    ),
    limit: int = Query(1000, ge=1, le=10_000),
    cursor: str | None = cursor_query(2),
    last: int | None = Query(None, ge=1, le=10_000, description="The newest N samples of each item (not paged)"),
    boundary: Literal["inside", "outside", "interpolated"] | None = Query(None, description="Range boundaries"),
    principal: Principal = Depends(require("unitops:read")),
) -> Any:
    may_unitop(principal, name)
    hub = hub_of(request)
    fmt = negotiate(request)
    edge = boundary_of(boundary)
    sel = await select_items(hub.unitops, name, items)
    t0, t1 = query_time(start, "start"), query_time(end, "end")
    samples = hub.unitop_samples
    if interval_s is None and (last is not None or edge != "inside"):
        return await raw_extras(request, fmt, sel, (t0, t1), cursor, limit, last, edge)
    if interval_s is not None:
        rows = samples.aligned(sel, t0, t1, interval_s)
        if fmt == "json":  # streamed: points × items can be large
            return StreamingResponse(json_items(rows), media_type="application/json")
        return streamed(samples.export_aligned(fmt, sel, rows), fmt, f"{name}-samples.{fmt}")
    query = samples.raw_query(sel, t0, t1, cursor)
    if fmt == "json":
        page, nxt = await samples.raw_page(sel, query, limit)
        return {"items": page, "next": nxt}
    return streamed(samples.export_raw(fmt, sel, query), fmt, f"{name}-samples.{fmt}")


@router.get(
    "/sources",
    response_model=SourceList,
    summary="Sources with their subscription JSON Schemas and the ingest instances serving them now",
    **documented("unitops:read", errors()),
)
async def list_sources(request: Request, principal: Principal = Depends(require("unitops:read"))) -> SourceList:
    return SourceList.model_validate({"items": await hub_of(request).sources.all()})
