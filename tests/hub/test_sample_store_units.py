"""Sample buckets and partitions, pure logic (no services): packing, merging, summary rows, partition spans, and
the recorder's conversion of a batch."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tributary_common.samples import Sample, SampleBatch
from tributary_hub.partitions import Layout
from tributary_hub.recording import Unrecordable
from tributary_hub.sample_buckets import (
    from_us,
    merge,
    pack_points,
    time_text,
    to_us,
    unpack_points,
)
from tributary_hub.sample_partitions import DAY_US, SamplePartitions, month_of, month_start, partition_span
from tributary_hub.sample_records import samples_to_docs
from tributary_hub.sample_summaries import minute_summaries, pack_summaries, unpack_summaries
from tributary_hub.sample_writes import _by_hour
from tributary_hub.series import HOUR_US, MINUTE_US, Point, summarize

H = to_us(datetime(2026, 1, 31, 23, tzinfo=UTC))


def test_points_survive_packing_with_every_kind_of_value() -> None:
    points = [
        Point(H, 1.5),
        Point(H + 1, 2),
        Point(H + 2, True, "good"),
        Point(H + 3, "text", 192),
        Point(H + 4, None),
        Point(H + 5, math.inf),
        Point(H + 6, -math.inf),
        Point(H + 7, 1.0),
    ]
    back = unpack_points(pack_points(points, H), H)
    assert back[:5] == points[:5]
    assert back[5].v == math.inf and back[6].v == -math.inf
    assert isinstance(back[7].v, float) and isinstance(back[1].v, int) and back[2].v is True
    nan = unpack_points(pack_points([Point(H, math.nan)], H), H)[0].v
    assert isinstance(nan, float) and math.isnan(nan)


def test_merge_keeps_the_first_sample_at_a_time_and_counts_only_new_ones() -> None:
    stored = [Point(H + 10, "old"), Point(H + 30, "old")]
    merged, added = merge(stored, [Point(H + 30, "new"), Point(H + 20, "new"), Point(H + 20, "later"), Point(H, "n")])
    assert merged == [Point(H, "n"), Point(H + 10, "old"), Point(H + 20, "new"), Point(H + 30, "old")]
    assert added == 2
    assert merge(merged, [Point(H + 10, "again")]) == (merged, 0)


def test_summaries_round_trip_and_minutes_match_summarize() -> None:
    points = [Point(H + i * 7_000_000, float(i % 5) if i % 3 else "s", i % 4 or None) for i in range(600)]
    minutes = minute_summaries(points)
    assert [m.start for m in minutes] == sorted({p.t - p.t % MINUTE_US for p in points})
    for m in minutes:
        inside = [p for p in points if m.start <= p.t < m.end]
        assert m == summarize(inside, m.start, m.start + MINUTE_US)
    assert unpack_summaries(pack_summaries(minutes, H), H) == minutes
    odd = [Point(H, 1e308), Point(H + 1, 1e308), Point(H + 2, math.inf), Point(H + 3, -1.0, "bad"), Point(H + 4, "x")]
    huge = summarize(odd, H, H + HOUR_US)
    assert huge is not None and huge.total == math.inf and huge.max == odd[0] and huge.min == odd[3]
    assert unpack_summaries(pack_summaries([huge], H), H) == [huge]


def reference_merge(stored: list[Point], new: list[Point]) -> tuple[list[Point], int]:
    by_t = {p.t: p for p in stored}
    for p in new:
        by_t.setdefault(p.t, p)
    return [by_t[t] for t in sorted(by_t)], len(by_t) - len(stored)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 50), unique=True).map(sorted),
    st.lists(st.integers(0, 80), max_size=30),
    st.booleans(),
)
def test_merge_equals_the_plain_reference(stored_at: list[int], new_at: list[int], in_order: bool) -> None:
    # In order and after the stored ones (the quick path) or anything (duplicates, overlaps, out of order).
    if in_order:
        new_at = sorted({t + 51 for t in new_at})
    stored = [Point(H + t, "old") for t in stored_at]
    new = [Point(H + t, f"new{i}") for i, t in enumerate(new_at)]
    assert merge(stored, iter(new)) == reference_merge(stored, new)


@given(st.lists(st.integers(0, 3 * HOUR_US), max_size=40), st.booleans())
def test_a_batch_is_cut_into_its_hours_in_order(times: list[int], ordered: bool) -> None:
    points = [Point(H + t, i) for i, t in enumerate(sorted(times) if ordered else times)]
    hours: dict[tuple[str, int], list[Point]] = defaultdict(list)
    _by_hour(hours, "s", points)
    assert {h: ps for (_, h), ps in hours.items()} == {
        h: [p for p in points if p.t - p.t % HOUR_US == h] for h in {p.t - p.t % HOUR_US for p in points}
    }


def test_times_convert_exactly() -> None:
    t = datetime(2026, 11, 30, 10, 0, 0, 123456, tzinfo=UTC)
    assert from_us(to_us(t)) == t
    assert time_text(to_us(t)) == "2026-11-30T10:00:00.123456Z"


def test_partitions_map_days_and_months() -> None:
    assert month_start(month_of(H)) == to_us(datetime(2026, 1, 1, tzinfo=UTC))
    assert partition_span("sum", month_of(H))[1] == to_us(datetime(2026, 2, 1, tzinfo=UTC))
    day = H // DAY_US
    partitioned, indexed = SamplePartitions(Layout.PARTITIONED), SamplePartitions(Layout.INDEXED)
    assert partitioned.holding("raw", "abc", H) != partitioned.holding("raw", "abc", H + HOUR_US)  # next day
    assert partitioned.holding("raw", "abc", H) != partitioned.holding("raw", "abd", H)
    assert indexed.holding("raw", "abc", H) == indexed.holding("raw", "abd", H + HOUR_US)
    weird = partitioned.holding("raw", "Some Sid/with $ and .", H)
    assert weird.startswith("samples.raw.h") and "$" not in weird and " " not in weird
    spans = indexed.spans("raw", "abc", [day + 1, day], H, H + 2 * HOUR_US)
    assert spans == [(indexed.holding("raw", "abc", H), H, H + 2 * HOUR_US)]  # one query, clipped to the range
    spans = partitioned.spans("raw", "abc", [day, day + 1, day + 5], H, H + 2 * HOUR_US)
    assert [(lo, hi) for _, lo, hi in spans] == [(H, (day + 1) * DAY_US), ((day + 1) * DAY_US, H + 2 * HOUR_US)]


def _message(body: Any) -> Any:
    return SimpleNamespace(body=body if isinstance(body, bytes) else json.dumps(body).encode(), routing_key="x.s")


async def test_conversion_refuses_what_can_never_be_stored() -> None:
    convert = samples_to_docs()
    batch = SampleBatch(sid="s", source="x", samples=[Sample(t=datetime(2026, 1, 1, tzinfo=UTC), v=2**62, q=1)])
    docs = await convert(_message(batch.model_dump_json().encode()))
    point = Point(to_us(datetime(2026, 1, 1, tzinfo=UTC)), 2**62, 1)
    assert docs == [{"sid": "s", "points": [point], "key": "x.s"}]  # the key for a dead letter after staging
    t = "2026-01-01T00:00:00Z"
    for bad, reason in (
        ({"sid": "s", "source": "x", "samples": [{"t": t, "v": 2**64}]}, "not_a_sample_batch"),
        ({"sid": "s", "source": "x", "samples": [{"t": t, "v": 1, "q": -(2**63) - 1}]}, "not_a_sample_batch"),
        ({"sid": "s", "source": "x", "samples": [{"t": t, "v": {"nested": 1}}]}, "not_a_sample_batch"),
        ({"sid": "s", "source": "x", "samples": [{"t": t, "v": "é" * 600_000}]}, "too_large"),  # 1.2 MB of UTF-8
        (
            {
                "sid": "s",
                "source": "x",
                "samples": [{"t": t, "v": 1}, {"t": "2026-01-02T00:00:00Z", "v": 1, "q": "q" * 2**21}],
            },
            "too_large",
        ),
        (b"{not json", "undecodable"),
        ({"sid": "s", "source": "x", "samples": [{"t": "2026-01-01T00:00:00", "v": 1}]}, "not_a_sample_batch"),
        (
            {"sid": "s", "source": "x", "samples": [{"t": t, "v": 1}, {"t": "2026-01-02T00:00:00", "v": 2}]},
            "not_a_sample_batch",
        ),
    ):
        with pytest.raises(Unrecordable) as refused:
            await convert(_message(bad))
        assert refused.value.reason == reason, bad
