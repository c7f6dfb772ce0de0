"""The batch body is byte for byte what the plain encoder made: every time with six fractional digits and `Z`,
whichever path (orjson's own datetime text or ours) formatted it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from tributary_ingest.columns import Batch
from tributary_ingest.pipeline import Row
from tributary_ingest.publisher import encode_batch


def reference(source: str, sid: str, rows: list[Row]) -> bytes:
    """The encoder before the fast path: a dict per sample, each time formatted field by field."""
    samples: list[dict[str, Any]] = []
    for t, v, q in rows:
        u = t.astimezone(UTC)
        text = f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}Z"
        s: dict[str, Any] = {"t": text, "v": v}
        if q is not None:
            s["q"] = q
        samples.append(s)
    return orjson.dumps({"sid": sid, "source": source, "samples": samples})


class Stamp(datetime):
    """A datetime subclass (as some libraries hand over): formatted by us, never by orjson."""


def test_bodies_equal_the_reference_encoding() -> None:
    rnd = random.Random(7)
    lo = datetime(1, 1, 1, tzinfo=UTC)
    span_s = int((datetime(9999, 12, 31, tzinfo=UTC) - lo).total_seconds())
    times = [
        lo,
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, 10, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 1, 100000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=-5))),
        Stamp(2026, 6, 1, 12, 0, 0, 250000, tzinfo=UTC),
    ]
    times += [lo + timedelta(seconds=rnd.randrange(span_s), microseconds=rnd.randrange(1_000_000)) for _ in range(5000)]
    times += [lo + timedelta(seconds=rnd.randrange(span_s)) for _ in range(500)]
    values: list[Any] = [1.5, -0.1, 0.0, 1e-7, 12345678.9, 3, -(2**63), 2**63 - 1, True, False, None, "é ✓", ""]
    rows: list[Row] = [
        (t, values[i % len(values)], None if i % 3 else (i if i % 2 else "good")) for i, t in enumerate(times)
    ]
    assert encode_batch("sim", "sid1", rows) == reference("sim", "sid1", rows)
    assert encode_batch("sim", "sid1", []) == reference("sim", "sid1", [])
    # The pipeline hands over its batches as columns: the same bytes, whole and sliced (a long batch is halved).
    columns = Batch(*(tuple(c) for c in zip(*rows, strict=True)))
    assert encode_batch("sim", "sid1", columns) == reference("sim", "sid1", rows)
    assert encode_batch("sim", "sid1", columns[100:2000]) == reference("sim", "sid1", rows[100:2000])
    assert columns[7] == rows[7] and list(columns) == rows and len(columns) == len(rows)
