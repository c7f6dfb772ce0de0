"""Publishing (domain): request bodies -> validated CloudEvents. Every violation is reported with a JSON pointer
into the request body (`/data/temp`, or `/<index>/data/temp` in a batch).

Batch semantics: all or nothing. Every event of a batch is validated first; if any is invalid, none is
published and the 422 lists each invalid event's violations by index. Each event is then encoded once; an
envelope over `max_event_bytes` is a 413 naming its index (numbers can re-encode several times longer than a
client sent them, so the request body's size says little about what the recorder must store).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tributary_common.events import EVENT_ID_MAX, MAX_DATA_DEPTH, CloudEvent, EventIn
from tributary_common.ids import new_event_id
from tributary_common.json_depth import nests_deeper_than
from tributary_common.names import validate_subject
from tributary_common.telemetry import current_traceparent
from tributary_common.timeutil import utcnow

from .errors import Invalid, Loc, TooLarge, pointer, validation_details
from .schemas import violations
from .topic_lookup import TopicRef
from .topics import TopicService

DEFAULT_SOURCE = "/tributary/hub"


class CloudEventIn(BaseModel):
    """A structured CloudEvents 1.0 envelope sent with `Content-Type: application/cloudevents+json`.

    `time` and `dataschema` are set by the hub (a client's values are ignored); `type` must be the topic.
    """

    model_config = ConfigDict(extra="forbid")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=EVENT_ID_MAX)
    source: str = Field(min_length=1, max_length=1024)
    type: str
    subject: str | None = None
    time: str | None = None
    dataschema: str | None = None
    datacontenttype: Literal["application/json"] | None = None
    data: Any = None
    traceparent: str | None = None

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str | None) -> str | None:
        return None if v is None else validate_subject(v)


def _attribute_loc(loc: Loc, prefix: str, binary: bool) -> str:
    """A JSON pointer into the body; in binary mode an attribute is its `ce-` header (the body is `data`)."""
    if binary and loc and loc[0] != "data":
        return f"/headers/ce-{loc[0]}"
    return pointer(loc, prefix)


def parse_item(
    raw: Any, topic: str, *, envelope: bool, prefix: str = "", binary: bool = False
) -> tuple[EventIn | None, list[dict[str, str]]]:
    """The publish request of one event, or the problems with it. `binary`: `raw` holds the attributes of a
    CloudEvents HTTP binary-mode request (from its `ce-` headers) and its body as `data`."""
    if not isinstance(raw, dict):
        return None, [{"loc": prefix or "/", "msg": "an event must be a JSON object"}]
    try:
        if envelope:
            ce = CloudEventIn.model_validate(raw)
            if ce.type != topic:
                loc = _attribute_loc(("type",), prefix, binary)
                return None, [{"loc": loc, "msg": f"type {ce.type!r} must be the topic {topic!r}"}]
            return EventIn(data=ce.data, subject=ce.subject, id=ce.id, source=ce.source), []
        return EventIn.model_validate(raw), []
    except ValidationError as exc:
        return None, validation_details(exc, lambda loc: _attribute_loc(loc, prefix, binary))


def encode(event: CloudEvent, time_text: str, *, expose_publisher: bool) -> bytes:
    """The envelope exactly as `model_dump_json` writes it (fields, order, formats; `publisher` only when the topic
    exposes it), `time_text` its formatted time, by orjson: half the cost on the publish hot path."""
    fields = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "subject": event.subject,
        "time": time_text,
        "dataschema": event.dataschema,
        "datacontenttype": event.datacontenttype,
        "data": event.data,
        "traceparent": event.traceparent,
    }
    if expose_publisher:
        fields["publisher"] = event.publisher
    try:
        return orjson.dumps(fields)
    except orjson.JSONEncodeError:  # data nested one level short of pydantic's limit: pydantic decides
        return event.model_dump_json(exclude=None if expose_publisher else {"publisher"}).encode()


DEFAULT_MAX_EVENT_BYTES = 1024 * 1024


class EventFactory:
    def __init__(self, topics: TopicService, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.topics = topics
        self.max_event_bytes = max_event_bytes

    async def build(
        self,
        topic: str,
        raws: list[Any],
        *,
        envelope: bool,
        batch: bool,
        publisher: str | None = None,
        binary: bool = False,
    ) -> tuple[TopicRef, list[CloudEvent], list[bytes]]:
        """Validate every raw event against the topic's current schema (`Invalid` listing every problem), then
        encode each envelope (`TooLarge` listing every one over the limit); the bodies are what to publish.

        `publisher` is set on every event (the AMQP publisher sends it as a header for the recorder); the body
        carries it only when the topic has `expose_publisher`."""
        ref = await self.topics.resolve(topic)
        validator = await self.topics.validator(ref)
        problems: list[dict[str, str]] = []
        events: list[CloudEvent] = []
        traceparent = current_traceparent()
        now = utcnow()
        for index, raw in enumerate(raws):
            prefix = f"/{index}" if batch else ""
            item, item_problems = parse_item(raw, topic, envelope=envelope, prefix=prefix, binary=binary)
            if item is None:
                problems += item_problems
                continue
            if nests_deeper_than(item.data, MAX_DATA_DEPTH):
                problems.append({"loc": f"{prefix}/data", "msg": f"nests deeper than {MAX_DATA_DEPTH} levels"})
                continue
            found = violations(validator, item.data, f"{prefix}/data")
            if found:
                problems += [{"loc": v.loc, "msg": v.msg} for v in found]
                continue
            events.append(
                CloudEvent(
                    id=item.id or new_event_id(),
                    source=item.source or DEFAULT_SOURCE,
                    type=topic,
                    subject=item.subject,
                    time=now,
                    dataschema=ref.dataschema,
                    data=item.data,
                    traceparent=traceparent,
                    publisher=publisher,
                )
            )
        if problems:
            what = "events of the batch are" if batch else "event is"
            raise Invalid(
                f"the {what} invalid against {ref.dataschema}; nothing was published", problems, code="invalid_event"
            )
        time_text = now.isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"  # = format_time(now)
        bodies = [encode(e, time_text, expose_publisher=ref.expose_publisher) for e in events]
        too_large = [
            {"loc": f"/{index}" if batch else "/", "msg": f"the envelope encodes to {len(body)} bytes"}
            for index, body in enumerate(bodies)
            if len(body) > self.max_event_bytes
        ]
        if too_large:
            raise TooLarge(
                f"an event's encoded envelope may hold at most {self.max_event_bytes} bytes; nothing was published",
                too_large,
                code="event_too_large",
            )
        return ref, events, bodies
