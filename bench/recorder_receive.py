"""The events recorder with its receive on aio-pika against the same recorder on its pika receiver (the hub's
default since issue 13's change; `amqp_consume.py` measured the clients alone).

Both sides run the real `Recorder` as the hub builds it (`Recorder.start`, the batch loop, `events_to_docs`, the
batch writer, `EventStore.write` into the `packed` layout on FerretDB, acks per batch) with the same batch size
(2,000), prefetch (4,000) and maximum delay (100 ms); they differ only in the receiver:

- `aio-pika`: the recorder's own `Consumer` (`receivers.AioPikaReceiver`), as before the change;
- `pika`: `pika_receiver.PikaReceiver`, a pika `BlockingConnection` reading in a thread of its own, handing each
  read's deliveries to the event loop in one call and taking acks back.

`--events` (default 40,000) events in bursts of 1,000 per topic over 100 topics are published to the recorder's
queue before each drain; the two modes alternate for `--rounds` rounds (default 2), each into a vhost and ids of
its own. Reports events/s, this process's CPU per event (the pika thread's included), and how late a 1 ms timer
of the event loop fires while the recorder drains (p99, max). `--modes pika` runs one
receiver only (to profile it).
`.venv/bin/python bench/recorder_receive.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history_events import TOPICS, fill_recorder_queue, generation, topic  # noqa: E402
from bench.support.loop_lag import describe, loop_lateness  # noqa: E402
from tests.support import platform  # noqa: E402
from tributary_common.amqp import HUB_RECORDER_EVENTS  # noqa: E402
from tributary_common.mongo import connect  # noqa: E402
from tributary_hub.documents import ALL_DOCUMENTS  # noqa: E402
from tributary_hub.event_records import TopicRetention, events_to_docs  # noqa: E402
from tributary_hub.event_store import EventStore  # noqa: E402
from tributary_hub.partitions import Layout, Partitions  # noqa: E402
from tributary_hub.pika_receiver import PikaReceiver  # noqa: E402
from tributary_hub.recorder import Recorder  # noqa: E402

BATCH, PREFETCH, MAX_DELAY_S = 2000, 4000, 0.1


def recorder(store: EventStore, receiver: str, url: str) -> Recorder:
    return Recorder(
        "events",
        HUB_RECORDER_EVENTS,
        store,
        events_to_docs(TopicRetention(60), 1 << 20),
        batch_size=BATCH,
        max_delay_ms=int(MAX_DELAY_S * 1000),
        prefetch=PREFETCH,
        retry_min_s=0.2,
        retry_max_s=5,
        receiver=PikaReceiver(url, HUB_RECORDER_EVENTS.name, prefetch=PREFETCH, name="bench")
        if receiver == "pika"
        else None,
    )


async def drain(receiver: str, url: str, store: EventStore, total: int) -> list[float]:
    """Until `total` events are recorded; returns how late each 1 ms timer of the loop fired meanwhile (s): what
    the recorder makes the rest of its process wait (the API, when the recorders run in the hub's process)."""
    connection = await aio_pika.connect_robust(url)
    rec = recorder(store, receiver, url)
    await rec.start(connection)
    async with loop_lateness() as lags:
        while rec.writer.written < total:  # noqa: ASYNC110  (polls the recorder's own counter)
            await asyncio.sleep(0.02)
    await rec.stop()
    await connection.close()
    return lags


MODES = ("aio-pika", "pika")


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    db_name = platform.unique("bench_receive").replace("-", "_")
    client = await connect(platform.mongodb_url(), db_name, ALL_DOCUMENTS)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        db = client[db_name]
        partitions = Partitions(db, Layout.PACKED)
        await partitions.prepare()
        store = EventStore(partitions, db["topics"])
        await store.topics.insert_many([generation(topic(i)) for i in range(TOPICS)])
        print(f"{args.events:,} events per drain, in bursts of 1,000 per topic; batches of {BATCH}")
        gc.collect()
        gc.freeze()  # as the hub does once started (app.py): its full collections walk what it holds, not imports
        for round_ in range(args.rounds):
            for mode in [m for m in (MODES if round_ % 2 == 0 else MODES[::-1]) if m in args.modes]:
                vhost = platform.unique("bench-receive")
                url = platform.create_vhost(vhost)
                try:
                    filler = await aio_pika.connect(url)
                    await fill_recorder_queue(filler, args.events, "bursts", f"r{round_}{mode[0]}")
                    await filler.close()
                    start, cpu = time.perf_counter(), time.process_time()
                    lags = await drain(mode, url, store, args.events)
                    wall, used = time.perf_counter() - start, time.process_time() - cpu
                finally:
                    platform.delete_vhost(vhost)
                rates[mode].append(args.events / wall)
                print(
                    f"round {round_ + 1}  {mode:<12} {args.events / wall:>9,.0f} events/s  "
                    f"{used / args.events * 1e6:>5.0f} µs CPU per event (this process); event loop late by "
                    f"{describe(lags)}",
                    flush=True,
                )
        if all(rates[m] for m in MODES):
            base, other = (statistics.median(rates[m]) for m in MODES)
            print(f"median: aio-pika {base:,.0f}, pika {other:,.0f} events/s: {other / base:.2f}×")
    finally:
        await client.drop_database(db_name)
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="receivers to run (profiling)")
    asyncio.run(main(parser.parse_args()))
