"""What the historian reads from sample storage, and the summary both sides agree on.

Storage (`SeriesStore`) answers a sid's samples in time order, its latest sample, the samples next to a time,
and summaries of whole minutes or hours; the historian reads (plot, summary, interpolation, boundaries) are
computed from those in the service, so that they are the same on FerretDB and MongoDB. Times are integer
microseconds since the Unix epoch (UTC): exact, and cheap to compare and subtract.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MINUTE_US = 60_000_000
HOUR_US = 3_600_000_000
RESOLUTIONS = (MINUTE_US, HOUR_US)
"""The summary resolutions storage keeps; an interval that is a whole multiple of one, aligned to it, can be
answered from summaries instead of raw samples."""


@dataclass(slots=True, unsafe_hash=True)
class Point:
    """One stored sample: `t` in µs since the epoch, `v` a number, string, bool or None, `q` its quality. Never
    changed once made; not `frozen` only because a frozen dataclass costs 3× to make (1.9 vs 0.6 µs), and reads
    and the recorder make millions (hashable all the same)."""

    t: int
    v: Any
    q: Any = None


def is_number(v: Any) -> bool:
    """Numbers take part in min, max, sums and areas; bools, strings and None do not."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True, slots=True)
class Summary:
    """The samples of one sid with `start <= t < end`.

    `count` counts every sample; the numeric fields are over numeric values only (`n` of them). `area_step` and
    `area_linear` integrate the values between consecutive numeric samples inside the span (step: the earlier
    value held; linear: the trapezoid), in value·µs; the stretch before the first and after the last sample is
    left to whoever combines summaries, since it depends on the neighbours.
    """

    start: int
    end: int
    count: int
    first: Point
    last: Point
    n: int = 0
    total: float = 0.0  # sum of the numeric values
    total_sq: float = 0.0  # sum of their squares
    min: Point | None = None
    max: Point | None = None
    first_num: Point | None = None
    last_num: Point | None = None
    area_step: float = 0.0
    area_linear: float = 0.0


def summarize(points: Sequence[Point], start: int, end: int) -> Summary | None:
    """The summary of `points` (in time order, unique times, all inside `[start, end)`); None when empty."""
    if not points:
        return None
    values = [p.v for p in points]
    if set(map(type, values)) == {float}:
        fast = _summarize_floats(points, values, start, end)
        if fast is not None:
            return fast
    return summarize_each(points, start, end)


def summarize_each(points: Sequence[Point], start: int, end: int) -> Summary:
    """`summarize` sample by sample, for any values."""
    n = 0
    total = total_sq = area_step = area_linear = 0.0
    lo: Point | None = None
    hi: Point | None = None
    first_num: Point | None = None
    prev: Point | None = None
    for p in points:
        if not is_number(p.v):
            continue
        v = float(p.v)
        n += 1
        total += v
        total_sq += v * v
        if lo is None or v < lo.v:
            lo = p
        if hi is None or v > hi.v:
            hi = p
        if prev is None:
            first_num = p
        else:
            dt = p.t - prev.t
            area_step += prev.v * dt
            area_linear += (prev.v + v) * dt / 2
        prev = p
    return Summary(
        start=start,
        end=end,
        count=len(points),
        first=points[0],
        last=points[-1],
        n=n,
        total=total,
        total_sq=total_sq,
        min=lo,
        max=hi,
        first_num=first_num,
        last_num=prev,
        area_step=area_step,
        area_linear=area_linear,
    )


Row = tuple[int, Any, Any]  # a point as `(t, v, q)`: what a column holds, cheaper to make than a `Point`


def as_row(p: Point | None) -> Row | None:
    return None if p is None else (p.t, p.v, p.q)


def as_point(r: Row | None) -> Point | None:
    return None if r is None else Point(*r)


@dataclass(frozen=True, slots=True)
class SummaryColumns:
    """Summaries of consecutive spans in time order, field by field, as storage holds them: folding a thousand
    minutes into one interval then needs no `Summary` (and six `Point`s) per minute (`historian.intervals`)."""

    start: list[int]
    end: list[int]
    count: list[int]
    n: list[int]
    total: list[float]
    total_sq: list[float]
    area_step: list[float]
    area_linear: list[float]
    first: list[Row]
    last: list[Row]
    min: list[Row | None]
    max: list[Row | None]
    first_num: list[Row | None]
    last_num: list[Row | None]

    def __len__(self) -> int:
        return len(self.start)

    def __iter__(self) -> Iterator[Summary]:
        return iter(self.summaries())

    def summary(self, k: int) -> Summary:
        first, last = Point(*self.first[k]), Point(*self.last[k])
        return Summary(
            self.start[k], self.end[k], self.count[k], first, last, self.n[k], self.total[k], self.total_sq[k],
            as_point(self.min[k]), as_point(self.max[k]), as_point(self.first_num[k]), as_point(self.last_num[k]),
            self.area_step[k], self.area_linear[k],
        )  # fmt: skip

    def summaries(self) -> list[Summary]:
        return [self.summary(k) for k in range(len(self.start))]

    def within(self, start: int, end: int) -> SummaryColumns:
        """The spans inside `[start, end)`."""
        i, j = bisect.bisect_left(self.start, start), bisect.bisect_right(self.end, end)
        if i == 0 and j == len(self.start):
            return self
        return SummaryColumns(*(getattr(self, f.name)[i:j] for f in dataclasses.fields(self)))

    @classmethod
    def joined(cls, parts: Sequence[SummaryColumns]) -> SummaryColumns:
        """The spans of `parts`, one after the other (each later than the one before)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(list(itertools.chain.from_iterable(getattr(p, f.name) for p in parts)) for f in dataclasses.fields(cls))
        )

    @classmethod
    def of(cls, summaries: Sequence[Summary]) -> SummaryColumns:
        def rows(name: str) -> list[Any]:
            return [as_row(getattr(s, name)) for s in summaries]

        def values(name: str) -> list[Any]:
            return [getattr(s, name) for s in summaries]

        return cls(
            *(values(f) for f in ("start", "end", "count", "n", "total", "total_sq", "area_step", "area_linear")),
            *(rows(f) for f in ("first", "last", "min", "max", "first_num", "last_num")),
        )


def _summarize_floats(points: Sequence[Point], values: list[float], start: int, end: int) -> Summary | None:
    """`summarize` of all-float values, column by column: the same sums added in the same order, the same first
    extremes; None when a value is not finite (their sum is then not finite either)."""
    total = sum(values, 0.0)
    if not math.isfinite(total):
        return None
    times = [p.t for p in points]
    dts = [b - a for a, b in itertools.pairwise(times)]
    area_step = sum([v * dt for v, dt in zip(values, dts, strict=False)], 0.0)
    area_linear = sum([(a + b) * dt / 2 for a, b, dt in zip(values, values[1:], dts, strict=False)], 0.0)
    lo, hi = points[values.index(min(values))], points[values.index(max(values))]
    total_sq = sum([v * v for v in values], 0.0)
    first, last, n = points[0], points[-1], len(points)
    return Summary(start, end, n, first, last, n, total, total_sq, lo, hi, first, last, area_step, area_linear)


def chunked(points: Iterable[Point], size: int) -> Iterable[list[Point]]:
    chunk: list[Point] = []
    for p in points:
        chunk.append(p)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class SeriesStore(Protocol):
    """Sample storage as the historian reads it. Every method reads one sid (or a few, for `latest`); chunks
    are bounded in size so that a long read never holds a whole series in memory."""

    def points(
        self, sid: str, start: int | None = None, end: int | None = None, *, descending: bool = False
    ) -> AsyncIterator[list[Point]]:
        """Samples with `start <= t < end` (None: unbounded), one per time, in chunks, ascending or not."""
        ...

    async def latest(self, sids: Sequence[str]) -> dict[str, Point]:
        """The newest sample of each sid that has one."""
        ...

    async def at_or_before(self, sid: str, t: int) -> Point | None:
        """The newest sample with time `<= t`."""
        ...

    async def at_or_after(self, sid: str, t: int) -> Point | None:
        """The oldest sample with time `>= t`."""
        ...

    def summaries(self, sid: str, start: int, end: int, resolution: int) -> AsyncIterator[SummaryColumns]:
        """One summary per `resolution` (one of `RESOLUTIONS`) span holding samples, spans aligned to it, in
        time order, over `[start, end)` (both multiples of `resolution`), in column chunks. Empty spans are left
        out."""
        ...
