"""The http source against a real local HTTP server: JSON pointers and conditional requests."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.egress import EgressPolicy, EgressRefused
from tributary_ingest.connectors import checked_http
from tributary_ingest.connectors.checked_http import CheckedTransport
from tributary_ingest.connectors.http_poll import HttpSource
from tributary_ingest.settings import IngestSettings


class Endpoint:
    """A JSON document that changes when the test says so, served with ETag or Last-Modified validators."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"data": {"temp": 20.5, "at": "2026-01-01T00:00:00Z", "a/b": "slash"}}
        self.version = 1
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self.lock = threading.Lock()

    def set(self, temp: float, at: str) -> None:
        with self.lock:
            self.doc = {"data": {"temp": temp, "at": at, "a/b": "slash"}}
            self.version += 1


def allowing(base: str, amqp_url: str, namespace: str, **overrides: Any) -> IngestSettings:
    """Settings whose egress allow-list lets the connector reach the local test server (loopback), polling fast."""
    return make_settings(amqp_url, namespace, http_allow=[f"{base}/"], http_min_interval_s=0.05, **overrides)


@pytest.fixture
def server() -> Iterator[tuple[str, Endpoint]]:
    endpoint = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with endpoint.lock:
                body = json.dumps(endpoint.doc).encode()
                version = endpoint.version
            etag = f'"{hashlib.sha1(body).hexdigest()}"'
            modified = formatdate(1_700_000_000 + version, usegmt=True)
            headers = {k: v for k, v in self.headers.items()}
            status = 200
            if self.path == "/etag" and self.headers.get("If-None-Match") == etag:
                status = 304
            if self.path == "/modified" and self.headers.get("If-Modified-Since") == modified:
                status = 304
            if self.path == "/broken":
                status = 500
            endpoint.requests.append((self.path, headers, status))
            self.send_response(status)
            if self.path == "/etag":
                self.send_header("ETag", etag)
            if self.path == "/modified":
                self.send_header("Last-Modified", modified)
            if status == 200:
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", endpoint
    httpd.shutdown()
    httpd.server_close()


async def test_pointer_and_conditional_requests(
    server: tuple[str, Endpoint], amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    base, endpoint = server
    by_etag = sub(
        "http", {"url": f"{base}/etag", "pointer": "/data/temp", "time_pointer": "/data/at", "interval_s": 0.1}
    )
    by_date = sub("http", {"url": f"{base}/modified", "pointer": "/data/temp", "interval_s": 0.1})
    escaped = sub("http", {"url": f"{base}/etag", "pointer": "/data/a~1b", "interval_s": 0.1})
    async with engine(allowing(base, amqp_url, cache_namespace), {"http": HttpSource}):
        amqp_bus.demand("http", [by_etag, by_date, escaped])
        await eventually(lambda: amqp_bus.values(by_etag.sid), what="the first value")
        assert amqp_bus.values(by_etag.sid) == [("2026-01-01T00:00:00.000000Z", 20.5)]
        await eventually(lambda: amqp_bus.values(escaped.sid), what="the value under an escaped pointer")
        assert amqp_bus.values(escaped.sid)[0][1] == "slash"

        # Unchanged document: the server answers 304 to the validators the connector sends back.
        def not_modified(path: str, header: str) -> bool:
            return any(p == path and header in h and s == 304 for p, h, s in endpoint.requests)

        await eventually(lambda: not_modified("/etag", "If-None-Match"), what="a 304 to If-None-Match")
        await eventually(lambda: not_modified("/modified", "If-Modified-Since"), what="a 304 to If-Modified-Since")
        # A 304 says the first answer was read; its sample may still be in the pipeline's batch on its way.
        await eventually(lambda: amqp_bus.values(by_date.sid), what="the first value by date")
        n_date = len(amqp_bus.values(by_date.sid))
        assert n_date >= 1 and all(v == 20.5 for _, v in amqp_bus.values(by_date.sid))

        endpoint.set(21.75, "2026-01-01T00:00:05Z")
        await eventually(lambda: len(amqp_bus.values(by_etag.sid)) == 2, what="the changed value")
        assert amqp_bus.values(by_etag.sid)[1] == ("2026-01-01T00:00:05.000000Z", 21.75)
        await eventually(lambda: amqp_bus.values(by_date.sid)[-1][1] == 21.75, what="the changed value by date")
    amqp_bus.assert_strictly_increasing()


async def test_server_errors_are_retried_with_backoff(
    server: tuple[str, Endpoint], amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    base, endpoint = server
    broken = sub("http", {"url": f"{base}/broken", "pointer": "/data/temp", "interval_s": 0.05})
    settings = allowing(base, amqp_url, cache_namespace, backoff_min_s=0.2, backoff_max_s=0.8)
    async with engine(settings, {"http": HttpSource}) as e:
        amqp_bus.demand("http", [broken])
        await eventually(lambda: len([r for r in endpoint.requests if r[0] == "/broken"]) >= 4, what="4 attempts")
        await eventually(
            lambda: "answered 500" in (e.status()["sources"]["http"]["failing"].get(broken.sid) or ""),
            what="the failure reported in /status",
        )
    assert amqp_bus.values(broken.sid) == []


async def test_the_connection_goes_to_the_checked_address(
    server: tuple[str, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transport resolves once and connects to what it checked: a name only its resolver knows still reaches
    the server, with the name kept in the Host header; a name that resolves to a refused address never connects."""
    base, endpoint = server
    port = int(base.rsplit(":", 1)[1])
    seen: list[str] = []

    async def resolver(host: str, port: int | None = None, *, timeout_s: float = 5.0) -> list[Any]:
        seen.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(checked_http, "resolve", resolver)
    policy = EgressPolicy.parse(["pinned.invalid"])
    async with httpx.AsyncClient(transport=CheckedTransport(policy, resolve_timeout_s=2)) as client:
        r = await client.get(f"http://pinned.invalid:{port}/etag")
        assert r.status_code == 200 and r.json()["data"]["temp"] == 20.5
        assert endpoint.requests[-1][1]["Host"] == f"pinned.invalid:{port}"
        with pytest.raises(EgressRefused, match="loopback"):
            await client.get(f"http://other.invalid:{port}/etag")
    assert seen == ["pinned.invalid", "other.invalid"]
    assert len(endpoint.requests) == 1
