"""Methods the hub answers on `tributary.rpc.hub` (see `amqp.RpcClient.call`), with their request and reply models.

History is ordered by position `(time, id)`, oldest first; `next` is an opaque cursor for the next page
(None on the last page). `after_id` resumes after the event with that id (its position is looked up);
`since` resumes from a time (inclusive).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .amqp.topology import RPC_HUB, source_rpc_queue
from .events import CloudEvent, UtcTime
from .samples import Quality, SampleValue
from .unitops import Unitop

HUB_QUEUE = RPC_HUB.name
MAX_PAGE = 1000

EVENTS_HISTORY = "events.history"
SAMPLES_HISTORY = "samples.history"
UNITOP_RESOLVE = "unitop.resolve"
APIKEY_VERIFY = "apikey.verify"


class EventsHistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: str = "#"  # over the full routing key `<topic>[.<subject>]`
    since: datetime | None = None
    after_id: str | None = None
    until: datetime | None = None
    limit: int = Field(default=500, ge=1, le=MAX_PAGE)
    cursor: str | None = None


class EventsHistoryPage(BaseModel):
    items: list[CloudEvent]
    next: str | None = None


class SamplesHistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sids: list[str] = Field(min_length=1, max_length=1000)
    since: datetime | None = None  # exclusive: samples with t > since
    until: datetime | None = None  # inclusive
    limit: int = Field(default=500, ge=1, le=MAX_PAGE * 10)
    cursor: str | None = None


class SampleRow(BaseModel):
    sid: str
    t: UtcTime
    v: SampleValue
    q: Quality = None


class SamplesHistoryPage(BaseModel):
    """Rows ordered by `(t, sid)`."""

    items: list[SampleRow]
    next: str | None = None


class UnitopResolveRequest(BaseModel):
    name: str


class UnitopResolved(BaseModel):
    unitop: Unitop
    # item name -> sid, so that the caller need not recompute them
    sids: dict[str, str]


class ApiKeyVerifyRequest(BaseModel):
    key: str
    # Bypass the hub's verdict cache (the stream re-verifying the keys of open streams).
    fresh: bool = False


class ApiKeyVerified(BaseModel):
    """The claims of the key's principal (`sub`, `scope`, optional `topics`/`unitops`), or None if unknown."""

    claims: dict[str, Any] | None


# -- browsing a source: the hub asks an ingest instance that serves it ------------------------------------------

SOURCE_BROWSE = "source.browse"
MAX_BROWSE_ITEMS = 1000


def source_queue(source: str) -> str:
    """The RPC queue of one source: every ingest instance serving it consumes it, and one of them answers."""
    return source_rpc_queue(source).name


class BrowseRequest(BaseModel):
    """What can be subscribed under `path`. `params` are the connection part of a subscription's params (the
    endpoint, broker or folder, credentials as secret references), validated by the connector."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(default="", max_length=1024)
    params: dict[str, Any] = Field(default_factory=dict)
    limit: int = Field(default=200, ge=1, le=MAX_BROWSE_ITEMS)


class BrowseItem(BaseModel):
    name: str = Field(max_length=1024)
    # Pass as `path` to browse under this item.
    path: str = Field(max_length=4096)
    kind: str = Field(max_length=64)  # "folder", "object", "variable", "topic", "column", "file" ...
    has_children: bool = False
    # The subscription params that read this item (None: not readable itself).
    params: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=1024)


class BrowseResult(BaseModel):
    source: str
    path: str
    items: list[BrowseItem]
    truncated: bool = False
    # Why nothing can be listed, or how to read the listing (Modbus: configuration only).
    note: str | None = None
    instance_id: str | None = None
