"""An hour's summaries as stored, pure logic: the hour's and its minutes' `series.summarize` (so that storage
and reads agree), packed column by column (what FerretDB reads costs by the byte: columns of like values deflate
well, times are offsets from the span's start, and a point equal to the first or last is a reference).

A text value or quality over `TEXT_INLINE` characters is kept cut to that length, marked (`{"$b": cut}`), and read
whole from its bucket (`SampleStore.summaries`): whole, a minute's first and last of 1 MiB texts grew a sid's day
of minute summaries past what FerretDB can send back (48 MB), which failed every later write and read of that day."""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .sample_buckets import NONFINITE, pack, unpack
from .series import HOUR_US, MINUTE_US, Point, Row, Summary, SummaryColumns, summarize

POINTS = ("first", "last", "min", "max", "first_num", "last_num")
TEXT_INLINE = 256
CUT = "$b"


class Cut(str):
    """A text kept cut in a summary: the first `TEXT_INLINE` characters of one whose whole is in the bucket."""

    __slots__ = ()


def _inline(x: Any) -> Any:
    return {CUT: x[:TEXT_INLINE]} if isinstance(x, str) and len(x) > TEXT_INLINE else x


def _inline_in(x: Any) -> Any:
    return Cut(x[CUT]) if type(x) is dict else x


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
    v = {NONFINITE: repr(p.v)} if isinstance(p.v, float) and not math.isfinite(p.v) else _inline(p.v)
    return [p.t - s.start, v] if p.q is None else [p.t - s.start, v, _inline(p.q)]


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
    if type(v) is dict:
        v = float(v[NONFINITE]) if NONFINITE in v else Cut(v[CUT])
    return start + p[0], v, _inline_in(p[2]) if len(p) > 2 else None


def unpack_columns(blob: bytes, base: int) -> SummaryColumns:
    return decode_columns(blob, base)[0]


def decode_columns(blob: bytes, base: int) -> tuple[SummaryColumns, bool]:
    """The packed summaries as columns: a row per point, no object per summary (the common `[offset, number]`
    decoded inline: a month of minutes is 170,000 of them); and whether a text in them is cut (`cut_times`)."""
    cols = unpack(blob)
    starts = [base + s for s in cols["start"]]
    cut = False

    def row_in(p: Any, start: int) -> Row:
        nonlocal cut
        row = _row_in(p, start)
        cut = cut or type(row[1]) is Cut or type(row[2]) is Cut
        return row

    def decode(points: list[Any]) -> list[Any]:
        return [
            p if p is None or type(p) is int else (s + p[0], p[1], None) if len(p) == 2 and type(p[1]) is not dict
            else row_in(p, s)
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

    columns = SummaryColumns(
        starts, [s + span for s, span in zip(starts, cols["span"], strict=True)], cols["count"], cols["n"],
        floats("total"), floats("total_sq"), floats("area_step"), floats("area_linear"), first, last,
        rows("min"), rows("max"), rows("first_num"), rows("last_num"),
    )  # fmt: skip
    return columns, cut


def cut_times(cols: SummaryColumns) -> set[int]:
    """The times of the points whose text is cut (read them whole from their bucket)."""
    return {r[0] for name in POINTS for r in getattr(cols, name) if r is not None and Cut in (type(r[1]), type(r[2]))}


def made_whole(cols: SummaryColumns, whole: dict[int, Row]) -> SummaryColumns:
    """`cols` with each cut point replaced by its whole one from `whole` (by time), where found (raw samples kept
    shorter than summaries: the cut text stays)."""
    fix: dict[str, Any] = {
        name: [whole.get(r[0], r) if r is not None else None for r in getattr(cols, name)] for name in POINTS
    }
    return dataclasses.replace(cols, **fix)


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
