"""The recorder's fast decoding of sample batches (`sample_decoding`): whatever it accepts, `SampleBatch` accepts
with the same points (values of the same types), and what ingest publishes always takes the fast path. Bodies
from hypothesis, near the edges of the contract: times off the `format_time` shape or impossible, names too long,
integers past 64 bits, extra and missing keys, qualities of the wrong type, times out of order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tributary_common.samples import Sample, SampleBatch
from tributary_common.timeutil import format_time
from tributary_hub.sample_buckets import to_us
from tributary_hub.sample_decoding import decode
from tributary_hub.series import Point

T0 = datetime(2026, 3, 1, 23, 59, 58, tzinfo=UTC)

good_times = st.integers(0, 10**12).map(lambda us: format_time(T0 + timedelta(microseconds=us)))
odd_times = st.one_of(
    good_times.map(lambda t: t[:19] + "Z"),  # no fraction
    good_times.map(lambda t: t[:22] + "Z"),  # three digits
    good_times.map(lambda t: t[:-1] + "+00:00"),
    good_times.map(lambda t: t[:-1] + "z"),
    good_times.map(lambda t: t[:-1] + "1Z"),  # seven digits
    good_times.map(lambda t: t[:-1]),  # naive
    st.sampled_from(
        ["2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z", "x", ""]
    ),
    st.sampled_from(["２０２６-01-01T00:00:00Z", "2026-01-01 00:00:00Z", "0000-01-01T00:00:00Z"]),
)
values = st.one_of(
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e19, -1e19, 9.3e18, -0.0, 2.0**63]),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.just({"nested": 1}),
    st.just([1]),
)
qualities = st.one_of(st.none(), st.integers(-(2**64), 2**64), st.text(max_size=3), st.booleans(), st.just(1.5))


@st.composite
def sample(draw: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"t": draw(st.one_of(good_times, good_times, odd_times)), "v": draw(values)}
    if draw(st.booleans()):
        s["q"] = draw(qualities)
    if draw(st.integers(0, 20)) == 0:
        s["x"] = 1
    if draw(st.integers(0, 20)) == 0:
        del s[draw(st.sampled_from(["t", "v"]))]
    return s


@st.composite
def body(draw: Any) -> bytes:
    samples = draw(st.lists(sample(), max_size=6))
    if draw(st.booleans()):  # mostly in order, as ingest sends them
        samples.sort(key=lambda s: str(s.get("t")))
    names = st.one_of(st.text(min_size=1, max_size=8), st.just(""), st.just("s" * 64), st.just("s" * 65))
    doc: dict[str, Any] = {"sid": draw(names), "source": draw(names), "samples": samples}
    if draw(st.integers(0, 15)) == 0:
        doc["extra"] = True
    if draw(st.integers(0, 15)) == 0:
        doc = draw(st.sampled_from([[doc], {"sid": "s", "source": "x"}, {**doc, "samples": {}}]))
    return json.dumps(doc).encode()


def typed(points: list[Point]) -> list[tuple[int, type, Any, type, Any]]:
    return [(p.t, type(p.v), p.v, type(p.q), p.q) for p in points]


@settings(max_examples=800, deadline=None)
@given(body())
def test_what_the_fast_path_accepts_pydantic_accepts_alike(raw: bytes) -> None:
    fast = decode(raw)
    try:
        sb = SampleBatch.model_validate_json(raw)
    except (ValidationError, TypeError):  # TypeError: naive and aware times compared (the recorder refuses it)
        assert fast is None, raw
        return
    if fast is not None:
        assert fast[0] == sb.sid
        assert typed(fast[1]) == typed([Point(to_us(s.t), s.v, s.q) for s in sb.samples]), raw


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**11), min_size=1, max_size=50, unique=True), st.data())
def test_what_ingest_publishes_takes_the_fast_path(offsets: list[int], data: st.DataObject) -> None:
    times = [T0 + timedelta(microseconds=o) for o in sorted(offsets)]
    vals = st.one_of(st.floats(-1e18, 1e18), st.integers(-(2**63), 2**63 - 1), st.text())  # floats past 2**63: slow
    samples = [Sample(t=t, v=data.draw(vals), q=data.draw(st.one_of(st.none(), st.integers(0, 255)))) for t in times]
    sb = SampleBatch(sid="line1.temp", source="simulator", samples=samples)
    fast = decode(sb.model_dump_json().encode())
    assert fast is not None
    assert typed(fast[1]) == typed([Point(to_us(s.t), s.v, s.q) for s in samples])
