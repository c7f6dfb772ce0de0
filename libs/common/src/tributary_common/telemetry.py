"""OpenTelemetry set-up from the standard `OTEL_*` variables, and W3C trace context in AMQP headers.

- `OTEL_SDK_DISABLED=true` or no exporter configured: a no-op tracer, so an untraced process pays nothing.
- `OTEL_TRACES_EXPORTER=otlp` (or any `OTEL_EXPORTER_OTLP_*ENDPOINT`): OTLP over HTTP, batched.
- `OTEL_TRACES_EXPORTER=console`: spans printed, for debugging.
- Sampling: `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` as the SDK reads them; set
  `parentbased_traceidratio` with a small ratio in production so that tracing costs little at full load.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased

from . import otlp_encoding
from .edge_sampling import EdgeSampler, dropped_at_the_edge, tracing_off

_configured: TracerProvider | None = None


def _processor_from_env() -> SpanProcessor | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    has_endpoint = any(os.environ.get(k) for k in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if kind == "none" or (not kind and not has_endpoint):
        return None
    if kind == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    otlp_encoding.install()  # the same bytes, a third of the CPU, written as each span ends
    return otlp_encoding.EncodingSpanProcessor(OTLPSpanExporter())


def setup_tracing(service_name: str, instance_id: str = "") -> TracerProvider | None:
    """Install a global tracer provider when the environment asks for one; return it (or None)."""
    global _configured
    if _configured is not None:
        return _configured
    processor = _processor_from_env()
    if processor is None:
        return None
    attrs: dict[str, Any] = {SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)}
    if instance_id:
        attrs[SERVICE_INSTANCE_ID] = instance_id
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES; TracerProvider reads OTEL_TRACES_SAMPLER itself.
    provider = TracerProvider(resource=Resource.create(attrs))
    # Before any tracer is made (a tracer keeps the sampler it was made with): see edge_sampling.
    provider.sampler = EdgeSampler(provider.sampler)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    global _configured
    if _configured is not None:
        _configured.shutdown()
        _configured = None


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def producer_span(span_tracer: trace.Tracer, name: str) -> AbstractContextManager[trace.Span]:
    """`span_tracer.start_as_current_span(name, kind=PRODUCER)`, unless the span could only be a non-recording
    one that nothing sees (no trace context is propagated from it): then the current span stays current. So while
    tracing is off (no tracer provider), in a request whose trace was dropped at the edge (edge_sampling), and under
    an unsampled parent when sampling is parent-based (the `parentbased_*` samplers drop such a child). Making such
    a span costs the publish hot path ~5 %."""
    provider = trace.get_tracer_provider()
    if tracing_off(provider) or dropped_at_the_edge():
        return nullcontext(trace.get_current_span())
    current = trace.get_current_span()
    parent = current.get_span_context()
    if parent.is_valid and not parent.trace_flags.sampled and _drops_unsampled_children(provider):
        return nullcontext(current)
    return span_tracer.start_as_current_span(name, kind=trace.SpanKind.PRODUCER)


def _drops_unsampled_children(provider: trace.TracerProvider) -> bool:
    sampler = getattr(provider, "sampler", None)
    sampler = sampler.inner if isinstance(sampler, EdgeSampler) else sampler
    return isinstance(sampler, ParentBased) and _parent_based_drops(sampler)


@functools.lru_cache(maxsize=8)
def _parent_based_drops(sampler: ParentBased) -> bool:
    """Whether an unsampled parent's children are dropped (the `parentbased_*` samplers' default), remembered per
    sampler (its description is built anew on every call)."""
    described: str = sampler.get_description()  # type: ignore[no-untyped-call]  # the SDK leaves it untyped
    return all(f"{p}ParentNotSampled:AlwaysOffSampler" in described for p in ("remote", "local"))


def _sampled(ctx: Context | None = None) -> bool:
    span_context = trace.get_current_span(ctx).get_span_context()
    return span_context.is_valid and span_context.trace_flags.sampled


def inject_headers(headers: MutableMapping[str, Any] | None = None, ctx: Context | None = None) -> dict[str, Any]:
    """AMQP headers carrying the current (or given) trace context as W3C `traceparent`/`tracestate`.

    Only for a sampled trace: an unsampled one would be dropped downstream anyway (parent-based sampling), and
    carrying it costs every hop header encoding and span bookkeeping — the bulk of tracing's cost at full load.
    """
    carrier: dict[str, Any] = dict(headers or {})
    if _sampled(ctx):
        propagate.inject(carrier, context=ctx)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> Context:
    carrier = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in (headers or {}).items()}
    return propagate.extract(carrier)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, when it is sampled (see `inject_headers`)."""
    if not _sampled():
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Context:
    return propagate.extract({"traceparent": traceparent}) if traceparent else context.get_current()


def messaging_attributes(
    operation: str, exchange: str, routing_key: str, message_id: str | None = None
) -> dict[str, Any]:
    """OpenTelemetry messaging semantic-convention attributes for a RabbitMQ publish/receive/process."""
    attrs: dict[str, Any] = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }
    if message_id:
        attrs["messaging.message.id"] = message_id
    return attrs


def cloudevent_attributes(event_id: str, event_type: str, source: str, subject: str | None) -> dict[str, Any]:
    """OpenTelemetry CloudEvents semantic-convention attributes."""
    attrs: dict[str, Any] = {
        "cloudevents.event_id": event_id,
        "cloudevents.event_type": event_type,
        "cloudevents.event_source": source,
        "cloudevents.event_spec_version": "1.0",
    }
    if subject:
        attrs["cloudevents.event_subject"] = subject
    return attrs
