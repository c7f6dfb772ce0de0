"""Helpers for the stream tests: an in-process server on a free port, websocket clients, SSE records (publishing:
`tests.support.bus.Bus`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import websockets
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection

from tests.support import platform
from tests.support.tokens import Minter
from tributary_common.edge_sampling import EdgeDecision
from tributary_common.http_server import Server
from tributary_stream.__main__ import build_server
from tributary_stream.service import StreamService
from tributary_stream.settings import StreamSettings

SECRET = "stream-test-secret-0123456789abcdef"
READ_SCOPES = ["events:read", "unitops:read"]


def settings_for(amqp_url: str, **overrides: Any) -> StreamSettings:
    values: dict[str, Any] = {
        "amqp_url": amqp_url,
        "http_port": platform.free_port(),
        "jwt_secret": SECRET,
        "log_json": False,
        "demand_interval_s": 0.5,
        "rpc_timeout_s": 5.0,
        "shutdown_grace_seconds": 5.0,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 1.0,
        "replay_unknown_id_wait_s": 1.0,
    }
    values.update(overrides)
    return StreamSettings(**values)


token = Minter(SECRET, scopes=READ_SCOPES)


@dataclass
class RunningStream:
    server: Server
    task: asyncio.Task[None]
    settings: StreamSettings

    @property
    def service(self) -> StreamService:
        app = cast(EdgeDecision, self.server.config.app).app  # what server_config hands uvicorn wraps the app
        service: StreamService = cast(FastAPI, app).state.service
        return service

    @property
    def port(self) -> int:
        return self.settings.http_port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, tok: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws"
        return url if tok is None else f"{url}?access_token={tok}"

    async def stop(self) -> None:
        if not self.task.done():
            self.server.handle_exit(15, None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 30)


async def start_stream(settings: StreamSettings) -> RunningStream:
    server = build_server(settings)
    server.config.install_signal_handlers = False  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("stream server exited during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("stream server did not start within 30 s")
        await asyncio.sleep(0.05)
    return RunningStream(server, task, settings)


async def connect(stream: RunningStream, tok: str | None = None, **kw: Any) -> ClientConnection:
    headers = {"Authorization": f"Bearer {tok or token()}"}
    return await websockets.connect(stream.ws_url(), additional_headers=headers, open_timeout=10, **kw)


async def recv(ws: ClientConnection, timeout: float = 20.0) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    frame = orjson.loads(raw)
    assert isinstance(frame, dict)
    return frame


async def recv_until(
    ws: ClientConnection, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Frames until one satisfies `predicate`: (that frame, the ones before it)."""
    before: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching frame within {timeout} s; got {before[-5:]}")
        frame = await recv(ws, left)
        if predicate(frame):
            return frame, before
        before.append(frame)


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def subscribe(ws: ClientConnection, sub_id: str, **spec: Any) -> dict[str, Any]:
    await send(ws, {"op": "subscribe", "id": sub_id, **spec})
    frame, _ = await recv_until(ws, lambda f: f.get("id") == sub_id and f["type"] in ("subscribed", "error"))
    return frame


async def collect_events(ws: ClientConnection, sub_id: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(out)} of {count} events for {sub_id} within {timeout} s")
        frame = await recv(ws, left)
        if frame.get("type") == "event" and frame.get("sub") == sub_id:
            out.append(frame["event"])
        elif frame.get("type") in ("gap", "error"):
            raise AssertionError(f"unexpected {frame}")
    return out


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Frames that arrive within `seconds` (to check that nothing more comes)."""
    out = []
    with contextlib.suppress(TimeoutError):
        while True:
            out.append(await recv(ws, seconds))
    return out


class SseReader:
    """Reads SSE records (`{"id", "event", "data", "comment"}`) from an httpx streaming response."""

    def __init__(self, response: Any) -> None:
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 20.0) -> dict[str, Any]:
        record: dict[str, Any] = {}
        while True:
            line = await asyncio.wait_for(anext(self.lines), timeout)
            if line == "":
                if record:
                    return record
                continue
            if line.startswith(":"):
                return {"comment": line[1:].strip()}
            name, _, value = line.partition(":")
            record[name] = value[1:] if value.startswith(" ") else value

    async def next_event(self, timeout: float = 20.0) -> dict[str, Any]:
        """The next record that is not a comment or a `retry` hint."""
        while True:
            record = await self.next(timeout)
            if "event" in record:
                return record
