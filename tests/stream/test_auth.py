"""Authentication and ACLs, the same rules as the hub: scopes, topic patterns, unitop globs."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.typing import Subprotocol

from tests.stream.support import (
    SECRET,
    RunningStream,
    connect,
    recv,
    send,
    settings_for,
    start_stream,
    subscribe,
    token,
)
from tests.support.jwks import serving


async def _refused(stream, **connect_kw) -> tuple[dict[str, Any], int | None]:
    ws = await websockets.connect(stream.ws_url(connect_kw.pop("query_token", None)), open_timeout=10, **connect_kw)
    frame = await recv(ws)
    await ws.wait_closed()
    return frame, ws.close_code


async def test_no_token_is_refused_with_an_error_and_close(stream):
    frame, code = await _refused(stream)
    assert frame["type"] == "error" and frame["code"] == "unauthorized" and "missing bearer token" in frame["message"]
    assert code == 1008


@pytest.mark.parametrize(
    "bad",
    [
        jwt.encode(
            {"sub": "x", "scope": "events:read", "exp": int(time.time()) + 60},
            "wrong-secret-0123456789abcdef-0123456789",
        ),
        jwt.encode({"sub": "x", "scope": "events:read", "exp": int(time.time()) - 3600}, SECRET),
        "not.a.jwt",
    ],
    ids=["wrong-signature", "expired", "garbage"],
)
async def test_bad_tokens_are_refused(stream, bad):
    frame, code = await _refused(stream, additional_headers={"Authorization": f"Bearer {bad}"})
    assert frame["code"] == "unauthorized" and code == 1008


async def test_access_token_query_parameter_for_browsers(stream):
    async with websockets.connect(stream.ws_url(token()), open_timeout=10) as ws:
        await send(ws, {"op": "ping", "id": "q"})
        assert await recv(ws) == {"type": "pong", "id": "q"}


async def test_browser_credential_as_a_subprotocol_never_in_the_url(stream):
    """What the console does: `new WebSocket(url, ["tributary", "bearer." + token])`; the server selects
    `tributary` and never echoes the credential."""
    async with websockets.connect(
        stream.ws_url(),
        subprotocols=[Subprotocol("tributary"), Subprotocol(f"bearer.{token()}")],
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "tributary"
        await send(ws, {"op": "ping", "id": "p"})
        assert await recv(ws) == {"type": "pong", "id": "p"}


async def test_a_bad_subprotocol_credential_is_refused_in_a_handshake_browsers_accept(stream):
    ws = await websockets.connect(
        stream.ws_url(),
        subprotocols=[Subprotocol("tributary"), Subprotocol("bearer.not.a.jwt")],
        open_timeout=10,
    )
    assert ws.subprotocol == "tributary"  # else a browser fails the handshake and never sees why
    frame = await recv(ws)
    await ws.wait_closed()
    assert frame["code"] == "unauthorized" and ws.close_code == 1008


async def test_scopes_and_patterns_are_enforced_per_subscription(stream, publisher):
    tok = token(["events:read"], topics=["orders.eu.#"])
    async with await connect(stream, tok) as ws:
        frame = await subscribe(ws, "wide", events={"pattern": "orders.#"})
        assert frame["type"] == "error" and frame["code"] == "forbidden" and "orders.#" in frame["message"]
        frame = await subscribe(ws, "u", unitop={"name": "pump-1"})
        assert frame["code"] == "forbidden" and "unitops:read" in frame["message"]
        # Refusals leave the connection up; an allowed pattern works.
        assert (await subscribe(ws, "ok", events={"pattern": "orders.eu.*"}))["type"] == "subscribed"
        await publisher.event("orders", "us.x")
        allowed = await publisher.event("orders", "eu.x")
        frame = await recv(ws)
        assert frame["sub"] == "ok" and frame["event"]["id"] == allowed["id"]


async def test_events_read_scope_is_required(stream):
    async with await connect(stream, token(["unitops:read"])) as ws:
        frame = await subscribe(ws, "e", events={"pattern": "#"})
        assert frame["code"] == "forbidden" and "events:read" in frame["message"]


async def test_unitop_acl_glob(stream):
    async with await connect(stream, token(["unitops:read"], unitops=["pump-*"])) as ws:
        frame = await subscribe(ws, "u", unitop={"name": "valve-1"})
        assert frame["type"] == "error" and frame["code"] == "forbidden" and "valve-1" in frame["message"]


async def test_sse_auth(stream):
    async with httpx.AsyncClient(base_url=stream.base, timeout=10) as http:
        r = await http.get("/events/orders.%23")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await http.get("/events/orders.%23", headers={"Authorization": f"Bearer {token(['unitops:read'])}"})
        assert r.status_code == 403 and "events:read" in r.json()["error"]["message"]
        narrow = token(["events:read"], topics=["orders.eu.#"])
        r = await http.get("/events/%23", params={"access_token": narrow})
        assert r.status_code == 403 and "'#'" in r.json()["error"]["message"]
        r = await http.get("/unitops/valve-1/stream", params={"access_token": token(unitops=["pump-*"])})
        assert r.status_code == 403


async def test_connection_closes_when_the_token_expires(stream):
    async with await connect(stream, token(ttl_s=2)) as ws:
        await send(ws, {"op": "ping", "id": "1"})
        assert (await recv(ws))["type"] == "pong"
        frame = await recv(ws, 60)  # within the JWT leeway of the verifier, the server acts on `exp` itself
        assert frame["type"] == "error" and frame["code"] == "token_expired"
        await ws.wait_closed()
        assert ws.close_code == 1008


# ---- credentials that cannot be checked now: "try again", not "unauthorized" ------------------------------------


@pytest.fixture
async def jwks_away_stream(amqp_url: str) -> AsyncIterator[RunningStream]:
    """A stream whose identity provider does not answer (a port bound, never listening: connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/jwks"
        running = await start_stream(settings_for(amqp_url, jwks_url=url, jwt_algorithms=["RS256"], rpc_timeout_s=1.0))
        try:
            yield running
        finally:
            await running.stop()


async def test_unreachable_identity_provider_or_hub_is_try_again_later(jwks_away_stream: RunningStream) -> None:
    """An RS256 token whose keys cannot be fetched, an API key while no hub answers: websockets close with 1013 (try
    again later) and `auth_unavailable`, SSE answers 503; before, 1008 `unauthorized` / 401 told the client its
    credentials were bad."""
    with serving("k1") as idp:
        for credential in (idp.token("k1"), "tk_some-api-key"):
            frame, code = await _refused(jwks_away_stream, additional_headers={"Authorization": f"Bearer {credential}"})
            assert (frame["code"], code) == ("auth_unavailable", 1013), (frame, code)
            async with httpx.AsyncClient(base_url=jwks_away_stream.base, timeout=30) as http:
                r = await http.get("/events/a.%23", headers={"Authorization": f"Bearer {credential}"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "auth_unavailable", r.text
            assert r.headers.get("Retry-After")
