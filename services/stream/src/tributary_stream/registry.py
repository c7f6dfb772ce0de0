"""The connected clients and their subscriptions: admission of a subscription, its task, its bindings, its end.

Also the outage gaps: when the broker connection comes back, every subscription may have missed messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from tributary_common.timeutil import format_time

from .broker_link import BrokerUnavailable
from .clients import Client
from .metrics import StreamMetrics
from .routing import Binding, BindingHolds, Routes
from .settings import StreamSettings
from .subscriptions import CLOSED, ClientSubscription, EventsSubscription, UnitopSubscription

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self,
        settings: StreamSettings,
        routes: Routes,
        holds: BindingHolds,
        metrics: StreamMetrics,
        on_demand_change: Callable[[], None],
    ) -> None:
        self.max_subscriptions = settings.max_subscriptions_per_connection
        self.routes = routes
        self.holds = holds
        self.metrics = metrics
        self.on_demand_change = on_demand_change
        self.clients: set[Client] = set()
        self.empty = asyncio.Event()  # set while no client is connected (for draining)
        self.empty.set()
        self._tasks: dict[int, asyncio.Task[None]] = {}  # id(sub) -> its subscribe/replay task
        metrics.track_queues(lambda: [len(c.queue) for c in self.clients])

    # ---- clients ------------------------------------------------------------------------------------------

    def add_client(self, client: Client) -> None:
        self.clients.add(client)
        self.empty.clear()
        self.metrics.connections.labels(client.encoder.transport).inc()

    def remove_client(self, client: Client) -> None:
        if client not in self.clients:
            return
        for sub_id in list(client.subs):
            self.unsubscribe(client, sub_id, notify=False)
        self.clients.discard(client)
        if not self.clients:
            self.empty.set()
        self.metrics.connections.labels(client.encoder.transport).dec()

    # ---- one subscription ---------------------------------------------------------------------------------

    def admit(self, client: Client, sub_id: str, scope: str, allowed: bool, outside: str) -> bool:
        """The subscription's id and limits, then the token's scope, then its ACL; an `error` frame if not."""
        if sub_id in client.subs:
            client.error("duplicate_id", f"a subscription with id {sub_id!r} exists on this connection", sub_id)
            return False
        if len(client.subs) >= self.max_subscriptions:
            client.error(
                "too_many_subscriptions", f"at most {self.max_subscriptions} subscriptions per connection", sub_id
            )
            return False
        if not client.principal.has_scope(scope):
            client.error("forbidden", f"missing scope {scope!r}", sub_id)
            return False
        if not allowed:
            client.error("forbidden", outside, sub_id)
            return False
        return True

    def add(self, sub: ClientSubscription[Any], start: Callable[[], Awaitable[None]]) -> None:
        """Register `sub` with its client and run `start` (subscribe, catch up, go live) as its task. A factory, not
        a coroutine: a subscription cancelled before its task first ran leaves no coroutine never awaited."""
        sub.client.subs[sub.id] = sub
        self.metrics.subscriptions.labels(sub.kind).inc()

        async def run() -> None:
            try:
                await start()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription %s failed", sub.id)
                if self.current(sub):
                    self.refuse(sub, "internal", "the subscription failed; see the service log")
            finally:
                self._tasks.pop(id(sub), None)

        self._tasks[id(sub)] = asyncio.create_task(run())

    def current(self, sub: ClientSubscription[Any]) -> bool:
        """Whether `sub` is still its client's (not unsubscribed meanwhile)."""
        return sub.client.subs.get(sub.id) is sub

    def refuse(self, sub: ClientSubscription[Any], code: str, message: str) -> None:
        """End `sub` with an `error` frame instead of `unsubscribed`."""
        self.unsubscribe(sub.client, sub.id, notify=False)
        sub.client.error(code, message, sub.id)

    async def hold(self, sub: ClientSubscription[Any], keys: list[Binding]) -> bool:
        """Bind `keys` for `sub` (reference-counted); on failure refuse the subscription."""
        try:
            await self.holds.acquire(sub, keys)
        except BrokerUnavailable as exc:
            self.refuse(sub, "broker_unavailable", str(exc))
            return False
        if not self.current(sub):  # unsubscribed while binding
            self.holds.release_all(sub)
            return False
        return True

    def unsubscribe(self, client: Client, sub_id: str, *, notify: bool = True, reason: str | None = None) -> bool:
        sub = client.subs.pop(sub_id, None)
        if sub is None:
            if notify:
                client.error("unknown_subscription", f"no subscription with id {sub_id!r} on this connection", sub_id)
            return False
        sub.state = CLOSED
        task = self._tasks.pop(id(sub), None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        client.lagging.pop(sub_id, None)
        if isinstance(sub, EventsSubscription):
            self.routes.remove_events(sub)
            self.metrics.subscriptions.labels(sub.kind).dec()
        elif isinstance(sub, UnitopSubscription):
            self.routes.remove_unitop(sub)
            self.on_demand_change()
            self.metrics.subscriptions.labels(sub.kind).dec()
        self.holds.release_all(sub)
        if notify:
            payload: dict[str, Any] = {"id": sub_id}
            if reason:
                payload["reason"] = reason
            # A server-initiated unsubscribe (with a reason) is not a reply to the client.
            client.send_message("unsubscribed", payload, reply=reason is None)
        return True

    # ---- outage -------------------------------------------------------------------------------------------

    def on_restored(self, started: datetime, ended: datetime) -> None:
        """The broker connection came back: every subscription may have missed messages of the outage."""
        outage = {"outage": {"from": format_time(started), "to": format_time(ended)}}
        for client in list(self.clients):
            for sub in list(client.subs.values()):
                sub.gap("broker_reconnect", outage)
        self.on_demand_change()
