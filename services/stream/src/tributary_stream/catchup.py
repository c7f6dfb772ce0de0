"""Catch-up: history replayed before live delivery, for both kinds of subscription, by one path.

A subscription is bound (buffering live messages) before its history is read, so nothing falls between the
two. `replay` reads pages of history through a `History` (what differs per kind: how pages are fetched, how
their items are keyed, ordered and sent, when the end is reached); `go_live` then sends what was buffered,
skipping what history already sent, and switches the subscription to live.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from tributary_common.matcher import pattern_topic
from tributary_common.rpc import RpcError
from tributary_common.timeutil import format_time, parse_time, utcnow

from .hub_rpc import HubRpc
from .protocol import EventsSince
from .settings import StreamSettings
from .subscriptions import (
    LIVE,
    REPLAYING,
    Buffered,
    BufferedEvent,
    ClientSubscription,
    EventKey,
    EventsSubscription,
    UnitopSubscription,
)

log = logging.getLogger(__name__)

# How often a replay that has read history to its end reads the end again, waiting for the recorder (and how
# often an id not yet recorded is asked for again).
REPLAY_POLL_S = 0.2
# How much earlier than another an event may be stamped and still reach the broker after it (hubs stamp `time`).
PUBLISH_SKEW_S = 5.0

Page = tuple[list[dict[str, Any]], str | None]


class SubscriptionRefused(Exception):
    """The subscription was refused (its `since` is wrong) and already cleaned up."""


class History(Protocol):
    """One kind's history, read page by page from where its `since` says."""

    label: str  # for the log

    async def page(self, cursor: str | None) -> Page: ...

    def retry(self, exc: RpcError) -> bool:
        """Whether a failed first page is asked for again (after REPLAY_POLL_S)."""

    def first_failed(self, exc: RpcError) -> None:
        """The first page failed for good: raise SubscriptionRefused, or let the replay end with a gap."""

    def opened(self) -> None:
        """The first page came."""

    async def deliver(self, items: list[dict[str, Any]]) -> None: ...

    def end_reached(self) -> float | None:
        """History has no more pages: None when the replay is done, else how long to wait to read the end again."""


async def replay(sub: ClientSubscription[Any], history: History) -> bool:
    """Send `history` to `sub`; False when reading it failed (the gap is reported once live)."""
    cursor: str | None = None
    first = True
    while True:
        try:
            items, cursor = await history.page(cursor)
        except RpcError as exc:
            if first and history.retry(exc):
                await asyncio.sleep(REPLAY_POLL_S)
                continue
            if first:
                history.first_failed(exc)
            log.warning("%s failed: %s", history.label, exc)
            sub.pending_gap = ("history_unavailable", {"message": exc.message})
            return False
        if first:
            history.opened()
            first = False
        await history.deliver(items)
        if cursor:
            continue
        wait = history.end_reached()
        if wait is None:
            return True
        await asyncio.sleep(wait)


async def go_live(sub: ClientSubscription[Buffered], send: Callable[[Buffered], Awaitable[None]]) -> None:
    """Drain what arrived during the replay (also what arrives while draining), then live."""
    pending = deque(sub.buffer)
    sub.buffer = []
    while pending or sub.buffer:
        if not pending:
            pending.extend(sub.buffer)
            sub.buffer = []
        await send(pending.popleft())
    if sub.state != REPLAYING:
        return
    sub.state = LIVE
    sub.report_deferred_gaps()


class EventsHistory:
    """Events from `since` to the live seam: pages until the end, then the end read again until history holds
    one of the live events buffered since the bind (and at least `replay_settle_s` after it).

    The recorder writes its queue in order, and whatever was routed before the bind was queued for it before any
    buffered live event; so once history holds a buffered event it holds everything published before the bind
    too, however far the recorder lags. A fixed wait alone missed those events when it lagged more."""

    def __init__(
        self,
        sub: EventsSubscription,
        since: EventsSince,
        started: datetime,
        hub: HubRpc,
        settings: StreamSettings,
        *,
        subscribed: Callable[[], None],
        refuse: Callable[[str, str], None],
    ) -> None:
        self.sub = sub
        self.since = since
        self.hub = hub
        self.page_size = settings.history_page_size
        self.subscribed = subscribed
        self.refuse = refuse
        self.label = f"history for {sub.pattern}"
        # Ids sent before this cannot meet a live copy: raised to the first buffered event (`_raise_floor`).
        self.floor = format_time(started - timedelta(seconds=settings.seam_margin_s))
        self.floor_raised = False
        self.settled_at = started + timedelta(seconds=settings.replay_settle_s)
        self.give_up_at = started + timedelta(seconds=settings.replay_catchup_max_s)
        self.unknown_until = started + timedelta(seconds=settings.replay_unknown_id_wait_s)
        self.last_key: EventKey | None = None  # (topic, id) of the last history event sent
        # (topic, id) -> time of what history sent at or after the seam's floor: the buffered live events to skip.
        self.seen: dict[EventKey, str] = {}

    async def page(self, cursor: str | None) -> Page:
        since, last = self.since, self.last_key[1] if self.last_key else None
        return await self.hub.events_page_raw(
            self.sub.pattern,
            since=since.time if cursor is None and last is None else None,
            after_id=(since.after_id if last is None else last) if cursor is None else None,
            cursor=cursor,
            limit=self.page_size,
        )

    def retry(self, exc: RpcError) -> bool:
        # An id the client saw live may not be recorded yet (the recorder lags): ask again for a while before
        # calling it unknown.
        return exc.code == "not_found" and bool(self.since.after_id) and utcnow() < self.unknown_until

    def first_failed(self, exc: RpcError) -> None:
        if exc.code in ("invalid", "not_found"):
            # The `since` itself is wrong: refuse the subscription as a whole.
            self.refuse(exc.code, f"/events/since: {exc.message}")
            raise SubscriptionRefused from None
        self.subscribed()

    def opened(self) -> None:
        self.subscribed()

    async def deliver(self, items: list[dict[str, Any]]) -> None:
        if self.last_key is None and self.since.after_id and pattern_topic(self.sub.pattern) is not None:
            items = self._after_resumed_id(items, self.since.after_id)
        self._raise_floor()
        for item in items:
            eid, t = str(item.get("id")), str(item.get("time"))
            key = (str(item.get("type")), eid)  # ids are unique per topic only
            if key in self.seen:
                continue  # `after_id` over several topics may start a little early
            if t >= self.floor:
                self.seen[key] = t
            await self.sub.send_history(eid, t, orjson.dumps(item).decode())
            self.last_key = key

    def _raise_floor(self) -> None:
        """Once the live feed has brought its first event, nothing the feed delivered before it (older, less
        PUBLISH_SKEW_S) comes to this subscription: what history sent before that need not be remembered. A busy
        pattern kept `seam_margin_s` of ids per resuming subscription (every client at once after a restart)."""
        if self.floor_raised or not self.sub.buffer:
            return
        self.floor_raised = True
        first = format_time(parse_time(self.sub.buffer[0][1]) - timedelta(seconds=PUBLISH_SKEW_S))
        if first > self.floor:
            self.floor = first
            self.seen = {k: t for k, t in self.seen.items() if t >= first}

    def _after_resumed_id(self, items: list[dict[str, Any]], after_id: str) -> list[dict[str, Any]]:
        """The first page read "after `after_id`" of one topic holds only what follows it (ids are unique per
        topic). Should it hold that event itself (a resume positioned early: the client saw everything up to
        it), what comes up to it is dropped here rather than sent twice, and the log says so. Over several
        topics an id can name one event in each, and which one the client saw is unknown: the hub starts at the
        earliest and nothing is dropped (a duplicate rather than a loss)."""
        at = next((n for n, item in enumerate(items) if item.get("id") == after_id), None)
        if at is None:
            return items
        log.warning(
            "history after %r for %s began %d event(s) before it; those were skipped",
            after_id,
            self.sub.pattern,
            at + 1,
        )
        return items[at + 1 :]

    def end_reached(self) -> float | None:
        now = utcnow()
        if now >= self.settled_at and self.at_seam():
            return None
        if now >= self.give_up_at:
            log.warning("history of %s has not reached the live seam; going live with a gap", self.sub.pattern)
            self.sub.pending_gap = ("history_behind", {})
            return None
        return max(REPLAY_POLL_S, (self.settled_at - now).total_seconds())

    def at_seam(self) -> bool:
        """Whether history has reached the live events buffered since the bind (trivially, when there are none)."""
        return not self.sub.buffer or any((topic, eid) in self.seen for eid, _, _, topic in self.sub.buffer)

    def late_copies(self) -> set[EventKey]:
        """What the replay sent that the live feed may still bring once live (history can be ahead of a busy
        instance's feed): none once the feed has brought the last of it; else not what it brought already, nor
        what it delivered before this subscription existed (older than the first buffered event)."""
        self._raise_floor()
        buffered = {(topic, eid) for eid, _, _, topic in self.sub.buffer}
        if self.last_key is None or self.last_key in buffered:
            return set()
        return {k for k in self.seen if k not in buffered}

    async def send_buffered(self, item: BufferedEvent) -> None:
        eid, t, env, topic = item
        if (topic, eid) not in self.seen:
            await self.sub.send_history(eid, t, env)


class SamplesHistory:
    """Samples of `sids` after `since`: pages until the end (the unitop waited for the recorder before)."""

    def __init__(
        self, sub: UnitopSubscription, sids: list[str], since: datetime | None, hub: HubRpc, page_size: int
    ) -> None:
        self.sub = sub
        self.sids = sorted(set(sids))
        self.since = since
        self.hub = hub
        self.page_size = page_size
        self.label = f"sample history for {sub.name}"

    async def page(self, cursor: str | None) -> Page:
        since = self.since if cursor is None else None
        return await self.hub.samples_page_raw(self.sids, since=since, cursor=cursor, limit=self.page_size)

    def retry(self, exc: RpcError) -> bool:
        return False

    def first_failed(self, exc: RpcError) -> None:
        return None

    def opened(self) -> None:
        return None

    async def deliver(self, items: list[dict[str, Any]]) -> None:
        # Rows come ordered by (t, sid): consecutive rows of one sid make one frame.
        run: list[dict[str, Any]] = []
        run_sid: str | None = None
        for row in items:
            sid = str(row.get("sid"))
            if sid != run_sid and run:
                await self.sub.send_history(str(run_sid), run)
                run = []
            run_sid = sid
            run.append({k: row[k] for k in ("t", "v", "q") if k in row})
        if run:
            await self.sub.send_history(str(run_sid), run)

    def end_reached(self) -> float | None:
        return None


async def send_buffered_samples(sub: UnitopSubscription, item: tuple[str, list[dict[str, Any]]]) -> None:
    # Samples history already sent are skipped by time, per item, in `send_history`.
    await sub.send_history(*item)
