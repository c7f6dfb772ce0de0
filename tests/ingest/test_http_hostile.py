"""An http endpoint whose ETag and Last-Modified are not ASCII: they are not sent back (the poll is unconditional),
and the read goes on. Failed on the code before: the next request raised UnicodeEncodeError, failing the read at
every second poll."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.http_poll import HttpSource


@pytest.fixture
def server() -> Iterator[tuple[str, list[str | None]]]:
    conditions: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            conditions.append(self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"))
            body = b'{"v": 1.5}'
            self.send_response(200)
            self.send_header("ETag", '"\xff\xfe"')  # written as latin-1 bytes
            self.send_header("Last-Modified", "Tue, 15 Nov 1994 08:12:31 GMT\xe9")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", conditions
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_validators_that_cannot_be_sent_back_are_dropped(
    server: tuple[str, list[str | None]], amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    base, conditions = server
    settings = make_settings(amqp_url, cache_namespace, http_allow=[f"{base}/"], http_min_interval_s=0.05)
    s = sub("http", {"url": f"{base}/x", "pointer": "/v", "interval_s": 0.05})
    async with engine(settings, {"http": HttpSource}) as e:
        amqp_bus.demand("http", [s])
        await eventually(lambda: len(amqp_bus.values(s.sid)) >= 10, what="ten polls")
        assert e.status()["sources"]["http"]["failing"] == {}
        reads = e.metrics.registry.get_sample_value("tributary_ingest_reads_total", {"source": "http"})
        assert reads == 1, "the read was never restarted"
    assert set(conditions) == {None}
