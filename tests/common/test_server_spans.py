"""The server span `EdgeDecision` makes for each HTTP request it keeps (server_spans), in place of FastAPI's: named
by method and route, the caller's trace as parent, the HTTP attributes FastAPI sets (credentials in the query
redacted, a malformed Host left out), an error for a 5xx or an escaping exception; FastAPI makes none of its own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind, StatusCode
from starlette.responses import PlainTextResponse

from tests.support.otlp import installed_provider
from tributary_common import server_spans
from tributary_common.edge_sampling import EdgeDecision, EdgeSampler, fastapi_telemetry

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def app() -> FastAPI:
    api = FastAPI(telemetry=fastapi_telemetry(metrics=False, logs=False, operation_spans=False))
    router = APIRouter()

    @router.post("/topics/{topic}/events", status_code=202)
    async def publish(topic: str) -> dict[str, str]:
        return {"topic": topic}

    @router.get("/baggage")
    async def carried() -> dict[str, object]:
        return dict(baggage.get_all())

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("broken")

    @router.get("/busy")
    async def busy() -> None:
        raise HTTPException(503, "busy")

    @router.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, "no such thing")

    api.include_router(router)

    async def files(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("file")(scope, receive, send)

    api.mount("/console", files)
    return api


async def request(method: str, path: str, **kwargs: Any) -> int:
    return (await response(method, path, **kwargs)).status_code


async def response(method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=EdgeDecision(app()), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.example:8443") as client:
        return await client.request(method, path, **kwargs)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Any:
    return installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_ON)))


def only(exporter: Any) -> Any:
    (span,) = exporter.get_finished_spans()  # FastAPI made none of its own
    assert span.kind is SpanKind.SERVER
    return span


async def test_a_request_gets_one_span_named_by_its_route_with_fastapis_attributes(spans: Any) -> None:
    assert await request("POST", "/topics/plant/events?limit=5&token=s3cret&x-api-key=k&sig=abc") == 202
    span = only(spans)
    assert span.name == "POST /topics/{topic}/events"
    assert span.parent is None and span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == {
        "url.scheme": "http",
        "http.request.method": "POST",
        "network.protocol.version": "1.1",
        "server.address": "hub.example",
        "server.port": 8443,
        "url.path": "/topics/plant/events",
        "url.query": "limit=5&token=REDACTED&x-api-key=REDACTED&sig=REDACTED",
        "http.route": "/topics/{topic}/events",
        "http.response.status_code": 202,
    }
    assert span.instrumentation_scope.name == server_spans.__name__


@pytest.mark.parametrize("query", ["a=1&" * 2000, "x=" + "y" * 5000, "&".join(f"k{n}=v" for n in range(65))])
async def test_a_query_too_long_to_parse_is_left_out(spans: Any, query: str) -> None:
    """64 KiB of parameters under a sampled `traceparent` would cost the hub tens of milliseconds to redact."""
    assert await request("POST", f"/topics/plant/events?{query}", headers={"traceparent": PARENT}) == 202
    assert "url.query" not in only(spans).attributes


async def test_a_callers_trace_is_the_parent(spans: Any) -> None:
    await request("POST", "/topics/plant/events", headers={"traceparent": PARENT})
    span = only(spans)
    assert format(span.context.trace_id, "032x") == PARENT.split("-")[1]
    assert span.parent is not None and span.parent.is_remote and format(span.parent.span_id, "016x") == PARENT[36:52]


async def test_the_callers_baggage_reaches_the_handler_from_every_header(spans: Any) -> None:
    headers = [("traceparent", PARENT), ("baggage", "site=plant1"), ("baggage", "line=l2")]
    assert (await response("GET", "/baggage", headers=headers)).json() == {"site": "plant1", "line": "l2"}


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/boom", 500, "RuntimeError"),
        ("/busy", 503, "503"),
        ("/missing", 404, None),
        ("/nowhere", 404, None),
    ],
)
async def test_errors_are_a_5xx_or_an_escaping_exception(spans: Any, path: str, status: int, error: str | None) -> None:
    assert await request("GET", path) == status
    span = only(spans)
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes.get("error.type") == error
    assert (span.status.status_code is StatusCode.ERROR) == (error is not None)
    assert span.name == ("GET" if path == "/nowhere" else f"GET {path}")  # no route matched: the method alone


async def test_a_mounted_app_is_named_by_its_mount(spans: Any) -> None:
    assert await request("GET", "/console/index.html") == 200
    span = only(spans)
    assert span.name == "GET /console/{path}" and span.attributes["http.route"] == "/console/{path}"


async def test_a_method_outside_the_standard_ones(spans: Any) -> None:
    await request("BREW", "/topics/plant/events")
    span = only(spans)
    assert span.name.startswith("HTTP")
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "BREW"


@pytest.mark.parametrize("host", ["user@hub.example", "hub.example/path", "[::1", "hub.example:99999", ""])
async def test_a_malformed_host_gives_no_server_attributes_and_fails_nothing(spans: Any, host: str) -> None:
    assert await request("POST", "/topics/plant/events", headers={"host": host}) == 202
    span = only(spans)
    assert "server.address" not in span.attributes and "server.port" not in span.attributes


def test_the_remembered_hosts_are_bounded(spans: Any) -> None:
    """Host is the client's to choose: remembering each would let one client grow the process without bound."""
    for n in range(server_spans._AUTHORITIES_MAX * 3):
        found = server_spans.server_attributes(f"h{n}.example".encode(), "https", None)
        assert found == {"server.address": f"h{n}.example", "server.port": 443}
        assert len(server_spans._authorities) <= server_spans._AUTHORITIES_MAX


def test_a_long_host_is_read_but_not_remembered(spans: Any) -> None:
    server_spans._authorities.clear()
    host = ("a" * 60 + ".") * 500 + "example"
    assert server_spans.server_attributes(host.encode(), "http", None) == {"server.address": host, "server.port": 80}
    assert server_spans._authorities == {}


def test_without_a_host_the_socket_names_the_server() -> None:
    assert server_spans.server_attributes(None, "http", ("10.0.0.5", 8080)) == {
        "server.address": "10.0.0.5",
        "server.port": 8080,
    }
    assert server_spans.server_attributes(None, "http", None) == {}


async def test_with_tracing_off_no_span_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    assert await request("POST", "/topics/plant/events") == 202
