"""A renewal pass over many held leases, against the real memcached: a round trip per command for 100 leases, the
ones somebody else took or that expired reported lost, the others' TTL renewed, watermarks written only when they
moved; a memcached that does not answer or cannot be reached loses the leases instead of stalling the pass."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.support import platform
from tributary_common.backoff import Backoff
from tributary_common.cache import Cache
from tributary_common.timeutil import format_time
from tributary_ingest.lease_renewal import LEASES_PER_ROUND, LeaseRenewal
from tributary_ingest.leases import Leases
from tributary_ingest.owned import Owned
from tributary_ingest.pipeline import SidPipeline

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N = LEASES_PER_ROUND * 2 + 50


def _owned(sid: str, published_t: datetime | None, wm_written: datetime | None) -> Owned:
    async def publish(_sid: str, _rows: object) -> None:
        raise AssertionError("not started")

    pipeline = SidPipeline(
        sid, publish, lambda _r: None, max_size=10, max_delay_s=1, max_buffer=10, retry=Backoff(1, 2)
    )
    pipeline.published_t = published_t
    return Owned(params=None, pipeline=pipeline, backoff=Backoff(1, 2), wm_written=wm_written)


def _renewal(leases: Leases, owned: dict[str, Owned], lost: list[str], interval_s: float = 5.0) -> LeaseRenewal:
    return LeaseRenewal(
        "sim", owned, leases, interval_s, lambda sid, _entry: lost.append(sid), asyncio.get_running_loop()
    )


async def test_a_pass_renews_what_is_ours_reports_the_rest_and_writes_moved_watermarks(memcached: Cache) -> None:
    leases = Leases(memcached, "sim", "me", ttl_s=30)
    sids = [f"sid{i:03d}" for i in range(N)]
    assert set(await leases.acquire_many(sids, limit=N)) == set(sids)
    taken, expired = {sids[3], sids[150]}, {sids[7], sids[249]}
    for sid in taken:
        await memcached.set(f"lease:sim:{sid}", b"other", ttl=30)
    for sid in expired:
        await memcached.delete(f"lease:sim:{sid}")
    before = await memcached.gets_many([f"lease:sim:{s}" for s in sids])
    # Watermarks: moved (written), unchanged since written (left alone: a marker shows it), none yet (nothing).
    moved = {s: T0 + timedelta(seconds=i) for i, s in enumerate(sids) if i % 3 == 0}
    unchanged = {s: T0 for i, s in enumerate(sids) if i % 3 == 1}
    for sid in unchanged:
        await memcached.set(f"wm:sim:{sid}", b"marker")
    owned = {s: _owned(s, moved.get(s) or unchanged.get(s), unchanged.get(s)) for s in sids}
    lost: list[str] = []
    await _renewal(leases, owned, lost).renew()
    await asyncio.sleep(0)  # the lost callbacks are scheduled on the loop

    assert sorted(lost) == sorted(taken | expired)
    after = await memcached.gets_many([f"lease:sim:{s}" for s in sids])
    for sid in set(sids) - taken - expired:
        key = f"lease:sim:{sid}"
        assert after[key][0] == b"me" and after[key][1] != before[key][1], sid  # renewed by a cas
    assert after[f"lease:sim:{sids[3]}"][0] == b"other"  # somebody else's lease left as it is
    marks = await memcached.get_many([f"wm:sim:{s}" for s in sids])
    for sid in sids:
        mark = marks.get(f"wm:sim:{sid}")
        if sid in taken | expired:
            assert mark in (None, b"marker"), sid  # no watermark written for a lease not held
        elif sid in moved:
            assert mark == format_time(moved[sid]).encode(), sid
            assert owned[sid].wm_written == moved[sid]
        elif sid in unchanged:
            assert mark == b"marker", sid
        else:
            assert mark is None, sid


async def test_an_unreachable_or_silent_memcached_loses_the_leases_without_stalling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    silent_port = server.sockets[0].getsockname()[1]
    try:
        for port in (silent_port, platform.free_port()):  # answers nothing; nobody listening
            unanswered = Cache("127.0.0.1", port, "renewal")
            sids = [f"s{i}" for i in range(LEASES_PER_ROUND + 1)]
            owned = {s: _owned(s, T0, None) for s in sids}
            lost: list[str] = []
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="tributary_ingest.lease_renewal"):
                await _renewal(Leases(unanswered, "sim", "me", ttl_s=3), owned, lost, interval_s=0.5).renew()
            await asyncio.sleep(0)
            await unanswered.close()
            assert sorted(lost) == sorted(sids)
            assert all(entry.wm_written is None for entry in owned.values())
            # One warning per round of leases, not one per lease.
            assert [r.getMessage().split(" failed")[0] for r in caplog.records] == [
                f"renewing {LEASES_PER_ROUND} leases of sim",
                "renewing 1 leases of sim",
            ]
    finally:
        server.close()
