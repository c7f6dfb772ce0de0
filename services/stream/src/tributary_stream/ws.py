"""The websocket endpoint `/ws`: admit and authenticate, then read client frames while a writer drains the queue.

Close codes: 1008 (policy violation) for bad credentials, an expired token or revoked key, a client that floods
frames or does not read the replies to its own frames; 1013 (try again later) for the connection limits, a slow
reader of data, and credentials that cannot be checked now (the identity provider's keys or the hub out of
reach: `auth_unavailable`); 1012 while the server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from fastapi import FastAPI, Request, WebSocket
from starlette.types import ASGIApp, Receive, Scope, Send

from tributary_common.auth import AuthError, AuthUnavailable
from tributary_common.close_codes import NORMAL, POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER
from tributary_common.http_auth import bearer_token

from . import frames, protocol
from .admission import ShuttingDown, admit, open_client
from .clients import Client
from .frames import WsEncoder
from .limits import FrameRate, Refused, Verdict
from .service import StreamService
from .transports import send_now_handle

log = logging.getLogger(__name__)

# How long a closing connection (rate limit) may take to send its last frames and the close frame.
CLOSING_GRACE_S = 5.0
# One encoder for every websocket: an event's frame is built once for all subscriptions with the same id.
ENCODER = WsEncoder()
# Browsers cannot set headers on a websocket. Rather than in the URL (which proxies log), a browser hands its
# credential over as a subprotocol: `new WebSocket(url, ["tributary", "bearer." + token])`; the server selects
# `tributary` (never echoing the token).
SUBPROTOCOL = "tributary"
BEARER_PROTOCOL = "bearer."


def offered_protocols(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The subprotocol to select (`tributary` when offered) and the credential offered as `bearer.<token>`."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")]
    token = next((p.removeprefix(BEARER_PROTOCOL) for p in offered if p.startswith(BEARER_PROTOCOL)), None)
    return (SUBPROTOCOL if SUBPROTOCOL in offered else None), (token or None)


async def websocket_endpoint(websocket: WebSocket) -> None:
    service: StreamService = websocket.app.state.service
    subprotocol, offered_token = offered_protocols(websocket)
    # A websocket has the same headers and query as a request; bearer_token only reads those.
    token = bearer_token(cast(Request, websocket)) or offered_token or bearer_token(cast(Request, websocket), True)
    try:
        principal, api_key, ticket = await admit(service, token)
    except (ShuttingDown, Refused, AuthError) as exc:
        code, message, close_code, counted = _refusal(exc)
        if not counted:
            service.metrics.refused.labels(code).inc()
        await _refuse(websocket, code, message, close_code, subprotocol)
        return
    try:
        await websocket.accept(subprotocol)
        client = open_client(service, principal, api_key, ENCODER)
        client.sink = send_now_handle(websocket.scope)
        try:
            await _serve(websocket, client, service)
        finally:
            service.close_client(client)
    finally:
        ticket.release()


def direct_endpoint(app: FastAPI) -> ASGIApp:
    """`/ws` as an ASGI app of its own, for a server that routes it past `app`'s middleware and router (none of
    them acts on a websocket; each would keep a coroutine frame per idle connection)."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # what Starlette sets: the endpoint finds the service in app.state
        await websocket_endpoint(WebSocket(scope, receive, send))

    return endpoint


def _refusal(exc: Exception) -> tuple[str, str, int, bool]:
    """A connection refused: its error code, message and close code, and whether admission counted it already."""
    if isinstance(exc, ShuttingDown):
        return exc.code, exc.message, SERVICE_RESTART, False
    if isinstance(exc, Refused):
        return exc.code, exc.message, exc.close_code, True
    if isinstance(exc, AuthUnavailable):
        # Not the credentials' fault: they may be fine; the client should retry later, not give up.
        return "auth_unavailable", str(exc), TRY_AGAIN_LATER, False
    return "unauthorized", str(exc), POLICY_VIOLATION, False


async def _serve(websocket: WebSocket, client: Client, service: StreamService) -> None:
    writer = asyncio.create_task(_write(websocket, client))
    reader = asyncio.create_task(_read(websocket, client, service))
    client.on_abort = writer.cancel
    try:
        await asyncio.wait([writer, reader], return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and client.closed and not writer.done():
            # The server is closing this client: its writer sends the last frames and the close frame.
            await asyncio.wait([writer], timeout=CLOSING_GRACE_S)
        if client.kill_code is not None and (writer.cancelled() or not writer.done()):
            # Too slow, over budget, or stuck: its writer is stopped mid-send; the close frame goes anyway
            # (StreamWebSocketProtocol writes it behind the bounded transport buffer).
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(Exception):
                await asyncio.wait_for(websocket.close(client.kill_code), 2)
    finally:
        client.kill(client.kill_code or NORMAL)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(writer, 5)


async def _refuse(websocket: WebSocket, code: str, message: str, close_code: int, subprotocol: str | None) -> None:
    await websocket.accept(subprotocol)  # the browser then reads the error frame and the close code
    with contextlib.suppress(Exception):
        await websocket.send_text(frames.error_frame(code, message))
        await websocket.close(close_code, reason=code)


async def _read(websocket: WebSocket, client: Client, service: StreamService) -> None:
    settings = service.settings
    max_bytes = settings.max_frame_bytes
    fanout = service.fanout
    rate = FrameRate(settings.ws_frames_per_s, settings.ws_frames_burst)
    while not client.closed:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        verdict = rate.take()
        if verdict is not Verdict.OK:
            if verdict is not Verdict.DROP:
                limit = f"at most {settings.ws_frames_per_s:g} frames per second (bursts of {settings.ws_frames_burst})"
                if verdict is Verdict.CLOSE:
                    client.error("rate_limited", f"{limit}: closing, the client kept sending while throttled")
                    client.close_soon(POLICY_VIOLATION)
                    return
                client.error("rate_limited", f"{limit}: frames over the rate are dropped")
            continue
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
        await asyncio.wait_for(websocket.close(client.kill_code or NORMAL), 5)
