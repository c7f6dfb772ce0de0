"""`SeriesStore` over the one-document-per-sample collection (`SampleDoc`): times stored as `format_time`
strings, which sort like the instants they name. Summaries are computed here from the raw samples: correct, and
as slow as reading them; the bucketed store replaces this adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from .historian.times import from_iso, iso
from .series import Point, Summary, summarize


def _point(doc: dict[str, Any]) -> Point:
    return Point(from_iso(doc["t"]), doc.get("v"), doc.get("q"))


PROJECTION = {"_id": 0, "t": 1, "v": 1, "q": 1}


class DocSeriesStore:
    def __init__(self, collection: AsyncCollection[Any], *, chunk: int = 1000) -> None:
        self.collection = collection
        self.chunk = chunk

    @staticmethod
    def _filter(sid: str, start: int | None, end: int | None) -> dict[str, Any]:
        t: dict[str, str] = {}
        if start is not None:
            t["$gte"] = iso(start)
        if end is not None:
            t["$lt"] = iso(end)
        return {"sid": sid, "t": t} if t else {"sid": sid}

    async def points(
        self, sid: str, start: int | None = None, end: int | None = None, *, descending: bool = False
    ) -> AsyncIterator[list[Point]]:
        cursor = (
            self.collection.find(self._filter(sid, start, end), PROJECTION)
            .sort("t", -1 if descending else 1)
            .batch_size(self.chunk)
        )
        chunk: list[Point] = []
        try:
            async for doc in cursor:
                chunk.append(_point(doc))
                if len(chunk) >= self.chunk:
                    yield chunk
                    chunk = []
        finally:
            await cursor.close()
        if chunk:
            yield chunk

    async def _one(self, query: dict[str, Any], order: int) -> Point | None:
        doc = await self.collection.find_one(query, PROJECTION, sort=[("t", order)])
        return None if doc is None else _point(doc)

    async def latest(self, sids: Sequence[str]) -> dict[str, Point]:
        out: dict[str, Point] = {}
        for sid in sids:
            p = await self._one({"sid": sid}, -1)
            if p is not None:
                out[sid] = p
        return out

    async def at_or_before(self, sid: str, t: int) -> Point | None:
        return await self._one({"sid": sid, "t": {"$lte": iso(t)}}, -1)

    async def at_or_after(self, sid: str, t: int) -> Point | None:
        return await self._one({"sid": sid, "t": {"$gte": iso(t)}}, 1)

    async def summaries(self, sid: str, start: int, end: int, resolution: int) -> AsyncIterator[list[Summary]]:
        out: list[Summary] = []
        span: list[Point] = []
        span_start = start
        async for chunk in self.points(sid, start, end):
            for p in chunk:
                if p.t >= span_start + resolution:
                    self._close(out, span, span_start, resolution)
                    span = []
                    span_start = p.t - (p.t - start) % resolution
                span.append(p)
            if len(out) >= self.chunk:
                yield out
                out = []
        self._close(out, span, span_start, resolution)
        if out:
            yield out

    @staticmethod
    def _close(out: list[Summary], span: list[Point], start: int, resolution: int) -> None:
        summary = summarize(span, start, start + resolution)
        if summary is not None:
            out.append(summary)
