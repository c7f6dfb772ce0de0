"""Event history as it grows (issue 14): reads that cost what they return, against the old single collection.

Load: `--events` (default 1,000,000) events across 100 topics, 30 UTC days, 10 subjects per topic
(`line{0..4}.m{0..1}`), written in time order through the storage's own write path (`EventStore.write`, what the
recorder calls) in batches of `--batch`, into an isolated database (`packed`, the default, unless `--layout`).
Then, each the median of 20 runs (different topics, ranges and ids):

- page: 100 events of one topic by time range (a 10-day window) and subject pattern (`<topic>.line1.#`);
- latest: the newest event of each subject of one topic;
- by id: one event of one topic by its id (what `after_id` resumes from); and the same in a topic whose
  `--busy-events` (100,000) events fall on one day, a day partition of about 100 blocks.

The same three queries run against the old layout (the single `events` collection with its indexes, the old
queries, median of 3) loaded with `--old-events` (default 20,000: at 1,000,000 the old layout takes minutes per
query on FerretDB, which is the problem). The recorder's own rate is measured apart: `--recorder-events` (default 100,000)
events published to RabbitMQ (a vhost of its own) across the 100 topics, in bursts of 1,000 per topic and
interleaved (`--recorder-spread`), then consumed by the real `Recorder` with the hub's events receiver, batch size
and prefetch (`TRIBUTARY_RECORDER_EVENT_*`: pika, 2,000, 4,000 by default).
`.venv/bin/python bench/history_events.py` (about 12 minutes at the defaults; a quick run while iterating:
`--events 50000 --old-events 2000 --recorder-events 20000`). The database and vhost are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import platform  # noqa: E402
from tributary_common.amqp import HUB_RECORDER_EVENTS, Consumer  # noqa: E402
from tributary_common.events import CloudEvent  # noqa: E402
from tributary_common.matcher import pattern_to_regex  # noqa: E402
from tributary_common.mongo import connect  # noqa: E402
from tributary_common.timeutil import format_time  # noqa: E402
from tributary_hub.amqp import declare_topology  # noqa: E402
from tributary_hub.documents import ALL_DOCUMENTS, event_key  # noqa: E402
from tributary_hub.event_records import TopicRetention, events_to_docs  # noqa: E402
from tributary_hub.event_store import EventStore  # noqa: E402
from tributary_hub.history import EventHistory, EventQuery  # noqa: E402
from tributary_hub.partitions import Layout, Partitions  # noqa: E402
from tributary_hub.pika_receiver import PikaReceiver  # noqa: E402
from tributary_hub.recorder import Recorder  # noqa: E402
from tributary_hub.settings import HubSettings  # noqa: E402

TOPICS, DAYS, RUNS, OLD_RUNS = 100, 30, 20, 3
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECTS = [f"line{k}.m{j}" for k in range(5) for j in range(2)]
SETTINGS = HubSettings()  # the hub's, from the environment: id shards of new topics, the events recorder's own


def generation(name: str) -> dict[str, Any]:
    """A topic document as the hub writes one for a new topic: a fresh generation with the id directory shards of
    `TRIBUTARY_EVENT_ID_SHARDS` (2 by default; 8 for generations created before it was kept)."""
    return {"_id": name, "uid": uuid.uuid4().hex[:12], "id_shards": SETTINGS.event_id_shards}


def topic(i: int) -> str:
    return f"t{i:03d}"


def document(n: int, total: int) -> dict[str, Any]:
    """Event `n` of `total`, in time order over DAYS, round robin over topics and subjects."""
    t, subject = topic(n % TOPICS), SUBJECTS[(n // TOPICS) % len(SUBJECTS)]
    at = format_time(T0 + timedelta(seconds=DAYS * 86400 * n / total))
    return {
        "_id": event_key(t, f"e{n}"),
        "eid": f"e{n}",
        "key": f"{t}.{subject}",
        "type": t,
        "subject": subject,
        "time": at,
        "source": "/bench",
        "dataschema": f"/topics/{t}/schemas/1",
        "data_json": f'{{"value": {n % 1000}.5, "unit": "C"}}',
        "traceparent": None,
        "publisher": "bench",
        "publisher_exposed": False,
        "expire_at": None,
    }


async def median_ms(op: Callable[[int], Awaitable[Any]], runs: int = RUNS) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        await op(i)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def window(i: int) -> tuple[datetime, datetime]:
    start = T0 + timedelta(days=(i * 7) % (DAYS - 10), hours=i)
    return start, start + timedelta(days=10)


async def load_new(store: EventStore, total: int, batch: int) -> float:
    """Topic by topic (a bulk load): a write touches one topic's collections, not every topic's."""
    await store.topics.insert_many([generation(topic(i)) for i in range(TOPICS)])
    start = time.perf_counter()
    for t in range(TOPICS):
        ns = range(t, total, TOPICS)
        for first in range(0, len(ns), batch):
            await store.write([document(n, total) for n in ns[first : first + batch]])
        if t % 10 == 9:
            print(
                f"  {t + 1} topics loaded, {(t + 1) * total // TOPICS / (time.perf_counter() - start):,.0f} events/s",
                flush=True,
            )
    return total / (time.perf_counter() - start)


async def time_new(history: EventHistory, total: int) -> dict[str, float]:
    async def page(i: int) -> None:
        t0, t1 = window(i)
        sel = await history.select(EventQuery(pattern=f"{topic(i)}.line1.#", topic=topic(i), start=t0, end=t1))
        items, _ = await history.page(sel, 100)
        assert items and len(items) <= 100

    async def latest(i: int) -> None:
        assert len(await history.latest(topic(i), f"{topic(i)}.#")) == len(SUBJECTS)

    async def by_id(i: int) -> None:
        n = random.randrange(total)
        assert await history.event(topic(n % TOPICS), f"e{n}") is not None

    return {"page": await median_ms(page), "latest": await median_ms(latest), "by id": await median_ms(by_id)}


async def time_busy(store: EventStore, history: EventHistory, total: int, batch: int) -> float:
    """By id in a topic whose `total` events all fall on one day (a partition of about total/1,000 blocks)."""
    await store.topics.insert_one(generation("busy"))
    for first in range(0, total, batch):
        docs = [document(n * TOPICS, total * TOPICS * DAYS) for n in range(first, min(total, first + batch))]
        await store.write(
            [{**d, "_id": event_key("busy", d["eid"]), "type": "busy", "key": f"busy.{d['subject']}"} for d in docs]
        )

    async def by_id(i: int) -> None:
        n = random.randrange(total)
        found = await history.event("busy", f"e{n * TOPICS}")
        assert found is not None and found["id"] == f"e{n * TOPICS}"

    return await median_ms(by_id)


async def time_old(db: Any, total: int) -> tuple[float, dict[str, float]]:
    """The single collection and the queries of the release before partitions."""
    events = db["events"]
    for keys, name in (
        ([("type", 1), ("time", 1), ("_id", 1)], "type_pos"),
        ([("time", 1), ("_id", 1)], "pos"),
        ([("type", 1), ("subject", 1)], "type_subject"),
        ([("eid", 1)], "eid"),
    ):
        await events.create_index(keys, name=name)
    start = time.perf_counter()
    for first in range(0, total, 5000):
        await events.insert_many([document(n, total) for n in range(first, min(total, first + 5000))], ordered=False)
    rate = total / (time.perf_counter() - start)

    async def page(i: int) -> None:
        t0, t1 = window(i)
        regex = pattern_to_regex(f"{topic(i)}.line1.#", atomic=False)
        query = {
            "$and": [
                {"type": topic(i)},
                {"key": {"$regex": regex}},
                {"time": {"$gte": format_time(t0), "$lt": format_time(t1)}},
            ]
        }
        await events.find(query).sort([("time", 1), ("_id", 1)]).limit(101).to_list()

    async def latest(i: int) -> None:
        subjects = await events.distinct("subject", {"type": topic(i)})
        for s in subjects:
            await events.find_one({"type": topic(i), "subject": s}, sort=[("time", -1), ("_id", -1)])

    async def by_id(i: int) -> None:
        n = random.randrange(total)
        await events.find_one({"$and": [{"type": topic(n % TOPICS)}, {"eid": f"e{n}"}]}, sort=[("time", 1), ("_id", 1)])

    # A few runs only: each scans the whole collection.
    return rate, {
        "page": await median_ms(page, OLD_RUNS),
        "latest": await median_ms(latest, OLD_RUNS),
        "by id": await median_ms(by_id, OLD_RUNS),
    }


def recorder_topic(n: int, spread: str) -> str:
    """`bursts`: 1,000 events in a row per topic (a recorder batch spans one to three topics), as busy sources
    send them; `interleaved`: round robin over the 100 topics (every batch spans all of them)."""
    return topic(n // 1000 % TOPICS) if spread == "bursts" else topic(n % TOPICS)


async def fill_recorder_queue(connection: aio_pika.abc.AbstractConnection, total: int, spread: str, run: str) -> None:
    """The topology declared, and `total` events published to `tributary.events` into the recorder's queue."""
    channel = await connection.channel(publisher_confirms=True)
    await declare_topology(channel)
    await Consumer(HUB_RECORDER_EVENTS).start(connection, consume=False)  # the queue, filled before it is read
    exchange = await channel.get_exchange("tributary.events")
    for first in range(0, total, 500):
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        CloudEvent(
                            id=f"{run}{spread[0]}{n}",
                            source="/bench",
                            type=recorder_topic(n, spread),
                            subject=SUBJECTS[n % len(SUBJECTS)],
                            time=T0 + timedelta(seconds=n),
                            dataschema="/x",
                            data={"value": n},
                        )
                        .model_dump_json()
                        .encode()
                    ),
                    routing_key=f"{recorder_topic(n, spread)}.{SUBJECTS[n % len(SUBJECTS)]}",
                )
                for n in range(first, min(total, first + 500))
            )
        )
    await channel.close()


async def recorder_rate(db_name: str, store: EventStore, total: int, spread: str, run: str = "") -> float:
    """Events/s of the real recorder draining `total` events published beforehand to its queue."""
    vhost = platform.unique("bench-history")
    url = platform.create_vhost(vhost)
    try:
        connection = await aio_pika.connect_robust(url)
        await fill_recorder_queue(connection, total, spread, run)
        # As the hub's events recorder: its receiver (`TRIBUTARY_RECORDER_EVENT_RECEIVER`, pika by default), batch
        # size and prefetch.
        receiver = None
        if SETTINGS.recorder_event_receiver == "pika":
            receiver = PikaReceiver(
                url, HUB_RECORDER_EVENTS.name, prefetch=SETTINGS.recorder_event_prefetch, name="bench-recorder-events"
            )
        recorder = Recorder(
            "events",
            HUB_RECORDER_EVENTS,
            store,
            events_to_docs(TopicRetention(60), 1 << 20),
            batch_size=SETTINGS.recorder_event_batch_size,
            max_delay_ms=SETTINGS.recorder_batch_max_delay_ms,
            prefetch=SETTINGS.recorder_event_prefetch,
            retry_min_s=0.2,
            retry_max_s=5,
            receiver=receiver,
        )
        start = time.perf_counter()
        await recorder.start(connection)
        while recorder.writer.written < total:  # noqa: ASYNC110  (polls the recorder's own counter)
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        await recorder.stop()
        await connection.close()
        return total / elapsed
    finally:
        platform.delete_vhost(vhost)


async def main(args: argparse.Namespace) -> None:
    db_name = platform.unique("bench_history").replace("-", "_")
    client = await connect(platform.mongodb_url(), db_name, ALL_DOCUMENTS)  # beanie: TopicRetention reads topics
    try:
        db = client[db_name]
        partitions = Partitions(db, Layout(args.layout))
        await partitions.prepare()
        store = EventStore(partitions, db["topics"])
        history = EventHistory(partitions, db["topics"], chunk_rows=500, latest_max_subjects=1000)
        write_rate = await load_new(store, args.events, args.batch)
        print(f"loaded {args.events:,} events ({args.layout}) at {write_rate:,.0f} events/s", flush=True)
        new = await time_new(history, args.events)
        busy = await time_busy(store, history, args.busy_events, args.batch) if args.busy_events else None
        old_rate, old = await time_old(db, args.old_events)
        print(f"old layout: {args.old_events:,} events loaded at {old_rate:,.0f} events/s", flush=True)
        spreads = ["bursts", "interleaved"] if args.recorder_spread == "both" else [args.recorder_spread]
        rec = {spread: await recorder_rate(db_name, store, args.recorder_events, spread) for spread in spreads}
        print(
            f"\n| query (median of {RUNS}; old: {OLD_RUNS}) | old, {args.old_events:,} events | {args.layout}, {args.events:,} events | ratio |"
        )
        print("|---|---|---|---|")
        for name in new:
            print(f"| {name} | {old[name]:,.1f} ms | {new[name]:,.1f} ms | {old[name] / new[name]:,.0f}× |")
        if busy is not None:
            print(f"| by id, one topic with {args.busy_events:,} events on one day | | {busy:,.1f} ms | |")
        print(
            f"| write path, bulk ({args.batch}/write) | {old_rate:,.0f} ev/s (insert_many) | {write_rate:,.0f} ev/s | |"
        )
        for spread, rate in rec.items():
            print(f"| recorder from RabbitMQ, {args.recorder_events:,} events, {spread} | | {rate:,.0f} ev/s | |")
    finally:
        await client.drop_database(db_name)
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--old-events", type=int, default=20_000)
    parser.add_argument("--recorder-events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--busy-events", type=int, default=100_000, help="a busy day's topic for by id; 0: none")
    parser.add_argument("--recorder-spread", choices=["both", "bursts", "interleaved"], default="both")
    parser.add_argument("--layout", choices=[x.value for x in Layout], default=Layout.PACKED.value)
    asyncio.run(main(parser.parse_args()))
