"""Samples staged, then merged into their buckets (`sample_staging`), against the real FerretDB on its layouts: what is
staged is readable after its merge, deduplicated as direct writes are; a merge repeated after a crash adds nothing;
what a stopped process staged is adopted; staging waits while too much is unmerged; what the database refuses at
merge time is dead-lettered alone, rebuilt as a replayable sample batch."""

from __future__ import annotations

import asyncio
import base64
import math
import os
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DocumentTooLarge

from tests.hub.test_sample_store import T0, everything
from tests.support.polling import eventually
from tributary_common import deadletters
from tributary_common.amqp import SAMPLES
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import SampleBatch
from tributary_hub import sample_staging
from tributary_hub.partitions import Layout
from tributary_hub.sample_partitions import LAYOUTS
from tributary_hub.sample_records import SampleWriter
from tributary_hub.sample_staging import (
    STAGE_BELOW,
    STAGING,
    Entry,
    SampleStaging,
    staged_apart,
    staged_docs,
    staged_entries,
)
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import Point


class Tally:
    """What the merges reported (samples, new) and what they refused."""

    def __init__(self) -> None:
        self.merged: list[tuple[int, int]] = []
        self.refused: list[tuple[Entry, BaseException]] = []

    def count(self, total: int, added: int) -> None:
        self.merged.append((total, added))

    async def refuse(self, entry: Entry, exc: BaseException) -> None:
        self.refused.append((entry, exc))


def staging_of(store: SampleStore, tally: Tally, **kwargs: Any) -> SampleStaging:
    return SampleStaging(store, merged=tally.count, refused=tally.refuse, retry_min_s=0.01, retry_max_s=0.05, **kwargs)


@pytest.fixture(params=[layout for layout in LAYOUTS if layout is not Layout.INDEXED])
async def store(request: pytest.FixtureRequest, mongo_client: AsyncMongoClient[Any], mongo_db_name: str) -> SampleStore:
    return SampleStore(mongo_client[mongo_db_name], request.param)


def entry(sid: str, points: Sequence[Point]) -> Entry:
    return sid, list(points), f"sim.{sid}"


def test_staged_documents_keep_every_value_type_time_and_order() -> None:
    odd = [
        Point(T0, 2**63 - 1, "good"),
        Point(T0 + 1, True, None),
        Point(T0 + 2, math.inf, 0),
        Point(-(2**40), -math.inf, None),  # before 1970
        Point(T0 + 4, None, "q"),
        Point(T0 + 5, "é✓" * 100, None),
        Point(T0 + 3, 1.5, None),  # out of order, as a message may hold after the recorder's own checks
    ]
    entries = [entry("a.b$c", odd), entry("名前", [Point(T0, math.nan)]), entry("a.b$c", [Point(T0, 0.0)])]
    docs = staged_docs("w1", entries, 12.5)
    assert len(docs) == 1 and docs[0]["n"] == 9 and docs[0]["w"] == "w1" and docs[0]["at"] == 12.5
    back = staged_entries(docs[0])
    assert [(s, k) for s, _, k in back] == [(s, k) for s, _, k in entries]
    assert back[0][1] == odd and [type(p.v) for p in back[0][1]] == [type(p.v) for p in odd]
    assert math.isnan(back[1][1][0].v) and back[2][1] == [Point(T0, 0.0)]


def test_staged_documents_are_cut_under_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_staging, "DOC_BYTES", 2000)
    entries = [entry(f"s{k}", [Point(T0 + i, os.urandom(20).hex()) for i in range(k % 7 + 1)]) for k in range(100)]
    entries.append(entry("long", [Point(T0 + i, os.urandom(40).hex()) for i in range(500)]))  # ~50 kB alone
    docs = staged_docs("w", entries, 0.0)
    assert len(docs) > 10
    for doc in docs:  # a doc over the bound holds one blob, and a blob over it one point
        assert sum(map(len, doc["d"])) <= 2000 or len(doc["d"]) == 1
    back = [e for doc in docs for e in staged_entries(doc)]
    assert sum(doc["n"] for doc in docs) == sum(len(p) for _, p, _ in entries)
    assert [e for e in back if e[0] != "long"] == entries[:-1]  # whole and in order
    long = [p for s, ps, _ in back if s == "long" for p in ps]
    assert long == entries[-1][1] and sum(s == "long" for s, _, _ in back) > 10  # split, in order


async def test_a_merge_makes_what_was_staged_readable_and_deletes_it(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally)
    sids = [f"plant.u{k}" for k in range(50)]
    await staging.stage([entry(sid, [Point(T0 + 10, 1.0), Point(T0 + 20, 2.0)]) for sid in sids])
    # A redelivery, a resent sample (another value at a time staged: the first staged wins) and a later one.
    await staging.stage([entry(sid, [Point(T0 + 10, 1.0), Point(T0 + 20, -2.0), Point(T0 + 30, 3.0)]) for sid in sids])
    assert staging.pending == 250 and await store.count() == 0  # staged, not readable yet
    assert await staging.merge_once() == 2
    assert tally.merged == [(250, 150)]
    for sid in sids:
        assert await everything(store, sid) == [Point(T0 + 10, 1.0), Point(T0 + 20, 2.0), Point(T0 + 30, 3.0)]
    assert await store.latest(sids[:2]) == {sid: Point(T0 + 30, 3.0) for sid in sids[:2]}
    assert await store.db[STAGING].count_documents({}) == 0 and staging.pending == 0
    assert await staging.merge_once() == 0


async def test_a_merge_cut_short_before_its_delete_adds_nothing_when_repeated(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally)
    await staging.stage([entry(f"s{k}", [Point(T0 + i, float(i)) for i in range(k + 1)]) for k in range(20)])
    copies = await store.db[STAGING].find({}).to_list()
    await staging.merge_once()
    await store.db[STAGING].insert_many(copies)  # as if the process had died before its delete
    await staging.merge_once()
    assert tally.merged == [(210, 210), (210, 0)]
    assert await store.count() == 210 and await store.db[STAGING].count_documents({}) == 0


async def test_a_merge_takes_at_most_its_budget_oldest_first(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally, merge_samples=100)
    for k in range(5):
        await staging.stage([entry("s", [Point(T0 + 60 * k + i, float(k)) for i in range(60)])])
    assert await staging.merge_once() == 2 and tally.merged == [(120, 120)]  # two documents reach the budget
    assert [p.v for p in await everything(store, "s")] == [0.0] * 60 + [1.0] * 60
    assert staging.pending == 180
    while await staging.merge_once():
        pass
    assert await store.count("s") == 300 and staging.pending == 0


async def test_what_a_stopped_process_staged_is_adopted_after_orphan_s(store: SampleStore) -> None:
    gone, alive = Tally(), Tally()
    stopped = staging_of(store, gone)
    await stopped.stage([entry("s", [Point(T0, 1.0)])])
    other = staging_of(store, alive, orphan_s=3600.0)
    assert await other.merge_once() == 0 and await other.merge_once(adopt=True) == 0  # recent: its writer's
    other.orphan_s = 0.0
    assert await other.merge_once() == 0  # only when adopting
    assert await other.merge_once(adopt=True) == 1
    assert alive.merged == [(1, 1)] and await store.count("s") == 1
    assert await stopped.merge_once() == 0 and stopped.pending == 0  # its writer finds nothing left, owes nothing


async def test_staging_waits_while_too_much_is_unmerged(store: SampleStore) -> None:
    staging = staging_of(store, Tally(), staged_max=10)
    await staging.stage([entry("s", [Point(T0 + i, 0.0) for i in range(10)])])
    blocked = asyncio.create_task(staging.stage([entry("s", [Point(T0 + 100, 1.0)])]))
    await asyncio.sleep(0.3)
    assert not blocked.done() and await store.db[STAGING].count_documents({}) == 1
    await staging.merge_once()
    await asyncio.wait_for(blocked, 10)
    assert staging.pending == 1 and await store.db[STAGING].count_documents({}) == 1


async def test_the_loop_merges_each_stage_and_stop_merges_the_rest(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally)
    real_write = store.write
    failures = [RuntimeError("a bug, once")]

    async def failing_once(batches: Any) -> int:
        if failures:
            raise failures.pop()
        return await real_write(batches)

    store.write = failing_once  # type: ignore[method-assign]
    staging.start()
    try:
        await staging.stage([entry("s", [Point(T0, 1.0)])])
        await eventually(lambda: staging.pending == 0, 10, what="merged after the failure, by the loop")
        assert await store.count("s") == 1
    finally:
        await staging.stop(10)
    await staging.stage([entry("s", [Point(T0 + 1, 2.0)])])  # the loop is stopped: stop merges what is left
    await staging.stop(10)
    assert await store.count("s") == 2 and await store.db[STAGING].count_documents({}) == 0


@pytest.mark.parametrize("store", [Layout.PARTITIONED], indirect=True)  # 20 s of 16 MiB writes; packed: the same
async def test_a_message_the_database_refuses_at_merge_is_dead_lettered_alone(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally)
    # Six texts of 4 MiB that deflate cannot shrink much (random base64), one hour of one sid: over 16 MiB together.
    bigs = [entry("big", [Point(T0 + i, base64.b64encode(os.urandom(3 * 1024 * 1024)).decode())]) for i in range(6)]
    small = [entry(f"small{k}", [Point(T0, float(k))]) for k in range(3)]
    await staging.stage([small[0], *bigs[:3], small[1], *bigs[3:], small[2]])
    while await staging.merge_once():
        pass
    refused = [e for e, _ in tally.refused]
    assert refused and refused == bigs[-len(refused) :]  # those that no longer fit, alone, with their keys
    assert all("too large" in str(exc).lower() for _, exc in tally.refused)
    assert [p.t for p in await everything(store, "big")] == [T0 + i for i in range(6 - len(refused))]
    assert [await store.count(f"small{k}") for k in range(3)] == [1, 1, 1]
    assert await store.db[STAGING].count_documents({}) == 0


async def test_a_refused_staged_message_becomes_a_replayable_dead_letter(store: SampleStore) -> None:
    writer = SampleWriter(
        "samples", "q", None, retry_min_s=0.1, retry_max_s=0.1, throttle=LogThrottle(60), store=store, staged=True
    )
    letters: list[tuple[Any, str, str]] = []

    async def dead_letter(message: Any, reason: str, detail: str) -> None:
        letters.append((message, reason, detail))

    writer.dead_letter = dead_letter  # type: ignore[method-assign]
    assert writer.staging is not None
    points = [Point(T0, "x" * 10), Point(T0 + 1, math.nan, "bad")]
    await writer.staging.refused(("u.1", points, "plc-7.u.1"), DocumentTooLarge("document too large"))
    [(message, reason, detail)] = letters
    assert (reason, detail) == (deadletters.TOO_LARGE, "document too large")
    assert (message.exchange, message.routing_key) == (SAMPLES.name, "plc-7.u.1")
    batch = SampleBatch.model_validate_json(message.body)  # what a replay publishes is a valid batch
    assert (batch.sid, batch.source, len(batch.samples)) == ("u.1", "plc-7", 2)
    assert orjson.loads(message.body)["samples"][1]["q"] == "bad"
    await writer.staging.refused(("u.2", points, "plc-7.u.2"), TypeError("a bug"))
    assert letters[-1][1:] == (deadletters.UNEXPECTED_ERROR, "TypeError")


async def test_a_message_a_bug_fails_on_is_set_aside_and_the_others_merged(store: SampleStore) -> None:
    tally = Tally()
    staging = staging_of(store, tally)
    real_write = store.write

    async def failing_on_bad(batches: Any) -> int:
        batches = list(batches)
        if any(sid == "bad" for sid, _ in batches):
            raise TypeError("a bug that this message triggers")
        return await real_write(batches)

    store.write = failing_on_bad  # type: ignore[method-assign]
    await staging.stage(
        [entry("good", [Point(T0, 1.0)]), entry("bad", [Point(T0, 2.0)]), entry("good", [Point(T0 + 1, 3.0)])]
    )
    assert await staging.merge_once() == 1
    assert [(e[0], type(exc)) for e, exc in tally.refused] == [("bad", TypeError)]
    assert await store.count("good") == 2 and await store.db[STAGING].count_documents({}) == 0


def test_a_sid_with_many_samples_in_a_batch_is_written_at_once_the_others_staged() -> None:
    bulk = [entry("bulk", [Point(T0 + i, 0.0) for i in range(STAGE_BELOW // 2)]) for _ in range(2)]  # enough together
    few = [entry(f"s{k}", [Point(T0, 1.0)]) for k in range(3)]
    now, later = staged_apart([few[0], bulk[0], few[1], bulk[1], few[2]])
    assert now == bulk and later == few


async def test_the_writer_stages_the_few_and_writes_the_many(store: SampleStore) -> None:
    writer = SampleWriter(
        "samples", "q", None, retry_min_s=0.1, retry_max_s=0.1, throttle=LogThrottle(60), store=store, staged=True
    )
    assert writer.staging is not None
    bulk = {"sid": "bulk", "points": [Point(T0 + i, 0.0) for i in range(STAGE_BELOW)], "key": "csv.bulk"}
    few = [{"sid": f"s{k}", "points": [Point(T0, 1.0)], "key": f"sim.s{k}"} for k in range(3)]
    message: Any = object()
    assert await writer.write([(message, [bulk]), *((message, [doc]) for doc in few)]) == []
    assert await store.count("bulk") == STAGE_BELOW and writer.written == STAGE_BELOW  # readable at once
    assert writer.staging.pending == 3 and await store.count("s0") == 0
    await writer.staging.merge_once()
    assert [await store.count(f"s{k}") for k in range(3)] == [1, 1, 1] and writer.written == STAGE_BELOW + 3


@pytest.mark.parametrize("layout", LAYOUTS)
async def test_with_staging_off_or_on_mongodb_leftovers_are_still_merged(
    layout: Layout, mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> None:
    """Staged before staging was turned off, or before the database moved to MongoDB's layout: still merged, by the
    loop every samples writer runs; new batches are written directly."""
    store = SampleStore(mongo_client[mongo_db_name], layout)
    await store.create_indexes()
    before = SampleStore(mongo_client[mongo_db_name], Layout.PARTITIONED)
    await staging_of(before, Tally()).stage([entry("left", [Point(T0, 1.0)])])
    writer = SampleWriter(
        "samples", "q", None, retry_min_s=0.1, retry_max_s=0.1, throttle=LogThrottle(60), store=store, staged=False
    )
    assert writer.staging is not None and not writer.stages
    writer.staging.orphan_s = 0.0  # the process that staged it is gone
    await writer.start()
    try:
        await eventually(lambda: writer.written == 1, 10, what="the leftover merged")
        assert [p.t for p in await everything(store, "left")] == [T0]
        message: Any = object()
        assert await writer.write([(message, [{"sid": "new", "points": [Point(T0, 2.0)], "key": "k.new"}])]) == []
        assert await store.count("new") == 1 and writer.staging.pending == 0  # written directly
    finally:
        await writer.stop(5)
