"""Server-sent events: live events, keep-alive comments, refusals as HTTP errors."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.stream.support import SseReader, settings_for, start_stream, token


async def test_sse_events_live_with_ids_and_keepalive(amqp_url, publisher):
    running = await start_stream(settings_for(amqp_url, sse_keepalive_s=0.3))
    try:
        async with (
            httpx.AsyncClient(base_url=running.base, timeout=30) as http,
            http.stream("GET", "/events/orders.eu.%23", headers={"Authorization": f"Bearer {token()}"}) as r,
        ):
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            sse = SseReader(r)
            first = await sse.next_event()
            assert first["event"] == "subscribed"
            assert orjson.loads(first["data"])["events"] == {"pattern": "orders.eu.#"}
            # Idle: keep-alive comments flow.
            comments: list[dict[str, Any]] = []
            while len(comments) < 2:
                record = await sse.next()
                if "comment" in record:
                    comments.append(record)
            await publisher.event("orders", "us.x")
            sent = await publisher.event("orders", "eu.x", {"n": 1})
            record = await sse.next_event()
            assert record["event"] == "event" and record["id"] == sent["id"]
            assert orjson.loads(record["data"]) == sent
    finally:
        await running.stop()


async def test_sse_bad_requests(stream):
    auth = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=stream.base, timeout=10) as http:
        # 422 invalid_request, as the hub answers the same mistakes (issue 10 follow-up: it was 400 here).
        r = await http.get("/events/a..b", headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert r.json()["error"]["details"][0]["loc"] == "/path/pattern"
        r = await http.get("/unitops/-bad/stream", headers=auth)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert r.json()["error"]["details"][0]["loc"] == "/path/name"
        r = await http.get("/unitops/pump/stream", headers=auth, params={"since": "yesterday"})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/query/since"
        r = await http.get("/unitops/pump/stream", headers={**auth, "Last-Event-ID": "{broken"})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/header/Last-Event-ID"
        r = await http.get("/events/a.%23", headers=auth, params={"since": ""})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/query/since"


async def test_sse_and_hub_refuse_a_bad_pattern_alike(stream, hub):
    """The same bad pattern gets the same status and error body from both edges."""
    async with httpx.AsyncClient(base_url=stream.base, timeout=10) as http:
        from_stream = await http.get("/events/hs.a..b", headers={"Authorization": f"Bearer {token()}"})
    await hub.create_topic("hs")
    from_hub = await hub.http.get("/topics/hs/events", params={"subject": "a..b"})
    assert from_stream.status_code == from_hub.status_code == 422
    stream_error, hub_error = from_stream.json()["error"], from_hub.json()["error"]
    assert stream_error.keys() == hub_error.keys() == {"code", "message", "details"}
    assert stream_error["code"] == hub_error["code"] == "invalid_request"
    assert [d.keys() for d in stream_error["details"]] == [d.keys() for d in hub_error["details"]] == [{"loc", "msg"}]
