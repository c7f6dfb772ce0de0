"""Demand heartbeats: every `demand_interval_s` (or at once when poked), one `Demand` per source naming the sids
clients watch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tributary_common.amqp import CONTROL, ConfirmedPublisher, demand_key
from tributary_common.control import Demand, DemandedSubscription
from tributary_common.heartbeat import Heartbeat
from tributary_common.timeutil import utcnow

DemandSnapshot = Callable[[], dict[str, dict[str, dict[str, Any]]]]


def demand_heartbeat(
    publisher: ConfirmedPublisher, snapshot: DemandSnapshot, *, requester: str, interval_s: float, ttl_s: float
) -> Heartbeat:
    """The heartbeat (started and stopped by the service); `poke()` it when demand changed (a new unitop should
    not wait for the next tick)."""

    async def send_once() -> None:
        now = utcnow()
        for source, subs in snapshot().items():
            if not subs:
                continue
            demand = Demand(
                source=source,
                requester=requester,
                subscriptions=[DemandedSubscription(sid=sid, params=params) for sid, params in sorted(subs.items())],
                ttl_s=ttl_s,
                sent_at=now,
            )
            # Transient and without trace headers, as before: the next heartbeat supersedes this one.
            await publisher.publish(
                CONTROL, demand_key(source), demand.model_dump_json().encode(), persistent=False, trace=False
            )

    return Heartbeat(send_once, interval_s=interval_s, name="demand heartbeat", first_at_once=False)
