"""Messages on `tributary.control`: demand heartbeats, source announcements, unitop changes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .amqp.topology import demand_key, source_key, unitop_key
from .events import UtcTime
from .unitops import Unitop


class DemandedSubscription(BaseModel):
    """A subscription of the demand's source; `sid` is carried so that receivers need not recompute it."""

    model_config = ConfigDict(extra="forbid")

    sid: str
    params: dict[str, Any] = Field(default_factory=dict)


class Demand(BaseModel):
    """ "Please keep reading these": sent every `interval_s` by whoever needs the subscriptions.

    Routing key `demand.<source>`. Demand for a sid lapses when no heartbeat names it for `ttl_s`.
    """

    model_config = ConfigDict(extra="forbid")

    source: str
    requester: str
    subscriptions: list[DemandedSubscription]
    ttl_s: float = Field(gt=0)
    sent_at: UtcTime


class SourceAnnouncement(BaseModel):
    """An ingest instance says which source it serves. Routing key `source.<source>`."""

    model_config = ConfigDict(extra="forbid")

    source: str
    instance_id: str
    subscription_schema: dict[str, Any]
    capacity: int
    free: int
    leases: int
    ttl_s: float = Field(gt=0)
    sent_at: UtcTime


class UnitopChange(BaseModel):
    """A unitop was created, updated or deleted. Routing key `unitop.<name>`."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["created", "updated", "deleted"]
    name: str
    unitop: Unitop | None = None
    sent_at: UtcTime


ControlMessage = Demand | SourceAnnouncement | UnitopChange


def control_key(message: ControlMessage) -> str:
    """Its routing key on `tributary.control`."""
    if isinstance(message, Demand):
        return demand_key(message.source)
    if isinstance(message, SourceAnnouncement):
        return source_key(message.source)
    return unitop_key(message.name)
