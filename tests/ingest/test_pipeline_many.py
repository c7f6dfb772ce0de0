"""`SidPipeline.add_many` (a connector's `Sink.emit_many`) against `add` one by one: the same samples accepted, the
same refusals in the same order, the same batches, whatever the rows hold."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tests.support.polling import eventually
from tributary_common.backoff import Backoff
from tributary_ingest.admission import Refusal, SampleAdmission
from tributary_ingest.pipeline import Row, SidPipeline

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def pipeline(published: list[list[Row]], drops: list[Refusal], max_buffer: int) -> SidPipeline:
    async def publish(sid: str, rows: Sequence[Row]) -> None:
        published.append(list(rows))

    return SidPipeline(
        "s",
        publish,
        drops.append,
        max_size=50,
        max_delay_s=0.01,
        max_buffer=max_buffer,
        retry=Backoff(0.01, 0.02),
        admission=SampleAdmission(max_age_s=86400, max_skew_s=300, clock=lambda: NOW),
    )


def hostile_rows(seed: int, n: int) -> list[tuple[Any, Any, Any]]:
    """Mostly good increasing samples, with every kind of bad time, value and quality mixed in."""
    rnd = random.Random(seed)
    bad_times: list[object] = [
        NOW + timedelta(seconds=301),
        NOW - timedelta(days=2),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1970, 1, 1),
        "2026-06-01T12:00:00Z",
        None,
        1e20,
    ]
    bad_values: list[object] = [float("nan"), float("inf"), None, object(), "x" * 100_000, Decimal("1e400")]
    odd_values: list[object] = [1, True, "text", Decimal("2.5"), -0.0, 1e308]
    t = NOW - timedelta(hours=1)
    rows: list[tuple[Any, Any, Any]] = []
    for _ in range(n):
        t += timedelta(microseconds=rnd.choice([1, 1000, 250_000]))
        roll = rnd.random()
        if roll < 0.05:
            rows.append((rnd.choice(bad_times), 1.0, None))
        elif roll < 0.10:
            last = rows[-1][0] if rows and rnd.random() < 0.5 else t - timedelta(seconds=1)
            rows.append((last, 1.0, None))  # not after the last one (the same time, or earlier)
        elif roll < 0.15:
            rows.append((t, rnd.choice(bad_values), None))
        elif roll < 0.20:
            rows.append((t, rnd.choice(odd_values), None))
        elif roll < 0.25:
            rows.append((t, 2.0, rnd.choice(["good", "bad", 7, "q" * 10_000])))
        elif roll < 0.30:
            rows.append((t.replace(tzinfo=None), 3.0, None))  # naive: UTC
        elif roll < 0.33:
            rows.append((t.astimezone(timezone(timedelta(hours=5))), 4.0, None))
        else:
            rows.append((t, rnd.random(), None))
    return rows


async def run(rows: list[tuple[Any, Any, Any]], chunk: int | None, max_buffer: int) -> tuple[list[Row], list[str]]:
    published: list[list[Row]] = []
    drops: list[Refusal] = []
    p = pipeline(published, drops, max_buffer)
    if chunk is None:
        for row in rows:
            p.add(*row)
    else:
        for first in range(0, len(rows), chunk):
            p.add_many(rows[first : first + chunk])
    p.start()
    await p.drain(10)
    return [r for batch in published for r in batch], [d.reason for d in drops]


async def test_add_many_accepts_and_refuses_exactly_like_add() -> None:
    for seed in range(20):
        rows = hostile_rows(seed, 600)
        one_by_one = await run(rows, None, max_buffer=10_000)
        for chunk in (1, 7, 500):
            assert await run(rows, chunk, max_buffer=10_000) == one_by_one, (seed, chunk)
        assert one_by_one[0], "some samples pass"
        assert {"not_increasing", "not_finite"} <= set(one_by_one[1]), "and some are refused"


async def test_add_many_refuses_what_overflows_the_buffer_and_batches_as_add_does() -> None:
    rows = [(NOW - timedelta(seconds=100) + timedelta(milliseconds=i), float(i), None) for i in range(300)]
    assert await run(rows, 120, max_buffer=200) == await run(rows, None, max_buffer=200)
    accepted, refused = await run(rows, 120, max_buffer=200)
    assert len(accepted) == 200 and refused == ["buffer_full"] * 100

    published: list[list[Row]] = []
    p = pipeline(published, [], max_buffer=1000)
    p.start()
    p.add_many(rows[:120])  # over max_size (50): a full batch goes at once, not after the delay
    await eventually(lambda: sum(map(len, published)) == 120, 10, "all published")
    assert all(len(b) <= 50 for b in published)
    assert [r[0] for b in published for r in b] == [r[0] for r in rows[:120]]
    await asyncio.wait_for(p.close(), 5)


async def test_buffered_samples_leave_no_object_for_the_cyclic_gc() -> None:
    """The buffer holds times, values and qualities in columns: before, it held each row tuple, which the GC tracks
    until a collection walks it (10-14 % of the process's time at 100 and 1,000 busy sids, bench/README.md)."""
    published: list[list[Row]] = []
    p = pipeline(published, [], max_buffer=10_000)
    rows = [(NOW + timedelta(milliseconds=i), float(i), None) for i in range(2_000)]
    gc.disable()  # no collection may untrack the rows meanwhile
    try:
        p.add_many(rows)
        del rows
        buffered = [o for o in gc.get_objects() if type(o) is tuple and len(o) == 3 and type(o[0]) is datetime]
    finally:
        gc.enable()
    assert buffered == []
    p.add_many([(NOW + timedelta(seconds=3), 1.0, "Uncertain")])
    await p.drain(5)
    samples = [row for batch in published for row in batch]  # no await until here: nothing was published before
    assert len(samples) == 2_001 and samples[-1] == (NOW + timedelta(seconds=3), 1.0, "Uncertain")
