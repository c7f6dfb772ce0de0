"""What the replica-set write options cost: documents/s inserted in batches (the recorder's `insert_many` of
`TRIBUTARY_RECORDER_BATCH_SIZE` documents, unordered) by a client with the services' defaults (`w=majority`,
`wTimeoutMS`, `retryWrites`, `readPreference=primary`), against the baseline of a client with the driver's
defaults, and `w=1` without retries, measured in the same run, rounds alternated so that the machine's load hits
every case. Against the local FerretDB, in a database of its own (dropped at the end). Seconds to run; prints only.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import platform
from tributary_common.mongo import new_client
from tributary_common.mongo_options import ClientOptions

BATCH = 500
BATCHES = 20
ROUNDS = 3


def documents(batch: int) -> list[dict[str, Any]]:
    return [{"type": "bench", "time": f"{batch:06d}{i:06d}", "data_json": '{"v": 1.5}'} for i in range(BATCH)]


async def docs_per_s(client: AsyncMongoClient[Any], db: str, name: str) -> float:
    collection = client[db][name]
    await collection.insert_one({"warm": True})
    started = time.perf_counter()
    for b in range(BATCHES):
        await collection.insert_many(documents(b), ordered=False)
    return BATCH * BATCHES / (time.perf_counter() - started)


async def main() -> None:
    url = platform.mongodb_url()
    db = platform.unique("bench_wc").replace("-", "_")
    cases: dict[str, Any] = {
        "driver defaults (baseline)": lambda: AsyncMongoClient(url, tz_aware=True),
        "services' defaults (majority, retry)": lambda: new_client(url),
        "w=1, no retries": lambda: new_client(url, options=ClientOptions(write_concern=1, retry_writes=False)),
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for r in range(ROUNDS):
            for i, (name, make) in enumerate(cases.items()):
                client = make()
                try:
                    rates[name].append(await docs_per_s(client, db, f"c{r}_{i}"))
                finally:
                    await client.close()
    finally:
        cleanup: AsyncMongoClient[Any] = AsyncMongoClient(url)
        await cleanup.drop_database(db)
        await cleanup.close()
    base = statistics.median(rates["driver defaults (baseline)"])
    print(f"insert_many of {BATCH} documents x {BATCHES}, {ROUNDS} rounds (documents/s, median, ratio to baseline)")
    for name, values in rates.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:38s} {statistics.median(values):9,.0f}  x{statistics.median(values) / base:.2f}  ({runs})")


if __name__ == "__main__":
    asyncio.run(main())
