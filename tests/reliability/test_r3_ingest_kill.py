"""R3: the ingest instance holding leases is killed with SIGKILL, from outside; the survivor takes over.

Two `tributary-ingest serve` processes share one vhost and one Memcached namespace (lease TTL 3 s) and split 12
demanded simulator subscriptions at 10 Hz. The one holding more leases gets SIGKILL: it cannot hand anything
back, so its leases must expire and be taken by the survivor. Wanted: every one of its sids leased by the survivor
within 2 x TTL, and never two instances publishing one sid for longer than one TTL (measured on the wire: for each
sid, how long batches from two publishers interleave).

Prints: leases held by the victim, lease takeover time (last of its sids), first samples from the new owner,
the longest two-publisher overlap, the longest gap in sample time across the kill, samples checked in order.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.ingest.helpers import LEASE_TTL_S, ingest_process
from tests.ingest.test_leases_processes import owners, processes, sim_subs
from tests.support.bus import Received, bus
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tributary_common.cache import Cache

pytestmark = pytest.mark.timeout(120)


def overlap_s(received: list[Received]) -> float:
    """How long two publishers of one sid interleave: the span shared by their first-to-last batch times."""
    spans: dict[str | None, tuple[float, float]] = {}
    for r in received:
        first, last = spans.get(r.app_id, (r.at, r.at))
        spans[r.app_id] = (min(first, r.at), max(last, r.at))
    worst = 0.0
    items = list(spans.values())
    for i, (a0, a1) in enumerate(items):
        for b0, b1 in items[i + 1 :]:
            worst = max(worst, min(a1, b1) - max(a0, b0))
    return worst


async def test_r3_sigkill_of_the_lease_holder(tmp_path: Path, amqp_url: str, cache_namespace: str) -> None:
    names = ["r3-a", "r3-b"]
    procs = [ingest_process(tmp_path, amqp_url, cache_namespace, n) for n in names]
    subs = sim_subs(12)
    sids = {s.sid for s in subs}
    cache = Cache("127.0.0.1", 11211, cache_namespace)
    async with bus(amqp_url) as wire:
        with processes(procs):
            wire.demand("simulator", subs)
            await eventually(lambda: _all_leased(procs, sids), 60, "every demanded sid leased once")
            await asyncio.sleep(1.0)  # a little steady state on the wire
            held = await owners(procs)
            counts = {n: sum(1 for o in held.values() if o == [n]) for n in names}
            victim_name = max(counts, key=lambda n: counts[n])
            victim, survivor = (procs[names.index(n)] for n in (victim_name, *(set(names) - {victim_name})))
            survivor_name = survivor.env["TRIBUTARY_INSTANCE_ID"]
            victim_sids = {s for s, o in held.items() if o == [victim_name]}
            assert victim_sids, held

            victim.kill()  # SIGKILL: no release, no last watermark
            killed_at = time.monotonic()
            keys = [f"lease:simulator:{s}" for s in victim_sids]

            async def taken_over() -> bool:
                values = await cache.get_many(keys)
                return len(values) == len(keys) and {v.decode() for v in values.values()} == {survivor_name}

            await eventually(taken_over, 6 * LEASE_TTL_S, "the victim's leases held by the survivor", interval=0.05)
            takeover_s = time.monotonic() - killed_at

            def flowing() -> bool:
                after = wire.by_sid(killed_at)
                return all(any(r.app_id == survivor_name for r in after.get(s, [])) for s in victim_sids)

            await eventually(flowing, 30, "the victim's sids published by the survivor", interval=0.05)
            first_samples_s = max(
                min(r.at for r in wire.by_sid(killed_at)[s] if r.app_id == survivor_name) - killed_at
                for s in victim_sids
            )
            await asyncio.sleep(1.0)
            final = await owners([survivor])
    await cache.close()

    by_sid = wire.by_sid()
    overlap = max(overlap_s(rs) for rs in by_sid.values())
    gaps = []
    for s in victim_sids:
        before = [smp.t for r in by_sid[s] if r.app_id == victim_name for smp in r.batch.samples]
        after = [smp.t for r in by_sid[s] if r.app_id == survivor_name for smp in r.batch.samples]
        gaps.append((min(after) - max(before)).total_seconds())
    checked = wire.assert_strictly_increasing()
    print(
        f"\nR3 SIGKILL of the lease holder: {victim_name} held {len(victim_sids)} of {len(sids)} leases "
        f"(TTL {LEASE_TTL_S:.0f} s); leases taken over {takeover_s:.2f} s after the kill "
        f"(limit {2 * LEASE_TTL_S:.0f} s), first samples from {survivor_name} {first_samples_s:.2f} s after; "
        f"longest two-publisher overlap of one sid {overlap:.2f} s (limit {LEASE_TTL_S:.0f} s); "
        f"longest gap in sample time across the kill {max(gaps):.2f} s; {checked} samples strictly in order"
    )
    assert takeover_s <= 2 * LEASE_TTL_S, f"takeover took {takeover_s:.1f} s, over twice the lease TTL"
    assert overlap <= LEASE_TTL_S, f"two publishers of one sid for {overlap:.1f} s"
    assert set(final) == sids and all(o == [survivor_name] for o in final.values()), final


async def _all_leased(procs: list[ServiceProcess], sids: set[str]) -> bool:
    held = await owners(procs)
    return set(held) == sids and all(len(o) == 1 for o in held.values())
