"""The heart of a stream instance: who wants what, dispatch of broker messages, subscribe with catch-up.

Broker messages are dispatched synchronously (no awaits) so that order is kept and nothing blocks the
consumer: each message is decoded and encoded once, then offered to every interested subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from tributary_common.control import UnitopChange
from tributary_common.deadletters import (
    NOT_A_CLOUDEVENT,
    NOT_A_CONTROL_MESSAGE,
    NOT_A_SAMPLE_BATCH,
    TOO_LARGE,
    UNDECODABLE,
    UNEXPECTED_ERROR,
)
from tributary_common.matcher import matches
from tributary_common.ratelog import LogThrottle
from tributary_common.rpc import RpcError
from tributary_common.telemetry import extract_context, messaging_attributes
from tributary_common.timeutil import format_time, parse_time, utcnow
from tributary_common.unitops import Subscription as SourceSubscription

from .broker_link import BrokerUnavailable
from .clients import Client
from .dead_letters import Unusable
from .hub_client import HubClient
from .metrics import StreamMetrics
from .protocol import EventsSince, SubscribeEvents, SubscribeUnitop, UnitopSince
from .settings import StreamSettings
from .subscriptions import LIVE, REPLAYING, EventsSubscription, Subscription, UnitopSubscription

log = logging.getLogger(__name__)
tracer = trace.get_tracer("tributary_stream")

EVENTS_X, SAMPLES_X, CONTROL_X = "tributary.events", "tributary.samples", "tributary.control"
ROUTE_CACHE_MAX = 50_000
# CloudEvents attributes every envelope has as non-empty strings (the stream reads `id` and `time`).
ENVELOPE_STRINGS = ("specversion", "id", "source", "type", "time")
# How often a replay that has read history to its end reads the end again, waiting for the recorder.
REPLAY_POLL_S = 0.2


class Bindings(Protocol):
    async def acquire(self, exchange: str, key: str, timeout: float = ...) -> None: ...

    def release(self, exchange: str, key: str) -> None: ...


class Fanout:
    def __init__(
        self,
        settings: StreamSettings,
        bindings: Bindings,
        hub: HubClient,
        metrics: StreamMetrics,
        *,
        tracing: bool = False,
        on_demand_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.bindings = bindings
        self.hub = hub
        self.metrics = metrics
        self.tracing = tracing
        self.on_demand_change = on_demand_change
        self.clients: set[Client] = set()
        self.empty = asyncio.Event()  # set while no client is connected (for draining)
        self.empty.set()
        self.patterns: dict[str, set[EventsSubscription]] = {}
        self._routes: dict[str, tuple[str, ...]] = {}
        self.by_sid: dict[str, set[UnitopSubscription]] = {}
        self.unitops: dict[str, set[UnitopSubscription]] = {}
        # name -> item -> (source, params, sid): what the subscriptions of that unitop may select.
        self.unitop_items: dict[str, dict[str, tuple[SourceSubscription, str]]] = {}
        self._keys: dict[int, set[tuple[str, str]]] = {}  # id(sub) -> bindings it holds
        self._tasks: dict[int, asyncio.Task[None]] = {}  # id(sub) -> its subscribe/replay task
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._unexpected = LogThrottle(settings.dead_letter_log_interval_s)
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

    def check_new_subscription(self, client: Client, sub_id: str) -> bool:
        if sub_id in client.subs:
            client.error("duplicate_id", f"a subscription with id {sub_id!r} exists on this connection", sub_id)
            return False
        limit = self.settings.max_subscriptions_per_connection
        if len(client.subs) >= limit:
            client.error("too_many_subscriptions", f"at most {limit} subscriptions per connection", sub_id)
            return False
        return True

    # ---- events subscriptions -----------------------------------------------------------------------------

    def _admit(self, client: Client, sub_id: str, scope: str, allowed: bool, outside: str) -> bool:
        """The subscription's id and limits, then the token's scope, then its ACL; an `error` frame if not."""
        if not self.check_new_subscription(client, sub_id):
            return False
        if not client.principal.has_scope(scope):
            client.error("forbidden", f"missing scope {scope!r}", sub_id)
            return False
        if not allowed:
            client.error("forbidden", outside, sub_id)
            return False
        return True

    def subscribe_events(self, client: Client, req: SubscribeEvents) -> bool:
        allowed = client.principal.may_pattern(req.pattern)
        outside = f"pattern {req.pattern!r} is outside the token's topics"
        if not self._admit(client, req.id, "events:read", allowed, outside):
            return False
        sub = EventsSubscription(client, req.id, req.pattern, self.settings.replay_buffer_max)
        client.subs[req.id] = sub
        # Registered (buffering) before the binding exists, so nothing routed after the bind can slip by.
        if req.pattern not in self.patterns:
            self.patterns[req.pattern] = set()
            self._routes.clear()
        self.patterns[req.pattern].add(sub)
        self.metrics.subscriptions.labels("events").inc()
        self._spawn(sub, self._start_events(sub, req.since))
        return True

    async def _start_events(self, sub: EventsSubscription, since: EventsSince | None) -> None:
        client = sub.client
        with tracer.start_as_current_span("stream.subscribe", attributes={"pattern": sub.pattern}):
            if not await self._hold(sub, [(EVENTS_X, sub.pattern)]):
                return
            started = utcnow()
            if since is None:
                client.send_message("subscribed", {"id": sub.id, "events": {"pattern": sub.pattern}})
                await self._go_live_events(sub, set())
                return
            seen: set[str] = set()
            try:
                await self._replay_events(sub, since, started, seen)
            except _Refused:
                return
            await self._go_live_events(sub, seen)

    async def _replay_events(
        self, sub: EventsSubscription, since: EventsSince, started: datetime, seen: set[str]
    ) -> None:
        """History from `since` to the live seam: pages until the end, then the end read again until history
        holds one of the live events buffered since the bind (and at least `replay_settle_s` after it).

        The recorder writes its queue in order, and whatever was routed before the bind was queued for it before
        any buffered live event; so once history holds a buffered event it holds everything published before the
        bind too, however far the recorder lags. A fixed wait alone missed those events when it lagged more."""
        client = sub.client
        floor = format_time(started - timedelta(seconds=self.settings.seam_margin_s))
        settled_at = started + timedelta(seconds=self.settings.replay_settle_s)
        give_up_at = started + timedelta(seconds=self.settings.replay_catchup_max_s)
        unknown_until = started + timedelta(seconds=self.settings.replay_unknown_id_wait_s)
        cursor: str | None = None
        last: str | None = None  # the last history event sent
        first = True
        with tracer.start_as_current_span("stream.replay", attributes={"pattern": sub.pattern}):
            while True:
                try:
                    items, cursor = await self.hub.events_page_raw(
                        sub.pattern,
                        since=since.time if cursor is None and last is None else None,
                        after_id=(since.after_id if last is None else last) if cursor is None else None,
                        cursor=cursor,
                        limit=self.settings.history_page_size,
                    )
                except RpcError as exc:
                    if first and exc.code == "not_found" and since.after_id and utcnow() < unknown_until:
                        # An id the client saw live may not be recorded yet (the recorder lags): ask again
                        # for a while before calling it unknown.
                        await asyncio.sleep(REPLAY_POLL_S)
                        continue
                    if first and exc.code in ("invalid", "not_found"):
                        # The `since` itself is wrong: refuse the subscription as a whole.
                        self.unsubscribe(client, sub.id, notify=False)
                        client.error(exc.code, f"/events/since: {exc.message}", sub.id)
                        raise _Refused from None
                    if first:
                        client.send_message("subscribed", {"id": sub.id, "events": {"pattern": sub.pattern}})
                    log.warning("history for %s failed: %s", sub.pattern, exc)
                    sub.pending_gap = ("history_unavailable", {"message": exc.message})
                    return
                if first:
                    client.send_message("subscribed", {"id": sub.id, "events": {"pattern": sub.pattern}})
                    first = False
                for item in items:
                    eid, t = str(item.get("id")), str(item.get("time"))
                    if eid in seen:
                        continue  # `after_id` over several topics may start a little early
                    if t >= floor:
                        seen.add(eid)
                    await sub.send_history(eid, t, orjson.dumps(item).decode())
                    last = eid
                if cursor:
                    continue
                now = utcnow()
                if now >= settled_at and _at_seam(sub, seen):
                    return
                if now >= give_up_at:
                    log.warning("history of %s has not reached the live seam; going live with a gap", sub.pattern)
                    sub.pending_gap = ("history_behind", {})
                    return
                await asyncio.sleep(max(REPLAY_POLL_S, (settled_at - now).total_seconds()))

    async def _go_live_events(self, sub: EventsSubscription, seen: set[str]) -> None:
        # Drain what arrived during the replay, skipping what history already sent; then live.
        pending = deque(sub.buffer)
        sub.buffer = []
        while pending or sub.buffer:
            if not pending:
                pending.extend(sub.buffer)
                sub.buffer = []
            eid, t, env = pending.popleft()
            if eid in seen:
                continue
            await sub.send_history(eid, t, env)
        if sub.state != REPLAYING:
            return
        sub.state = LIVE
        self._after_replay(sub)

    def _after_replay(self, sub: Subscription) -> None:
        if sub.buffer_overflow:
            sub.buffer_overflow = False
            sub.gap("replay_overflow")
        if sub.pending_gap is not None:
            reason, extra = sub.pending_gap
            sub.pending_gap = None
            sub.gap(reason, extra)

    # ---- unitop subscriptions -----------------------------------------------------------------------------

    def subscribe_unitop(self, client: Client, req: SubscribeUnitop) -> bool:
        allowed = client.principal.may_unitop(req.name)
        outside = f"unitop {req.name!r} is outside the token's unitops"
        if not self._admit(client, req.id, "unitops:read", allowed, outside):
            return False
        sub = UnitopSubscription(client, req.id, req.name, req.items, self.settings.replay_buffer_max)
        client.subs[req.id] = sub
        self.metrics.subscriptions.labels("unitop").inc()
        self._spawn(sub, self._start_unitop(sub, req.since))
        return True

    async def _start_unitop(self, sub: UnitopSubscription, since: UnitopSince | None) -> None:
        client = sub.client
        with tracer.start_as_current_span("stream.subscribe", attributes={"unitop": sub.name}):
            # Changes first: an update between resolving and binding would otherwise go unnoticed.
            if not await self._hold(sub, [(CONTROL_X, f"unitop.{sub.name}")]):
                return
            items = self.unitop_items.get(sub.name)
            if items is None:
                try:
                    resolved = await self.hub.resolve_unitop(sub.name)
                except RpcError as exc:
                    self.unsubscribe(client, sub.id, notify=False)
                    code = exc.code if exc.code in ("not_found", "invalid", "forbidden") else "hub_unavailable"
                    client.error(code, f"/unitop/name: {exc.message}", sub.id)
                    return
                items = {i: (s, resolved.sids.get(i) or s.sid) for i, s in resolved.unitop.items.items()}
                # Another subscription may have resolved it meanwhile; keep the first.
                items = self.unitop_items.setdefault(sub.name, items)
            unknown = [i for i in sub.wanted or () if i not in items]
            if unknown:
                self.unsubscribe(client, sub.id, notify=False)
                client.error("unknown_item", f"/unitop/items: unitop {sub.name!r} has no item {unknown[0]!r}", sub.id)
                return
            sub.select({i: sid for i, (_, sid) in items.items()})
            self.unitops.setdefault(sub.name, set()).add(sub)
            for sid in sub.sid_items:
                self.by_sid.setdefault(sid, set()).add(sub)
            if not await self._hold(sub, self._unitop_keys(sub)):
                return
            self.on_demand_change()
            client.send_message("subscribed", {"id": sub.id, "unitop": {"name": sub.name, "items": sub.item_sids}})
            if since is not None:
                await self._settle(utcnow())
                await self._replay_samples(sub, since)
            await self._go_live_unitop(sub)

    async def _settle(self, bound_at: datetime) -> None:
        """Wait until what was published just before the bind has been recorded; live messages buffer meanwhile."""
        remaining = self.settings.replay_settle_s - (utcnow() - bound_at).total_seconds()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _unitop_keys(self, sub: UnitopSubscription) -> list[tuple[str, str]]:
        items = self.unitop_items.get(sub.name, {})
        keys = [(CONTROL_X, f"unitop.{sub.name}")]
        for item, sid in sub.item_sids.items():
            keys.append((SAMPLES_X, f"{items[item][0].source}.{sid}"))
        return list(dict.fromkeys(keys))

    async def _replay_samples(self, sub: UnitopSubscription, since: UnitopSince) -> None:
        # One history query per distinct `since` (usually one for all items).
        groups: dict[datetime | None, list[str]] = {}
        for item, sid in sub.item_sids.items():
            groups.setdefault(since.for_item(item), []).append(sid)
        with tracer.start_as_current_span("stream.replay", attributes={"unitop": sub.name}):
            for t0, sids in groups.items():
                cursor: str | None = None
                while True:
                    try:
                        rows, cursor = await self.hub.samples_page_raw(
                            sorted(set(sids)),
                            since=t0 if cursor is None else None,
                            cursor=cursor,
                            limit=self.settings.history_page_size,
                        )
                    except RpcError as exc:
                        log.warning("sample history for %s failed: %s", sub.name, exc)
                        sub.pending_gap = ("history_unavailable", {"message": exc.message})
                        return
                    # Rows come ordered by (t, sid): consecutive rows of one sid make one frame.
                    run: list[dict[str, Any]] = []
                    run_sid: str | None = None
                    for row in rows:
                        sid = str(row.get("sid"))
                        if sid != run_sid and run:
                            await sub.send_history(str(run_sid), run)
                            run = []
                        run_sid = sid
                        run.append({k: row[k] for k in ("t", "v", "q") if k in row})
                    if run:
                        await sub.send_history(str(run_sid), run)
                    if not cursor:
                        break

    async def _go_live_unitop(self, sub: UnitopSubscription) -> None:
        pending = deque(sub.buffer)
        sub.buffer = []
        while pending or sub.buffer:
            if not pending:
                pending.extend(sub.buffer)
                sub.buffer = []
            sid, samples = pending.popleft()
            await sub.send_history(sid, samples)
        if sub.state != REPLAYING:
            return
        sub.state = LIVE
        self._after_replay(sub)

    # ---- common -------------------------------------------------------------------------------------------

    def _spawn(self, sub: Subscription, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription %s failed", sub.id)
                if sub.client.subs.get(sub.id) is sub:
                    self.unsubscribe(sub.client, sub.id, notify=False)
                    sub.client.error("internal", "the subscription failed; see the service log", sub.id)
            finally:
                self._tasks.pop(id(sub), None)

        self._tasks[id(sub)] = asyncio.create_task(run())

    async def _hold(self, sub: Subscription, keys: list[tuple[str, str]]) -> bool:
        """Bind `keys` for `sub` (reference-counted); on failure refuse the subscription."""
        held = self._keys.setdefault(id(sub), set())
        try:
            for exchange, key in keys:
                if (exchange, key) in held:
                    continue
                await self.bindings.acquire(exchange, key)
                held.add((exchange, key))
        except BrokerUnavailable as exc:
            self.unsubscribe(sub.client, sub.id, notify=False)
            sub.client.error("broker_unavailable", str(exc), sub.id)
            return False
        if sub.client.subs.get(sub.id) is not sub:  # unsubscribed while binding
            self._release_all(sub)
            return False
        return True

    def _release_all(self, sub: Subscription) -> None:
        for exchange, key in self._keys.pop(id(sub), set()):
            self.bindings.release(exchange, key)

    def unsubscribe(self, client: Client, sub_id: str, *, notify: bool = True, reason: str | None = None) -> bool:
        sub = client.subs.pop(sub_id, None)
        if sub is None:
            if notify:
                client.error("unknown_subscription", f"no subscription with id {sub_id!r} on this connection", sub_id)
            return False
        sub.state = "closed"
        task = self._tasks.pop(id(sub), None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        client.lagging.pop(sub_id, None)
        if isinstance(sub, EventsSubscription):
            subs = self.patterns.get(sub.pattern)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.patterns[sub.pattern]
                    self._routes.clear()
            self.metrics.subscriptions.labels("events").dec()
        elif isinstance(sub, UnitopSubscription):
            self._forget_unitop_sub(sub)
            self.metrics.subscriptions.labels("unitop").dec()
        self._release_all(sub)
        if notify:
            payload: dict[str, Any] = {"id": sub_id}
            if reason:
                payload["reason"] = reason
            # A server-initiated unsubscribe (with a reason) is not a reply to the client.
            client.send_message("unsubscribed", payload, reply=reason is None)
        return True

    def _forget_unitop_sub(self, sub: UnitopSubscription) -> None:
        for sid in sub.sid_items:
            subs = self.by_sid.get(sid)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.by_sid[sid]
        subs = self.unitops.get(sub.name)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.unitops[sub.name]
                self.unitop_items.pop(sub.name, None)
        self.on_demand_change()

    def demand(self) -> dict[str, dict[str, dict[str, Any]]]:
        """source -> sid -> params of every subscription a client watches."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, subs in self.unitops.items():
            items = self.unitop_items.get(name, {})
            for sub in subs:
                for item, sid in sub.item_sids.items():
                    if item in items:
                        source_sub = items[item][0]
                        out.setdefault(source_sub.source, {})[sid] = source_sub.params
        return out

    # ---- broker messages ----------------------------------------------------------------------------------

    def on_message(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        self.metrics.messages_in.labels(exchange).inc()
        try:
            if exchange in (EVENTS_X, SAMPLES_X) and self.tracing and "traceparent" in headers:
                # Continue the publisher's trace (HTTP publish or connector read) through the websocket send.
                with tracer.start_as_current_span(
                    "stream.fanout",
                    context=extract_context(headers),
                    kind=SpanKind.CONSUMER,
                    attributes=messaging_attributes("process", exchange, routing_key),
                ):
                    self._dispatch(exchange, routing_key, body)
            elif exchange in (EVENTS_X, SAMPLES_X):
                self._dispatch(exchange, routing_key, body)
            elif exchange == CONTROL_X and routing_key.startswith("unitop."):
                self._on_unitop_change(body)
        except Unusable:
            raise  # the broker link sends it to the dead letters
        except Exception as exc:
            # A message that passed the checks below and still failed: a bug. It goes to the dead letters too
            # (nothing may take the consumer down); the traceback is logged, at most once per interval per kind.
            if self._unexpected.hit(type(exc).__name__) is not None:
                log.exception("unexpected failure on a message from %s %r", exchange, routing_key[:200])
            raise Unusable(UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}") from exc

    def _dispatch(self, exchange: str, routing_key: str, body: bytes) -> None:
        if exchange == EVENTS_X:
            self._on_event(routing_key, body)
        else:
            self._on_samples(body)

    def _on_event(self, routing_key: str, body: bytes) -> None:
        patterns = self._routes.get(routing_key)
        if patterns is None:
            patterns = tuple(p for p in self.patterns if matches(p, routing_key))
            if len(self._routes) >= ROUTE_CACHE_MAX:
                self._routes.clear()
            self._routes[routing_key] = patterns
        if not patterns:
            return
        if len(body) > self.settings.max_event_bytes:
            raise Unusable(TOO_LARGE, f"{len(body)} bytes, more than TRIBUTARY_MAX_EVENT_BYTES")
        envelope = _decode(body)
        if not isinstance(envelope, dict):
            raise Unusable(NOT_A_CLOUDEVENT, "not a JSON object")
        for attribute in ENVELOPE_STRINGS:
            value = envelope.get(attribute)
            if not isinstance(value, str) or not value:
                raise Unusable(NOT_A_CLOUDEVENT, f"{attribute!r} is not a non-empty string")
        eid, t = envelope["id"], envelope["time"]
        try:
            parse_time(t)  # the seam compares positions by time
        except ValueError as exc:
            raise Unusable(NOT_A_CLOUDEVENT, f"'time': {exc}") from None
        envelope_json = body.decode()
        for p in patterns:
            # No per-key ACL check here: the pattern was checked to be covered by the token at subscribe.
            for sub in self.patterns.get(p, ()):
                sub.on_live(eid, t, envelope_json)

    def _on_samples(self, body: bytes) -> None:
        batch = _decode(body)
        if not isinstance(batch, dict) or not isinstance(batch.get("sid"), str):
            raise Unusable(NOT_A_SAMPLE_BATCH, "no 'sid' string")
        sid = batch["sid"]
        subs = self.by_sid.get(sid)
        if not subs:
            return
        samples = batch.get("samples")
        if not isinstance(samples, list) or not samples:
            raise Unusable(NOT_A_SAMPLE_BATCH, "'samples' is not a non-empty list")
        if not all(isinstance(sample, dict) and isinstance(sample.get("t"), str) for sample in samples):
            raise Unusable(NOT_A_SAMPLE_BATCH, "a sample without a 't' string")
        try:
            first_t, last_t = parse_time(samples[0]["t"]), parse_time(samples[-1]["t"])
        except ValueError as exc:
            raise Unusable(NOT_A_SAMPLE_BATCH, f"'t': {exc}") from None
        encoded = orjson.dumps(samples).decode()
        for sub in list(subs):
            sub.on_live(sid, samples, first_t, last_t, encoded)

    def _on_unitop_change(self, body: bytes) -> None:
        try:
            change = UnitopChange.model_validate_json(body)
        except ValidationError as exc:
            error = exc.errors()[0]
            reason = UNDECODABLE if error["type"] == "json_invalid" else NOT_A_CONTROL_MESSAGE
            raise Unusable(reason, f"{'/'.join(map(str, error['loc']))}: {error['msg']}") from None
        subs = self.unitops.get(change.name)
        if not subs:
            return
        if change.action == "deleted" or change.unitop is None:
            for sub in list(subs):
                self.unsubscribe(sub.client, sub.id, reason="unitop_deleted")
            return
        items = {i: (s, s.sid) for i, s in change.unitop.items.items()}
        self.unitop_items[change.name] = items
        for sub in list(subs):
            self._reselect(sub, {i: sid for i, (_, sid) in items.items()})
        self.on_demand_change()

    def _reselect(self, sub: UnitopSubscription, sids: dict[str, str]) -> None:
        for sid in sub.sid_items:
            self.by_sid.get(sid, set()).discard(sub)
        sub.select(sids)
        for sid in sub.sid_items:
            self.by_sid.setdefault(sid, set()).add(sub)
        for sid in [s for s, subs in self.by_sid.items() if not subs]:
            del self.by_sid[sid]
        wanted = set(self._unitop_keys(sub))
        held = self._keys.setdefault(id(sub), set())
        for key in held - wanted:
            held.discard(key)
            self.bindings.release(*key)

        async def bind_new() -> None:
            if await self._hold(sub, sorted(wanted - held)):
                sub.client.send_message(
                    "subscribed", {"id": sub.id, "unitop": {"name": sub.name, "items": sub.item_sids}}, reply=False
                )

        task = asyncio.get_running_loop().create_task(bind_new())
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def on_restored(self, started: datetime, ended: datetime) -> None:
        """The broker connection came back: every subscription may have missed messages of the outage."""
        outage = {"outage": {"from": format_time(started), "to": format_time(ended)}}
        for client in list(self.clients):
            for sub in list(client.subs.values()):
                sub.gap("broker_reconnect", outage)
        self.on_demand_change()


def _decode(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unusable(UNDECODABLE, f"not JSON: {exc}") from None


def _at_seam(sub: EventsSubscription, seen: set[str]) -> bool:
    """Whether history has reached the live events buffered since the bind (trivially, when there are none)."""
    return not sub.buffer or any(eid in seen for eid, _, _ in sub.buffer)


class _Refused(Exception):
    """The subscription was refused and already cleaned up."""
