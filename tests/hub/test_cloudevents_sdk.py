"""Interop with the official CloudEvents Python SDK (`cloudevents`, pinned in constraints.txt) as a client of real
hub and stream processes (issue 17): structured, binary (the SDK's and Knative's default) and batched publishes
are accepted; what history, SSE and the websocket send back reads into the SDK's `CloudEvent`. Binary mode
answers as structured does: bad attributes name their `ce-` header, bad data its pointer, bounded headers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from cloudevents.v1 import conversion as ce_v1
from cloudevents.v1.http import CloudEvent as V1CloudEvent

from tests.support.stack import Stack, run_stack
from tributary_client.sse import sse_events

SCHEMA = {"type": "object", "required": ["v"], "properties": {"v": {"type": "number"}}}
FMT = JSONFormat()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(Path(tmp_path_factory.mktemp("ce-sdk-logs")), services=("hub", "stream")) as s:
        yield s


@pytest.fixture
def topic(stack: Stack) -> str:
    name = f"ce-sdk-{uuid.uuid4().hex[:6]}"
    with _client(stack) as hub:
        assert hub.post("/topics", json={"name": name, "schema": SCHEMA}).status_code == 201
    return name


def _client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)


def _event(topic: str, eid: str, v: Any, **attrs: Any) -> CloudEvent:
    return CloudEvent(attributes={"type": topic, "source": "/sdk/test", "id": eid, **attrs}, data={"v": v})


def _post(hub: httpx.Client, topic: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return hub.post(f"/topics/{topic}/events", content=body, headers=headers)


def _recorded(hub: httpx.Client, topic: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items: list[dict[str, Any]] = hub.get(f"/topics/{topic}/events").json()["items"]
        if len(items) >= n:
            return items
        time.sleep(0.2)
    raise AssertionError(f"{n} events not recorded")


def test_sdk_structured_binary_and_batch_are_accepted(stack: Stack, topic: str) -> None:
    with _client(stack) as hub:
        structured = ce_http.to_structured_event(_event(topic, "s-1", 1, subject="plant1.line3"))
        assert _post(hub, topic, dict(structured.headers), structured.body).status_code == 202
        # Binary mode as the SDK writes it: ce- headers (ce-time included), the data as the body.
        binary = ce_http.to_binary_event(_event(topic, "b-1", 2, subject="plant1.line3"))
        assert "ce-time" in binary.headers
        r = _post(hub, topic, dict(binary.headers), binary.body)
        assert r.status_code == 202 and r.json()["id"] == "b-1", r.text
        # The older v1 API's binary event carries no Content-Type at all: JSON is the default.
        legacy_headers, legacy_body = ce_v1.to_binary(
            V1CloudEvent({"type": topic, "source": "/sdk/v1", "id": "l-1"}, {"v": 3})
        )
        assert "content-type" not in {k.lower() for k in legacy_headers}
        assert _post(hub, topic, dict(legacy_headers), legacy_body).status_code == 202
        batch = b"[" + b",".join(FMT.write(_event(topic, f"c-{i}", 10 + i)) for i in range(2)) + b"]"
        r = hub.post(
            f"/topics/{topic}/events:batch",
            content=batch,
            headers={"Content-Type": "application/cloudevents-batch+json"},
        )
        assert r.status_code == 202 and r.json()["ids"] == ["c-0", "c-1"], r.text
        items = _recorded(hub, topic, 5)
    # History read back into the SDK's CloudEvent.
    events = {e.get_id(): e for e in (FMT.read(None, orjson.dumps(i)) for i in items)}
    assert set(events) == {"s-1", "b-1", "l-1", "c-0", "c-1"}
    b1 = events["b-1"]
    assert (b1.get_type(), b1.get_source(), b1.get_subject(), b1.get_data()) == (
        topic,
        "/sdk/test",
        "plant1.line3",
        {"v": 2},
    )
    assert b1.get_dataschema() == f"/topics/{topic}/schemas/1" and b1.get_time() is not None
    assert events["l-1"].get_data() == {"v": 3}


def test_binary_mode_answers_as_structured(stack: Stack, topic: str) -> None:
    base = dict(ce_http.to_binary_event(_event(topic, "x-1", 1)).headers)

    def send(
        body: bytes = b'{"v": 1}', drop: tuple[str, ...] = (), extra: dict[str, str] | None = None, **kw: str
    ) -> httpx.Response:
        extra = (extra or {}) | kw
        headers = {k: v for k, v in base.items() if k not in drop} | {k.replace("_", "-"): v for k, v in extra.items()}
        with _client(stack) as hub:
            return _post(hub, topic, headers, body)

    def locs(r: httpx.Response) -> list[str]:
        return [d["loc"] for d in r.json()["error"]["details"]]

    r = send(ce_type="other-topic")
    assert r.status_code == 422 and locs(r) == ["/headers/ce-type"], r.text
    r = send(body=b'{"v": "hot"}')
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_event" and locs(r) == ["/data/v"], r.text
    r = send(drop=("ce-specversion",))
    assert r.status_code == 422 and locs(r) == ["/headers/ce-specversion"], r.text
    r = send(ce_specversion="0.3")
    assert r.status_code == 422 and locs(r) == ["/headers/ce-specversion"], r.text
    r = send(ce_id="")
    assert r.status_code == 422 and locs(r) == ["/headers/ce-id"], r.text
    r = send(ce_subject="a" * 5000)  # hostile: over the header bound
    assert r.status_code == 422 and locs(r) == ["/headers/ce-subject"], r.text
    r = send(ce_subject="bad subject#")
    assert r.status_code == 422 and locs(r) == ["/headers/ce-subject"], r.text
    r = send(ce_source="x" * 1500)  # within the header bound, over the attribute's
    assert r.status_code == 422 and locs(r) == ["/headers/ce-source"], r.text
    r = send(ce_data="{}")
    assert r.status_code == 422 and locs(r) == ["/headers/ce-data"], r.text
    r = send(ce_publisher="token:ceo")  # not an attribute a publisher may set
    assert r.status_code == 422 and locs(r) == ["/headers/ce-publisher"], r.text
    r = send(extra={f"ce_x{i}": "1" for i in range(20)})
    assert r.status_code == 422 and locs(r) == ["/headers"], r.text
    r = send(body=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json", r.text
    r = send(content_type="text/plain")
    assert r.status_code == 415, r.text
    r = send(ce_time="not a time at all")  # ignored: the hub sets the time
    assert r.status_code == 202, r.text
    r = send(ce_subject="plant%201")  # percent-decoded: a space is not allowed in a subject
    assert r.status_code == 422 and locs(r) == ["/headers/ce-subject"], r.text
    with _client(stack) as hub:
        assert [i["id"] for i in _recorded(hub, topic, 1)] == ["x-1"]


async def test_stream_output_reads_into_the_sdk(stack: Stack, topic: str) -> None:
    with _client(stack) as hub:
        binary = ce_http.to_binary_event(_event(topic, "live-1", 7, subject="plant1.line3"))
        assert _post(hub, topic, dict(binary.headers), binary.body).status_code == 202
        _recorded(hub, topic, 1)

    async def sse_one() -> dict[str, Any]:
        stream = sse_events(
            stack.stream_http_url, f"/events/{topic}.%23", token=stack.token, since="2000-01-01T00:00:00Z"
        )
        async for kind, _, data in stream:
            if kind == "event":
                await stream.aclose()  # type: ignore[attr-defined]
                return dict(data)
        raise AssertionError("no event")

    async def ws_one() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with websockets.connect(f"{stack.stream_url}/ws", additional_headers=headers, open_timeout=10) as ws:
            sub = {"pattern": f"{topic}.#", "since": "2000-01-01T00:00:00Z"}
            await ws.send(orjson.dumps({"op": "subscribe", "id": "s", "events": sub}).decode())
            while True:
                frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") == "event":
                    return dict(frame["event"])

    for envelope in (await asyncio.wait_for(sse_one(), 30), await ws_one()):
        event = FMT.read(None, orjson.dumps(envelope))
        assert (event.get_id(), event.get_type(), event.get_subject(), event.get_data()) == (
            "live-1",
            topic,
            "plant1.line3",
            {"v": 7},
        )
        assert event.get_source() == "/sdk/test" and event.get_time() is not None
