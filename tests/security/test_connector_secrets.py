"""Connector credentials never travel in clear (issue 10, "Also"), on real hub and ingest processes.

Params reference a secret as `{"secret": "NAME"}`; ingest resolves it from `TRIBUTARY_SECRETS_DIR` or
`TRIBUTARY_SECRET_<NAME>`, and the value reaches the connector's target but never the hub's API, its database, the
control exchange or the logs. A literal value in a field the source marks secret is a 422 naming the field;
whatever literal an older version stored is shown as `"***"`. Failed on the code before: the http connector sent
`{"secret": ...}` nowhere (params refused), literal headers were stored and listed as given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pymongo
import pytest

from tests.support import platform
from tests.support.polling import wait_for
from tests.support.stack import Stack, run_stack
from tributary_common.amqp import CONTROL
from tributary_common.secrets import SECRET_FIELD_SCHEMA
from tributary_common.sid import compute_sid
from tributary_common.unitops import Unitop
from tributary_hub.unitops import masked

ENV_TOKEN = "Bearer env-token-7f3a9c1e5b"
FILE_TOKEN = "file-key-0d4e8b2a6c"
STORED_LITERAL = "Basic c3RvcmVkOmxpdGVyYWw="


class Endpoint:
    """A loopback JSON endpoint that remembers the headers of every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps({"v": 21.5}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/reading"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got(self, name: str, value: str) -> bool:
        return any(h.get(name.lower()) == value for h in self.seen)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.server.shutdown()


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "file.key").write_text(FILE_TOKEN + "\n")  # kubectl and editors leave a final newline
    (tmp_path / "outside").write_text("outside-the-secrets-dir")
    (d / "escape").symlink_to(tmp_path / "outside")
    return d


@pytest.fixture
def stack(tmp_path: Path, secrets_dir: Path, services: None) -> Iterator[Stack]:
    ingest = {
        "TRIBUTARY_ENABLED_SOURCES": "http,mqtt",
        "TRIBUTARY_SECRETS_DIR": str(secrets_dir),
        "TRIBUTARY_SECRET_API_TOKEN": ENV_TOKEN,
    }
    env = {"TRIBUTARY_HTTP_ALLOW": "127.0.0.1"}  # the egress allow-list: the test endpoint is on loopback
    with run_stack(tmp_path / "logs", ("hub", "ingest"), env=env, per_service={"ingest": ingest}) as s:
        yield s


def http_item(url: str, headers: dict[str, Any]) -> dict[str, Any]:
    # Canonical (interval_s is a float), so that the sid is the hash of these params as they are.
    return {"source": "http", "params": {"url": url, "pointer": "/v", "interval_s": 1.0, "headers": headers}}


async def control_tap(stack: Stack) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect_robust(platform.amqp_url(stack.vhost))
    channel = await connection.channel()
    exchange = await channel.declare_exchange(CONTROL.name, "topic", durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="#")
    return connection, queue


async def drain(queue: aio_pika.abc.AbstractQueue) -> list[tuple[str, bytes]]:
    out = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        out.append((message.routing_key or "", message.body))
    return out


@contextlib.contextmanager
def database(stack: Stack) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]]
    with pymongo.MongoClient(platform.mongodb_url()) as client:
        yield client[stack.db]


def database_text(stack: Stack) -> str:
    with database(stack) as db:
        return "\n".join(repr(doc) for name in db.list_collection_names() for doc in db[name].find())


async def test_a_referenced_secret_reaches_the_target_and_nothing_else(
    stack: Stack, endpoint: Endpoint, secrets_dir: Path
) -> None:
    connection, tap = await control_tap(stack)
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    await asyncio.to_thread(
        wait_for,
        lambda: len(httpx.get(f"{stack.hub_url}/sources", headers=hub.headers).json()["items"]) >= 2,
        30,
        "http and mqtt announced",
        0.3,
    )

    env_ref = {"Authorization": {"secret": "api-token"}}
    file_ref = {"X-Api-Key": {"secret": "file.key"}}
    unitop: dict[str, Any] = {
        "name": "meter",
        "record": True,
        "items": {"env": http_item(endpoint.url, env_ref), "file": http_item(endpoint.url + "?f", file_ref)},
    }
    r = await hub.post("/unitops", json=unitop)
    assert r.status_code == 201, r.text

    # Both values get to the endpoint (the file's trailing newline stripped), and samples flow.
    await asyncio.to_thread(
        wait_for,
        lambda: endpoint.got("authorization", ENV_TOKEN) and endpoint.got("x-api-key", FILE_TOKEN),
        30,
        "both secret headers at the endpoint",
        0.3,
    )

    # The sid is the hash of the (canonical) params: the reference, never the value.
    view = (await hub.get("/unitops/meter")).json()
    assert view["items"]["env"]["params"]["headers"] == env_ref
    assert view["items"]["env"]["sid"] == compute_sid("http", unitop["items"]["env"]["params"])
    listing = (await hub.get("/unitops")).text
    for _ in range(60):
        if (await hub.get("/unitops/meter/samples")).json()["items"]:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("no samples recorded")

    await hub.put("/unitops/meter", json={**unitop, "meta": {"site": "a"}})
    await asyncio.sleep(2.5)  # a few demand heartbeats and announcements more
    control = await drain(tap)
    await connection.close()
    assert any(key == "unitop.meter" for key, _ in control) and any(key == "demand.http" for key, _ in control)
    unitop_changes = [orjson.loads(body) for key, body in control if key == "unitop.meter"]
    assert unitop_changes[0]["unitop"]["items"]["env"]["params"]["headers"] == env_ref

    await hub.aclose()
    stack.procs["ingest"].terminate()
    stack.procs["hub"].terminate()
    everything = {
        "GET /unitops/meter": json.dumps(view),
        "GET /unitops": listing,
        "control exchange": "\n".join(body.decode(errors="replace") for _, body in control),
        "hub database": database_text(stack),
        "hub log": stack.procs["hub"].log_path.read_text(),
        "ingest log": stack.procs["ingest"].log_path.read_text(),
    }
    for where, text in everything.items():
        for secret in (ENV_TOKEN, FILE_TOKEN, "env-token", "file-key"):
            assert secret not in text, f"{secret!r} in {where}"


async def test_literal_credentials_are_refused_and_stored_ones_masked(stack: Stack, endpoint: Endpoint) -> None:
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    await asyncio.to_thread(
        wait_for,
        lambda: len(httpx.get(f"{stack.hub_url}/sources", headers=hub.headers).json()["items"]) >= 2,
        30,
        "http and mqtt announced",
        0.3,
    )

    literal = "Bearer literal-9b8a7c6d5e"
    r = await hub.post(
        "/unitops", json={"name": "lit", "items": {"a": http_item(endpoint.url, {"Authorization": literal})}}
    )
    assert r.status_code == 422, r.text
    assert literal not in r.text
    details = r.json()["error"]["details"]
    assert {"loc": "/items/a/params/headers/Authorization", "msg": details[0]["msg"]} in details
    assert '{"secret": "NAME"}' in details[0]["msg"] and '{"secret": "NAME"}' in r.json()["error"]["message"]

    mqtt = {"source": "mqtt", "params": {"host": "127.0.0.1", "topic": "t/#", "username": "u", "password": "hunter2"}}
    r = await hub.post("/unitops", json={"name": "lit", "items": {"m": mqtt}})
    assert r.status_code == 422 and "/items/m/params/password" in r.text and "hunter2" not in r.text, r.text

    for bad in ("../../etc/passwd", "..", ".", "a/b", "x" * 129, ""):
        item = http_item(endpoint.url, {"Authorization": {"secret": bad}})
        r = await hub.post("/unitops", json={"name": "lit", "items": {"a": item}})
        assert r.status_code == 422 and "/items/a/params/headers/Authorization" in r.text, (bad, r.text)
    r = await hub.post(
        "/unitops", json={"name": "lit", "items": {"a": http_item(endpoint.url, {"A": {"secret": "n", "x": 1}})}}
    )
    assert r.status_code == 422, r.text

    # An update is held to the same rule.
    ok = {"name": "lit", "items": {"a": http_item(endpoint.url, {"Authorization": {"secret": "api-token"}})}}
    assert (await hub.post("/unitops", json=ok)).status_code == 201
    r = await hub.put(
        "/unitops/lit", json={"name": "lit", "items": {"a": http_item(endpoint.url, {"Authorization": literal})}}
    )
    assert r.status_code == 422 and literal not in r.text, r.text

    # Stored in clear by an older version: listed and shown as "***", references untouched.
    params = {
        "url": endpoint.url,
        "pointer": "/v",
        "headers": {"Authorization": STORED_LITERAL, "X-Ref": {"secret": "api-token"}},
    }
    now = datetime.now(UTC)
    with database(stack) as db:
        db["unitops"].insert_one(
            {
                "_id": "legacy",
                "items": {
                    "a": {"source": "http", "sid": compute_sid("http", params), "params_json": json.dumps(params)}
                },
                "meta": {},
                "record": False,
                "created_at": now,
                "updated_at": now,
            }
        )
    one = (await hub.get("/unitops/legacy")).json()
    assert one["items"]["a"]["params"]["headers"] == {"Authorization": "***", "X-Ref": {"secret": "api-token"}}
    assert one["items"]["a"]["sid"] == compute_sid("http", params)
    listing = (await hub.get("/unitops")).text
    assert STORED_LITERAL not in listing and '"***"' in listing
    await hub.aclose()


async def test_an_unresolvable_secret_is_a_counted_refusal_of_that_subscription(
    stack: Stack, endpoint: Endpoint
) -> None:
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    await asyncio.to_thread(
        wait_for,
        lambda: len(httpx.get(f"{stack.hub_url}/sources", headers=hub.headers).json()["items"]) >= 2,
        30,
        "http and mqtt announced",
        0.3,
    )
    items = {
        "missing": http_item(endpoint.url + "?missing", {"Authorization": {"secret": "not-there"}}),
        "escape": http_item(endpoint.url + "?escape", {"Authorization": {"secret": "escape"}}),  # a symlink out
        "good": http_item(endpoint.url + "?good", {"Authorization": {"secret": "api-token"}}),
    }
    r = await hub.post("/unitops", json={"name": "mixed", "record": True, "items": items})
    assert r.status_code == 201, r.text
    await asyncio.to_thread(wait_for, lambda: endpoint.got("authorization", ENV_TOKEN), 30, "the good item read", 0.3)
    ingest = httpx.AsyncClient(base_url=stack.url("ingest"), timeout=10)

    async def rejected() -> dict[str, str]:
        return dict((await ingest.get("/status")).json()["sources"]["http"]["rejected"])

    for _ in range(60):
        if len(await rejected()) == 2:
            break
        await asyncio.sleep(0.5)
    messages = await rejected()
    sids = {name: compute_sid("http", item["params"]) for name, item in items.items()}
    assert set(messages) == {sids["missing"], sids["escape"]}, messages
    assert "'not-there' is not set" in messages[sids["missing"]]
    assert "outside TRIBUTARY_SECRETS_DIR" in messages[sids["escape"]]
    metrics = (await ingest.get("/metrics")).text
    assert 'tributary_ingest_errors_total{kind="secret",source="http"} 2.0' in metrics
    assert not any("outside-the-secrets-dir" in str(h) for h in endpoint.seen)
    await ingest.aclose()
    await hub.aclose()


async def test_plain_headers_are_literals_credential_headers_references(stack: Stack, endpoint: Endpoint) -> None:
    """Issue 10 follow-up: `Accept: application/json` needs no secret; a header whose name carries a credential
    (Authorization, Proxy-Authorization, Cookie, or containing key/token/secret/auth/password/session, any case)
    must be a reference. The hub learns which from the announced schema (`patternProperties` marked secret).
    Failed on the code before: every header value was a secret, so the literal Accept was a 422."""
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    await asyncio.to_thread(
        wait_for,
        lambda: len(httpx.get(f"{stack.hub_url}/sources", headers=hub.headers).json()["items"]) >= 2,
        30,
        "http and mqtt announced",
        0.3,
    )
    literal = "literal-credential-4e5f6a"
    for name in (
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "X-API-KEY",
        "x-auth-user",
        "X-Session-Id",
        "X-Upstream-Token",
        "x-client-secret",
        "X-Password",
    ):
        r = await hub.post("/unitops", json={"name": "hdr", "items": {"a": http_item(endpoint.url, {name: literal})}})
        assert r.status_code == 422, (name, r.text)
        assert f"/items/a/params/headers/{name}" in {d["loc"] for d in r.json()["error"]["details"]}, r.text
        assert literal not in r.text and '{"secret": "NAME"}' in r.json()["error"]["message"], r.text

    headers = {"Accept": "application/json", "X-Tenant": "plant-7", "Authorization": {"secret": "api-token"}}
    r = await hub.post(
        "/unitops", json={"name": "hdr", "record": True, "items": {"a": http_item(endpoint.url, headers)}}
    )
    assert r.status_code == 201, r.text
    view = (await hub.get("/unitops/hdr")).json()
    assert view["items"]["a"]["params"]["headers"] == headers
    await asyncio.to_thread(
        wait_for,
        lambda: (
            endpoint.got("accept", "application/json")
            and endpoint.got("x-tenant", "plant-7")
            and endpoint.got("authorization", ENV_TOKEN)
        ),
        30,
        "the literal and the resolved headers at the endpoint",
        0.3,
    )
    # A reference is fine for any header (a credential under a name the rule does not know).
    item = http_item(endpoint.url, {"X-Signature": {"secret": "api-token"}})
    assert (await hub.post("/unitops", json={"name": "sig", "items": {"a": item}})).status_code == 201

    # A credential header stored in clear by an older version is shown as "***"; its plain neighbours are not.
    params = {"url": endpoint.url, "pointer": "/v", "headers": {"Cookie": STORED_LITERAL, "Accept": "text/plain"}}
    now = datetime.now(UTC)
    with database(stack) as db:
        doc = {"source": "http", "sid": compute_sid("http", params), "params_json": json.dumps(params)}
        db["unitops"].insert_one(
            {"_id": "old", "items": {"a": doc}, "meta": {}, "record": False, "created_at": now, "updated_at": now}
        )
    shown = (await hub.get("/unitops/old")).json()["items"]["a"]["params"]["headers"]
    assert shown == {"Cookie": "***", "Accept": "text/plain"}
    await hub.aclose()


def test_change_messages_mask_what_the_api_masks() -> None:
    """The hub builds `unitop.<name>` messages from the same masking as its views (pure, no services)."""
    schema = {"type": "object", "properties": {"headers": {"additionalProperties": SECRET_FIELD_SCHEMA}}}
    unitop = Unitop.model_validate(
        {
            "name": "u",
            "items": {
                "a": {"source": "http", "params": {"headers": {"A": "literal", "B": {"secret": "b"}}}},
                "b": {"source": "unknown", "params": {"headers": {"A": "kept: its source announced no schema"}}},
            },
        }
    )
    out = masked(unitop, {"http": schema})
    assert out.items["a"].params == {"headers": {"A": "***", "B": {"secret": "b"}}}
    assert out.items["b"] is unitop.items["b"]
    assert unitop.items["a"].params["headers"]["A"] == "literal"
