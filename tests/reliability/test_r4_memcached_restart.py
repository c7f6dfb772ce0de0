"""R4: Memcached restarted under load, from outside; the hub keeps publishing, ingest re-takes its leases.

A private memcached (never the shared one on 11211: other tests use it) serves a real hub and a real ingest
process. A recorded unitop of 6 simulator subscriptions at 10 Hz is read while 3 clients publish single events
through the hub (each retried with the same id until answered 202). The memcached is stopped for 3 s and started
again, empty: topic lookups must fall back to the database, and ingest, which cannot prove its leases while the
cache is away, stops reading and must take every lease again once it is back.

Wanted: every event answered 202 in history exactly once, events accepted while the cache was away, every lease
held again (once), every sample batch that went out on the wire recorded. Prints: events accepted (during the
outage), lost, duplicated, how long the cache was away, when the leases were back, the sample-time gap the
outage left (no reads without a provable lease), samples published and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.hub_clients import Tally, figures, send, wait_recorded
from tests.support import platform
from tests.support.bus import bus
from tests.support.memcached import PrivateMemcached, private_memcached
from tests.support.polling import eventually
from tests.support.stack import Stack, run_stack
from tests.support.stored_samples import stored_samples
from tributary_common.cache import Cache
from tributary_common.timeutil import format_time

pytestmark = pytest.mark.timeout(150)

ITEMS = 6
CLIENTS = 3
DOWN_S = 3.0
LEASE_TTL_S = 3.0


@pytest.fixture
def memcached(services: None) -> Iterator[PrivateMemcached]:
    with private_memcached() as node:
        yield node


@pytest.fixture
def stack(tmp_path: Path, memcached: PrivateMemcached) -> Iterator[Stack]:
    ingest = {
        "TRIBUTARY_INSTANCE_ID": "r4-ingest",
        "TRIBUTARY_ENABLED_SOURCES": "simulator",
        "TRIBUTARY_LEASE_TTL_S": str(LEASE_TTL_S),
        "TRIBUTARY_RECONCILE_INTERVAL_S": "0.25",
        "TRIBUTARY_BATCH_MAX_DELAY_S": "0.1",
        "TRIBUTARY_ANNOUNCE_INTERVAL_S": "1",
    }
    env = {"TRIBUTARY_MEMCACHED_PORT": str(memcached.port)}
    with run_stack(tmp_path / "logs", ("hub", "ingest"), env=env, per_service={"ingest": ingest}) as s:
        yield s


async def scenario(stack: Stack, memcached: PrivateMemcached) -> None:
    http = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    ingest = httpx.AsyncClient(base_url=stack.url("ingest"), timeout=5)
    cache = Cache("127.0.0.1", memcached.port, stack.env["TRIBUTARY_CACHE_NAMESPACE"])
    await eventually(lambda: _announced(http), 60, "the simulator announced")
    r = await http.post("/topics", json={"name": "r4", "schema": {"type": "object"}})
    assert r.status_code == 201, r.text
    items = {
        f"t{i}": {"source": "simulator", "params": {"signal": "sine", "seed": i, "rate_hz": 10.0}} for i in range(ITEMS)
    }
    r = await http.post("/unitops", json={"name": "r4", "record": True, "items": items})
    assert r.status_code == 201, r.text
    sids = {v["sid"] for v in r.json()["items"].values()}
    lease_keys = [f"lease:simulator:{s}" for s in sids]

    async def leases_held() -> bool:
        with contextlib.suppress(httpx.HTTPError, OSError):
            status = (await ingest.get("/status")).json()["sources"]["simulator"]
            values = await cache.get_many(lease_keys)
            return set(status["leases"]) == sids and {v.decode() for v in values.values()} == {"r4-ingest"}
        return False

    async with bus(platform.amqp_url(stack.vhost)) as wire:
        await eventually(leases_held, 60, "every lease held")
        await eventually(lambda: set(wire.by_sid()) == sids, 30, "every sid on the wire")

        tally = Tally()
        stop = asyncio.Event()
        sent = 0

        async def client(k: int) -> None:
            nonlocal sent
            n = 0
            while not stop.is_set():
                await send(http, "r4", [f"r4-{k}-{n}"], tally, deadline=time.monotonic() + 60, batch=False)
                n += 1
                sent += 1

        clients = [asyncio.create_task(client(k)) for k in range(CLIENTS)]
        await asyncio.sleep(2.0)
        await asyncio.to_thread(memcached.run, "down")
        down_at = time.monotonic()
        accepted_at_down = len(tally.accepted)
        await asyncio.sleep(DOWN_S)
        accepted_during = len(tally.accepted) - accepted_at_down
        await asyncio.to_thread(memcached.run, "up")
        up_at = time.monotonic()
        try:
            await eventually(leases_held, 30, "every lease held again", interval=0.05)
        except AssertionError as exc:  # what ingest said meanwhile, for whoever reads the failure
            raise AssertionError(f"{exc}; ingest's log ends:\n{stack.procs['ingest'].tail(40)}") from None
        leases_back_s = time.monotonic() - up_at
        await eventually(lambda: _fresh(wire, sids), 30, "every sid on the wire again")
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.gather(*clients)

        assert tally.unexpected == [], tally.unexpected[:5]
        history, _ = await wait_recorded(http, "r4", tally.accepted)
        lost, duplicated = figures(history, tally.accepted)
        await asyncio.sleep(1.0)  # the last batches in flight
        on_wire = {(r.batch.sid, format_time(smp.t)) for r in wire.batches for smp in r.batch.samples}
        samples_lost = await _wait_samples(stack, on_wire)
        gaps = [_gap(wire, s) for s in sids]
    await cache.close()
    await ingest.aclose()
    await http.aclose()
    print(
        f"\nR4 memcached restart: cache away {up_at - down_at:.1f} s; {len(tally.accepted)} events answered 202 "
        f"({accepted_during} while the cache was away), lost {lost}, duplicated {duplicated}, {tally.retried} "
        f"requests retried (statuses {dict(sorted(tally.statuses.items()))}); all {ITEMS} leases held again "
        f"{leases_back_s:.2f} s after the cache came back; sample-time gap left by the outage {max(gaps):.1f} s "
        f"(reads stop while a lease cannot be proven); {len(on_wire)} samples published, {samples_lost} not recorded"
    )
    assert (lost, duplicated) == (0, 0)
    assert accepted_during > 0, "publishing stopped while the cache was away"
    assert samples_lost == 0


def _fresh(wire: Any, sids: set[str]) -> bool:
    return set(wire.by_sid(time.monotonic() - 1.0)) == sids


def _gap(wire: Any, sid: str) -> float:
    """The longest step between consecutive sample times of `sid` on the wire (the outage's, at 10 Hz)."""
    times = sorted(smp.t for r in wire.batches if r.batch.sid == sid for smp in r.batch.samples)
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    return max(steps, default=0.0)


async def _announced(http: httpx.AsyncClient) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return any(s["name"] == "simulator" for s in (await http.get("/sources")).json()["items"])
    return False


async def _wait_samples(stack: Stack, want: set[tuple[str, str]], timeout: float = 30.0) -> int:
    """How many of `want` are still not recorded once all are (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        have = {(d["sid"], d["t"]) for d in await stored_samples(stack.db)}
        missing = len(want - have)
        if missing == 0 or time.monotonic() > deadline:
            return missing
        await asyncio.sleep(0.5)


def test_r4_memcached_restart_under_load(stack: Stack, memcached: PrivateMemcached) -> None:
    asyncio.run(scenario(stack, memcached))
