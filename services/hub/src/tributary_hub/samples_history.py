"""Sample history: raw rows in position order `(t, sid)` with cursor pages, and rows aligned to a fixed
interval with the last value carried forward (LOCF). Both stream from the database in chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from tributary_common.timeutil import format_time

from . import cursors

SORT_ASC = [("t", 1), ("sid", 1)]


def samples_filter(
    sids: Sequence[str],
    *,
    start: str | None = None,
    start_exclusive: bool = False,
    end: str | None = None,
    end_inclusive: bool = False,
    position: tuple[str, str] | None = None,
) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = [{"sid": {"$in": list(sids)}}]
    t_range: dict[str, str] = {}
    if start is not None:
        t_range["$gt" if start_exclusive else "$gte"] = start
    if end is not None:
        t_range["$lte" if end_inclusive else "$lt"] = end
    if t_range:
        clauses.append({"t": t_range})
    if position is not None:
        t, sid = position
        clauses.append({"$or": [{"t": {"$gt": t}}, {"t": t, "sid": {"$gt": sid}}]})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def row(doc: dict[str, Any]) -> dict[str, Any]:
    return {"sid": doc["sid"], "t": doc["t"], "v": doc.get("v"), "q": doc.get("q")}


class SampleHistory:
    def __init__(self, collection: AsyncCollection[Any], *, chunk_rows: int) -> None:
        self.collection = collection
        self.chunk_rows = chunk_rows

    async def page(self, query: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], str | None]:
        docs = await self.collection.find(query).sort(SORT_ASC).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = cursors.encode(docs[-1]["t"], docs[-1]["sid"]) if more and docs else None
        return [row(d) for d in docs], nxt

    async def stream(self, query: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        cursor = self.collection.find(query).sort(SORT_ASC).batch_size(self.chunk_rows)
        try:
            async for doc in cursor:
                yield row(doc)
        finally:
            await cursor.close()

    async def aligned(
        self, sids: Sequence[str], start: datetime, end: datetime, interval: timedelta
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """`(t, {sid: value})` at start, start+interval, … < end; each value the last one at or before t."""
        current: dict[str, Any] = {sid: None for sid in sids}
        first = format_time(start)
        for sid in sids:  # the value carried into the window
            before = await self.collection.find_one({"sid": sid, "t": {"$lte": first}}, sort=[("t", -1)])
            if before is not None:
                current[sid] = before.get("v")
        inside = self.stream(samples_filter(sids, start=first, start_exclusive=True, end=format_time(end)))
        pending: dict[str, Any] | None = None
        exhausted = False
        t = start
        while t < end:
            grid = format_time(t)
            while not exhausted:
                if pending is None:
                    try:
                        pending = await anext(inside)
                    except StopAsyncIteration:
                        exhausted = True
                        break
                if pending["t"] > grid:
                    break
                current[pending["sid"]] = pending["v"]
                pending = None
            yield grid, dict(current)
            t += interval
