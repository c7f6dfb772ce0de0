"""The csv source's backfill by file position after a lease changes hands, and its browsing (sub-folders and
columns under TRIBUTARY_CSV_ROOTS, never outside)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.rpc import RpcError
from tributary_common.timeutil import format_time, utcnow
from tributary_ingest.browsing import Browser
from tributary_ingest.connectors.csv_files import CsvSource
from tributary_ingest.secret_store import SecretStore


def rows(base: datetime, start: int, stop: int) -> str:
    return "".join(f"{format_time(base + timedelta(seconds=i / 2))},{i},x{i}\n" for i in range(start, stop))


def not_increasing(e: Any) -> float:
    v = e.metrics.registry.get_sample_value(
        "tributary_ingest_samples_dropped_total", {"source": "csv", "reason": "not_increasing"}
    )
    return v or 0.0


async def test_backfill_from_the_watermark_by_file_position(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    base = utcnow() - timedelta(seconds=4000)
    (folder / "a.csv").write_text("time,v,label\n" + rows(base, 0, 5000))  # ~190 KB: the bisection has work
    s = sub("csv", {"folder": str(folder), "value_column": "v", "poll_interval_s": 0.1})
    settings = make_settings(amqp_url, cache_namespace, csv_roots=[tmp_path])
    amqp_bus.demand("csv", [s])
    async with engine(settings, {"csv": CsvSource}):
        await eventually(lambda: len(amqp_bus.values(s.sid)) == 5000, timeout=40, what="the existing rows")
    # Nobody owns the sid (the instance left, handing back its lease and watermark): rows are written meanwhile.
    with (folder / "a.csv").open("a") as f:
        f.write(rows(base, 5000, 5100))
    (folder / "b.csv").write_text("time,v,label\n" + rows(base, 5100, 5150))
    async with engine(settings, {"csv": CsvSource}) as e:
        await eventually(lambda: len(amqp_bus.values(s.sid)) >= 5150, timeout=40, what="the rows written meanwhile")
        with (folder / "b.csv").open("a") as f:  # and live from where the history stopped
            f.write(rows(base, 5150, 5160))
        await eventually(lambda: len(amqp_bus.values(s.sid)) >= 5160, what="live rows after the backfill")
        # The new owner started at the watermark's position: it read no row of before again (the old behaviour,
        # reading every file from the start, had the pipeline drop 5000 of them here).
        assert not_increasing(e) == 0
    assert [v for _, v in amqp_bus.values(s.sid)] == list(range(5160))
    amqp_bus.assert_strictly_increasing()


async def test_browse_columns_and_folders_only_under_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "line1" / "archive").mkdir(parents=True)
    (root / "line1" / ".hidden").mkdir()
    (root / "line1" / "a.csv").write_text("time,temp,state\n2026-01-01T00:00:00Z,1,on\n")
    (root / "line1" / "b.csv").write_text("time;temp;pressure\n")
    (root / "line1" / "notes.txt").write_text("x\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("time,password\n")
    (root / "line1" / "escape").symlink_to(outside)
    connector = CsvSource.configure(make_settings("amqp://unused", "unused", csv_roots=[root]))(_NoSink())  # type: ignore[misc]
    browser = Browser("csv", connector, SecretStore(None), "test", 10.0)

    top = await browser.browse({})
    assert [i.path for i in top.items] == [str(root.resolve())]
    listing = await browser.browse({"params": {"folder": str(root / "line1")}})
    by_name = {i.name: i for i in listing.items}
    assert {"archive", "temp", "state"} <= set(by_name)
    assert not {".hidden", "escape", "password"} & set(by_name)  # no hidden folder, no link out of the roots
    assert by_name["archive"].kind == "folder" and by_name["archive"].has_children
    assert by_name["temp"].params == {
        "folder": str(root / "line1"),
        "pattern": "*.csv",
        "value_column": "temp",
        "time_column": "time",
    }
    semi = await browser.browse({"path": str(root / "line1"), "params": {"delimiter": ";"}})
    assert {"pressure"} <= {i.name for i in semi.items}
    for where in (str(outside), str(root / "line1" / "escape"), "/etc"):
        with pytest.raises(RpcError) as refused:
            await browser.browse({"path": where})
        assert refused.value.code == "refused", where
    with pytest.raises(RpcError) as dotted:
        await browser.browse({"path": str(root / "line1") + "/../../outside"})
    assert dotted.value.code == "browse_failed" and ".." in dotted.value.message
    with pytest.raises(RpcError) as bad:
        await browser.browse({"params": {"pattern": "../*.csv"}})
    assert bad.value.code == "invalid"


class _NoSink:
    def emit(self, *a: Any, **k: Any) -> None: ...
    def emit_many(self, *a: Any, **k: Any) -> None: ...
    async def room(self, sid: str) -> None: ...
    def warn(self, sid: str, message: str) -> None: ...
    def fail(self, sid: str, error: BaseException) -> None: ...
