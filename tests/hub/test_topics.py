"""Topic lifecycle: create, get, list, schema versions, limits, delete (refused while events exist unless forced)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.hub.conftest import MINT, SCHEMA, make_topic, recorded
from tests.support.polling import eventually
from tributary_client.hub import HubClient
from tributary_hub.app import create_app
from tributary_hub.composition import Hub
from tributary_hub.cursors import decode
from tributary_hub.settings import HubSettings


async def test_lifecycle(client: httpx.AsyncClient, hub: Hub) -> None:
    created = await make_topic(client, "orders", retention_days=7, description="Orders", compatibility="backward")
    assert created["version"] == 1
    assert created["dataschema"] == "/topics/orders/schemas/1"
    assert created["schema"] == SCHEMA
    assert created["compatibility"] == "backward"

    again = await client.post("/topics", json={"name": "orders", "schema": SCHEMA})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "topic_exists"

    await make_topic(client, "alerts")
    listed = (await client.get("/topics")).json()["items"]
    assert [t["name"] for t in listed] == ["alerts", "orders"]

    v2 = {**SCHEMA, "properties": {**SCHEMA["properties"], "note": {"type": "string"}}}
    r = await client.put("/topics/orders/schema", json={"schema": v2})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    versions = (await client.get("/topics/orders/schemas")).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    one = (await client.get("/topics/orders/schemas/1")).json()
    assert one["schema"] == SCHEMA
    assert (await client.get("/topics/orders/schemas/2")).json()["schema"] == v2
    missing = await client.get("/topics/orders/schemas/3")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "unknown_version"

    patched = await client.patch("/topics/orders", json={"retention_days": 1, "compatibility": "full"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["retention_days"] == 1
    assert patched.json()["compatibility"] == "full"

    # Publishing now uses version 2: the cache entry was invalidated by the schema change.
    r = await client.post("/topics/orders/events", json={"data": {"temp": 1, "note": "v2 field"}})
    assert r.status_code == 202, r.text
    assert r.json()["dataschema"] == "/topics/orders/schemas/2"
    await eventually(lambda: recorded(hub, "orders"), what="the event recorded", interval=0.05)

    refused = await client.delete("/topics/orders")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "topic_has_events"
    assert (await client.delete("/topics/orders", params={"force": "true"})).status_code == 204
    assert (await client.get("/topics/orders")).status_code == 404
    assert await recorded(hub, "orders") == []
    assert (await client.delete("/topics/alerts")).status_code == 204  # no events: no force needed


async def test_recreated_topic_does_not_reuse_the_old_validator(client: httpx.AsyncClient) -> None:
    await make_topic(client, "gen", {"type": "object", "required": ["a"]})
    assert (await client.post("/topics/gen/events", json={"data": {"a": 1}})).status_code == 202
    assert (await client.delete("/topics/gen", params={"force": "true"})).status_code == 204
    await make_topic(client, "gen", {"type": "object", "required": ["b"]})
    r = await client.post("/topics/gen/events", json={"data": {"a": 1}})
    assert r.status_code == 422, r.text
    assert (await client.post("/topics/gen/events", json={"data": {"b": 1}})).status_code == 202


async def test_bad_topic_requests(client: httpx.AsyncClient, hub: Hub) -> None:
    cases: list[tuple[Any, int, str, str]] = [
        ({"name": "Bad Name", "schema": SCHEMA}, 422, "invalid_request", "/name"),
        ({"name": "ok", "schema": {"type": "strin"}}, 422, "invalid_schema", "/schema/type"),
        ({"name": "ok", "schema": SCHEMA, "compatibility": "sideways"}, 422, "invalid_request", "/compatibility"),
        ({"name": "ok", "schema": SCHEMA, "retention_days": -1}, 422, "invalid_request", "/retention_days"),
        ({"name": "ok"}, 422, "invalid_request", "/schema"),
        ({"name": "ok", "schema": SCHEMA, "surprise": 1}, 422, "invalid_request", "/surprise"),
        (
            {"name": "ok", "schema": {"description": "x" * (hub.settings.max_schema_bytes + 1)}},
            413,
            "schema_too_large",
            "/schema",
        ),
    ]
    for body, status, code, loc in cases:
        r = await client.post("/topics", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == code, (body, err)
        assert loc in [d["loc"] for d in err["details"]], (body, err)

    deep: dict[str, Any] = {"type": "object"}
    for _ in range(hub.settings.max_schema_depth):
        deep = {"type": "object", "properties": {"x": deep}}
    r = await client.post("/topics", json={"name": "deep", "schema": deep})
    assert r.status_code == 422
    assert "levels deep" in r.json()["error"]["message"]
    # Deeper than orjson writes (254 levels), within what it reads (1,024): its size was measured first, a 500.
    deeper = "{" + '"a": {' * 300 + "}" * 300 + "}"
    r = await client.post(
        "/topics", content=f'{{"name": "deeper", "schema": {deeper}}}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert "levels deep" in r.json()["error"]["message"]

    r = await client.post("/topics", content=b'{"name": "x", "schema": {', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    r = await client.post("/topics", content=b"name=x", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    # JSON nested beyond any parser's comfort is a 400, not a crash.
    r = await client.post("/topics", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert r.status_code == 400
    # A name as long as a request head allows is not quoted back whole.
    r = await client.get("/topics/" + "a" * 30_000)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_topic"
    assert len(r.json()["error"]["message"]) <= 1_001 and len(r.content) < 3_000
    for path in ("/topics/nope", "/topics/nope/schemas", "/topics/nope/schemas/1", "/topics/Not-Valid"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "unknown_topic"
    assert (await client.put("/topics/nope/schema", json={"schema": SCHEMA})).status_code == 404
    assert (await client.delete("/topics/nope")).status_code == 404


async def test_schema_change_reaches_another_hub_instance(hub_settings: HubSettings, mongo_client: Any) -> None:
    """Two hubs on one database and cache: a schema change through one is enforced by the other (Memcached
    invalidation, then at most topic_local_ttl_s of in-process memory)."""
    first, second = create_app(hub_settings), create_app(hub_settings)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        a = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first), base_url="http://a", headers=MINT.bearer(["admin"])
        )
        b = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=second), base_url="http://b", headers=MINT.bearer(["admin"])
        )
        async with a, b:
            await make_topic(a, "shared", {"type": "object"})
            assert (await b.post("/topics/shared/events", json={"data": {"x": 1}})).status_code == 202
            r = await a.put("/topics/shared/schema", json={"schema": {"type": "object", "required": ["y"]}})
            assert r.status_code == 200

            async def enforced_by_b() -> bool:
                r = await b.post("/topics/shared/events", json={"data": {"x": 1}})
                return r.status_code == 422

            await eventually(enforced_by_b, timeout=10, what="the second hub enforcing schema version 2", interval=0.05)
            r = await b.post("/topics/shared/events", json={"data": {"y": 1}})
            assert r.json()["dataschema"] == "/topics/shared/schemas/2"


async def test_topics_are_listed_a_page_at_a_time_within_the_acl(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, app: FastAPI
) -> None:
    """Before, `GET /topics` answered every topic in one body, however many there were. Pages are by name; topics
    outside the caller's ACL (here every other one) are in no page and no cursor names one."""
    names = [f"k{i:02d}-{kind}" for i in range(12) for kind in ("no", "ok")]
    for name in names:
        await make_topic(client, name, {"type": "object"})
    visible = [n for n in names if n.endswith("-ok")]
    headers = MINT.bearer(["topics:read"], topics=[f"{n}.#" for n in visible])
    seen: list[str] = []
    cursors: list[str] = []
    params: dict[str, Any] = {"limit": 5}
    while True:
        r = await anon.get("/topics", params=params, headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 5
        seen += [t["name"] for t in page["items"]]
        if page["next"] is None:
            break
        cursors.append(page["next"])
        params["cursor"] = page["next"]
    assert seen == visible and len(cursors) == 2
    assert all(decode(c, 1)[0] in visible for c in cursors)
    # An admin sees them all; the default page holds up to 1000.
    r = await client.get("/topics")
    assert [t["name"] for t in r.json()["items"]] == names and r.json()["next"] is None
    r = await client.get("/topics", params={"limit": 24})
    assert len(r.json()["items"]) == 24 and r.json()["next"] is None
    r = await client.get("/topics", params={"limit": 23})
    assert decode(r.json()["next"], 1) == (names[22],)
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"cursor": "not a cursor"}, {"cursor": "k" * 4100}):
        r = await client.get("/topics", params=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["details"], r.text
    # The client (and the CLI's `topics list` through it) follows the pages.
    token = MINT(["topics:read"], topics=[f"{n}.#" for n in visible])
    async with HubClient("http://hub", token, transport=httpx.ASGITransport(app=app)) as hub:
        assert [t["name"] for t in await hub.list_topics(page_size=5)] == visible
