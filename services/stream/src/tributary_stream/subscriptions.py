"""One subscription of one client: where it stands (the last position sent) and how live messages reach it.

While a subscription replays history it is `replaying`: live messages are buffered (bounded) and only sent
after the replay, skipping those history already sent (by topic and id for events, by sample time per item for
unitops). Then it is `live`, and still skips what the replay sent: history can be ahead of the live feed.
"""

from __future__ import annotations

import json
from datetime import datetime
from time import monotonic
from typing import Any, Generic, TypeVar

from tributary_common.timeutil import format_time, parse_time

from . import frames
from .clients import Client

REPLAYING, LIVE, CLOSED = "replaying", "live", "closed"

# What a subscription buffers of live messages while it replays.
Buffered = TypeVar("Buffered")
# An event: (id, time, envelope JSON, topic).
BufferedEvent = tuple[str, str, str, str]
# What names one event: ids are unique per topic only (a pattern can cover several topics).
EventKey = tuple[str, str]  # (topic, id)
# A sample batch: (sid, samples).
BufferedSamples = tuple[str, list[dict[str, Any]]]


class ClientSubscription(Generic[Buffered]):
    """One subscription of one connected client (not a source's subscription, nor the client library's)."""

    kind = "base"
    __slots__ = ("buffer", "buffer_max", "buffer_overflow", "client", "id", "id_json", "pending_gap", "state")

    def __init__(self, client: Client, sub_id: str, buffer_max: int) -> None:
        self.client = client
        self.id = sub_id
        self.id_json = frames.dumps(sub_id)
        self.state = REPLAYING
        self.buffer_max = buffer_max
        self.buffer: list[Buffered] = []
        self.buffer_overflow = False
        # A gap noticed while replaying is reported once the replay is done (reason, extra).
        self.pending_gap: tuple[str, dict[str, Any]] | None = None

    def buffer_live(self, item: Buffered) -> None:
        """Keep a live message for after the replay (bounded: an overflow is reported as a gap then)."""
        if len(self.buffer) < self.buffer_max:
            self.buffer.append(item)
        else:
            self.buffer_overflow = True

    def report_deferred_gaps(self) -> None:
        """The replay is done: the gaps noticed meanwhile go out now."""
        if self.buffer_overflow:
            self.buffer_overflow = False
            self.gap("replay_overflow")
        if self.pending_gap is not None:
            reason, extra = self.pending_gap
            self.pending_gap = None
            self.gap(reason, extra)

    def last(self) -> Any:
        raise NotImplementedError

    def sse_position(self) -> str | None:
        return None

    def gap(self, reason: str, extra: dict[str, Any] | None = None) -> None:
        """Tell the client that messages after `last` may be missing (it can resume with `since`)."""
        if self.state == CLOSED:
            return
        if self.state == REPLAYING:
            self.pending_gap = self.pending_gap or (reason, extra or {})
            return
        self.client.metrics.gaps.labels(reason).inc()
        payload = {"sub": self.id, "last": self.last(), "reason": reason, **(extra or {})}
        self.client.send_message("gap", payload, reply=False)


class EventsSubscription(ClientSubscription[BufferedEvent]):
    kind = "events"
    __slots__ = ("last_id", "last_time", "pattern", "replayed", "replayed_until")

    def __init__(self, client: Client, sub_id: str, pattern: str, buffer_max: int) -> None:
        super().__init__(client, sub_id, buffer_max)
        self.pattern = pattern
        self.last_id: str | None = None
        self.last_time: str | None = None
        # Events the replay sent near the seam that the live feed may still bring (see `skip_replayed`).
        self.replayed: set[EventKey] | None = None
        self.replayed_until = 0.0

    def skip_replayed(self, events: set[EventKey], for_s: float) -> None:
        """Once live, drop the live copies of `events` (sent by the replay) for up to `for_s` seconds. History can be
        ahead of the live feed: the recorder may have stored events this instance's consumer has not delivered
        yet (a busy stream), and those arrive live after the replay ended; they were sent twice, out of order."""
        self.replayed = events or None
        self.replayed_until = monotonic() + for_s

    def _replayed_already(self, key: EventKey) -> bool:
        replayed = self.replayed
        if replayed is None:
            return False
        if monotonic() > self.replayed_until:
            self.replayed = None
            return False
        if key not in replayed:
            return False
        replayed.discard(key)  # each arrives live once: the set empties as the live feed catches up
        if not replayed:
            self.replayed = None
        return True

    def last(self) -> dict[str, str] | None:
        if self.last_id is None:
            return None
        return {"id": self.last_id, "time": self.last_time or ""}

    def sse_position(self) -> str | None:
        return self.last_id

    def on_live(self, event_id: str, time: str, envelope_json: str, topic: str) -> None:
        if self.state == LIVE:
            # (the attribute test first: this runs per subscription per message)
            if self.replayed is None or not self._replayed_already((topic, event_id)):
                self.send_live(event_id, time, envelope_json)
        elif self.state == REPLAYING:
            self.buffer_live((event_id, time, envelope_json, topic))

    def send_live(self, event_id: str, time: str, envelope_json: str) -> None:
        if self.client.offer(self.client.encoder.event(self, envelope_json, event_id), self):
            self.last_id, self.last_time = event_id, time

    async def send_history(self, event_id: str, time: str, envelope_json: str) -> None:
        await self.client.put_wait(self.client.encoder.event(self, envelope_json, event_id))
        self.last_id, self.last_time = event_id, time


class UnitopSubscription(ClientSubscription[BufferedSamples]):
    kind = "unitop"
    __slots__ = ("item_sids", "last_t", "name", "sid_items", "wanted")

    def __init__(self, client: Client, sub_id: str, name: str, wanted: tuple[str, ...] | None, buffer_max: int) -> None:
        super().__init__(client, sub_id, buffer_max)
        self.name = name
        self.wanted = wanted  # None: all items, also those added later
        self.item_sids: dict[str, str] = {}
        self.sid_items: dict[str, list[str]] = {}
        self.last_t: dict[str, datetime] = {}

    def select(self, sids: dict[str, str]) -> None:
        """Take the unitop's current items (item -> sid), keeping the client's choice of items."""
        chosen = {i: s for i, s in sids.items() if self.wanted is None or i in self.wanted}
        self.item_sids = chosen
        self.sid_items = {}
        for item, sid in chosen.items():
            self.sid_items.setdefault(sid, []).append(item)

    def last(self) -> dict[str, Any] | None:
        if not self.last_t:
            return None
        return {"time": format_time(min(self.last_t.values())), "items": self.items_position()}

    def items_position(self) -> dict[str, str]:
        return {item: format_time(t) for item, t in self.last_t.items()}

    def sse_position(self) -> str | None:
        return json.dumps({"items": self.items_position()}, separators=(",", ":")) if self.last_t else None

    def on_live(self, sid: str, samples: list[dict[str, Any]], first_t: datetime, last_t: datetime, body: str) -> None:
        if self.state == LIVE:
            self.send_live(sid, samples, first_t, last_t, body)
        elif self.state == REPLAYING:
            self.buffer_live((sid, samples))

    def send_live(
        self, sid: str, samples: list[dict[str, Any]], first_t: datetime, last_t: datetime, body: str
    ) -> None:
        for item in self.sid_items.get(sid, ()):
            seen = self.last_t.get(item)
            if seen is not None and last_t <= seen:
                continue
            if seen is not None and first_t <= seen:
                # Overlaps what was sent already (history seam or a repeat): send only the newer samples.
                body_for_item = frames.dumps([s for s in samples if _t(s) > seen])
            else:
                body_for_item = body
            # The position moves first so that an SSE record carries the position *after* it.
            self.last_t[item] = last_t
            frame = self.client.encoder.samples(self, frames.samples_body(self.name, item, sid, body_for_item))
            if not self.client.offer(frame, self):
                self._restore(item, seen)

    async def send_history(self, sid: str, samples: list[dict[str, Any]]) -> None:
        for item in self.sid_items.get(sid, ()):
            seen = self.last_t.get(item)
            fresh = samples if seen is None else [s for s in samples if _t(s) > seen]
            if not fresh:
                continue
            self.last_t[item] = _t(fresh[-1])
            body = frames.samples_body(self.name, item, sid, frames.dumps(fresh))
            await self.client.put_wait(self.client.encoder.samples(self, body))

    def _restore(self, item: str, seen: datetime | None) -> None:
        if seen is None:
            self.last_t.pop(item, None)
        else:
            self.last_t[item] = seen


def _t(sample: dict[str, Any]) -> datetime:
    return parse_time(str(sample["t"]))
