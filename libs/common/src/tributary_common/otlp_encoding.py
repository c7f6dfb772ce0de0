"""Finished spans as an OTLP `ExportTraceServiceRequest`, written as protobuf bytes directly.

The SDK's OTLP exporter builds a protobuf message object per span, attribute and value and then serializes them:
~50-65 us a span here, on the exporter's thread, which holds the GIL against the event loop. At 100 % sampling
that was a sixth of the hub's CPU. This writes the same bytes (fields in number order, proto3 defaults left out,
as the protobuf runtime writes them: tests/common/test_otlp_encoding.py compares the two byte for byte) without
the objects. `install()` points the HTTP exporter at it; the exporter itself (retries, limits, metrics) is the
SDK's.

`EncodingSpanProcessor` writes each span's bytes when it ends, on the thread that ends it (~10 us, while the span
is fresh in the cache), and queues those instead of the span: the export thread then only joins bytes. Encoding a
batch of 512 there held the GIL for milliseconds at a time, stopping the event loop; at 100 % sampling the hub's
p99 under load fell from 17-37 ms to 12-15 ms with it, for the same CPU (bench/README.md, Hub publish).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from .ratelog import LogThrottle

log = logging.getLogger(__name__)

_KIND = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags: the parent's remoteness is known; it is remote
_Q, _D, _I = struct.Struct("<Q"), struct.Struct("<d"), struct.Struct("<I")
_KNOWN_MAX = 4096  # encoded attributes kept (below): a new value past it starts the set again


_SMALL = [bytes((n,)) for n in range(0x80)]  # the varints of one byte


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its key, the payload's length, the payload."""
    n = len(payload)
    return key + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _text(key: bytes, text: str | None) -> bytes:
    return _field(key, text.encode()) if text else b""


def _value(value: Any) -> bytes:
    """An `AnyValue` (a oneof: set even when it holds its type's default)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise TypeError(f"integer {value} is out of int64's range")
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _D.pack(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid type {type(value)} of value {value!r}")


def _key_value(key: str, value: Any) -> bytes:
    return _text(b"\x0a", key) + _field(b"\x12", _value(value))


# Encoded `KeyValue` fields of scalar attributes by (field, key, type, value): most repeat from span to span (method,
# route, status, exchange, ...). The type is part of the key because True == 1 == 1.0 in a dict.
_SCALARS = frozenset({str, int, bool, float})
_known: dict[tuple[bytes, str, type, Any], bytes] = {}


def _attributes(key: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated `KeyValue`s; one whose value cannot be encoded is left out (as the SDK's encoder does)."""
    if not attributes:
        return b""
    out = []
    # The SDK's attributes keep a plain dict: its items directly, not through the `Mapping` protocol per key.
    for k, v in getattr(attributes, "_dict", attributes).items():
        kind = v.__class__
        kept = kind in _SCALARS
        field = _known.get((key, k, kind, v)) if kept else None
        if field is None:
            try:
                field = _field(key, _key_value(k, v))
            except TypeError:
                continue
            if kept:
                if len(_known) >= _KNOWN_MAX:
                    _known.clear()
                _known[(key, k, kind, v)] = field
        out.append(field)
    return b"".join(out)


def _count(key: bytes, n: int) -> bytes:
    return key + _varint(n) if n else b""


def _span(span: ReadableSpan) -> bytes:
    ctx = span.get_span_context()
    assert ctx is not None  # a finished SDK span has one
    parent = span.parent
    state = ",".join(f"{k}={v}" for k, v in ctx.trace_state.items()) if ctx.trace_state else None
    status = span.status
    parts = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
        _text(b"\x1a", state),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
        _text(b"\x2a", span.name),
        _count(b"\x30", _KIND[span.kind.name]),
        b"\x39" + _Q.pack(span.start_time) if span.start_time else b"",
        b"\x41" + _Q.pack(span.end_time) if span.end_time else b"",
        _attributes(b"\x4a", span.attributes),
        _count(b"\x50", span.dropped_attributes),
    ]
    for event in span.events:
        body = (b"\x09" + _Q.pack(event.timestamp) if event.timestamp else b"") + _text(b"\x12", event.name)
        body += _attributes(b"\x1a", event.attributes) + _count(b"\x20", event.dropped_attributes)
        parts.append(_field(b"\x5a", body))
    parts.append(_count(b"\x60", span.dropped_events))
    for link in span.links:
        body = b"\x0a\x10" + link.context.trace_id.to_bytes(16, "big") + b"\x12\x08"
        body += link.context.span_id.to_bytes(8, "big") + _attributes(b"\x22", link.attributes)
        remote = _IS_REMOTE if link.context.is_remote else 0
        body += _count(b"\x28", link.dropped_attributes) + b"\x35" + _I.pack(_HAS_IS_REMOTE | remote)
        parts.append(_field(b"\x6a", body))
    parts.append(_count(b"\x70", span.dropped_links))
    if status is not None:
        parts.append(_field(b"\x7a", _text(b"\x12", status.description) + _count(b"\x18", status.status_code.value)))
    remote = _IS_REMOTE if parent is not None and parent.is_remote else 0
    parts.append(b"\x85\x01" + _I.pack(_HAS_IS_REMOTE | remote))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return _text(b"\x0a", scope.name) + _text(b"\x12", scope.version) + _attributes(b"\x1a", scope.attributes)


class EncodedSpan:
    """A finished span as its `ScopeSpans.spans` field, with what the request groups it by (and the context the
    batch processor checks)."""

    __slots__ = ("context", "data", "instrumentation_scope", "resource")

    def __init__(self, span: ReadableSpan) -> None:
        self.context = span.context
        self.resource = span.resource
        self.instrumentation_scope = span.instrumentation_scope
        self.data = _field(b"\x12", _span(span))


def encode_spans(spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
    """The request's bytes: spans grouped by resource, then by instrumentation scope, in the order first seen."""
    # By the resource's identity: its hash serializes its attributes to JSON every time; a provider has one.
    grouped: dict[int, tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]] = {}
    for span in spans:
        resource = span.resource
        entry = grouped.get(id(resource))
        if entry is None:
            entry = grouped[id(resource)] = (resource, {})
        data = span.data if isinstance(span, EncodedSpan) else _field(b"\x12", _span(span))
        entry[1].setdefault(span.instrumentation_scope or None, []).append(data)
    out = []
    for resource, by_scope in _merged(grouped.values()):
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        for scope, encoded in by_scope.items():
            scope_spans = _field(b"\x0a", _scope(scope)) + b"".join(encoded)
            body += _field(b"\x12", scope_spans + _text(b"\x1a", scope.schema_url if scope else None))
        out.append(_field(b"\x0a", body + _text(b"\x1a", resource.schema_url)))
    return b"".join(out)


_unencodable = LogThrottle(interval_s=60)


class EncodingSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor, queueing each sampled span as its bytes (`EncodedSpan`) written as it ends.

    For the OTLP exporter with `install()`ed: the queue then holds bytes that only this module's `encode_spans`
    reads. A span that cannot be written (a time past 64 bits) is dropped alone, with a warning; the SDK's
    encoder would have failed, and dropped, its whole batch."""

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        try:
            encoded = EncodedSpan(span)
        except (ValueError, TypeError, struct.error, OverflowError) as exc:
            if (n := _unencodable.hit(type(exc).__name__)) is not None:
                log.warning("span %r dropped, it cannot be encoded: %s [%d like this]", span.name, exc, n)
            return
        super().on_end(encoded)  # type: ignore[arg-type]  # read only by encode_spans


def _merged(
    groups: Iterable[tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]],
) -> list[tuple[Resource, dict[InstrumentationScope | None, list[bytes]]]]:
    """Groups of equal resources (distinct objects) as one, as the SDK's encoder groups them. (A scope's spans then
    follow their resource objects' order, not the batch's: a difference only in order, and only where a process has
    equal resources as distinct objects.)"""
    merged: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
    for resource, by_scope in groups:
        into = merged.setdefault(resource, {})
        for scope, encoded in by_scope.items():
            into.setdefault(scope, []).extend(encoded)
    return list(merged.items())


class _Encoded:
    """What the SDK's HTTP exporter calls on the request it encoded: the bytes, already written."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializePartialToString(self) -> bytes:
        return self.data


def install() -> None:
    """Point the OTLP/HTTP span exporter at this encoder (it looks up `encode_spans` in its module per export)."""
    from opentelemetry.exporter.otlp.proto.http import trace_exporter

    def encoded(spans: Sequence[ReadableSpan]) -> _Encoded:
        return _Encoded(encode_spans(spans))

    trace_exporter.encode_spans = encoded  # type: ignore[attr-defined,assignment]  # not re-exported; duck-typed
