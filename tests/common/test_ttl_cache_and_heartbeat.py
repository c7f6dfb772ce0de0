"""The self-emptying TTL memory and the heartbeat loop."""

from __future__ import annotations

import asyncio

import pytest

from tributary_common.heartbeat import Heartbeat
from tributary_common.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_fresh_for_ttl_then_stale_and_none_is_a_hit() -> None:
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(2.0, clock=clock)
    assert cache.get("a") is None
    cache.put("a", None)
    hit = cache.get("a")
    assert hit is not None and hit.value is None
    clock.now += 1.999
    assert cache.get("a") is not None
    clock.now += 0.001
    assert cache.get("a") is None


def test_zero_ttl_remembers_nothing_and_explicit_expiry() -> None:
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(0, clock=clock)
    cache.put("a", "x")
    assert cache.get("a") is None
    cache.put("b", "y", expires=clock.now + 10)  # e.g. a token's `exp`
    clock.now += 9
    hit = cache.get("b")
    assert hit is not None and hit.value == "y"
    clock.now += 1
    assert cache.get("b") is None


def test_empties_itself_past_max_entries_forget_and_clear() -> None:
    cache: TtlCache[int, int] = TtlCache(60, max_entries=3)
    for i in range(3):
        cache.put(i, i)
    cache.put(2, 20)  # replacing an entry does not empty it
    assert len(cache) == 3
    cache.put(3, 3)
    assert len(cache) == 1 and cache.get(3) is not None and cache.get(0) is None
    cache.forget(3)
    cache.forget(3)
    assert len(cache) == 0
    cache.put(1, 1)
    cache.clear()
    assert cache.get(1) is None


async def test_fetch_loads_once_and_does_not_remember_failures() -> None:
    cache: TtlCache[str, int] = TtlCache(60)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        return 7

    async def broken() -> int:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await cache.fetch("k", broken)
    assert await cache.fetch("k", load) == 7
    assert await cache.fetch("k", load) == 7
    assert loads == 1


async def test_heartbeat_beats_at_once_every_interval_and_when_poked() -> None:
    beats: list[float] = []
    loop = asyncio.get_running_loop()

    async def beat() -> None:
        beats.append(loop.time())

    hb = Heartbeat(beat, interval_s=0.4, name="test heartbeat")
    hb.start()
    hb.start()  # one task only
    await asyncio.sleep(0.05)
    assert len(beats) == 1
    hb.poke()
    await asyncio.sleep(0.05)
    assert len(beats) == 2
    await asyncio.sleep(0.55)  # the next beat one interval after the poked one (~0.45 s), not two (~0.85 s)
    assert len(beats) == 3
    await hb.stop()
    await hb.stop()
    assert not hb.running
    await asyncio.sleep(0.3)
    assert len(beats) == 3


async def test_heartbeat_survives_a_failing_beat_and_can_wait_first(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def beat() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("broker away")

    hb = Heartbeat(beat, interval_s=0.05, name="flaky beat", first_at_once=False)
    hb.start()
    await asyncio.sleep(0.02)
    assert calls == 0
    await asyncio.sleep(0.2)
    await hb.stop()
    assert calls >= 2
    assert "flaky beat failed: broker away" in caplog.text


async def test_a_poke_during_a_beat_makes_one_more_beat() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def beat() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await release.wait()

    hb = Heartbeat(beat, interval_s=60, name="slow beat")
    hb.start()
    await started.wait()
    hb.poke()
    release.set()
    await asyncio.sleep(0.05)
    assert calls == 2
    await hb.stop()
