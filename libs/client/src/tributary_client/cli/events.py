"""`tributary publish`, `tail` and `history`: events in, live events and samples out, and exports of the past."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..hub import EXPORT_TYPES, HubClient
from ..stream import StreamClient
from .context import Ctx
from .inputs import load_json, ndjson_lines
from .output import emit, err, out, print_frame, write_export
from .runner import call_hub, run


def publish(
    ctx: typer.Context,
    topic: str,
    data: Annotated[str | None, typer.Argument(help="The event's data as JSON; omit to read NDJSON")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject, e.g. plant1.line3")] = None,
    id_: Annotated[str | None, typer.Option("--id", help="Event id (idempotent retries)")] = None,
    file: Annotated[Path | None, typer.Option(help="NDJSON file of {data, subject?, id?} ('-' for stdin)")] = None,
    batch_size: Annotated[int, typer.Option(help="Events per batch request")] = 500,
) -> None:
    """Publish one event (DATA) or many (NDJSON from --file or stdin)."""
    c: Ctx = ctx.obj
    if data is not None:
        published = call_hub(c, lambda hub: hub.publish(topic, load_json(data), subject=subject, id=id_))
        emit(c, published, lambda r: out.print(f"published [bold]{r['id']}[/bold]"))
        return

    source = sys.stdin if file is None or str(file) == "-" else file.open()

    async def many(hub: HubClient) -> list[str]:
        ids: list[str] = []
        with Progress(
            TextColumn("publishing"),
            BarColumn(),
            TextColumn("{task.completed} events"),
            TimeElapsedColumn(),
            console=err,
            disable=c.as_json,
        ) as progress:
            task = progress.add_task("publish", total=None)
            chunk: list[dict[str, Any]] = []
            for event in ndjson_lines(source):
                if subject and "subject" not in event:
                    event["subject"] = subject
                chunk.append(event)
                if len(chunk) >= batch_size:
                    ids += await hub.publish_batch(topic, chunk)
                    progress.advance(task, len(chunk))
                    chunk = []
            if chunk:
                ids += await hub.publish_batch(topic, chunk)
                progress.advance(task, len(chunk))
        return ids

    ids = call_hub(c, many)
    emit(c, {"ids": ids}, lambda r: out.print(f"published {len(r['ids'])} events"))


def tail(
    ctx: typer.Context,
    pattern: Annotated[
        str | None, typer.Argument(help="Events pattern over <topic>.<subject>, e.g. 'orders.#'")
    ] = None,
    unitop: Annotated[str | None, typer.Option(help="Follow a unitop's samples instead")] = None,
    item: Annotated[list[str] | None, typer.Option(help="Only these unitop items (repeat)")] = None,
    since: Annotated[str | None, typer.Option(help="Replay from a time (RFC 3339) or after an event id")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many frames")] = None,
) -> None:
    """Follow live events (or a unitop's samples), reconnecting and resuming without loss."""
    c: Ctx = ctx.obj
    if (pattern is None) == (unitop is None):
        err.print("[red]error:[/red] give an events PATTERN or --unitop NAME (one of them)")
        raise typer.Exit(2)
    client = StreamClient(c.stream, c.token)
    sub = client.unitop(unitop, items=item, since=since) if unitop else client.events(str(pattern), since=since)
    sub.first_connect_attempts = 3  # then "cannot reach" (once subscribed, it resumes after any drop)

    async def go() -> None:
        seen = 0
        async for frame in sub:
            print_frame(c, frame)
            seen += 1
            if count is not None and seen >= count:
                return

    run(go())


def history(
    ctx: typer.Context,
    topic: str,
    subject: Annotated[str | None, typer.Option(help="Subject pattern, e.g. 'plant1.#'")] = None,
    start: Annotated[str | None, typer.Option(help="From this time (RFC 3339)")] = None,
    end: Annotated[str | None, typer.Option(help="Until this time (RFC 3339)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | jsonl | ndjson | csv")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file")] = None,
) -> None:
    """Export a topic's history (streamed; a progress bar counts what was written)."""
    c: Ctx = ctx.obj
    if fmt not in ("table", *EXPORT_TYPES):
        err.print(f"[red]error:[/red] --format must be one of table, {', '.join(EXPORT_TYPES)}")
        raise typer.Exit(2)

    async def table(hub: HubClient) -> None:
        rows = Table("time", "subject", "id", "data")
        async for ev in hub.history(topic, subject=subject, start=start, end=end):
            if c.as_json:
                sys.stdout.write(ev.model_dump_json() + "\n")
            else:
                rows.add_row(
                    ev.model_dump(mode="json")["time"], ev.subject or "", ev.id, orjson.dumps(ev.data).decode()
                )
        if not c.as_json:
            out.print(rows)

    async def export(hub: HubClient) -> None:
        await write_export(hub.export(topic, fmt, subject=subject, start=start, end=end), output)

    call_hub(c, table if fmt == "table" else export)
