"""Sample history: raw rows in position order `(t, sid)` with cursor pages, and rows aligned to a fixed
interval with the last value carried forward (LOCF). Both stream from the `SampleStore` bucket by bucket: rows of
several sids are a k-way merge of per-sid reads."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tributary_common.timeutil import parse_time

from . import cursors
from .sample_buckets import time_text, to_us
from .sample_store import SampleStore
from .sample_view import SampleView
from .series import Point

LAST_TIME = "9999-12-31T23:59:59.999999Z"


def _us(text: str) -> int | None:
    try:
        return to_us(parse_time(text))
    except (ValueError, OverflowError):
        return None


@dataclass(frozen=True)
class SampleQuery:
    """Rows of `sids` with `lo <= t < hi` (µs; None: unbounded), after `position` `(t, sid)` when set."""

    sids: tuple[str, ...]
    lo: int | None = None
    hi: int | None = None
    position: tuple[int, str] | None = None
    empty: bool = False  # a cursor past every time there can be

    def bounds(self, sid: str) -> tuple[int | None, int | None]:
        lo = self.lo
        if self.position is not None:
            t, after = self.position
            first = t + 1 if sid <= after else t
            lo = first if lo is None else max(lo, first)
        return lo, self.hi


def samples_filter(
    sids: Sequence[str],
    *,
    start: str | None = None,
    start_exclusive: bool = False,
    end: str | None = None,
    end_inclusive: bool = False,
    position: tuple[str, str] | None = None,
) -> SampleQuery:
    """The rows to read; times as `format_time` text. A cursor's time that is no time reads from the start,
    unless it sorts after every time there can be (as text did when samples were stored as text)."""
    lo = _us(start) if start is not None else None
    hi = _us(end) if end is not None else None
    if lo is not None and start_exclusive:
        lo += 1
    if hi is not None and end_inclusive:
        hi += 1
    at: tuple[int, str] | None = None
    empty = False
    if position is not None:
        t = _us(position[0])
        if t is not None:
            at = (t, position[1])
        else:
            empty = position[0] > LAST_TIME
    return SampleQuery(tuple(dict.fromkeys(sids)), lo, hi, at, empty)


def row(sid: str, p: Point) -> dict[str, Any]:
    return {"sid": sid, "t": time_text(p.t), "v": p.v, "q": p.q}


class SampleHistory:
    def __init__(self, store: SampleStore, *, chunk_rows: int) -> None:
        self.store = store
        self.chunk_rows = chunk_rows
        self.collection = SampleView(store)  # the old collection's counting and finding, read from buckets

    async def _sid_rows(self, sid: str, query: SampleQuery) -> AsyncIterator[tuple[int, str, Point]]:
        lo, hi = query.bounds(sid)
        async for chunk in self.store.points(sid, lo, hi):
            for p in chunk:
                yield p.t, sid, p

    async def _merged(self, query: SampleQuery) -> AsyncIterator[tuple[int, str, Point]]:
        if query.empty or not query.sids:
            return
        readers = [self._sid_rows(sid, query) for sid in query.sids]
        heap: list[tuple[int, str, int, Point]] = []
        try:
            for i, reader in enumerate(readers):
                first = await anext(reader, None)
                if first is not None:
                    heap.append((first[0], first[1], i, first[2]))
            heapq.heapify(heap)
            while heap:
                t, sid, i, p = heap[0]
                yield t, sid, p
                nxt = await anext(readers[i], None)
                if nxt is None:
                    heapq.heappop(heap)
                else:
                    heapq.heapreplace(heap, (nxt[0], nxt[1], i, nxt[2]))
        finally:
            for reader in readers:
                await reader.aclose()  # type: ignore[attr-defined]

    async def page(self, query: SampleQuery, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        rows: list[dict[str, Any]] = []
        more = False
        merged = self._merged(query)
        try:
            async for _, sid, p in merged:
                if len(rows) == limit:
                    more = True
                    break
                rows.append(row(sid, p))
        finally:
            await merged.aclose()  # type: ignore[attr-defined]
        nxt = cursors.encode(rows[-1]["t"], rows[-1]["sid"]) if more and rows else None
        return rows, nxt

    async def stream(self, query: SampleQuery) -> AsyncIterator[dict[str, Any]]:
        async for _, sid, p in self._merged(query):
            yield row(sid, p)

    async def aligned(
        self, sids: Sequence[str], start: datetime, end: datetime, interval: timedelta
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """`(t, {sid: value})` at start, start+interval, … < end; each value the last one at or before t."""
        step = interval // timedelta(microseconds=1)
        if step < 1:
            raise ValueError("an interval under 1 µs never reaches the end")  # callers refuse it first (a 422)
        current: dict[str, Any] = {sid: None for sid in sids}
        first, last = to_us(start), to_us(end)
        for sid in sids:  # the value carried into the window
            before = await self.store.at_or_before(sid, first)
            if before is not None:
                current[sid] = before.v
        inside = self._merged(SampleQuery(tuple(sids), first + 1, last))
        pending: tuple[int, str, Point] | None = None
        exhausted = False
        t = first
        try:
            while t < last:
                while not exhausted:
                    if pending is None:
                        pending = await anext(inside, None)
                        if pending is None:
                            exhausted = True
                            break
                    if pending[0] > t:
                        break
                    current[pending[1]] = pending[2].v
                    pending = None
                yield time_text(t), dict(current)
                t += step
        finally:
            await inside.aclose()  # type: ignore[attr-defined]
