"""The historian's math without services: summaries folded from sub-spans and from minute/hour summaries equal
`summarize` of the raw points; interpolation, plot values and summary calcs equal a straightforward reference
computed from the raw points. Series from hypothesis: gaps, numbers (ints and floats), strings, bools and nulls,
unique times (storage deduplicates), in order (storage sorts)."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.series import MemorySeriesStore
from tributary_hub.errors import Invalid
from tributary_hub.historian import params
from tributary_hub.historian.calcs import CALCS, calculate
from tributary_hub.historian.interpolate import NO_DATA, interpolate
from tributary_hub.historian.intervals import fold, grid, merge, plan, snapped_edges, split
from tributary_hub.historian.plot import plot_points
from tributary_hub.historian.reads import Historian, values_at
from tributary_hub.historian.times import from_iso, iso
from tributary_hub.series import HOUR_US, MINUTE_US, Point, Summary, is_number, summarize
from tributary_hub.unitop_samples import ItemSelection

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, a whole hour
SPAN = 3 * HOUR_US

values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.integers(-1000, 1000),
    st.sampled_from(["on", "off", "=cmd"]),
    st.booleans(),
    st.none(),
)
numbers = st.one_of(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), st.integers(-1000, 1000))


@st.composite
def series(draw: Any, vals: Any = values, max_size: int = 60) -> list[Point]:
    # Clustered offsets: some seconds apart, some hours, so that spans hold several points and some none.
    offsets = draw(
        st.lists(
            st.one_of(st.integers(0, SPAN), st.integers(0, 120_000_000), st.integers(HOUR_US, HOUR_US + 60_000_000)),
            max_size=max_size,
            unique=True,
        )
    )
    return [Point(T0 + o, draw(vals), draw(st.sampled_from([None, "good", "bad"]))) for o in sorted(offsets)]


def close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


def same(a: Summary | None, b: Summary | None) -> bool:
    """Equal summaries: points exactly, sums within rounding (they are added in another order)."""
    if a is None or b is None:
        return a is b
    exact = ("start", "end", "count", "first", "last", "n", "min", "max", "first_num", "last_num")
    if any(getattr(a, f) != getattr(b, f) for f in exact):
        return False
    vmax = max((abs(float(p.v)) for p in (a.min, a.max) if p is not None), default=0.0) + 1
    span = a.end - a.start
    return (
        close(a.total, b.total, vmax * (a.n + 1))
        and close(a.total_sq, b.total_sq, vmax * vmax * (a.n + 1))
        and close(a.area_step, b.area_step, vmax * span)
        and close(a.area_linear, b.area_linear, vmax * span)
    )


def inside(points: list[Point], a: int, b: int) -> list[Point]:
    return [p for p in points if a <= p.t < b]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@given(series(), st.lists(st.integers(T0, T0 + SPAN), max_size=6))
def test_merged_summaries_of_sub_spans_equal_the_summary_of_all(points: list[Point], cuts: list[int]) -> None:
    edges = sorted({T0, T0 + SPAN + 1, *cuts})
    merged: Summary | None = None
    for a, b in itertools.pairwise(edges):
        merged = merge(merged, summarize(inside(points, a, b), a, b))
    whole = summarize(points, T0, T0 + SPAN + 1)
    if merged is not None:
        merged = Summary(**{**{f: getattr(merged, f) for f in Summary.__slots__}, "start": T0, "end": T0 + SPAN + 1})
    assert same(merged, whole)


@given(st.lists(st.integers(T0 - HOUR_US, T0 + 5 * HOUR_US), min_size=2, max_size=8, unique=True))
def test_plan_covers_the_range_with_aligned_summaries_inside_intervals(cuts: list[int]) -> None:
    edges = sorted(cuts)
    runs = plan(edges)
    assert runs[0].start == edges[0] and runs[-1].end == edges[-1]
    assert all(r.end == n.start for r, n in itertools.pairwise(runs))
    assert all(r.start < r.end for r in runs)
    for r in runs:
        if r.res is not None:
            assert r.start % r.res == 0 and r.end % r.res == 0
            assert not any(r.start < e < r.end and e % r.res for e in edges)


def test_split_reads_whole_hours_and_minutes_from_summaries() -> None:
    a, b = T0 + 30_000_000, T0 + 2 * HOUR_US + 90_000_000
    assert [(r.start - T0, r.end - T0, r.res) for r in split(a, b)] == [
        (30_000_000, MINUTE_US, None),
        (MINUTE_US, HOUR_US, MINUTE_US),
        (HOUR_US, 2 * HOUR_US, HOUR_US),
        (2 * HOUR_US, 2 * HOUR_US + MINUTE_US, MINUTE_US),
        (2 * HOUR_US + MINUTE_US, b - T0, None),
    ]
    assert split(T0, T0 + 59_000_000) == [split(T0, T0 + 59_000_000)[0]]
    assert split(T0, T0 + 59_000_000)[0].res is None


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(1, 40), st.integers(0, HOUR_US), st.integers(1, SPAN))
def test_fold_from_summaries_equals_the_raw_reference(points: list[Point], n: int, lead: int, length: int) -> None:
    start = T0 - lead
    end = start + length + MINUTE_US
    edges = snapped_edges(start, end, n)
    store = MemorySeriesStore({"s": points})
    folded = run(fold(store, "s", edges))
    raw = run(fold(store, "s", edges, min_span=10 * SPAN))  # every part read raw
    assert len(folded) == len(edges) - 1
    for k, (a, b) in enumerate(itertools.pairwise(edges)):
        reference = summarize(inside(points, a, b), a, b)
        assert same(folded[k], reference), (k, a, b)
        assert same(raw[k], reference)
        assert plot_points(folded[k]) == plot_points(reference) == plot_points(raw[k])


def test_plans_switch_resolution_only_at_the_ragged_ends() -> None:
    hours = [T0 + 90_000_000, *range(T0 + HOUR_US, T0 + 48 * HOUR_US, 7 * HOUR_US), T0 + 50 * HOUR_US + 5]
    assert [r.res for r in plan(hours)] == [None, MINUTE_US, HOUR_US, None]
    minutes = [T0, *range(T0 + 43 * MINUTE_US, T0 + 48 * HOUR_US, 43 * MINUTE_US), T0 + 48 * HOUR_US]
    assert [r.res for r in plan(minutes)] == [MINUTE_US]


def test_many_ragged_edges_are_read_raw_in_one_go() -> None:
    ragged = list(range(T0 + 7, T0 + 24 * HOUR_US, 86_400_000))  # a 1-day plot of 1,000 intervals
    assert plan(ragged) == [plan(ragged)[0]] and plan(ragged)[0].res is None
    assert len(plan(ragged[:20])) > 1  # a few ragged edges still use minutes between them


def test_long_plots_read_summaries() -> None:
    points = [Point(T0 + i * 1_000_000, float(i % 97)) for i in range(0, 6 * 3600, 7)]
    store = MemorySeriesStore({"s": points}, chunk=500)
    edges = snapped_edges(T0, T0 + 6 * HOUR_US, 12)
    assert all(e % MINUTE_US == 0 for e in edges)
    folded = run(fold(store, "s", edges))
    assert {kind for kind, _ in store.reads} == {"summaries"}
    assert [plot_points(s) for s in folded] == [
        plot_points(summarize(inside(points, a, b), a, b)) for a, b in itertools.pairwise(edges)
    ]


def test_plot_points_are_unique_and_time_ordered() -> None:
    pts = [Point(T0, 5.0), Point(T0 + 1, 1.0), Point(T0 + 2, 9.0), Point(T0 + 3, 5.0)]
    assert plot_points(summarize(pts, T0, T0 + 4)) == pts
    assert plot_points(summarize(pts[:1], T0, T0 + 4)) == pts[:1]
    words = [Point(T0, "a"), Point(T0 + 1, "b"), Point(T0 + 2, "c")]
    assert plot_points(summarize(words, T0, T0 + 4)) == [words[0], words[2]]
    assert plot_points(None) == []


def reference_value(points: list[Point], t: int, stepped: bool) -> Point:
    before = [p for p in points if p.t <= t]
    after = [p for p in points if p.t > t]
    if not before:
        return Point(t, None, NO_DATA)
    p = before[-1]
    q = after[0] if after else None
    if p.t == t or stepped or q is None or not (is_number(p.v) and is_number(q.v)):
        return Point(t, p.v, p.q)
    frac = (t - p.t) / (q.t - p.t)
    return Point(t, p.v + (q.v - p.v) * frac, p.q)


@settings(max_examples=150, deadline=None)
@given(series(), st.lists(st.integers(T0 - MINUTE_US, T0 + SPAN + MINUTE_US), min_size=1, max_size=30), st.booleans())
def test_interpolated_values_equal_the_reference(points: list[Point], ts: list[int], stepped: bool) -> None:
    times = sorted(set(ts))
    expected = [reference_value(points, t, stepped) for t in times]
    store = MemorySeriesStore({"s": points})
    assert run(values_at(store, "s", times, stepped)) == expected
    before = [p for p in points if p.t < times[0]]
    pure = interpolate(before[-1] if before else None, [p for p in points if p.t >= times[0]], times, stepped=stepped)
    assert list(pure) == expected


def test_interpolation_kinds() -> None:
    pts = [Point(T0 + 10, 0.0, "good"), Point(T0 + 20, 10.0, "bad"), Point(T0 + 30, "x"), Point(T0 + 40, 1)]
    got = list(interpolate(None, pts, [T0, T0 + 15, T0 + 20, T0 + 25, T0 + 35, T0 + 50]))
    assert [(p.v, p.q) for p in got] == [
        (None, NO_DATA),
        (5.0, "good"),
        (10.0, "bad"),
        (10.0, "bad"),
        ("x", None),
        (1, None),
    ]
    assert next(iter(interpolate(None, pts, [T0 + 15], stepped=True))).v == 0.0


def reference_integral(points: list[Point], a: int, b: int, stepped: bool) -> tuple[float, int] | None:
    before = [p for p in points if p.t < a]
    after = [p for p in points if p.t >= b]
    seq = [p for p in points if a <= p.t < b and is_number(p.v)]
    if before and is_number(before[-1].v):
        seq.insert(0, before[-1])
    if after and is_number(after[0].v):
        seq.append(after[0])
    area = 0.0
    covered_from: int | None = None
    for i, p in enumerate(seq):
        q = seq[i + 1] if i + 1 < len(seq) else None
        lo, hi = max(p.t, a), b if q is None else min(q.t, b)
        if hi <= lo:
            continue

        def f(t: int, p: Point = p, q: Point | None = q) -> float:
            return float(p.v) if stepped or q is None else p.v + (q.v - p.v) * (t - p.t) / (q.t - p.t)

        area += (f(lo) + f(hi)) / 2 * (hi - lo)
        covered_from = lo if covered_from is None else min(covered_from, lo)
    return None if covered_from is None or covered_from >= b else (area, b - covered_from)


@settings(max_examples=150, deadline=None)
@given(series(st.one_of(numbers, values)), st.integers(1, 8), st.booleans())
def test_summary_calcs_equal_the_reference(points: list[Point], n: int, stepped: bool) -> None:
    start, end = T0 - MINUTE_US, T0 + SPAN
    step = -(-(end - start) // n)
    store = MemorySeriesStore({"s": points})
    sel = ItemSelection("u", ["x"], {"x": "s"}, {"s": ["x"]}, {"x"} if stepped else set())
    rows = run(_collect(Historian(store, block_cells=10).summary(sel, start, end, step, CALCS)))
    edges = grid(start, end, step)
    assert [(from_iso(r["start"]), from_iso(r["end"])) for r in rows] == list(itertools.pairwise(edges))
    for r in rows:
        a, b = from_iso(r["start"]), from_iso(r["end"])
        ins = inside(points, a, b)
        nums = [float(p.v) for p in ins if is_number(p.v)]
        assert r["count"] == len(ins) and r["no_data"] == (not ins)
        scale = (max((abs(v) for v in nums), default=0) + 1e6) * (b - a)
        ref = reference_integral(points, a, b, stepped)
        if ref is None:
            assert r["tavg"] is None and r["total"] is None
        else:
            assert close(r["total"] * 1e6, ref[0], scale) and close(r["tavg"] * ref[1], ref[0], scale)
        if not nums:
            assert r["min"] is r["max"] is r["mean"] is r["std"] is r["range"] is None
            continue
        mean = sum(nums) / len(nums)
        assert (r["min"], r["max"]) == (min(nums), max(nums))
        assert close(r["mean"], mean, 1e6) and close(r["range"], max(nums) - min(nums), 1e6)
        std = math.sqrt(sum((v - mean) ** 2 for v in nums) / len(nums))
        assert math.isclose(r["std"], std, rel_tol=1e-6, abs_tol=1e-3)


async def _collect(rows: Any) -> list[dict[str, Any]]:
    return [r async for r in rows]


def test_tavg_definition_on_a_small_case() -> None:
    # 0 at t=0, 10 at t=10 s; interval [5 s, 20 s): linear from 5 to 10 then held at 10.
    pts = [Point(0, 0.0), Point(10_000_000, 10.0)]
    s = summarize(pts[1:], 5_000_000, 20_000_000)
    got = calculate(s, 5_000_000, 20_000_000, pts[0], None, ("tavg", "total"))
    assert got == {"total": 7.5 * 5 + 10 * 10, "tavg": (7.5 * 5 + 10 * 10) / 15}
    stepped = calculate(s, 5_000_000, 20_000_000, pts[0], None, ("tavg",), stepped=True)
    assert stepped["tavg"] == (0 * 5 + 10 * 10) / 15
    # Nothing before: covered from the first sample only.
    assert calculate(s, 5_000_000, 20_000_000, None, None, ("tavg",))["tavg"] == 10.0
    assert calculate(None, 5_000_000, 20_000_000, None, None, ("tavg", "count", "min")) == {
        "tavg": None,
        "count": 0,
        "min": None,
    }


def test_parameters_are_checked_with_their_place() -> None:
    assert params.duration_us("1.5s", "interval") == 1_500_000
    assert params.duration_us("15m", "interval") == 15 * MINUTE_US
    assert params.duration_us("2", "interval") == 2_000_000
    for bad in ("0", "-1s", "1y", "", "1e9", "0.0000001s"):
        with pytest.raises(Invalid) as exc:
            params.duration_us(bad, "interval")
        assert exc.value.details[0]["loc"] == "/query/interval"
    with pytest.raises(Invalid) as exc:
        params.calc_list("count,median")
    assert exc.value.code == "unknown_calc"
    assert params.calc_list("min,min,max") == ("min", "max")
    with pytest.raises(Invalid) as exc:
        params.listed_times(f"{iso(T0)},{iso(T0)}", 10)
    assert exc.value.details[0]["loc"] == "/query/times/1"
    with pytest.raises(Invalid) as exc:
        params.listed_times(",".join(iso(T0 + i) for i in range(11)), 10)
    assert exc.value.code == "too_many_points"
    with pytest.raises(Invalid):
        params.grid_times(T0, T0 + HOUR_US, 1, 1000)
    assert list(params.grid_times(T0, T0 + 10, 5, 1000)) == [T0, T0 + 5, T0 + 10]
