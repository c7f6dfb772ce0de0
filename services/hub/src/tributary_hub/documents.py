"""The hub's MongoDB collections (beanie documents) and their indexes.

Times that order things (event `time`, sample `t`) are stored as fixed-width RFC 3339 strings with
microseconds (`tributary_common.timeutil.format_time`): they sort like the times they name and keep the
microseconds a BSON date would drop. `expire_at` is a BSON date for the retention mechanism.

Client-supplied JSON (schemas, event data, subscription params) is stored as JSON text: field names such as
`$schema` or `a.b` are refused by some servers (FerretDB), and a message that can never be written must not
block the recorder.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pymongo
from beanie import Document
from pydantic import BaseModel, Field
from pymongo import IndexModel

from .compatibility import Compatibility


class TopicDoc(Document):
    id: str  # type: ignore[assignment]  # the topic name
    uid: str  # changes when a topic is deleted and created again, so caches never mix generations
    # The generation's id directory shards (partitions.py), fixed at creation; None: created before it was kept (8).
    id_shards: int | None = None
    version: int
    compatibility: Compatibility = Compatibility.NONE
    retention_days: float | None = None
    description: str | None = None
    expose_publisher: bool = False  # subscribers see the `publisher` attribute of its events
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None  # None: written before who-did-what was kept
    updated_by: str | None = None

    class Settings:
        name = "topics"


class SchemaDoc(Document):
    id: str  # type: ignore[assignment]  # "<topic>/<uid>/<version>"
    topic: str
    uid: str
    version: int
    schema_text: str
    created_at: datetime
    created_by: str | None = None

    class Settings:
        name = "schemas"
        indexes = [IndexModel([("topic", pymongo.ASCENDING), ("version", pymongo.ASCENDING)], name="topic_version")]


def event_key(topic: str, event_id: str) -> str:
    """An event's `_id`: ids are unique per topic, so the same id on two topics is two events. A topic name
    never holds `/`, so the key is unambiguous. Events are stored by `event_store` in the collections that
    `partitions` names (the single `events` collection of earlier releases is moved there by `migrate`)."""
    return f"{topic}/{event_id}"


class DeadLetterDoc(Document):
    """A dead letter kept for admins (fields: deadletters.letter_document); `_id` is the letter id."""

    id: str  # type: ignore[assignment]
    time: str
    reason: str
    queue: str

    class Settings:
        name = "deadletters"
        indexes = [
            IndexModel([("time", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)], name="pos"),
            IndexModel(
                [("reason", pymongo.ASCENDING), ("time", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
                name="reason_pos",
            ),
            IndexModel(
                [("queue", pymongo.ASCENDING), ("time", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
                name="queue_pos",
            ),
        ]


# Samples were one document per sample in `samples` (`_id` = `<sid>|<t>`, fields sid, source, t, v, q); they
# are now hourly buckets (sample_store.py), and `tributary-hub migrate` moves what is left there.
LEGACY_SAMPLES = "samples"


class UnitopDoc(Document):
    id: str  # type: ignore[assignment]  # the unitop name
    items: dict[str, dict[str, str]]  # item -> {"source", "sid", "params_json"}
    meta: dict[str, Any] = Field(default_factory=dict)
    record: bool = False
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    updated_by: str | None = None

    class Settings:
        name = "unitops"
        indexes = [IndexModel([("record", pymongo.ASCENDING)], name="record")]


class SourceInstanceDoc(Document):
    """The last announcement of one ingest instance for one source; `_id` is `<source>/<instance_id>`."""

    id: str  # type: ignore[assignment]
    source: str
    instance_id: str
    subscription_schema_text: str
    capacity: int
    free: int
    leases: int
    ttl_s: float
    sent_at: datetime
    received_at: datetime

    class Settings:
        name = "source_instances"
        indexes = [IndexModel([("source", pymongo.ASCENDING), ("received_at", pymongo.DESCENDING)], name="source_seen")]


class ApiKeyFields(BaseModel):
    """What the document and the API's views of an API key share: all but its secret's hash and last use."""

    name: str
    scopes: list[str]
    topics: list[str] | None = None
    unitops: list[str] | None = None
    created_by: str
    created_at: datetime
    updated_by: str | None = None
    updated_at: datetime | None = None
    expires_at: datetime | None = None  # refused from then on (None: never)


LAST_USED = "Last use, to within a minute (written at most once a minute per hub process)"


class ApiKeyDoc(Document, ApiKeyFields):
    """An API key: only the SHA-256 of the secret is kept."""

    id: str  # type: ignore[assignment]  # public key id
    key_hash: str
    last_used_at: datetime | None = Field(default=None, description=LAST_USED)

    class Settings:
        name = "api_keys"
        indexes = [IndexModel([("key_hash", pymongo.ASCENDING)], name="key_hash", unique=True)]


class AuditDoc(Document):
    """One administrative change: who, what, on what, when, and the resource before and after (JSON text:
    schemas hold `$` keys; unitop params' secrets masked)."""

    id: str  # type: ignore[assignment]  # time-ordered: "<time>-<random>"
    time: str  # format_time: sorts like the time
    actor: str
    action: str  # "<kind>.<verb>": topic.created, unitop.deleted, apikey.created, ...
    target: str
    before_json: str | None = None
    after_json: str | None = None

    class Settings:
        name = "audit"
        indexes = [IndexModel([("time", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)], name="time_id")]


ALL_DOCUMENTS: list[type[Document]] = [
    AuditDoc,
    TopicDoc,
    SchemaDoc,
    UnitopDoc,
    SourceInstanceDoc,
    ApiKeyDoc,
    DeadLetterDoc,
]
