"""A batch of samples held as three columns (times, values, qualities) rather than a tuple per sample.

A row tuple is an object the cyclic GC tracks until its first collection walks it. Held in a sid's buffer, rows
gathered in the young generation by the tens of thousands between collections (the rows freed after publishing
count against the new ones) and each collection walked them cold: 10-14 % of the process's time at 100 and 1,000
busy sids (bench/README.md, Ingest). Datetimes, floats, strings and None are not tracked, so columns of them cost
the GC nothing. Iterating a batch yields rows by `zip`, whose result tuple is reused when the loop unpacks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, overload

from .sdk import Quality, SampleValue

Row = tuple[datetime, SampleValue, Quality]


class Batch(Sequence[Row]):
    __slots__ = ("qs", "ts", "vs")

    def __init__(self, ts: tuple[datetime, ...], vs: tuple[SampleValue, ...], qs: tuple[Quality, ...]) -> None:
        self.ts, self.vs, self.qs = ts, vs, qs

    def __len__(self) -> int:
        return len(self.ts)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> Batch: ...

    def __getitem__(self, index: int | slice) -> Row | Batch:
        if isinstance(index, slice):
            return Batch(self.ts[index], self.vs[index], self.qs[index])
        return self.ts[index], self.vs[index], self.qs[index]

    def __iter__(self) -> Iterator[Row]:
        return zip(self.ts, self.vs, self.qs, strict=True)

    def __eq__(self, other: object) -> bool:  # as a list of its rows compares (and, like one, it is unhashable)
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"Batch({list(self)!r})"


EMPTY = Batch((), (), ())


def take(ts: list[Any], vs: list[Any], qs: list[Any], n: int) -> Batch:
    """The first `n` samples of three column lists as a batch, removed from them."""
    batch = Batch(tuple(ts[:n]), tuple(vs[:n]), tuple(qs[:n]))
    del ts[:n], vs[:n], qs[:n]
    return batch
