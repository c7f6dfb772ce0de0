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
columns of the files in a folder under the roots. The params, the path checks and the seeking are in `csv_params`,
`csv_paths` and `csv_positions`.
"""

from __future__ import annotations

import asyncio
import csv
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, cast

from tributary_common.rpc_contracts import BrowseItem

from ..sdk import BrowseFailed, Connector, HistoryRow, Listing, Sink
from ..settings import IngestSettings
from ..values import parse_text_value, parse_timestamp
from .csv_params import CsvBrowse, CsvParams
from .csv_paths import ROOTS_ENV, OutsideRoots, contained, file_size, list_files, read_at
from .csv_positions import HEAD_BYTES, MAX_ROW_BYTES, CsvFile, seek

__all__ = ["CsvBrowse", "CsvParams", "CsvSource"]

READ_CHUNK = 1 << 20
BROWSE_FILES = 50  # files whose headers one listing reads
Emit = Callable[[str, datetime, Any], None]


@dataclass
class _Handover:
    """What `history` read of each file, for the live read to go on from (set when the history is done)."""

    done: asyncio.Event = field(default_factory=asyncio.Event)
    files: dict[Path, CsvFile] = field(default_factory=dict)


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
        files: dict[Path, CsvFile] = {}
        # The framework starts the history (when it backfills) right after subscribing: let it claim the files.
        await asyncio.sleep(0)
        handover = self._handovers.get(sid)
        if handover is not None:
            await handover.done.wait()
            files = dict(handover.files)  # go on where the history stopped; files it did not reach: from the start
            self._handovers.pop(sid, None)
        while True:
            for path in await asyncio.to_thread(list_files, folder, params.pattern, self.roots):
                await self._read_file(sid, params, path, files.setdefault(path, CsvFile()), self._emit)
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
            for path in await asyncio.to_thread(list_files, Path(params.folder), params.pattern, self.roots):
                state = await asyncio.to_thread(seek, path, params, since, self.roots)
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
        self, sid: str, params: CsvParams, path: Path, state: CsvFile, emit: Emit, chunks: int | None = None
    ) -> bool:
        """Read what `path` holds past `state` (at most `chunks` chunks); True when there is more to read."""
        if state.broken is not None:
            return False
        try:
            size = await asyncio.to_thread(file_size, path)
        except FileNotFoundError:  # removed since the listing
            return False
        if size < state.offset:  # truncated or replaced: read it again
            state.offset, state.header, state.pending, state.skipping = 0, None, b"", False
        while size > state.offset:
            if chunks is not None:
                if chunks <= 0:
                    return True
                chunks -= 1
            try:
                chunk = await asyncio.to_thread(read_at, path, state.offset, READ_CHUNK, self.roots)
            except OutsideRoots as exc:
                state.broken = str(exc)
                self.sink.warn(sid, state.broken)
                return False
            if not chunk:
                return False
            state.offset += len(chunk)
            if state.skipping:  # the rest of an over-long row: dropped up to its newline
                end = chunk.find(b"\n")
                if end < 0:
                    continue
                state.skipping, chunk = False, chunk[end + 1 :]
            data = state.pending + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                # A row longer than MAX_ROW_BYTES is skipped: a file without a newline was otherwise held whole in
                # `pending` (memory without bound), copied and searched again at every chunk (quadratic time).
                if len(data) > MAX_ROW_BYTES:
                    state.pending, state.skipping = b"", True
                    self.sink.warn(sid, f"{path.name}: a row longer than {MAX_ROW_BYTES} bytes skipped")
                else:
                    state.pending = data
                continue
            state.pending = data[cut + 1 :]
            self._rows(sid, params, path, state, data[: cut + 1].decode("utf-8", errors="replace").splitlines(), emit)
            await self.sink.room(sid)  # a large backlog of rows is replayed no faster than it is published
        return False

    def _rows(self, sid: str, params: CsvParams, path: Path, state: CsvFile, lines: list[str], emit: Emit) -> None:
        reader = csv.reader(lines, delimiter=params.delimiter)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # A field over the csv module's limit (128 KiB): raised out of the read, it failed the read at the
                # same row forever. The reader goes on with the next line.
                self.sink.warn(sid, f"{path.name}: a row skipped: {exc}")
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if state.header is None:
                if not state.take_header(row, params, path):
                    self.sink.warn(sid, cast(str, state.broken))
                    return
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


def _browse(folder: Path, b: CsvBrowse, roots: tuple[Path, ...]) -> tuple[list[Path], dict[str, set[str]]]:
    """Sub-folders (not hidden) and the value columns of the first files of `folder`, with the files having each."""
    files = list_files(folder, b.pattern, roots)  # refuses a folder outside the roots
    real = Path(os.path.realpath(folder))
    folders = sorted(
        folder / p.name
        for p in real.iterdir()
        if p.is_dir() and not p.name.startswith(".") and contained(os.path.realpath(p), roots) is None
    )
    columns: dict[str, set[str]] = {}
    for path in files[:BROWSE_FILES]:
        try:
            head = read_at(path, 0, HEAD_BYTES, roots)
        except (OutsideRoots, OSError):
            continue
        line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
        for name in next(csv.reader([line], delimiter=b.delimiter), []):
            name = name.strip().lstrip("\ufeff")
            if name and name != b.time_column:
                columns.setdefault(name[:256], set()).add(path.name)
    return folders, columns
