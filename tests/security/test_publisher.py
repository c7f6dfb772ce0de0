"""Who published each event (issue 17): recorded with it from the hub's AMQP header, shown in history and exports
to admins only, sent to subscribers (live and in the stream's catch-up) only when the topic has `expose_publisher`
- against real hub and stream processes."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, run_stack
from tributary_client.sse import sse_events

SCHEMA = {"type": "object", "properties": {"v": {"type": "number"}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(Path(tmp_path_factory.mktemp("publisher-logs")), services=("hub", "stream")) as s:
        yield s


def _client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _history(hub: httpx.Client, topic: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = hub.get(f"/topics/{topic}/events").json()["items"]
        if len(items) >= n:
            return items
        time.sleep(0.2)
    raise AssertionError(f"{topic}: {n} events not recorded")


def _topics(stack: Stack) -> tuple[str, str]:
    hidden, shown = f"pub-hidden-{uuid.uuid4().hex[:6]}", f"pub-shown-{uuid.uuid4().hex[:6]}"
    with _client(stack, stack.token) as admin:
        assert admin.post("/topics", json={"name": hidden, "schema": SCHEMA}).json()["expose_publisher"] is False
        r = admin.post("/topics", json={"name": shown, "schema": SCHEMA, "expose_publisher": True})
        assert r.status_code == 201 and r.json()["expose_publisher"] is True, r.text
    return hidden, shown


def test_history_shows_the_publisher_to_admins_only(stack: Stack) -> None:
    hidden, shown = _topics(stack)
    gateway = stack.mint(subject="line-gateway", scopes=["events:publish"])
    reader = stack.mint(subject="dashboard", scopes=["events:read", "topics:read"])
    with _client(stack, gateway) as hub:
        for topic in (hidden, shown):
            assert hub.post(f"/topics/{topic}/events", json={"data": {"v": 1}}).status_code == 202
            batch = [{"data": {"v": 2}}]
            assert hub.post(f"/topics/{topic}/events:batch", json=batch).status_code == 202
    with _client(stack, stack.token) as admin:
        for topic in (hidden, shown):
            items = _history(admin, topic, 2)
            assert [i.get("publisher") for i in items] == ["token:line-gateway"] * 2
            latest = admin.get(f"/topics/{topic}/events:latest").json()["items"]
            assert latest[0]["publisher"] == "token:line-gateway"
        lines = admin.get(f"/topics/{hidden}/events", headers={"Accept": "application/jsonl"}).text.splitlines()
        assert all('"publisher":"token:line-gateway"' in line for line in lines) and len(lines) == 2
        rows = list(csv.reader(io.StringIO(admin.get(f"/topics/{hidden}/events", headers={"Accept": "text/csv"}).text)))
        assert rows[0][-1] == "publisher" and [r[-1] for r in rows[1:]] == ["token:line-gateway"] * 2
    with _client(stack, reader) as hub:
        assert all("publisher" not in i for i in _history(hub, hidden, 2))
        assert [i["publisher"] for i in _history(hub, shown, 2)] == ["token:line-gateway"] * 2
        header = next(csv.reader(io.StringIO(hub.get(f"/topics/{hidden}/events", headers={"Accept": "text/csv"}).text)))
        assert "publisher" not in header
        text = hub.get(f"/topics/{hidden}/events", headers={"Accept": "application/jsonl"}).text
        assert "publisher" not in text


async def test_subscribers_see_the_publisher_only_when_the_topic_opts_in(stack: Stack) -> None:
    hidden, shown = _topics(stack)
    gateway = stack.mint(subject="line-gateway", scopes=["events:publish"])
    with _client(stack, gateway) as hub:
        for topic in (hidden, shown):
            assert hub.post(f"/topics/{topic}/events", json={"data": {"v": 1}}).status_code == 202
    with _client(stack, stack.token) as admin:
        for topic in (hidden, shown):
            _history(admin, topic, 1)

    async def read(topic: str) -> list[dict[str, Any]]:
        """The recorded event (catch-up through the hub's RPC), then one published live."""
        got: list[dict[str, Any]] = []
        stream = sse_events(
            stack.stream_http_url, f"/events/{topic}.%23", token=stack.token, since="2000-01-01T00:00:00Z"
        )
        async for kind, _, data in stream:
            if kind != "event":
                continue
            got.append(data)
            if len(got) == 1:
                async with httpx.AsyncClient(base_url=stack.hub_url, timeout=30) as http:
                    r = await http.post(
                        f"/topics/{topic}/events",
                        json={"data": {"v": 2}},
                        headers={"Authorization": f"Bearer {gateway}"},
                    )
                    assert r.status_code == 202
            if len(got) == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    hidden_events = await asyncio.wait_for(read(hidden), 60)
    shown_events = await asyncio.wait_for(read(shown), 60)
    assert [e["data"]["v"] for e in hidden_events] == [1, 2]
    assert all("publisher" not in e for e in hidden_events), hidden_events  # not even to an admin subscriber
    assert [e["publisher"] for e in shown_events] == ["token:line-gateway"] * 2


def test_an_api_key_publisher_is_named_by_its_id(stack: Stack) -> None:
    _, shown = _topics(stack)
    with _client(stack, stack.token) as admin:
        created = admin.post("/apikeys", json={"name": "line3-gateway", "scopes": ["events:publish"]})
        assert created.status_code == 201, created.text
        key = created.json()
    with _client(stack, key["key"]) as hub:
        assert hub.post(f"/topics/{shown}/events", json={"data": {"v": 1}}).status_code == 202
    with _client(stack, stack.token) as admin:
        assert [i["publisher"] for i in _history(admin, shown, 1)] == [f"api_key:{key['id']}"]


def test_expose_publisher_is_validated(stack: Stack) -> None:
    hidden, _ = _topics(stack)
    with _client(stack, stack.token) as admin:
        for bad in (None, "yes", 1, "true"):
            r = admin.patch(f"/topics/{hidden}", json={"expose_publisher": bad})
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["error"]["details"][0]["loc"].endswith("/expose_publisher"), r.text
        r = admin.post(
            "/topics", json={"name": f"pub-bad-{uuid.uuid4().hex[:6]}", "schema": SCHEMA, "expose_publisher": None}
        )
        assert r.status_code == 422, r.text
        assert admin.patch(f"/topics/{hidden}", json={"expose_publisher": True}).json()["expose_publisher"] is True
        # A client cannot forge the attribute: it is not part of what a publisher may send.
        envelope = {
            "specversion": "1.0",
            "id": "x1",
            "source": "/s",
            "type": hidden,
            "data": {},
            "publisher": "token:ceo",
        }
        r = admin.post(
            f"/topics/{hidden}/events",
            content=httpx.Request("POST", "/", json=envelope).content,
            headers={"Content-Type": "application/cloudevents+json"},
        )
        assert r.status_code == 422, r.text
