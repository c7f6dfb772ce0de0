"""The websocket endpoint `/ws`: authenticate, then read client frames while a writer drains the send queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import cast

from fastapi import Request, WebSocket

from tributary_common.auth import AuthError
from tributary_common.http_auth import bearer_token

from . import protocol
from .clients import Client, WsEncoder
from .service import StreamService

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


async def websocket_endpoint(websocket: WebSocket) -> None:
    service: StreamService = websocket.app.state.service
    settings = service.settings
    if service.draining:
        await _refuse(websocket, service, "shutting_down", "the server is restarting; reconnect", 1012)
        return
    if len(service.fanout.clients) >= settings.max_connections:
        await _refuse(
            websocket,
            service,
            "too_many_connections",
            f"at most {settings.max_connections} connections",
            TRY_AGAIN_LATER,
        )
        return
    # A websocket has the same headers and query as a request; bearer_token only reads those.
    token = bearer_token(cast(Request, websocket), allow_query=True)
    try:
        principal = await service.auth.authenticate(token)
    except AuthError as exc:
        await _refuse(websocket, service, "unauthorized", str(exc), POLICY_VIOLATION)
        return
    await websocket.accept()
    client = Client(
        principal,
        WsEncoder(),
        service.metrics,
        max_queue=settings.send_queue_max,
        slow_timeout_s=settings.slow_client_timeout_s,
    )
    service.fanout.add_client(client)
    expiry = _expire_at_token_end(client)
    writer = asyncio.create_task(_write(websocket, client))
    reader = asyncio.create_task(_read(websocket, client, service))
    client.on_abort = writer.cancel
    try:
        await asyncio.wait([writer, reader], return_when=asyncio.FIRST_COMPLETED)
        if writer.cancelled():
            # Too slow: its writer was stopped mid-send; try to say goodbye, but do not wait for long.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(client.kill_code or 1000), 2)
    finally:
        if expiry is not None:
            expiry.cancel()
        service.fanout.remove_client(client)
        client.kill(client.kill_code or 1000)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(writer, 5)


def _expire_at_token_end(client: Client) -> asyncio.TimerHandle | None:
    """A JWT is only good until its `exp`: then the client is told and the socket closed (1008)."""
    exp = client.principal.claims.get("exp")
    if not isinstance(exp, int | float):
        return None

    def expire() -> None:
        client.error("token_expired", "the token expired; reconnect with a fresh one")
        client.finish(POLICY_VIOLATION)

    loop = asyncio.get_running_loop()
    return loop.call_at(loop.time() + max(0.0, exp - time.time()), expire)


async def _refuse(websocket: WebSocket, service: StreamService, code: str, message: str, close_code: int) -> None:
    service.metrics.refused.labels(code).inc()
    await websocket.accept()
    with contextlib.suppress(Exception):
        await websocket.send_text(protocol.error_frame(code, message))
        await websocket.close(close_code, reason=code)


async def _read(websocket: WebSocket, client: Client, service: StreamService) -> None:
    max_bytes = service.settings.max_frame_bytes
    fanout = service.fanout
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            client.error("binary_frame", "frames must be JSON text frames, not binary")
            continue
        try:
            frame = protocol.parse_frame(text, max_bytes)
        except protocol.FrameError as exc:
            client.error(exc.code, exc.message, exc.frame_id)
            continue
        if isinstance(frame, protocol.Ping):
            client.send_message("pong", {"id": frame.id})
        elif isinstance(frame, protocol.SubscribeEvents):
            fanout.subscribe_events(client, frame)
        elif isinstance(frame, protocol.SubscribeUnitop):
            fanout.subscribe_unitop(client, frame)
        else:
            fanout.unsubscribe(client, frame.id)


async def _write(websocket: WebSocket, client: Client) -> None:
    try:
        while True:
            frame = await client.next_frame()
            if frame is None:
                break
            await websocket.send_text(frame)
    except Exception as exc:  # noqa: BLE001 - the peer went away mid-send
        log.debug("websocket send failed: %s", exc)
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(client.kill_code or 1000), 5)
