"""Several ingest processes against one RabbitMQ vhost and one Memcached namespace: leases across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.ingest.helpers import LEASE_TTL_S, http_get, ingest_process, status, sub
from tests.support.bus import Bus
from tests.support.polling import eventually, wait_for
from tests.support.processes import ServiceProcess
from tributary_common.cache import Cache

pytestmark = pytest.mark.timeout(180)


@contextlib.contextmanager
def processes(procs: list[ServiceProcess]) -> Iterator[list[ServiceProcess]]:
    try:
        for p in procs:
            p.start(wait=False)
        for p in procs:
            p.wait_healthy(60)
        # Ready when every instance serves and has heard the others' announcements (for the fair split).
        for p in procs:
            p.wait_healthy(60, "/readyz")
            wait_for(
                lambda p=p: _peers(p) == len(procs) - 1, 30, what=f"{p.env['TRIBUTARY_INSTANCE_ID']} sees its peers"
            )
        yield procs
    finally:
        for p in procs:
            p.terminate()


def _peers(p: ServiceProcess) -> int:
    try:
        body = httpx.get(f"http://127.0.0.1:{p.port}/status", timeout=5).json()
        return len(body["sources"]["simulator"]["peers"])
    except (httpx.HTTPError, KeyError):
        return -1


async def owners(procs: list[ServiceProcess]) -> dict[str, list[str]]:
    """sid -> the instances that say they hold its lease."""
    out: dict[str, list[str]] = {}
    for p in procs:
        if p.proc is None or p.proc.poll() is not None:
            continue
        with contextlib.suppress(httpx.HTTPError):
            for sid in (await status(p))["sources"]["simulator"]["leases"]:
                out.setdefault(sid, []).append(p.env["TRIBUTARY_INSTANCE_ID"])
    return out


async def _eq(held: Awaitable[dict[str, list[str]]], sids: set[str]) -> bool:
    return set(await held) == sids


async def _balanced(held_by: Awaitable[dict[str, list[str]]], sids: set[str], instances: list[str]) -> bool:
    """Every sid held by exactly one instance, and the instances' counts within one of each other."""
    held = await held_by
    counts = dict.fromkeys(instances, 0)
    for holders in held.values():
        for name in holders:
            counts[name] = counts.get(name, 0) + 1
    once = set(held) == sids and all(len(v) == 1 for v in held.values())
    return once and max(counts.values()) - min(counts.values()) <= 1


async def _wait_balanced(procs: list[ServiceProcess], sids: set[str], timeout: float, what: str) -> None:
    """`_balanced` within `timeout`, else a failure that says how the sids were held at the end."""
    names = [p.env["TRIBUTARY_INSTANCE_ID"] for p in procs]
    try:
        await eventually(lambda: _balanced(owners(procs), sids, names), timeout, what)
    except AssertionError as exc:
        held = await owners(procs)
        counts = {n: sum(n in v for v in held.values()) for n in names}
        twice = {s: v for s, v in held.items() if len(v) > 1}
        raise AssertionError(f"{exc}: counts {counts}, unheld {len(sids - set(held))}, held twice {twice}") from None


async def _len_is(held: Awaitable[dict[str, list[str]]], n: int) -> bool:
    return len(await held) == n


def sim_subs(n: int, rate_hz: float = 10) -> list:  # type: ignore[type-arg]
    return [sub("simulator", {"signal": "sine", "seed": i, "rate_hz": rate_hz}) for i in range(n)]


async def test_three_processes_each_sid_read_by_exactly_one_and_kill_9_takeover(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    names = ["ing-a", "ing-b", "ing-c"]
    procs = [ingest_process(tmp_path, amqp_url, cache_namespace, n) for n in names]
    subs = sim_subs(24)
    sids = {s.sid for s in subs}
    with processes(procs):
        amqp_bus.demand("simulator", subs)
        await _wait_balanced(procs, sids, 60, "every demanded sid leased, split evenly")
        # Watch the wire for a while: each sid comes from exactly one instance.
        window_start = time.monotonic() + 1.0  # past batches still on their way from a previous owner
        await eventually(
            lambda: {s for s, rs in amqp_bus.by_sid(window_start).items() if len(rs) >= 3} == sids,
            60,
            "three batches of every sid",
        )
        held = await owners(procs)
        assert all(len(v) == 1 for v in held.values()), f"a sid leased twice: {held}"
        for sid, received in amqp_bus.by_sid(window_start).items():
            publishers = {r.app_id for r in received}
            assert publishers == set(held[sid]), f"{sid} published by {publishers}, leased by {held[sid]}"

        # kill -9 the owner of one sid: another instance takes it over within twice the lease TTL.
        victim_sid = sorted(sids)[0]
        victim_name = held[victim_sid][0]
        victim = procs[names.index(victim_name)]
        victim_sids = {s for s, o in held.items() if o == [victim_name]}
        survivors = [p for p in procs if p is not victim]
        victim.kill()
        killed_at = time.monotonic()
        cache = Cache("127.0.0.1", 11211, cache_namespace)
        try:

            async def taken_over() -> bool:
                values = await cache.get_many([f"lease:simulator:{s}" for s in victim_sids])
                return len(values) == len(victim_sids) and all(v.decode() != victim_name for v in values.values())

            await eventually(taken_over, 4 * LEASE_TTL_S, "the victim's leases taken by others", interval=0.05)
            took_s = time.monotonic() - killed_at
        finally:
            await cache.close()
        assert took_s <= 2 * LEASE_TTL_S, f"takeover took {took_s:.1f} s, over twice the lease TTL"
        # The survivors may then rebalance (one took more than its share): a shed lease is briefly held by none, so
        # wait until every sid is held once and the split is even, then check who publishes what.
        await _wait_balanced(survivors, sids, 6 * LEASE_TTL_S, "the survivors balanced")
        held = await owners(survivors)
        after = time.monotonic() + 1.0  # past batches still on their way from a previous owner
        await eventually(
            lambda: victim_sids <= {s for s, rs in amqp_bus.by_sid(after).items() if len(rs) >= 2},
            30,
            "the victim's sids flowing again",
        )
        for sid in victim_sids:
            assert {r.app_id for r in amqp_bus.by_sid(after)[sid]} == set(held[sid])

        # SIGTERM to one survivor: it drains, hands its leases back and exits 0; the last one reads everything.
        leaving, last = survivors
        assert leaving.terminate() == 0, leaving.tail()
        assert "(shutdown)" in leaving.log_path.read_text()
        await eventually(lambda: _eq(owners([last]), sids), 30, "the last instance holding every sid")
        after = time.monotonic()
        await eventually(lambda: set(amqp_bus.by_sid(after)) == sids, 30, "every sid flowing from the last instance")
        assert {r.app_id for rs in amqp_bus.by_sid(after + 1.0).values() for r in rs} <= {
            last.env["TRIBUTARY_INSTANCE_ID"]
        }
    # Across the kill (the new owner starts after the old one's watermark) timestamps stay strictly increasing.
    assert amqp_bus.assert_strictly_increasing() > 200


async def test_two_processes_exactly_one_capacity_and_release_after_grace(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    extra = {"TRIBUTARY_CAPACITY": '{"simulator": 5}'}
    names = ["cap-a", "cap-b"]
    procs = [ingest_process(tmp_path, amqp_url, cache_namespace, n, extra) for n in names]
    subs = sim_subs(12)
    with processes(procs):
        amqp_bus.demand("simulator", subs)
        # Two instances of capacity 5: ten sids read, each by exactly one, two left unread.
        await eventually(lambda: _len_is(owners(procs), 10), 60, "both instances full")
        await asyncio.sleep(2 * LEASE_TTL_S)  # time for a wrong extra lease to show up
        held = await owners(procs)
        assert len(held) == 10 and all(len(v) == 1 for v in held.values()), held
        for p in procs:
            src = (await status(p))["sources"]["simulator"]
            assert len(src["leases"]) == 5 and src["free"] == 0
        start = time.monotonic()
        await eventually(lambda: len(amqp_bus.by_sid(start)) == 10, 30, "ten sids on the wire")
        await asyncio.sleep(1.0)
        assert set(amqp_bus.by_sid(start)) == set(held)
        # Announcements carry capacity, free and leases, and the subscription schema.
        ann = [a for a in amqp_bus.announcements if a.instance_id in names]
        assert ann and ann[-1].capacity == 5 and ann[-1].source == "simulator"
        assert "signal" in ann[-1].subscription_schema["properties"]
        assert any(a.free == 0 and a.leases == 5 for a in ann)

        # Demand shrinks to 4 sids: the others are released after the grace period and stop on the wire.
        keep = subs[:4]
        amqp_bus.demand("simulator", keep)
        await eventually(lambda: _eq(owners(procs), {s.sid for s in keep}), 30, "only the demanded sids leased")
        stopped_at = time.monotonic() + 1.0  # let in-flight batches land
        await asyncio.sleep(2.5)
        assert set(amqp_bus.by_sid(stopped_at)) == {s.sid for s in keep}

        # Demand stops altogether: reads go on through the grace period (demand TTL 2 s + grace 1.5 s), then stop
        # and every lease is handed back.
        amqp_bus.stop_demand("simulator")
        stopped = time.monotonic()
        await eventually(lambda: _len_is(owners(procs), 0), 30, "all leases released")
        during_grace = {s for s, rs in amqp_bus.by_sid(stopped + 2.0).items() if rs}
        assert during_grace == {s.sid for s in keep}, "reads should continue until the grace period is over"
        quiet = time.monotonic() + 1.0
        await asyncio.sleep(2.5)
        assert amqp_bus.by_sid(quiet) == {}
        for p in procs:
            metrics = (await http_get(p, "/metrics")).text
            assert 'tributary_ingest_leases_held{source="simulator"} 0.0' in metrics
            assert 'tributary_ingest_samples_published_total{source="simulator"}' in metrics
            assert 'tributary_ingest_samples_per_second{source="simulator"}' in metrics
            assert 'tributary_ingest_reads_total{source="simulator"}' in metrics
            assert 'tributary_ingest_errors_total{kind="bad_params",source="simulator"}' not in metrics
            ready = await http_get(p, "/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {
                "engine": "ok",
                "broker": "ok",
                "memcached": "ok",
            }
    assert amqp_bus.assert_strictly_increasing() > 100
    for p in procs:
        assert p.proc is not None and p.proc.returncode == 0, p.tail()
