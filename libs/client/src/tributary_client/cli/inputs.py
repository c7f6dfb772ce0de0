"""What the user hands a command: JSON (a literal, `@file` or a path) and NDJSON lines; bad input exits 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import typer

from .output import err


def load_json(value: str) -> Any:
    """A JSON literal, `@file.json`, or a path to an existing file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    if not value.startswith("@") and not value.lstrip().startswith(("{", "[", '"')) and Path(value).is_file():
        text = Path(value).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        raise typer.Exit(2) from exc


def ndjson_lines(stream: Any) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                err.print(f"[red]error:[/red] line {n} is not valid JSON: {exc}")
                raise typer.Exit(2) from exc
