"""Hostile csv params and files: a `since` without a UTC offset is rejected (it raised TypeError on the first row,
failing the read forever); a field over the csv module's 128 KiB limit and a row over 1 MiB are skipped with a
warning (csv.Error failed the read at the same row forever, and rows after it were never read); a file without a
newline is not held whole in memory. Each failed on the code before."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.ingest.test_csv_connector import t
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.timeutil import utcnow
from tributary_ingest.connectors.csv_files import CsvParams, CsvSource
from tributary_ingest.connectors.csv_positions import MAX_ROW_BYTES, CsvFile
from tributary_ingest.sdk import Quality, SampleValue


async def test_long_fields_and_rows_are_skipped_and_a_naive_since_rejected(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "time,v\n"
        f"{t(1)},1\n"
        f"{t(2)},{'x' * 200_000}\n"  # one field over csv.field_size_limit() (131072)
        f"{t(3)},3\n"
        f"{t(4)},{'y' * (3 * MAX_ROW_BYTES)}\n"  # one row over MAX_ROW_BYTES
        f"{t(5)},5\n"
    )
    good = sub("csv", {"folder": str(folder), "value_column": "v", "poll_interval_s": 0.1})
    naive = sub("csv", {"folder": str(folder), "value_column": "v", "since": "2026-01-01T00:00:00"})
    async with engine(make_settings(amqp_url, cache_namespace, csv_roots=[tmp_path]), {"csv": CsvSource}) as e:
        amqp_bus.demand("csv", [good, naive])
        await eventually(lambda: len(amqp_bus.values(good.sid)) == 3, what="the rows around the long ones")
        assert amqp_bus.values(good.sid) == [(t(1), 1), (t(3), 3), (t(5), 5)]
        await eventually(lambda: naive.sid in e.status()["sources"]["csv"]["rejected"], what="the naive since")
        status = e.status()["sources"]["csv"]
        assert "params.since: Value error, since needs a UTC offset" in status["rejected"][naive.sid]
        assert status["failing"] == {}
        reads = e.metrics.registry.get_sample_value("tributary_ingest_reads_total", {"source": "csv"})
        assert reads == 1, "the read was never restarted"
        data = e.metrics.registry.get_sample_value("tributary_ingest_errors_total", {"source": "csv", "kind": "data"})
        assert data == 2  # each long row warned once


def test_since_is_utc_and_inside_the_years() -> None:
    since = CsvParams.model_validate({"folder": "/d", "value_column": "v", "since": "2026-01-01T01:00:00+01:00"}).since
    assert since is not None and since.utcoffset() is not None and since.isoformat() == "2026-01-01T00:00:00+00:00"
    for bad in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"):
        with pytest.raises(ValueError, match="outside the years 1-9999"):
            CsvParams.model_validate({"folder": "/d", "value_column": "v", "since": bad})


class _Rows:
    """The connector's sink, recording (no broker: this test is about what the reader holds)."""

    def __init__(self) -> None:
        self.rows: list[tuple[datetime, SampleValue]] = []
        self.warnings: list[str] = []

    def emit(self, sid: str, t: datetime, v: SampleValue, q: Quality = None) -> None:
        self.rows.append((t, v))

    def emit_many(self, sid: str, rows: object) -> None:
        raise AssertionError("not used by csv")

    async def room(self, sid: str) -> None:
        return None

    def warn(self, sid: str, message: str) -> None:
        self.warnings.append(message)

    def fail(self, sid: str, error: BaseException) -> None:
        raise AssertionError(error)


def _unended(folder: Path) -> tuple[Path, int]:
    """A csv file whose second line never ends (a writer that never writes its newline), and its size."""
    root = Path(os.path.realpath(folder))
    path = root / "a.csv"
    path.write_bytes(b"time,v\n" + b"z" * (8 * MAX_ROW_BYTES))
    return path, path.stat().st_size


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


async def test_a_file_without_newlines_is_not_held_whole(tmp_path: Path) -> None:
    path, size = _unended(tmp_path)
    sink = _Rows()
    source = type("Csv", (CsvSource,), {"roots": (path.parent,)})(sink)
    params = CsvParams(folder=str(tmp_path), value_column="v")
    state = CsvFile()
    await source._read_file("s", params, path, state, source._emit)
    assert len(state.pending) <= MAX_ROW_BYTES, f"{len(state.pending)} bytes of one row held"
    assert state.offset == size
    # The line ends at last: skipped, and the rows after it are read.
    _append(path, b"zz\n" + f"{utcnow().isoformat()},7\n".encode())
    await source._read_file("s", params, path, state, source._emit)
    assert [v for _, v in sink.rows] == [7]
    assert any("longer than" in w for w in sink.warnings)
