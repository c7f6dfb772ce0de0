"""An hour's summaries as stored, pure logic: the hour's and its minutes' `series.summarize` (so that storage
and reads agree), packed column by column (what FerretDB reads costs by the byte: columns of like values deflate
well, times are offsets from the span's start, and a point equal to the first or last is a reference)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from .sample_buckets import NONFINITE, pack, unpack
from .series import HOUR_US, MINUTE_US, Point, Row, Summary, SummaryColumns, summarize

POINTS = ("first", "last", "min", "max", "first_num", "last_num")
FIRST, LAST = 0, 1  # references to the span's first and last point


def minute_summaries(points: Sequence[Point]) -> list[Summary]:
    """One summary per minute holding samples (`points` in time order)."""
    out: list[Summary] = []
    times = [p.t for p in points]
    i = 0
    while i < len(points):
        minute = times[i] - times[i] % MINUTE_US
        j = bisect.bisect_left(times, minute + MINUTE_US, lo=i)
        s = summarize(points[i:j], minute, minute + MINUTE_US)
        assert s is not None
        out.append(s)
        i = j
    return out


def _point_out(s: Summary, p: Point | None, refs: bool = True) -> Any:
    if p is None:
        return None
    if refs and p is s.first:
        return FIRST
    if refs and p is s.last:
        return LAST
    v = {NONFINITE: repr(p.v)} if isinstance(p.v, float) and not math.isfinite(p.v) else p.v
    return [p.t - s.start, v] if p.q is None else [p.t - s.start, v, p.q]


def _float_out(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def pack_summaries(summaries: Sequence[Summary], base: int) -> bytes:
    cols: dict[str, list[Any]] = {
        "start": [s.start - base for s in summaries],
        "span": [s.end - s.start for s in summaries],
        "count": [s.count for s in summaries],
        "n": [s.n for s in summaries],
    }
    for name in ("total", "total_sq", "area_step", "area_linear"):
        cols[name] = [_float_out(getattr(s, name)) for s in summaries]
    for name in POINTS:
        refs = name not in ("first", "last")
        cols[name] = [_point_out(s, getattr(s, name), refs) for s in summaries]
    return pack(cols)


def _row_in(p: Any, start: int) -> Row:
    v = p[1]
    return start + p[0], float(v[NONFINITE]) if type(v) is dict else v, p[2] if len(p) > 2 else None


def unpack_columns(blob: bytes, base: int) -> SummaryColumns:
    """The packed summaries as columns: a row per point, no object per summary (the common `[offset, number]`
    decoded inline: a month of minutes is 170,000 of them)."""
    cols = unpack(blob)
    starts = [base + s for s in cols["start"]]

    def decode(points: list[Any]) -> list[Any]:
        return [
            p if p is None or type(p) is int else (s + p[0], p[1], None) if len(p) == 2 and type(p[1]) is not dict
            else _row_in(p, s)
            for p, s in zip(points, starts, strict=True)
        ]  # fmt: skip

    first, last = decode(cols["first"]), decode(cols["last"])

    def rows(name: str) -> list[Row | None]:
        out = decode(cols[name])
        for k, p in enumerate(out):
            if type(p) is int:  # a reference to the span's first or last point
                out[k] = first[k] if p == FIRST else last[k]
        return out

    def floats(name: str) -> list[float]:
        return [float(x) for x in cols[name]]  # a non-finite sum is stored as its repr

    return SummaryColumns(
        starts, [s + span for s, span in zip(starts, cols["span"], strict=True)], cols["count"], cols["n"],
        floats("total"), floats("total_sq"), floats("area_step"), floats("area_linear"), first, last,
        rows("min"), rows("max"), rows("first_num"), rows("last_num"),
    )  # fmt: skip


def unpack_summaries(blob: bytes, base: int) -> list[Summary]:
    return unpack_columns(blob, base).summaries()


def minute_rows(points: Sequence[Point], hour: int) -> bytes:
    """The summaries of the hour's minutes, packed."""
    return pack_summaries(minute_summaries(points), hour)


def hour_row(points: Sequence[Point], hour: int) -> bytes:
    """The hour's summary, packed."""
    whole = summarize(points, hour, hour + HOUR_US)
    assert whole is not None
    return pack_summaries([whole], hour)
