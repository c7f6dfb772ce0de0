"""RPC responders on `tributary.rpc.hub`, called over the real broker exactly as the stream service calls them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest

from tests.hub.conftest import make_topic, recorded
from tests.support.polling import eventually
from tributary_common import rpc_contracts as rc
from tributary_common.amqp import RpcClient, connect
from tributary_common.rpc import RpcError
from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import parse_time
from tributary_hub.composition import Hub


@pytest.fixture
async def caller(amqp_url: str, app: Any) -> AsyncIterator[RpcClient]:
    """The caller the stream uses (one call at a time, direct reply-to)."""
    connection = await connect(amqp_url, name="test-rpc-caller")
    client = RpcClient()
    await client.start(connection)
    yield client
    await client.close()
    await connection.close()


async def test_events_history(client: httpx.AsyncClient, hub: Hub, caller: RpcClient) -> None:
    await make_topic(client, "t", {"type": "object"})
    await make_topic(client, "u", {"type": "object"})
    subjects = ["a", "a.b", "b"]
    for i in range(4):
        batch = [{"data": {"i": i}, "subject": s, "id": f"t-{i}-{s}"} for s in subjects]
        assert (await client.post("/topics/t/events:batch", json=batch)).status_code == 202
        assert (
            await client.post("/topics/u/events", json={"data": {}, "subject": "a", "id": f"u-{i}"})
        ).status_code == 202

    async def done() -> bool:
        return len(await recorded(hub, "t")) == 12 and len(await recorded(hub, "u")) == 4

    await eventually(done, what="events recorded", interval=0.05)

    async def history(**params: Any) -> rc.EventsHistoryPage:
        return rc.EventsHistoryPage.model_validate(
            await caller.call(rc.HUB_QUEUE, rc.EVENTS_HISTORY, params, timeout=10)
        )

    everything = await history(pattern="#", limit=1000)
    assert len(everything.items) == 16
    assert everything.next is None
    only_t = await history(pattern="t.#")
    assert {e.type for e in only_t.items} == {"t"}
    keyed = await history(pattern="*.a")
    assert {e.routing_key for e in keyed.items} == {"t.a", "u.a"}

    pages: list[str] = []
    cursor = None
    while True:
        page = await history(pattern="t.#", limit=5, **({"cursor": cursor} if cursor else {}))
        pages += [e.id for e in page.items]
        if page.next is None:
            break
        cursor = page.next
    assert pages == [e.id for e in only_t.items]

    middle = only_t.items[5]
    after = await history(pattern="t.#", after_id=middle.id)
    assert [e.id for e in after.items] == [e.id for e in only_t.items[6:]]
    since = await history(pattern="t.#", since=middle.time.isoformat())
    assert since.items[0].time == middle.time  # since is inclusive
    until = await history(pattern="t.#", until=middle.time.isoformat())
    assert all(e.time <= middle.time for e in until.items)
    assert until.items[-1].time == middle.time

    with pytest.raises(RpcError) as unknown:
        await history(after_id="no-such-id")
    assert unknown.value.code == "not_found"
    with pytest.raises(RpcError) as invalid:
        await history(pattern="a..b")
    assert invalid.value.code == "invalid"
    with pytest.raises(RpcError) as extra:
        await history(surprise=1)
    assert extra.value.code == "invalid"


async def test_samples_history_and_unitop_resolve(
    client: httpx.AsyncClient, hub: Hub, caller: RpcClient, amqp_url: str
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("tributary.samples")
    for sid in ("s1", "s2"):
        batch = SampleBatch(
            sid=sid, source="simulator", samples=[Sample(t=t0 + timedelta(seconds=i), v=i) for i in range(5)]
        )
        await exchange.publish(aio_pika.Message(batch.model_dump_json().encode()), routing_key=batch.routing_key)
    await connection.close()

    async def stored() -> bool:
        return await hub.samples.collection.count_documents({}) == 10

    await eventually(stored, what="samples recorded", interval=0.05)
    params: dict[str, Any] = {
        "sids": ["s1", "s2"],
        "since": t0.isoformat(),
        "until": (t0 + timedelta(seconds=3)).isoformat(),
        "limit": 4,
    }
    page = rc.SamplesHistoryPage.model_validate(await caller.call(rc.HUB_QUEUE, rc.SAMPLES_HISTORY, params))
    # since exclusive, until inclusive, ordered by (t, sid)
    assert [(r.t, r.sid) for r in page.items] == [
        (t0 + timedelta(seconds=1), "s1"),
        (t0 + timedelta(seconds=1), "s2"),
        (t0 + timedelta(seconds=2), "s1"),
        (t0 + timedelta(seconds=2), "s2"),
    ]
    assert page.next is not None
    rest = rc.SamplesHistoryPage.model_validate(
        await caller.call(rc.HUB_QUEUE, rc.SAMPLES_HISTORY, {**params, "cursor": page.next})
    )
    assert [(r.t, r.sid, r.v) for r in rest.items] == [
        (t0 + timedelta(seconds=3), "s1", 3),
        (t0 + timedelta(seconds=3), "s2", 3),
    ]
    assert rest.next is None

    with pytest.raises(RpcError) as missing:
        await caller.call(rc.HUB_QUEUE, rc.UNITOP_RESOLVE, {"name": "pump-404"})
    assert missing.value.code == "not_found"
    assert parse_time("2026-01-01T00:00:00Z") == t0


async def test_apikey_verify(client: httpx.AsyncClient, caller: RpcClient) -> None:
    r = await client.post("/apikeys", json={"name": "gw", "scopes": ["events:read"], "topics": ["t.#"]})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    verified = rc.ApiKeyVerified.model_validate(await caller.call(rc.HUB_QUEUE, rc.APIKEY_VERIFY, {"key": key}))
    assert verified.claims is not None
    assert verified.claims["scope"] == "events:read"
    assert verified.claims["topics"] == ["t.#"]
    assert verified.claims["sub"] == f"apikey:{r.json()['id']}"
    unknown = rc.ApiKeyVerified.model_validate(await caller.call(rc.HUB_QUEUE, rc.APIKEY_VERIFY, {"key": "trk_nope"}))
    assert unknown.claims is None
