"""Streamed exports of history (events or samples): CSV or JSON Lines / NDJSON, written `chunk_rows` rows at a
time so that no export is ever held whole in memory.

Every chunk is followed by a turn of the event loop. Rows computed from memory (a grid of interpolated values)
never wait on anything, and uvicorn's `send` returns at once once the client is gone: without the turn, an export
would hold the process until its last row, answering nobody else, and the cancel that follows a disconnect would
never reach it."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

Row = dict[str, Any]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/jsonl",
    "ndjson": "application/x-ndjson",
}

JSON_CHUNK_ROWS = 500  # rows per write of a streamed JSON answer (it wrote one per row)

# What makes a spreadsheet evaluate a cell as a formula (OWASP "CSV injection"); tab and CR as well.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A cell no spreadsheet runs: a string that starts like a formula gets a leading `'`. Numbers are written
    from numbers and stay numbers (-3.5 is not a formula); only strings can carry one."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_chunk(rows: list[list[Any]]) -> bytes:
    """CSV rows for every export, each cell through `spreadsheet_safe`."""
    out = io.StringIO()
    # RFC 4180 line ends: with them the writer quotes a cell holding a bare CR instead of letting it end the row.
    csv.writer(out, lineterminator="\r\n").writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return out.getvalue().encode()


async def _chunks(rows: AsyncIterator[Row], chunk_rows: int) -> AsyncIterator[list[Row]]:
    buf: list[Row] = []
    async for row in rows:
        buf.append(row)
        if len(buf) >= chunk_rows:
            yield buf
            buf = []
            await asyncio.sleep(0)  # see the module's docstring
    if buf:
        yield buf


async def export_lines(rows: AsyncIterator[Row], chunk_rows: int) -> AsyncIterator[bytes]:
    """JSON Lines / NDJSON: one row per line, flushed every `chunk_rows` lines."""
    async for part in _chunks(rows, chunk_rows):
        yield b"\n".join(orjson.dumps(row) for row in part) + b"\n"


async def export_csv(
    rows: AsyncIterator[Row], chunk_rows: int, header: list[str], cells: Callable[[Row], list[Any]]
) -> AsyncIterator[bytes]:
    """CSV: the header, then `cells(row)` per row, flushed every `chunk_rows` rows."""
    yield csv_chunk([header])
    async for part in _chunks(rows, chunk_rows):
        yield csv_chunk([cells(row) for row in part])


def export(
    fmt: str, rows: AsyncIterator[Row], chunk_rows: int, header: list[str], cells: Callable[[Row], list[Any]]
) -> AsyncIterator[bytes]:
    """`rows` as `fmt` (`csv`, `jsonl` or `ndjson`); `header` and `cells` shape the CSV."""
    return export_csv(rows, chunk_rows, header, cells) if fmt == "csv" else export_lines(rows, chunk_rows)


def plain_cell(v: Any) -> Any:
    """A sample value as a CSV cell: empty for none, booleans spelled out."""
    return "" if v is None else ("true" if v is True else "false" if v is False else v)


async def json_items(rows: AsyncIterator[Row], chunk_rows: int = JSON_CHUNK_ROWS) -> AsyncIterator[bytes]:
    """`{"items": [...], "next": null}` written `chunk_rows` rows at a time: a JSON answer of any length in bounded
    memory."""
    yield b'{"items":['
    first = True
    async for part in _chunks(rows, chunk_rows):
        body = b",".join(orjson.dumps(row) for row in part)
        yield body if first else b"," + body
        first = False
    yield b'],"next":null}'
