"""A span per read batch, its context carried as the `traceparent` AMQP header of the published batch."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.simulator import SimulatorSource


async def test_each_batch_carries_the_traceparent_of_its_span(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # a private provider: the global one of the test process stays untouched
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    s = sub("simulator", {"signal": "ramp", "rate_hz": 50})
    async with engine(
        make_settings(amqp_url, cache_namespace), {"simulator": SimulatorSource}, tracer=provider.get_tracer("t")
    ):
        amqp_bus.demand("simulator", [s])
        await eventually(lambda: len(amqp_bus.batches) >= 5, what="five batches")
    spans = {
        (format(sp.context.trace_id, "032x"), format(sp.context.span_id, "016x")): sp
        for sp in exporter.get_finished_spans()
        if sp.name == "ingest read batch"
    }
    for r in amqp_bus.batches:
        traceparent = r.headers["traceparent"]
        version, trace_id, span_id, _flags = traceparent.split("-")
        assert version == "00"
        span = spans[(trace_id, span_id)]
        assert span.attributes is not None
        assert span.attributes["tributary.sid"] == s.sid
        assert span.attributes["tributary.samples"] == len(r.batch.samples)
        assert span.attributes["messaging.rabbitmq.destination.routing_key"] == f"simulator.{s.sid}"
    assert len({r.headers["traceparent"] for r in amqp_bus.batches}) == len(amqp_bus.batches)
