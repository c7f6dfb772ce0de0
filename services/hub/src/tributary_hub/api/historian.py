"""Historian reads of a unitop's items (`/unitops/{name}/samples:current|interpolated|plot|summary`, and `last`/
`boundary` of the raw read), over `series.SeriesStore`. Same scope and ACL as `/unitops/{name}/samples`; every
parameter is checked before the first byte; rows stream as they are computed, in JSON too."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from tributary_common.auth import Principal

from ..exports import export, json_items, plain_cell
from ..historian import params
from ..historian.reads import Row
from ..historian.times import to_us
from ..unitop_samples import RAW_COLUMNS, ItemSelection, select_items
from .access import UNITOP, may_unitop
from .contract import documented, errors
from .deps import hub_of, negotiate, query_time, require, streamed, time_query

router = APIRouter(tags=["unitops"])
ERRORS = errors(*UNITOP, 406)
DURATION = r"^\d{1,12}(\.\d{1,6})?(us|ms|s|m|h|d)?$"
CALC = r"^(count|min|max|mean|tavg|total|std|range)(,(count|min|max|mean|tavg|total|std|range)){0,15}$"
START = time_query("RFC 3339, inclusive")
END = time_query("RFC 3339, exclusive")
INTERVAL = Query(None, max_length=32, pattern=DURATION, description="Interval: 30, 1.5s, 500ms, 15m, 1h, 1d")
# ASCII only, like item names and times, so that a request at every bound still fits a request head (16 KiB).
ITEMS = Query(
    None,
    max_length=4_000,
    pattern=r"^[A-Za-z0-9_, -]*$",
    description="Comma-separated item names (default all)",
    examples=["flow"],
)
FORMATS = "JSON by default (rows streamed); `text/csv`, `application/jsonl` or `application/x-ndjson` by Accept."


async def _listed(rows: list[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


def answer(
    request: Request, fmt: str, rows: AsyncIterator[Row], filename: str, header: list[str], cells: Any
) -> StreamingResponse:
    if fmt == "json":
        return StreamingResponse(json_items(rows), media_type="application/json")
    chunk_rows = hub_of(request).settings.export_chunk_rows
    return streamed(export(fmt, rows, chunk_rows, header, cells), fmt, filename)


def sample_cells(r: Row) -> list[Any]:
    return [r["t"] or "", r["item"], r["sid"], plain_cell(r["v"]), plain_cell(r["q"])]


def sample_rows(request: Request, fmt: str, rows: list[Row], name: str) -> StreamingResponse:
    return answer(request, fmt, _listed(rows), f"{name}-samples.{fmt}", RAW_COLUMNS, sample_cells)


Table = tuple[AsyncIterator[Row], list[str], Callable[[Row], list[Any]]]  # rows, CSV header, a row's cells


def opened(request: Request, principal: Principal, name: str) -> str:
    """The ACL first (before anything about the unitop or its parameters), then the negotiated format."""
    may_unitop(principal, name)
    return negotiate(request)


def ranged(start: str | None, end: str | None) -> tuple[int, int]:
    """The checked range `[start, end)` in µs."""
    return params.time_range(query_time(start, "start"), query_time(end, "end"))


async def _selected(request: Request, name: str, items: str | None) -> ItemSelection:
    return await select_items(hub_of(request).unitops, name, items)


async def read(
    request: Request, fmt: str, name: str, items: str | None, kind: str, table: Callable[[ItemSelection], Table]
) -> StreamingResponse:
    """A historian read once its parameters are checked: the items chosen (an unknown one is 404), then the
    rows `table` makes of them, streamed in `fmt` (file `<name>-<kind>.<fmt>`)."""
    sel = await _selected(request, name, items)
    rows, header, cells = table(sel)
    return answer(request, fmt, rows, f"{name}-{kind}.{fmt}", header, cells)


async def raw_extras(
    request: Request,
    fmt: str,
    sel: ItemSelection,
    window: tuple[datetime | None, datetime | None],
    cursor: str | None,
    limit: int,
    last: int | None,
    boundary: str,
) -> Any:
    """`/samples` with `last` (the newest N per item, not paged) or a `boundary` (rows added before the first
    page and after the last one)."""
    hub = hub_of(request)
    start, end = window
    t0 = to_us(start) if start is not None else None
    t1 = to_us(end) if end is not None else None
    if last is not None:
        if last * len(sel.items) > hub.settings.historian_max_last_rows:
            limit_rows = hub.settings.historian_max_last_rows
            raise params.invalid("last", f"last × items is over {limit_rows} rows", "too_many_points")
        return sample_rows(request, fmt, await hub.historian.last(sel, last, t0, t1), sel.name)
    head, tail = await hub.historian.boundaries(sel, t0, t1, boundary)
    query = hub.unitop_samples.raw_query(sel, start, end, cursor)
    if fmt == "json":
        page, nxt = await hub.unitop_samples.raw_page(sel, query, limit)
        return {"items": (head if not cursor else []) + page + (tail if nxt is None else []), "next": nxt}

    async def rows() -> AsyncIterator[Row]:
        for row in head:
            yield row
        async for row in hub.unitop_samples.raw_rows(sel, query):
            yield row
        for row in tail:
            yield row

    return answer(request, fmt, rows(), f"{sel.name}-samples.{fmt}", RAW_COLUMNS, sample_cells)


@router.get(
    "/unitops/{name}/samples:current",
    summary="The latest sample of each item, with its time and quality",
    description="Rows `{item, sid, t, v, q}`; an item without samples: `t` and `v` null, `q` `no_data`. " + FORMATS,
    **documented("unitops:read", ERRORS),
)
async def samples_current(
    name: str, request: Request, items: str | None = ITEMS, principal: Principal = Depends(require("unitops:read"))
) -> StreamingResponse:
    fmt = opened(request, principal, name)
    sel = await _selected(request, name, items)
    return sample_rows(request, fmt, await hub_of(request).historian.current(sel), name)


@router.get(
    "/unitops/{name}/samples:interpolated",
    summary="Item values at times on a grid or listed: a wide table, one column per item",
    description="Times `start, start+interval, …` up to and including `end`, or `times` (ascending RFC 3339, "
    "comma-separated). Numbers are interpolated linearly between samples; strings, booleans and items marked "
    "`stepped` hold the earlier sample's value; after the last sample its value is held. The quality is the "
    "earlier sample's; before the first sample: `v` null, `q` `no_data`. Rows `{t, values: {item: v}, quality: "
    "{item: q}}`; CSV is the wide table `t,<item>,…` (for spreadsheets and pandas). " + FORMATS,
    **documented("unitops:read", ERRORS),
)
async def samples_interpolated(
    name: str,
    request: Request,
    items: str | None = ITEMS,
    start: str | None = START,
    end: str | None = time_query("RFC 3339, the last time (included when on the grid)"),
    interval: str | None = INTERVAL,
    times: str | None = Query(
        None, max_length=8_000, pattern=r"^[0-9TtZz:.,+ -]*$", description="Comma-separated RFC 3339 times, instead"
    ),
    principal: Principal = Depends(require("unitops:read")),
) -> StreamingResponse:
    fmt = opened(request, principal, name)
    settings = hub_of(request).settings
    grid: range | list[int]
    if times is not None:
        grid = params.listed_times(times, settings.historian_max_times)
    else:
        t0, t1 = ranged(start, end)
        if interval is None:
            raise params.invalid("interval", "interval (or times) is required")
        grid = params.grid_times(t0, t1, params.duration_us(interval, "interval"), settings.aligned_max_points)

    def table(sel: ItemSelection) -> Table:
        params.values_at_most(len(grid), len(sel.items), settings.grid_max_values, "times" if times else "interval")

        def cells(r: Row) -> list[Any]:
            return [r["t"], *(plain_cell(r["values"][i]) for i in sel.items)]

        return hub_of(request).historian.interpolated(sel, grid), ["t", *sel.items], cells

    return await read(request, fmt, name, items, "interpolated", table)


@router.get(
    "/unitops/{name}/samples:plot",
    summary="Plot values: per interval the first, last, min and max sample, with their times",
    description="`intervals` equal parts of `[start, end)`; on long ranges inner edges are moved back to whole "
    "minutes or hours so that whole spans are read from stored summaries: each row states its interval, and is "
    "exact for it. Rows `{item, start, end, points: [{t, v, q}]}` (points time-ordered, each once; min and max of "
    "numbers only). CSV: one line per point `item,start,end,t,v,q`. " + FORMATS,
    **documented("unitops:read", ERRORS),
)
async def samples_plot(
    name: str,
    request: Request,
    items: str | None = ITEMS,
    start: str | None = START,
    end: str | None = END,
    intervals: int = Query(..., ge=1, le=100_000, description="How many intervals (e.g. pixels)"),
    principal: Principal = Depends(require("unitops:read")),
) -> StreamingResponse:
    fmt = opened(request, principal, name)
    t0, t1 = ranged(start, end)
    params.at_most(intervals, hub_of(request).settings.historian_max_intervals, "intervals")

    def table(sel: ItemSelection) -> Table:
        rows = hub_of(request).historian.plot(sel, t0, t1, intervals)
        return _point_lines(rows) if fmt == "csv" else rows, ["item", "start", "end", "t", "v", "q"], _plot_cells

    return await read(request, fmt, name, items, "plot", table)


def _plot_cells(r: Row) -> list[Any]:
    return [r["item"], r["start"], r["end"], r["t"], plain_cell(r["v"]), plain_cell(r["q"])]


async def _point_lines(rows: AsyncIterator[Row]) -> AsyncIterator[Row]:
    async for row in rows:
        for p in row["points"]:
            yield {"item": row["item"], "start": row["start"], "end": row["end"], **p}


@router.get(
    "/unitops/{name}/samples:summary",
    summary="Summaries per interval: count, min, max, mean, tavg, total, std, range",
    description="Intervals `[start + k·interval, …)` up to `end` (the last one cut at `end`; no `interval`: one "
    "interval). `count` counts samples; `min`, `max`, `mean`, `std` (population) and `range` are over numbers. "
    "`tavg` is time-weighted: linear between numeric samples (held for `stepped` items), held after the last, "
    "carried in from the last sample before the interval (interpolated toward the first inside) when that is a "
    "number; `tavg` divides by the time covered (from the interval start when a value was carried in, else from "
    "the first sample). `total` is the same integral in value·seconds. An interval without samples says "
    "`no_data: true` (its `tavg`/`total` still follow the carried value). Rows `{item, start, end, no_data, "
    "<calc>…}`. " + FORMATS,
    **documented("unitops:read", ERRORS),
)
async def samples_summary(
    name: str,
    request: Request,
    items: str | None = ITEMS,
    start: str | None = START,
    end: str | None = END,
    interval: str | None = INTERVAL,
    calc: str = Query("count,min,max,mean", max_length=128, pattern=CALC, description="Comma-separated calcs"),
    principal: Principal = Depends(require("unitops:read")),
) -> StreamingResponse:
    fmt = opened(request, principal, name)
    t0, t1 = ranged(start, end)
    step = params.duration_us(interval, "interval") if interval is not None else t1 - t0
    params.count_of(t1 - t0, step, hub_of(request).settings.historian_max_intervals, "interval")
    calcs = params.calc_list(calc)

    def cells(r: Row) -> list[Any]:
        return [r["item"], r["start"], r["end"], plain_cell(r["no_data"]), *(plain_cell(r[c]) for c in calcs)]

    def table(sel: ItemSelection) -> Table:
        rows = hub_of(request).historian.summary(sel, t0, t1, step, calcs)
        return rows, ["item", "start", "end", "no_data", *calcs], cells

    return await read(request, fmt, name, items, "summary", table)
