"""Historian reads of one item holding `--days` of 1 Hz samples (issue 14: 30 days, 2.6 M samples; a 1,000-interval
plot and an hourly `tavg` summary ≤ 1 s each, a raw read ≥ 200,000 samples/s, the recorder ≥ 100,000 samples/s).

The samples go in the way production writes them: `SampleBatch`es of 1,000 published to `tributary.samples` and
stored by the hub's recorder (a `Hub` in recorder mode, in this process), into a database and vhost of their own
on the local FerretDB and RabbitMQ. The reads go through the `SeriesStore` `composition.Hub` wires (the bucketed
`sample_store.SampleStore`, whose minute and hour summaries answer whole spans). Reported: recording rate, raw
read rate, plot and summary seconds (each read once), checked against the raw samples: the plot equals one computed
in plain Python from the samples in memory (the baseline, timed), the summary counts every sample. The default
of 1 day keeps a run short; `--days 30` is the issue's load.
`.venv/bin/python bench/historian.py [--days N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import sys
import time
from array import array
from datetime import timedelta
from pathlib import Path

import aio_pika
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import platform  # noqa: E402
from tests.support.polling import eventually  # noqa: E402
from tributary_common.samples import Sample, SampleBatch  # noqa: E402
from tributary_hub.composition import Hub  # noqa: E402
from tributary_hub.historian.times import from_iso, to_datetime  # noqa: E402
from tributary_hub.series import HOUR_US  # noqa: E402
from tributary_hub.settings import HubSettings  # noqa: E402
from tributary_hub.unitop_samples import ItemSelection  # noqa: E402

SECRET = "bench-secret-0123456789-0123456789-abcdef"
SID, SOURCE = "bench-historian-sid", "bench"
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
BATCH = 1000


def say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def value(i: int) -> float:
    return float((i * 7919) % 1000) / 10  # deterministic, every interval has a spread


async def load(hub: Hub, amqp_url: str, n: int) -> float:
    """Publish `n` samples, 1 s apart, and wait until the store answers the last one; samples/s."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("tributary.samples")
    began = time.perf_counter()
    for first in range(0, n, BATCH):
        samples = [Sample(t=to_datetime(T0 + i * 1_000_000), v=value(i)) for i in range(first, min(n, first + BATCH))]
        batch = SampleBatch(sid=SID, source=SOURCE, samples=samples)
        await exchange.publish(aio_pika.Message(batch.model_dump_json().encode()), routing_key=batch.routing_key)
    await connection.close()
    last = T0 + (n - 1) * 1_000_000

    async def stored() -> bool:
        latest = (await hub.series.latest([SID])).get(SID)
        return latest is not None and latest.t >= last

    await eventually(stored, timeout=7200, what="every sample stored", interval=2.0)
    return n / (time.perf_counter() - began)


async def measure(days: float) -> None:
    n = int(days * 86_400)
    start, end = T0, T0 + n * 1_000_000
    with platform.isolated_env("bench-historian", SECRET) as env:
        settings = HubSettings(
            amqp_url=env["TRIBUTARY_AMQP_URL"],
            mongodb_url=env["TRIBUTARY_MONGODB_URL"],
            mongodb_db=env["TRIBUTARY_MONGODB_DB"],
            cache_namespace=env["TRIBUTARY_CACHE_NAMESPACE"],
            jwt_secret=SecretStr(SECRET),
            log_json=False,
        )
        hub = Hub(settings, api=False)
        await hub.start()
        try:
            say(f"recording {n:,} samples")
            record_rate = await load(hub, settings.amqp_url, n)
            say("raw read")
            sel = ItemSelection("bench", ["x"], {"x": SID}, {SID: ["x"]})

            began = time.perf_counter()
            times, values = array("q"), array("d")
            async for chunk in hub.series.points(SID, start, end):
                times.extend(p.t for p in chunk)
                values.extend(p.v for p in chunk)
            raw_s = time.perf_counter() - began
            count = len(times)

            say("plot")
            began = time.perf_counter()
            plot = [row async for row in hub.historian.plot(sel, start, end, 1000)]
            plot_s = time.perf_counter() - began

            say("summary")
            began = time.perf_counter()
            summary = [row async for row in hub.historian.summary(sel, start, end, HOUR_US, ("count", "tavg"))]
            summary_s = time.perf_counter() - began
        finally:
            await hub.stop()
    assert count == n and sum(r["count"] for r in summary) == n, "the store lost samples"
    began = time.perf_counter()
    reference = [reference_plot(times, values, from_iso(r["start"]), from_iso(r["end"])) for r in plot]
    reference_s = time.perf_counter() - began
    assert [[from_iso(p["t"]) for p in r["points"]] for r in plot] == reference, "plot differs from the raw samples"
    print(f"store: {type(hub.series).__name__}; {n:,} samples ({days:g} days at 1 Hz, one item)\n")
    print("| measure | result | issue 14 goal |")
    print("|---|---:|---:|")
    print(f"| recorder (publish → stored) | {record_rate:,.0f} samples/s | ≥ 100,000 samples/s |")
    print(f"| raw read (SeriesStore.points) | {count / raw_s:,.0f} samples/s | ≥ 200,000 samples/s |")
    print(f"| plot, 1,000 intervals ({len(plot)} stated) | {plot_s:.2f} s | ≤ 1 s at 30 days |")
    print(f"| baseline: the same plot in Python from the samples in memory | {reference_s:.2f} s | (equal: checked) |")
    print(f"| hourly tavg summary ({len(summary)} hours) | {summary_s:.2f} s | ≤ 1 s at 30 days |")
    print(f"\nspan {timedelta(microseconds=end - start)}")


def reference_plot(times: array[int], values: array[float], a: int, b: int) -> list[int]:
    """The times of the first, last, lowest and highest sample in `[a, b)` (earliest of equal extremes)."""
    i, j = bisect.bisect_left(times, a), bisect.bisect_left(times, b)
    if i == j:
        return []
    part = values[i:j]
    lo = i + part.index(min(part))
    hi = i + part.index(max(part))
    return sorted({times[i], times[j - 1], times[lo], times[hi]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0, help="days of 1 Hz samples (issue 14: 30)")
    asyncio.run(measure(parser.parse_args().days))


if __name__ == "__main__":
    main()
