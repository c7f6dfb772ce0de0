"""What commands print: JSON for `--json` (and for values without a human form), tables and lines for people,
and the frames a live subscription yields."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .context import Ctx

out = Console(soft_wrap=True)
err = Console(stderr=True)


def emit(c: Ctx, value: Any, human: Callable[[Any], None] | None = None) -> None:
    if c.as_json or human is None:
        sys.stdout.write(json.dumps(value, indent=None if c.as_json else 2, default=str) + "\n")
    else:
        human(value)


def print_json(value: Any) -> None:
    out.print_json(data=value)


def emit_deleted(c: Ctx, kind: str, name: str) -> None:
    emit(c, {"deleted": name}, lambda v: out.print(f"deleted {kind} [bold]{v['deleted']}[/bold]"))


def print_table(columns: tuple[str, ...], rows: list[list[str]]) -> None:
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    out.print(table)


def print_frame(c: Ctx, frame: dict[str, Any]) -> None:
    if c.as_json:
        sys.stdout.write(orjson.dumps(frame).decode() + "\n")
        sys.stdout.flush()
        return
    kind = frame.get("type")
    if kind == "event":
        ev = frame["event"]
        key = ev["type"] + (f".{ev['subject']}" if ev.get("subject") else "")
        out.print(
            f"[dim]{ev['time']}[/dim] [cyan]{key}[/cyan] {orjson.dumps(ev.get('data')).decode()}  [dim]{ev['id']}[/dim]"
        )
    elif kind == "samples":
        label = frame.get("item") or frame.get("sid")
        for s in frame.get("samples", []):
            out.print(f"[dim]{s['t']}[/dim] [green]{frame.get('unitop', '')}/{label}[/green] {s['v']}")
    elif kind == "gap":
        out.print(f"[yellow]gap[/yellow]: {frame.get('reason', '')} (resume from {frame.get('last')})")


async def write_export(chunks: AsyncIterator[bytes], output: Path | None) -> None:
    """A streamed export to `output` (stdout when None), with its progress (bytes, time) on stderr for a file."""
    sink = output.open("wb") if output else sys.stdout.buffer
    try:
        with Progress(
            TextColumn("exporting"),
            TextColumn("{task.completed:,.0f} bytes"),
            TimeElapsedColumn(),
            console=err,
            disable=output is None,
        ) as progress:
            task = progress.add_task("export", total=None)
            async for chunk in chunks:
                sink.write(chunk)
                progress.advance(task, len(chunk))
    finally:
        if output:
            sink.close()
        else:
            sink.flush()
