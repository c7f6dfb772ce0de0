"""Watching ingest leases while a test moves instances around: the holders in Memcached (`lease:<source>:<sid>`)
and what each instance says it holds (`/status`), sampled in a loop, checked afterwards for two readers of a sid."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx

from tests.support.processes import ServiceProcess
from tributary_common.cache import Cache


@dataclass(frozen=True)
class Poll:
    at: float
    instance: str
    sids: frozenset[str]


@dataclass
class LeaseWatch:
    """`procs()` gives the ingest processes to poll now (the list changes as the test moves them)."""

    cache: Cache
    source: str
    sids: list[str]
    procs: Callable[[], list[ServiceProcess]]
    interval_s: float = 0.2
    started: float = field(default_factory=time.monotonic)
    held: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # (when, sid -> holder in Memcached)
    polls: list[Poll] = field(default_factory=list)

    async def holders(self) -> dict[str, str]:
        found = await self.cache.get_many([f"lease:{self.source}:{s}" for s in self.sids])
        prefix = f"lease:{self.source}:"
        return {k.removeprefix(prefix): v.decode() for k, v in found.items()}

    async def shares(self) -> dict[str, int]:
        return dict(Counter((await self.holders()).values()))

    async def _poll(self, client: httpx.AsyncClient, proc: ServiceProcess) -> None:
        if proc.proc is None or proc.proc.poll() is not None:
            return
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            body = (await client.get(f"http://127.0.0.1:{proc.port}/status")).json()
            leases = body["sources"][self.source]["leases"]
            self.polls.append(Poll(time.monotonic(), proc.env["TRIBUTARY_INSTANCE_ID"], frozenset(leases)))

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                with contextlib.suppress(Exception):  # a Memcached hiccup leaves a hole in the record, no more
                    self.held.append((time.monotonic(), await self.holders()))
                for proc in self.procs():  # one after the other: `double_readers` relies on the order
                    await self._poll(client, proc)
                await asyncio.sleep(self.interval_s)

    def double_readers(self) -> list[str]:
        """Sids that one instance said it held in two polls in a row while another said it held them between:
        two readers at once (a handover in between would need the first to take the sid back within one poll)."""
        by_instance: dict[str, list[Poll]] = {}
        for p in self.polls:
            by_instance.setdefault(p.instance, []).append(p)
        found: list[str] = []
        for mid in self.polls:
            for other, polls in by_instance.items():
                if other == mid.instance:
                    continue
                before = [p for p in polls if p.at < mid.at]
                after = [p for p in polls if p.at > mid.at]
                if before and after:
                    both = before[-1].sids & after[0].sids & mid.sids
                    found += [f"{sid}: {other} and {mid.instance} at +{mid.at - self.started:.2f} s" for sid in both]
        return found

    def timeline(self, every_s: float = 1.0, names: list[str] | None = None) -> list[str]:
        """The shares in Memcached over time, one line per `every_s`: `+12.0 s  a=30 b=15 c=15 (free 0)`."""
        lines: list[str] = []
        next_at = self.started
        for at, holders in self.held:
            if at < next_at:
                continue
            next_at = at + every_s
            counts = Counter(holders.values())
            shown = names or sorted(counts)
            cells = " ".join(f"{n}={counts.get(n, 0):>2}" for n in shown)
            lines.append(f"+{at - self.started:5.1f} s  {cells}  (free {len(self.sids) - len(holders)})")
        return lines


@contextlib.asynccontextmanager
async def watching(watch: LeaseWatch) -> AsyncIterator[LeaseWatch]:
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
