"""`/unitops` (CRUD and search), `/unitops/{name}/samples` (raw and aligned history), `/sources`."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from tributary_common.auth import Forbidden, Principal
from tributary_common.names import SEGMENT_RE
from tributary_common.timeutil import format_time
from tributary_common.unitops import Unitop

from .. import cursors
from ..errors import Invalid, NotFound
from ..history import csv_chunk
from ..samples_history import build_filter
from .contract import JSON_BODY, errors
from .deps import body_doc, cursor_query, hub_of, json_model, negotiate, query_time, require, scope_doc, time_query
from .models import SourceList, UnitopList, UnitopView

router = APIRouter(tags=["unitops"])
UNITOP: tuple[tuple[int, str], ...] = (
    (403, "Missing scope, or the unitop is outside the caller's ACL"),
    (404, "Unknown unitop"),
)
ERRORS = errors(*UNITOP)
UNITOP_EXAMPLE = Unitop.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]


def may_unitop(principal: Principal, name: str) -> None:
    if not principal.may_unitop(name):
        raise Forbidden(f"unitop {name!r} is outside the token's unitops ACL")


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
    responses=errors(UNITOP[0], *JSON_BODY, (409, "Exists"), (422, "Invalid unitop or items")),
    openapi_extra={**scope_doc("unitops:write"), **body_doc(Unitop, {"pump": UNITOP_EXAMPLE})},
)
async def create_unitop(request: Request, principal: Principal = Depends(require("unitops:write"))) -> Any:
    hub = hub_of(request)
    body = await json_model(request, Unitop, hub.settings.max_body_bytes)
    may_unitop(principal, body.name)
    view = await hub.unitops.create(body, by=principal.subject)
    await hub.audit.record(principal.subject, "unitop.created", body.name, None, view)
    return view


@router.get(
    "/unitops",
    response_model=UnitopList,
    summary="List and search unitops",
    description="`prefix` matches the start of the name; every other `meta.<key>=<value>` query parameter must equal "
    "that meta value (strings, numbers and booleans are matched by value). Pages by name; pass `next` as `cursor`.",
    responses=errors(UNITOP[0]),
    openapi_extra=scope_doc("unitops:read"),
)
async def list_unitops(
    request: Request,
    prefix: str | None = Query(None, max_length=128, examples=["pump-"]),
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = cursor_query(1),
    principal: Principal = Depends(require("unitops:read")),
) -> Any:
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
    return {"items": items, "next": nxt}


@router.get(
    "/unitops/{name}",
    response_model=UnitopView,
    summary="One unitop (items with their sids)",
    responses=ERRORS,
    openapi_extra=scope_doc("unitops:read"),
)
async def get_unitop(name: str, request: Request, principal: Principal = Depends(require("unitops:read"))) -> Any:
    may_unitop(principal, name)
    return await hub_of(request).unitops.get(name)


@router.put(
    "/unitops/{name}",
    response_model=UnitopView,
    summary="Replace a unitop",
    responses=errors(*UNITOP, *JSON_BODY),
    openapi_extra={**scope_doc("unitops:write"), **body_doc(Unitop, {"pump": UNITOP_EXAMPLE})},
)
async def put_unitop(name: str, request: Request, principal: Principal = Depends(require("unitops:write"))) -> Any:
    may_unitop(principal, name)
    hub = hub_of(request)
    body = await json_model(request, Unitop, hub.settings.max_body_bytes)
    before = await hub.unitops.get(name)
    after = await hub.unitops.update(name, body, by=principal.subject)
    await hub.audit.record(principal.subject, "unitop.updated", name, before, after)
    return after


@router.delete(
    "/unitops/{name}",
    status_code=204,
    summary="Delete a unitop",
    responses=ERRORS,
    openapi_extra=scope_doc("unitops:write"),
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
    "`start` inclusive, `end` exclusive. JSON by default; `text/csv`, `application/jsonl` or `application/x-ndjson` "
    "by Accept (streamed).",
    responses=errors(*UNITOP, 406),
    openapi_extra=scope_doc("unitops:read"),
)
async def unitop_samples(
    name: str,
    request: Request,
    items: str | None = Query(None, description="Comma-separated item names", examples=["flow,pressure"]),
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    interval_s: float | None = Query(None, gt=0, description="Align to this interval (seconds), LOCF"),
    limit: int = Query(1000, ge=1, le=10_000),
    cursor: str | None = cursor_query(2),
    principal: Principal = Depends(require("unitops:read")),
) -> Any:
    may_unitop(principal, name)
    hub = hub_of(request)
    fmt = negotiate(request)
    unitop = (await hub.unitops.resolve(name)).sids
    chosen = list(unitop) if not items else [i.strip() for i in items.split(",") if i.strip()]
    unknown = [i for i in chosen if i not in unitop]
    if unknown or not chosen:
        raise NotFound(
            f"unitop {name!r} has no items {unknown}",
            [{"loc": "/query/items", "msg": f"unknown {unknown}"}],
            code="unknown_item",
        )
    sids = {item: unitop[item] for item in chosen}
    items_of: dict[str, list[str]] = {}
    for item, sid in sids.items():
        items_of.setdefault(sid, []).append(item)
    t0, t1 = query_time(start, "start"), query_time(end, "end")
    chunk = hub.settings.export_chunk_rows

    if interval_s is not None:
        if t0 is None or t1 is None or t1 <= t0:
            raise Invalid(
                "aligned history needs start < end",
                [{"loc": "/query/start", "msg": "start and end required"}],
                code="invalid_request",
            )
        points = math.ceil((t1 - t0).total_seconds() / interval_s)
        if points > hub.settings.aligned_max_points:
            raise Invalid(
                f"{points} points requested, over the limit of {hub.settings.aligned_max_points}",
                [{"loc": "/query/interval_s", "msg": "too many points; widen the interval"}],
                code="too_many_points",
            )
        grid = hub.samples.aligned(list(items_of), t0, t1, timedelta(seconds=interval_s))

        async def aligned_rows() -> AsyncIterator[dict[str, Any]]:
            async for t, values in grid:
                yield {"t": t, "values": {item: values[sid] for item, sid in sids.items()}}

        if fmt == "json":
            return {"items": [r async for r in aligned_rows()], "next": None}
        if fmt == "csv":
            return _stream(_aligned_csv(aligned_rows(), chosen, chunk), "csv", name)
        return _stream(_lines(aligned_rows(), chunk), fmt, name)

    position = cursors.decode(cursor) if cursor else None
    query = build_filter(
        list(items_of),
        start=format_time(t0) if t0 else None,
        end=format_time(t1) if t1 else None,
        position=(position[0], position[1]) if position else None,
    )

    def explode(row: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"item": item, **row} for item in items_of[row["sid"]]]

    if fmt == "json":
        rows, nxt = await hub.samples.page(query, limit)
        return {"items": [r for row in rows for r in explode(row)], "next": nxt}

    async def raw_rows() -> AsyncIterator[dict[str, Any]]:
        async for row in hub.samples.stream(query):
            for r in explode(row):
                yield r

    if fmt == "csv":
        return _stream(_raw_csv(raw_rows(), chunk), "csv", name)
    return _stream(_lines(raw_rows(), chunk), fmt, name)


def _stream(chunks: AsyncIterator[bytes], fmt: str, name: str) -> StreamingResponse:
    media = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl", "ndjson": "application/x-ndjson"}[fmt]
    return StreamingResponse(
        chunks, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}-samples.{fmt}"'}
    )


async def _lines(rows: AsyncIterator[dict[str, Any]], chunk: int) -> AsyncIterator[bytes]:
    buf: list[bytes] = []
    async for row in rows:
        buf.append(orjson.dumps(row))
        if len(buf) >= chunk:
            yield b"\n".join(buf) + b"\n"
            buf = []
    if buf:
        yield b"\n".join(buf) + b"\n"


def _cell(v: Any) -> Any:
    return "" if v is None else ("true" if v is True else "false" if v is False else v)


async def _raw_csv(rows: AsyncIterator[dict[str, Any]], chunk: int) -> AsyncIterator[bytes]:
    yield csv_chunk([["t", "item", "sid", "v", "q"]])
    buf: list[list[Any]] = []
    async for r in rows:
        buf.append([r["t"], r["item"], r["sid"], _cell(r["v"]), _cell(r["q"])])
        if len(buf) >= chunk:
            yield csv_chunk(buf)
            buf = []
    if buf:
        yield csv_chunk(buf)


async def _aligned_csv(rows: AsyncIterator[dict[str, Any]], items: list[str], chunk: int) -> AsyncIterator[bytes]:
    yield csv_chunk([["t", *items]])
    buf: list[list[Any]] = []
    async for r in rows:
        buf.append([r["t"], *(_cell(r["values"][i]) for i in items)])
        if len(buf) >= chunk:
            yield csv_chunk(buf)
            buf = []
    if buf:
        yield csv_chunk(buf)


@router.get(
    "/sources",
    response_model=SourceList,
    summary="Sources with their subscription JSON Schemas and the ingest instances serving them now",
    responses=errors(),
    openapi_extra=scope_doc("unitops:read"),
)
async def list_sources(request: Request, principal: Principal = Depends(require("unitops:read"))) -> Any:
    return {"items": await hub_of(request).sources.all()}
