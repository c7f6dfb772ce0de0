"""History: position order, cursor pages and their boundaries, subject patterns with the broker's semantics,
time ranges, latest per subject, exports by Accept."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx
import orjson
import pytest

from tests.hub.conftest import make_topic, recorded
from tests.support.polling import eventually
from tributary_common.matcher import matches
from tributary_hub.composition import Hub

SUBJECTS = [None, "a", "a.b", "a.b.c", "a.x", "b", "b.a", "c.a.b"]


async def seed(client: httpx.AsyncClient, hub: Hub, rounds: int = 3) -> list[dict[str, Any]]:
    """`rounds` batches, one event per subject each, a little apart in time; returns history oldest first."""
    await make_topic(client, "t", {"type": "object"})
    await make_topic(client, "other", {"type": "object"})
    n = 0
    for r in range(rounds):
        batch = [{"data": {"n": n + i, "round": r}, **({"subject": s} if s else {})} for i, s in enumerate(SUBJECTS)]
        n += len(batch)
        assert (await client.post("/topics/t/events:batch", json=batch)).status_code == 202
        assert (await client.post("/topics/other/events", json={"data": {"r": r}, "subject": "a"})).status_code == 202
        await asyncio.sleep(0.01)

    async def done() -> bool:
        return len(await recorded(hub, "t")) == n and len(await recorded(hub, "other")) == rounds

    await eventually(done, what="seeded events recorded", interval=0.05)
    items: list[dict[str, Any]] = (await client.get("/topics/t/events", params={"limit": 1000})).json()["items"]
    return items


async def test_pages_follow_position_order(client: httpx.AsyncClient, hub: Hub) -> None:
    everything = await seed(client, hub)
    assert len(everything) == 24
    positions = [(e["time"], e["id"]) for e in everything]
    assert positions == sorted(positions)
    assert all(e["type"] == "t" for e in everything)
    for size in (1, 5, 8, 23, 24, 25):
        got: list[str] = []
        params: dict[str, Any] = {"limit": size}
        pages = 0
        while True:
            page = (await client.get("/topics/t/events", params=params)).json()
            got += [e["id"] for e in page["items"]]
            pages += 1
            assert len(page["items"]) <= size
            if page["next"] is None:
                break
            params["cursor"] = page["next"]
        assert got == [e["id"] for e in everything], size
        # No empty last page when the total is a multiple of the size.
        assert pages == -(-24 // size), size
    bad = await client.get("/topics/t/events", params={"cursor": "!!not-ours"})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("pattern", ["#", "a", "a.*", "a.#", "*", "*.a", "#.b", "#.a.#", "*.*", "b.#", "c.*.b", "zzz"])
async def test_subject_patterns_agree_with_the_matcher(client: httpx.AsyncClient, hub: Hub, pattern: str) -> None:
    everything = await seed(client, hub, rounds=1)
    r = await client.get("/topics/t/events", params={"subject": pattern, "limit": 1000})
    assert r.status_code == 200, r.text
    got = {e.get("subject") for e in r.json()["items"]}
    expected = {
        e.get("subject")
        for e in everything
        if matches(f"t.{pattern}", f"t.{e['subject']}" if e.get("subject") else "t")
    }
    assert got == expected


async def test_time_range(client: httpx.AsyncClient, hub: Hub) -> None:
    everything = await seed(client, hub)
    times = sorted({e["time"] for e in everything})
    assert len(times) == 3
    r = await client.get("/topics/t/events", params={"start": times[1], "limit": 1000})
    assert {e["time"] for e in r.json()["items"]} == {times[1], times[2]}
    r = await client.get("/topics/t/events", params={"start": times[0], "end": times[2], "limit": 1000})
    assert {e["time"] for e in r.json()["items"]} == {times[0], times[1]}  # end is exclusive
    r = await client.get("/topics/t/events", params={"start": "yesterday"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["loc"] == "/query/start"
    r = await client.get("/topics/t/events", params={"subject": "a..b"})
    assert r.status_code == 422


async def test_latest_per_subject(client: httpx.AsyncClient, hub: Hub) -> None:
    await seed(client, hub)
    items = (await client.get("/topics/t/events:latest")).json()["items"]
    assert len(items) == len(SUBJECTS)
    assert all(e["data"]["round"] == 2 for e in items)
    assert {e.get("subject") for e in items} == set(SUBJECTS)
    under_a = (await client.get("/topics/t/events:latest", params={"subject": "a.#"})).json()["items"]
    assert {e["subject"] for e in under_a} == {"a", "a.b", "a.b.c", "a.x"}
    assert (await client.get("/topics/nope/events:latest")).status_code == 404


async def test_exports(client: httpx.AsyncClient, hub: Hub) -> None:
    hub.history.chunk_rows = 5  # several chunks
    everything = await seed(client, hub)
    ids = [e["id"] for e in everything]
    for accept in ("application/jsonl", "application/x-ndjson"):
        r = await client.get("/topics/t/events", headers={"Accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(accept)
        lines = [orjson.loads(line) for line in r.content.splitlines()]
        assert lines == everything
        assert [e["id"] for e in lines] == ids
    r = await client.get("/topics/t/events", params={"subject": "a.#"}, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 3 * 4
    assert {row["subject"] for row in rows} == {"a", "a.b", "a.b.c", "a.x"}
    assert all(orjson.loads(row["data"])["round"] in (0, 1, 2) for row in rows)
    r = await client.get("/topics/t/events", headers={"Accept": "application/xml"})
    assert r.status_code == 406
    assert r.json()["error"]["code"] == "not_acceptable"
    r = await client.get("/topics/t/events", headers={"Accept": "text/html, */*;q=0.1"})
    assert r.status_code == 200
    assert r.json()["items"]
