"""Demand heartbeats for `record: true` unitops, so that ingest reads their subscriptions continuously."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson

from tributary_common.control import Demand, DemandedSubscription
from tributary_common.timeutil import utcnow

from .unitops import UnitopService

log = logging.getLogger(__name__)

SendDemand = Callable[[Demand], Awaitable[None]]


async def build_demands(unitops: UnitopService, requester: str, ttl_s: float) -> list[Demand]:
    """One `Demand` per source over every recorded unitop's items (each sid once)."""
    by_source: dict[str, dict[str, DemandedSubscription]] = {}
    for doc in await unitops.recorded():
        for item in doc.items.values():
            subs = by_source.setdefault(item["source"], {})
            subs.setdefault(
                item["sid"], DemandedSubscription(sid=item["sid"], params=orjson.loads(item["params_json"]))
            )
    now = utcnow()
    return [
        Demand(source=source, requester=requester, subscriptions=list(subs.values()), ttl_s=ttl_s, sent_at=now)
        for source, subs in sorted(by_source.items())
    ]


class DemandLoop:
    def __init__(
        self, unitops: UnitopService, send: SendDemand, *, requester: str, interval_s: float, ttl_s: float
    ) -> None:
        self.unitops = unitops
        self.send = send
        self.requester = requester
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Sources demanded last time: when a source's last recorded unitop goes, one empty heartbeat says so.
        self._previous: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="demand-heartbeats")

    def poke(self) -> None:
        """Send now (a recorded unitop changed) rather than at the next tick."""
        self._wake.set()

    async def tick(self) -> list[Demand]:
        demands = await build_demands(self.unitops, self.requester, self.ttl_s)
        sources = {d.source for d in demands}
        for gone in sorted(self._previous - sources):
            demands.append(
                Demand(source=gone, requester=self.requester, subscriptions=[], ttl_s=self.ttl_s, sent_at=utcnow())
            )
        for demand in demands:
            await self.send(demand)
        self._previous = sources
        return demands

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.warning("demand heartbeat failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
