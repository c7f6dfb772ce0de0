"""`csv`: one column of a folder of CSV files; existing rows from `since`, then appended rows and new files.

Files are read in name order, each from its header line; a row is read once it ends with a newline (a writer
half-way through a line is waited for). A file that shrinks is read again from the start. Rows whose time is
not after the last published one are dropped by the framework, so out-of-order rows across files are skipped.
Quoted fields with embedded newlines are not supported.

Served only under `TRIBUTARY_CSV_ROOTS` (without it the source is neither announced nor read): the folder's real
path (symlinks resolved) must lie under a root at every listing, every file is checked again on the path it was
actually opened at, and hidden files (dot files, dot folders below the root) are never read. A folder outside the
roots fails the read (`Refused`: counted, backoff); a file that resolves outside them is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import csv
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_common.events import UtcTime

from ..sdk import Connector, Refused
from ..settings import IngestSettings
from ..values import parse_text_value, parse_timestamp

READ_CHUNK = 1 << 20
ROOTS_ENV = "TRIBUTARY_CSV_ROOTS"
# Absolute, no "." or ".." segment (the hub refuses those with a 422; the message of the validator below is clearer).
FOLDER_PATTERN = r"^/([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|/)*$"


class OutsideRoots(Refused):
    pass


class CsvParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder: str = Field(
        min_length=1,
        max_length=4096,
        pattern=FOLDER_PATTERN,
        description="Absolute path of the folder holding the CSV files (under the roots the operator allows)",
    )
    pattern: str = Field(
        default="*.csv", min_length=1, max_length=255, description="Glob of the files to read, in name order"
    )
    value_column: str = Field(min_length=1, description="Header of the column to read")
    time_column: str = Field(default="time", min_length=1, description="Header of the RFC 3339 or Unix-seconds time")
    since: UtcTime | None = Field(default=None, description="Skip existing rows before this time (default: all)")
    poll_interval_s: float = Field(default=1.0, ge=0.05, le=3600, description="How often to look for new rows")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("folder", mode="before")  # before the pattern, for a message a person can read
    @classmethod
    def _folder(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if not v.startswith("/"):
            raise ValueError(f"folder {v!r} must be an absolute path")
        if any(part in (".", "..") for part in v.split("/")):
            raise ValueError(f"folder {v!r} must not contain '.' or '..' segments")
        if "\0" in v:
            raise ValueError("folder must not contain NUL")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "/" in v or "\\" in v or "\0" in v:
            raise ValueError(f"pattern {v!r} must match file names in the folder itself (no '/')")
        if v.startswith(".") or "**" in v:
            raise ValueError(f"pattern {v!r}: hidden files are never read, and '**' is not allowed")
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
    # Real paths of TRIBUTARY_CSV_ROOTS; unconfigured (outside an engine): none, so nothing is read.
    roots: ClassVar[tuple[Path, ...]] = ()

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]] | None:
        if not settings.csv_roots:
            return None  # not announced, not read: an operator names the folders first
        roots = tuple(Path(os.path.realpath(r)) for r in settings.csv_roots)
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"roots": roots}))

    async def read(self, sid: str, params: CsvParams) -> None:
        folder = Path(params.folder)
        files: dict[Path, _File] = {}
        while True:
            for path in await asyncio.to_thread(_list, folder, params.pattern, self.roots):
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
            try:
                chunk = await asyncio.to_thread(_read_at, path, state.offset, READ_CHUNK, self.roots)
            except OutsideRoots as exc:
                state.broken = str(exc)
                self.sink.warn(sid, state.broken)
                return
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


def contained(real: str, roots: tuple[Path, ...]) -> str | None:
    """Why the real path `real` may not be read (outside every root, or hidden below one), None when it may."""
    path = Path(real)
    for root in roots:
        if path == root or path.is_relative_to(root):
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                return f"{real!r} is hidden (a dot file or folder): never read"
            return None
    return f"{real!r} is outside {ROOTS_ENV}"


def _list(folder: Path, pattern: str, roots: tuple[Path, ...]) -> list[Path]:
    real = os.path.realpath(folder)  # symlinks resolved: what a listing of `folder` would really read
    why = contained(real, roots)
    if why is not None:
        raise OutsideRoots(f"CSV folder {str(folder)!r} refused: {why}")
    if not os.path.isdir(real):
        raise FileNotFoundError(f"CSV folder {str(folder)!r} does not exist")
    return sorted(p for p in Path(real).glob(pattern) if not p.name.startswith(".") and p.is_file())


def _size(path: Path) -> int:
    return path.stat().st_size


def _read_at(path: Path, offset: int, n: int, roots: tuple[Path, ...]) -> bytes:
    # Non-blocking, so that a FIFO swapped in after the listing cannot hang the thread; checked on what was opened.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        why = contained(_opened_path(fd, path), roots)
        if why is None and not stat.S_ISREG(os.fstat(fd).st_mode):
            why = "not a regular file"
        if why is not None:
            raise OutsideRoots(f"{path.name}: refused: {why}")
        f.seek(offset)
        return f.read(n)


def _opened_path(fd: int, path: Path) -> str:
    """The real path of an open file: from the kernel where it says (no race with a symlink swapped after the
    open), else resolved from its name."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)
