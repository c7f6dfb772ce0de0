"""Sample history of a unitop's items: which sids the chosen items are, raw rows (one per item sharing a sid)
and rows aligned to an interval, and their exports. What `/unitops/{name}/samples` answers, without HTTP."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tributary_common.timeutil import format_time

from . import cursors
from .errors import Invalid, NotFound
from .exports import export, plain_cell
from .historian.params import values_at_most
from .samples_history import SampleHistory, SampleQuery, samples_filter
from .unitops import UnitopService

Row = dict[str, Any]
RAW_COLUMNS = ["t", "item", "sid", "v", "q"]
MAX_NAMED = 10  # unknown items named in an error; the rest counted


@dataclass
class ItemSelection:
    """The chosen items of a unitop, in order, and their sids (items with the same params share one)."""

    name: str
    items: list[str]
    sids: dict[str, str]  # item -> sid
    items_of: dict[str, list[str]] = field(default_factory=dict)  # sid -> items
    stepped: set[str] = field(default_factory=set)  # items whose value is held between samples

    def explode(self, row: Row) -> list[Row]:
        """A stored row once per item reading that sid."""
        return [{"item": item, **row} for item in self.items_of[row["sid"]]]


async def select_items(unitops: UnitopService, name: str, items: str | None) -> ItemSelection:
    """`items` (comma-separated; None: all) of unitop `name`; an unknown item is `NotFound`."""
    resolved = await unitops.resolve(name)
    unitop = resolved.sids
    # Each name once (the order kept): a name repeated is one column, and counts once toward every limit.
    chosen = list(unitop) if not items else list(dict.fromkeys(i.strip() for i in items.split(",") if i.strip()))
    unknown = [i for i in chosen if i not in unitop]
    if unknown or not chosen:
        named = f"{unknown[:MAX_NAMED]}" + (f" and {len(unknown) - MAX_NAMED} more" if len(unknown) > MAX_NAMED else "")
        raise NotFound(
            f"unitop {name!r} has no items {named}",
            [{"loc": "/query/items", "msg": f"unknown {named}"}],
            code="unknown_item",
        )
    selection = ItemSelection(name, chosen, {item: unitop[item] for item in chosen})
    selection.stepped = {item for item in chosen if resolved.unitop.items[item].stepped}
    for item, sid in selection.sids.items():
        selection.items_of.setdefault(sid, []).append(item)
    return selection


class UnitopSamples:
    def __init__(
        self, samples: SampleHistory, *, chunk_rows: int, aligned_max_points: int, grid_max_values: int
    ) -> None:
        self.samples = samples
        self.chunk_rows = chunk_rows
        self.aligned_max_points = aligned_max_points
        self.grid_max_values = grid_max_values

    def aligned(
        self, sel: ItemSelection, start: datetime | None, end: datetime | None, interval_s: float
    ) -> AsyncIterator[Row]:
        """`{t, values: {item: value}}` per grid time `start + k*interval_s < end`, last value carried forward."""
        if start is None or end is None or end <= start:
            raise Invalid(
                "aligned history needs start < end",
                [{"loc": "/query/start", "msg": "start and end required"}],
                code="invalid_request",
            )
        step = timedelta(seconds=interval_s)  # at least 1 µs: the route refuses less (and the grid itself would)
        points = math.ceil((end - start) / step)
        if points > self.aligned_max_points:
            raise Invalid(
                f"{points} points requested, over the limit of {self.aligned_max_points}",
                [{"loc": "/query/interval_s", "msg": "too many points; widen the interval"}],
                code="too_many_points",
            )
        values_at_most(points, len(sel.items), self.grid_max_values, "interval_s")
        grid = self.samples.aligned(list(sel.items_of), start, end, step)

        async def rows() -> AsyncIterator[Row]:
            async for t, values in grid:
                yield {"t": t, "values": {item: values[sid] for item, sid in sel.sids.items()}}

        return rows()

    def export_aligned(self, fmt: str, sel: ItemSelection, rows: AsyncIterator[Row]) -> AsyncIterator[bytes]:
        def cells(r: Row) -> list[Any]:
            return [r["t"], *(plain_cell(r["values"][i]) for i in sel.items)]

        return export(fmt, rows, self.chunk_rows, ["t", *sel.items], cells)

    @staticmethod
    def raw_query(sel: ItemSelection, start: datetime | None, end: datetime | None, cursor: str | None) -> SampleQuery:
        """Raw rows of the selection: `start` inclusive, `end` exclusive, after `cursor`."""
        position = cursors.decode(cursor) if cursor else None
        return samples_filter(
            list(sel.items_of),
            start=format_time(start) if start else None,
            end=format_time(end) if end else None,
            position=(position[0], position[1]) if position else None,
        )

    async def raw_page(self, sel: ItemSelection, query: SampleQuery, limit: int) -> tuple[list[Row], str | None]:
        rows, nxt = await self.samples.page(query, limit)
        return [r for row in rows for r in sel.explode(row)], nxt

    async def raw_rows(self, sel: ItemSelection, query: SampleQuery) -> AsyncIterator[Row]:
        async for row in self.samples.stream(query):
            for r in sel.explode(row):
                yield r

    def export_raw(self, fmt: str, sel: ItemSelection, query: SampleQuery) -> AsyncIterator[bytes]:
        def cells(r: Row) -> list[Any]:
            return [r["t"], r["item"], r["sid"], plain_cell(r["v"]), plain_cell(r["q"])]

        return export(fmt, self.raw_rows(sel, query), self.chunk_rows, RAW_COLUMNS, cells)
