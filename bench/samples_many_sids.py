"""Sample storage at many sids (issue 14): what a batch holding one sample of each of N sids costs the sample store
on FerretDB, the shape the samples recorder meets when ingest publishes many 1 Hz sids (at 1 Hz its 0.25 s batching
sends one sample a message, and a recorder batch of 500 messages is then 500 sids).

For each `--sids` count, in a database of its own: the first batch (every sid's partitions made), then `--batches`
more into the same hours; for the steady batches the median seconds, the cost a sid, where the time went
(`write_hour`, `write_day`, current values; summed over the writes in flight) and the database commands a batch
sent; then the next day's partitions made ahead (`sample_days`) and that day's first batch. Baseline in the same
run: the same batches written as one document per sample with one `insert_many` each
(the layout before hourly buckets), which costs one command a batch whatever the sids.

Then the real samples `Recorder` (the hub's default batch size and prefetch), writing directly and staged (the
default, `sample_staging`), drains `--recorder-seconds` of 1 Hz single-sample messages of each of `--recorder-sids`
sids, queued beforehand in a vhost of its own, until all are readable: its messages a second against the sids' own
rate (the recorder keeps up with them live only if it drains at least that).

    .venv/bin/python bench/samples_many_sids.py [--sids 100 1000] [--batches 3] [--layout partitioned|indexed]
                                                [--recorder-sids 300] [--recorder-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient, monitoring

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.samples_store import writer
from tests.support import platform
from tests.support.polling import eventually
from tributary_common.amqp import HUB_RECORDER_SAMPLES
from tributary_common.samples import Sample, SampleBatch
from tributary_hub import sample_writes
from tributary_hub.amqp import declare_topology
from tributary_hub.partitions import Layout
from tributary_hub.recorder import Recorder
from tributary_hub.sample_days import prepare_day
from tributary_hub.sample_partitions import DAY_US
from tributary_hub.sample_records import samples_to_docs
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import Point
from tributary_hub.settings import HubSettings

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in µs
STAGES = ("write_hour", "write_day", "set_currents")


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def timed(spent: dict[str, float], name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start

    return wrapper


def sid_names(n: int) -> list[str]:
    """Sids as ingest names them: fifty items a unit."""
    return [f"plant.unit{k // 50}.tag{k}" for k in range(n)]


def batch(sids: list[str], second: int) -> list[tuple[str, list[Point]]]:
    return [(sid, [Point(T0 + second * 1_000_000 + k, float(k))]) for k, sid in enumerate(sids)]


async def buckets(
    client: AsyncMongoClient[Any], layout: Layout, n: int, batches: int, cmds: Commands
) -> dict[str, Any]:
    name = f"bench_sids_{uuid.uuid4().hex[:8]}"
    spent: dict[str, float] = defaultdict(float)
    originals = {stage: getattr(sample_writes, stage) for stage in STAGES}
    for stage, fn in originals.items():
        setattr(sample_writes, stage, timed(spent, stage, fn))
    try:
        store = SampleStore(client[name], layout)
        await store.create_indexes()
        sids = sid_names(n)
        start = time.perf_counter()
        await store.write(batch(sids, 0))
        first = time.perf_counter() - start
        steady: list[float] = []
        stages: dict[str, float] = defaultdict(float)
        commands: Counter[str] = Counter()
        for second in range(1, batches + 1):
            spent.clear()
            cmds.counts.clear()
            start = time.perf_counter()
            await store.write(batch(sids, second))
            steady.append(time.perf_counter() - start)
            for stage in STAGES:
                stages[stage] += spent[stage] / batches
            commands.update({k: v / batches for k, v in cmds.counts.items()})  # type: ignore[dict-item]
        assert await store.count(sids[-1]) == batches + 1
        # The next day, its partitions made ahead (`sample_days`, at 23:00 UTC in the hub), then its first batch.
        start = time.perf_counter()
        await prepare_day(store, T0 + DAY_US)
        ahead = time.perf_counter() - start
        start = time.perf_counter()
        await store.write(batch(sids, 86_400))
        prepared = time.perf_counter() - start
        return {
            "first": first,
            "steady": statistics.median(steady),
            "stages": stages,
            "commands": commands,
            "ahead": ahead,
            "prepared": prepared,
        }
    finally:
        for stage, fn in originals.items():
            setattr(sample_writes, stage, fn)
        await client.drop_database(name)


async def one_document_each(client: AsyncMongoClient[Any], n: int, batches: int) -> float:
    name = f"bench_sids_old_{uuid.uuid4().hex[:8]}"
    try:
        coll = client[name]["samples"]
        sids = sid_names(n)
        await coll.insert_many([{"_id": f"{s}|{p.t}", "sid": s, "t": p.t, "v": p.v} for s, (p,) in batch(sids, 0)])
        took = []
        for second in range(1, batches + 1):
            docs = [{"_id": f"{s}|{p.t}", "sid": s, "t": p.t, "v": p.v} for s, (p,) in batch(sids, second)]
            start = time.perf_counter()
            await coll.insert_many(docs, ordered=False)
            took.append(time.perf_counter() - start)
        return statistics.median(took)
    finally:
        await client.drop_database(name)


def samples_recorder(store: SampleStore, staged: bool) -> Recorder:
    """The hub's samples recorder, with its default batching, writing staged or directly."""
    settings = HubSettings()
    return Recorder(
        "samples",
        HUB_RECORDER_SAMPLES,
        None,
        samples_to_docs(),
        batch_size=settings.recorder_batch_size,
        batch_bytes=settings.recorder_batch_mb * 1024 * 1024,
        max_delay_ms=settings.recorder_batch_max_delay_ms,
        prefetch=settings.recorder_prefetch,
        retry_min_s=0.2,
        retry_max_s=5.0,
        writer=writer(store, staged=staged),
    )


async def through_recorder(layout: Layout, sids: int, seconds: int, staged: bool) -> float:
    """Messages/s the real samples recorder (staged or direct) drains of `seconds` × `sids` single-sample messages,
    queued first, until all are readable."""
    with platform.isolated_env("bench-sids", "bench-secret-0123456789-0123456789") as env:
        client: AsyncMongoClient[Any] = AsyncMongoClient(env["TRIBUTARY_MONGODB_URL"])
        store = SampleStore(client[env["TRIBUTARY_MONGODB_DB"]], layout)
        connection = await aio_pika.connect_robust(env["TRIBUTARY_AMQP_URL"])
        try:
            await store.create_indexes()
            channel = await connection.channel(publisher_confirms=True)
            await declare_topology(channel)
            exchange = await channel.get_exchange("tributary.samples")
            names = sid_names(sids)
            for second in range(seconds):
                at = datetime.fromtimestamp(T0 / 1e6 + second, UTC)
                for k, sid in enumerate(names):
                    body = SampleBatch(sid=sid, source="sim", samples=[Sample(t=at, v=float(k))])
                    await exchange.publish(aio_pika.Message(body.model_dump_json().encode()), routing_key=f"sim.{sid}")
            recorder = samples_recorder(store, staged)
            started = time.perf_counter()
            await recorder.start(connection)
            await eventually(lambda: recorder.writer.written >= sids * seconds, 1800, "all recorded", 0.05)
            took = time.perf_counter() - started
            await recorder.stop()
            assert await store.count(names[-1]) == seconds
            return sids * seconds / took
        finally:
            await connection.close()
            await client.drop_database(env["TRIBUTARY_MONGODB_DB"])
            await client.close()


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    cmds = Commands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(platform.mongodb_url(), event_listeners=[cmds])
    layout = Layout(args.layout)
    rows = []
    try:
        for n in args.sids:
            base = await one_document_each(client, n, args.batches)
            got = await buckets(client, layout, n, args.batches, cmds)
            rows.append((n, base, got))
            stages = ", ".join(f"{s} {got['stages'][s]:.2f} s" for s in STAGES)
            commands = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(got["commands"].items()))
            print(f"{n:,} sids: first batch {got['first']:.1f} s, then {got['steady']:.2f} s a batch", flush=True)
            print(
                f"    the next day made ahead in {got['ahead']:.1f} s (in the background, an hour before), then its "
                f"first batch {got['prepared']:.2f} s",
                flush=True,
            )
            print(f"    summed over the writes in flight: {stages}; commands a batch: {commands}", flush=True)
    finally:
        await client.close()
    rates = {}
    for staged in (False, True) if args.recorder_sids else ():
        rates[staged] = await through_recorder(layout, args.recorder_sids, args.recorder_seconds, staged)
    print(f"\n| sids ({layout}) | first batch | steady batch | a sid | samples/s | one document each | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, base, got in rows:
        print(
            f"| {n:,} | {got['first']:.1f} s | {got['steady']:.2f} s | {got['steady'] / n * 1000:.1f} ms | "
            f"{n / got['steady']:,.0f} | {base * 1000:.0f} ms ({n / base:,.0f}/s) | {base / got['steady']:.3f} |"
        )
    for staged, rate in rates.items():
        print(
            f"\nthe samples recorder ({'staged, the default' if staged else 'direct'}) drained {args.recorder_seconds} "
            f"s of {args.recorder_sids:,} sids at 1 Hz (one sample a message) at {rate:,.0f} messages/s: "
            f"{rate / args.recorder_sids:.2f}× the sids' own rate"
        )
    if len(rates) == 2:
        print(f"staged / direct: {rates[True] / rates[False]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sids", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--layout", choices=[x.value for x in Layout], default=Layout.PARTITIONED.value)
    parser.add_argument("--recorder-sids", type=int, default=300, help="0: no recorder run")
    parser.add_argument("--recorder-seconds", type=int, default=10)
    asyncio.run(main(parser.parse_args()))
