"""Websocket clients that follow one event pattern and resume with `since` after every disconnect, as a client of
the stream is told to (README, "gap" and close 1012): what each saw is kept for the lost / duplicated / order
figures of the reliability tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from dataclasses import dataclass, field

import orjson
import websockets
from websockets.asyncio.client import ClientConnection


@dataclass
class Follower:
    url: str
    token: str
    pattern: str
    ids: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # monotonic arrival of each of `ids`
    closes: list[int | None] = field(default_factory=list)
    gaps: int = 0
    errors: list[dict[str, object]] = field(default_factory=list)
    # `shutting_down` refusals: a reconnect that reached a draining stream, told to come back (not an error)
    told_to_reconnect: int = 0
    # monotonic times: socket lost, first event after it
    lost_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stop: bool = False
    _subs: int = 0

    async def run(self) -> None:
        while not self.stop:
            try:
                ws = await websockets.connect(
                    self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, open_timeout=3
                )
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.1 + random.random() * 0.1)
                continue
            try:
                await self._follow(ws)
            except websockets.exceptions.ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else None)
                self.lost_at.append(time.monotonic())
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()

    def arrival(self, event_id: str) -> float | None:
        try:
            return self.times[self.ids.index(event_id)]
        except ValueError:
            return None

    async def _subscribe(self, ws: ClientConnection) -> str:
        self._subs += 1
        sub = f"s{self._subs}"
        spec: dict[str, object] = {"pattern": self.pattern}
        if self.ids:
            spec["since"] = self.ids[-1]  # resume after the last event seen
        await ws.send(orjson.dumps({"op": "subscribe", "id": sub, "events": spec}).decode())
        return sub

    async def _follow(self, ws: ClientConnection) -> None:
        sub = await self._subscribe(ws)
        waiting_resume = bool(self.lost_at)
        while not self.stop:
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            frame = orjson.loads(raw)
            kind = frame.get("type")
            if kind == "event" and frame.get("sub") == sub:
                self.ids.append(frame["event"]["id"])
                self.times.append(time.monotonic())
                if waiting_resume:
                    waiting_resume = False
                    self.resumed_at.append(time.monotonic())
            elif kind == "subscribed":
                self.ready.set()
            elif kind == "gap" and frame.get("sub") == sub:
                # Messages after `last` may be missing: resume from the last one seen, on a new subscription.
                self.gaps += 1
                await ws.send(orjson.dumps({"op": "unsubscribe", "id": sub}).decode())
                sub = await self._subscribe(ws)
            elif kind == "error" and frame.get("code") == "shutting_down":
                self.told_to_reconnect += 1  # the close (1012) follows; run() reconnects
            elif kind == "error":
                self.errors.append(frame)


@dataclass
class Figures:
    lost: int
    duplicated: int
    out_of_order: int
    clients_with_loss: int


def figures(followers: list[Follower], published: list[str]) -> Figures:
    """Against `published` (every id answered 202, in publish order): what each follower missed, saw twice, or saw
    before an event published earlier."""
    rank = {eid: n for n, eid in enumerate(published)}
    lost = duplicated = out_of_order = with_loss = 0
    for f in followers:
        seen = set(f.ids)
        duplicated += len(f.ids) - len(seen)
        missing = sum(1 for eid in published if eid not in seen)
        lost += missing
        with_loss += missing > 0
        ranks = [rank.get(eid, -1) for eid in f.ids]
        out_of_order += sum(1 for a, b in itertools.pairwise(ranks) if b <= a)
    return Figures(lost, duplicated, out_of_order, with_loss)
