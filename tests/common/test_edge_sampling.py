"""A request's trace decided at the edge (edge_sampling): FastAPI builds no span for a request whose new trace is
dropped, keeps the ratio for the others (not its square), and leaves a caller's `traceparent` to the sampler."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from tests.support.otlp import installed_provider
from tributary_common.edge_sampling import EdgeSampler, dropped_at_the_edge, fastapi_telemetry
from tributary_common.telemetry import producer_span

SAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED_PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def app_seeing(seen: list[dict[str, Any]]) -> FastAPI:
    """An app whose one route records what its handler sees, and publishes under `producer_span` as the hub does."""
    app = FastAPI(telemetry=fastapi_telemetry(metrics=False, logs=False, operation_spans=False))

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


async def post(app: FastAPI, n: int = 1, headers: dict[str, str] | None = None) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as client:
        for _ in range(n):
            assert (await client.post("/publish", headers=headers)).status_code == 200


def server_spans(exporter: InMemorySpanExporter) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_dropped_request_gets_no_span_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    await post(app_seeing(seen))
    (s,) = seen
    assert s["request_span"] is trace.INVALID_SPAN, "FastAPI built no server span, not even a non-recording one"
    assert s["dropped"] and not s["publish_recording"]
    assert not s["own_root"].is_recording(), "a root span in a dropped request is dropped too"
    assert exporter.get_finished_spans() == ()


async def test_a_kept_request_is_sampled_once_and_its_publish_is_its_child(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_ON)))
    seen: list[dict[str, Any]] = []
    await post(app_seeing(seen))
    (s,) = seen
    assert not s["dropped"] and s["publish_recording"]
    (server,) = server_spans(exporter)
    (publish,) = [sp for sp in exporter.get_finished_spans() if sp.name == "publish event"]
    assert publish.parent is not None and publish.parent.span_id == server.context.span_id
    assert publish.context.trace_id == server.context.trace_id


async def test_the_ratio_is_kept_not_squared(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 0.5 the edge keeps about half the requests; asking the sampler again for the span would keep a quarter."""
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(TraceIdRatioBased(0.5))))
    seen: list[dict[str, Any]] = []
    await post(app_seeing(seen), n=400)
    kept = len(server_spans(exporter))
    assert 140 <= kept <= 260, kept  # binomial(400, 0.5): 6 standard deviations either side; 0.25 gives ~100
    assert sum(not s["dropped"] for s in seen) == kept
    assert sum(s["publish_recording"] for s in seen) == kept


async def test_a_callers_traceparent_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    app = app_seeing(seen)
    await post(app, headers={"traceparent": SAMPLED_PARENT})
    (server,) = server_spans(exporter)
    assert format(server.context.trace_id, "032x") == SAMPLED_PARENT.split("-")[1]
    assert seen[0]["publish_recording"] and not seen[0]["dropped"]
    await post(app, headers={"traceparent": UNSAMPLED_PARENT})
    assert len(server_spans(exporter)) == 1
    assert not seen[1]["publish_recording"]


@pytest.mark.parametrize("garbage", ["", "00-zz-yy-01", "ff-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 4096])
async def test_a_malformed_traceparent_is_a_new_trace_for_the_configured_sampler(
    monkeypatch: pytest.MonkeyPatch, garbage: str
) -> None:
    """A hostile header neither fails the request nor chooses its sampling: the sampler decides, as for a new trace."""
    exporter = installed_provider(monkeypatch, EdgeSampler(ParentBased(ALWAYS_OFF)))
    seen: list[dict[str, Any]] = []
    app = app_seeing(seen)
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


async def test_without_the_edge_sampler_fastapi_decides_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, ParentBased(ALWAYS_OFF))
    seen: list[dict[str, Any]] = []
    await post(app_seeing(seen))
    assert seen[0]["request_span"] is not trace.INVALID_SPAN  # FastAPI's non-recording span, as without the hook
    assert not seen[0]["dropped"]
    assert exporter.get_finished_spans() == ()


def test_the_edge_sampler_says_what_it_wraps() -> None:
    assert "AlwaysOnSampler" in EdgeSampler(ALWAYS_ON).get_description()
