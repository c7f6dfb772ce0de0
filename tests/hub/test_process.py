"""The hub as real processes: `serve` with the recorders disabled plus a separate `recorder` process, started
exactly as other services start it (environment variables only), stopped with SIGTERM."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hub.conftest import MINT, SECRET
from tests.support import platform
from tests.support.otlp import OtlpReceiver
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tributary_common import rpc_contracts as rc
from tributary_common.amqp import RpcClient, connect


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def processes(
    amqp_url: str,
    mongo_url: str,
    mongo_db_name: str,
    cache_namespace: str,
    tmp_path: Path,
    mongo_client: object,
    otlp: OtlpReceiver,
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    port = platform.free_port()
    env = {
        "TRIBUTARY_AMQP_URL": amqp_url,
        "TRIBUTARY_MONGODB_URL": mongo_url,
        "TRIBUTARY_MONGODB_DB": mongo_db_name,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": cache_namespace,
        "TRIBUTARY_JWT_SECRET": SECRET,
    }
    api = ServiceProcess(
        "tributary_hub",
        ["serve"],
        {**env, **otlp.env("tributary-hub"), "TRIBUTARY_RECORDERS_ENABLED": "false"},
        tmp_path / "serve.log",
        port,
    )
    recorder_port = platform.free_port()
    recorder = ServiceProcess(
        "tributary_hub",
        ["recorder"],
        {**env, **otlp.env("tributary-hub-recorder"), "TRIBUTARY_HTTP_PORT": str(recorder_port)},
        tmp_path / "recorder.log",
        recorder_port,
    )
    try:
        api.start(timeout=60)
        api.wait_healthy(60, path="/readyz")
        recorder.start(timeout=60)
        recorder.wait_healthy(60, path="/readyz")  # the recorder serves its own probes and metrics
        yield api, recorder
    finally:
        recorder.terminate()
        api.terminate()


async def test_serve_and_recorder_processes(
    processes: tuple[ServiceProcess, ServiceProcess], amqp_url: str, otlp: OtlpReceiver
) -> None:
    api, recorder = processes
    base = f"http://127.0.0.1:{api.port}"
    async with httpx.AsyncClient(base_url=base, headers=MINT.bearer(["admin"]), timeout=30) as http:
        r = await http.post("/topics", json={"name": "proc", "schema": {"type": "object", "required": ["v"]}})
        assert r.status_code == 201, r.text
        r = await http.post(
            "/topics/proc/events:batch", json=[{"data": {"v": i}, "subject": f"s{i % 2}"} for i in range(20)]
        )
        assert r.status_code == 202, r.text
        ids = r.json()["ids"]

        async def history() -> list[str]:
            page = (await http.get("/topics/proc/events", params={"limit": 100})).json()
            return [e["id"] for e in page["items"]]

        async def all_recorded() -> bool:
            return sorted(await history()) == sorted(ids)

        await eventually(all_recorded, timeout=60, what="the recorder process writing every event", interval=0.05)

        connection = await connect(amqp_url, name="test-rpc-caller")
        try:
            caller = RpcClient()
            await caller.start(connection)
            page = rc.EventsHistoryPage.model_validate(
                await caller.call(rc.HUB_QUEUE, rc.EVENTS_HISTORY, {"pattern": "proc.s1"}, timeout=20)
            )
        finally:
            await connection.close()
        assert len(page.items) == 10
        assert {e.subject for e in page.items} == {"s1"}

    # One trace from the HTTP request through the broker to the recorder process.
    async with httpx.AsyncClient(base_url=base, headers=MINT.bearer(["admin"]), timeout=30) as http:
        r = await http.post("/topics/proc/events", json={"data": {"v": 1}, "subject": "traced"})
        assert r.status_code == 202
        event_id = r.json()["id"]

        async def traced_event() -> list[dict[str, object]]:
            items: list[dict[str, object]] = (
                await http.get("/topics/proc/events", params={"subject": "traced"})
            ).json()["items"]
            return items

        (event,) = await eventually(traced_event, what="the traced event recorded", interval=0.05)
        assert event["id"] == event_id
    assert "traceparent" in event, event
    traceparent = str(event["traceparent"])
    trace_id = traceparent.split("-")[1]

    async def spans_of_both() -> bool:
        services = {s.service: s.name for s in otlp.trace(trace_id)}
        return {"tributary-hub", "tributary-hub-recorder"} <= set(services)

    await eventually(spans_of_both, what="spans of the hub and the recorder in one trace", interval=0.05)
    names = {(s.service, s.name) for s in otlp.trace(trace_id)}
    assert ("tributary-hub", "publish event") in names
    assert ("tributary-hub-recorder", "record events") in names

    # Graceful SIGTERM: both drain and close (uvicorn re-raises the signal once it has shut down cleanly).
    assert recorder.terminate(timeout=30) == 0, recorder.tail()
    assert "hub stopped" in recorder.tail(200)
    assert api.terminate(timeout=30) in (0, -signal.SIGTERM), api.tail()
    assert "hub stopped" in api.tail(200)
