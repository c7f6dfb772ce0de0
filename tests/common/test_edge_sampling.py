"""A request's trace decided at the edge (edge_sampling): FastAPI builds no span for a request whose new trace is
dropped, keeps the ratio for the others (not its square), and leaves a caller's `traceparent` to the sampler; the
same behind `EdgeDecision`, which decides before FastAPI so that a dropped request skips its telemetry whole."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind

from tests.support.otlp import installed_provider
from tributary_common.edge_sampling import (
    EdgeDecision,
    EdgeSampler,
    dropped_at_the_edge,
    exclude_unsampled,
    fastapi_telemetry,
)
from tributary_common.http_server import server_config
from tributary_common.telemetry import producer_span

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


Served = Callable[[FastAPI], Any]


@pytest.fixture(params=["fastapi", "edge"])
def served(request: pytest.FixtureRequest) -> Served:
    """Each test twice: the app alone (its `exclude` hook decides) and as `http_server` hands it to uvicorn, behind
    `EdgeDecision` (which decides first); what a request sees must not differ."""
    return (lambda app: app) if request.param == "fastapi" else EdgeDecision


def app_seeing(
    seen: list[dict[str, Any]], exclude: Callable[[MutableMapping[str, Any]], bool] | None = None
) -> FastAPI:
    """An app whose one route records what its handler sees, and publishes under `producer_span` as the hub does;
    `exclude` in place of the edge's own hook."""
    telemetry = fastapi_telemetry(metrics=False, logs=False, operation_spans=False)
    app = FastAPI(telemetry=telemetry if exclude is None else {**telemetry, "exclude": exclude})

    @app.post("/publish")
    async def publish() -> dict[str, bool]:
        current = trace.get_current_span()
        tracer = trace.get_tracer_provider().get_tracer("t")
        with producer_span(tracer, "publish event") as span:
            seen.append(
                {
                    "request_span": current,
                    "dropped": dropped_at_the_edge(),
                    "publish_recording": span.is_recording(),
                    "own_root": tracer.start_span("side work", context=trace.set_span_in_context(trace.INVALID_SPAN)),
                }
            )
        return {"ok": True}

    return app


async def post(app: Any, n: int = 1, headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        for _ in range(n):
            assert (await client.post("/publish", headers=headers)).status_code == 200


def server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_dropped_request_gets_no_span_at_all(monkeypatch: pytest.MonkeyPatch, served: Served) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    await post(served(app_seeing(seen)))
    (s,) = seen
    assert s["request_span"] is trace.INVALID_SPAN, "FastAPI built no server span, not even a non-recording one"
    assert s["dropped"] and not s["publish_recording"]
    assert not s["own_root"].is_recording(), "a root span in a dropped request is dropped too"
    assert exporter.get_finished_spans() == ()


async def test_a_kept_request_is_sampled_once_and_its_publish_is_its_child(
    monkeypatch: pytest.MonkeyPatch, served: Served
) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_ON)))
    seen: list[dict[str, Any]] = []
    await post(served(app_seeing(seen)))
    (s,) = seen
    assert not s["dropped"] and s["publish_recording"]
    (server,) = server_spans(exporter)
    (publish,) = [sp for sp in exporter.get_finished_spans() if sp.name == "publish event"]
    assert publish.parent is not None and publish.parent.span_id == server.context.span_id
    assert publish.context.trace_id == server.context.trace_id


async def test_the_ratio_is_kept_not_squared(monkeypatch: pytest.MonkeyPatch, served: Served) -> None:
    """At 0.5 the edge keeps about half the requests; asking the sampler again for the span would keep a quarter."""
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(TraceIdRatioBased(0.5))))
    seen: list[dict[str, Any]] = []
    await post(served(app_seeing(seen)), n=400)
    kept = len(server_spans(exporter))
    assert 140 <= kept <= 260, kept  # binomial(400, 0.5): 6 standard deviations either side; 0.25 gives ~100
    assert sum(not s["dropped"] for s in seen) == kept
    assert sum(s["publish_recording"] for s in seen) == kept


async def test_a_callers_traceparent_decides(monkeypatch: pytest.MonkeyPatch, served: Served) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    app = served(app_seeing(seen))
    await post(app, headers={"traceparent": SAMPLED_PARENT})
    (server,) = server_spans(exporter)
    assert format(server.context.trace_id, "032x") == SAMPLED_PARENT.split("-")[1]
    assert seen[0]["publish_recording"] and not seen[0]["dropped"]
    await post(app, headers={"traceparent": UNSAMPLED_PARENT})
    assert len(server_spans(exporter)) == 1
    assert not seen[1]["publish_recording"]


@pytest.mark.parametrize("garbage", ["", "00-zz-yy-01", "ff-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 4096])
async def test_a_malformed_traceparent_is_a_new_trace_for_the_configured_sampler(
    monkeypatch: pytest.MonkeyPatch, served: Served, garbage: str
) -> None:
    """A hostile header neither fails the request nor chooses its sampling: the sampler decides, as for a new trace."""
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    app = served(app_seeing(seen))
    await post(app, headers={"traceparent": garbage})
    assert exporter.get_finished_spans() == ()
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_ON)))
    await post(app, headers={"traceparent": garbage})
    (server,) = server_spans(exporter)
    assert server.parent is None, "not a child of the garbage"


def test_outside_a_request_the_configured_sampler_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_ON)))
    with trace.get_tracer_provider().get_tracer("t").start_as_current_span("consume") as span:
        assert span.is_recording()
    installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    with trace.get_tracer_provider().get_tracer("t").start_as_current_span("consume") as span:
        assert not span.is_recording()


async def test_without_the_edge_sampler_fastapi_decides_as_before(
    monkeypatch: pytest.MonkeyPatch, served: Served
) -> None:
    exporter = installed_provider(monkeypatch, ParentBased(ALWAYS_OFF))
    seen: list[dict[str, Any]] = []
    await post(served(app_seeing(seen)))
    assert seen[0]["request_span"] is not trace.INVALID_SPAN  # FastAPI's non-recording span, as without the hook
    assert not seen[0]["dropped"]
    assert exporter.get_finished_spans() == ()


def test_the_edge_sampler_says_what_it_wraps() -> None:
    assert "AlwaysOnSampler" in EdgeSampler(ALWAYS_ON).get_description()


class _Counted(Sampler):
    """`inner`, counting how often it is asked."""

    def __init__(self, inner: Sampler) -> None:
        self.inner, self.asked = inner, 0

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.asked += 1
        return self.inner.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Counted"


def app_with_hook_calls(calls: list[bool]) -> FastAPI:
    """`app_seeing`'s route, with the `exclude` hook's answers recorded."""

    def hook(scope: MutableMapping[str, Any]) -> bool:
        calls.append(exclude_unsampled(scope))
        return calls[-1]

    return app_seeing([], exclude=hook)


async def test_behind_the_edge_fastapi_never_reaches_its_hook_for_a_dropped_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The point of `EdgeDecision`: FastAPI honours its own mark and skips its telemetry; were it to stop, the hook
    would still follow the edge's decision (checked below) and this test would say the saving is gone."""
    installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    calls: list[bool] = []
    await post(EdgeDecision(app_with_hook_calls(calls)), n=3)
    assert calls == []
    await post(app_with_hook_calls(calls), n=3)  # the app alone: its hook decides
    assert calls == [True, True, True]


@pytest.mark.parametrize("inner", [ALWAYS_ON, ALWAYS_OFF])
async def test_behind_the_edge_the_sampler_is_asked_as_often_as_without_it(
    monkeypatch: pytest.MonkeyPatch, inner: Sampler
) -> None:
    """Once per request for its trace (plus what the route's own spans ask), never again by the hook."""
    asked = []
    for wrap in (lambda app: app, EdgeDecision):
        counted = _Counted(inner)
        exporter = installed_provider(monkeypatch, EdgeSampler(counted))
        calls: list[bool] = []
        await post(wrap(app_with_hook_calls(calls)), n=5)
        asked.append(counted.asked)
        assert len(server_spans(exporter)) == (5 if inner is ALWAYS_ON else 0)
    assert asked[0] == asked[1] > 0


def test_websockets_and_lifespan_pass_the_edge_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    scopes: list[dict[str, Any]] = []

    async def echo(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scopes.append(dict(scope))
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": (await receive())["text"]})
        await send({"type": "websocket.close", "code": 1000})

    with TestClient(EdgeDecision(echo)) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello"
    assert [s["type"] for s in scopes] == ["lifespan", "websocket"]
    assert all(not {"tributary.edge_decision", "fastapi.telemetry"} & set(s) for s in scopes)


def test_the_server_hands_uvicorn_the_app_behind_the_edge() -> None:
    app = FastAPI()
    config = server_config(app, host="127.0.0.1", port=0)
    assert isinstance(config.app, EdgeDecision) and config.app.app is app
