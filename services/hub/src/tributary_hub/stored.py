"""Reading stored documents defensively: one document that no longer parses (written by an older release, by
hand, or by a bug) must never take a listing down for every caller.

`readable` yields the documents of a query that parse and skips the others; each unreadable document is logged
once and counted once per process (`tributary_hub_unreadable_documents_total{collection}`), not on every request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, TypeVar, cast

from beanie import Document
from beanie.odm.utils.parsing import parse_obj
from prometheus_client import Counter
from pydantic import ValidationError

from .errors import dotted

log = logging.getLogger(__name__)

UNREADABLE = Counter(
    "tributary_hub_unreadable_documents_total",
    "Stored documents skipped because they no longer parse (each counted once per process)",
    ["collection"],
)
# Bounded so that a collection full of bad documents cannot grow this set without limit; past it, a document
# may be reported again, which is harmless.
_REPORTED_MAX = 10_000
_reported: set[tuple[str, str]] = set()

D = TypeVar("D", bound=Document)
Sort = list[tuple[str, int]]


def problems(exc: ValidationError) -> str:
    """`field: message` for each problem, without the stored values (they may be large or secret)."""
    return "; ".join(dotted(exc, 5))


def report_unreadable(collection: str, doc_id: Any, exc: ValidationError) -> None:
    key = (collection, repr(doc_id))
    if key in _reported:
        return
    if len(_reported) >= _REPORTED_MAX:
        _reported.clear()
    _reported.add(key)
    UNREADABLE.labels(collection).inc()
    log.error("skipping an unreadable %s document %r: %s", collection, doc_id, problems(exc))


def parse_stored(model: type[D], raw: Mapping[str, Any]) -> D | None:
    """The document, or None when it does not parse (reported once)."""
    try:
        return cast(D, parse_obj(model, raw))
    except ValidationError as exc:
        report_unreadable(model.get_collection_name(), raw.get("_id"), exc)
        return None


async def readable(model: type[D], query: Mapping[str, Any], sort: Sort | None = None) -> AsyncGenerator[D]:
    """The documents of `query` (in `sort` order) that parse. Close it (`contextlib.aclosing`) when stopping
    early, so the database cursor is released at once."""
    cursor = model.get_pymongo_collection().find(dict(query))
    if sort:
        cursor = cursor.sort(sort)
    try:
        async for raw in cursor:
            doc = parse_stored(model, raw)
            if doc is not None:
                yield doc
    finally:
        await cursor.close()


async def insert_new(doc: Document, exists: Exception) -> None:
    """Insert `doc`, raising `exists` when a document with its `_id` is already there (a concurrent create)."""
    try:
        await doc.insert()
    except Exception as exc:
        if "E11000" in str(exc) or "duplicate" in str(exc).lower():
            raise exists from exc
        raise
