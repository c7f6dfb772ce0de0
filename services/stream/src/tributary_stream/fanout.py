"""The fan-out of one stream instance: subscribe (bind, catch up, go live) and follow unitop changes.

A composition of the parts: `Routes` and `BindingHolds` (routing.py) say who gets what and what the instance
queue is bound to, `Registry` (registry.py) keeps the clients and their subscriptions, `Dispatcher`
(dispatch.py) hands broker messages to subscriptions, catchup.py replays history before live delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from opentelemetry import trace

from tributary_common.amqp import CONTROL, EVENTS, unitop_key
from tributary_common.control import UnitopChange
from tributary_common.rpc import RpcError
from tributary_common.timeutil import utcnow
from tributary_common.unitops import Subscription as SourceSubscription

from .catchup import EventsHistory, SamplesHistory, SubscriptionRefused, go_live, replay, send_buffered_samples
from .clients import Client
from .dispatch import Dispatcher
from .hub_rpc import HubRpc
from .metrics import StreamMetrics
from .protocol import EventsSince, SubscribeEvents, SubscribeUnitop, UnitopSince
from .registry import Registry
from .routing import BindingHolds, Bindings, Routes
from .settings import StreamSettings
from .subscriptions import EventsSubscription, UnitopSubscription

tracer = trace.get_tracer("tributary_stream")


class Fanout:
    def __init__(
        self,
        settings: StreamSettings,
        bindings: Bindings,
        hub: HubRpc,
        metrics: StreamMetrics,
        *,
        tracing: bool = False,
        on_demand_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.on_demand_change = on_demand_change
        self.routes = Routes()
        self.holds = BindingHolds(bindings)
        self.registry = Registry(settings, self.routes, self.holds, metrics, on_demand_change)
        self.dispatcher = Dispatcher(settings, self.routes, metrics, self._on_unitop_change, tracing=tracing)
        self._side_tasks: set[asyncio.Task[None]] = set()
        # The parts' entry points, as the service and the endpoints use them.
        self.clients = self.registry.clients
        self.empty = self.registry.empty
        self.add_client = self.registry.add_client
        self.remove_client = self.registry.remove_client
        self.unsubscribe = self.registry.unsubscribe
        self.on_restored = self.registry.on_restored
        self.on_message = self.dispatcher.on_message
        self.demand = self.routes.demand

    @property
    def patterns(self) -> dict[str, set[EventsSubscription]]:
        return self.routes.patterns

    # ---- events subscriptions -----------------------------------------------------------------------------

    def subscribe_events(self, client: Client, req: SubscribeEvents) -> bool:
        allowed = client.principal.may_pattern(req.pattern)
        outside = f"pattern {req.pattern!r} is outside the token's topics"
        if not self.registry.admit(client, req.id, "events:read", allowed, outside):
            return False
        sub = EventsSubscription(client, req.id, req.pattern, self.settings.replay_buffer_max)
        # Routed (buffering) before the binding exists, so nothing routed after the bind can slip by.
        self.routes.add_events(sub)
        self.registry.add(sub, lambda: self._start_events(sub, req.since))
        return True

    async def _start_events(self, sub: EventsSubscription, since: EventsSince | None) -> None:
        client = sub.client

        def subscribed() -> None:
            client.send_message("subscribed", {"id": sub.id, "events": {"pattern": sub.pattern}})

        with tracer.start_as_current_span("stream.subscribe", attributes={"pattern": sub.pattern}):
            if not await self.registry.hold(sub, [(EVENTS.name, sub.pattern)]):
                return
            started = utcnow()
            if since is None:
                subscribed()
                await go_live(sub, lambda item: sub.send_history(*item[:3]))
                return
            history = EventsHistory(
                sub,
                since,
                started,
                self.hub,
                self.settings,
                subscribed=subscribed,
                refuse=lambda code, message: self.registry.refuse(sub, code, message),
            )
            try:
                with tracer.start_as_current_span("stream.replay", attributes={"pattern": sub.pattern}):
                    await replay(sub, history)
            except SubscriptionRefused:
                return
            sub.skip_replayed(history.late_copies(), self.settings.seam_margin_s)
            await go_live(sub, history.send_buffered)

    # ---- unitop subscriptions -----------------------------------------------------------------------------

    def subscribe_unitop(self, client: Client, req: SubscribeUnitop) -> bool:
        allowed = client.principal.may_unitop(req.name)
        outside = f"unitop {req.name!r} is outside the token's unitops"
        if not self.registry.admit(client, req.id, "unitops:read", allowed, outside):
            return False
        sub = UnitopSubscription(client, req.id, req.name, req.items, self.settings.replay_buffer_max)
        self.registry.add(sub, lambda: self._start_unitop(sub, req.since))
        return True

    async def _start_unitop(self, sub: UnitopSubscription, since: UnitopSince | None) -> None:
        client = sub.client
        with tracer.start_as_current_span("stream.subscribe", attributes={"unitop": sub.name}):
            # Changes first: an update between resolving and binding would otherwise go unnoticed.
            if not await self.registry.hold(sub, [(CONTROL.name, unitop_key(sub.name))]):
                return
            items = await self._unitop_items(sub)
            if items is None:
                return
            unknown = [i for i in sub.wanted or () if i not in items]
            if unknown:
                message = f"/unitop/items: unitop {sub.name!r} has no item {unknown[0]!r}"
                self.registry.refuse(sub, "unknown_item", message)
                return
            sub.select({i: sid for i, (_, sid) in items.items()})
            self.routes.add_unitop(sub)
            if not await self.registry.hold(sub, self.routes.unitop_bindings(sub)):
                return
            self.on_demand_change()
            client.send_message("subscribed", {"id": sub.id, "unitop": {"name": sub.name, "items": sub.item_sids}})
            if since is not None:
                await self._settle(utcnow())
                await self._replay_samples(sub, since)
            await go_live(sub, lambda item: send_buffered_samples(sub, item))

    async def _unitop_items(self, sub: UnitopSubscription) -> dict[str, tuple[SourceSubscription, str]] | None:
        """The unitop's items (item -> (source subscription, sid)), resolved by the hub once per instance;
        None when the subscription was refused."""
        items = self.routes.unitop_items.get(sub.name)
        if items is not None:
            return items
        try:
            resolved = await self.hub.resolve_unitop(sub.name)
        except RpcError as exc:
            code = exc.code if exc.code in ("not_found", "invalid", "forbidden") else "hub_unavailable"
            self.registry.refuse(sub, code, f"/unitop/name: {exc.message}")
            return None
        items = {i: (s, resolved.sids.get(i) or s.sid) for i, s in resolved.unitop.items.items()}
        # Another subscription may have resolved it meanwhile; keep the first.
        return self.routes.unitop_items.setdefault(sub.name, items)

    async def _settle(self, bound_at: datetime) -> None:
        """Wait until what was published just before the bind has been recorded; live messages buffer meanwhile."""
        remaining = self.settings.replay_settle_s - (utcnow() - bound_at).total_seconds()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _replay_samples(self, sub: UnitopSubscription, since: UnitopSince) -> None:
        # One history query per distinct `since` (usually one for all items).
        groups: dict[datetime | None, list[str]] = {}
        for item, sid in sub.item_sids.items():
            groups.setdefault(since.for_item(item), []).append(sid)
        with tracer.start_as_current_span("stream.replay", attributes={"unitop": sub.name}):
            for t0, sids in groups.items():
                history = SamplesHistory(sub, sids, t0, self.hub, self.settings.history_page_size)
                if not await replay(sub, history):
                    return

    # ---- unitop changes -----------------------------------------------------------------------------------

    def _on_unitop_change(self, change: UnitopChange) -> None:
        subs = self.routes.unitops.get(change.name)
        if not subs:
            return
        if change.action == "deleted" or change.unitop is None:
            for sub in list(subs):
                self.unsubscribe(sub.client, sub.id, reason="unitop_deleted")
            return
        items = {i: (s, s.sid) for i, s in change.unitop.items.items()}
        self.routes.unitop_items[change.name] = items
        for sub in list(subs):
            self._reselect(sub, {i: sid for i, (_, sid) in items.items()})
        self.on_demand_change()

    def _reselect(self, sub: UnitopSubscription, sids: dict[str, str]) -> None:
        self.routes.reselect(sub, sids)
        wanted = set(self.routes.unitop_bindings(sub))
        self.holds.keep_only(sub, wanted)
        held = self.holds.held(sub)

        async def bind_new() -> None:
            if await self.registry.hold(sub, sorted(wanted - held)):
                sub.client.send_message(
                    "subscribed", {"id": sub.id, "unitop": {"name": sub.name, "items": sub.item_sids}}, reply=False
                )

        task = asyncio.get_running_loop().create_task(bind_new())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
