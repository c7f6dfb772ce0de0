"""`/topics`: create, list, get, update settings and schema, schema versions, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from tributary_common.auth import Principal

from .access import ERRORS, TOPIC, own_topic, see_topic
from .contract import JSON_BODY, documented, errors
from .deps import body_doc, cursor_query, hub_of, json_model, require, scope_doc
from .models import (
    EXAMPLE_SCHEMA,
    SchemaUpdate,
    SchemaVersionBody,
    SchemaVersionList,
    Topic,
    TopicCreate,
    TopicList,
    TopicPatch,
)

router = APIRouter(tags=["topics"])

TOPICS_PAGE = 1000  # topics a page holds at most (and by default)


@router.post(
    "/topics",
    status_code=201,
    response_model=Topic,
    summary="Create a topic with its first schema (version 1)",
    description="The schema must be a Draft 2020-12 JSON Schema within the size and depth limits (413/422). "
    "Requires `topics:write`.",
    responses=errors(
        (403, "Missing scope, or the name is outside the caller's ACL"),
        *JSON_BODY,
        (409, "The topic exists"),
        (413, "Schema or body too large"),
        (422, "Invalid schema or request"),
    ),
    openapi_extra={
        **scope_doc("topics:write"),
        **body_doc(
            TopicCreate,
            {
                "sensor-reading": {
                    "name": "sensor-reading",
                    "schema": EXAMPLE_SCHEMA,
                    "compatibility": "backward",
                    "retention_days": 30,
                }
            },
        ),
    },
)
async def create_topic(request: Request, principal: Principal = Depends(require("topics:write"))) -> Topic:
    hub = hub_of(request)
    body = await json_model(request, TopicCreate, hub.settings.max_body_bytes)
    own_topic(principal, body.name)
    view = await hub.topics.create(
        body.name,
        body.schema_,
        compatibility=body.compatibility,
        retention_days=body.retention_days,
        description=body.description,
        expose_publisher=body.expose_publisher,
        by=principal.subject,
    )
    await hub.audit.record(principal.subject, "topic.created", body.name, None, view)
    return view


@router.get(
    "/topics",
    response_model=TopicList,
    summary="List topics (those the caller's ACL touches)",
    **documented("topics:read", errors()),
)
async def list_topics(
    request: Request,
    principal: Principal = Depends(require("topics:read")),
    limit: int = Query(TOPICS_PAGE, ge=1, le=TOPICS_PAGE, description="Page size"),
    cursor: str | None = cursor_query(1),
) -> TopicList:
    """By name; the topics the caller's ACL touches, a page at a time (follow `next`)."""
    items, nxt = await hub_of(request).topics.page(principal.may_topic, cursor, limit)
    return TopicList(items=items, next=nxt)


@router.get(
    "/topics/{topic}",
    response_model=Topic,
    summary="A topic with its current schema",
    **documented("topics:read", ERRORS),
)
async def get_topic(topic: str, request: Request, principal: Principal = Depends(require("topics:read"))) -> Topic:
    see_topic(principal, topic)
    return await hub_of(request).topics.get(topic)


@router.patch(
    "/topics/{topic}",
    response_model=Topic,
    summary="Change compatibility mode, retention or description",
    **documented("topics:write", errors(*TOPIC, *JSON_BODY), body_doc(TopicPatch)),
)
async def patch_topic(topic: str, request: Request, principal: Principal = Depends(require("topics:write"))) -> Topic:
    own_topic(principal, topic)
    hub = hub_of(request)
    body = await json_model(request, TopicPatch, hub.settings.max_body_bytes)
    changes = body.model_dump(exclude_unset=True, mode="json")
    before = await hub.topics.snapshot(topic)
    after = await hub.topics.update_settings(topic, changes, by=principal.subject)
    await hub.audit.record(principal.subject, "topic.updated", topic, before, after)
    return after


@router.put(
    "/topics/{topic}/schema",
    response_model=Topic,
    summary="Publish a new schema version",
    description="Checked against the previous version under the topic's compatibility mode (`none`, `backward`, "
    "`forward`, `full`); a breaking change is a 409 `incompatible_schema` listing each break with its JSON pointer.",
    responses=errors(
        *TOPIC,
        *JSON_BODY,
        (409, "Incompatible with the previous version"),
        (413, "Schema too large"),
        (422, "Invalid schema"),
    ),
    openapi_extra={**scope_doc("topics:write"), **body_doc(SchemaUpdate, {"v2": {"schema": EXAMPLE_SCHEMA}})},
)
async def put_schema(topic: str, request: Request, principal: Principal = Depends(require("topics:write"))) -> Topic:
    own_topic(principal, topic)
    hub = hub_of(request)
    body = await json_model(request, SchemaUpdate, hub.settings.max_body_bytes)
    before = await hub.topics.get(topic)
    after = await hub.topics.update_schema(topic, body.schema_, by=principal.subject)
    await hub.audit.record(principal.subject, "topic.schema_added", topic, before, after)
    return after


@router.get(
    "/topics/{topic}/schemas",
    response_model=SchemaVersionList,
    summary="The topic's schema versions",
    **documented("topics:read", ERRORS),
)
async def list_schemas(
    topic: str, request: Request, principal: Principal = Depends(require("topics:read"))
) -> SchemaVersionList:
    see_topic(principal, topic)
    return SchemaVersionList.model_validate({"items": await hub_of(request).topics.versions(topic)})


@router.get(
    "/topics/{topic}/schemas/{version}",
    response_model=SchemaVersionBody,
    summary="One schema version (the target of an event's `dataschema`)",
    **documented("topics:read", ERRORS),
)
async def get_schema(
    topic: str, version: int, request: Request, principal: Principal = Depends(require("topics:read"))
) -> SchemaVersionBody:
    see_topic(principal, topic)
    return SchemaVersionBody.model_validate(await hub_of(request).topics.schema_version(topic, version))


@router.delete(
    "/topics/{topic}",
    status_code=204,
    summary="Delete a topic",
    description="Refused (409 `topic_has_events`) while recorded events exist, unless `force=true`, which deletes "
    "them too.",
    **documented("topics:write", errors(*TOPIC, (409, "The topic has events"))),
)
async def delete_topic(
    topic: str,
    request: Request,
    force: bool = Query(False, description="Also delete the topic's recorded events"),
    principal: Principal = Depends(require("topics:write")),
) -> Response:
    own_topic(principal, topic)
    hub = hub_of(request)
    before = await hub.topics.snapshot(topic)
    await hub.topics.delete(topic, force=force)
    await hub.audit.record(principal.subject, "topic.deleted", topic, before, {"events_deleted": force})
    return Response(status_code=204)
