"""Historian reads of a unitop's items over a `SeriesStore`: current values, the newest N, range boundaries,
values at times (a wide table), plot values and summaries per interval. Each read holds at most one item's
intervals, or one block of times × items, in memory; rows are produced as they are computed."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

from ..series import Point, SeriesStore, Summary
from ..unitop_samples import ItemSelection
from .calcs import calculate
from .interpolate import NO_DATA, value_between
from .intervals import fold, grid, snapped_edges
from .plot import plot_points
from .times import iso

Row = dict[str, Any]
T = TypeVar("T")


@contextlib.asynccontextmanager
async def closing(chunks: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """`chunks` closed on leaving, read to the end or not (a generator's open cursor is released now)."""
    try:
        yield chunks
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def sample_row(item: str, sid: str, p: Point | None) -> Row:
    """A raw row (`/samples`' shape); no sample: null time and value, quality `no_data`."""
    if p is None:
        return {"item": item, "sid": sid, "t": None, "v": None, "q": NO_DATA}
    return {"item": item, "sid": sid, "t": iso(p.t), "v": p.v, "q": p.q}


def point_json(p: Point) -> Row:
    return {"t": iso(p.t), "v": p.v, "q": p.q}


def _order(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["t"] or "", r["sid"], r["item"]))


async def values_at(store: SeriesStore, sid: str, times: Sequence[int], stepped: bool) -> list[Point]:
    """The value of `sid` at each of `times` (ascending), reading the samples between them once."""
    before = await store.at_or_before(sid, times[0] - 1)
    out: list[Point] = []
    async with closing(store.points(sid, times[0], times[-1] + 1)) as chunks:
        async for chunk in chunks:
            for p in chunk:
                while len(out) < len(times) and p.t > times[len(out)]:
                    out.append(value_between(before, p, times[len(out)], stepped))
                before = p
    if len(out) < len(times):
        after = await store.at_or_after(sid, times[-1] + 1)
        out.extend(value_between(before, after, t, stepped) for t in times[len(out) :])
    return out


class Historian:
    def __init__(self, store: SeriesStore, *, block_cells: int) -> None:
        self.store = store
        self.block_cells = block_cells

    async def current(self, sel: ItemSelection) -> list[Row]:
        latest = await self.store.latest(list(sel.items_of))
        return [sample_row(item, sid, latest.get(sid)) for item, sid in sel.sids.items()]

    async def last(self, sel: ItemSelection, n: int, start: int | None, end: int | None) -> list[Row]:
        """The newest `n` samples of each item within the range, ordered like raw rows."""
        rows: list[Row] = []
        for sid, items in sel.items_of.items():
            newest: list[Point] = []
            async with closing(self.store.points(sid, start, end, descending=True)) as chunks:
                async for chunk in chunks:
                    newest.extend(chunk[: n - len(newest)])
                    if len(newest) >= n:
                        break
            rows.extend(sample_row(item, sid, p) for p in newest for item in items)
        return _order(rows)

    async def boundaries(
        self, sel: ItemSelection, start: int | None, end: int | None, mode: str
    ) -> tuple[list[Row], list[Row]]:
        """Rows to put before and after a raw range `[start, end)`: `outside`, the sample before `start` (when
        none is at it) and the one at or after `end`; `interpolated`, the values at `start` (when no sample is
        at it) and at `end`; `inside`, nothing."""
        head: list[Row] = []
        tail: list[Row] = []
        if mode == "inside":
            return head, tail
        for item, sid in sel.sids.items():
            stepped = item in sel.stepped
            if start is not None:
                at = await self.store.at_or_before(sid, start)
                if at is not None and at.t < start:
                    if mode == "outside":
                        head.append(sample_row(item, sid, at))
                    else:
                        p = value_between(at, await self.store.at_or_after(sid, start), start, stepped)
                        head.append(sample_row(item, sid, p))
            if end is not None:
                after = await self.store.at_or_after(sid, end)
                if mode == "outside":
                    if after is not None:
                        tail.append(sample_row(item, sid, after))
                else:
                    p = value_between(await self.store.at_or_before(sid, end), after, end, stepped)
                    if p.v is not None or p.q != NO_DATA:
                        tail.append(sample_row(item, sid, p))
        return _order(head), _order(tail)

    async def interpolated(self, sel: ItemSelection, times: Sequence[int]) -> AsyncIterator[Row]:
        """`{t, values: {item: v}, quality: {item: q}}` per time, computed a block of times at a time."""
        block = max(1, self.block_cells // len(sel.items))
        for i in range(0, len(times), block):
            part = times[i : i + block]
            columns = {
                item: await values_at(self.store, sid, part, item in sel.stepped) for item, sid in sel.sids.items()
            }
            for k, t in enumerate(part):
                yield {
                    "t": iso(t),
                    "values": {item: col[k].v for item, col in columns.items()},
                    "quality": {item: col[k].q for item, col in columns.items()},
                }

    async def plot(self, sel: ItemSelection, start: int, end: int, intervals: int) -> AsyncIterator[Row]:
        """Per item and interval `{item, start, end, points}`; interval edges may be snapped to summaries."""
        edges = snapped_edges(start, end, intervals)
        for item, sid in sel.sids.items():
            for (a, b), s in zip(itertools.pairwise(edges), await fold(self.store, sid, edges), strict=True):
                yield {"item": item, "start": iso(a), "end": iso(b), "points": [point_json(p) for p in plot_points(s)]}

    async def summary(
        self, sel: ItemSelection, start: int, end: int, interval: int, calcs: tuple[str, ...]
    ) -> AsyncIterator[Row]:
        """Per item and interval `{item, start, end, no_data, <calc>: value}` (see `calcs`)."""
        edges = grid(start, end, interval)
        weighted = bool({"tavg", "total"} & set(calcs))  # only these need the samples around the range
        for item, sid in sel.sids.items():
            folded = await fold(self.store, sid, edges)
            befores = await self._befores(sid, start if weighted else None, folded)
            after = await self.store.at_or_after(sid, end) if weighted else None
            afters: list[Point | None] = []
            for s in reversed(folded):
                afters.append(after)
                after = s.first if s is not None else after
            for k, s in enumerate(folded):
                a, b = edges[k], edges[k + 1]
                values = calculate(s, a, b, befores[k], afters[-1 - k], calcs, stepped=item in sel.stepped)
                yield {"item": item, "start": iso(a), "end": iso(b), "no_data": s is None, **values}

    async def _befores(self, sid: str, start: int | None, folded: list[Summary | None]) -> list[Point | None]:
        before = await self.store.at_or_before(sid, start - 1) if start is not None else None
        out: list[Point | None] = []
        for s in folded:
            out.append(before)
            before = s.last if s is not None else before
        return out
