"""The stream's websocket frames as models: what the AsyncAPI document publishes and what the stream's tests hold
its parser and encoders to (the stream parses client frames by hand, for error messages that name the field).

Client frames carry `op`; server frames carry `type`. SSE sends the same server frames as `data:` (an `event`
frame's SSE data is the CloudEvent itself, a `samples` frame's data has no `type` and `sub`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .events import CloudEvent, UtcTime
from .samples import Sample

SUB_ID_MAX = 128


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventsSinceMark(_Frame):
    """Resume after an event id (preferred) or from a time: a `gap` frame's `last`."""

    id: str | None = Field(default=None, min_length=1)
    time: UtcTime | None = None


class EventsSpec(_Frame):
    pattern: str = Field(description="Over the full routing key: `orders.eu.#` = topic orders, subjects under eu")
    since: UtcTime | str | EventsSinceMark | None = Field(
        default=None, description="A time (RFC 3339 with offset), an event id, or a gap frame's `last`"
    )


class UnitopSinceMark(_Frame):
    time: UtcTime | None = None
    items: dict[str, UtcTime] | None = None


class UnitopSpec(_Frame):
    name: str
    items: list[str] | None = Field(default=None, min_length=1)
    since: UtcTime | UnitopSinceMark | None = None


class SubscribeEventsFrame(_Frame):
    op: Literal["subscribe"]
    id: str = Field(min_length=1, max_length=SUB_ID_MAX)
    events: EventsSpec


class SubscribeUnitopFrame(_Frame):
    op: Literal["subscribe"]
    id: str = Field(min_length=1, max_length=SUB_ID_MAX)
    unitop: UnitopSpec


class UnsubscribeFrame(_Frame):
    op: Literal["unsubscribe"]
    id: str = Field(min_length=1, max_length=SUB_ID_MAX)


class PingFrame(_Frame):
    op: Literal["ping"]
    id: str | None = Field(default=None, max_length=SUB_ID_MAX)


class EventFrame(_Frame):
    type: Literal["event"]
    sub: str
    event: CloudEvent


class SamplesFrame(_Frame):
    type: Literal["samples"]
    sub: str
    unitop: str
    item: str
    sid: str
    samples: list[Sample]


class GapFrame(_Frame):
    """Messages were lost for this subscription (slow client, broker outage): resubscribe with `since: last`."""

    model_config = ConfigDict(extra="allow")  # a reason may carry details (e.g. how many were dropped)

    type: Literal["gap"]
    sub: str
    last: EventsSinceMark | UnitopSinceMark | None
    reason: str


class ErrorFrame(_Frame):
    type: Literal["error"]
    id: str | None
    code: str
    message: str


class SubscribedFrame(_Frame):
    type: Literal["subscribed"]
    id: str
    events: dict[str, Any] | None = Field(default=None, description="`{pattern}`")
    unitop: dict[str, Any] | None = Field(default=None, description="`{name, items: {item: sid}}`")


class UnsubscribedFrame(_Frame):
    type: Literal["unsubscribed"]
    id: str
    reason: str | None = Field(default=None, description="Set when the server ended it (e.g. `unitop_deleted`)")


class PongFrame(_Frame):
    type: Literal["pong"]
    id: str | None


class SseSamples(_Frame):
    """The data of an SSE `event: samples` record (an `event: event` record's data is the CloudEvent itself)."""

    unitop: str
    item: str
    sid: str
    samples: list[Sample]


CLIENT_FRAMES = (SubscribeEventsFrame, SubscribeUnitopFrame, UnsubscribeFrame, PingFrame)
SERVER_FRAMES = (
    EventFrame,
    SamplesFrame,
    GapFrame,
    ErrorFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    PongFrame,
)
