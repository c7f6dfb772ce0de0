"""`DocSeriesStore` on real FerretDB answers like the in-memory reference store: ranges both ways, neighbours,
latest, and summaries per minute and hour (computed from the stored samples)."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from tests.support.series import MemorySeriesStore
from tributary_hub.historian.times import iso
from tributary_hub.series import HOUR_US, MINUTE_US, Point
from tributary_hub.series_docs import DocSeriesStore

T0 = 1_767_225_600_000_000  # a whole hour


def series() -> list[Point]:
    # Every 37 s over 3 hours with a 50-minute gap, numbers, strings and a bool, some with quality.
    out = []
    for i in range(0, 3 * 3600, 37):
        if 3600 <= i < 6600:
            continue
        v: Any = float(i % 101) if i % 5 else ("on" if i % 2 else True)
        out.append(Point(T0 + i * 1_000_000 + 17, v, "bad" if i % 7 == 0 else None))
    return out


async def collect(chunks: Any) -> list[Any]:
    return [x async for chunk in chunks for x in chunk]


async def test_doc_store_answers_like_the_reference(mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> None:
    points = series()
    coll = mongo_client[mongo_db_name]["samples"]
    docs = [{"_id": f"s1|{iso(p.t)}", "sid": "s1", "source": "x", "t": iso(p.t), "v": p.v, "q": p.q} for p in points]
    await coll.insert_many(docs)
    await coll.insert_one({"_id": "s2|x", "sid": "s2", "source": "x", "t": iso(T0), "v": 1})
    store = DocSeriesStore(coll, chunk=50)
    ref = MemorySeriesStore({"s1": points, "s2": [Point(T0, 1)]})

    assert await collect(store.points("s1")) == points
    for a, b in ((T0 + 600_000_000, T0 + 2 * HOUR_US), (None, T0 + 5), (T0 + 2 * HOUR_US, None)):
        assert await collect(store.points("s1", a, b)) == await collect(ref.points("s1", a, b))
        assert await collect(store.points("s1", a, b, descending=True)) == await collect(
            ref.points("s1", a, b, descending=True)
        )
    assert await store.latest(["s1", "s2", "none"]) == await ref.latest(["s1", "s2", "none"])
    for t in (T0, T0 + 17, T0 + 18, T0 + 90 * MINUTE_US, T0 + 4 * HOUR_US):
        assert await store.at_or_before("s1", t) == await ref.at_or_before("s1", t)
        assert await store.at_or_after("s1", t) == await ref.at_or_after("s1", t)
    for res in (MINUTE_US, HOUR_US):
        got = await collect(store.summaries("s1", T0, T0 + 3 * HOUR_US, res))
        assert got == await collect(ref.summaries("s1", T0, T0 + 3 * HOUR_US, res))
        assert sum(s.count for s in got) == len(points)
