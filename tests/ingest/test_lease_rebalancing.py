"""Lease rebalancing across real ingest processes: 1 -> 3 -> 2 instances, 60 demanded simulator sids at 10 Hz.

Capacities 120, 60 and 60, so the shares are weighted: a alone holds 60; with b and c joined 30/15/15; with c gone
(SIGTERM) 40/20. After each change every instance must hold its target +-1 within 3 x the lease TTL, and stay
there; a lease watcher samples Memcached and every instance's /status meanwhile (never two readers of a sid), and
the wire shows no gap in a sid's samples longer than one TTL and no sample twice (strictly increasing per sid).

Prints the shares over time (Memcached, one line a second) and the convergence time of each change.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from tests.ingest.helpers import LEASE_TTL_S, ingest_process
from tests.ingest.test_leases_processes import processes, sim_subs
from tests.support.bus import Bus
from tests.support.lease_watch import LeaseWatch, watching
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tributary_common.cache import Cache
from tributary_ingest.fair_share import targets

pytestmark = pytest.mark.timeout(240)

CAPACITY = {"rb-a": 120, "rb-b": 60, "rb-c": 60}
DEMANDED = 60


def within_one(shares: dict[str, int], expected: dict[str, int]) -> bool:
    return set(shares) <= set(expected) and all(abs(shares.get(n, 0) - t) <= 1 for n, t in expected.items())


async def converge(watch: LeaseWatch, names: list[str], since: float, what: str) -> float:
    """Seconds from `since` until every sid is held and each of `names` holds its target +-1."""
    expected = targets({n: CAPACITY[n] for n in names}, DEMANDED)

    async def balanced() -> bool:
        shares = await watch.shares()
        return sum(shares.values()) == DEMANDED and within_one(shares, expected)

    await eventually(balanced, 6 * LEASE_TTL_S, f"{what}: shares {expected} +-1", interval=0.1)
    return time.monotonic() - since


async def stays_balanced(watch: LeaseWatch, names: list[str], seconds: float) -> None:
    expected = targets({n: CAPACITY[n] for n in names}, DEMANDED)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        shares = await watch.shares()
        assert sum(shares.values()) == DEMANDED and within_one(shares, expected), f"flapped: {shares}"
        await asyncio.sleep(0.2)


def join(procs: list[ServiceProcess]) -> None:
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_healthy(60, "/readyz")


def max_gap_s(wire: Bus, since: float, until: float) -> tuple[float, str]:
    worst, where = 0.0, ""
    for sid, received in wire.by_sid(since).items():
        times = sorted(s.t for r in received if r.at <= until for s in r.batch.samples)
        for a, b in itertools.pairwise(times):
            if (b - a).total_seconds() > worst:
                worst, where = (b - a).total_seconds(), f"{sid} between {a:%H:%M:%S.%f} and {b:%H:%M:%S.%f}"
    return worst, where


async def test_leases_rebalance_1_to_3_to_2_instances_by_capacity(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    procs = {
        n: ingest_process(tmp_path, amqp_url, cache_namespace, n, {"TRIBUTARY_CAPACITY": f'{{"simulator": {c}}}'})
        for n, c in CAPACITY.items()
    }
    a, b, c = procs.values()
    subs = sim_subs(DEMANDED)
    sids = sorted(s.sid for s in subs)
    live: list[ServiceProcess] = [a]
    cache = Cache("127.0.0.1", 11211, cache_namespace)
    watch = LeaseWatch(cache, "simulator", sids, lambda: list(live))
    took: dict[str, float] = {}
    try:
        with processes([a]):
            async with watching(watch):
                amqp_bus.demand("simulator", subs)
                took["1 instance"] = await converge(watch, ["rb-a"], time.monotonic(), "alone")
                steady = time.monotonic()
                await eventually(lambda: len(amqp_bus.by_sid(steady)) == DEMANDED, 30, "every sid on the wire")
                steady = time.monotonic()

                joined = time.monotonic()
                live += [b, c]
                await asyncio.to_thread(join, [b, c])  # off the loop: demand heartbeats and the watch go on
                ready = time.monotonic()
                took["1 -> 3"] = await converge(watch, ["rb-a", "rb-b", "rb-c"], ready, "b and c joined")
                await stays_balanced(watch, ["rb-a", "rb-b", "rb-c"], LEASE_TTL_S)

                left = time.monotonic()
                assert await asyncio.to_thread(c.terminate) == 0, c.tail()
                live.remove(c)
                took["3 -> 2"] = await converge(watch, ["rb-a", "rb-b"], left, "c left")
                await stays_balanced(watch, ["rb-a", "rb-b"], LEASE_TTL_S)
                until = time.monotonic()
            amqp_bus.stop_demand("simulator")
            assert all(p.terminate() == 0 for p in (a, b)), a.tail() + b.tail()
    finally:
        for p in procs.values():
            p.terminate()
        await cache.close()

    shed = {n: p.log_path.read_text().count("(rebalanced)") for n, p in procs.items()}
    gap, where = max_gap_s(amqp_bus, steady, until)
    checked = amqp_bus.assert_strictly_increasing()
    doubles = watch.double_readers()
    print(f"\nLease rebalancing, {DEMANDED} sids at 10 Hz, capacities {CAPACITY}, lease TTL {LEASE_TTL_S:.0f} s")
    print(
        "shares in Memcached over time (b and c joined at "
        f"+{joined - watch.started:.1f} s, ready +{ready - watch.started:.1f} s; c left at +{left - watch.started:.1f} s):"
    )
    print("\n".join(watch.timeline(names=list(CAPACITY))))
    print(
        "converged in "
        + ", ".join(f"{k} {v:.2f} s" for k, v in took.items())
        + f" (limit {3 * LEASE_TTL_S:.0f} s); leases handed over by rebalancing {shed}; "
        f"longest gap in a sid's samples {gap:.2f} s (limit {LEASE_TTL_S:.0f} s); {checked} samples strictly in "
        f"order; {len(watch.polls)} status polls, {len(watch.held)} Memcached samples, two readers at once: "
        f"{len(doubles)}"
    )
    assert took["1 -> 3"] <= 3 * LEASE_TTL_S and took["3 -> 2"] <= 3 * LEASE_TTL_S, took
    assert not doubles, doubles[:10]
    assert gap <= LEASE_TTL_S, f"a gap of {gap:.2f} s: {where}"
    assert shed["rb-a"] >= 25, shed  # a handed its surplus over (30 at the join), it was not simply left idle
    # The order check saw the flow: at least half of what 10 Hz per sid makes over the watched window (a fixed
    # count failed when everything converged quickly and the window was short).
    assert checked >= DEMANDED * 10 * (until - steady) / 2, (checked, until - steady)
