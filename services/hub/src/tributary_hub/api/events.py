"""`/topics/{topic}/events` (POST) and `/topics/{topic}/events:batch`: publish one event or a batch."""

from __future__ import annotations

import functools

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter

from tributary_common.amqp import EVENTS
from tributary_common.auth import Principal
from tributary_common.events import BatchAccepted, PublishAccepted, publisher_of
from tributary_common.telemetry import cloudevent_attributes, messaging_attributes, producer_span, tracer

from ..errors import Invalid
from .access import may_publish, see_topic
from .batches import partially_confirmed, split_batch
from .ce_binary import binary_envelope, ce_headers
from .deps import (
    DirectRoute,
    authenticated,
    bearer_credentials,
    direct,
    hub_of,
    media_type,
    parse_json,
    read_body,
    require,
    require_json,
    scope_doc,
)
from .publish_docs import BATCH_BODY, BATCH_ERRORS, ONE_BODY, PUBLISH_ERRORS

router = APIRouter(tags=["events"], route_class=DirectRoute)
_tracer = tracer("tributary_hub.publish")

PUBLISHED = Counter("tributary_hub_events_published_total", "Events confirmed by the broker", ["mode"])
REJECTED = Counter("tributary_hub_events_rejected_total", "Publish requests refused as invalid", ["mode"])


@functools.cache
def _by_mode(counter: Counter, mode: str) -> Counter:
    """A counter's child for `mode`, remembered (`labels()` takes a lock per call); made at first use as before."""
    return counter.labels(mode)


ONE_TYPES = ("application/json", "application/cloudevents+json")
BATCH_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "application/cloudevents-batch+json")


async def _publish_one(topic: str, request: Request, principal: Principal) -> dict[str, str]:
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
    with producer_span(_tracer, "publish event") as span:
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
            _by_mode(REJECTED, "one").inc()
            raise
        ev = events[0]
        if span.is_recording():
            span.set_attributes(messaging_attributes("publish", EVENTS.name, ev.routing_key, ev.id))
            span.set_attributes(cloudevent_attributes(ev.id, ev.type, ev.source, ev.subject))
        may_publish(principal, [e.routing_key for e in events])
        assert hub.publisher is not None
        await hub.publisher.publish(events[0], bodies[0])
    _by_mode(PUBLISHED, "one").inc()
    return {"id": events[0].id, "dataschema": ref.dataschema}


async def publish_one_now(request: Request) -> Response:
    """`publish_one` by hand (the hot path, see `DirectRoute`): the same checks in the same order, and the
    response model's JSON written directly."""
    principal = await authenticated(request, "events:publish", bearer_credentials(request))
    accepted = await _publish_one(request.path_params["topic"], request, principal)
    return Response(orjson.dumps(accepted), status_code=202, media_type="application/json")


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
    openapi_extra={**scope_doc("events:publish"), "requestBody": ONE_BODY},
)
@direct(publish_one_now)
async def publish_one(
    topic: str, request: Request, principal: Principal = Depends(require("events:publish"))
) -> PublishAccepted:
    return PublishAccepted(**await _publish_one(topic, request, principal))  # served by publish_one_now


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
    openapi_extra={**scope_doc("events:publish"), "requestBody": BATCH_BODY},
)
async def publish_batch(
    topic: str, request: Request, principal: Principal = Depends(require("events:publish"))
) -> BatchAccepted | JSONResponse:
    hub = hub_of(request)
    see_topic(principal, topic)  # before the body: no 404/422 for a topic outside the ACL
    kind = require_json(request, *BATCH_TYPES)
    raw = await read_body(request, hub.settings.max_batch_bytes)
    items = split_batch(raw, kind, hub.settings.max_batch_events)
    with producer_span(_tracer, "publish batch") as span:
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
