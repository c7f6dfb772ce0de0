"""What event retention costs on FerretDB (the `packed` layout) for one busy topic's day as it expires.

A topic's events expire one by one over a whole day (each `retention_days` after it was recorded), so the sweep
meets each of its days as a boundary day for a day before dropping it whole. Load: `--days` days of `--events`
events each for one topic (written through `EventStore.write`; the id directory then holds all of them), the first
day's expiries spread evenly over its expiry day. Measured, median of `--runs`:

- a boundary visit (`EventRetention.sweep_once` an hour's worth of expiries later): the day read whole, its
  changed blocks rewritten, the catalog entry moved on (how often that happens is what changed: the sweep came
  back every `RETENTION_SWEEP_INTERVAL_S` (60 s) before, an hour later at the soonest now);
- forgetting an hour's deleted ids one by one (`delete_many` of `_id $in`, 1,000 keys a command: what a boundary
  visit does where the day's drop is more than a day away), against the same shards;
- the baseline: dropping the day whole (its collection, then its ids with one delete by day per shard).

`.venv/bin/python bench/retention_sweep.py` (about two minutes at the defaults). The database is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymongo import AsyncMongoClient  # noqa: E402

from tests.support import platform  # noqa: E402
from tributary_common.timeutil import format_time  # noqa: E402
from tributary_hub.documents import event_key  # noqa: E402
from tributary_hub.event_reads import EventReader  # noqa: E402
from tributary_hub.event_retention import EventRetention  # noqa: E402
from tributary_hub.event_store import EventStore  # noqa: E402
from tributary_hub.partitions import ID_SHARD_CHOICES, Layout, Partitions, id_key  # noqa: E402

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRY_DAY = datetime(2026, 3, 1, tzinfo=UTC)  # the first day's events expire over this day
HOUR = timedelta(hours=1)


def document(topic: str, n: int, at: datetime, expire_at: datetime | None) -> dict[str, Any]:
    eid = f"e{n}"
    return {
        "_id": event_key(topic, eid),
        "eid": eid,
        "key": f"{topic}.line{n % 5}",
        "type": topic,
        "subject": f"line{n % 5}",
        "time": format_time(at),
        "source": "/bench",
        "dataschema": f"/topics/{topic}/schemas/1",
        "data_json": f'{{"value": {n % 1000}.5, "unit": "C"}}',
        "traceparent": None,
        "publisher": None,
        "publisher_exposed": False,
        "expire_at": expire_at,
    }


async def timed(step: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall, this process's CPU) seconds of one step."""
    wall, cpu = time.perf_counter(), time.process_time()
    await step()
    return time.perf_counter() - wall, time.process_time() - cpu


async def load(store: EventStore, topic: str, days: int, per_day: int) -> list[str]:
    """`days` days of events; the first day's expire evenly over EXPIRY_DAY, the others later. Its ids."""
    first: list[str] = []
    for d in range(days):
        docs = []
        for k in range(per_day):
            n = d * per_day + k
            at = DAY0 + timedelta(days=d, seconds=86400 * k / per_day)
            expire_at = EXPIRY_DAY + timedelta(days=d, seconds=86400 * k / per_day)
            docs.append(document(topic, n, at, expire_at))
            if d == 0:
                first.append(f"e{n}")
        for i in range(0, len(docs), 5000):
            await store.write(docs[i : i + 5000])
    return first


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    client: AsyncMongoClient[Any] = AsyncMongoClient(platform.mongodb_url(), tz_aware=True)
    db_name = f"bench_retention_{uuid.uuid4().hex[:8]}"
    try:
        partitions = Partitions(client[db_name], Layout.PACKED, id_shards=args.shards)
        topics = partitions.db["topics"]
        uid = uuid.uuid4().hex[:12]
        await topics.insert_one({"_id": "busy", "uid": uid, "id_shards": args.shards})
        store = EventStore(partitions, topics)
        started = time.perf_counter()
        first = await load(store, "busy", args.days, args.events)
        print(f"loaded {args.days} days × {args.events:,} events in {time.perf_counter() - started:.0f} s")
        retention = EventRetention(partitions, EventReader(partitions, topics))

        visits = []
        for hour in range(1, args.runs + 1):
            visits.append(await timed(lambda h=hour: retention.sweep_once(EXPIRY_DAY + h * HOUR)))  # type: ignore[misc]
        per_hour = args.events // 24
        forgets = []
        for hour in range(args.runs):
            keys = [id_key(uid, eid) for eid in first[per_hour * (hour + 10) : per_hour * (hour + 11)]]
            by_shard: dict[str, list[str]] = {}
            for eid, key in zip(first[per_hour * (hour + 10) : per_hour * (hour + 11)], keys, strict=True):
                by_shard.setdefault(partitions.ids_name(uid, eid, args.shards), []).append(key)

            async def forget(groups: dict[str, list[str]] = by_shard) -> None:
                for name, named in groups.items():
                    for i in range(0, len(named), 1000):
                        await partitions.db[name].delete_many({"_id": {"$in": named[i : i + 1000]}})

            forgets.append(await timed(forget))
        drop = await timed(lambda: retention.sweep_once(EXPIRY_DAY + timedelta(days=2)))
    finally:
        await client.drop_database(db_name)
        await client.close()

    visit_wall = statistics.median(v[0] for v in visits)
    visit_cpu = statistics.median(v[1] for v in visits)
    forget_wall = statistics.median(f[0] for f in forgets)
    print(f"one topic, {args.events:,} events a day, {args.days} days stored, {args.shards} id shards (packed)")
    print("| step (median) | wall | hub CPU | a day of it, before (every 60 s) | now (hourly) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| boundary visit | {visit_wall * 1000:.0f} ms | {visit_cpu * 1000:.0f} ms | "
        f"{visit_wall * 1440:.0f} s | {visit_wall * 24:.1f} s |"
    )
    print(
        f"| forgetting an hour's {per_hour:,} ids one by one | {forget_wall * 1000:.0f} ms | | "
        f"{forget_wall * 24:.0f} s (had it been done) | not done (the drop takes them) |"
    )
    print(
        f"| baseline: the day dropped whole, its ids by day | {drop[0] * 1000:.0f} ms | {drop[1] * 1000:.0f} ms | | |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000, help="events of the topic per day")
    parser.add_argument("--days", type=int, default=10, help="days stored (the id directory holds them all)")
    parser.add_argument("--shards", type=int, default=2, choices=ID_SHARD_CHOICES)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
