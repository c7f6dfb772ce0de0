"""Long text values and qualities in summaries: kept cut to `TEXT_INLINE` characters and read whole from their
bucket. Whole, a sid sending 1 MiB texts (what a sample batch allows) every ten minutes grew its day of minute
summaries past what FerretDB can send back after 29 of them (a probe: `ProtocolError`, message length 48,706,059):
every later write of that sid and day failed, retried for ever by the recorder, and its summaries could not be
read. Cut, the day's summaries stay small whatever the texts (below)."""

from __future__ import annotations

import base64
import os

from tests.hub.test_sample_store import DAY, T0, all_summaries, expected_summaries, store  # noqa: F401
from tributary_hub.sample_buckets import bucket_id
from tributary_hub.sample_store import SampleStore
from tributary_hub.sample_summaries import (
    TEXT_INLINE,
    Cut,
    cut_times,
    decode_columns,
    made_whole,
    minute_summaries,
    pack_summaries,
)
from tributary_hub.series import HOUR_US, MINUTE_US, RESOLUTIONS, Point

H = T0 - T0 % HOUR_US


def text(n: int) -> str:
    """`n` characters deflate cannot shrink much."""
    return base64.b64encode(os.urandom(n)).decode()[:n]


def test_long_texts_are_kept_cut_and_made_whole_by_time() -> None:
    long_v, long_q = text(TEXT_INLINE + 1), text(5000)
    points = [
        Point(H, 1.0),
        Point(H + 1, long_v),  # a minute's last: kept whole in the summary until now
        Point(H + MINUTE_US, "short", long_q),
        Point(H + MINUTE_US + 1, -1.5, "q"),
        Point(H + 2 * MINUTE_US, "x" * TEXT_INLINE),  # at the bound: inline
    ]
    minutes = minute_summaries(points)
    cols, cut = decode_columns(pack_summaries(minutes, H), H)
    assert cut and cut_times(cols) == {H + 1, H + MINUTE_US}
    assert cols.last[0] == (H + 1, long_v[:TEXT_INLINE], None) and type(cols.last[0][1]) is Cut
    assert cols.first[1][2] == long_q[:TEXT_INLINE]
    whole = {p.t: (p.t, p.v, p.q) for p in points if p.t in cut_times(cols)}
    assert made_whole(cols, whole).summaries() == minutes
    plain, cut = decode_columns(pack_summaries(minute_summaries(points[-1:]), H), H)
    assert not cut and plain.summaries() == minute_summaries(points[-1:])


async def test_summaries_of_long_texts_read_whole_and_their_day_stays_small(store: SampleStore) -> None:  # noqa: F811
    # A 16 KiB text every ten minutes for a day: whole, each minute's summary held it twice.
    points = [Point(H + k * 10 * MINUTE_US, text(16 * 1024), text(300) if k % 2 else None) for k in range(144)]
    assert await store.write([("t", points)]) == 144
    for resolution in RESOLUTIONS:
        got = await all_summaries(store, "t", H, H + DAY, resolution)
        assert got == expected_summaries(points, H, H + DAY, resolution)
    holding = store.partitions.holding("sum", "t", H)
    day = await store.collection(holding).find_one({"sid": "t", "start": H - H % DAY})
    assert day is not None and len(str(day)) < 300_000  # whole: 144 × 16 KiB twice, ~4.6 MB before deflate


async def test_a_cut_text_whose_raw_sample_is_gone_reads_cut(store: SampleStore) -> None:  # noqa: F811
    long = text(1000)
    await store.write([("g", [Point(H, long)])])
    raw = store.collection(store.partitions.holding("raw", "g", H))
    await raw.delete_one({"_id": bucket_id("g", H)})  # as retention keeping summaries longer than raw leaves it
    [minute] = await all_summaries(store, "g", H, H + HOUR_US, MINUTE_US)
    assert minute.count == 1 and minute.first.v == long[:TEXT_INLINE] and type(minute.first.v) is Cut
