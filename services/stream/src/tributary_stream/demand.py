"""Demand heartbeats: every `demand_interval_s`, one `Demand` per source naming the sids clients watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from faststream.rabbit import RabbitBroker

from tributary_common.control import Demand, DemandedSubscription
from tributary_common.exchanges import CONTROL, demand_key
from tributary_common.timeutil import utcnow

log = logging.getLogger(__name__)

DemandSnapshot = Callable[[], dict[str, dict[str, dict[str, Any]]]]


class DemandSender:
    def __init__(
        self, broker: RabbitBroker, snapshot: DemandSnapshot, *, requester: str, interval_s: float, ttl_s: float
    ) -> None:
        self.broker = broker
        self.snapshot = snapshot
        self.requester = requester
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something changed: send now rather than at the next tick (a new unitop should not wait)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.send_once()
            except Exception as exc:  # noqa: BLE001 - the next tick retries
                log.warning("demand heartbeat failed: %s", exc)

    async def send_once(self) -> None:
        now = utcnow()
        for source, subs in self.snapshot().items():
            if not subs:
                continue
            demand = Demand(
                source=source,
                requester=self.requester,
                subscriptions=[DemandedSubscription(sid=sid, params=params) for sid, params in sorted(subs.items())],
                ttl_s=self.ttl_s,
                sent_at=now,
            )
            await self.broker.publish(
                demand.model_dump_json().encode(),
                exchange=CONTROL,
                routing_key=demand_key(source),
                content_type="application/json",
                mandatory=False,
            )
