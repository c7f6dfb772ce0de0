"""One bad timestamp must not stall or silence a source (issue 10, item 8), on real hub and ingest processes.

A csv row with time `1e20` or `inf` raised OverflowError out of the read, which restarted at the same row forever;
a row in year 9999 moved the sid's watermark, so every later real row was dropped as "not increasing". Now times
outside `[now - max_sample_age_s, now + max_sample_skew_s]` (or not times at all) are refused, counted and
logged, and the read carries on. Failed on the code before: only the rows before the bad one were recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import wait_for
from tests.support.stack import Stack, run_stack


@pytest.fixture
def csv_root(tmp_path: Path) -> Path:
    root = tmp_path / "csv"
    for folder in ("overflow", "future"):
        (root / folder).mkdir(parents=True)
    return root


@pytest.fixture
def stack(tmp_path: Path, csv_root: Path, services: None) -> Iterator[Stack]:
    ingest = {"TRIBUTARY_ENABLED_SOURCES": "csv", "TRIBUTARY_CSV_ROOTS": str(csv_root)}
    with run_stack(tmp_path / "logs", ("hub", "ingest"), per_service={"ingest": ingest}) as s:
        yield s


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def test_bad_times_are_refused_and_counted_and_the_source_carries_on(stack: Stack, csv_root: Path) -> None:
    now = time.time()
    (csv_root / "overflow" / "a.csv").write_text(
        f"time,value\n{now - 30:.3f},1\n1e20,2\ninf,3\n-inf,4\nnan,5\n1e400,6\n{now - 20:.3f},7\n{now - 10:.3f},8\n"
    )
    (csv_root / "future" / "a.csv").write_text(
        f"time,value\n{now - 30:.3f},1\n9999-12-31T23:59:59Z,2\n253402300799,3\n{now + 3600:.3f},4\n"
        f"{now - 20:.3f},7\n{now - 10:.3f},8\n"
    )
    item = {"time_column": "time", "value_column": "value", "poll_interval_s": 0.2}
    unitop = {
        "name": "clocks",
        "record": True,
        "items": {
            name: {"source": "csv", "params": {"folder": str(csv_root / name), **item}}
            for name in ("overflow", "future")
        },
    }
    hub = httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    wait_for(lambda: hub.get("/sources").json()["items"], timeout=30, interval=0.3, what="the csv source announced")
    r = hub.post("/unitops", json=unitop)
    assert r.status_code == 201, r.text

    def recorded() -> dict[str, list[Any]]:
        rows = hub.get("/unitops/clocks/samples", params={"limit": 1000}).json()["items"]
        out: dict[str, list[Any]] = {"overflow": [], "future": []}
        for row in rows:
            out[row["item"]].append(row["v"])
        return out

    expected = {"overflow": [1, 7, 8], "future": [1, 7, 8]}
    wait_for(lambda: recorded() == expected, timeout=60, interval=0.3, what=f"the real rows {expected}")

    # Rows appended after the bad ones still flow: the read did not restart, the watermark did not jump.
    for name in ("overflow", "future"):
        with (csv_root / name / "a.csv").open("a") as f:
            f.write(f"{time.time():.3f},9\n")
    expected = {"overflow": [1, 7, 8, 9], "future": [1, 7, 8, 9]}
    wait_for(lambda: recorded() == expected, timeout=60, interval=0.3, what="the appended rows")

    ingest = httpx.Client(base_url=stack.url("ingest"), timeout=10)
    status = ingest.get("/status").json()["sources"]["csv"]
    assert status["failing"] == {} and sorted(status["leases"].values()) == ["running", "running"], status
    text = ingest.get("/metrics").text
    # Times past year 9999 are refused by the connector (a data warning per row); the rest by the time window.
    assert metric(text, "tributary_ingest_errors_total", source="csv", kind="data") >= 5
    assert metric(text, "tributary_ingest_errors_total", source="csv", kind="connector") == 0
    assert metric(text, "tributary_ingest_samples_dropped_total", source="csv", reason="too_far_ahead") >= 3
    assert metric(text, "tributary_ingest_reads_total", source="csv") == 2, "each read started once, never again"
    # Logged, but not once per refused sample.
    log = stack.procs["ingest"].log_path.read_text()
    assert 1 <= log.count("refused") <= 3, log[-3000:]
