"""A batch's current values, against the real FerretDB: a conditional update per sid on MongoDB's `indexed` layout
(all at once), versions of a few shard documents on FerretDB's layouts (`sample_currents`), where an update per sid
passes over every sid's document; either way each sid keeps its newest sample, whoever races it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.hub.test_sample_store import T0, store  # noqa: F401  (the fixture)
from tributary_hub.partitions import Layout
from tributary_hub.sample_currents import INLINE_MAX, SHARDS, entry_key, shard_of
from tributary_hub.sample_partitions import LAYOUTS
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import Point


class Counted:
    """A collection counting its `update_one` / `insert_one` calls, and the most in flight at once."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.now, self.most, self.writes = inner, 0, 0, 0

    async def _counted(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.now += 1
        self.writes += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0)  # a turn, in which another update sent at once would start
            return await getattr(self.inner, name)(*args, **kwargs)
        finally:
            self.now -= 1

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._counted("update_one", *args, **kwargs)

    async def insert_one(self, *args: Any, **kwargs: Any) -> Any:
        return await self._counted("insert_one", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def beside(sid: str) -> str:
    """Another sid whose entry is in the same shard."""
    return next(f"{sid}.{k}" for k in range(1000) if shard_of(entry_key(f"{sid}.{k}")) == shard_of(entry_key(sid)))


@pytest.fixture(params=[layout for layout in LAYOUTS if layout is not Layout.INDEXED])
async def sharded(
    request: pytest.FixtureRequest, mongo_client: AsyncMongoClient[Any], mongo_db_name: str
) -> SampleStore:
    """A store on FerretDB's layouts (MongoDB's keeps a document per sid)."""
    return SampleStore(mongo_client[mongo_db_name], request.param)


async def test_a_batch_of_many_sids_sets_each_current_value(store: SampleStore) -> None:  # noqa: F811
    indexed = store.partitions.layout is Layout.INDEXED
    counted = Counted(store.current if indexed else store.currents.coll)
    if indexed:
        store.current = counted  # type: ignore[assignment]
    else:
        store.currents.coll = counted  # type: ignore[assignment]
    sids = [f"plant.u{k}" for k in range(250)]
    newest = {sid: Point(T0 + 1000 + k, float(k) + 0.5) for k, sid in enumerate(sids)}
    await store.write([(sid, [Point(T0 + k, float(k)), newest[sid]]) for k, sid in enumerate(sids)])
    assert await store.latest(sids) == newest
    assert await store.latest([*sids[:3], "nobody"]) == {sid: newest[sid] for sid in sids[:3]}  # a few: projected
    if indexed:
        assert counted.most == len(sids)
    else:  # one version written per shard the batch touches, not a write per sid
        assert counted.writes == len({shard_of(entry_key(sid)) for sid in sids}) <= SHARDS
    # An older sample of each afterwards leaves the newest in place, and writes nothing on FerretDB.
    before = counted.writes
    await store.write([(sid, [Point(T0 + 500 + k, -1.0)]) for k, sid in enumerate(sids)])
    assert await store.latest(sids) == newest
    assert indexed or counted.writes == before


async def test_a_version_left_by_a_stopped_writer_is_passed_over_and_deleted(sharded: SampleStore) -> None:
    """A writer that stopped between inserting a shard's next version and deleting the one it replaced leaves two:
    the newest is read, the older deleted."""
    await sharded.write([("v.one", [Point(T0, 1.0)])])
    shard = shard_of(entry_key("v.one"))
    newest = await sharded.currents.coll.find_one({"s": shard})
    assert newest is not None and newest["ver"] == 1
    await sharded.write([("v.one", [Point(T0 + 1, 2.0)])])
    await sharded.currents.coll.insert_one(newest)  # version 1 again, as if never deleted
    assert await sharded.latest(["v.one"]) == {"v.one": Point(T0 + 1, 2.0)}
    assert [d["ver"] async for d in sharded.currents.coll.find({"s": shard})] == [2]


def race_after_first_read(writer: SampleStore, *writes: tuple[str, Point]) -> list[bool]:
    """Another process (a store of its own: its own lock) writes `writes` in turn right after `writer`'s next read of
    its shards, before `writer` writes its version; the list returned holds True once it has."""
    other = SampleStore(writer.db, writer.partitions.layout)
    read = writer.currents._newest
    raced: list[bool] = []

    async def then_the_other(shards: list[str], fields: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        docs = await read(shards, fields)
        if not raced:
            raced.append(True)
            for sid, p in writes:
                await other.write([(sid, [p])])
        return docs

    writer.currents._newest = then_the_other  # type: ignore[method-assign]
    return raced


async def test_a_shard_changed_since_it_was_read_is_read_again(sharded: SampleStore) -> None:
    """Two processes' batches touching one shard: the version written over one that is no longer the newest is
    refused (its `_id` taken), and made again over the new one, keeping both processes' values."""
    first, second = "s.first", beside("s.first")
    await sharded.write([(first, [Point(T0, 0.0)])])
    raced = race_after_first_read(sharded, (second, Point(T0 + 5, 2.0)))
    await sharded.write([(first, [Point(T0 + 7, 1.0)])])
    assert raced
    assert await sharded.latest([first, second]) == {first: Point(T0 + 7, 1.0), second: Point(T0 + 5, 2.0)}


async def test_a_version_made_again_behind_a_newer_one_is_merged_again(sharded: SampleStore) -> None:
    """A writer reads a shard, then another makes the next version and the one after (deleting the ones it
    replaced): the first writer's version is made with an `_id` that is free again, behind the newest, which
    readers take. The first writer sees the newer version and merges again."""
    y = beside("x.one")
    # version 1, then version 2 (version 1 deleted)
    raced = race_after_first_read(sharded, (y, Point(T0 + 1, 1.0)), (y, Point(T0 + 2, 2.0)))
    await sharded.write([("x.one", [Point(T0 + 10, 10.0)])])  # read nothing, so writes version 1 again
    assert raced
    assert await sharded.latest(["x.one", y]) == {"x.one": Point(T0 + 10, 10.0), y: Point(T0 + 2, 2.0)}


async def test_long_texts_stay_in_their_bucket(store: SampleStore) -> None:  # noqa: F811
    """A shard holds many sids' values, so a long text (up to a batch's megabyte) is not copied into it: the value
    is read from its bucket at its time."""
    long_value, long_quality = "v" * 100_000, "q" * (INLINE_MAX + 1)
    await store.write([("t.long", [Point(T0, long_value)]), ("t.q", [Point(T0 + 1, 1.5, long_quality)])])
    assert await store.latest(["t.long", "t.q"]) == {
        "t.long": Point(T0, long_value),
        "t.q": Point(T0 + 1, 1.5, long_quality),
    }
    if store.partitions.layout is not Layout.INDEXED:
        key = entry_key("t.long")
        doc = await store.currents.coll.find_one({"s": shard_of(key)})
        assert doc is not None and "v" not in doc["c"][key] and len(str(doc)) < 10_000
    await store.write([("t.long", [Point(T0 + 2, "short")])])  # a short one after it is copied as usual
    assert (await store.latest(["t.long"]))["t.long"] == Point(T0 + 2, "short")


async def test_any_sid_names_its_own_value(store: SampleStore) -> None:  # noqa: F811
    """Sids hold dots, dollars and any text; each is an entry of its own."""
    sids = ["a.b.c", "$where", "a$b.", "泵.温度", "x" * 64, "a.b", "a"]
    newest = {sid: Point(T0 + k, k) for k, sid in enumerate(sids)}
    await store.write([(sid, [p]) for sid, p in newest.items()])
    assert await store.latest(sids) == newest
    assert await store.latest(["a.b.c.d", "b"]) == {}
