"""`SampleStore` against the real FerretDB (a database per test), both layouts: deduplication under redelivery,
overlap and late samples, with summaries always equal to `summarize` of the deduplicated raw samples; reads in
both directions across bucket and partition edges; concurrent writers; retention; the migration from one document
per sample."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import AsyncMongoClient

from tests.support import platform
from tests.support.polling import eventually
from tributary_common.mongo import Retention
from tributary_hub import sample_writes
from tributary_hub.documents import LEGACY_SAMPLES
from tributary_hub.partitions import Layout
from tributary_hub.sample_buckets import day_id, hour_field, time_text, to_us
from tributary_hub.sample_migration import migrate_currents, migrate_samples
from tributary_hub.sample_partitions import CURRENT, LAYOUTS
from tributary_hub.sample_retention import SampleRetention
from tributary_hub.sample_store import SampleStore
from tributary_hub.sample_summaries import minute_rows, pack_summaries
from tributary_hub.sample_writes import set_currents
from tributary_hub.series import HOUR_US, MINUTE_US, RESOLUTIONS, Point, summarize

DAY = 24 * HOUR_US
T0 = to_us(datetime(2026, 1, 31, 22, tzinfo=UTC))  # two hours before a day's and a month's end


@pytest.fixture(params=LAYOUTS)
async def store(request: pytest.FixtureRequest, mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> SampleStore:
    s = SampleStore(mongo_client[mongo_db_name], request.param)
    await s.create_indexes()
    return s


async def everything(store: SampleStore, sid: str, start: int | None = None, end: int | None = None) -> list[Point]:
    return [p async for chunk in store.points(sid, start, end) for p in chunk]


async def all_summaries(store: SampleStore, sid: str, start: int, end: int, resolution: int) -> list[Any]:
    return [s async for chunk in store.summaries(sid, start, end, resolution) for s in chunk]


def expected_summaries(points: list[Point], start: int, end: int, resolution: int) -> list[Any]:
    spans: dict[int, list[Point]] = {}
    for p in points:
        if start <= p.t < end:
            spans.setdefault(p.t - p.t % resolution, []).append(p)
    return [summarize(ps, s, s + resolution) for s, ps in sorted(spans.items())]


async def check_against(store: SampleStore, sid: str, expected: dict[int, Point]) -> None:
    raw = [expected[t] for t in sorted(expected)]
    assert await everything(store, sid) == raw
    lo, hi = T0 - T0 % DAY - DAY, T0 + 3 * DAY
    for resolution in RESOLUTIONS:
        assert await all_summaries(store, sid, lo, hi, resolution) == expected_summaries(raw, lo, hi, resolution)
    if raw:
        assert (await store.latest([sid]))[sid] == raw[-1]


times = st.integers(min_value=-90 * MINUTE_US, max_value=4 * HOUR_US).map(lambda d: T0 + d - d % 250_000)
values = st.one_of(st.floats(-1e6, 1e6), st.integers(-(2**40), 2**40), st.booleans(), st.none(), st.text(max_size=3))
batch = st.lists(st.tuples(times, values), min_size=1, max_size=40)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(batch, min_size=1, max_size=6), replay=st.lists(st.integers(0, 5), max_size=4))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_redelivered_overlapping_and_late_batches_count_once(
    layout: Layout, mongo_url: str, batches: list[list[tuple[int, Any]]], replay: list[int]
) -> None:
    """Batches in any order (late samples into hours already summarised), some delivered again: the stored
    samples are the first written at each time, and the summaries are those of exactly these samples."""

    async def run() -> None:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url)
        name = platform.unique("test_samples").replace("-", "_")
        try:
            store = SampleStore(client[name], layout)
            await store.create_indexes()
            sent = [[Point(t, v) for t, v in b] for b in batches]
            sent += [sent[i] for i in replay if i < len(sent)]
            expected: dict[int, Point] = {}
            for points in sent:
                for p in points:
                    expected.setdefault(p.t, p)
                await store.write([("sid-h", points)])
            await check_against(store, "sid-h", expected)
        finally:
            await client.drop_database(name)
            await client.close()

    asyncio.run(run())


async def test_reads_in_both_directions_across_bucket_and_partition_edges(store: SampleStore) -> None:
    # Every 20 minutes over 5 hours: buckets of 3 samples, crossing midnight and the month's end.
    points = [Point(T0 + i * 20 * MINUTE_US, float(i), "q" if i % 2 else None) for i in range(15)]
    await store.write([("a", points[7:]), ("b", [Point(T0, "other")])])
    await store.write([("a", points[:8])])
    assert await everything(store, "a") == points
    assert await everything(store, "b") == [Point(T0, "other")]
    lo, hi = points[2].t, points[11].t
    assert await everything(store, "a", lo, hi) == points[2:11]
    assert await everything(store, "a", lo + 1, hi + 1) == points[3:12]
    down = [p async for chunk in store.points("a", lo, hi, descending=True) for p in chunk]
    assert down == points[2:11][::-1]
    assert await everything(store, "a", T0 + 10 * DAY) == []
    midnight = T0 + 2 * HOUR_US
    assert await store.at_or_before("a", midnight) == points[6]
    assert await store.at_or_before("a", midnight - 1) == points[5]
    assert await store.at_or_after("a", midnight - 1) == points[6]
    assert await store.at_or_after("a", midnight + 1) == points[7]
    assert await store.at_or_before("a", T0 - 1) is None
    assert await store.at_or_after("a", points[-1].t + 1) is None
    assert await store.at_or_before("a", T0 + 30 * DAY) == points[-1]
    assert await store.at_or_before("nobody", T0) is None
    assert await store.latest(["a", "b", "nobody"]) == {"a": points[-1], "b": Point(T0, "other")}
    assert await store.count() == 16 and await store.count("a") == 15
    hours = await all_summaries(store, "a", T0, T0 + 5 * HOUR_US, HOUR_US)
    assert [(h.start, h.count) for h in hours] == [(T0 + k * HOUR_US, 3) for k in range(5)]
    minutes = await all_summaries(store, "a", T0 + HOUR_US, T0 + 2 * HOUR_US, MINUTE_US)
    assert minutes == expected_summaries(points, T0 + HOUR_US, T0 + 2 * HOUR_US, MINUTE_US)
    with pytest.raises(ValueError, match="resolution"):
        await all_summaries(store, "a", T0, T0 + HOUR_US, 1_000_000)


async def test_concurrent_writers_of_one_hour_lose_nothing(store: SampleStore) -> None:
    """Optimistic concurrency: writers racing on the same bucket retry on a newer version."""
    writers = [[Point(T0 + k * 1000 + i, k) for i in range(50)] for k in range(6)]
    await asyncio.gather(*(store.write([("race", w)]) for w in writers))
    expected = {p.t: p for w in writers for p in w}
    await check_against(store, "race", expected)


async def test_racing_current_values_keep_the_newest(store: SampleStore) -> None:
    """FerretDB's conditional update is a find then a write: updates of one sid's current value racing on
    separate connections, from stores of their own as in separate processes (FerretDB's layouts: versions of a
    shard; MongoDB's conditional update is atomic, FerretDB's here is not, so `indexed` races in one store), must
    not let an older sample land last."""
    n = 1 if store.partitions.layout is Layout.INDEXED else 4
    writers = [store] if n == 1 else [SampleStore(store.db, store.partitions.layout) for _ in range(n)]
    for round_ in range(10):
        sid = f"cur{round_}"
        points = [Point(T0 + i, i) for i in range(12)]
        await asyncio.gather(*(set_currents(writers[i % n], {sid: p}) for i, p in enumerate(reversed(points))))
        assert (await store.latest([sid]))[sid] == points[-1]


async def test_a_summary_left_behind_by_a_crash_is_rewritten_on_redelivery(store: SampleStore) -> None:
    points = [Point(T0 + i * 1_000_000, float(i)) for i in range(100)]
    await store.write([("c", points)])
    day = {"_id": day_id("c", T0 - T0 % DAY)}
    for kind in ("sum", "hrs"):
        stale = {hour_field(T0): {"v": 0, "s": pack_summaries([], T0)}}
        await store.db[store.partitions.holding(kind, "c", T0)].update_one(day, {"$set": stale})
    assert await all_summaries(store, "c", T0, T0 + HOUR_US, MINUTE_US) == []  # what a reader sees meanwhile
    assert await store.write([("c", points)]) == 0  # the redelivery adds nothing...
    await check_against(store, "c", {p.t: p for p in points})  # ...but the summary is the bucket's again


async def test_retention_drops_whole_partitions_and_keeps_summaries_longer(store: SampleStore) -> None:
    old, new = T0 - 40 * DAY, T0
    await store.write([("r", [Point(old, 1.0), Point(new, 2.0)]), ("s", [Point(old, 3.0)])])
    now = T0 + HOUR_US
    retention = SampleRetention(store, 10, 60, sweep_interval_s=3600)
    assert await retention.sweep_once(now) == 2  # the old day of r and of s; summaries (60 days) stay
    assert await everything(store, "r") == [Point(new, 2.0)]
    assert await everything(store, "s") == []
    assert [s.count for s in await all_summaries(store, "r", old - old % DAY, now, HOUR_US)] == [1, 1]
    assert await store.latest(["r", "s"]) == {"r": Point(new, 2.0)}
    # Their old months, of minute and of hour summaries.
    assert await SampleRetention(store, 10, 20, sweep_interval_s=3600).sweep_once(now) == 4
    assert [s.count for s in await all_summaries(store, "r", old - old % DAY, now, HOUR_US)] == [1]
    assert await retention.sweep_once(now) == 0
    await store.write([("s", [Point(old + 1, 4.0)])])  # written again after its partition went: stored again
    assert await everything(store, "s") == [Point(old + 1, 4.0)]


async def test_a_sweep_reads_the_catalog_once_whatever_the_sids(store: SampleStore) -> None:
    """A read of the catalog per sid and kind cost 3,000 commands a sweep (a minute) at 1,000 sids."""
    old, new = T0 - 40 * DAY, T0
    sids = [f"many{k}" for k in range(30)]
    await store.write([(sid, [Point(old, 1.0), Point(new, 2.0)]) for sid in sids])
    reads: list[str] = []
    real = store.catalog

    class Counted:
        def find(self, *args: Any, **kwargs: Any) -> Any:
            reads.append("find")
            return real.find(*args, **kwargs)

        async def find_one(self, *args: Any, **kwargs: Any) -> Any:
            reads.append("find_one")
            return await real.find_one(*args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    store.catalog = Counted()  # type: ignore[assignment]
    assert await SampleRetention(store, 10, 20, sweep_interval_s=3600).sweep_once(new + HOUR_US) == 30 * 3
    assert reads == ["find"]
    store.catalog = real
    for sid in sids[:3]:
        assert await everything(store, sid) == [Point(new, 2.0)]
        assert await store.keys(sid, "raw") == [new // DAY]


async def test_sample_retention_runs_on_the_shared_sweeper(store: SampleStore) -> None:
    """No loop of its own: `mongo.Retention`'s (sleep, sweep, log, stop) runs the sample sweep, which starts
    with one sweep, as event retention does; with nothing to expire configured, nothing runs."""
    assert SampleRetention._sweep_forever is Retention._sweep_forever and SampleRetention.stop is Retention.stop
    idle = SampleRetention(store, None, None, sweep_interval_s=0.05)
    assert await idle.start() == "sweeper" and idle._task is None
    now = to_us(datetime.now(UTC))
    await store.write([("w", [Point(now - 40 * DAY, 1.0), Point(now, 2.0)])])
    retention = SampleRetention(store, 10, 20, sweep_interval_s=0.05)
    assert await retention.start() == "sweeper"
    try:
        assert await everything(store, "w") == [Point(now, 2.0)]  # the first sweep, before start returned
        assert retention._task is not None and not retention._task.done()
        await store.write([("w", [Point(now - 30 * DAY, 3.0)])])  # expired: the loop's next sweep drops it

        async def swept() -> bool:
            return await everything(store, "w") == [Point(now, 2.0)]

        await eventually(swept, what="the sweeper's next sweep", interval=0.05)
    finally:
        await retention.stop()
    assert retention._task is None


def legacy_doc(sid: str, t: int, v: Any) -> dict[str, Any]:
    text = time_text(t)
    return {"_id": f"{sid}|{text}", "sid": sid, "source": "sim", "t": text, "v": v, "q": None, "expire_at": None}


async def test_migration_moves_old_samples_into_buckets_once(store: SampleStore) -> None:
    old = store.db[LEGACY_SAMPLES]
    docs = [legacy_doc(sid, T0 + i * 7 * MINUTE_US, float(i)) for sid in ("m1", "m2") for i in range(40)]
    await old.insert_many(docs)
    await old.insert_one({"_id": "junk", "sid": "m1", "t": "not a time"})
    await store.write([("m1", [Point(T0, "recorded after the upgrade")])])  # kept: stored first
    report = await migrate_samples(store.db, store, batch_size=25)
    assert (report.moved, report.added, report.skipped, report.dropped) == (80, 79, 1, False)
    assert await old.count_documents({}) == 1  # the unreadable one stays, listed in the log
    expected = {p.t: p for p in [Point(T0 + i * 7 * MINUTE_US, float(i)) for i in range(40)]}
    await check_against(store, "m2", expected)
    await check_against(store, "m1", {**expected, T0: Point(T0, "recorded after the upgrade")})
    await old.delete_one({"_id": "junk"})
    again = await migrate_samples(store.db, store)
    assert (again.moved, again.added, again.dropped) == (0, 0, True)
    assert LEGACY_SAMPLES not in await store.db.list_collection_names()
    assert (await migrate_samples(store.db, store)).moved == 0  # nothing left, nothing to do


async def test_migration_moves_current_values_kept_per_sid_into_shards(store: SampleStore) -> None:
    """FerretDB's layouts kept a document per sid in `sample_current` before its shards: moved where newer, then
    the collection dropped. MongoDB's layout keeps them."""
    await store.write([("c.new", [Point(T0 + 5, "recorded after the upgrade")]), ("c.old", [Point(T0, 1.0)])])
    legacy = store.db[CURRENT]
    if store.partitions.layout is Layout.INDEXED:  # where the recorder keeps them
        assert await migrate_currents(store.db, store) == 0 and await legacy.count_documents({}) == 2
        return
    await legacy.insert_many(
        [
            {"_id": "c.new", "t": T0 + 1, "v": "older", "q": None},  # the shard's is newer: kept
            {"_id": "c.old", "t": T0 + 9, "v": 2.0, "q": 192},  # newer than the shard's: moved
            {"_id": "c.gone", "t": T0 + 3, "v": True, "q": "good"},
            {"_id": "c.junk", "t": "not a time"},
        ]
    )
    assert await migrate_currents(store.db, store, batch_size=2) == 3
    assert CURRENT not in await store.db.list_collection_names()
    assert await store.latest(["c.new", "c.old", "c.gone", "c.junk"]) == {
        "c.new": Point(T0 + 5, "recorded after the upgrade"),
        "c.old": Point(T0 + 9, 2.0, 192),
        "c.gone": Point(T0 + 3, True, "good"),
    }
    assert await migrate_currents(store.db, store) == 0


async def test_a_crash_after_writing_before_deleting_migrates_again_without_doubles(store: SampleStore) -> None:
    old = store.db[LEGACY_SAMPLES]
    await old.insert_many([legacy_doc("d", T0 + i, i) for i in range(10)])
    await store.write([("d", [Point(T0 + i, i) for i in range(6)])])  # an interrupted run got this far
    report = await migrate_samples(store.db, store)
    assert (report.moved, report.added, report.dropped) == (10, 4, True)
    await check_against(store, "d", {T0 + i: Point(T0 + i, i) for i in range(10)})


async def test_the_first_and_last_representable_times_are_stored_and_summarised(store: SampleStore) -> None:
    first = to_us(datetime(1, 1, 1, tzinfo=UTC))
    last = to_us(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    points = [Point(first, 1.0), Point(first + 1, 2.0), Point(last - 1, 3.0), Point(last, 4.0)]
    await store.write([("edge", points)])
    await check_against(store, "edge", {p.t: p for p in points})
    assert await store.at_or_before("edge", last) == points[-1]
    assert await store.at_or_after("edge", first) == points[0]
    lo, hi = last - last % HOUR_US, last - last % HOUR_US + HOUR_US
    assert await all_summaries(store, "edge", lo, hi, MINUTE_US) == expected_summaries(points, lo, hi, MINUTE_US)
    assert [p.v for p in await everything(store, "edge", first + 1, last)] == [2.0, 3.0]


async def test_an_hours_summary_is_written_only_over_an_older_version(store: SampleStore) -> None:
    """One hour (a live sid's batch) takes the conditional update: an older version's never replaces a newer one,
    and a day not there yet is made; the other hours of the day stay as they are."""
    day = T0 - T0 % DAY
    coll = store.collection(store.partitions.holding("sum", "v", day))
    one, two = [Point(T0, 1.0)], [Point(T0, 1.0), Point(T0 + 1, 2.0)]
    other = T0 - HOUR_US
    await sample_writes.write_day(store, "sum", "v", day, {other: (1, [Point(other, 9.0)])}, minute_rows)
    await sample_writes.write_day(store, "sum", "v", day, {T0: (2, two)}, minute_rows)
    await sample_writes.write_day(store, "sum", "v", day, {T0: (1, one)}, minute_rows)  # older: refused
    [doc] = await coll.find({"sid": "v"}).to_list()
    assert doc["_id"] == day_id("v", day) and doc[hour_field(T0)] == {"v": 2, "s": minute_rows(two, T0)}
    assert doc[hour_field(other)]["v"] == 1
    await sample_writes.write_day(store, "sum", "v", day, {T0: (3, one)}, minute_rows)  # newer: written
    [doc] = await coll.find({"sid": "v"}).to_list()
    assert doc[hour_field(T0)] == {"v": 3, "s": minute_rows(one, T0)}
