"""Deduplication and batching of one sid, with a publish function standing in for the broker adapter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import IntEnum

from tests.support.polling import eventually
from tributary_common.backoff import Backoff
from tributary_common.samples import SampleBatch
from tributary_ingest.admission import MAX_QUALITY_CHARS, MAX_TEXT_CHARS, Refusal, SampleAdmission
from tributary_ingest.pipeline import Row, SidPipeline
from tributary_ingest.publisher import encode_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def test_drops_non_increasing_splits_batches_and_retries_in_order() -> None:
    published: list[list[Row]] = []
    drops: list[Refusal] = []
    failures = [2]

    async def publish(sid: str, rows: Sequence[Row]) -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("broker away")
        published.append(list(rows))

    p = SidPipeline("s1", publish, drops.append, max_size=3, max_delay_s=0.05, max_buffer=6, retry=Backoff(0.01, 0.02))
    p.start()
    assert p.add(T0, 1.0, None)
    assert not p.add(T0, 2.0, None)  # same time
    assert not p.add(T0 - timedelta(seconds=1), 3.0, None)  # earlier
    assert p.add(T0.replace(tzinfo=None) + timedelta(seconds=1), 4, "good")  # naive means UTC
    assert not p.add(T0 + timedelta(seconds=2), float("nan"), None)
    for i in range(3, 6):
        assert p.add(T0 + timedelta(seconds=i), i, None)
    await eventually(lambda: sum(len(b) for b in published) >= 5, 10, "everything published")
    flat = [r for b in published for r in b]
    times = [t for t, _, _ in flat]
    assert times == sorted(set(times)), "strictly increasing across batches"
    assert all(len(b) <= 3 for b in published)
    assert flat[1] == (T0 + timedelta(seconds=1), 4, "good")
    assert [d.reason for d in drops[:3]] == ["not_increasing", "not_increasing", "not_finite"]
    await p.close()


async def test_buffer_limit_and_drain() -> None:
    release = asyncio.Event()
    published: list[list[Row]] = []

    async def slow(sid: str, rows: Sequence[Row]) -> None:
        await release.wait()
        published.append(list(rows))

    drops: list[Refusal] = []
    p = SidPipeline("s2", slow, drops.append, max_size=2, max_delay_s=0.01, max_buffer=4, retry=Backoff(0.01, 0.02))
    p.start()
    accepted = [p.add(T0 + timedelta(seconds=i), i, None) for i in range(6)]
    assert accepted == [True] * 4 + [False] * 2 and [d.reason for d in drops] == ["buffer_full", "buffer_full"]
    release.set()
    await p.drain(timeout=5)
    assert [v for b in published for _, v, _ in b] == [0, 1, 2, 3]
    assert p.published_t == T0 + timedelta(seconds=3)


async def test_drain_waits_for_the_publish_in_flight_instead_of_sending_it_twice() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls: list[list[Row]] = []

    async def slow(sid: str, rows: Sequence[Row]) -> None:
        calls.append(list(rows))
        started.set()
        await release.wait()

    p = SidPipeline("s3", slow, lambda _r: None, max_size=2, max_delay_s=0.01, max_buffer=10, retry=Backoff(0.01, 0.02))
    p.start()
    for i in range(3):
        p.add(T0 + timedelta(seconds=i), i, None)
    await started.wait()  # the first batch is in flight
    draining = asyncio.create_task(p.drain(timeout=10))
    await asyncio.sleep(0.1)
    release.set()
    await draining
    assert [[v for _, v, _ in c] for c in calls] == [[0, 1], [2]]


NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _pipeline(sid: str, published: list[list[Row]], drops: list[Refusal]) -> SidPipeline:
    async def publish(sid: str, rows: Sequence[Row]) -> None:
        published.append(list(rows))

    window = SampleAdmission(max_age_s=86400, max_skew_s=300, clock=lambda: NOW)
    return SidPipeline(
        sid,
        publish,
        drops.append,
        max_size=100,
        max_delay_s=0.01,
        max_buffer=100,
        retry=Backoff(0.01, 0.02),
        admission=window,
    )


async def test_a_time_outside_the_window_is_refused_before_it_moves_the_watermark() -> None:
    published: list[list[Row]] = []
    drops: list[Refusal] = []
    p = _pipeline("w", published, drops)
    p.start()
    assert p.add(NOW - timedelta(seconds=10), 1.0, None)
    hostile: list[object] = [
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),  # past year 9999 once in UTC
        NOW + timedelta(seconds=301),
        NOW - timedelta(days=2),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # before year 1 once in UTC
        datetime(1970, 1, 1),
        1e20,
        float("inf"),
        "2026-06-01T12:00:00Z",
        None,
    ]
    for t in hostile:
        assert not p.add(t, 2.0, None), t
    assert p.last_t == NOW - timedelta(seconds=10), "no refused time moved the watermark"
    # Real samples keep coming: an offset time inside the window (stored as UTC), one just inside the skew.
    assert p.add((NOW - timedelta(seconds=5)).astimezone(timezone(timedelta(hours=5))), 3.0, None)
    assert p.add(NOW + timedelta(seconds=299), 4.0, None)
    await eventually(lambda: sum(len(b) for b in published) == 3, 10, "the three real samples")
    assert [r[0] for b in published for r in b] == [
        NOW - timedelta(seconds=10),
        NOW - timedelta(seconds=5),
        NOW + timedelta(seconds=299),
    ]
    assert all(r[0].tzinfo is UTC for b in published for r in b)
    assert [d.reason for d in drops] == [
        "too_far_ahead",
        "too_far_ahead",
        "too_far_ahead",
        "too_old",
        "too_old",
        "too_old",
        "bad_time",
        "bad_time",
        "bad_time",
        "bad_time",
    ]
    assert "9999-12-31" in drops[0].detail
    await p.close()


async def test_values_that_cannot_be_sent_are_refused_and_subclasses_go_as_their_base_type() -> None:
    class Level(IntEnum):
        HIGH = 3

    class Celsius(float):
        pass

    published: list[list[Row]] = []
    drops: list[Refusal] = []
    p = _pipeline("v", published, drops)
    p.start()
    refused: list[tuple[object, object]] = [
        (float("nan"), None),
        (float("inf"), None),
        (float("-inf"), None),
        (2**63, None),  # orjson encodes up to 2**64-1, the database only up to 2**63-1
        (-(2**63) - 1, None),
        ("\ud800", None),  # a lone surrogate: no JSON encoder takes it
        ("x" * (MAX_TEXT_CHARS + 1), None),
        ([1, 2], None),
        ({"a": 1}, None),
        (b"bytes", None),
        (Decimal("1.5"), None),
        (1.0, True),  # a bool quality: the recorder's contract has int or str
        (1.0, 1.5),
        (1.0, 2**64),
        (1.0, "q" * (MAX_QUALITY_CHARS + 1)),
    ]
    accepted: list[tuple[object, object]] = [
        (Level.HIGH, None),
        (Celsius(21.5), "good"),
        (True, 0),
        (None, None),
        ("é ✓", Level.HIGH),
        (2**63 - 1, None),
        (-(2**63), None),
    ]
    i = 0
    for v, q in refused:
        i += 1
        assert not p.add(NOW - timedelta(seconds=100 - i), v, q), (v, q)
    for v, q in accepted:
        i += 1
        assert p.add(NOW - timedelta(seconds=100 - i), v, q), (v, q)
    await eventually(lambda: sum(len(b) for b in published) == len(accepted), 10, "the accepted samples")
    rows = [r for b in published for r in b]
    assert [type(v) for _, v, _ in rows] == [int, float, bool, type(None), str, int, int]
    assert [type(q) for _, _, q in rows] == [type(None), str, int, type(None), int, type(None), type(None)]
    # What the pipeline accepted always encodes, and the recorder's contract takes it.
    batch = SampleBatch.model_validate_json(encode_batch("test", "v", rows))
    assert [s.v for s in batch.samples] == [3, 21.5, True, None, "é ✓", 2**63 - 1, -(2**63)]
    assert [d.reason for d in drops] == ["not_finite"] * 3 + ["bad_value"] * 8 + ["bad_quality"] * 4
    await p.close()


async def test_the_batch_in_flight_counts_toward_the_buffer_limit_and_room() -> None:
    """The batch in flight has left the buffer's list but not the pipeline: it still counts until confirmed."""
    started = asyncio.Event()
    release = asyncio.Event()
    published: list[list[Row]] = []

    async def slow(sid: str, rows: Sequence[Row]) -> None:
        started.set()
        await release.wait()
        published.append(list(rows))

    drops: list[Refusal] = []
    p = SidPipeline("s9", slow, drops.append, max_size=2, max_delay_s=0.01, max_buffer=4, retry=Backoff(0.01, 0.02))
    p.start()
    assert p.add(T0, 0.0, None) and p.add(T0 + timedelta(seconds=1), 1.0, None)
    await asyncio.wait_for(started.wait(), 5)  # two in flight now
    p.add_many([(T0 + timedelta(seconds=i), float(i), None) for i in range(2, 5)])
    assert [d.reason for d in drops] == ["buffer_full"], "2 in flight + 2 buffered fill a buffer of 4"
    room = asyncio.create_task(p.room())
    await asyncio.sleep(0.05)
    assert not room.done(), "a full buffer (the batch in flight included) makes the source wait"
    release.set()
    await asyncio.wait_for(room, 5)
    await p.drain(timeout=5)
    assert [v for b in published for _, v, _ in b] == [0.0, 1.0, 2.0, 3.0]
    assert p.published_t == T0 + timedelta(seconds=3)


async def test_a_batch_whose_publish_was_stopped_is_sent_first_after_a_restart() -> None:
    attempts: list[list[Row]] = []
    confirm = asyncio.Event()

    async def publish(sid: str, rows: Sequence[Row]) -> None:
        attempts.append(list(rows))
        await confirm.wait()

    p = SidPipeline(
        "s5", publish, lambda _: None, max_size=2, max_delay_s=0.01, max_buffer=10, retry=Backoff(0.01, 0.02)
    )
    p.start()
    for i in range(3):
        assert p.add(T0 + timedelta(seconds=i), float(i), None)
    await eventually(lambda: len(attempts) == 1, 10, "the first batch in flight")
    await p.close(forget=False)  # stopped before the broker confirmed it
    assert p.add(T0 + timedelta(seconds=3), 3.0, None)
    confirm.set()
    p.start()
    await eventually(lambda: sum(len(b) for b in attempts[1:]) >= 4, 10, "everything sent again")
    sent = [t for b in attempts[1:] for t, _, _ in b]
    assert sent == [T0 + timedelta(seconds=i) for i in range(4)]
    await p.close()
