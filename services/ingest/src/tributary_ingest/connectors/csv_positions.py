"""Where the `csv` reading of a file stands (`CsvFile`), and finding the first row after a time in a file
(bisection over its bytes) for a backfill."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..values import parse_timestamp
from .csv_params import CsvParams
from .csv_paths import file_size, read_at

HEAD_BYTES = 64 * 1024  # a header line longer than this is not read when browsing or seeking
BISECT_STOP = 16 * 1024  # below this many bytes the rest is scanned
MAX_ROW_BYTES = 1 << 20  # a longer row is skipped (by the live read), and never read whole by the bisection


@dataclass
class CsvFile:
    offset: int = 0
    header: list[str] | None = None
    time_idx: int = -1
    value_idx: int = -1
    broken: str | None = None
    pending: bytes = field(default=b"")
    skipping: bool = False  # inside a row over MAX_ROW_BYTES: its bytes are dropped up to its newline

    def take_header(self, row: list[str], params: CsvParams, path: Path) -> bool:
        """The header row of `path`: True when it has both columns, else the state is broken (and says why)."""
        header = [h.strip().lstrip("\ufeff") for h in row]
        missing = [c for c in (params.time_column, params.value_column) if c not in header]
        if missing:
            self.broken = f"{path.name}: no column {', '.join(map(repr, missing))} in header {header}"
            return False
        self.header = header
        self.time_idx = header.index(params.time_column)
        self.value_idx = header.index(params.value_column)
        return True


def seek(path: Path, params: CsvParams, since: datetime, roots: tuple[Path, ...]) -> CsvFile:
    """The state of `path` positioned at the first complete row whose time is after `since` (bisection over the
    bytes; the file's rows are in time order), its header read. An unreadable header: the state says why."""
    state = CsvFile()
    head = read_at(path, 0, HEAD_BYTES, roots)
    end = head.find(b"\n")
    if end < 0:
        return state  # no complete header yet: read it from the start like the live read would
    row = next(csv.reader([head[:end].decode("utf-8", "replace")], delimiter=params.delimiter), [])
    if not state.take_header(row, params, path):
        return state
    lo, hi = end + 1, file_size(path)
    with path.open("rb") as f:

        def row_time(line: bytes) -> datetime | None:
            row = next(csv.reader([line.decode("utf-8", "replace")], delimiter=params.delimiter), [])
            try:
                return parse_timestamp(row[state.time_idx])
            except (ValueError, IndexError, csv.Error):  # csv.Error: a field over the csv module's size limit
                return None

        # Invariant: every complete row starting before `lo` is not after `since`; the first one after it starts
        # at or before `hi`.
        while hi - lo > BISECT_STOP:
            mid = (lo + hi) // 2
            f.seek(mid)
            # Each read bounded: a file without newlines was read whole into memory here. A row start not found
            # within the bound moves `hi` down, so the read starts earlier (what is not after `since` is dropped).
            rest = f.readline(MAX_ROW_BYTES)  # the rest of the row `mid` falls in
            start = f.tell()
            line = f.readline(MAX_ROW_BYTES)
            if start >= hi or not rest.endswith(b"\n") or not line.endswith(b"\n"):
                hi = mid
                continue
            t = row_time(line)
            if t is not None and t <= since:
                lo = start + len(line)
            else:
                hi = start
    state.offset = lo
    return state
