"""Which subscriptions a broker message reaches, and the bindings of the shared instance queue they hold.

`Routes` indexes the subscriptions: events by pattern (with a cache of routing key -> matching patterns), samples
by sid, unitop changes by unitop name. `BindingHolds` counts, per subscription, the bindings it holds, so that
a binding stays while any subscription wants it.
"""

from __future__ import annotations

from typing import Any, Protocol

from tributary_common.amqp import CONTROL, SAMPLES, sample_key, unitop_key
from tributary_common.matcher import matches
from tributary_common.unitops import Subscription as SourceSubscription

from .subscriptions import EventsSubscription, UnitopSubscription

ROUTE_CACHE_MAX = 50_000

# An (exchange, routing key or pattern) binding of the instance queue.
Binding = tuple[str, str]


class Bindings(Protocol):
    async def acquire(self, exchange: str, key: str, timeout: float = ...) -> None: ...

    def release(self, exchange: str, key: str) -> None: ...


class Routes:
    def __init__(self) -> None:
        self.patterns: dict[str, set[EventsSubscription]] = {}
        self._cache: dict[str, tuple[str, ...]] = {}
        self.by_sid: dict[str, set[UnitopSubscription]] = {}
        self.unitops: dict[str, set[UnitopSubscription]] = {}
        # name -> item -> (source subscription, sid): what the subscriptions of that unitop may select.
        self.unitop_items: dict[str, dict[str, tuple[SourceSubscription, str]]] = {}

    # ---- events -------------------------------------------------------------------------------------------

    def add_events(self, sub: EventsSubscription) -> None:
        if sub.pattern not in self.patterns:
            self.patterns[sub.pattern] = set()
            self._cache.clear()
        self.patterns[sub.pattern].add(sub)

    def remove_events(self, sub: EventsSubscription) -> None:
        subs = self.patterns.get(sub.pattern)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.patterns[sub.pattern]
                self._cache.clear()

    def matching(self, routing_key: str) -> tuple[str, ...]:
        """The patterns with subscribers that match `routing_key` (cached: keys repeat, patterns change rarely)."""
        patterns = self._cache.get(routing_key)
        if patterns is None:
            patterns = tuple(p for p in self.patterns if matches(p, routing_key))
            if len(self._cache) >= ROUTE_CACHE_MAX:
                self._cache.clear()
            self._cache[routing_key] = patterns
        return patterns

    # ---- unitops ------------------------------------------------------------------------------------------

    def add_unitop(self, sub: UnitopSubscription) -> None:
        self.unitops.setdefault(sub.name, set()).add(sub)
        for sid in sub.sid_items:
            self.by_sid.setdefault(sid, set()).add(sub)

    def remove_unitop(self, sub: UnitopSubscription) -> None:
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

    def reselect(self, sub: UnitopSubscription, sids: dict[str, str]) -> None:
        """The unitop changed: `sub` takes its new items (item -> sid) and is routed by their sids."""
        for sid in sub.sid_items:
            self.by_sid.get(sid, set()).discard(sub)
        sub.select(sids)
        for sid in sub.sid_items:
            self.by_sid.setdefault(sid, set()).add(sub)
        for sid in [s for s, subs in self.by_sid.items() if not subs]:
            del self.by_sid[sid]

    def unitop_bindings(self, sub: UnitopSubscription) -> list[Binding]:
        """Its unitop's changes, and the samples of each item it selected."""
        items = self.unitop_items.get(sub.name, {})
        keys = [(CONTROL.name, unitop_key(sub.name))]
        for item, sid in sub.item_sids.items():
            keys.append((SAMPLES.name, sample_key(items[item][0].source, sid)))
        return list(dict.fromkeys(keys))

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


class BindingHolds:
    """The bindings each subscription holds; the `Bindings` port counts them across subscriptions."""

    def __init__(self, bindings: Bindings) -> None:
        self.bindings = bindings
        self._held: dict[int, set[Binding]] = {}  # id(sub) -> bindings it holds

    def held(self, sub: object) -> set[Binding]:
        return self._held.setdefault(id(sub), set())

    async def acquire(self, sub: object, keys: list[Binding]) -> None:
        """Bind what `sub` does not hold yet (BrokerUnavailable when the broker is away: what was bound stays
        held, for `release_all`)."""
        held = self.held(sub)
        for exchange, key in keys:
            if (exchange, key) in held:
                continue
            await self.bindings.acquire(exchange, key)
            held.add((exchange, key))

    def keep_only(self, sub: object, wanted: set[Binding]) -> None:
        held = self.held(sub)
        for key in held - wanted:
            held.discard(key)
            self.bindings.release(*key)

    def release_all(self, sub: object) -> None:
        for exchange, key in self._held.pop(id(sub), set()):
            self.bindings.release(exchange, key)
