"""The csv source against real files on disk: existing rows from `since`, appended rows, new files."""

from __future__ import annotations

from pathlib import Path

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.timeutil import format_time, parse_time
from tributary_ingest.connectors.csv_files import CsvSource


def t(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


async def test_rows_since_then_appended_then_new_files(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "time,temp,state\n"
        f"{t(0)},20.0,on\n"
        f"{t(1)},20.5,on\n"
        f"{t(2)},21,off\n"
        f"{t(3)},,off\n"  # empty cell: null
        "not-a-time,99,on\n"  # skipped with a warning, the read goes on
        f"{t(4)},22.25,on\n"
    )
    (folder / "notes.txt").write_text("ignored: does not match the pattern\n")
    temp = sub("csv", {"folder": str(folder), "value_column": "temp", "since": t(2), "poll_interval_s": 0.1})
    state = sub("csv", {"folder": str(folder), "value_column": "state", "poll_interval_s": 0.1})
    async with engine(make_settings(amqp_url, cache_namespace, csv_roots=[tmp_path]), {"csv": CsvSource}) as e:
        amqp_bus.demand("csv", [temp, state])
        await eventually(lambda: len(amqp_bus.values(temp.sid)) == 3, what="the existing rows since t2")
        assert amqp_bus.values(temp.sid) == [(t(2), 21), (t(3), None), (t(4), 22.25)]
        await eventually(lambda: len(amqp_bus.values(state.sid)) == 5, what="every existing row of state")
        assert [v for _, v in amqp_bus.values(state.sid)] == ["on", "on", "off", "off", "on"]

        # Appended rows, one of them written in two pieces (a half line is not read until it is whole).
        with (folder / "a.csv").open("a") as f:
            f.write(f"{t(5)},23.0,on\n{t(6)},2")
            f.flush()
            await eventually(lambda: len(amqp_bus.values(temp.sid)) == 4, what="the appended whole row")
            f.write("4.5,on\n")
            f.write(f"{t(1)},1.0,on\n")  # older than what was published: dropped, never out of order on the wire
        await eventually(lambda: len(amqp_bus.values(temp.sid)) == 5, what="the completed row")
        # A new file in the folder is tailed too.
        (folder / "b.csv").write_text(f"time,temp,state\n{t(7)},25.0,on\n{int(parse_time(t(8)).timestamp())},26,on\n")
        await eventually(lambda: len(amqp_bus.values(temp.sid)) == 7, what="the rows of the new file")
        assert amqp_bus.values(temp.sid)[3:] == [(t(5), 23.0), (t(6), 24.5), (t(7), 25.0), (t(8), 26)]
        status = e.status()["sources"]["csv"]
        assert set(status["leases"]) == {temp.sid, state.sid} and not status["failing"]
    amqp_bus.assert_strictly_increasing()
    assert format_time(parse_time(t(8))) == t(8)


async def test_missing_folder_is_retried_until_it_appears(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    folder = tmp_path / "later"
    s = sub("csv", {"folder": str(folder), "value_column": "v", "poll_interval_s": 0.1})
    async with engine(make_settings(amqp_url, cache_namespace, csv_roots=[tmp_path]), {"csv": CsvSource}) as e:
        amqp_bus.demand("csv", [s])
        await eventually(lambda: s.sid in e.status()["sources"]["csv"]["failing"], what="the read failing")
        assert "does not exist" in e.status()["sources"]["csv"]["failing"][s.sid]
        folder.mkdir()
        (folder / "x.csv").write_text(f"time,v\n{t(1)},1\n")
        await eventually(lambda: amqp_bus.values(s.sid) == [(t(1), 1)], what="the row after the retry")
