"""A topic generation's id directory keeps the shard count it was created with (`id_shards` on its topic document;
none: the count before it was recorded), on the real FerretDB: each id is claimed, found by id and forgotten in the
shard of its own generation's count, so generations of different counts live side by side and an id recorded
before is a duplicate whatever time its copy carries. The hub records its setting on the topics it creates."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.hub.test_event_storage import T0, Storage, event, storage  # noqa: F401  (the fixture)
from tributary_hub.documents import TopicDoc
from tributary_hub.partitions import LEGACY_ID_SHARDS, PREFIX, Layout, generation, generation_shards
from tributary_hub.settings import HubSettings

# name -> (uid, the topic document's `id_shards`: None where it has none)
GENERATIONS: dict[str, tuple[str, int | None]] = {
    "legacy": ("a00000000000", None),
    "single": ("b00000000000", 1),
    "pair": ("c00000000000", 2),
}
IDS = [f"e{n}" for n in range(40)]


async def shard_counts(s: Storage, uid: str) -> dict[str, int]:
    """Entries per directory collection of a generation, by its shard's number."""
    prefix = f"{PREFIX}{uid}.id"
    names = [n for n in await s.partitions.db.list_collection_names() if n.startswith(prefix)]
    return {n.removeprefix(prefix): await s.partitions.db[n].count_documents({}) for n in sorted(names)}


async def test_each_generation_claims_finds_and_forgets_ids_in_its_own_shards(storage: Storage) -> None:  # noqa: F811
    partitions = storage.partitions
    for name, (uid, shards) in GENERATIONS.items():
        doc: dict[str, Any] = {"_id": name, "uid": uid}
        if shards is not None:
            doc["id_shards"] = shards
        await partitions.db["topics"].insert_one(doc)
    day = datetime(2026, 3, 2, 1, tzinfo=UTC)
    docs = [event(name, eid, day, "s", expire_at=day + timedelta(days=1)) for name in GENERATIONS for eid in IDS]
    outcome = await storage.store.write(docs)
    assert not outcome.duplicates and not outcome.refused and not outcome.orphans
    for name, (uid, shards) in GENERATIONS.items():
        count = shards or partitions.id_shards
        if partitions.layout is not Layout.INDEXED:  # one collection for every generation there
            want: dict[str, int] = {}
            for eid in IDS:
                k = str(zlib.crc32(eid.encode()) % count)
                want[k] = want.get(k, 0) + 1
            assert await shard_counts(storage, uid) == want, name
        for eid in IDS[:5]:
            found = await storage.history.event(name, eid)
            assert found is not None and found["id"] == eid and found["type"] == name
        # A copy of each id, at another time on another day: already stored, in every generation. (Expiring
        # with the first: a copy kept longer would keep its day's partition, swept event by event.)
        copies = [event(name, eid, T0 + timedelta(days=9), expire_at=day + timedelta(days=1)) for eid in IDS]
        assert sorted((await storage.store.write(copies)).duplicates) == list(range(len(IDS)))
    # Retention forgets the entries of a dropped day in whichever shards they are.
    assert await storage.retention.sweep_once(datetime(2026, 3, 10, tzinfo=UTC)) == len(docs)
    for name, (uid, _) in GENERATIONS.items():
        if partitions.layout is not Layout.INDEXED:
            assert set((await shard_counts(storage, uid)).values()) <= {0}, name
        again = await storage.store.write([event(name, eid, datetime(2026, 3, 10, tzinfo=UTC)) for eid in IDS[:3]])
        assert again.duplicates == [] and await storage.history.event(name, "e1") is not None


@pytest.mark.parametrize("value", [None, 0, 3, 16, -1, "2", 2.0, True, [2], {"n": 2}])
def test_a_count_outside_the_choices_reads_as_the_default(value: Any) -> None:
    assert generation_shards(value, LEGACY_ID_SHARDS) == LEGACY_ID_SHARDS


@pytest.mark.parametrize("value", [1, 2, 4, 8])
def test_each_choice_reads_as_itself(value: int) -> None:
    assert generation_shards(value, LEGACY_ID_SHARDS) == value


def test_a_topic_document_without_a_readable_uid_has_no_generation() -> None:
    assert generation({"uid": "abc", "id_shards": 2}, 8) == ("abc", 2)
    assert generation({"uid": "abc"}, 8) == ("abc", 8)
    assert generation({"uid": "abc", "id_shards": "1"}, 4) == ("abc", 4)
    for doc in ({}, {"uid": None}, {"uid": 12}, {"uid": ["a"]}, {"id_shards": 2}):
        assert generation(doc, 8) is None


@pytest.mark.parametrize("value", ["3", "0", "16", "two", "-2", "2.5", ""])
def test_the_setting_refuses_a_count_outside_the_choices(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_EVENT_ID_SHARDS", value)
    with pytest.raises(ValueError, match="event_id_shards"):
        HubSettings()


@pytest.mark.parametrize("value", ["1", "2", "4", "8"])
def test_the_setting_takes_each_choice_from_the_environment(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIBUTARY_EVENT_ID_SHARDS", value)
    assert HubSettings().event_id_shards == int(value)


@pytest.fixture(params=[None, 1, 8], ids=["default", "one", "eight"])
def hub_settings(request: pytest.FixtureRequest, hub_settings: HubSettings) -> HubSettings:
    """The suite's hub settings, with `event_id_shards` as set (None: its default)."""
    if request.param is None:
        return hub_settings
    return hub_settings.model_copy(update={"event_id_shards": request.param})


async def test_the_hub_records_its_setting_on_each_generation_it_creates(
    client: httpx.AsyncClient, hub_settings: HubSettings
) -> None:
    assert HubSettings.model_fields["event_id_shards"].default == 2
    topics = TopicDoc.get_pymongo_collection()
    uids = set()
    for round_ in range(2):  # created, deleted and created again: a new generation, the setting recorded again
        assert (await client.post("/topics", json={"name": "sharded", "schema": {"type": "object"}})).status_code == 201
        raw = await topics.find_one({"_id": "sharded"})
        assert raw is not None and raw["id_shards"] == hub_settings.event_id_shards, round_
        uids.add(raw["uid"])
        # A change of the topic's settings leaves the count alone; a client cannot set it, at creation or after.
        assert (await client.patch("/topics/sharded", json={"description": "d"})).status_code == 200
        for answer in (
            await client.patch("/topics/sharded", json={"id_shards": 1}),
            await client.post("/topics", json={"name": "other", "schema": {"type": "object"}, "id_shards": 1}),
        ):
            assert answer.status_code == 422 and "id_shards" in answer.text, answer.text
        assert (await topics.find_one({"_id": "sharded"}) or {}).get("id_shards") == hub_settings.event_id_shards
        view = (await client.get("/topics/sharded")).json()
        assert "id_shards" not in view and "uid" not in view  # storage, not the API's business
        assert (await client.delete("/topics/sharded")).status_code == 204
    assert len(uids) == 2
