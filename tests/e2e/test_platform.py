"""The four processes for real: publish over HTTP, receive on a websocket, find it in history, one trace."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.e2e.conftest import Platform
from tests.support.polling import eventually
from tributary_client import HubClient, StreamClient
from tributary_client.sse import sse_events
from tributary_common.sid import compute_sid

SCHEMA = {
    "type": "object",
    "required": ["value"],
    "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
}


async def _first_frames(sub: Any, n: int, timeout: float = 30) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []

    async def collect() -> None:
        async for frame in sub:
            frames.append(frame)
            if len(frames) >= n:
                return

    await asyncio.wait_for(collect(), timeout)
    return frames


async def test_event_published_over_http_arrives_live_in_history_and_in_one_trace(e2e: Platform) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    async with HubClient(e2e.hub_url, e2e.token) as hub:
        await hub.create_topic(topic, SCHEMA)
        sub = StreamClient(e2e.stream_url, e2e.token).events(f"{topic}.plant1.#")
        receiver = asyncio.create_task(_first_frames(sub, 1))
        await asyncio.sleep(1.0)  # let the subscription bind before publishing (no `since`: live only)
        accepted = await hub.publish(topic, {"value": 21.5, "unit": "C"}, subject="plant1.line3")

        frames = await receiver
        event = frames[0]["event"]
        assert frames[0]["type"] == "event"
        assert event["id"] == accepted["id"]
        assert event["data"] == {"value": 21.5, "unit": "C"}
        assert event["subject"] == "plant1.line3"

        async def recorded() -> list[Any]:
            return [ev async for ev in hub.history(topic, subject="plant1.#")]

        history = await eventually(recorded, 20, interval=0.2, what="the event in history")
        assert [ev.id for ev in history] == [accepted["id"]]

    # One trace: the HTTP publish and the recorder (hub) and the websocket send (stream).
    traceparent = event["traceparent"]
    assert traceparent, "the hub stamps the envelope with the trace that published it"
    trace_id = traceparent.split("-")[1]

    async def spans_of_all() -> set[str]:
        services = {s.service for s in e2e.otlp.trace(trace_id)}
        return services if {"tributary-hub", "tributary-stream"} <= services else set()

    await eventually(spans_of_all, 20, interval=0.2, what=f"spans of hub and stream in trace {trace_id}")
    spans = e2e.otlp.trace(trace_id)
    hub_spans = [s for s in spans if s.service == "tributary-hub"]
    assert len(hub_spans) >= 2, [s.name for s in spans]  # the HTTP publish and the recording
    assert any(s.kind == 2 for s in hub_spans), "an HTTP server span"  # SPAN_KIND_SERVER
    assert len({s.span_id for s in spans}) == len(spans)


async def test_unitop_stream_delivers_simulator_samples_in_one_trace(e2e: Platform) -> None:
    name = f"pump-{uuid.uuid4().hex[:6]}"
    params = {"signal": "sine", "rate_hz": 5.0, "seed": 3}  # canonical (rate_hz a float): the sid is its hash
    async with HubClient(e2e.hub_url, e2e.token) as hub:

        async def simulator_announced() -> bool:
            return any(s["name"] == "simulator" for s in await hub.sources())

        await eventually(simulator_announced, 30, "ingest to announce the simulator", interval=0.2)
        await hub.create_unitop({"name": name, "items": {"flow": {"source": "simulator", "params": params}}})

    sub = StreamClient(e2e.stream_url, e2e.token).unitop(name)
    frames = await _first_frames(sub, 3, timeout=60)
    assert all(f["type"] == "samples" for f in frames), frames
    assert {f["item"] for f in frames} == {"flow"}
    assert {f["sid"] for f in frames} == {compute_sid("simulator", params)}
    times = [s["t"] for f in frames for s in f["samples"]]
    assert times == sorted(times)
    assert len(set(times)) == len(times)

    # The connector's read batch is the root of a trace that reaches the stream's send.
    async def sample_trace() -> set[str]:
        for span in list(e2e.otlp.spans):
            if span.service == "tributary-ingest":
                services = {s.service for s in e2e.otlp.trace(span.trace_id)}
                if "tributary-stream" in services:
                    return services
        return set()

    services = await eventually(sample_trace, 30, "a trace from ingest to stream", interval=0.2)
    assert {"tributary-ingest", "tributary-stream"} <= services


async def test_client_resumes_without_loss_after_stream_restart(e2e: Platform) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    total = 30
    async with HubClient(e2e.hub_url, e2e.token) as hub:
        await hub.create_topic(topic, SCHEMA)
        sub = StreamClient(e2e.stream_url, e2e.token).events(f"{topic}.#")
        received: list[str] = []

        async def collect() -> None:
            async for frame in sub:
                if frame["type"] == "event":
                    received.append(frame["event"]["id"])
                    if len(received) >= total:
                        return

        consumer = asyncio.create_task(collect())
        await asyncio.sleep(1.0)
        published: list[str] = []
        for i in range(10):
            published.append((await hub.publish(topic, {"value": i}, subject="a"))["id"])
        await eventually(lambda: len(received) >= 10, 20, interval=0.2, what="the first ten events")

        # The stream process restarts; events published while it is down come back from history.
        e2e.stream.terminate()
        for i in range(10, 20):
            published.append((await hub.publish(topic, {"value": i}, subject="a"))["id"])
        e2e.stream.start(wait=False)
        e2e.stream.wait_healthy(60, path="/readyz")
        for i in range(20, total):
            published.append((await hub.publish(topic, {"value": i}, subject="a"))["id"])
            await asyncio.sleep(0.05)

        done, _ = await asyncio.wait({consumer}, timeout=60)
        if not done:
            consumer.cancel()
        missing = [i for i, eid in enumerate(published) if eid not in received]
        assert received == published, (
            f"got {len(received)}, missing indexes {missing}, reconnects {sub.reconnects}"
        )  # every event once, in order
        assert sub.reconnects >= 1


async def test_sse_through_the_client_resumes_with_last_event_id(e2e: Platform) -> None:
    topic = f"e2e-{uuid.uuid4().hex[:8]}"
    async with HubClient(e2e.hub_url, e2e.token) as hub:
        await hub.create_topic(topic, SCHEMA)
        ids = [(await hub.publish(topic, {"value": i}, subject="s"))["id"] for i in range(4)]

        async def recorded() -> bool:
            return len([ev async for ev in hub.history(topic)]) == 4

        await eventually(recorded, 20, interval=0.2, what="four events in history")

    async def read(n: int, **resume: str) -> list[tuple[str, str, Any]]:
        got: list[tuple[str, str, Any]] = []
        stream = sse_events(e2e.stream_http_url, f"/events/{topic}.%23", token=e2e.token, **resume)
        async for message in stream:
            if message[0] == "event":
                got.append(message)
                if len(got) == n:
                    break
        await stream.aclose()  # type: ignore[attr-defined]
        return got

    # From the start of history; then resumed after the second event, as a browser does after a drop.
    first = await asyncio.wait_for(read(2, since="2000-01-01T00:00:00Z"), 30)
    assert [m[2]["id"] for m in first] == ids[:2]
    rest = await asyncio.wait_for(read(2, last_event_id=first[-1][1]), 30)
    assert [m[2]["id"] for m in rest] == ids[2:]
