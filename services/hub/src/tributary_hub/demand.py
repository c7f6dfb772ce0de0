"""Demand heartbeats for `record: true` unitops, so that ingest reads their subscriptions continuously."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field

import orjson

from tributary_common.control import Demand, DemandedSubscription
from tributary_common.heartbeat import Heartbeat
from tributary_common.timeutil import utcnow

from .unitops import UnitopService

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


@dataclass(eq=False)
class DemandLoop:
    unitops: UnitopService
    send: SendDemand
    _: KW_ONLY
    requester: str
    interval_s: float
    ttl_s: float
    # Sources demanded last time: when a source's last recorded unitop goes, one empty heartbeat says so.
    _previous: set[str] = field(init=False, default_factory=set)
    _loop: Heartbeat = field(init=False)

    def __post_init__(self) -> None:
        self._loop = Heartbeat(self.tick, interval_s=self.interval_s, name="demand heartbeat", traceback=True)

    def start(self) -> None:
        self._loop.start()

    def poke(self) -> None:
        """Send now (a recorded unitop changed) rather than at the next tick."""
        self._loop.poke()

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

    async def stop(self) -> None:
        await self._loop.stop()
