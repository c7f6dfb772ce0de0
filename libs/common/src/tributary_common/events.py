"""The CloudEvents 1.0 envelope (structured JSON mode) and the publish request body."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from .names import routing_key, validate_subject, validate_topic
from .timeutil import format_time

UtcTime = Annotated[datetime, PlainSerializer(format_time, return_type=str)]
TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
EVENT_ID_MAX = 256
# Who published an event: `<kind>:<subject>` (kind `token` or `api_key`), the CloudEvents extension attribute
# `publisher`. The hub always sends it in this AMQP header (the recorder keeps it beside the envelope); the
# envelope itself carries it only for a topic with `expose_publisher`, so subscribers see it only then.
PUBLISHER_HEADER = "tributary-publisher"
PUBLISHER_MAX = 512
# How deep an event's `data` may nest: every reader of the events must decode what the hub accepts. pydantic's JSON
# parser (the recorder's) stops at 200 levels and orjson writes 254 at most, so deeper data was accepted and then
# dead-lettered, never recorded; 100 is also MongoDB's own nesting limit.
MAX_DATA_DEPTH = 100


def publisher_of(kind: str, subject: str) -> str:
    """The `publisher` value of a principal, bounded (a token's `sub` is whatever the issuer put there): an API
    key as `api_key:<key id>` (its subject's own `apikey:` prefix dropped), a token as `token:<sub>`; the kind
    keeps a token whose `sub` looks like a key id apart from the key."""
    if kind == "api_key":
        subject = subject.removeprefix("apikey:")
    return f"{kind}:{subject}"[:PUBLISHER_MAX]


def dataschema_for(topic: str, version: int) -> str:
    return f"/topics/{topic}/schemas/{version}"


class CloudEvent(BaseModel):
    """What travels on `tributary.events` and what history returns."""

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=EVENT_ID_MAX)
    source: str = Field(min_length=1, max_length=1024)
    type: str
    subject: str | None = None
    time: UtcTime
    dataschema: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: Any = None
    traceparent: str | None = None
    publisher: str | None = Field(default=None, min_length=1, max_length=PUBLISHER_MAX)

    @field_validator("type")
    @classmethod
    def _type_is_topic(cls, v: str) -> str:
        return validate_topic(v)

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        return None if v is None else validate_subject(v)

    @field_validator("traceparent")
    @classmethod
    def _traceparent(cls, v: str | None) -> str | None:
        if v is not None and not TRACEPARENT_RE.fullmatch(v):
            raise ValueError("traceparent must be a W3C trace context: 00-<32 hex>-<16 hex>-<2 hex>")
        return v

    @property
    def routing_key(self) -> str:
        return routing_key(self.type, self.subject)


class EventIn(BaseModel):
    """Body of `POST /topics/{topic}/events` (and one line of a batch)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"data": {"temperature": 21.5}, "subject": "plant1.line3"}]},
    )

    data: Any
    subject: str | None = None
    id: str | None = Field(default=None, min_length=1, max_length=EVENT_ID_MAX)
    source: str | None = Field(default=None, min_length=1, max_length=1024)

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        return None if v is None else validate_subject(v)


class PublishAccepted(BaseModel):
    id: str
    dataschema: str


class BatchAccepted(BaseModel):
    ids: list[str]
    dataschema: str
