"""`csv`: one column of a folder of CSV files; existing rows from `since`, then appended rows and new files.

Files are read in name order, each from its header line; a row is read once it ends with a newline (a writer
half-way through a line is waited for). A file that shrinks is read again from the start. Rows whose time is
not after the last published one are dropped by the framework, so out-of-order rows across files are skipped.
Quoted fields with embedded newlines are not supported.

Served only under `TRIBUTARY_CSV_ROOTS` (without it the source is neither announced nor read): the folder's real
path (symlinks resolved) must lie under a root at every listing, every file is checked again on the path it was
actually opened at, and hidden files (dot files, dot folders below the root) are never read. A folder outside the
roots fails the read (`Refused`: counted, backoff); a file that resolves outside them is skipped with a warning.

Backfill by file position: when a read resumes from a watermark (a lease taken over, a restart), `history` finds in
each file the first row after the watermark by bisection over its bytes (rows of one file are in time order), reads
from there to the end, and hands each file's position to the live read, which goes on from exactly there: rows
written while nobody read are not lost, and none is read twice at the seam. Browsing lists the sub-folders and the
columns of the files in a folder under the roots.
"""

from __future__ import annotations

import asyncio
import csv
import os
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_common.events import UtcTime
from tributary_common.rpc_contracts import BrowseItem

from ..sdk import BrowseFailed, Connector, HistoryRow, Listing, Refused, Sink
from ..settings import IngestSettings
from ..values import parse_text_value, parse_timestamp

READ_CHUNK = 1 << 20
HEAD_BYTES = 64 * 1024  # a header line longer than this is not read when browsing or seeking
BISECT_STOP = 16 * 1024  # below this many bytes the rest is scanned
BROWSE_FILES = 50  # files whose headers one listing reads
Emit = Callable[[str, datetime, Any], None]
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


class CsvBrowse(BaseModel):
    """Where to list: `folder` (absolute, under the roots; none: the roots themselves) and how to read headers."""

    model_config = ConfigDict(extra="forbid")

    folder: str | None = Field(default=None, min_length=1, max_length=4096, pattern=FOLDER_PATTERN)
    pattern: str = Field(default="*.csv", min_length=1, max_length=255)
    time_column: str = Field(default="time", min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    _folder = field_validator("folder", mode="before")(CsvParams._folder.__func__)  # type: ignore[attr-defined]
    _pattern = field_validator("pattern")(CsvParams._pattern.__func__)  # type: ignore[attr-defined]


@dataclass
class _Handover:
    """What `history` read of each file, for the live read to go on from (set when the history is done)."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    files: dict[Path, _File] = field(default_factory=dict)


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
    browse_model = CsvBrowse
    capacity = 1000
    # Real paths of TRIBUTARY_CSV_ROOTS; unconfigured (outside an engine): none, so nothing is read.
    roots: ClassVar[tuple[Path, ...]] = ()

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self._handovers: dict[str, _Handover] = {}

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]] | None:
        if not settings.csv_roots:
            return None  # not announced, not read: an operator names the folders first
        roots = tuple(Path(os.path.realpath(r)) for r in settings.csv_roots)
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"roots": roots}))

    async def read(self, sid: str, params: CsvParams) -> None:
        folder = Path(params.folder)
        files: dict[Path, _File] = {}
        # The framework starts the history (when it backfills) right after subscribing: let it claim the files.
        await asyncio.sleep(0)
        handover = self._handovers.get(sid)
        if handover is not None:
            await handover.done.wait()
            files = dict(handover.files)  # go on where the history stopped; files it did not reach: from the start
            self._handovers.pop(sid, None)
        while True:
            for path in await asyncio.to_thread(_list, folder, params.pattern, self.roots):
                await self._read_file(sid, params, path, files.setdefault(path, _File()), self._emit)
            await asyncio.sleep(params.poll_interval_s)

    def _emit(self, sid: str, t: datetime, v: Any) -> None:
        self.sink.emit(sid, t, v)

    async def unsubscribe(self, sid: str) -> None:
        await super().unsubscribe(sid)
        handover = self._handovers.pop(sid, None)
        if handover is not None:
            handover.done.set()

    async def history(self, sid: str, params: CsvParams, since: datetime, until: datetime) -> AsyncIterator[HistoryRow]:
        """The rows after `since`, each file from the first such row (found by bisection) to its end, then the
        position of each file handed to the live read. Rows after `until` that are already written come too: the
        live read goes on after them."""
        handover = self._handovers[sid] = _Handover()  # before any await: the live read waits for it
        rows: list[tuple[datetime, Any]] = []

        def collect(_sid: str, t: datetime, v: Any) -> None:
            if t > since:
                rows.append((t, v))

        try:
            for path in await asyncio.to_thread(_list, Path(params.folder), params.pattern, self.roots):
                state = await asyncio.to_thread(_seek, path, params, since, self.roots)
                handover.files[path] = state
                if state.broken is not None:
                    self.sink.warn(sid, state.broken)
                    continue
                more = True
                while more:  # a chunk at a time: a large file is never held whole
                    more = await self._read_file(sid, params, path, state, collect, chunks=1)
                    for t, v in rows:
                        yield t, v, None
                    rows.clear()
        finally:
            handover.done.set()

    async def _read_file(
        self, sid: str, params: CsvParams, path: Path, state: _File, emit: Emit, chunks: int | None = None
    ) -> bool:
        """Read what `path` holds past `state` (at most `chunks` chunks); True when there is more to read."""
        if state.broken is not None:
            return False
        try:
            size = await asyncio.to_thread(_size, path)
        except FileNotFoundError:  # removed since the listing
            return False
        if size < state.offset:  # truncated or replaced: read it again
            state.offset, state.header, state.pending = 0, None, b""
        while size > state.offset:
            if chunks is not None:
                if chunks <= 0:
                    return True
                chunks -= 1
            try:
                chunk = await asyncio.to_thread(_read_at, path, state.offset, READ_CHUNK, self.roots)
            except OutsideRoots as exc:
                state.broken = str(exc)
                self.sink.warn(sid, state.broken)
                return False
            if not chunk:
                return False
            state.offset += len(chunk)
            data = state.pending + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                state.pending = data
                continue
            state.pending = data[cut + 1 :]
            self._rows(sid, params, path, state, data[: cut + 1].decode("utf-8", errors="replace").splitlines(), emit)
            await self.sink.room(sid)  # a large backlog of rows is replayed no faster than it is published
        return False

    def _rows(self, sid: str, params: CsvParams, path: Path, state: _File, lines: list[str], emit: Emit) -> None:
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
            emit(sid, t, parse_text_value(row[state.value_idx]))

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        b = cast(CsvBrowse, params)
        where = path or b.folder
        if not where:
            items = [BrowseItem(name=str(r), path=str(r), kind="folder", has_children=True) for r in self.roots]
            return Listing(items=items[:limit], truncated=len(items) > limit, note=f"the folders of {ROOTS_ENV}")
        try:
            CsvParams._folder(where)  # absolute, no '.' or '..'
        except ValueError as exc:
            raise BrowseFailed(str(exc)) from None
        try:
            folders, columns = await asyncio.to_thread(_browse, Path(where), b, self.roots)
        except FileNotFoundError as exc:
            raise BrowseFailed(str(exc)) from None
        items = [BrowseItem(name=f.name, path=str(f), kind="folder", has_children=True) for f in folders]
        items += [
            BrowseItem(
                name=c,
                path=f"{where}#{c}"[:4096],
                kind="column",
                description=", ".join(sorted(files))[:1024],
                params={"folder": where, "pattern": b.pattern, "value_column": c, "time_column": b.time_column},
            )
            for c, files in columns.items()
        ]
        return Listing(items=items[:limit], truncated=len(items) > limit)


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


def _browse(folder: Path, b: CsvBrowse, roots: tuple[Path, ...]) -> tuple[list[Path], dict[str, set[str]]]:
    """Sub-folders (not hidden) and the value columns of the first files of `folder`, with the files having each."""
    files = _list(folder, b.pattern, roots)  # refuses a folder outside the roots
    real = Path(os.path.realpath(folder))
    folders = sorted(
        folder / p.name
        for p in real.iterdir()
        if p.is_dir() and not p.name.startswith(".") and contained(os.path.realpath(p), roots) is None
    )
    columns: dict[str, set[str]] = {}
    for path in files[:BROWSE_FILES]:
        try:
            head = _read_at(path, 0, HEAD_BYTES, roots)
        except (OutsideRoots, OSError):
            continue
        line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
        for name in next(csv.reader([line], delimiter=b.delimiter), []):
            name = name.strip().lstrip("\ufeff")
            if name and name != b.time_column:
                columns.setdefault(name[:256], set()).add(path.name)
    return folders, columns


def _seek(path: Path, params: CsvParams, since: datetime, roots: tuple[Path, ...]) -> _File:
    """The state of `path` positioned at the first complete row whose time is after `since` (bisection over the
    bytes; the file's rows are in time order), its header read. An unreadable header: the state says why."""
    state = _File()
    head = _read_at(path, 0, HEAD_BYTES, roots)
    end = head.find(b"\n")
    if end < 0:
        return state  # no complete header yet: read it from the start like the live read would
    header = [
        h.strip().lstrip("\ufeff")
        for h in next(csv.reader([head[:end].decode("utf-8", "replace")], delimiter=params.delimiter), [])
    ]
    missing = [c for c in (params.time_column, params.value_column) if c not in header]
    if missing:
        state.broken = f"{path.name}: no column {', '.join(map(repr, missing))} in header {header}"
        return state
    state.header, state.time_idx, state.value_idx = (
        header,
        header.index(params.time_column),
        header.index(params.value_column),
    )
    lo, hi = end + 1, _size(path)
    with path.open("rb") as f:

        def row_time(line: bytes) -> datetime | None:
            row = next(csv.reader([line.decode("utf-8", "replace")], delimiter=params.delimiter), [])
            try:
                return parse_timestamp(row[state.time_idx])
            except (ValueError, IndexError):
                return None

        # Invariant: every complete row starting before `lo` is not after `since`; the first one after it starts
        # at or before `hi`.
        while hi - lo > BISECT_STOP:
            mid = (lo + hi) // 2
            f.seek(mid)
            f.readline()  # the rest of the row `mid` falls in
            start = f.tell()
            line = f.readline()
            if start >= hi or not line.endswith(b"\n"):
                hi = mid
                continue
            t = row_time(line)
            if t is not None and t <= since:
                lo = start + len(line)
            else:
                hi = start
    state.offset = lo
    return state
