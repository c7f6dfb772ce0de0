"""Topic documents as stored: reading them (an unreadable one is a 409 naming its bad fields, so that it can
be repaired), guarding what a change would store, and the topic's view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from beanie.odm.utils.parsing import parse_obj
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tributary_common.events import dataschema_for

from .compatibility import Compatibility
from .documents import TopicDoc
from .errors import Conflict, Invalid, NotFound, validation_details
from .stored import problems, report_unreadable


def schema_id(topic: str, uid: str, version: int) -> str:
    return f"{topic}/{uid}/{version}"


async def read_topic(name: str) -> TopicDoc:
    try:
        doc = await TopicDoc.get(name)
    except ValidationError as exc:
        report_unreadable(TopicDoc.get_collection_name(), name, exc)
        raise Conflict(
            f"topic {name!r} is stored in a form this hub cannot read ({problems(exc)}); "
            "PATCH the fields named or DELETE the topic",
            validation_details(exc),
            code="unreadable_topic",
        ) from exc
    if doc is None:
        raise NotFound(f"topic {name!r} does not exist", code="unknown_topic")
    return doc


async def read_raw(name: str) -> dict[str, Any]:
    """The stored document as it is, readable or not: what updates and deletes need (and can repair)."""
    raw: dict[str, Any] | None = await TopicDoc.get_pymongo_collection().find_one({"_id": name})
    if raw is None:
        raise NotFound(f"topic {name!r} does not exist", code="unknown_topic")
    return raw


def check_stored_form(merged: dict[str, Any], *, changed: set[str]) -> None:
    """Refuse a change that would store a topic this hub cannot read back (the domain's own guard, whatever
    the API let through); problems in fields not being changed are left for a later PATCH to repair."""
    try:
        parse_obj(TopicDoc, merged)
    except ValidationError as exc:
        bad = [
            d for d, e in zip(validation_details(exc), exc.errors(), strict=True) if e["loc"] and e["loc"][0] in changed
        ]
        if bad:
            raise Invalid("the change would store an invalid topic", bad, code="invalid_request") from exc


class Topic(BaseModel):
    """A topic as the API shows it (the one view of a topic; `schema` where the answer carries it)."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    version: int
    dataschema: str
    compatibility: Compatibility
    retention_days: float | None = None
    description: str | None = None
    expose_publisher: bool = False
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    updated_by: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


def topic_view(doc: TopicDoc, schema: dict[str, Any] | None = None) -> Topic:
    view: dict[str, Any] = {
        "name": doc.id,
        "version": doc.version,
        "dataschema": dataschema_for(doc.id, doc.version),
        "compatibility": doc.compatibility,
        "retention_days": doc.retention_days,
        "description": doc.description,
        "expose_publisher": doc.expose_publisher,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
        "created_by": doc.created_by,
        "updated_by": doc.updated_by,
    }
    if schema is not None:
        view["schema"] = schema
    return Topic.model_validate(view)
