"""`python -m tributary_stream serve` as a real process: health, readiness, metrics, and a graceful SIGTERM
that drains queued frames and closes every socket with 1012 (reconnect)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson
import websockets

from tests.stream.support import SECRET, recv, send, subscribe, token
from tests.support import platform
from tests.support.bus import Bus, envelope
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess


def _serve(amqp_url: str, tmp_path: Path, env: dict[str, str]) -> tuple[ServiceProcess, int]:
    """The stream as a process on a free port, started (ready)."""
    port = platform.free_port()
    proc = ServiceProcess(
        "tributary_stream",
        ["serve"],
        {"TRIBUTARY_AMQP_URL": amqp_url, "TRIBUTARY_HTTP_PORT": str(port), "TRIBUTARY_JWT_SECRET": SECRET, **env},
        tmp_path / "stream.log",
        port,
    )
    proc.start(timeout=60)
    return proc, port


async def test_serve_health_metrics_and_graceful_sigterm(amqp_url, tmp_path: Path):
    proc, port = _serve(amqp_url, tmp_path, {"TRIBUTARY_SHUTDOWN_GRACE_SECONDS": "10"})
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {"broker": "ok"}
            url = f"ws://127.0.0.1:{port}/ws"
            ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token()}"})
            await subscribe(ws, "s", events={"pattern": "p.#"})
            async with Bus(amqp_url, collect=False) as pub:
                sent = await pub.event("p", "x")
            assert (await recv(ws))["event"]["id"] == sent["id"]
            metrics = (await http.get("/metrics")).text
            for line in (
                'tributary_stream_connections{transport="ws"} 1.0',
                'tributary_stream_subscriptions{kind="events"} 1.0',
                "tributary_stream_bindings 1.0",
                'tributary_stream_messages_in_total{exchange="tributary.events"} 1.0',
                "tributary_stream_send_queue_depth 0.0",
                "tributary_stream_broker_connected 1.0",
            ):
                assert line in metrics, line
            assert 'tributary_stream_messages_out_total{transport="ws"}' in metrics

        await send(ws, {"op": "ping", "id": "last"})
        assert await recv(ws) == {"type": "pong", "id": "last"}
        code = await asyncio.to_thread(proc.terminate, 30)
        await asyncio.wait_for(ws.wait_closed(), 30)
        assert ws.close_code == 1012
        assert code == 0, proc.tail()
    finally:
        proc.kill()


async def test_fanout_span_continues_the_publishers_trace(amqp_url, tmp_path: Path):
    from tests.support.otlp import OtlpReceiver

    receiver = OtlpReceiver().start()
    proc, port = _serve(amqp_url, tmp_path, receiver.env("tributary-stream"))
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {token()}"}
        )
        await subscribe(ws, "s", events={"pattern": "tr.#"})
        trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        async with Bus(amqp_url, collect=False) as pub:
            env = envelope("tr", "x")
            await pub.raw("tributary.events", "tr.x", orjson.dumps(env), {"traceparent": f"00-{trace_id}-{parent}-01"})
        assert (await recv(ws))["event"]["id"] == env["id"]
        spans = await eventually(lambda: receiver.trace(trace_id), 20, "the fan-out span", 0.1)
        assert [(s.service, s.name, s.parent_span_id) for s in spans] == [("tributary-stream", "stream.fanout", parent)]
        await ws.close()
    finally:
        await asyncio.to_thread(proc.terminate, 30)
        proc.kill()
        receiver.stop()
