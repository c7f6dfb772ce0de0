"""Hub API security (issue 10): authorization before disclosure, CSV exports a spreadsheet cannot run,
`/readyz` without exception text, JWKS keys fetched off the event loop, and the wildcard cap on every pattern
that enters - against real hub, ingest and stream processes on RabbitMQ, FerretDB and Memcached."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import pytest
import websockets

from tests.support import platform
from tests.support.jwks import Jwks, jwks_env, serving
from tests.support.stack import Stack, run_stack
from tributary_common.auth import SCOPES, AuthUnavailable, JwtVerifier
from tributary_common.health_server import HealthServer
from tributary_common.matcher import MAX_WILDCARDS, matches
from tributary_common.timeutil import format_time, utcnow

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["temp"],
    "properties": {"temp": {"type": "number"}},
    "additionalProperties": False,
}
SIM_PARAMS = {"signal": "sine", "rate_hz": 1, "seed": 7}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(Path(tmp_path_factory.mktemp("hub-api-logs"))) as s:
        yield s


def _hub(stack: Stack, token: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {token or stack.token}"}, timeout=30)


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# --- Authorization before disclosure ------------------------------------------------------------------------


def _probe(client: httpx.Client, topic: str) -> dict[str, tuple[int, Any]]:
    """Every topic-scoped route on `topic`, with bodies that are invalid for the topic's schema."""
    bad_event = {"data": {"temp": "hot"}}
    calls = {
        "get topic": client.get(f"/topics/{topic}"),
        "schema versions": client.get(f"/topics/{topic}/schemas"),
        "schema version": client.get(f"/topics/{topic}/schemas/1"),
        "publish one (invalid)": client.post(f"/topics/{topic}/events", json=bad_event),
        "publish one (valid)": client.post(f"/topics/{topic}/events", json={"data": {"temp": 1}}),
        "publish batch (invalid)": client.post(f"/topics/{topic}/events:batch", json=[bad_event]),
        "publish batch (malformed)": client.post(
            f"/topics/{topic}/events:batch", content=b"[{", headers={"Content-Type": "application/json"}
        ),
        "history": client.get(f"/topics/{topic}/events"),
        "history (bad subject)": client.get(f"/topics/{topic}/events", params={"subject": "a..b"}),
        "latest": client.get(f"/topics/{topic}/events:latest"),
        "export": client.get(f"/topics/{topic}/events", headers={"Accept": "text/csv"}),
        "patch": client.patch(f"/topics/{topic}", json={"compatibility": "none"}),
        "put schema": client.put(f"/topics/{topic}/schema", json={"schema": {"type": "string"}}),
        "delete": client.delete(f"/topics/{topic}"),
    }
    return {name: (r.status_code, r.json() if r.content else None) for name, r in calls.items()}


def _anonymised(body: Any, name: str) -> str:
    return json.dumps(body).replace(name, "<topic>")


def test_a_caller_outside_the_topics_acl_learns_nothing_about_a_topic(stack: Stack) -> None:
    secret = f"secret-{uuid.uuid4().hex[:6]}"
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    with _hub(stack) as admin:
        body = {"name": secret, "schema": SCHEMA, "compatibility": "backward"}
        assert admin.post("/topics", json=body).status_code == 201
    outsider = stack.mint(subject="outsider", scopes=list(SCOPES[:-1]), topics=["orders.#"])
    with _hub(stack, outsider) as client:
        existing, absent = _probe(client, secret), _probe(client, missing)
        invalid_name = _probe(client, "Not_A_Topic")
    for route in existing:
        assert existing[route][0] == 403, (route, existing[route])
        assert absent[route][0] == 403, (route, absent[route])
        assert invalid_name[route][0] == 403, (route, invalid_name[route])
        assert _anonymised(existing[route][1], secret) == _anonymised(absent[route][1], missing), route
    with _hub(stack) as admin:  # nothing happened to the topic
        topic = admin.get(f"/topics/{secret}").json()
        assert topic["compatibility"] == "backward" and topic["version"] == 1, topic
        assert admin.get(f"/topics/{secret}/events").json()["items"] == []


def test_a_caller_inside_the_acl_still_gets_404_and_422(stack: Stack) -> None:
    """The order changed, not the answers: an allowed caller still learns what is wrong."""
    topic = f"orders-{uuid.uuid4().hex[:6]}"
    with _hub(stack) as admin:
        assert admin.post("/topics", json={"name": topic, "schema": SCHEMA}).status_code == 201
    insider = stack.mint(subject="insider", scopes=list(SCOPES[:-1]), topics=[f"{topic}.#", "nosuch.#"])
    with _hub(stack, insider) as client:
        r = client.post(f"/topics/{topic}/events", json={"data": {"temp": "hot"}})
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/data/temp"
        assert client.get("/topics/nosuch").status_code == 404
        assert client.post("/topics/nosuch/events", json={"data": {}}).status_code == 404


def test_a_caller_outside_the_unitops_acl_learns_nothing_about_a_unitop(stack: Stack) -> None:
    with _hub(stack) as admin:
        _wait(lambda: any(s["name"] == "simulator" for s in admin.get("/sources").json()["items"]), 30, "sources")
        name = f"valve-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "items": {"flow": {"source": "simulator", "params": SIM_PARAMS}}}
        assert admin.post("/unitops", json=body).status_code == 201
    outsider = stack.mint(subject="outsider", scopes=list(SCOPES[:-1]), unitops=["pump-*"])
    missing = f"valve-{uuid.uuid4().hex[:6]}"
    with _hub(stack, outsider) as client:
        for target in (name, missing):
            replaced = {**body, "name": target, "items": {"flow": {"source": "nosuch", "params": {}}}}
            answers = {
                "get": client.get(f"/unitops/{target}"),
                "put": client.put(f"/unitops/{target}", json=replaced),
                "samples": client.get(f"/unitops/{target}/samples", params={"items": "nosuch"}),
                "samples csv": client.get(f"/unitops/{target}/samples", headers={"Accept": "text/csv"}),
                "create": client.post("/unitops", json=replaced),
                "delete": client.delete(f"/unitops/{target}"),
            }
            for route, r in answers.items():
                assert r.status_code == 403, (target, route, r.status_code, r.text)
                assert r.json()["error"]["code"] == "forbidden"


# --- CSV exports a spreadsheet does not run -----------------------------------------------------------------

DANGEROUS = ["=1+2", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://evil.example")']


def test_event_csv_export_neutralises_formulas(stack: Stack) -> None:
    topic = f"sheet-{uuid.uuid4().hex[:6]}"
    with _hub(stack) as admin:
        assert admin.post("/topics", json={"name": topic, "schema": {}}).status_code == 201
        events: list[dict[str, Any]] = [
            {"id": f"{cell}{i}", "source": cell, "data": {"v": cell}} for i, cell in enumerate(DANGEROUS)
        ]
        events += [{"id": "n1", "source": "/plain", "data": -3.5, "subject": "-neg"}]
        assert admin.post(f"/topics/{topic}/events:batch", json=events).status_code == 202
        _wait(lambda: len(admin.get(f"/topics/{topic}/events").json()["items"]) == len(events), 30, "recording")
        r = admin.get(f"/topics/{topic}/events", headers={"Accept": "text/csv"})
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert len(rows) == len(events)
    for row in rows:
        for column, cell in row.items():
            assert not cell or cell[0] not in "=+-@\t\r" or cell == "-3.5", (column, cell)
    by_id = {row["id"]: row for row in rows}
    for i, cell in enumerate(DANGEROUS):
        row = by_id[f"'{cell}{i}"]
        assert row["source"] == "'" + cell
        assert json.loads(row["data"]) == {"v": cell}  # JSON text starts with '{': untouched
    assert by_id["n1"]["data"] == "-3.5"  # a number stays a number
    assert by_id["n1"]["subject"] == "'-neg"  # a string that starts with '-' does not


def test_samples_csv_export_neutralises_formulas(stack: Stack) -> None:
    with _hub(stack) as admin:
        _wait(lambda: any(s["name"] == "simulator" for s in admin.get("/sources").json()["items"]), 30, "sources")
        name = f"sheet-{uuid.uuid4().hex[:6]}"
        # A unitop that is never read (record false, nobody watches): its samples come only from this test.
        params = {**SIM_PARAMS, "seed": int(uuid.uuid4().int % 10_000)}
        body = {"name": name, "items": {"tag": {"source": "simulator", "params": params}}}
        created = admin.post("/unitops", json=body)
        assert created.status_code == 201, created.text
    sid = created.json()["items"]["tag"]["sid"]  # the hub's: the hash of the canonical params
    values: list[Any] = [*DANGEROUS, -3.5, "ok"]
    start = utcnow().replace(microsecond=0)
    samples = [
        {"t": format_time(start.replace(microsecond=i)), "v": v, "q": "=cmd" if i == 0 else None}
        for i, v in enumerate(values)
    ]
    asyncio.run(_publish_samples(stack, {"sid": sid, "source": "simulator", "samples": samples}))
    with _hub(stack) as admin:
        _wait(lambda: len(admin.get(f"/unitops/{name}/samples").json()["items"]) == len(values), 30, "samples recorded")
        raw = admin.get(f"/unitops/{name}/samples", headers={"Accept": "text/csv"})
        aligned = admin.get(
            f"/unitops/{name}/samples",
            params={
                "start": format_time(start),
                "end": format_time(start.replace(microsecond=len(values))),
                "interval_s": 0.000001,
            },
            headers={"Accept": "text/csv"},
        )
    assert raw.status_code == 200 and aligned.status_code == 200, (raw.text, aligned.text)
    raw_rows = list(csv.DictReader(io.StringIO(raw.text, newline="")))
    assert [r["v"] for r in raw_rows] == ["'" + v for v in DANGEROUS] + ["-3.5", "ok"]
    assert raw_rows[0]["q"] == "'=cmd"
    aligned_rows = list(csv.DictReader(io.StringIO(aligned.text, newline="")))
    assert [r["tag"] for r in aligned_rows] == ["'" + v for v in DANGEROUS] + ["-3.5", "ok"]


async def _publish_samples(stack: Stack, batch: dict[str, Any]) -> None:
    connection = await aio_pika.connect(stack.env["TRIBUTARY_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("tributary.samples")
        message = aio_pika.Message(json.dumps(batch).encode(), content_type="application/json")
        await exchange.publish(message, routing_key=f"simulator.{batch['sid']}")


# --- Wildcards: a cap where patterns enter, and history that agrees with the broker -------------------------


def test_history_refuses_too_many_wildcards_with_422(stack: Stack) -> None:
    topic = f"wild-{uuid.uuid4().hex[:6]}"
    with _hub(stack) as admin:
        assert admin.post("/topics", json={"name": topic, "schema": {}}).status_code == 201
        # Within the declared length, refused for its wildcards; 100 `#` (199 characters) first for its length.
        cases = {
            ".".join(["*"] * (MAX_WILDCARDS + 1)): f"at most {MAX_WILDCARDS} wildcards",
            ".".join(["a", "#"] * (MAX_WILDCARDS + 1)): f"at most {MAX_WILDCARDS} wildcards",
            ".".join(["#"] * 100): "at most 191 characters",
        }
        for subject, reason in cases.items():
            r = admin.get(f"/topics/{topic}/events", params={"subject": subject})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["details"][0]["loc"] == "/query/subject"
            assert reason in r.json()["error"]["message"], r.text
            assert admin.get(f"/topics/{topic}/events:latest", params={"subject": subject}).status_code == 422


def test_history_with_many_hashes_agrees_with_the_matcher(stack: Stack) -> None:
    """Multi-`#` patterns take the regex path (RE2 dialect on FerretDB) and select exactly the matcher's keys."""
    topic = f"keys-{uuid.uuid4().hex[:6]}"
    subjects = ["a", "a.b", "b.a.b", "a.b.c.b", "a.a.a", "b.b.b.c", "c", "a.c.b.a", "b.a.c.a.b"]
    patterns = ["#.a.#.b.#", "a.#.b", "#.b.#.a.#.b", "*.#.c.#", "#.#.a", "a.#.#.*", "#.a.*.#.b", "b.#.c.#"]
    with _hub(stack) as admin:
        assert admin.post("/topics", json={"name": topic, "schema": {}}).status_code == 201
        batch = [{"data": {"s": s}, "subject": s} for s in subjects]
        assert admin.post(f"/topics/{topic}/events:batch", json=batch).status_code == 202
        _wait(lambda: len(admin.get(f"/topics/{topic}/events").json()["items"]) == len(subjects), 30, "recording")
        for pattern in patterns:
            r = admin.get(f"/topics/{topic}/events", params={"subject": pattern, "limit": 100})
            assert r.status_code == 200, r.text
            got = sorted(e["subject"] for e in r.json()["items"])
            assert got == sorted(s for s in subjects if matches(pattern, s)), pattern


async def test_stream_subscribe_refuses_too_many_wildcards(stack: Stack) -> None:
    pattern = ".".join(["orders", *(["#", "x"] * MAX_WILDCARDS), "#"])
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with websockets.connect(f"{stack.stream_url}/ws", additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "subscribe", "id": "w", "events": {"pattern": pattern}}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["type"] == "error", frame
        assert f"at most {MAX_WILDCARDS} wildcards" in frame["message"], frame
        await ws.send(json.dumps({"op": "ping", "id": "still-up"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong", "id": "still-up"}
    async with httpx.AsyncClient(base_url=stack.stream_http_url, headers=headers, timeout=10) as client:
        r = await client.get(f"/events/{quote(pattern, safe='')}")
        assert r.status_code in (400, 422) and "wildcards" in r.text


def test_an_acl_claim_with_too_many_wildcards_is_refused(stack: Stack) -> None:
    token = stack.mint(subject="greedy", topics=[".".join(["#"] * (MAX_WILDCARDS + 1))])
    with _hub(stack, token) as client:
        r = client.get("/topics")
    assert r.status_code == 401 and "wildcards" in r.json()["error"]["message"]


# --- /readyz never returns exception text -------------------------------------------------------------------


async def test_readyz_names_failed_checks_without_their_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    async def broker() -> None:
        return None

    async def database() -> None:
        raise ConnectionError("cannot reach mongodb://admin:hunter2@db.internal:27017 (10.1.2.3)")

    async def cache() -> None:
        await asyncio.sleep(60)

    port = platform.free_port()
    server = HealthServer({"broker": broker, "mongodb": database, "cache": cache}, host="127.0.0.1", port=port)
    await server.start()
    try:
        with caplog.at_level(logging.WARNING):
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.get(f"http://127.0.0.1:{port}/readyz")
    finally:
        await server.stop()
    assert r.status_code == 503
    assert r.json() == {"status": "unavailable", "checks": {"broker": "ok", "mongodb": "failed", "cache": "failed"}}
    for leak in ("hunter2", "db.internal", "10.1.2.3", "ConnectionError", "Timeout"):
        assert leak not in r.text
    assert "hunter2" in caplog.text and "mongodb" in caplog.text  # the detail is in the service log


# --- JWKS: keys fetched off the event loop, cached, refreshed on a new kid, rate-limited ---------------------


_jwks_env = jwks_env


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    with serving("k1") as server:
        server.add("k2", serve=False)
        yield server


@pytest.fixture(scope="module")
def oidc_stack(jwks: Jwks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = Path(tmp_path_factory.mktemp("oidc-logs"))
    with run_stack(logs, services=("hub", "stream"), env=_jwks_env(jwks)) as s:
        yield s


def _status(url: str, token: str, path: str = "/topics") -> int:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code


def test_rs256_tokens_verify_with_keys_from_the_jwks_and_rotation_is_picked_up(oidc_stack: Stack, jwks: Jwks) -> None:
    hub = oidc_stack.hub_url
    assert _status(hub, jwks.token("k1")) == 200
    assert _status(hub, jwks.token("k1", key_of="k2")) == 401  # right kid, wrong key
    hits = jwks.hits
    assert _status(hub, jwks.token("k1")) == 200 and jwks.hits == hits  # cached, not fetched per request

    assert _status(hub, jwks.token("k2")) == 401  # the IdP does not publish k2 yet
    jwks.served.append("k2")  # rotation: the IdP publishes a new key
    started = time.monotonic()
    _wait(lambda: _status(hub, jwks.token("k2")) == 200, 30, "the new kid to be fetched")
    assert time.monotonic() - started < 20
    assert jwks.hits - hits <= 3, "an unknown kid refreshes the keys at a bounded rate, not per request"
    assert _status(hub, jwks.token("k1")) == 200


def test_a_flood_of_unknown_kids_does_not_hammer_the_jwks(oidc_stack: Stack, jwks: Jwks) -> None:
    hits = jwks.hits
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: _status(oidc_stack.hub_url, jwks.token(f"rnd-{i}", key_of="k1")), range(60)))
    assert set(codes) == {401}
    assert jwks.hits - hits <= 1


async def test_the_stream_verifies_jwks_tokens_with_the_same_verifier(oidc_stack: Stack, jwks: Jwks) -> None:
    headers = {"Authorization": f"Bearer {jwks.token('k1')}"}
    async with websockets.connect(f"{oidc_stack.stream_url}/ws", additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "ping", "id": "rs"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong", "id": "rs"}
    bad = {"Authorization": f"Bearer {jwks.token('k1', key_of='k2')}"}
    async with websockets.connect(f"{oidc_stack.stream_url}/ws", additional_headers=bad, open_timeout=10) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["type"] == "error" and frame["code"] == "unauthorized"


def test_an_unreachable_jwks_is_a_clear_503_and_never_blocks_the_hub(
    jwks: Jwks, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A JWKS that accepts and never answers: the request fails within the fetch timeout with 503 while the hub
    keeps serving other requests (the fetch is off the event loop); then a closed connection, the same."""
    logs = Path(tmp_path_factory.mktemp("jwks-down-logs"))
    with run_stack(logs, services=("hub",), env=_jwks_env(jwks)) as s:
        jwks.mode = "hang"
        try:
            with ThreadPoolExecutor(1) as pool:
                started = time.monotonic()
                pending = pool.submit(_timed_get, s.hub_url + "/topics", jwks.token("k1"))
                time.sleep(0.5)
                t0 = time.monotonic()
                assert httpx.get(s.hub_url + "/healthz", timeout=5).status_code == 200
                assert time.monotonic() - t0 < 1.0, "the hub's event loop is blocked by the JWKS fetch"
                r, _ = pending.result(timeout=30)
                assert time.monotonic() - started < 12
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "auth_unavailable"
            assert "signing keys" in r.json()["error"]["message"]
        finally:
            jwks.mode = "ok"


def _timed_get(url: str, token: str) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    return r, time.monotonic() - t0


def test_a_jwks_url_nobody_listens_on_is_a_quick_503(jwks: Jwks, tmp_path_factory: pytest.TempPathFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, never listening: connection refused
        env = {**jwks_env(jwks), "TRIBUTARY_JWKS_URL": f"http://127.0.0.1:{closed}/jwks"}
        with run_stack(Path(tmp_path_factory.mktemp("jwks-closed-logs")), services=("hub",), env=env) as s:
            r, took = _timed_get(s.hub_url + "/topics", jwks.token("k1"))
    assert r.status_code == 503 and took < 5, (r.status_code, took, r.text)


async def test_stale_keys_are_renewed_behind_requests_that_use_them(jwks: Jwks) -> None:
    """Past the keys' lifespan a token with a known kid is verified at once with the known key while the keys are
    fetched again in the background: a slow identity provider never holds requests up."""
    verifier = JwtVerifier(secret=None, algorithms=["RS256"], jwks_url=jwks.url, jwks_timeout_s=3)
    keys = verifier._jwks
    assert keys is not None
    keys.lifespan_s, keys.min_refresh_s = 0.2, 0.0
    assert (await verifier.verify(jwks.token("k1"))).subject == "oidc-user"
    fetches = keys.fetches
    jwks.mode = "hang"
    try:
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        assert (await verifier.verify(jwks.token("k1"))).subject == "oidc-user"
        assert time.monotonic() - t0 < 0.5
        await asyncio.sleep(0.1)
        assert keys.fetches == fetches + 1  # the renewal is under way
        with pytest.raises(AuthUnavailable):  # an unknown kid needs the keys now: 503, within the timeout
            await asyncio.wait_for(verifier.verify(jwks.token("k3", key_of="k1")), 10)
    finally:
        jwks.mode = "ok"
