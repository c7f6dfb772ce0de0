from __future__ import annotations

import httpx

from tests.hub.conftest import make_topic, poll, recorded
from tributary_hub.runtime import Hub


async def test_publish_and_record(client: httpx.AsyncClient, hub: Hub) -> None:
    await make_topic(client)
    r = await client.post("/topics/readings/events", json={"data": {"temp": 21.5}, "subject": "p1.l3"})
    assert r.status_code == 202, r.text
    await poll(lambda: _has(hub, 1), what="recorded")
    r = await client.get("/topics/readings/events")
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["data"] == {"temp": 21.5}


async def _has(hub: Hub, n: int) -> bool:
    return len(await recorded(hub, "readings")) >= n
