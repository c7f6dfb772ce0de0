"""Request and response models of the HTTP API (with OpenAPI examples)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from pydantic.json_schema import SkipJsonSchema

from tributary_common.auth import SCOPES
from tributary_common.matcher import MAX_WILDCARDS
from tributary_common.names import MAX_ROUTING_KEY, TOPIC_RE, validate_topic
from tributary_common.unitops import MetaValue

from ..compatibility import Compatibility
from ..documents import LAST_USED, ApiKeyFields
from ..topic_store import Topic as Topic  # the one view of a topic (the domain returns it), with the API models

T = TypeVar("T")

# What the validators check, declared in the document (the validators still say precisely what is wrong).
TOPIC_NAME: dict[str, Any] = {"pattern": TOPIC_RE.pattern, "maxLength": 63}
# Dot-separated segments, each a name, `*` or `#`, with at most MAX_WILDCARDS wildcards (spelled without a
# look-ahead so that any generator can produce it).
_NAME, _WILD = "[A-Za-z0-9_-]+", "[*#]"
PATTERN: dict[str, Any] = {
    "pattern": rf"^(?:(?:{_NAME}\.)*{_WILD}(?:\.{_NAME})*(?:\.{_WILD}(?:\.{_NAME})*){{0,{MAX_WILDCARDS - 1}}}"
    rf"|{_NAME}(?:\.{_NAME})*)$",
    "maxLength": MAX_ROUTING_KEY,
    "description": "AMQP pattern over `<topic>.<subject>`: `*` one segment, `#` zero or more; at most 16 wildcards",
}
# A subject pattern is bounded as subjects are (`<topic>.` takes up to 64 of a routing key's bytes); the
# length is enforced by the query parameter, the rest by the pattern's validation.
SUBJECT_MAX = MAX_ROUTING_KEY - 64
SUBJECT_PATTERN: dict[str, Any] = {"pattern": PATTERN["pattern"]}
Scope = Annotated[str, Field(json_schema_extra={"enum": list(SCOPES)})]
TopicPattern = Annotated[str, Field(json_schema_extra=PATTERN)]

EXAMPLE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["temperature"],
    "properties": {"temperature": {"type": "number"}, "unit": {"type": "string", "enum": ["C", "F"]}},
}


class TopicCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "sensor-reading",
                    "schema": EXAMPLE_SCHEMA,
                    "compatibility": "backward",
                    "retention_days": 30,
                    "description": "Readings from plant sensors",
                }
            ]
        },
    )

    name: str = Field(json_schema_extra=TOPIC_NAME)
    schema_: dict[str, Any] = Field(alias="schema")
    compatibility: Compatibility = Compatibility.NONE
    retention_days: float | None = Field(default=None, gt=0, le=36500)
    description: str | None = Field(default=None, max_length=2000)
    expose_publisher: StrictBool = Field(
        default=False,
        description="Send each event's `publisher` attribute (`<kind>:<subject>` of who published it) to "
        "subscribers and in history to everyone; otherwise only admins see it in history and exports",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_topic(v)


def refuse_null(value: T | None) -> T:
    """For a partial update's fields that cannot be null: absent keeps the stored value, `null` is a 422 naming
    the field (it would otherwise be stored and make the document unreadable)."""
    if value is None:
        raise ValueError("may not be null (leave the field out to keep its value)")
    return value


class TopicPatch(BaseModel):
    """Absent fields keep their value. `retention_days: null` keeps events forever, `description: null` clears
    it; `compatibility` cannot be null."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"compatibility": "full"}]})

    # `SkipJsonSchema[None]`: the default only means "absent"; the schema does not offer null.
    compatibility: Compatibility | SkipJsonSchema[None] = None
    retention_days: float | None = Field(default=None, gt=0, le=36500)
    description: str | None = Field(default=None, max_length=2000)
    # Not optional: null is refused as "not a boolean"; left out, the stored value stays (exclude_unset).
    expose_publisher: StrictBool = Field(
        default=False, description="See `TopicCreate.expose_publisher`; absent keeps the stored value"
    )

    # Validators do not run on defaults, so only an explicit null reaches them.
    _not_null = field_validator("compatibility")(refuse_null)


class SchemaUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra={"examples": [{"schema": EXAMPLE_SCHEMA}]}
    )

    schema_: dict[str, Any] = Field(alias="schema")


class TopicList(BaseModel):
    items: list[Topic]
    next: str | None = Field(default=None, description="Pass as `cursor` for the next page; null on the last")


class SchemaVersion(BaseModel):
    version: int
    dataschema: str
    created_at: datetime
    created_by: str | None = None


class SchemaVersionList(BaseModel):
    items: list[SchemaVersion]


class SchemaVersionBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    topic: str
    version: int
    dataschema: str
    schema_: dict[str, Any] = Field(alias="schema")


class EventPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "specversion": "1.0",
                            "id": "0192b0a4-7c1e-7d2a-9f00-1c2d3e4f5a6b",
                            "source": "/tributary/hub",
                            "type": "sensor-reading",
                            "subject": "plant1.line3",
                            "time": "2026-11-26T10:00:00.000001Z",
                            "dataschema": "/topics/sensor-reading/schemas/1",
                            "datacontenttype": "application/json",
                            "data": {"temperature": 21.5},
                        }
                    ],
                    "next": "WyIyMDI2LTExLTI2VDEwOjAwOjAwLjAwMDAwMVoiLCIwMTkyIl0",
                }
            ]
        }
    )

    items: list[dict[str, Any]]
    next: str | None = None


class LatestEvents(BaseModel):
    items: list[dict[str, Any]]


class SubscriptionView(BaseModel):
    source: str
    params: dict[str, Any]
    sid: str = Field(description="The subscription's identity, from its source and params")
    stepped: bool = Field(
        default=False,
        exclude_if=lambda v: not v,
        description="Historian reads hold the value between samples (no interpolation); shown when true",
    )


class UnitopView(BaseModel):
    name: str
    items: dict[str, SubscriptionView]
    meta: dict[str, MetaValue]
    record: bool
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    updated_by: str | None = None


class UnitopList(BaseModel):
    items: list[UnitopView]
    next: str | None = None


class SourceList(BaseModel):
    items: list[dict[str, Any]]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "line3-gateway", "scopes": ["events:publish"], "topics": ["sensor-reading.plant1.#"]}]
        },
    )

    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1, max_length=16)
    topics: list[TopicPattern] | None = Field(default=None, max_length=100)
    unitops: list[str] | None = Field(default=None, max_length=100)
    expires_at: datetime | None = Field(
        default=None, description="RFC 3339 with offset, in the future and at most 10 years ahead; none: never"
    )


class ApiKeyCreated(ApiKeyFields):
    id: str
    key: str = Field(description="The secret: shown once, store it now (only its hash is kept)")


class ApiKeyView(ApiKeyFields):
    id: str
    expired: bool = False
    last_used_at: datetime | None = Field(default=None, description=LAST_USED)


class ApiKeyList(BaseModel):
    items: list[ApiKeyView]


class AuditEntry(BaseModel):
    id: str
    time: str = Field(description="RFC 3339, UTC, microseconds")
    actor: str = Field(description="The subject of the credentials that made the change")
    action: str = Field(
        description="`topic.created`, `topic.updated`, `topic.schema_added`, `topic.deleted`, "
        "`unitop.created`, `unitop.updated`, `unitop.deleted`, `apikey.created`, `apikey.deleted`"
    )
    target: str = Field(description="The topic or unitop name, or the API key id")
    before: dict[str, Any] | None = Field(description="The resource before (secrets masked); null when created")
    after: dict[str, Any] | None = Field(description="The resource after (secrets masked); null when deleted")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next: str | None = None
