"""Summaries as columns (what the plot folds, issue 14): packed minute summaries read back as columns hold the
same summaries, and folding a run of columns into an interval gives exactly what merging the spans' `Summary`s
one by one gives (same sums in the same order), for runs that start mid-interval, cross hours and chunks."""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.series import MemorySeriesStore
from tributary_hub.historian.intervals import fold, fold_columns, merge
from tributary_hub.historian.plot import plot_points
from tributary_hub.sample_summaries import minute_summaries, pack_summaries, unpack_columns
from tributary_hub.series import HOUR_US, MINUTE_US, Point, Summary, SummaryColumns, summarize, summarize_each

T0 = 1_767_225_600_000_000  # a whole hour

values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000),
    st.sampled_from(["on", "=cmd", float("inf")]),
    st.booleans(),
    st.none(),
)


@st.composite
def hour_of_points(draw: Any) -> list[Point]:
    offsets = draw(st.lists(st.integers(0, HOUR_US - 1), min_size=1, max_size=80, unique=True))
    return [Point(T0 + o, draw(values), draw(st.sampled_from([None, "good", 3]))) for o in sorted(offsets)]


@settings(max_examples=200, deadline=None)
@given(hour_of_points(), st.data())
def test_folding_columns_equals_merging_summaries(points: list[Point], data: st.DataObject) -> None:
    minutes = minute_summaries(points)
    cols = unpack_columns(pack_summaries(minutes, T0), T0)
    assert cols.summaries() == minutes
    i = data.draw(st.integers(0, len(minutes)))
    j = data.draw(st.integers(i, len(minutes)))
    earlier = data.draw(st.lists(st.floats(-10, 10) | st.just("x"), max_size=3))
    acc = summarize([Point(T0 - 100 + k, v) for k, v in enumerate(earlier)], T0 - HOUR_US, T0)
    expected = functools.reduce(merge, minutes[i:j], acc)
    assert fold_columns(acc, cols, i, j) == expected  # exactly: floats added in the same order


def test_columns_slice_and_join() -> None:
    points = [Point(T0 + k * 7_000_000, float(k % 11)) for k in range(2 * 3600 // 7)]
    minutes = minute_summaries(points)
    cols = SummaryColumns.of(minutes)
    assert cols.summaries() == minutes and list(cols) == minutes
    part = cols.within(T0 + 10 * MINUTE_US, T0 + 70 * MINUTE_US)
    assert part.summaries() == [m for m in minutes if m.start >= T0 + 10 * MINUTE_US and m.end <= T0 + 70 * MINUTE_US]
    halves = [cols.within(T0, T0 + HOUR_US), cols.within(T0 + HOUR_US, T0 + 2 * HOUR_US)]
    assert SummaryColumns.joined(halves) == cols


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 9), st.integers(2, 13))
def test_intervals_straddling_hours_fold_like_the_raw_points(step_s: int, chunk: int, width_min: int) -> None:
    # 5 hours of samples; intervals of `width_min` minutes from xx:07, so most cross an hour or a chunk of columns.
    points = [Point(T0 + s * 1_000_000, float((s * 7919) % 1000) / 10) for s in range(0, 5 * 3600, step_s)]
    store = MemorySeriesStore({"s": points}, chunk=chunk)
    edges = [*range(T0 + 7 * MINUTE_US, T0 + 5 * HOUR_US, width_min * MINUTE_US), T0 + 5 * HOUR_US]
    folded = asyncio.run(fold(store, "s", edges))
    assert ("summaries", MINUTE_US) in store.reads
    for s, (a, b) in zip(folded, itertools.pairwise(edges), strict=True):
        reference: Summary | None = summarize([p for p in points if a <= p.t < b], a, b)
        assert s is not None and reference is not None
        assert plot_points(s) == plot_points(reference)
        assert (s.count, s.n, s.first_num, s.last_num) == (reference.count, reference.n, reference.first_num,
                                                            reference.last_num)  # fmt: skip
        assert abs(s.area_linear - reference.area_linear) <= 1e-6 * abs(reference.area_linear) + 1e-3


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, HOUR_US - 1), min_size=1, max_size=60, unique=True),
    st.lists(st.floats(-1e300, 1e300) | st.sampled_from([0.0, -0.0, 1.5, float("inf")]), min_size=60, max_size=60),
)
def test_summaries_of_floats_equal_the_sample_by_sample_loop(offsets: list[int], floats: list[float]) -> None:
    points = [Point(T0 + o, v) for o, v in zip(sorted(offsets), floats, strict=False)]
    assert summarize(points, T0, T0 + HOUR_US) == summarize_each(points, T0, T0 + HOUR_US)
