"""The publish span (`producer_span`): made whenever it can be seen, skipped where it could only be an invisible
non-recording span (no tracer provider; an unsampled parent under parent-based sampling)."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from tests.support.otlp import installed_provider
from tributary_common.telemetry import current_traceparent, producer_span

UNSAMPLED = trace.NonRecordingSpan(
    trace.SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT))
)


def test_no_provider_no_span() -> None:
    with producer_span(trace.get_tracer("t"), "publish event") as span:
        assert not span.is_recording()
        assert current_traceparent() is None


def test_sampled_parent_or_root_makes_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, ParentBased(ALWAYS_ON))
    tracer = trace.get_tracer_provider().get_tracer("t")
    with producer_span(tracer, "publish event") as span:
        assert span.is_recording()
        assert current_traceparent() is not None
    assert [s.name for s in exporter.get_finished_spans()] == ["publish event"]


def test_unsampled_parent_under_parent_based_sampling_no_span(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, ParentBased(ALWAYS_ON))
    tracer = trace.get_tracer_provider().get_tracer("t")
    with trace.use_span(UNSAMPLED), producer_span(tracer, "publish event") as span:
        assert span is UNSAMPLED
        assert current_traceparent() is None
    assert exporter.get_finished_spans() == ()


def test_unsampled_parent_without_parent_based_sampling_still_asks_the_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = installed_provider(monkeypatch, TraceIdRatioBased(1.0))
    tracer = trace.get_tracer_provider().get_tracer("t")
    with trace.use_span(UNSAMPLED), producer_span(tracer, "publish event") as span:
        assert span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["publish event"]
