"""Event history: queries by pattern and time range in position order `(time, id)`, cursor pages, the latest
event per subject, and streamed exports, read from the partitions `event_reads` visits. Subject patterns become
`$regex` filters on the stored routing key through the shared matcher (`pattern_to_regex`), so history selects
exactly what a binding would route.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from tributary_common.matcher import normalize_pattern, pattern_to_regex, pattern_topic
from tributary_common.timeutil import format_time

from . import cursors
from .errors import NotFound
from .event_reads import EventReader, Topic, order
from .event_subjects import latest as latest_events
from .event_view import AllEvents
from .exports import export
from .partitions import Partitions

log = logging.getLogger(__name__)
CSV_COLUMNS = ["id", "time", "type", "subject", "source", "dataschema", "traceparent", "data"]
PUBLISHER_COLUMN = "publisher"


def envelope(doc: dict[str, Any], admin: bool = False) -> dict[str, Any]:
    """A stored document as the CloudEvent it was (optional attributes only when set). The `publisher`
    extension attribute (who published it) for an admin, or for anyone when subscribers saw it too."""
    out: dict[str, Any] = {
        "specversion": "1.0",
        # Documents recorded before ids were per topic have no `eid`: their `_id` is the id.
        "id": doc.get("eid") or doc["_id"],
        "source": doc["source"],
        "type": doc["type"],
    }
    if doc.get("subject") is not None:
        out["subject"] = doc["subject"]
    out["time"] = doc["time"]
    out["dataschema"] = doc["dataschema"]
    out["datacontenttype"] = "application/json"
    out["data"] = orjson.loads(doc["data_json"])
    if doc.get("traceparent"):
        out["traceparent"] = doc["traceparent"]
    if doc.get("publisher") and (admin or doc.get("publisher_exposed")):
        out["publisher"] = doc["publisher"]
    return out


def after(position: tuple[str, str]) -> dict[str, Any]:
    t, id_ = position
    return {"$or": [{"time": {"$gt": t}}, {"time": t, "_id": {"$gt": id_}}]}


def event_filter(
    *,
    pattern: str = "#",
    topic: str | None = None,
    start: str | None = None,
    end: str | None = None,
    end_inclusive: bool = False,
    position: tuple[str, str] | None = None,
    atomic: bool = True,
) -> dict[str, Any]:
    """`pattern` runs over the full routing key; `topic` narrows by the indexed type field when known.
    `atomic`: the regex dialect of the server (see `pattern_to_regex`; `EventHistory.filter` picks it)."""
    clauses: list[dict[str, Any]] = []
    pattern = normalize_pattern(pattern)
    if topic is None:
        topic = pattern_topic(pattern)
    if topic is not None:
        clauses.append({"type": topic})
    if pattern not in ("#", f"{topic}.#"):
        clauses.append({"key": {"$regex": pattern_to_regex(pattern, atomic=atomic)}})
    time_range: dict[str, str] = {}
    if start is not None:
        time_range["$gte"] = start
    if end is not None:
        time_range["$lte" if end_inclusive else "$lt"] = end
    if time_range:
        clauses.append({"time": time_range})
    if position is not None:
        clauses.append(after(position))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass(frozen=True)
class EventQuery:
    """A history selection as both edges ask for it: `start` inclusive, `end` exclusive unless `end_inclusive`,
    from after `cursor` (a previous page's `next`) or after the event `after_id` (an unknown id is `NotFound`)."""

    pattern: str
    topic: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    end_inclusive: bool = False
    cursor: str | None = None
    after_id: str | None = None


@dataclass(frozen=True)
class Selection:
    """What `EventHistory.select` resolved: the topics to visit and the filter's terms (times as stored)."""

    topics: list[Topic]
    pattern: str
    topic: str | None
    start: str | None
    end: str | None
    end_inclusive: bool
    position: tuple[str, str] | None

    def resumed(self, position: tuple[str, str]) -> Selection:
        return replace(self, position=position)

    @property
    def lower(self) -> str | None:
        """The earliest time a match can have."""
        times = [t for t in (self.start, self.position[0] if self.position else None) if t is not None]
        return max(times) if times else None


class EventHistory:
    def __init__(
        self, partitions: Partitions, topics: AsyncCollection[Any], *, chunk_rows: int, latest_max_subjects: int
    ) -> None:
        self.reader = EventReader(partitions, topics)
        self.partitions = partitions
        self.collection = AllEvents(partitions, self.reader)  # every partition at once: tools and tests
        self.chunk_rows = chunk_rows
        self.latest_max_subjects = latest_max_subjects
        self._atomic: bool | None = None

    async def regex_atomic(self) -> bool:
        """Whether the server's `$regex` has atomic groups: MongoDB (PCRE) does and needs them against
        backtracking; FerretDB (Go's RE2) refuses them and runs in linear time without. Asked once."""
        if self._atomic is None:
            try:
                info = await self.partitions.db.command("buildInfo")
                self._atomic = "ferretdbVersion" not in info
            except PyMongoError as exc:
                log.warning("buildInfo failed (%s); assuming a MongoDB regex engine", exc)
                return True
            log.info("history regex dialect: %s", "PCRE (atomic groups)" if self._atomic else "RE2")
        return self._atomic

    async def filter(self, **kwargs: Any) -> dict[str, Any]:
        """`event_filter` in this server's regex dialect."""
        return event_filter(**kwargs, atomic=await self.regex_atomic())

    async def select(self, q: EventQuery) -> Selection:
        """The selection of `q`: its topics, its cursor (or the position of `after_id`) and time range."""
        position: tuple[str, ...] | None = None
        if q.cursor:
            position = cursors.decode(q.cursor)
        elif q.after_id:
            position = await self.position_of(q.after_id, q.pattern)
        return Selection(
            topics=await self.reader.topics_for(normalize_pattern(q.pattern), q.topic),
            pattern=q.pattern,
            topic=q.topic,
            start=format_time(q.start) if q.start else None,
            end=format_time(q.end) if q.end else None,
            end_inclusive=q.end_inclusive,
            position=(position[0], position[1]) if position else None,
        )

    async def position_of(self, event_id: str, pattern: str = "#") -> tuple[str, str]:
        """The position of the event with that id. Ids are unique per topic: the pattern's topic (when it names
        one) picks the event; over several topics the earliest with that id, so that a resume never skips one."""
        found = [await self.reader.by_id(t, event_id) for t in await self.reader.topics_for(normalize_pattern(pattern))]
        docs = sorted((d for d in found if d is not None), key=order)
        if not docs:
            raise NotFound(f"no recorded event with id {event_id!r}", code="unknown_event")
        return docs[0]["time"], docs[0]["_id"]

    async def event(self, topic: str, event_id: str, *, admin: bool = False) -> dict[str, Any] | None:
        """One event by its id, or None."""
        for t in await self.reader.topics_for(topic, topic):
            doc = await self.reader.by_id(t, event_id)
            if doc is not None:
                return envelope(doc, admin)
        return None

    async def _docs(self, sel: Selection, limit: int) -> list[dict[str, Any]]:
        query = await self.filter(
            pattern=sel.pattern,
            topic=sel.topic,
            start=sel.start,
            end=sel.end,
            end_inclusive=sel.end_inclusive,
            position=sel.position,
        )
        parts = await self.reader.parts(sel.topics, sel.lower, sel.end)
        return await self.reader.first(parts, query, limit)

    async def page(self, sel: Selection, limit: int, *, admin: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """Up to `limit` envelopes oldest first, and the cursor of the next page (None when there is none)."""
        docs = await self._docs(sel, limit + 1)
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = cursors.encode(docs[-1]["time"], docs[-1]["_id"]) if more and docs else None
        return [envelope(d, admin) for d in docs], nxt

    async def stream(self, sel: Selection, *, admin: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Every matching envelope, oldest first, read a chunk at a time: never the whole result in memory."""
        while True:
            docs = await self._docs(sel, self.chunk_rows)
            for doc in docs:
                yield envelope(doc, admin)
            if len(docs) < self.chunk_rows:
                return
            sel = sel.resumed(order(docs[-1]))

    async def latest(self, topic: str, pattern: str, *, admin: bool = False) -> list[dict[str, Any]]:
        """The newest event of each subject under `pattern`, from the topic's newest partitions."""
        query = await self.filter(pattern=pattern, topic=topic)
        docs = [
            d for t in await self.reader.topics_for(topic, topic) for d in await latest_events(self.reader, t, query)
        ]
        return [envelope(d, admin) for d in docs[: self.latest_max_subjects]]


def _data_cell(data: Any) -> Any:
    """The event's JSON; a bare number as the number, so that it stays numeric in the sheet."""
    if isinstance(data, int | float) and not isinstance(data, bool):
        return data
    return orjson.dumps(data).decode()


def csv_header(publisher: bool) -> list[str]:
    """`publisher`: a last column with who published each event (an admin's export)."""
    return [*CSV_COLUMNS, PUBLISHER_COLUMN] if publisher else CSV_COLUMNS


def csv_cells(publisher: bool) -> Callable[[dict[str, Any]], list[Any]]:
    """An envelope as its CSV row; `data` is the event's JSON, the publisher empty where none was recorded."""

    def cells(item: dict[str, Any]) -> list[Any]:
        return [
            item["id"],
            item["time"],
            item["type"],
            item.get("subject", ""),
            item["source"],
            item["dataschema"],
            item.get("traceparent", ""),
            _data_cell(item["data"]),
            *([item.get("publisher", "")] if publisher else []),
        ]

    return cells


def export_events(
    fmt: str, items: AsyncIterator[dict[str, Any]], chunk_rows: int, *, publisher: bool = False
) -> AsyncIterator[bytes]:
    """Events as `fmt` (`csv`, `jsonl` or `ndjson`)."""
    return export(fmt, items, chunk_rows, csv_header(publisher), csv_cells(publisher))
