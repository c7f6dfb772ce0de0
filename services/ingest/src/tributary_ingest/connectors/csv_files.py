"""`csv`: one column of a folder of CSV files; existing rows from `since`, then appended rows and new files.

Files are read in name order, each from its header line; a row is read once it ends with a newline (a writer
half-way through a line is waited for). A file that shrinks is read again from the start. Rows whose time is
not after the last published one are dropped by the framework, so out-of-order rows across files are skipped.
Quoted fields with embedded newlines are not supported.
"""

from __future__ import annotations

import asyncio
import csv
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_common.events import UtcTime

from ..sdk import Connector
from ..values import parse_text_value, parse_timestamp

READ_CHUNK = 1 << 20
ROOTS_ENV = "TRIBUTARY_CSV_ROOTS"


def allowed_roots() -> list[Path]:
    """`TRIBUTARY_CSV_ROOTS` (os.pathsep-separated): folders must lie under one of them; unset means any folder."""
    raw = os.environ.get(ROOTS_ENV, "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


class CsvParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str = Field(min_length=1, description="Absolute path of the folder holding the CSV files")
    pattern: str = Field(default="*.csv", min_length=1, description="Glob of the files to read, in name order")
    value_column: str = Field(min_length=1, description="Header of the column to read")
    time_column: str = Field(default="time", min_length=1, description="Header of the RFC 3339 or Unix-seconds time")
    since: UtcTime | None = Field(default=None, description="Skip existing rows before this time (default: all)")
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=3600, description="How often to look for new rows")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str) -> str:
        path = Path(v)
        if not path.is_absolute():
            raise ValueError(f"folder {v!r} must be an absolute path")
        roots = allowed_roots()
        resolved = path.resolve()
        if roots and not any(resolved.is_relative_to(r) for r in roots):
            raise ValueError(f"folder {v!r} is outside the allowed roots ({ROOTS_ENV})")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith(".."):
            raise ValueError(f"pattern {v!r} must match file names in the folder itself (no '/')")
        return v


@dataclass
class _File:
    offset: int = 0
    header: list[str] | None = None
    time_idx: int = -1
    value_idx: int = -1
    broken: str | None = None
    pending: bytes = field(default=b"")


class CsvSource(Connector[CsvParams]):
    params_model = CsvParams
    capacity = 1000

    async def read(self, sid: str, params: CsvParams) -> None:
        folder = Path(params.folder)
        files: dict[Path, _File] = {}
        while True:
            for path in await asyncio.to_thread(_list, folder, params.pattern):
                await self._read_file(sid, params, path, files.setdefault(path, _File()))
            await asyncio.sleep(params.poll_interval_s)

    async def _read_file(self, sid: str, params: CsvParams, path: Path, state: _File) -> None:
        if state.broken is not None:
            return
        try:
            size = await asyncio.to_thread(_size, path)
        except FileNotFoundError:  # removed since the listing
            return
        if size < state.offset:  # truncated or replaced: read it again
            state.offset, state.header, state.pending = 0, None, b""
        while size > state.offset:
            chunk = await asyncio.to_thread(_read_at, path, state.offset, READ_CHUNK)
            if not chunk:
                return
            state.offset += len(chunk)
            data = state.pending + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                state.pending = data
                continue
            state.pending = data[cut + 1 :]
            self._rows(sid, params, path, state, data[: cut + 1].decode("utf-8", errors="replace").splitlines())
            await self.sink.room(sid)  # a large backlog of rows is replayed no faster than it is published

    def _rows(self, sid: str, params: CsvParams, path: Path, state: _File, lines: list[str]) -> None:
        reader = csv.reader(lines, delimiter=params.delimiter)
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if state.header is None:
                header = [h.strip().lstrip("\ufeff") for h in row]
                missing = [c for c in (params.time_column, params.value_column) if c not in header]
                if missing:
                    state.broken = f"{path.name}: no column {', '.join(map(repr, missing))} in header {header}"
                    self.sink.warn(sid, state.broken)
                    return
                state.header = header
                state.time_idx = header.index(params.time_column)
                state.value_idx = header.index(params.value_column)
                continue
            if len(row) <= max(state.time_idx, state.value_idx):
                self.sink.warn(sid, f"{path.name}: a row has too few fields: {row}")
                continue
            try:
                t: datetime = parse_timestamp(row[state.time_idx])
            except ValueError as exc:
                self.sink.warn(sid, f"{path.name}: bad time {row[state.time_idx]!r}: {exc}")
                continue
            if params.since is not None and t < params.since:
                continue
            self.sink.emit(sid, t, parse_text_value(row[state.value_idx]))


def _list(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"CSV folder {str(folder)!r} does not exist")
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def _size(path: Path) -> int:
    return path.stat().st_size


def _read_at(path: Path, offset: int, n: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(n)
