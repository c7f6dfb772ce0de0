"""Intervals over a series: which store read serves which part of a range (summaries for whole aligned minutes
or hours, raw points for the rest), and the fold of points and summaries into one `Summary` per interval."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from ..series import RESOLUTIONS, Point, SeriesStore, Summary, SummaryColumns, as_point, as_row, summarize


def floor_to(t: int, res: int) -> int:
    return t - t % res


def ceil_to(t: int, res: int) -> int:
    return -floor_to(-t, res)


def merge(a: Summary | None, b: Summary | None) -> Summary | None:
    """The summary of `a`'s samples followed by `b`'s (`a` wholly earlier): what `summarize` gives for both."""
    if a is None or b is None:
        return a if b is None else b
    lo = a.min if b.min is None or (a.min is not None and a.min.v <= b.min.v) else b.min
    hi = a.max if b.max is None or (a.max is not None and a.max.v >= b.max.v) else b.max
    step = a.area_step + b.area_step
    linear = a.area_linear + b.area_linear
    if a.last_num is not None and b.first_num is not None:  # the stretch between the two
        dt = b.first_num.t - a.last_num.t
        step += a.last_num.v * dt
        linear += (a.last_num.v + b.first_num.v) * dt / 2
    return Summary(
        start=a.start,
        end=b.end,
        count=a.count + b.count,
        first=a.first,
        last=b.last,
        n=a.n + b.n,
        total=a.total + b.total,
        total_sq=a.total_sq + b.total_sq,
        min=lo,
        max=hi,
        first_num=a.first_num if a.first_num is not None else b.first_num,
        last_num=b.last_num if b.last_num is not None else a.last_num,
        area_step=step,
        area_linear=linear,
    )


def fold_columns(acc: Summary | None, cols: SummaryColumns, i: int, j: int) -> Summary | None:
    """`acc` merged with the spans `i..j-1` of `cols` one after the other: exactly what `merge` gives span by
    span (sums added in the same order), without a `Summary` per span."""
    if i >= j:
        return acc
    if acc is None:
        acc, i = cols.summary(i), i + 1
    lo, hi = as_row(acc.min), as_row(acc.max)
    first_num, last_num = as_row(acc.first_num), as_row(acc.last_num)
    step, linear = acc.area_step, acc.area_linear
    mins, maxs, firsts, lasts = cols.min, cols.max, cols.first_num, cols.last_num
    steps, linears = cols.area_step, cols.area_linear
    for k in range(i, j):
        m, x, f = mins[k], maxs[k], firsts[k]
        if m is not None and (lo is None or m[1] < lo[1]):
            lo = m
        if x is not None and (hi is None or x[1] > hi[1]):
            hi = x
        step += steps[k]
        linear += linears[k]
        if f is not None:
            if last_num is not None:  # the stretch between the two
                dt = f[0] - last_num[0]
                step += last_num[1] * dt
                linear += (last_num[1] + f[1]) * dt / 2
            else:
                first_num = f
            last_num = lasts[k]
    return Summary(
        acc.start, cols.end[j - 1], acc.count + sum(cols.count[i:j]), acc.first, Point(*cols.last[j - 1]),
        acc.n + sum(cols.n[i:j]), sum(cols.total[i:j], acc.total), sum(cols.total_sq[i:j], acc.total_sq),
        as_point(lo), as_point(hi), as_point(first_num), as_point(last_num), step, linear,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Run:
    """`[start, end)` read as summaries of `res` µs, or as raw points when `res` is None."""

    start: int
    end: int
    res: int | None


MAX_RUNS = 64


def plan(edges: Sequence[int], min_span: int = 1, max_runs: int = MAX_RUNS) -> list[Run]:
    """The reads covering `[edges[0], edges[-1])` such that no summary crosses an edge, adjacent reads of the
    same kind merged. A part holding fewer than `min_span` µs of whole summaries is read raw. Hours are used only
    when every inner edge is on one: else each interval holding an hour would switch between minutes and hours,
    one more read each time. Edges off the minute need raw reads around each: past `max_runs` reads, one raw
    read of everything costs less (a read per interval is a query per interval)."""
    minute, hour = RESOLUTIONS
    top = hour if all(e % hour == 0 for e in edges[1:-1]) else minute
    runs: list[Run] = []
    for a, b in itertools.pairwise(edges):
        for run in split(a, b, min_span, top):
            if run.start >= run.end:
                continue
            if runs and runs[-1].res == run.res and runs[-1].end == run.start:
                runs[-1] = Run(runs[-1].start, run.end, run.res)
            else:
                runs.append(run)
    return runs if len(runs) <= max_runs else [Run(edges[0], edges[-1], None)]


def split(a: int, b: int, min_span: int = 1, top: int = RESOLUTIONS[-1]) -> list[Run]:
    """`[a, b)` as raw head, minutes, hours (when `top` allows), minutes, raw tail (any of them possibly empty)."""
    minute, hour = RESOLUTIONS
    m0, m1 = ceil_to(a, minute), floor_to(b, minute)
    if m1 - m0 < max(minute, min_span):
        return [Run(a, b, None)]
    h0, h1 = ceil_to(m0, hour), floor_to(m1, hour)
    if h1 - h0 < hour or top < hour:
        return [Run(a, m0, None), Run(m0, m1, minute), Run(m1, b, None)]
    return [Run(a, m0, None), Run(m0, h0, minute), Run(h0, h1, hour), Run(h1, m1, minute), Run(m1, b, None)]


async def _chunks(store: SeriesStore, sid: str, run: Run) -> AsyncIterator[list[Point] | SummaryColumns]:
    if run.res is None:
        async for points in store.points(sid, run.start, run.end):
            yield points
    else:
        async for summaries in store.summaries(sid, run.start, run.end, run.res):
            yield summaries


class Folder:
    """Folds time-ordered points and summaries into one `Summary | None` per interval of `edges`."""

    def __init__(self, edges: Sequence[int]) -> None:
        self.edges = edges
        self.out: list[Summary | None] = [None] * (len(edges) - 1)

    def _index(self, t: int) -> int:
        return bisect.bisect_right(self.edges, t) - 1

    def add_points(self, points: Sequence[Point]) -> None:
        times = [p.t for p in points]
        i = 0
        while i < len(points):
            k = self._index(points[i].t)
            j = bisect.bisect_left(times, self.edges[k + 1], lo=i)
            a, b = self.edges[k], self.edges[k + 1]
            self.out[k] = merge(self.out[k], summarize(points[i:j], a, b))
            i = j

    def add_summaries(self, cols: SummaryColumns) -> None:
        i = 0
        while i < len(cols):
            k = self._index(cols.start[i])
            j = bisect.bisect_left(cols.start, self.edges[k + 1], lo=i)
            self.out[k] = fold_columns(self.out[k], cols, i, j)
            i = j

    def result(self) -> list[Summary | None]:
        return [
            None if s is None else dataclasses.replace(s, start=a, end=b)
            for s, a, b in zip(self.out, self.edges, self.edges[1:], strict=False)
        ]


async def fold(store: SeriesStore, sid: str, edges: Sequence[int], min_span: int = 1) -> list[Summary | None]:
    """One summary per interval `[edges[k], edges[k+1])` of `sid` (None: no sample), read through `plan`."""
    folder = Folder(edges)
    for run in plan(edges, min_span):
        async for chunk in _chunks(store, sid, run):
            if isinstance(chunk, SummaryColumns):
                folder.add_summaries(chunk)
            else:
                folder.add_points(chunk)
    return folder.result()


def grid(start: int, end: int, step: int) -> list[int]:
    """Edges `start, start+step, …` with `end` last."""
    return [*range(start, end, step), end]


def snapped_edges(start: int, end: int, intervals: int, snap_factor: int = 4) -> list[int]:
    """`intervals` equal parts of `[start, end)`; inner edges floored to the coarsest summary resolution that
    is at most 1/`snap_factor` of a part, so that whole parts are read from summaries. Parts may merge (fewer)."""
    width = (end - start) / intervals
    res = max((r for r in RESOLUTIONS if r * snap_factor <= width), default=1)
    inner = {floor_to(start + (end - start) * k // intervals, res) for k in range(1, intervals)}
    return [start, *sorted(e for e in inner if start < e < end), end]
