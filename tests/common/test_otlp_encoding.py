"""The hand-written OTLP encoding (otlp_encoding) writes the bytes the SDK's protobuf encoder writes, and the SDK's
HTTP exporter sends them once it is installed; spans written as they end (`EncodingSpanProcessor`) make the same
request."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from tests.support.otlp import OtlpReceiver
from tributary_common import otlp_encoding
from tributary_common.otlp_encoding import encode_spans

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=40)
SCALAR = st.one_of(TEXT, st.booleans(), INT64, st.floats(allow_nan=False))
VALUE = st.one_of(
    SCALAR,
    st.lists(TEXT, max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4).map(tuple),
    st.lists(INT64, max_size=4).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=4).map(tuple),
)
ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=20), VALUE, max_size=8)
IDS = st.integers(min_value=1, max_value=2**64 - 1)


def context(trace_id: int, span_id: int, remote: bool = False, state: TraceState | None = None) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1), trace_state=state)


@st.composite
def spans(draw: st.DrawFn) -> ReadableSpan:
    trace_id = draw(st.integers(min_value=1, max_value=2**128 - 1))
    parent = draw(st.one_of(st.none(), st.builds(context, st.just(trace_id), IDS, st.booleans())))
    state = draw(st.sampled_from([None, TraceState(), TraceState([("vendor", "a1"), ("other", "b-2")])]))
    status = draw(
        st.sampled_from(
            [
                Status(StatusCode.UNSET),
                Status(StatusCode.OK),
                Status(StatusCode.ERROR, "boom"),
                Status(StatusCode.ERROR),
            ]
        )
    )
    start = draw(st.integers(min_value=1, max_value=2**63))
    events = [
        Event(name, attributes, timestamp)
        for name, attributes, timestamp in draw(
            st.lists(st.tuples(TEXT, ATTRIBUTES, st.integers(min_value=1, max_value=2**63)), max_size=2)
        )
    ]
    links = [
        Link(context(t, s, remote), attributes)
        for t, s, remote, attributes in draw(
            st.lists(st.tuples(IDS, IDS, st.booleans(), st.one_of(st.none(), ATTRIBUTES)), max_size=2)
        )
    ]
    return ReadableSpan(
        name=draw(TEXT),
        context=context(trace_id, draw(IDS), state=state),
        parent=parent,
        resource=draw(st.sampled_from(RESOURCES)),
        attributes=draw(ATTRIBUTES),
        events=events,
        links=links,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=status,
        start_time=start,
        end_time=start + draw(st.integers(min_value=0, max_value=10**9)),
        instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


RESOURCES = [
    Resource({"service.name": "tributary-hub", "service.instance.id": "a"}),
    Resource({"service.name": "tributary-stream"}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
]
SCOPES = [
    InstrumentationScope("fastapi", "0.165.0", "https://opentelemetry.io/schemas/1.44.0"),
    InstrumentationScope("tributary_hub.api.events"),
    None,
]


@settings(max_examples=150, deadline=None)
@given(st.lists(spans(), max_size=6))
def test_the_bytes_are_the_sdk_encoders(batch: list[ReadableSpan]) -> None:
    assert encode_spans(batch) == sdk_encode_spans(batch).SerializePartialToString()


def test_a_batch_of_many_spans_with_repeated_attributes() -> None:
    """The encoded attributes kept between spans (and their clearing when full) change nothing."""
    batch = [
        ReadableSpan(
            name="POST /topics/{topic}/events",
            context=context(n + 1, n + 1),
            resource=RESOURCES[0],
            attributes={"http.request.method": "POST", "http.response.status_code": 202, "n": n, "ok": n % 2 == 0},
            kind=SpanKind.SERVER,
            start_time=n + 1,
            end_time=n + 2,
            instrumentation_scope=SCOPES[0],
        )
        for n in range(otlp_encoding._KNOWN_MAX + 100)
    ]
    assert encode_spans(batch) == sdk_encode_spans(batch).SerializePartialToString()


def test_equal_resources_that_are_distinct_objects_are_one_group() -> None:
    twin = Resource(dict(RESOURCES[0].attributes))
    assert twin is not RESOURCES[0] and twin == RESOURCES[0]
    batch = [
        ReadableSpan(name=f"s{n}", context=context(1, n + 1), resource=r, start_time=1, instrumentation_scope=SCOPES[1])
        for n, r in enumerate([RESOURCES[0], twin, RESOURCES[1], twin])
    ]
    ours = encode_spans(batch)
    assert ours.count(b"tributary-hub") == 1
    assert ours == sdk_encode_spans(batch).SerializePartialToString()


def test_true_one_and_one_point_zero_are_three_values() -> None:
    """Equal as dict keys, different on the wire: the kept encodings are keyed by type too."""
    batch = [
        ReadableSpan(name="s", context=context(1, n + 1), resource=RESOURCES[0], attributes={"v": v}, start_time=1)
        for n, v in enumerate([True, 1, 1.0, 1, True])
    ]
    assert encode_spans(batch) == sdk_encode_spans(batch).SerializePartialToString()


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, math.inf])
def test_values_out_of_range_are_left_out_or_kept_as_the_sdk_does(bad: Any) -> None:
    span = ReadableSpan(name="s", context=context(1, 2), resource=RESOURCES[0], attributes={"a": 1}, start_time=1)
    span._attributes = {"a": 1, "bad": bad, "z": "x"}  # past the SDK's own attribute checks
    assert encode_spans([span]) == sdk_encode_spans([span]).SerializePartialToString()


def test_the_installed_encoder_is_what_the_http_exporter_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace_exporter, "encode_spans", vars(trace_exporter)["encode_spans"])  # restored after
    calls: list[int] = []

    def counted(batch: list[ReadableSpan]) -> bytes:
        calls.append(len(batch))
        return encode_spans(batch)

    monkeypatch.setattr(otlp_encoding, "encode_spans", counted)
    otlp_encoding.install()
    receiver = OtlpReceiver().start()
    try:
        exporter = trace_exporter.OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")
        span = ReadableSpan(
            name="publish event",
            context=context(0xABC, 0xDEF),
            parent=context(0xABC, 0x123, remote=True),
            resource=RESOURCES[0],
            attributes={"messaging.system": "rabbitmq", "messaging.message.id": "e-1"},
            kind=SpanKind.PRODUCER,
            start_time=10,
            end_time=20,
            instrumentation_scope=SCOPES[1],
        )
        assert exporter.export([span]).name == "SUCCESS"
        (got,) = receiver.spans  # the receiver stores a request's spans before it answers
        assert calls == [1]
        assert (got.service, got.name, got.parent_span_id) == ("tributary-hub", "publish event", f"{0x123:016x}")
        assert got.attributes == {"messaging.system": "rabbitmq", "messaging.message.id": "e-1"}
        exporter.shutdown()  # type: ignore[no-untyped-call]
    finally:
        receiver.stop()


class _Kept(SpanExporter):
    """What a batch processor hands its exporter, kept."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.batches.append(list(spans))
        return SpanExportResult.SUCCESS


class _RecordOnly(Sampler):
    """Spans that record but are not sampled: the processors see them end, nothing may export them."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


class _Ended(SpanProcessor):
    """Every span that ends, sampled or not."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _provider(sampler: Sampler | None = None) -> tuple[TracerProvider, _Kept, InMemorySpanExporter, _Ended]:
    provider = TracerProvider(resource=RESOURCES[0], sampler=sampler)
    kept, plain, ended = _Kept(), InMemorySpanExporter(), _Ended()
    provider.add_span_processor(otlp_encoding.EncodingSpanProcessor(kept))
    provider.add_span_processor(SimpleSpanProcessor(plain))
    provider.add_span_processor(ended)
    return provider, kept, plain, ended


def test_spans_written_as_they_end_make_the_sdk_encoders_request() -> None:
    provider, kept, plain, _ = _provider()
    server, publish = provider.get_tracer("fastapi", "0.165.0"), provider.get_tracer("tributary_hub.api.events")
    for n in range(3):
        with server.start_as_current_span("POST", kind=SpanKind.SERVER, attributes={"url.path": f"/t/{n}"}) as span:
            with publish.start_as_current_span("publish event", kind=SpanKind.PRODUCER) as inner:
                inner.set_attributes({"messaging.message.id": f"e-{n}", "n": n})
                inner.add_event("confirmed", {"ok": True})
            span.set_status(Status(StatusCode.ERROR, "late"))
    provider.force_flush()
    queued = [s for batch in kept.batches for s in batch]
    assert len(queued) == 6 and all(isinstance(s, otlp_encoding.EncodedSpan) for s in queued)
    spans = plain.get_finished_spans()
    assert encode_spans(queued) == sdk_encode_spans(spans).SerializePartialToString()
    # written and unwritten spans mix in one request
    assert encode_spans([*queued[:3], *spans[3:]]) == sdk_encode_spans(spans).SerializePartialToString()
    provider.shutdown()


def test_spans_not_sampled_are_not_written_nor_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []

    class Counted(otlp_encoding.EncodedSpan):
        def __init__(self, span: ReadableSpan) -> None:
            written.append(span.name)
            super().__init__(span)

    monkeypatch.setattr(otlp_encoding, "EncodedSpan", Counted)
    provider, kept, plain, ended = _provider(_RecordOnly())
    with provider.get_tracer("t").start_as_current_span("recorded, not sampled"):
        pass
    provider.force_flush()
    assert [s.name for s in ended.spans] == ["recorded, not sampled"]  # it did end, recording
    assert kept.batches == [] and plain.get_finished_spans() == () and written == []
    provider.shutdown()


def test_a_span_that_cannot_be_written_is_dropped_alone(caplog: pytest.LogCaptureFixture) -> None:
    kept = _Kept()
    processor = otlp_encoding.EncodingSpanProcessor(kept)
    good = ReadableSpan(name="good", context=context(1, 2), resource=RESOURCES[0], start_time=1, end_time=2)
    bad = ReadableSpan(name="bad", context=context(1, 3), resource=RESOURCES[0], start_time=2**64, end_time=2**64)
    with caplog.at_level(logging.WARNING, logger=otlp_encoding.__name__):
        for span in (good, bad, good):
            processor.on_end(span)  # never raises into the code that ended the span
    processor.force_flush()
    assert [len(b) for b in kept.batches] == [2]
    assert "span 'bad' dropped, it cannot be encoded" in caplog.text
    processor.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK
