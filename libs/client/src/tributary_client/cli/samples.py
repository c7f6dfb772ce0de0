"""`tributary samples current|raw|interpolated|plot|summary <unitop>`: the historian reads of a unitop's items,
as a table, JSON lines (`--json`), or a streamed export (`--format csv|ndjson|jsonl`, progress on stderr)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from ..hub import EXPORT_TYPES, HubClient
from .context import Ctx
from .output import err, out, write_export
from .runner import call_hub

samples_app = typer.Typer(help="Historian reads of a unitop's items.", no_args_is_help=True)

Items = Annotated[str | None, typer.Option(help="Comma-separated items (default all)")]
Start = Annotated[str | None, typer.Option(help="From this time (RFC 3339)")]
End = Annotated[str | None, typer.Option(help="Until this time (RFC 3339)")]
Since = Annotated[str, typer.Option(help="From this time (RFC 3339)")]
Until = Annotated[str, typer.Option(help="Until this time (RFC 3339)")]
Format = Annotated[str, typer.Option("--format", help="table | csv | ndjson | jsonl")]
Output = Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file")]


def _cell(v: Any) -> str:
    return "" if v is None else v if isinstance(v, str) else orjson.dumps(v).decode()


def _lines(read: str, row: dict[str, Any]) -> list[list[Any]]:
    """A row as table lines: plot rows give one line per point, interpolated rows one cell per item."""
    if read == "plot":
        return [[row["item"], row["start"], row["end"], p["t"], p["v"]] for p in row["points"]]
    if read == "interpolated":
        return [[row["t"], *row["values"].values()]]
    if read == "summary":
        return [list(row.values())]
    return [[row["t"], row["item"], row["v"], row["q"]]]


def _columns(read: str, row: dict[str, Any]) -> list[str]:
    return {
        "plot": ["item", "start", "end", "t", "v"],
        "interpolated": ["t", *row.get("values", {})],
        "summary": list(row),
    }.get(read, ["t", "item", "v", "q"])


def _read(c: Ctx, unitop: str, read: str, fmt: str, output: Path | None, params: dict[str, Any]) -> None:
    if fmt not in ("table", *EXPORT_TYPES):
        err.print(f"[red]error:[/red] --format must be one of table, {', '.join(EXPORT_TYPES)}")
        raise typer.Exit(2)

    async def table(hub: HubClient) -> None:
        rows: Table | None = None
        async for row in hub.samples(unitop, read, **params):
            if c.as_json:
                sys.stdout.write(orjson.dumps(row).decode() + "\n")
                continue
            if rows is None:
                rows = Table(*_columns(read, row))
            for line in _lines(read, row):
                rows.add_row(*(_cell(v) for v in line))
        if rows is not None:
            out.print(rows)

    async def export(hub: HubClient) -> None:
        await write_export(hub.samples_export(unitop, read, fmt, **params), output)

    call_hub(c, table if fmt == "table" else export)


@samples_app.command("current")
def current(ctx: typer.Context, unitop: str, items: Items = None, fmt: Format = "table", output: Output = None) -> None:
    """The latest sample of each item, with its time and quality."""
    _read(ctx.obj, unitop, "current", fmt, output, {"items": items})


@samples_app.command("raw")
def raw(
    ctx: typer.Context,
    unitop: str,
    items: Items = None,
    start: Start = None,
    end: End = None,
    last: Annotated[int | None, typer.Option(help="Only the newest N samples of each item")] = None,
    boundary: Annotated[str | None, typer.Option(help="inside | outside | interpolated")] = None,
    fmt: Format = "table",
    output: Output = None,
) -> None:
    """Recorded samples, oldest first."""
    params = {"items": items, "start": start, "end": end, "last": last, "boundary": boundary}
    _read(ctx.obj, unitop, "raw", fmt, output, params)


@samples_app.command("interpolated")
def interpolated(
    ctx: typer.Context,
    unitop: str,
    items: Items = None,
    start: Start = None,
    end: End = None,
    interval: Annotated[str | None, typer.Option(help="Grid step: 30, 1.5s, 15m, 1h, 1d")] = None,
    times: Annotated[str | None, typer.Option(help="Comma-separated RFC 3339 times instead")] = None,
    fmt: Format = "table",
    output: Output = None,
) -> None:
    """Values at times on a grid (a wide table: `--format csv` for spreadsheets and pandas)."""
    params = {"items": items, "start": start, "end": end, "interval": interval, "times": times}
    _read(ctx.obj, unitop, "interpolated", fmt, output, params)


@samples_app.command("plot")
def plot(
    ctx: typer.Context,
    unitop: str,
    start: Since,
    end: Until,
    intervals: Annotated[int, typer.Option(help="Intervals (pixels)")] = 1000,
    items: Items = None,
    fmt: Format = "table",
    output: Output = None,
) -> None:
    """Per interval the first, last, min and max sample."""
    params = {"items": items, "start": start, "end": end, "intervals": intervals}
    _read(ctx.obj, unitop, "plot", fmt, output, params)


@samples_app.command("summary")
def summary(
    ctx: typer.Context,
    unitop: str,
    start: Since,
    end: Until,
    interval: Annotated[str | None, typer.Option(help="Interval: 15m, 1h, 1d (default: the whole range)")] = None,
    calc: Annotated[str, typer.Option(help="count,min,max,mean,tavg,total,std,range")] = "count,min,max,mean",
    items: Items = None,
    fmt: Format = "table",
    output: Output = None,
) -> None:
    """Summaries per interval."""
    params = {"items": items, "start": start, "end": end, "interval": interval, "calc": calc}
    _read(ctx.obj, unitop, "summary", fmt, output, params)
