"""Sample storage (issue 14): one sid at 1 Hz for 30 days (2.6 M samples) plus a few other sids, written through
the recorder's conversion and writer into hourly buckets; then a full raw read, and the 30 days' summaries at hour
and minute resolution. Beside it, in the same run, the old layout (one document per sample, `insert_many` as the
recorder did, reads by `(sid, t)` range) on a smaller count (`--old-days`, default 2: it is that slow), and the
whole path through RabbitMQ and the real recorder for a smaller count.

    .venv/bin/python bench/samples_store.py [--days 30] [--layout partitioned|indexed] [--old-days 2]

Against the local FerretDB and RabbitMQ, in a database and a vhost of its own (removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.loop_lag import describe, loop_lateness
from tests.support import platform
from tests.support.polling import eventually
from tributary_common.amqp import HUB_RECORDER_SAMPLES
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import format_time
from tributary_hub.amqp import declare_topology
from tributary_hub.batch_writer import BatchWriter
from tributary_hub.recorder import Recorder
from tributary_hub.sample_records import SampleWriter, samples_to_docs
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import HOUR_US, MINUTE_US, Point, summarize
from tributary_hub.settings import HubSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PER_MESSAGE = 1000  # samples per SampleBatch, as ingest batches them
PER_WRITE = HubSettings().recorder_batch_size  # messages per recorder write (TRIBUTARY_RECORDER_BATCH_SIZE)
OTHERS = 3  # other sids, two days each


def bodies(sid: str, seconds: int) -> list[bytes]:
    out = []
    for first in range(0, seconds, PER_MESSAGE):
        samples = [
            Sample(t=T0 + timedelta(seconds=s), v=round(20 + (s % 600) / 7, 3))
            for s in range(first, min(seconds, first + PER_MESSAGE))
        ]
        out.append(SampleBatch(sid=sid, source="simulator", samples=samples).model_dump_json().encode())
    return out


def writer(store: SampleStore | None, collection: Any = None, *, staged: bool = False) -> BatchWriter:
    """The recorder's writer: staged and merged (`sample_staging`, the hub's default on FerretDB) or direct."""
    common: dict[str, Any] = dict(retry_min_s=0.2, retry_max_s=5.0, throttle=LogThrottle(60))
    if store is None:
        return BatchWriter("samples", "bench", collection, **common)
    return SampleWriter("samples", "bench", None, store=store, staged=staged, **common)


async def record(w: BatchWriter, messages: list[bytes], to_docs: Any) -> float:
    """Seconds to convert and write `messages` the way the recorder does, `PER_WRITE` at a time."""
    started = time.perf_counter()
    for i in range(0, len(messages), PER_WRITE):
        rows = []
        for body in messages[i : i + PER_WRITE]:
            message: Any = SimpleNamespace(body=body, routing_key="simulator.bench")
            rows.append((message, await to_docs(message)))
        assert await w.write(rows) == []
    return time.perf_counter() - started


def old_docs() -> Any:
    """The converter the recorder had: one document per sample."""
    convert = samples_to_docs()

    async def to_docs(message: Any) -> list[dict[str, Any]]:
        (doc,) = await convert(message)
        sid = doc["sid"]
        out = []
        for p in doc["points"]:
            t = format_time(T0 + timedelta(microseconds=p.t - T0_US))
            out.append({"_id": f"{sid}|{t}", "sid": sid, "source": "simulator", "t": t, "v": p.v, "q": p.q})
        return out

    return to_docs


T0_US = int(T0.timestamp()) * 1_000_000


async def new_layout(db: Any, layout: str, days: int) -> dict[str, float]:
    store = SampleStore(db, layout)  # type: ignore[arg-type]
    await store.create_indexes()
    main = bodies("main", days * 86_400)
    others = [b for k in range(OTHERS) for b in bodies(f"other-{k}", 2 * 86_400)]
    n = days * 86_400 + OTHERS * 2 * 86_400
    wrote = await record(writer(store), main + others, samples_to_docs())
    started = time.perf_counter()
    read = sum([len(chunk) async for chunk in store.points("main")])
    read_s = time.perf_counter() - started
    assert read == days * 86_400, read
    out = {"samples": n, "write_per_s": n / wrote, "read_per_s": read / read_s}
    end = T0_US + days * 24 * HOUR_US
    for name, res in (("hour_s", HOUR_US), ("minute_s", MINUTE_US)):
        started = time.perf_counter()
        spans = sum([len(chunk) async for chunk in store.summaries("main", T0_US, end, res)])
        out[name] = time.perf_counter() - started
        assert spans == days * 24 * (1 if res == HOUR_US else 60), spans
    return out


async def old_layout(db: Any, days: int) -> dict[str, float]:
    coll = db["samples"]
    await coll.create_index([("sid", 1), ("t", 1)], unique=True)
    main = bodies("main", days * 86_400)
    n = days * 86_400
    wrote = await record(writer(None, coll), main, old_docs())
    started = time.perf_counter()
    read = 0
    hours: dict[int, list[Point]] = {}
    async for doc in coll.find({"sid": "main", "t": {"$gte": format_time(T0)}}).sort([("t", 1), ("sid", 1)]):
        read += 1
        t = int((datetime.fromisoformat(doc["t"].replace("Z", "+00:00")) - T0).total_seconds() * 1e6) + T0_US
        hours.setdefault(t - t % HOUR_US, []).append(Point(t, doc["v"]))
    read_s = time.perf_counter() - started
    assert read == n, read
    started = time.perf_counter()
    summaries = [summarize(ps, h, h + HOUR_US) for h, ps in hours.items()]
    assert len(summaries) == days * 24
    # Without stored summaries, an hourly summary is the whole raw read plus summarising it.
    return {
        "samples": n,
        "write_per_s": n / wrote,
        "read_per_s": n / read_s,
        "hour_s": read_s + time.perf_counter() - started,
    }


async def through_broker(db: Any, layout: str, url: str, messages: int, staged: bool) -> tuple[float, list[float]]:
    """Samples/s from RabbitMQ (queued beforehand) to the buckets, readable, through the real `Recorder` (staged or
    direct), and how late each 1 ms timer of the event loop fired meanwhile (s, sorted): what the API waits for with
    the recorders in its process."""
    sid = f"broker-{'staged' if staged else 'direct'}"
    store = SampleStore(db, layout)  # type: ignore[arg-type]
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel(publisher_confirms=True)
    await declare_topology(channel)
    exchange = await channel.get_exchange("tributary.samples")
    for body in bodies(sid, messages * PER_MESSAGE):
        await exchange.publish(aio_pika.Message(body), routing_key=f"simulator.{sid}")
    recorder = Recorder(
        "samples",
        HUB_RECORDER_SAMPLES,
        None,
        samples_to_docs(),
        batch_size=PER_WRITE,
        batch_bytes=HubSettings().recorder_batch_mb * 1024 * 1024,  # as the hub's samples recorder
        max_delay_ms=50,
        prefetch=2000,
        retry_min_s=0.2,
        retry_max_s=5.0,
        writer=writer(store, staged=staged),
    )
    gc.collect()
    gc.freeze()  # as the hub does once started (app.py)
    started = time.perf_counter()
    async with loop_lateness() as lags:
        await recorder.start(connection)
        await eventually(lambda: recorder.writer.written >= messages * PER_MESSAGE, 600, "all recorded", 0.02)
        took = time.perf_counter() - started
    gc.unfreeze()
    await recorder.stop()
    await connection.close()
    assert await store.count(sid) == messages * PER_MESSAGE
    return messages * PER_MESSAGE / took, lags


async def main(args: argparse.Namespace) -> None:
    with platform.isolated_env("bench-samples", "bench-secret-0123456789-0123456789") as env:
        client: AsyncMongoClient[Any] = AsyncMongoClient(env["TRIBUTARY_MONGODB_URL"])
        db = client[env["TRIBUTARY_MONGODB_DB"]]
        try:
            old = await old_layout(client[env["TRIBUTARY_MONGODB_DB"] + "_old"], args.old_days)
            await client.drop_database(env["TRIBUTARY_MONGODB_DB"] + "_old")
            new = await new_layout(db, args.layout, args.days)
            url = env["TRIBUTARY_AMQP_URL"]
            direct, _ = await through_broker(db, args.layout, url, args.broker_messages, False)
            broker, lags = await through_broker(db, args.layout, url, args.broker_messages, True)
        finally:
            await client.drop_database(env["TRIBUTARY_MONGODB_DB"] + "_old")
            await client.close()
    print(f"\n| case ({args.layout}) | samples | stored/s | raw read/s | 30-day hourly (s) | minutely (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| buckets, {args.days} d + {OTHERS} sids × 2 d | {new['samples']:,.0f} | {new['write_per_s']:,.0f} | "
        f"{new['read_per_s']:,.0f} | {new['hour_s']:.2f} | {new['minute_s']:.2f} |"
    )
    print(
        f"| one doc per sample, {args.old_days} d | {old['samples']:,.0f} | {old['write_per_s']:,.0f} | "
        f"{old['read_per_s']:,.0f} | {old['hour_s']:.2f} ({args.old_days} d, from raw) | — |"
    )
    n = args.broker_messages * PER_MESSAGE
    print(f"| buckets through RabbitMQ + Recorder, staged (the default) | {n:,} | {broker:,.0f} | | | |")
    print(f"| buckets through RabbitMQ + Recorder, direct | {n:,} | {direct:,.0f} | | | |")
    print(f"\nwhile the staged recorder drained, its event loop ran a 1 ms timer late by {describe(lags)}")
    print(
        f"\nratios new/old: store {new['write_per_s'] / old['write_per_s']:.1f}×, "
        f"raw read {new['read_per_s'] / old['read_per_s']:.1f}×"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--old-days", type=int, default=2)
    parser.add_argument("--layout", choices=["partitioned", "indexed"], default="partitioned")
    parser.add_argument("--broker-messages", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
