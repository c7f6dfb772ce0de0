"""Samples of many 1 Hz sids, live (issue 14): how far behind what is readable falls when N sids each publish a
single-sample message every second (ingest's 0.25 s batching sends one sample a message at 1 Hz) and the real
samples `Recorder` writes them into the local FerretDB. Staged (the default: `sample_staging`, a batch acked once
staged, merged into the buckets in a loop) against direct (each batch written into the buckets before its ack), in
the same run.

Each second the bench publishes one message per sid (with confirms), then notes how many seconds of the sids' data
are not readable yet (published minus `written`, which counts samples once in their buckets); after `--seconds` it
waits until all are readable. A recorder keeps up if that stays near its batch delay plus a merge, and falls behind
if it grows every second. Direct runs only at `--direct-max` sids and fewer: past its rate (~250 sids) it drains
for minutes.

    .venv/bin/python bench/samples_live.py [--sids 300 1000] [--seconds 60] [--direct-max 300]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.samples_many_sids import T0, samples_recorder, sid_names
from tests.support import platform
from tests.support.polling import eventually
from tributary_common.samples import Sample, SampleBatch
from tributary_hub.amqp import declare_topology
from tributary_hub.partitions import Layout
from tributary_hub.sample_store import SampleStore


async def live(sids: int, seconds: int, staged: bool) -> dict[str, float]:
    with platform.isolated_env("bench-live", "bench-secret-0123456789-0123456789") as env:
        client: AsyncMongoClient[Any] = AsyncMongoClient(env["TRIBUTARY_MONGODB_URL"])
        store = SampleStore(client[env["TRIBUTARY_MONGODB_DB"]], Layout.PARTITIONED)
        connection = await aio_pika.connect_robust(env["TRIBUTARY_AMQP_URL"])
        recorder = samples_recorder(store, staged)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await declare_topology(channel)
            exchange = await channel.get_exchange("tributary.samples")
            await recorder.start(connection)
            names = sid_names(sids)
            behind: list[float] = []
            started = time.perf_counter()
            for second in range(seconds):
                at = datetime.fromtimestamp(T0 / 1e6 + second, UTC)
                bodies = [
                    SampleBatch(sid=sid, source="sim", samples=[Sample(t=at, v=float(k))]).model_dump_json().encode()
                    for k, sid in enumerate(names)
                ]
                await asyncio.gather(
                    *(
                        exchange.publish(aio_pika.Message(body), routing_key=f"sim.{sid}")
                        for body, sid in zip(bodies, names, strict=True)
                    )
                )
                await asyncio.sleep(max(0.0, started + second + 1 - time.perf_counter()))
                behind.append(((second + 1) * sids - recorder.writer.written) / sids)
            late = time.perf_counter() - started - seconds  # the publisher's own lateness (a busy process)
            ended = time.perf_counter()
            await eventually(lambda: recorder.writer.written >= sids * seconds, 3600, "all readable", 0.05)
            drained = time.perf_counter() - ended
            assert await store.count(names[-1]) == seconds
            trace = ", ".join(f"{b:.0f}" for b in behind[9::10])
            print(f"    {sids} sids {'staged' if staged else 'direct'}: behind every 10 s: {trace}", flush=True)
            return {"max": max(behind), "end": behind[-1], "drained": drained, "late": late}
        finally:
            await recorder.stop()
            await connection.close()
            await client.drop_database(env["TRIBUTARY_MONGODB_DB"])
            await client.close()


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    print(f"| sids at 1 Hz, {args.seconds} s | recorder | behind at most | behind at the end | all readable after |")
    print("|---:|---|---:|---:|---:|")
    for n in args.sids:
        for staged in (False, True):
            if not staged and n > args.direct_max:
                continue
            got = await live(n, args.seconds, staged)
            print(
                f"| {n:,} | {'staged (default)' if staged else 'direct'} | {got['max']:.1f} s | {got['end']:.1f} s | "
                f"{got['drained']:.1f} s (publisher late {got['late']:.1f} s) |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sids", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--direct-max", type=int, default=300)
    asyncio.run(main(parser.parse_args()))
