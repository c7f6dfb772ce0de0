"""`/topics/{topic}/events`: publish one or a batch, history pages, exports by Accept, latest per subject."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import Counter

from tributary_common.auth import Forbidden, Principal
from tributary_common.events import BatchAccepted, EventIn, PublishAccepted, publisher_of
from tributary_common.exchanges import EVENTS
from tributary_common.http_errors import ErrorBody
from tributary_common.names import NameError_, validate_pattern
from tributary_common.telemetry import cloudevent_attributes, messaging_attributes, tracer

from ..errors import HubError, Invalid, TooLarge, Unavailable
from ..history import EventQuery, export_events
from ..publishing import CloudEventIn
from .ce_binary import binary_envelope, ce_headers
from .deps import (
    cursor_query,
    hub_of,
    media_type,
    negotiate,
    parse_json,
    query_time,
    read_body,
    require,
    require_json,
    scope_doc,
    streamed,
    time_query,
)
from .models import SUBJECT_MAX, SUBJECT_PATTERN, EventPage, LatestEvents
from .topics import ERRORS, see_topic

router = APIRouter(tags=["events"])
_tracer = tracer("tributary_hub.publish")

PUBLISHED = Counter("tributary_hub_events_published_total", "Events confirmed by the broker", ["mode"])
REJECTED = Counter("tributary_hub_events_rejected_total", "Publish requests refused as invalid", ["mode"])

ONE_TYPES = ("application/json", "application/cloudevents+json")
BATCH_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/cloudevents-batch+json")
PUBLISH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    413: {"model": ErrorBody, "description": "Body, batch or the event's encoded envelope over the limit"},
    415: {"model": ErrorBody, "description": "Unsupported Content-Type"},
    422: {
        "model": ErrorBody,
        "description": "Invalid against the topic's schema: every violation with its JSON pointer",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "invalid_event",
                        "message": "the event is invalid against /topics/sensor-reading/schemas/1; "
                        "nothing was published",
                        "details": [{"loc": "/data/temperature", "msg": '"hot" is not of type "number"'}],
                    }
                }
            }
        },
    },
    503: {"model": ErrorBody, "description": "The broker did not confirm; retry with the same ids"},
}
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **PUBLISH_ERRORS,
    413: {"model": ErrorBody, "description": "Body, batch or one event's encoded envelope (`/<index>`) over the limit"},
    503: {
        "description": "Not every event was confirmed: `ids` (every event's id, in order) and `confirmed` (per "
        "event); resend the batch with these ids, history keeps each (topic, id) once",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "partially_confirmed",
                        "message": "the broker confirmed 1 of 2 events; resend the batch with these ids",
                        "details": [{"loc": "/1", "msg": "not confirmed: ..."}],
                    },
                    "ids": ["reading-0001", "reading-0002"],
                    "confirmed": [True, False],
                }
            }
        },
    },
}

EVENT_EXAMPLE = {"data": {"temperature": 21.5, "unit": "C"}, "subject": "plant1.line3"}
ENVELOPE_EXAMPLE = {
    "specversion": "1.0",
    "id": "reading-0001",
    "source": "/plant1/gateway",
    "type": "sensor-reading",
    "subject": "plant1.line3",
    "data": {"temperature": 21.5},
}


def may_publish(principal: Principal, keys: list[str]) -> None:
    denied = sorted({k for k in keys if not principal.may_key(k)})
    if denied:
        raise Forbidden(f"the token's topics ACL does not allow publishing to {denied[:5]}")


@router.post(
    "/topics/{topic}/events",
    status_code=202,
    response_model=PublishAccepted,
    summary="Publish one event",
    description="Body `{data, subject?, id?, source?}` as `application/json`, or a structured CloudEvents envelope "
    "as `application/cloudevents+json` (its `type` must be the topic; `time` and `dataschema` are set by the hub), "
    "or a CloudEvents HTTP binary-mode event: attributes in `ce-specversion`, `ce-id`, `ce-source`, `ce-type` (the "
    "topic), `ce-subject` headers (percent-encoded; `ce-time` is ignored, the hub sets the time; at most 16 `ce-` "
    "headers of 2048 characters each) and the data as the body (`application/json` or no Content-Type; empty: "
    "null). Binary mode answers as structured does; a bad attribute is reported at `/headers/ce-<name>`. "
    "The 202 comes after the broker confirmed the persistent message. Resending the same `id` to the same topic "
    "never duplicates it in history (ids are unique per topic). Requires `events:publish` and a topics ACL "
    "covering `<topic>[.<subject>]`.",
    responses=PUBLISH_ERRORS,
    openapi_extra={
        **scope_doc("events:publish"),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": EventIn.model_json_schema(),
                    "examples": {"event": {"value": EVENT_EXAMPLE}},
                },
                "application/cloudevents+json": {
                    "schema": CloudEventIn.model_json_schema(),
                    "examples": {"envelope": {"value": ENVELOPE_EXAMPLE}},
                },
            },
        },
    },
)
async def publish_one(topic: str, request: Request, principal: Principal = Depends(require("events:publish"))) -> Any:
    hub = hub_of(request)
    see_topic(principal, topic)  # before the body: no 404/422 for a topic outside the ACL
    # CloudEvents binary mode: `ce-` headers and a body that is not a structured envelope.
    attributes = ce_headers(request.headers) if media_type(request) != "application/cloudevents+json" else []
    if attributes:
        body = await read_body(request, hub.settings.max_body_bytes)
        raw, envelope = binary_envelope(attributes, media_type(request), body, parse_json), True
    else:
        kind = require_json(request, *ONE_TYPES)
        raw = parse_json(await read_body(request, hub.settings.max_body_bytes))
        envelope = kind == "application/cloudevents+json"
    with _tracer.start_as_current_span("publish event", kind=trace.SpanKind.PRODUCER) as span:
        try:
            ref, events, bodies = await hub.events.build(
                topic,
                [raw],
                envelope=envelope,
                batch=False,
                publisher=publisher_of(principal.kind, principal.subject),
                binary=bool(attributes),
            )
        except Invalid:
            REJECTED.labels("one").inc()
            raise
        ev = events[0]
        if span.is_recording():
            span.set_attributes(messaging_attributes("publish", EVENTS.name, ev.routing_key, ev.id))
            span.set_attributes(cloudevent_attributes(ev.id, ev.type, ev.source, ev.subject))
        may_publish(principal, [e.routing_key for e in events])
        assert hub.publisher is not None
        await hub.publisher.publish(events[0], bodies[0])
    PUBLISHED.labels("one").inc()
    return PublishAccepted(id=events[0].id, dataschema=ref.dataschema)


def split_batch(raw: bytes, kind: str, limit: int) -> list[Any]:
    """A JSON array, or NDJSON (one JSON value per non-empty line); each line's errors say which line."""
    if kind in ("application/json", "application/cloudevents-batch+json"):
        value = parse_json(raw)
        if not isinstance(value, list):
            raise Invalid(
                "a batch must be a JSON array (or NDJSON)", [{"loc": "/", "msg": "not an array"}], code="invalid_batch"
            )
        items = value
    else:
        lines = [(n, line) for n, line in enumerate(raw.split(b"\n"), start=1) if line.strip()]
        if len(lines) > limit:
            raise TooLarge(
                f"a batch holds at most {limit} events",
                [{"loc": "/", "msg": f"{len(lines)} lines"}],
                code="batch_too_large",
            )
        items = []
        for index, (n, line) in enumerate(lines):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise HubError(
                    f"malformed JSON on line {n}: {exc}",
                    [{"loc": f"/{index}", "msg": f"line {n}: {exc}"}],
                    code="malformed_json",
                ) from exc
    if not items:
        raise Invalid(
            "the batch is empty", [{"loc": "/", "msg": "at least one event is required"}], code="invalid_batch"
        )
    if len(items) > limit:
        raise TooLarge(
            f"a batch holds at most {limit} events",
            [{"loc": "/", "msg": f"more than {limit} events"}],
            code="batch_too_large",
        )
    return items


@router.post(
    "/topics/{topic}/events:batch",
    status_code=202,
    response_model=BatchAccepted,
    summary="Publish a batch (all or nothing)",
    description="A JSON array (`application/json`) or NDJSON (`application/x-ndjson` / `application/jsonl`) of "
    "`{data, subject?, id?, source?}`, or a JSON array of structured CloudEvents envelopes "
    "(`application/cloudevents-batch+json`; each as for `application/cloudevents+json`: `type` must be the topic). "
    "**All or nothing**: every event is validated first; if any is invalid, none "
    "is published and the 422 lists the violations of each invalid event as `/<index>/data/...`. Otherwise all are "
    "published concurrently with publisher confirms and the 202 lists the ids in order. At most "
    "`TRIBUTARY_MAX_BATCH_EVENTS` events and `TRIBUTARY_MAX_BATCH_BYTES` bytes, each envelope at most "
    "`TRIBUTARY_MAX_EVENT_BYTES` encoded (413 beyond). If the broker confirms only some events, the 503 lists every "
    "id and which were confirmed: resend with those ids.",
    responses=BATCH_ERRORS,
    openapi_extra={
        **scope_doc("events:publish"),
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": EventIn.model_json_schema()},
                    "examples": {"batch": {"value": [EVENT_EXAMPLE, {"data": {"temperature": 22}}]}},
                },
                "application/cloudevents-batch+json": {
                    "schema": {"type": "array", "items": CloudEventIn.model_json_schema()},
                    "examples": {"envelopes": {"value": [ENVELOPE_EXAMPLE]}},
                },
                # JSON lines: described as the array of the lines (OpenAPI 3.2's `itemSchema`), one JSON value each.
                **{
                    media: {
                        "schema": {"type": "array", "items": EventIn.model_json_schema()},
                        "examples": {"lines": {"value": [{"data": {"temperature": 21.5}}, EVENT_EXAMPLE]}},
                    }
                    for media in ("application/x-ndjson", "application/jsonl")
                },
            },
        },
    },
)
async def publish_batch(topic: str, request: Request, principal: Principal = Depends(require("events:publish"))) -> Any:
    hub = hub_of(request)
    see_topic(principal, topic)  # before the body: no 404/422 for a topic outside the ACL
    kind = require_json(request, *BATCH_TYPES)
    raw = await read_body(request, hub.settings.max_batch_bytes)
    items = split_batch(raw, kind, hub.settings.max_batch_events)
    with _tracer.start_as_current_span("publish batch", kind=trace.SpanKind.PRODUCER) as span:
        span.set_attributes(messaging_attributes("publish", EVENTS.name, topic))
        span.set_attribute("messaging.batch.message_count", len(items))
        try:
            # A CloudEvents batch holds structured envelopes, each checked like a single one (`type` = topic).
            envelope = kind == "application/cloudevents-batch+json"
            ref, events, bodies = await hub.events.build(
                topic, items, envelope=envelope, batch=True, publisher=publisher_of(principal.kind, principal.subject)
            )
        except Invalid:
            REJECTED.labels("batch").inc()
            raise
        may_publish(principal, [e.routing_key for e in events])
        assert hub.publisher is not None
        failures = await hub.publisher.publish_many(events, bodies)
    PUBLISHED.labels("batch").inc(failures.count(None))
    if any(failures):
        return partially_confirmed([e.id for e in events], failures)
    return BatchAccepted(ids=[e.id for e in events], dataschema=ref.dataschema)


def partially_confirmed(ids: list[str], failures: list[Unavailable | None]) -> JSONResponse:
    """503 with every id and which ones the broker confirmed: resending the batch with these ids is exactly-once
    in history (the recorder keeps one event per topic and id)."""
    details = [{"loc": f"/{i}", "msg": f"not confirmed: {f.message}"} for i, f in enumerate(failures) if f]
    body = {
        "error": {
            "code": "partially_confirmed",
            "message": f"the broker confirmed {failures.count(None)} of {len(ids)} events; "
            "resend the batch with these ids (confirmed ones are not recorded twice)",
            "details": details,
        },
        "ids": ids,
        "confirmed": [f is None for f in failures],
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


def history_pattern(principal: Principal, topic: str, subject: str | None) -> str:
    """`<topic>.<subject pattern>` (or the whole topic), checked against the caller's ACL."""
    pattern = f"{topic}.{subject}" if subject else f"{topic}.#"
    try:
        validate_pattern(pattern)
    except NameError_ as exc:
        raise Invalid(str(exc), [{"loc": "/query/subject", "msg": str(exc)}], code="invalid_request") from exc
    if not principal.may_pattern(pattern):
        raise Forbidden(f"the token's topics ACL does not cover {pattern!r}")
    return pattern


@router.get(
    "/topics/{topic}/events",
    response_model=EventPage,
    summary="History (a page of JSON), or an export streamed as CSV / JSON Lines / NDJSON chosen by Accept",
    description="Oldest first by position `(time, id)`. `subject` is an AMQP pattern under the topic (`*` one "
    "segment, `#` zero or more: the broker's semantics). `start` inclusive, `end` exclusive (RFC 3339). JSON answers "
    "`{items, next}`; pass `next` back as `cursor`. With `Accept: text/csv`, `application/jsonl` or "
    "`application/x-ndjson` the whole selection is streamed (from `cursor` if given; `limit` is ignored). Requires "
    "`events:read` and a topics ACL covering the pattern.",
    responses={
        **ERRORS,
        406: {"model": ErrorBody, "description": "Unsupported Accept"},
        200: {"content": {"text/csv": {}, "application/jsonl": {}, "application/x-ndjson": {}}},
    },
    openapi_extra=scope_doc("events:read"),
)
async def history(
    topic: str,
    request: Request,
    subject: str | None = Query(
        None,
        description="AMQP pattern over the subject",
        examples=["plant1.#"],
        max_length=SUBJECT_MAX,
        json_schema_extra=SUBJECT_PATTERN,
    ),
    start: str | None = time_query("RFC 3339, inclusive"),
    end: str | None = time_query("RFC 3339, exclusive"),
    limit: int | None = Query(None, ge=1, description="Page size (JSON only)"),
    cursor: str | None = cursor_query(2),
    principal: Principal = Depends(require("events:read")),
) -> Any:
    hub = hub_of(request)
    see_topic(principal, topic)
    pattern = history_pattern(principal, topic, subject)
    fmt = negotiate(request)
    t0, t1 = query_time(start, "start"), query_time(end, "end")
    await hub.topics.resolve(topic)  # 404 for an unknown topic
    query = await hub.history.select(EventQuery(pattern=pattern, topic=topic, start=t0, end=t1, cursor=cursor))
    if fmt == "json":
        size = min(limit or hub.settings.history_default_limit, hub.settings.history_max_limit)
        items, nxt = await hub.history.page(query, size, admin=principal.is_admin)
        return {"items": items, "next": nxt}
    rows = hub.history.stream(query, admin=principal.is_admin)
    chunks = export_events(fmt, rows, hub.settings.export_chunk_rows, publisher=principal.is_admin)
    return streamed(chunks, fmt, f"{topic}.{fmt}")


@router.get(
    "/topics/{topic}/events:latest",
    response_model=LatestEvents,
    summary="The newest event of each subject (optionally under a subject pattern)",
    responses=ERRORS,
    openapi_extra=scope_doc("events:read"),
)
async def latest(
    topic: str,
    request: Request,
    subject: str | None = Query(
        None, description="AMQP pattern over the subject", max_length=SUBJECT_MAX, json_schema_extra=SUBJECT_PATTERN
    ),
    principal: Principal = Depends(require("events:read")),
) -> Any:
    hub = hub_of(request)
    see_topic(principal, topic)
    pattern = history_pattern(principal, topic, subject)
    await hub.topics.resolve(topic)
    return {"items": await hub.history.latest(topic, pattern, admin=principal.is_admin)}
