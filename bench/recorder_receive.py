"""The events recorder with its receive on aio-pika (as built) against the same recorder fed by pika in a thread: what
changing the AMQP client under the recorder would buy (issues 13 and 14; `amqp_consume.py` measured the clients
alone).

Both sides run the real `Recorder` conversion and write path (`Recorder._record`: `events_to_docs`, the batch
writer, `EventStore.write` into the `packed` layout on FerretDB) with the same batch size (2,000), prefetch (4,000)
and maximum delay (100 ms); they differ only in how deliveries arrive and acks leave:

- `aio-pika`: `Recorder.start`, its `Consumer` and `ack_all`, exactly as the hub runs it;
- `pika thread`: a pika `BlockingConnection` consuming in a thread, handing each read's deliveries to the event
  loop as one list (`call_soon_threadsafe`); the loop cuts batches, calls `Recorder._record` and sends one
  `ack(multiple=True)` per batch back to the thread (`add_callback_threadsafe`). A prototype: no reconnection, no
  dead letters (the bench's events are all valid), which is what a real pika receive would still have to build.

`--events` (default 40,000) events in bursts of 1,000 per topic over 100 topics are published to the recorder's
queue before each drain; the two modes alternate for `--rounds` rounds (default 2), each into a vhost and ids of
its own. Reports events/s and this process's CPU per event. `.venv/bin/python bench/recorder_receive.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.history_events import TOPICS, fill_recorder_queue, topic  # noqa: E402
from bench.support.pika_thread import PikaThread  # noqa: E402
from tests.support import platform  # noqa: E402
from tributary_common.amqp import HUB_RECORDER_EVENTS  # noqa: E402
from tributary_common.mongo import connect  # noqa: E402
from tributary_hub.documents import ALL_DOCUMENTS  # noqa: E402
from tributary_hub.event_records import TopicRetention, events_to_docs  # noqa: E402
from tributary_hub.event_store import EventStore  # noqa: E402
from tributary_hub.partitions import Layout, Partitions  # noqa: E402
from tributary_hub.recorder import Recorder  # noqa: E402

BATCH, PREFETCH, MAX_DELAY_S = 2000, 4000, 0.1


@dataclass(slots=True)
class Delivery:
    """What the recorder reads of a message (body, headers, ids), from pika's callback arguments."""

    body: bytes
    headers: dict[str, Any] | None
    delivery_tag: int
    message_id: str | None
    routing_key: str | None


def recorder(store: EventStore) -> Recorder:
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
    )


async def with_aio_pika(url: str, store: EventStore, total: int) -> None:
    connection = await aio_pika.connect_robust(url)
    rec = recorder(store)
    await rec.start(connection)
    while rec.writer.written < total:  # noqa: ASYNC110  (polls the recorder's own counter)
        await asyncio.sleep(0.02)
    await rec.stop()
    await connection.close()


async def with_pika_thread(url: str, store: EventStore, total: int) -> None:
    rec = recorder(store)
    receiver = PikaThread(
        url,
        HUB_RECORDER_EVENTS.name,
        PREFETCH,
        lambda method, properties, body: Delivery(
            body, properties.headers, method.delivery_tag, properties.message_id, method.routing_key
        ),
    )
    await receiver.start()
    pending: list[Delivery] = []
    while rec.writer.written < total:
        if not pending:
            pending = await receiver.inbox.get()
        deadline = time.monotonic() + MAX_DELAY_S
        while len(pending) < BATCH and (left := deadline - time.monotonic()) > 0:
            try:
                pending += await asyncio.wait_for(receiver.inbox.get(), left)
            except TimeoutError:
                break
        batch, pending = pending[:BATCH], pending[BATCH:]
        await rec._record(cast(list[AbstractIncomingMessage], batch))  # what it reads, Delivery has
        receiver.ack(batch[-1].delivery_tag)
    await receiver.stop()


MODES = {"aio-pika": with_aio_pika, "pika thread": with_pika_thread}


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
        await store.topics.insert_many([{"_id": topic(i), "uid": uuid.uuid4().hex[:12]} for i in range(TOPICS)])
        print(f"{args.events:,} events per drain, in bursts of 1,000 per topic; batches of {BATCH}")
        for round_ in range(args.rounds):
            for mode in list(MODES) if round_ % 2 == 0 else list(reversed(MODES)):
                vhost = platform.unique("bench-receive")
                url = platform.create_vhost(vhost)
                try:
                    filler = await aio_pika.connect(url)
                    await fill_recorder_queue(filler, args.events, "bursts", f"r{round_}{mode[0]}")
                    await filler.close()
                    start, cpu = time.perf_counter(), time.process_time()
                    await MODES[mode](url, store, args.events)
                    wall, used = time.perf_counter() - start, time.process_time() - cpu
                finally:
                    platform.delete_vhost(vhost)
                rates[mode].append(args.events / wall)
                print(
                    f"round {round_ + 1}  {mode:<12} {args.events / wall:>9,.0f} events/s  "
                    f"{used / args.events * 1e6:>5.0f} µs CPU per event (this process)",
                    flush=True,
                )
        base, other = (statistics.median(rates[m]) for m in MODES)
        print(f"median: aio-pika {base:,.0f}, pika thread {other:,.0f} events/s: {other / base:.2f}×")
    finally:
        await client.drop_database(db_name)
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
